"""Fast-SCNN's feature fusion module (Poudel et al., "Fast-SCNN", BMVC 2019, Sec. 3.2.3, Table 2)."""

from __future__ import annotations

import math

import torch
from torch import nn

from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import register


@register("fastscnn_ffm", kind="fusion", examples=[
    {"low_channels": 64, "high_channels": 128, "out_channels": 128},
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},  # depthwise groups = gcd(64, 48) = 16
    {"low_channels": 48, "high_channels": 96, "out_channels": 96},
])
class FastSCNNFeatureFusion(nn.Module):
    """Fast-SCNN's two-branch feature fusion (BMVC 2019, Table 2), as Tramac/Fast-SCNN-pytorch's
    ``FeatureFusionModule(higher_in, lower_in, out)``.

    There is no code from the paper's authors; the reference is Tramac/Fast-SCNN-pytorch ``models/fast_scnn.py``
    (commit 0638517).  ``low`` is the high-resolution (learning-to-downsample, 1/8) feature, ``high`` the
    low-resolution global feature (1/32):

    * high: bilinear upsample (align_corners=True) to low's size -> 3x3 depthwise conv high -> out (no bias) ->
      BN -> ReLU -> 1x1 conv out -> out (**with bias**) -> BN;
    * low: 1x1 conv low -> out (with bias) -> BN;
    * sum -> ReLU.

    ``FeatureFusionModule(64, 128, 128)`` has 26,752 parameters, as this module.
    Divergences from the paper, kept from the reference: the depthwise conv has no dilation (Table 2: dilation
    X = 4) and the 1x1 convs keep a bias before their BN.  Divergences from the reference: it upsamples by a
    fixed factor 4, here to low's size (the same result when low is exactly 4x high, which Fast-SCNN's inputs
    give, and no shape error otherwise); its depthwise conv has groups = high_channels, which needs
    out % high == 0; here groups = gcd(high, out), the same whenever the reference builds at all.
    Submodules (the official names): ``dwconv``, ``conv_lower_res`` (for high), ``conv_higher_res`` (for low).
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int):
        super().__init__()
        self.dwconv = ConvBNAct(high_channels, out_channels, 3, groups=math.gcd(high_channels, out_channels))
        self.conv_lower_res = ConvBNAct(out_channels, out_channels, 1, bias=True, act="none")
        self.conv_higher_res = ConvBNAct(low_channels, out_channels, 1, bias=True, act="none")
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = resize_to(high, low.shape[-2:], "bilinear", align_corners=True)  # low-resolution branch up
        high = self.conv_lower_res(self.dwconv(high))
        return self.relu(self.conv_higher_res(low) + high)
