"""Shared primitives used by several paper families.

Only what more than one family needs lives here: a conv-norm-act unit, activation and norm
factories, squeeze-excitation and channel shuffle.  Anything paper-specific stays in its family module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "prelu", "gelu", "silu", "hardswish", "leaky_relu", "none")


def make_act(name: str, channels: int | None = None) -> nn.Module:
    """Activation module by name. ``prelu`` is per channel (ESPNet), so it needs ``channels``."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "prelu":
        if channels is None:
            raise ValueError("make_act('prelu') needs the channel count (one slope per channel)")
        return nn.PReLU(channels)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "hardswish":
        return nn.Hardswish(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1, inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


class ConvBNAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> activation; the unit that most papers call ConvX, ConvBNReLU or CBR.

    ``padding`` defaults to ``dilation * (kernel_size // 2)`` (same size for odd kernels).
    ``kernel_size`` and ``dilation`` may be pairs for the factorised 3x1 / 1x3 convs.
    ``norm=False`` drops the BN, ``act='none'`` the activation; bias defaults to on only without BN.
    Children are named ``conv``, ``bn`` and ``act`` (weights depend on these names).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        *,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        padding: int | tuple[int, int] | None = None,
        bias: bool | None = None,
        norm: bool = True,
        act: str = "relu",
        bn_eps: float = 1e-5,
    ):
        k = _pair(kernel_size)
        d = _pair(dilation)
        if padding is None:
            padding = (d[0] * (k[0] // 2), d[1] * (k[1] // 2))
        if bias is None:
            bias = not norm
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, k, stride, padding, d, groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps) if norm else nn.Identity()
        self.act = make_act(act, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels


class BNAct(nn.Sequential):
    """BatchNorm2d -> activation (ESPNet's "BR", the pre-activation half of DDRNet/PIDNet units)."""

    def __init__(self, channels: int, *, act: str = "relu", bn_eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=bn_eps)
        self.act = make_act(act, channels)
        self.out_channels = channels


class SE(nn.Module):
    """Squeeze-and-excitation: GAP -> 1x1 conv (bias) -> act -> 1x1 conv (bias) -> gate -> scale.

    ``squeeze_channels`` is given explicitly because papers disagree on what it is derived from
    (RegSeg uses in_channels/4 of the enclosing block, MobileNetV3 out/4 rounded to 8).
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        *,
        act: str = "relu",
        gate: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = make_act(act, squeeze_channels)
        self.conv2 = nn.Conv2d(squeeze_channels, channels, 1, bias=True)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.conv2(self.act(self.conv1(s)))
        return x * self.gate(s)


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's ``DropPath``): zero a residual branch with probability ``p``
    in training and scale the kept ones by 1/(1-p); identity in eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (N, g*c, H, W) -> view (N, g, c, H, W) -> transpose -> flatten."""
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not split into {groups} groups")
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size, mode: str = "bilinear",
              align_corners: bool | None = None) -> torch.Tensor:
    """Resize ``x`` to ``size`` (H, W); a no-op when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode in ("nearest", "area"):
        return F.interpolate(x, size=tuple(size), mode=mode)
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=bool(align_corners))


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
