"""RegSeg's D block (Gao, "Rethinking Dilated Convolution for Real-time Semantic Segmentation", 2021/2023,
Sec. 3.1-3.2, Fig. 2-3).

Follows the official ``RolandGao/RegSeg`` ``blocks.py`` (``DBlock``, ``DilatedConv``, ``Shortcut``,
``SEModule``) layer for layer, with the official submodule names (``conv1``/``bn1`` ... ``conv3``/``bn3``,
``se``, ``shortcut``), so a D block's tensors have the official names *inside the block*.  The top levels
differ (official ``stem``, ``body.stage4``, ``body.stage16.13`` ...; here ``stages.N.blocks.M``), so a
released checkpoint does not ``load_state_dict`` as is: ``nasseg weights import regseg CHECKPOINT`` (see
``nasseg.weights``) imports an ``exp48_decoder26`` checkpoint into the ``regseg`` preset, every tensor
checked, and the result then loads with ``strict=True``.  Other RegSeg bodies (exp53 and the ablation
bodies) have no preset and no importer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import SE, make_act
from nasseg.registry import Arg, register


class DilatedConv(nn.Module):
    """RegSeg's multi-dilation 3x3 conv: the channels split evenly into ``len(dilations)`` parts, each part
    gets its own grouped 3x3 conv (groups = part / group_width, padding = dilation), outputs concatenated."""

    def __init__(self, channels: int, dilations: Sequence[int], group_width: int, stride: int):
        super().__init__()
        part = channels // len(dilations)
        self.convs = nn.ModuleList(
            nn.Conv2d(part, part, 3, stride, padding=d, dilation=d, groups=part // group_width, bias=False)
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.tensor_split(x, len(self.convs), dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.convs, parts)], dim=1)


class Shortcut(nn.Module):
    """RegSeg's projection shortcut: [AvgPool 2x2 s2 (ceil_mode) when stride 2] -> 1x1 conv -> BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.avg = nn.AvgPool2d(2, 2, ceil_mode=True) if stride != 1 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.avg(x)))


@register(
    "dblock",
    kind="block",
    args=[
        Arg("dilations", "ints", (1,), low=1, high=64,
            doc="dilation of each channel split of the grouped 3x3 conv; RegSeg: (1,), (1,2), (1,4), (1,14)"),
        Arg("group_width", "int", 16, low=1,
            doc="channels per group of the 3x3 conv (RegSeg 16; RegSeg-large 24)"),
        Arg("se_ratio", "float", 0.25, low=0.0, high=1.0,
            doc="SE squeeze width = int(in_channels * se_ratio) (RegSeg: in/4); 0 drops the SE"),
    ],
    examples=[
        {"in_channels": 32, "out_channels": 64, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 2},
        {"in_channels": 64, "out_channels": 64, "stride": 1, "dilations": (1, 4)},
        {"in_channels": 64, "out_channels": 96, "stride": 1, "dilations": (1, 2, 4), "group_width": 8},
        {"in_channels": 64, "out_channels": 64, "stride": 2, "dilations": (1, 2)},
        {"in_channels": 48, "out_channels": 48, "stride": 1, "se_ratio": 0.0},
    ],
)
class DBlock(nn.Module):
    """RegSeg D block (Sec. 3.1, Fig. 3): an SE-ResNeXt-style block whose grouped 3x3 conv mixes dilations.

    1x1 conv in->out + BN + ReLU -> 3x3 grouped conv (group width ``group_width``, block stride) + BN + ReLU
    -> SE (squeeze int(in_channels * se_ratio), i.e. **in**/4 as in the official code) -> 1x1 conv out->out
    + BN -> + shortcut -> ReLU.  One dilation: a single grouped conv with that dilation.  Several dilations
    (e.g. (1, 14)): the channels split evenly into len(dilations) parts, each part its own grouped 3x3 conv
    (groups = part / group_width) with its dilation, outputs concatenated (the paper's Fig. 3 D block).
    Shortcut: identity when the shape is kept; stride 2: AvgPool 2x2 s2 (ceil_mode) -> 1x1 conv -> BN;
    channel change only: 1x1 conv -> BN.  Stride 2 with dilation > 1 is allowed, as in the official code
    (the released bodies only downsample with dilation 1).

    Divergences from the official code: the official single-dilation path uses groups = out // group_width
    without checking that ``group_width`` divides ``out_channels``; here it must divide (and, with several
    dilations, divide each split, as the official ``DilatedConv`` asserts), else BlockArgumentError.
    ``se_ratio`` generalises the official in/4 (``attention='se'``); 0 drops the SE (official
    ``attention=None``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        dilations: Sequence[int] = (1,),
        group_width: int = 16,
        se_ratio: float = 0.25,
    ):
        super().__init__()
        dilations = tuple(dilations)
        if stride not in (1, 2):
            raise BlockArgumentError("dblock", "stride", stride, "allowed: 1, 2")
        if not dilations or any(d < 1 for d in dilations):
            raise BlockArgumentError("dblock", "dilations", dilations,
                                     "allowed: a non-empty list of integers >= 1")
        splits = len(dilations)
        if out_channels % (splits * group_width):
            raise BlockArgumentError(
                "dblock", "group_width", group_width,
                f"allowed: a width such that out_channels={out_channels} splits into {splits} equal part(s) "
                f"each a multiple of group_width (out_channels % (len(dilations) * group_width) == 0)",
            )
        squeeze = int(in_channels * se_ratio)
        if se_ratio > 0 and squeeze < 1:
            raise BlockArgumentError(
                "dblock", "se_ratio", se_ratio,
                f"allowed: 0 (no SE) or a ratio with int(in_channels={in_channels} * se_ratio) >= 1",
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.dilations = dilations

        # 1x1 conv in -> out + BN + ReLU
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = make_act("relu")
        # 3x3 grouped conv (one dilation) or split-dilated grouped convs, with the block stride
        if splits == 1:
            d = dilations[0]
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride, padding=d, dilation=d,
                                   groups=out_channels // group_width, bias=False)
        else:
            self.conv2 = DilatedConv(out_channels, dilations, group_width, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = make_act("relu")
        # SE on the out channels, squeeze from the *input* width
        self.se = SE(out_channels, squeeze) if se_ratio > 0 else nn.Identity()
        # 1x1 conv out -> out + BN (activation after the sum)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act3 = make_act("relu")
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Shortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.se(x)
        x = self.bn3(self.conv3(x))
        return self.act3(x + shortcut)
