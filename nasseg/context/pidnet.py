"""PIDNet's Parallel Aggregation PPM (Xu et al., "PIDNet", CVPR 2023, Sec. 3.3)."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.context.ddrnet import bn_relu_conv, pooled_branches, upsample
from nasseg.registry import Arg, register


@register("pappm", kind="context", args=[
    Arg("branch_channels", "int", 96, "width of every pooled branch (PIDNet ppm_planes)", low=1, high=4096),
])
class PAPPM(nn.Module):
    """Parallel Aggregation Pyramid Pooling Module of PIDNet (CVPR 2023, Sec. 3.3), used by PIDNet-S/M.

    Official code ``XuJiacong/PIDNet`` ``models/model_utils.py`` ``PAPPM``: DAPPM made parallel.
    Every unit is pre-activation BN -> ReLU -> conv, bias-free, BN momentum 0.1:

    * y0 = 1x1(x); branch_i = 1x1(pool_i(x)) with the same pools as DAPPM (AvgPool (5, s2),
      (9, s4), (17, s8), global);
    * **parallel**: z_i = up(branch_i) + y0 for i = 1..4, no cascade (bilinear, align_corners=False);
    * one **grouped 3x3 conv (groups 4)** on cat[z1..z4] (4 * branch -> 4 * branch), so each group
      refines one scale;
    * out = 1x1(cat[y0, that]: 5 * branch -> out) + 1x1 shortcut(x: in -> out).

    Submodule names (``scale0..4``, ``scale_process``, ``compression``, ``shortcut``) and their child
    numbering are the official ones, so official ``spp.*`` weights load key for key.  No divergence
    from the official code is known.
    """

    def __init__(self, in_channels: int, out_channels: int, *, branch_channels: int):
        super().__init__()
        pooled_branches(self, in_channels, branch_channels)
        self.scale_process = bn_relu_conv(4 * branch_channels, 4 * branch_channels, 3, groups=4)
        self.compression = bn_relu_conv(5 * branch_channels, out_channels)
        self.shortcut = bn_relu_conv(in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y0 = self.scale0(x)  # 1x1 on the input
        # every pooled branch, upsampled, is added to y0 independently (parallel, no cascade)
        zs = [upsample(scale(x), size) + y0 for scale in (self.scale1, self.scale2, self.scale3, self.scale4)]
        refined = self.scale_process(torch.cat(zs, 1))  # grouped 3x3: one group per scale
        return self.compression(torch.cat([y0, refined], 1)) + self.shortcut(x)  # fuse + shortcut
