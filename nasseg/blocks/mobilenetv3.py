"""MobileNetV3 bottleneck (Howard et al., "Searching for MobileNetV3", ICCV 2019, Sec. 5.2 (hard-swish),
Sec. 5.3 / Fig. 4 (the MobileNetV2 block with squeeze-excite), Table 1 (MobileNetV3-Large)).

Follows torchvision's ``models/mobilenetv3.py`` (pytorch/vision 00542d9; the reference whose ImageNet weights
people load): ``InvertedResidual`` with ``SqueezeExcitation``, BN eps 1e-3 and momentum 0.01.  torchvision's
``mobilenet_v3_large`` checkpoint imports into the ``mobilenetv3_large`` preset with ``nasseg weights import``
(torchvision's ``block.0`` ... ``block.3`` are this block's ``expand``, ``dw``, ``se``, ``project``).

Why a block of its own rather than more arguments of ``mbconv``: MobileNetV3's expanded widths are not integer
multiples of the input (200/80, 184/80, 72/24 ...), it skips the expand conv when the expanded width equals the
input (not when t = 1), rounds widths to multiples of 8, uses BN eps 1e-3 and momentum 0.01, and can dilate the
depthwise conv; ``mbconv``'s integer ``expansion`` and eps 1e-5 are MobileNetV2's, and every argument added to
``mbconv`` would be written into (and change the ids of) the genomes that already use it.  The submodule
names are ``mbconv``'s (``expand``, ``dw``, ``se``, ``project``) so the two read alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.mobilenet import make_divisible
from nasseg.errors import BlockArgumentError
from nasseg.layers import SE, ConvBNAct
from nasseg.registry import Arg, register

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@register(
    "mbv3",
    kind="block",
    args=[
        Arg("expansion", "float", 6.0, low=0.0, high=8.0, low_open=True,
            doc="expanded width = make_divisible(in_channels * expansion, 8) (Table 1: #exp / #in, 1 ... 6, "
                "e.g. 184/80 = 2.3)"),
        Arg("kernel_size", "int", 3, choices=(3, 5), doc="depthwise kernel (Table 1: 3 or 5)"),
        Arg("act", "str", "hardswish", choices=("relu", "hardswish"),
            doc="nonlinearity of the expand and depthwise convs (Table 1 NL: RE or HS, Sec. 5.2)"),
        Arg("se", "bool", False, doc="squeeze-excite after the depthwise conv (Sec. 5.3, hard-sigmoid gate)"),
        Arg("dilation", "int", 1, choices=(1, 2, 4),
            doc="depthwise dilation (torchvision's dilated tail for segmentation, Sec. 6.4); needs stride 1"),
    ],
    examples=[
        {"in_channels": 16, "out_channels": 16, "stride": 1, "expansion": 1.0, "act": "relu"},
        {"in_channels": 16, "out_channels": 24, "stride": 2, "expansion": 4.0, "act": "relu"},
        {"in_channels": 24, "out_channels": 40, "stride": 2, "expansion": 3.0, "kernel_size": 5, "se": True},
        {"in_channels": 80, "out_channels": 80, "stride": 1, "expansion": 2.3},
        {"in_channels": 80, "out_channels": 112, "stride": 1, "se": True},
        {"in_channels": 160, "out_channels": 160, "stride": 1, "kernel_size": 5, "se": True, "dilation": 2},
    ],
)
class MobileNetV3Block(nn.Module):
    """MobileNetV3 bottleneck (ICCV 2019, Sec. 5.3, Fig. 4): 1x1 expand conv in -> hidden + BN + act (left out
    when hidden == in); k x k depthwise conv (stride, dilation) + BN + act; optional squeeze-excite; 1x1 linear
    projection hidden -> out + BN; + input when stride 1 and in == out.

    torchvision's ``InvertedResidual``: hidden = ``_make_divisible(in * t, 8)``; no conv bias; BN eps 1e-3,
    momentum 0.01; act ReLU or hard-swish; the SE (``SqueezeExcitation``) squeezes to
    ``_make_divisible(hidden // 4, 8)`` with 1x1 convs with bias and ReLU, gated by hard-sigmoid.

    Divergences from torchvision: the expanded width is given as a ratio of the input (torchvision: an
    absolute width, also rounded to a multiple of 8), which gives the same widths for every MobileNetV3-Large
    and -Small row; a dilated block must be given stride 1 (torchvision silently turns the stride of a
    dilated block into 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        expansion: float = 6.0,
        kernel_size: int = 3,
        act: str = "hardswish",
        se: bool = False,
        dilation: int = 1,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise BlockArgumentError("mbv3", "stride", stride, "allowed: 1, 2")
        if dilation > 1 and stride > 1:
            raise BlockArgumentError("mbv3", "dilation", dilation,
                                     "allowed: 1 at stride 2 (a dilated MobileNetV3 block runs at stride 1)")
        hidden = make_divisible(in_channels * expansion, 8)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hidden_channels = hidden
        self.use_residual = stride == 1 and in_channels == out_channels

        # expand (point-wise); left out when the expanded width equals the input width
        self.expand = (ConvBNAct(in_channels, hidden, 1, act=act, bn_eps=BN_EPS) if hidden != in_channels
                       else nn.Identity())
        # depthwise
        self.dw = ConvBNAct(hidden, hidden, kernel_size, stride, dilation=dilation, groups=hidden, act=act,
                            bn_eps=BN_EPS)
        # squeeze-excite with the hard-sigmoid gate
        self.se = SE(hidden, make_divisible(hidden // 4, 8), act="relu", gate=F.hardsigmoid) if se else nn.Identity()
        # linear projection (point-wise, no activation)
        self.project = ConvBNAct(hidden, out_channels, 1, act="none", bn_eps=BN_EPS)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = BN_MOMENTUM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_residual else y
