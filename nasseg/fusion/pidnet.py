"""PIDNet's fusions (Xu et al., "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID
Controllers", CVPR 2023, Sec. 3.2, Fig. 5/6): Pag (P <- I), Bag and Light-Bag (P, I guided by D).

Official code XuJiacong/PIDNet ``models/model_utils.py`` (``PagFM``, ``Bag``, ``Light_Bag``) and
``models/pidnet.py``: PIDNet-S/M build ``PagFM(2C, C)`` twice and ``Light_Bag(4C, 4C)``; PIDNet-L builds
``PagFM(2C, C)`` twice and ``Bag(4C, 4C)`` (C = 32 for S, 64 for M and L).  Every ``high`` is resized
to ``low`` bilinearly with align_corners=False (``algc = False``).  The BNs use PyTorch defaults, as
officially.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import BNAct, ConvBNAct, resize_to
from nasseg.registry import Arg, register


def _same_width(name: str, argument: str, value: int, need: int, why: str) -> None:
    if value != need:
        raise BlockArgumentError(name, argument, value, f"must equal {need} ({why})")


def _up(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return resize_to(x, size, "bilinear", align_corners=False)


@register("pag", kind="fusion", args=[
    Arg("mid_channels", "int", 0, "width of the 1x1 query/key projections; 0 = low_channels // 2 "
        "(PIDNet PagFM(2C, C))", low=0, high=4096),
    Arg("after_relu", "bool", False, "apply ReLU to both inputs first (PagFM after_relu; PIDNet: false)"),
    Arg("with_channel", "bool", False, "per-channel similarity through a 1x1 ConvBN mid -> low "
        "(PagFM with_channel; PIDNet: false)"),
], examples=[
    {"low_channels": 32, "high_channels": 32, "out_channels": 32},
    {"low_channels": 32, "high_channels": 32, "out_channels": 32, "mid_channels": 8, "after_relu": True,
     "with_channel": True},
])
class PagFM(nn.Module):
    """Pixel-attention-guided fusion: s = sigmoid(sum_c f_x(x) * up(f_y(y))); out = (1 - s) x + s up(y).

    x = ``low`` (P branch), y = ``high`` (I branch, already compressed to P's width officially by a 1x1
    ConvBN outside the module).  f_x, f_y: 1x1 conv (no bias) + BN, low -> mid.  With ``with_channel``,
    s = sigmoid(ConvBN 1x1 mid -> low (f_x(x) * up(f_y(y)))) per channel instead of one map.

    The blend keeps P's width.  Where ``high_channels`` differs from ``low_channels``, y first passes a
    1x1 ConvBN ``compress`` to P's width -- what PIDNet does outside the module (its ``compression3/4``,
    4C -> 2C and 8C -> 2C) -- and where ``out_channels`` differs, a 1x1 ConvBN ``project`` follows the
    blend (divergence: PIDNet has none, its widths always agree; these let Pag be a link of the generic
    decoder chain).  With equal widths the module is exactly the official ``PagFM``.
    Divergence: the official ``after_relu`` ReLU is in place and so also changes the caller's tensors;
    here it is not in place.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, mid_channels: int,
                 after_relu: bool, with_channel: bool):
        super().__init__()
        mid = mid_channels or max(low_channels // 2, 1)
        self.compress = ConvBNAct(high_channels, low_channels, 1, act="none") if high_channels != low_channels \
            else nn.Identity()
        self.f_x = ConvBNAct(low_channels, mid, 1, act="none")
        self.f_y = ConvBNAct(low_channels, mid, 1, act="none")
        self.up = ConvBNAct(mid, low_channels, 1, act="none") if with_channel else nn.Identity()
        self.project = ConvBNAct(low_channels, out_channels, 1, act="none") if out_channels != low_channels \
            else nn.Identity()
        self.after_relu = after_relu
        self.with_channel = with_channel
        self.mid_channels = mid
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        if self.after_relu:
            low, high = F.relu(low), F.relu(high)
        size = low.shape[-2:]
        high = self.compress(high)  # I to P's width (PIDNet's compression, identity when widths agree)
        sim = self.f_x(low) * _up(self.f_y(high), size)  # key * query, at P's size
        if self.with_channel:
            s = torch.sigmoid(self.up(sim))  # per channel
        else:
            s = torch.sigmoid(sim.sum(dim=1, keepdim=True))  # one map
        return self.project((1 - s) * low + s * _up(high, size))


class _BoundaryGuided(nn.Module):
    """Shared constructor checks of Bag and Light-Bag: three inputs P (low), I (high), D (guide)."""

    num_inputs = 3

    def __init__(self, name: str, low_channels: int, high_channels: int, out_channels: int):
        super().__init__()
        _same_width(name, "high_channels", high_channels, low_channels,
                    "the boundary attention mixes P and I per element")
        self.guide_channels = low_channels
        self.out_channels = out_channels


@register("bag", kind="fusion", examples=[
    {"low_channels": 32, "high_channels": 32, "out_channels": 48},
])
class Bag(_BoundaryGuided):
    """Boundary-attention-guided fusion (PIDNet-L): s = sigmoid(d); out = Conv3x3(ReLU(BN(s p + (1 - s) i))).

    p = ``low`` (P branch), i = ``high`` (I branch, resized to P), d = ``guide`` (D branch, resized to P
    if needed); s is element-wise over all ``guide_channels`` (= ``low_channels``) channels.  The
    output conv is pre-activation BN-ReLU-Conv 3x3 (no bias), low -> out.  ``high_channels`` must equal
    ``low_channels``.  No divergence from the official ``Bag`` is known.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int):
        super().__init__("bag", low_channels, high_channels, out_channels)
        self.conv = nn.Sequential(BNAct(low_channels), nn.Conv2d(low_channels, out_channels, 3, padding=1,
                                                                  bias=False))

    def forward(self, low: torch.Tensor, high: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        size = low.shape[-2:]
        s = torch.sigmoid(_up(guide, size))  # boundary attention from D
        return self.conv(s * low + (1 - s) * _up(high, size))  # P at edges, I elsewhere -> BN-ReLU-Conv


@register("light_bag", kind="fusion", examples=[
    {"low_channels": 32, "high_channels": 32, "out_channels": 48},
])
class LightBag(_BoundaryGuided):
    """Light boundary-attention-guided fusion (PIDNet-S/M): s = sigmoid(d);
    out = ConvBN 1x1((1 - s) i + p) + ConvBN 1x1(i + s p).

    p = ``low``, i = ``high`` (resized to P), d = ``guide``; both 1x1 convs are bias-free, low -> out.
    ``high_channels`` must equal ``low_channels``.  No divergence from the official ``Light_Bag`` is known.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int):
        super().__init__("light_bag", low_channels, high_channels, out_channels)
        self.conv_p = ConvBNAct(low_channels, out_channels, 1, act="none")
        self.conv_i = ConvBNAct(low_channels, out_channels, 1, act="none")

    def forward(self, low: torch.Tensor, high: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        size = low.shape[-2:]
        s = torch.sigmoid(_up(guide, size))  # boundary attention from D
        i = _up(high, size)
        return self.conv_p((1 - s) * i + low) + self.conv_i(i + s * low)
