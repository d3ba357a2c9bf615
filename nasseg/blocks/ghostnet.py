"""GhostNet's Ghost module and Ghost bottleneck (Han et al., "GhostNet: More Features from Cheap Operations",
CVPR 2020, Sec. 3.1 (Ghost module, Fig. 2b), Sec. 3.2 (Ghost bottleneck, Fig. 3), Table 1 (GhostNet)).

Follows the official ``huawei-noah/Efficient-AI-Backbones`` ``ghostnet_pytorch/ghostnet.py`` (commit f90e129)
layer for layer, with the official submodule names (``ghost1``/``ghost2`` with ``primary_conv`` and
``cheap_operation`` as indexed Sequentials, ``conv_dw``/``bn_dw``, ``se``, ``shortcut``), so the official
ImageNet checkpoint of GhostNet 1.0x imports into the ``ghostnet_1x`` preset with ``nasseg weights import``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.mobilenet import make_divisible
from nasseg.errors import BlockArgumentError
from nasseg.layers import SE
from nasseg.registry import Arg, register


class GhostModule(nn.Module):
    """Ghost module (Sec. 3.1, Fig. 2b): a 1x1 "primary" conv makes ceil(out / s) intrinsic maps, a depthwise
    d x d "cheap operation" makes (s - 1) ghost maps from each; concat, keep the first ``out_channels``.

    Official ``GhostModule(inp, oup, kernel_size=1, ratio=s, dw_size=d, stride=1, relu)``: each conv
    (no bias) is followed by BN and, when ``relu``, ReLU (an empty Sequential otherwise, so the index-2
    child holds no weights either way).  The primary conv's kernel and stride are 1 everywhere GhostNet uses
    the module and are not offered.
    """

    def __init__(self, in_channels: int, out_channels: int, *, ratio: int = 2, dw_size: int = 3, relu: bool = True):
        super().__init__()
        self.out_channels = out_channels
        init_channels = math.ceil(out_channels / ratio)
        new_channels = init_channels * (ratio - 1)
        # intrinsic feature maps: 1x1 conv
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_channels, init_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )
        # ghost maps: a depthwise d x d linear transformation of each intrinsic map ((s - 1) per map)
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False),
            nn.BatchNorm2d(new_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        # identity (intrinsic maps) and ghost maps side by side, cut to the requested width
        return torch.cat([x1, x2], dim=1)[:, : self.out_channels]


@register(
    "ghost",
    kind="block",
    args=[
        Arg("expansion", "float", 3.0, low=0.0, high=8.0, low_open=True,
            doc="hidden width = make_divisible(in_channels * expansion, 4) (GhostNet Table 1: #exp / #in, "
                "1 ... 6, e.g. 184/80 = 2.3)"),
        Arg("kernel_size", "int", 3, choices=(3, 5),
            doc="kernel of the stride-2 depthwise conv and of the shortcut's depthwise conv (Table 1: 3 or 5)"),
        Arg("se", "bool", False, doc="squeeze-excitation on the hidden width (ratio 0.25, hard-sigmoid gate)"),
        Arg("ratio", "int", 2, choices=(2, 3, 4, 5),
            doc="s of the Ghost modules: 1/s of the maps are intrinsic (Sec. 4.1, Table 3; GhostNet: 2)"),
        Arg("dw_size", "int", 3, choices=(1, 3, 5, 7),
            doc="d, the kernel of the Ghost modules' cheap depthwise conv (Sec. 4.1, Table 2; GhostNet: 3)"),
    ],
    examples=[
        {"in_channels": 16, "out_channels": 16, "stride": 1, "expansion": 1.0},
        {"in_channels": 16, "out_channels": 24, "stride": 2},
        {"in_channels": 24, "out_channels": 40, "stride": 2, "kernel_size": 5, "se": True},
        {"in_channels": 80, "out_channels": 112, "stride": 1, "expansion": 6.0, "se": True},
        {"in_channels": 80, "out_channels": 80, "stride": 1, "expansion": 2.3},
        {"in_channels": 32, "out_channels": 48, "stride": 2, "ratio": 3, "dw_size": 5},
    ],
)
class GhostBottleneck(nn.Module):
    """Ghost bottleneck (GhostNet, CVPR 2020, Sec. 3.2, Fig. 3): Ghost module in -> hidden (BN + ReLU);
    at stride 2 a depthwise k x k stride-2 conv + BN (no activation); optional squeeze-excitation; Ghost module
    hidden -> out (BN, no ReLU); + shortcut.

    The shortcut is the identity when stride 1 and in == out, otherwise depthwise k x k (stride) + BN ->
    1x1 conv in -> out + BN, as the official ``GhostBottleneck``; no conv has a bias.  The SE is the
    official ``SqueezeExcite``: squeeze width ``make_divisible(hidden * 0.25, 4)``, 1x1 convs with bias, ReLU,
    gate ``relu6(x + 3) / 6`` (= ``F.hardsigmoid``).  BN eps 1e-5, momentum 0.1 (torch defaults, as the
    official code).  The hidden width is given as a ratio of the input width (official: an absolute
    ``mid_chs``, rounded to a multiple of 4 when a width multiplier is used) and rounded the same way.

    Divergences from the official code: none in layers or order.  The Ghost modules' s and d are arguments
    (the official bottleneck always uses 2 and 3; the paper's Tables 2-3 vary them).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        expansion: float = 3.0,
        kernel_size: int = 3,
        se: bool = False,
        ratio: int = 2,
        dw_size: int = 3,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise BlockArgumentError("ghost", "stride", stride, "allowed: 1, 2")
        hidden = make_divisible(in_channels * expansion, 4)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hidden_channels = hidden
        pad = (kernel_size - 1) // 2

        # point-wise expansion (Ghost module with ReLU)
        self.ghost1 = GhostModule(in_channels, hidden, ratio=ratio, dw_size=dw_size, relu=True)
        # depthwise stride-2 conv (only in the downsampling bottleneck)
        if stride > 1:
            self.conv_dw = nn.Conv2d(hidden, hidden, kernel_size, stride, pad, groups=hidden, bias=False)
            self.bn_dw = nn.BatchNorm2d(hidden)
        else:
            self.conv_dw, self.bn_dw = nn.Identity(), nn.Identity()
        # squeeze-excitation on the hidden width
        squeeze = make_divisible(hidden * 0.25, 4)
        self.se = SE(hidden, squeeze, act="relu", gate=F.hardsigmoid) if se else nn.Identity()
        # point-wise linear projection (Ghost module without ReLU)
        self.ghost2 = GhostModule(hidden, out_channels, ratio=ratio, dw_size=dw_size, relu=False)
        # shortcut: identity, or depthwise conv + BN -> 1x1 conv + BN
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel_size, stride, pad, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        # Ghost module 1 (expansion)
        x = self.ghost1(x)
        # depthwise stride-2 conv + BN (identity at stride 1)
        x = self.bn_dw(self.conv_dw(x))
        # squeeze-excitation (identity when off)
        x = self.se(x)
        # Ghost module 2 (projection), then the shortcut
        return self.ghost2(x) + self.shortcut(residual)
