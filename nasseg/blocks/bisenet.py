"""BiSeNet V2 semantic-branch blocks: the stem block and the gather-and-expand layer.

Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time Semantic Segmentation",
IJCV 2021, Sec. 4.2, Fig. 4 (a) stem block, (b)/(c) gather-and-expand layer.  The authors released no code;
the reference is the widely used re-implementation ``CoinCheung/BiSeNet`` ``lib/models/bisenetv2.py``
(``StemBlock``, ``GELayerS1``, ``GELayerS2``; read at 6b4b67a), whose submodule names are kept so that its
checkpoints map one to one (``nasseg.weights``, preset ``bisenetv2``).  Its ``ConvBNReLU`` is this
project's ``ConvBNAct`` (``conv``/``bn`` keep their names; the parameter-free ``relu`` is ``act`` here).
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct
from nasseg.registry import Arg, register


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
             relu: bool = False) -> list[nn.Module]:
    """Bare conv (no bias) + BN [+ ReLU] as a list, so a Sequential of it has the official indices."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


@register("bisenetv2_stem", kind="block", examples=[
    {"in_channels": 3, "out_channels": 16, "stride": 4},
    {"in_channels": 8, "out_channels": 24, "stride": 4},
])
class StemBlock(nn.Module):
    """BiSeNet V2 stem block (Fig. 4a): 1/4 resolution in two parallel downsamplings.

    ``conv`` = ConvBNReLU 3x3 s2 (in -> out); ``left`` = ConvBNReLU 1x1 (out -> out/2) -> ConvBNReLU 3x3 s2
    (out/2 -> out); ``right`` = MaxPool 3x3 s2 p1; ``fuse`` = ConvBNReLU 3x3 over cat(left, right) (2 out ->
    out).  The official class fixes in = 3, out = 16; here both are arguments (out/2 rounds down).  The
    stride is always 4.  No divergence from ``CoinCheung/BiSeNet`` ``StemBlock`` is known.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 4):
        super().__init__()
        if stride != 4:
            raise BlockArgumentError("bisenetv2_stem", "stride", stride, "allowed: 4 (the stem block is a 1/4 stem)")
        if out_channels < 2:
            raise BlockArgumentError("bisenetv2_stem", "out_channels", out_channels, "allowed: at least 2")
        self.conv = ConvBNAct(in_channels, out_channels, 3, 2)
        self.left = nn.Sequential(
            ConvBNAct(out_channels, out_channels // 2, 1),
            ConvBNAct(out_channels // 2, out_channels, 3, 2),
        )
        self.right = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=False)
        self.fuse = ConvBNAct(2 * out_channels, out_channels, 3)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # 3x3 s2
        left = self.left(x)  # 1x1 squeeze -> 3x3 s2
        right = self.right(x)  # 3x3 max pool s2
        return self.fuse(torch.cat([left, right], dim=1))  # concat -> 3x3


@register("ge", kind="block", args=[
    Arg("expansion", "int", 6, "width of the depthwise expansion: in_channels * expansion (paper: 6)",
        low=1, high=12),
], examples=[
    {"in_channels": 32, "out_channels": 32, "stride": 1},
    {"in_channels": 16, "out_channels": 32, "stride": 2},
    {"in_channels": 32, "out_channels": 64, "stride": 1, "expansion": 2},
])
class GatherExpand(nn.Module):
    """Gather-and-expand layer (Fig. 4b, stride 1 = ``GELayerS1``; Fig. 4c, stride 2 = ``GELayerS2``).

    ``conv1`` = ConvBNReLU 3x3 (in -> in, "gather"); then, with e = ``expansion``:

    * stride 1: ``dwconv`` = depthwise 3x3 (in -> in*e, groups in) + BN + ReLU;
    * stride 2: ``dwconv1`` = depthwise 3x3 s2 (in -> in*e) + BN, ``dwconv2`` = depthwise 3x3 (in*e) + BN + ReLU;

    ``conv2`` = 1x1 (in*e -> out) + BN (projection, no activation); plus the shortcut; then ReLU.  The shortcut
    is the identity at stride 1 and, at stride 2, ``shortcut`` = depthwise 3x3 s2 + BN + 1x1 (in -> out) + BN.
    The ReLUs after the depthwise convs are the re-implementation's ("not shown in paper").
    Divergence: the official stride-1 layer needs in == out; here a stride-1 layer with in != out uses the
    stride-2 shortcut's form at stride 1 (a projection), so a search may change the width anywhere.
    The official init zeroes the last BN's weight (``last_bn``); this module keeps PyTorch's default init.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, expansion: int = 6):
        super().__init__()
        if stride not in (1, 2):
            raise BlockArgumentError("ge", "stride", stride, "allowed: 1, 2")
        mid = in_channels * expansion
        self.conv1 = ConvBNAct(in_channels, in_channels, 3)
        if stride == 1:
            self.dwconv = nn.Sequential(*_conv_bn(in_channels, mid, 3, groups=in_channels, relu=True))
        else:
            self.dwconv1 = nn.Sequential(*_conv_bn(in_channels, mid, 3, 2, groups=in_channels))
            self.dwconv2 = nn.Sequential(*_conv_bn(mid, mid, 3, groups=mid, relu=True))
        self.conv2 = nn.Sequential(*_conv_bn(mid, out_channels, 1))
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(*_conv_bn(in_channels, in_channels, 3, stride, groups=in_channels),
                                          *_conv_bn(in_channels, out_channels, 1))
        self.relu = nn.ReLU(inplace=True)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv1(x)  # gather: 3x3 conv
        if self.stride == 1:
            feat = self.dwconv(feat)  # expand: depthwise 3x3
        else:
            feat = self.dwconv2(self.dwconv1(feat))  # expand + downsample, then depthwise 3x3
        feat = self.conv2(feat)  # project: 1x1
        return self.relu(feat + self.shortcut(x))
