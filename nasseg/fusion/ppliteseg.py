"""PP-LiteSeg's unified attention fusion module (Peng et al., arXiv 2204.02681, Sec. 3.2, Fig. 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register


@register("uafm", kind="fusion", args=[
    Arg("attention", "str", "spatial",
        "spatial: one weight per pixel from [mean, max] over channels (UAFM_SpAtten, the released default); "
        "channel: one weight per channel from [avg, max] pooling (UAFM_ChAtten)",
        choices=("spatial", "channel")),
    Arg("upsample", "str", "bilinear", "how `high` is resized to `low` (PaddleSeg resize_mode)",
        choices=("bilinear", "nearest")),
], examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
    {"low_channels": 32, "high_channels": 64, "out_channels": 48, "attention": "channel",
     "upsample": "nearest"},
])
class UAFM(nn.Module):
    """Unified Attention Fusion Module: x' = ConvBNReLU 3x3(low -> high_ch); y' = up(high);
    a = attention(x', y'); out = ConvBNReLU 3x3(x' * a + y' * (1 - a)) -> out_channels.

    Official code PaddleSeg ``paddleseg/models/layers/tensor_fusion.py`` (``UAFM``, ``UAFM_SpAtten``,
    ``UAFM_ChAtten``) and ``tensor_fusion_helper.py``; built by ``pp_liteseg.py`` ``PPLiteSegHead`` as
    ``UAFM_SpAtten(x_ch=tap, y_ch=previous width, out_ch=arm_out_chs[i], ksize=3, resize_mode='bilinear')``.
    All convs are bias-free (``bias_attr=False``); Paddle BN defaults (momentum 0.9 in Paddle's sense,
    epsilon 1e-5) equal PyTorch's (momentum 0.1, eps 1e-5).

    * spatial: A = cat[mean_c(x'), max_c(x'), mean_c(y'), max_c(y')] (4 channels, this order) ->
      ConvBNReLU 3x3 4 -> 2 -> ConvBN 3x3 2 -> 1 -> sigmoid.
    * channel: A = cat[avgpool(x'), avgpool(y'), maxpool(x'), maxpool(y')] (4 * high_ch, this order) ->
      ConvBN 1x1 -> high_ch // 2 -> LeakyReLU(0.01) -> ConvBN 1x1 -> high_ch -> sigmoid.

    Divergence: ``UAFM_SpAtten`` stores the ``1`` of ``1 - a`` as a frozen one-element parameter
    (``_scale``, 1.0, ``stop_gradient``); here it is the literal 1, so a spatial UAFM counts one parameter
    fewer than Paddle's total.  Bilinear upsampling uses align_corners=False (Paddle's default).
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, attention: str,
                 upsample: str):
        super().__init__()
        self.conv_x = ConvBNAct(low_channels, high_channels, 3)
        self.conv_out = ConvBNAct(high_channels, out_channels, 3)
        if attention == "spatial":
            self.conv_xy_atten = nn.Sequential(ConvBNAct(4, 2, 3), ConvBNAct(2, 1, 3, act="none"))
        else:
            if high_channels < 2:
                raise BlockArgumentError("uafm", "attention", attention,
                                         f"'spatial' only: 'channel' squeezes high_channels={high_channels} "
                                         "to high_channels // 2, which must be >= 1")
            squeeze = ConvBNAct(4 * high_channels, high_channels // 2, 1, act="none")
            squeeze.act = nn.LeakyReLU(0.01)  # Paddle's nn.LeakyReLU default slope (make_act's is 0.1)
            expand = ConvBNAct(high_channels // 2, high_channels, 1, act="none")
            self.conv_xy_atten = nn.Sequential(squeeze, expand)
        self.attention = attention
        self.upsample = upsample
        self.out_channels = out_channels

    def _atten_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.attention == "spatial":  # helper.avg_max_reduce_channel([x, y])
            return torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True),
                              y.mean(1, keepdim=True), y.amax(1, keepdim=True)], dim=1)
        # helper.avg_max_reduce_hw([x, y]): all averages first, then all maxima
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_avg_pool2d(y, 1),
                          F.adaptive_max_pool2d(x, 1), F.adaptive_max_pool2d(y, 1)], dim=1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.conv_x(low)  # x' = ConvBNReLU 3x3 low -> high_ch
        y = resize_to(high, x.shape[-2:], self.upsample, align_corners=False)  # y' = up(high)
        a = torch.sigmoid(self.conv_xy_atten(self._atten_input(x, y)))  # alpha
        return self.conv_out(x * a + y * (1 - a))  # fuse, then ConvBNReLU 3x3 -> out
