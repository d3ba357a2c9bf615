"""SFNet's flow alignment module (Li et al., "Semantic Flow for Fast and Accurate Scene Parsing",
ECCV 2020, Sec. 3.2, Fig. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register


def flow_warp(x: torch.Tensor, flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sample ``x`` at an (H, W) grid offset by ``flow`` (N, 2, H, W), exactly as SFSegNets does.

    The base grid is ``linspace(-1, 1)`` in x and y at the output size; the flow (x, y order) is divided
    by (W, H) of the output -- not by (W - 1) / 2 -- and sampling is bilinear, zero padding,
    ``align_corners=True``.
    """
    out_h, out_w = size
    ys = torch.linspace(-1.0, 1.0, out_h, device=x.device)  # float32 first, then cast (official type_as)
    xs = torch.linspace(-1.0, 1.0, out_w, device=x.device)
    grid = torch.stack([xs.view(1, -1).expand(out_h, out_w), ys.view(-1, 1).expand(out_h, out_w)], dim=-1)
    norm = torch.tensor([out_w, out_h], dtype=x.dtype, device=x.device)
    grid = grid.to(x.dtype).unsqueeze(0) + flow.permute(0, 2, 3, 1) / norm
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _proj(in_channels: int, out_channels: int) -> nn.Module:
    """1x1 ConvBN (no activation) where the widths differ, nothing where they agree."""
    if in_channels == out_channels:
        return nn.Identity()
    return ConvBNAct(in_channels, out_channels, 1, act="none")


@register("fam", kind="fusion", args=[
    Arg("flow_channels", "int", 0, "width of the 1x1-reduced features the flow is predicted from; "
        "0 = high_channels // 2 (official AlignedModule(fpn_dim, fpn_dim // 2))", low=0, high=4096),
], examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
    {"low_channels": 48, "high_channels": 48, "out_channels": 48, "flow_channels": 8},
])
class FAM(nn.Module):
    """Flow Alignment Module with SFNet's lateral sum: out = warp(P_h(high), flow) + P_l(low).

    Official code lxtGH/SFSegNets ``network/nn/operators.py`` ``AlignedModule(inplane, outplane)`` and its
    use in ``network/sfnet_resnet.py`` ``UperNetAlignHead``:
    ``f = fpn_out_align[i]([conv_x, f]); f = conv_x + f``.
    Steps: down_h = Conv1x1(high -> flow_ch), down_l = Conv1x1(low -> flow_ch), both without bias or BN;
    down_h(high) is upsampled bilinear (align_corners=True) to low's size; flow = Conv3x3(2 flow_ch -> 2,
    no bias) over cat(down_h, down_l); the **un-reduced** high feature is warped with ``flow_warp``.

    Divergences: (1) the lateral ``+ low`` of the decoder is part of this module, so the output is a
    fusion, not just the aligned high feature.  (2) Officially low and high both have fpn_dim channels and
    so does the output; where ``low_channels`` or ``high_channels`` differ from ``out_channels`` a 1x1
    ConvBN projection (P_l, P_h) is added, P_h applied to high at its own (coarse) resolution before the
    warp.  Where all three widths agree both are identities and the parameters are exactly
    ``AlignedModule(high_channels, flow_channels)``.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, flow_channels: int):
        super().__init__()
        flow_channels = flow_channels or max(high_channels // 2, 1)
        self.down_h = nn.Conv2d(high_channels, flow_channels, 1, bias=False)
        self.down_l = nn.Conv2d(low_channels, flow_channels, 1, bias=False)
        self.flow_make = nn.Conv2d(2 * flow_channels, 2, 3, padding=1, bias=False)
        self.proj_low = _proj(low_channels, out_channels)
        self.proj_high = _proj(high_channels, out_channels)
        self.flow_channels = flow_channels
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        size = tuple(low.shape[-2:])
        h = resize_to(self.down_h(high), size, "bilinear", align_corners=True)  # reduce, then upsample
        flow = self.flow_make(torch.cat([h, self.down_l(low)], dim=1))  # 2-channel flow at low's size
        aligned = flow_warp(self.proj_high(high), flow, size)  # warp the un-reduced high feature
        return aligned + self.proj_low(low)  # SFNet decoder's lateral sum
