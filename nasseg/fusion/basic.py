"""The two plain fusions every decoder family is compared against: element-wise sum and concatenation."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register

_UPSAMPLE = Arg("upsample", "str", "bilinear",
                "how `high` is resized to `low` (bilinear: align_corners=False)", choices=("bilinear", "nearest"))


def _up(x: torch.Tensor, size: torch.Size, mode: str) -> torch.Tensor:
    return resize_to(x, size, mode, align_corners=False)


@register("add", kind="fusion", args=[_UPSAMPLE], examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
    {"low_channels": 48, "high_channels": 32, "out_channels": 48, "upsample": "nearest"},  # only Q
])
class AddFusion(nn.Module):
    """Element-wise sum, the FPN / U-Net-with-addition fusion: out = P(low) + up(Q(high)).

    P and Q are 1x1 ConvBN projections (no bias, no activation) present only where ``low_channels`` or
    ``high_channels`` differ from ``out_channels``; Q runs at high's (coarse) resolution before the
    upsampling.  Nothing follows the sum: with equal widths the module has no parameters at all.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, upsample: str):
        super().__init__()
        self.proj_low = nn.Identity() if low_channels == out_channels else ConvBNAct(
            low_channels, out_channels, 1, act="none")
        self.proj_high = nn.Identity() if high_channels == out_channels else ConvBNAct(
            high_channels, out_channels, 1, act="none")
        self.upsample = upsample
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.proj_low(low) + _up(self.proj_high(high), low.shape[-2:], self.upsample)


@register("concat", kind="fusion", args=[
    Arg("kernel_size", "int", 3, "kernel of the ConvBNReLU over the concatenation", choices=(1, 3)),
    _UPSAMPLE,
], examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
    {"low_channels": 32, "high_channels": 64, "out_channels": 48, "kernel_size": 1, "upsample": "nearest"},
])
class ConcatFusion(nn.Module):
    """Concatenation, the U-Net / DeepLabv3+ decoder fusion: out = ConvBNReLU k x k(cat(low, up(high))).

    The conv (no bias, BN, ReLU) maps low_channels + high_channels -> out_channels; ``kernel_size`` is
    1 or 3 (same padding).
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, kernel_size: int,
                 upsample: str):
        super().__init__()
        self.conv = ConvBNAct(low_channels + high_channels, out_channels, kernel_size)
        self.upsample = upsample
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([low, _up(high, low.shape[-2:], self.upsample)], dim=1))


@register("passthrough", kind="fusion", examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 64},
])
class PassThrough(nn.Module):
    """No fusion at this level: returns ``high`` (the deeper path) unchanged, upsampled to low's size; ``low``
    is ignored.  The chain decoder's level for a tap whose only reader is the context module, e.g. Fast-SCNN's
    global feature extractor (PPM on the 1/32 bottlenecks, fused only at 1/8 with the learning-to-downsample
    output).  Like the ``none`` context, ``out_channels`` is accepted and **ignored**: ``self.out_channels ==
    high_channels``.  Upsampling: bilinear, align_corners=False (a no-op when the sizes already agree).
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int):
        super().__init__()
        self.out_channels = high_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return _up(high, low.shape[-2:], "bilinear")
