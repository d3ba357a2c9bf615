"""LEDNet block: the split-shuffle non-bottleneck (SS-nbt).

Y. Wang, Q. Zhou, J. Liu, J. Xiong, G. Gao, X. Wu, L. J. Latecki, "LEDNet: A Lightweight Encoder-Decoder
Network for Real-Time Semantic Segmentation", ICIP 2019.  Official code: ``xiaoyufenfei/LEDNet``
(HEAD 5d900d9), ``train/lednet.py``, ``SS_nbt_module(chann, dropprob, dilated)``.
LEDNet's downsampler is ``nasseg.blocks.erfnet.Downsampler`` with ``odd_pool='zero_pad'``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.erfnet import BN_EPS, check_same_width_stride1, factorised_conv
from nasseg.errors import BlockArgumentError
from nasseg.layers import channel_shuffle
from nasseg.registry import Arg, register


@register(
    "ssnbt",
    kind="block",
    args=[
        Arg("dilation", "int", 1, "dilation of the second factorised pair in both halves (LEDNet 1/8 stage: "
            "1, 2, 5, 9, 2, 5, 9, 17)", low=1, high=64),
        Arg("dropout", "float", 0.0, "Dropout2d probability on both halves (LEDNet: 0.03, 0.3)",
            low=0.0, high=0.99),
    ],
    examples=[
        {"in_channels": 32, "out_channels": 32, "stride": 1},
        {"in_channels": 64, "out_channels": 64, "stride": 1, "dilation": 5, "dropout": 0.3},
    ],
)
class SSnbt(nn.Module):
    """LEDNet SS-nbt: split in halves, a factorised residual branch per half, concat, add, ReLU, shuffle.

    LEDNet (ICIP 2019) Sec. 2.1 / Fig. 2(d); official ``SS_nbt_module``.  The left half (first C/2 channels)
    runs ``3x1 -> ReLU -> 1x3 -> BN -> ReLU -> 3x1 (dil d,1) -> ReLU -> 1x3 (dil 1,d) -> BN``; the right
    half (last C/2) runs the mirror order, 1x3 first.  All convs are dense ``C/2 -> C/2`` with bias (the
    official comments say "dw" but they are not depthwise); BN eps 1e-3.  Then Dropout2d on each half,
    concat, ``+ input``, ReLU, channel shuffle with 2 groups.

    ``in_channels == out_channels`` (even) and ``stride == 1`` only; anything else raises
    ``BlockArgumentError``.  No divergence from the official code; ``dropout == 0`` is an ``nn.Identity``
    (the official code skips the call).  Parameters: ``6 C^2 + 8 C`` (SS-nbt 32 = 6,400).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, dilation: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        check_same_width_stride1("ssnbt", in_channels, out_channels, stride)
        if in_channels % 2:
            raise BlockArgumentError("ssnbt", "in_channels", in_channels, "must be even: the block splits the "
                                     "channels into two equal halves")
        h = in_channels // 2
        # left half: 3x1 first
        self.conv3x1_1_l = factorised_conv(h, vertical=True)
        self.conv1x3_1_l = factorised_conv(h, vertical=False)
        self.bn1_l = nn.BatchNorm2d(h, eps=BN_EPS)
        self.conv3x1_2_l = factorised_conv(h, vertical=True, dilation=dilation)
        self.conv1x3_2_l = factorised_conv(h, vertical=False, dilation=dilation)
        self.bn2_l = nn.BatchNorm2d(h, eps=BN_EPS)
        # right half: mirrored, 1x3 first
        self.conv3x1_1_r = factorised_conv(h, vertical=True)
        self.conv1x3_1_r = factorised_conv(h, vertical=False)
        self.bn1_r = nn.BatchNorm2d(h, eps=BN_EPS)
        self.conv3x1_2_r = factorised_conv(h, vertical=True, dilation=dilation)
        self.conv1x3_2_r = factorised_conv(h, vertical=False, dilation=dilation)
        self.bn2_r = nn.BatchNorm2d(h, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # split: first half left, second half right
        left, right = x.chunk(2, dim=1)
        # left branch: 3x1 -> 1x3, then the dilated 3x1 -> 1x3
        left = F.relu(self.conv3x1_1_l(left))
        left = F.relu(self.bn1_l(self.conv1x3_1_l(left)))
        left = F.relu(self.conv3x1_2_l(left))
        left = self.bn2_l(self.conv1x3_2_l(left))
        # right branch, mirrored: 1x3 -> 3x1, then the dilated 1x3 -> 3x1
        right = F.relu(self.conv1x3_1_r(right))
        right = F.relu(self.bn1_r(self.conv3x1_1_r(right)))
        right = F.relu(self.conv1x3_2_r(right))
        right = self.bn2_r(self.conv3x1_2_r(right))
        # dropout per half, concat, identity residual, ReLU, shuffle 2 groups
        out = torch.cat([self.dropout(left), self.dropout(right)], 1)
        return channel_shuffle(F.relu(out + x), 2)
