"""The two simplest context choices: no context at all, and BiSeNet's global-average-pooling context."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.layers import ConvBNAct
from nasseg.registry import register


@register("none", kind="context", examples=[
    {"in_channels": 64, "out_channels": 64},
    {"in_channels": 64, "out_channels": 32},  # out_channels is ignored: the output keeps 64 channels
])
class NoContext(nn.Module):
    """No context module: the identity, so a search can switch the context off.

    ``out_channels`` is accepted for the common context constructor but **ignored**: the output
    has ``in_channels`` channels, and ``self.out_channels == in_channels`` says so.  ``build.py``
    reads ``out_channels`` from the module, never from the genome, so nothing downstream is told a
    channel count the tensor does not have.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register("gap", kind="context")
class GlobalContext(nn.Module):
    """Global context of BiSeNet (Yu et al., ECCV 2018, Sec. 3.2) as used by STDC-Seg.

    STDC-Seg ``models/model_stages.py`` ``ContextPath.conv_avg``: global average pooling ->
    ConvBNReLU 1x1 (in -> out, no bias) -> broadcast back to H x W by **nearest** upsampling
    (which, from a 1x1 map, is a plain broadcast).

    Like the official code, the BN sees one value per channel and image, so training needs a batch
    of at least 2 (PyTorch refuses BN statistics over a single value).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNAct(in_channels, out_channels, 1)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.adaptive_avg_pool2d(x, 1)  # GAP
        g = self.conv(g)  # 1x1 ConvBNReLU
        return F.interpolate(g, size=x.shape[-2:], mode="nearest")  # broadcast to H x W
