"""DDRNet's bilateral fusion (Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes", arXiv 2101.06085, Sec. III-A, Fig. 3).

Official code ``ydhongHIT/DDRNet`` ``segmentation/DDRNet_23_slim.py`` and ``DDRNet_23.py`` (``compression3/4``,
``down3/4`` and the ``forward`` lines around them): after stages 3 and 4 the low-resolution (main) path and the
high-resolution branch exchange features, both computed from the values before the exchange::

    x  = x  + down(relu(x_))                    # high -> low: 3x3 s2 conv + BN, once per halving
    x_ = x_ + up(compression(relu(x)))          # low -> high: 1x1 conv + BN, bilinear (align_corners=False)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import resize_to
from nasseg.links.common import halvings
from nasseg.registry import Arg, register


@register("ddr_bilateral", kind="link", args=[
    Arg("direction", "str", "both", "both (DDRNet), to_branch (only low -> high: the plain lateral addition PIDNet's "
        "Pag replaces) or to_main (only high -> low)", choices=("both", "to_branch", "to_main")),
], examples=[
    {"main_channels": 128, "branch_channels": 64, "scale": 2},
    {"main_channels": 256, "branch_channels": 64, "scale": 4},
    {"main_channels": 256, "branch_channels": 64, "scale": 4, "direction": "to_branch"},
    {"main_channels": 256, "branch_channels": 64, "scale": 4, "direction": "to_main"},
])
class BilateralFusion(nn.Module):
    """DDRNet's bilateral fusion: ``main + down(relu(branch))`` and ``branch + up(compress(relu(main)))``.

    ``down``: one 3x3 stride-2 conv (no bias) + BN per halving between the branch and the main resolution, with
    a ReLU between them; its widths double towards ``main_channels`` (DDRNet-23-slim ``down4``:
    64 -> 128 -> 256 with main 256, ``down3``: 64 -> 128 with main 128).  ``compress``: 1x1 conv (no bias) + BN,
    main -> branch.  ``scale`` must be 2 or more: the fusion is defined between resolutions.  Children ``down``
    and ``compress`` are Sequentials indexed like the official ones (``down4.0``, ``.1``, ``.3``, ``.4``;
    ``compression3.0``, ``.1``), so checkpoints map by renaming the prefix.  No divergence from the official
    modules is known.  ``direction`` keeps one of the two exchanges for ablations (the other side is returned
    unchanged and its module is left out).
    """

    def __init__(self, main_channels: int, branch_channels: int, scale: int, *, direction: str = "both"):
        super().__init__()
        steps = halvings("ddr_bilateral", scale)
        if steps < 1:
            raise BlockArgumentError("ddr_bilateral", "scale", scale, "allowed: 2, 4, 8 ... (the branch must be "
                                     "at a finer resolution than the main path)")
        layers: list[nn.Module] = []
        c = branch_channels
        for i in range(steps):
            out = main_channels // 2 ** (steps - 1 - i)
            if i:
                layers.append(nn.ReLU())
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out)]
            c = out
        self.direction = direction
        self.down = nn.Sequential(*layers) if direction != "to_branch" else None
        self.compress = nn.Sequential(nn.Conv2d(main_channels, branch_channels, 1, bias=False),
                                      nn.BatchNorm2d(branch_channels)) if direction != "to_main" else None
        self.main_channels, self.branch_channels = main_channels, branch_channels
        self.out_channels = branch_channels

    def forward(self, main: torch.Tensor, branch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new_main, new_branch = main, branch
        if self.down is not None:  # high -> low, from the branch before the exchange
            new_main = main + self.down(F.relu(branch))
        if self.compress is not None:  # low -> high, from the main path before the exchange
            new_branch = branch + resize_to(self.compress(F.relu(main)), branch.shape[-2:], "bilinear",
                                            align_corners=False)
        return new_main, new_branch
