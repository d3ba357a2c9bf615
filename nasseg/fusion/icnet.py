"""ICNet's cascade feature fusion unit (Zhao et al., "ICNet for Real-Time Semantic Segmentation on
High-Resolution Images", ECCV 2018, Sec. 3.3, Fig. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import register


@register("cff", kind="fusion", examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
])
class CFF(nn.Module):
    """Cascade Feature Fusion: out = ReLU(BN(Conv3x3 dil 2(up(high))) + BN(Conv1x1(low))).

    Official network hszhao/ICNet ``evaluation/prototxt/icnet_cityscapes_bnnomerge.prototxt`` (the
    training-form net with separate BN layers): ``conv5_4_interp`` -> ``conv_sub4`` (3x3, dilation 2, pad 2,
    ``bias_term: false``, 128) -> BN; ``conv3_1`` -> ``conv3_1_sub2_proj`` (1x1, ``bias_term: false``, 128)
    -> BN; ``sub24_sum`` (Eltwise sum) -> ReLU; the same again as ``conv_sub2`` / ``conv3_sub1_proj`` /
    ``sub12_sum``.  In ``icnet_cityscapes.prototxt`` the BNs are folded into conv biases.

    ``high`` is resized to ``low`` bilinearly with align_corners=True, which is what Caffe's ``Interp``
    (zoom_factor 2, output 2h - 1 from the odd 1025 x 2049 input) computes.  The auxiliary classifier of
    the cascade label guidance (a training head on up(high)) is not part of this module; use a head.
    BN momentum is PyTorch's default (the prototxt's BNs are frozen).
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int):
        super().__init__()
        self.conv_high = ConvBNAct(high_channels, out_channels, 3, dilation=2, act="none")  # conv_sub4 + BN
        self.conv_low = ConvBNAct(low_channels, out_channels, 1, act="none")  # conv3_1_sub2_proj + BN
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = self.conv_high(resize_to(high, low.shape[-2:], "bilinear", align_corners=True))  # up -> 3x3 d2
        return F.relu(high + self.conv_low(low))  # + projected low -> ReLU
