"""MobileNetV2 inverted residual ("MBConv"), with the MobileNetV3 squeeze-excitation as an option.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018, Sec. 3.3, Table 1;
Howard et al., "Searching for MobileNetV3", ICCV 2019, Sec. 5.3 (SE in the bottleneck).
Reference implementation: torchvision ``models/mobilenetv2.py`` (``InvertedResidual``) and
``models/mobilenetv3.py`` (``InvertedResidual``, ``SqueezeExcitation``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import ConfigError
from nasseg.layers import SE, ConvBNAct
from nasseg.registry import Arg, register


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of ``divisor``, never below 90 % of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@register(
    "mbconv",
    kind="block",
    args=[
        Arg("expansion", "int", 6, "expansion ratio t: hidden = in_channels * t", low=1, high=8),
        Arg("kernel_size", "int", 3, "depthwise kernel size", choices=(3, 5)),
        Arg("act", "str", "relu6", "activation after the expand and depthwise convs",
            choices=("relu6", "relu", "hardswish", "silu")),
        Arg("se", "bool", False, "MobileNetV3 squeeze-excitation after the depthwise conv"),
    ],
    examples=[
        {"in_channels": 32, "out_channels": 16, "stride": 1, "expansion": 1},
        {"in_channels": 16, "out_channels": 24, "stride": 2},
        {"in_channels": 40, "out_channels": 40, "stride": 1, "expansion": 3, "kernel_size": 5, "se": True},
        {"in_channels": 24, "out_channels": 40, "stride": 2, "expansion": 3, "kernel_size": 5,
         "act": "hardswish", "se": True},
    ],
)
class MBConv(nn.Module):
    """MobileNetV2 inverted residual block (Sandler et al., CVPR 2018, Sec. 3.3, Fig. 3b, Table 1).

    1x1 expand conv in -> hidden = round(in * t) -> BN -> act (left out when t = 1, as in torchvision);
    k x k depthwise conv (stride here) -> BN -> act; optional squeeze-excitation; 1x1 linear projection
    hidden -> out -> BN (no activation: the "linear bottleneck"); + input when stride 1 and in == out.
    No conv has a bias; BN eps 1e-5 (torchvision's default for MobileNetV2).

    ``se=True`` adds torchvision's MobileNetV3 ``SqueezeExcitation`` after the depthwise conv: squeeze width
    ``make_divisible(hidden // 4, 8)``, 1x1 convs with bias, ReLU inside, hard-sigmoid gate.

    Divergences: none for the defaults (``act='relu6'``, ``kernel_size=3``, ``se=False``), which is
    torchvision's ``mobilenetv2.InvertedResidual``: (32->16, s1, t=1) = 896 and (16->24, s2, t=6) = 5,136
    parameters.  MobileNetV3 blocks are reachable through the arguments, except that MobileNetV3 also allows
    expanded widths that are not an integer multiple of the input and uses BN eps 1e-3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        expansion: int,
        kernel_size: int,
        act: str,
        se: bool,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"block 'mbconv': stride = {stride!r} is not allowed; allowed: 1, 2")
        hidden = int(round(in_channels * expansion))
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.use_residual = stride == 1 and in_channels == out_channels

        # Expand (point-wise); torchvision leaves it out when t = 1
        self.expand = ConvBNAct(in_channels, hidden, 1, act=act) if expansion != 1 else nn.Identity()
        # Depthwise
        self.dw = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, act=act)
        # Squeeze-excitation (MobileNetV3)
        squeeze = make_divisible(hidden // 4, 8)
        self.se = SE(hidden, squeeze, act="relu", gate=F.hardsigmoid) if se else nn.Identity()
        # Linear bottleneck (point-wise, no activation)
        self.project = ConvBNAct(hidden, out_channels, 1, act="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_residual else y
