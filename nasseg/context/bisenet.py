"""BiSeNet V2 context embedding block (Yu et al., "BiSeNet V2", IJCV 2021, Sec. 4.2, Fig. 4d).

Reference code (the authors released none): ``CoinCheung/BiSeNet`` ``lib/models/bisenetv2.py`` ``CEBlock``
(read at 6b4b67a); submodule names kept (``bn``, ``conv_gap``, ``conv_last``) so its checkpoints map.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct
from nasseg.registry import register


@register("ce", kind="context", examples=[
    {"in_channels": 64, "out_channels": 64},
    {"in_channels": 128, "out_channels": 128},
])
class ContextEmbedding(nn.Module):
    """CE block: g = ConvBNReLU 1x1(BN(GAP(x))); out = ConvBNReLU 3x3(x + g) (g broadcast over H x W).

    ``bn`` normalises the pooled vector; ``conv_gap`` = ConvBNReLU 1x1 (in -> out); ``conv_last`` =
    ConvBNReLU 3x3 (out -> out).  The residual sum needs ``in_channels == out_channels`` (as officially,
    128 -> 128).  The paper draws ``conv_last`` as a plain 3x3 conv; the re-implementation (followed here)
    adds BN + ReLU.  Like BiSeNet V1's global context, the BNs on the pooled vector need a training batch of
    at least 2.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if in_channels != out_channels:
            raise BlockArgumentError("ce", "out_channels", out_channels,
                                     f"allowed: {in_channels} (the CE block adds its input: out_channels must "
                                     "equal in_channels)")
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv_gap = ConvBNAct(in_channels, out_channels, 1)
        self.conv_last = ConvBNAct(out_channels, out_channels, 3)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.mean(x, dim=(2, 3), keepdim=True)  # global average pooling
        g = self.conv_gap(self.bn(g))  # BN -> 1x1 ConvBNReLU
        return self.conv_last(x + g)  # broadcast sum -> 3x3 ConvBNReLU
