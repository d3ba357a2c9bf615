"""LEDNet decoder: the attention pyramid network (APN).

Y. Wang et al., "LEDNet: A Lightweight Encoder-Decoder Network for Real-Time Semantic Segmentation",
ICIP 2019, Sec. 2.2 / Fig. 3.  Official code: ``xiaoyufenfei/LEDNet`` (HEAD 5d900d9), ``train/lednet.py``
(``APN_Module``, ``Decoder``).  Submodule names follow ``APN_Module``, apart from ``conv.0`` / ``conv.1``
inside each Conv-BN-ReLU, here ``conv`` / ``bn``; ``nasseg weights import lednet`` (``nasseg.weights``) maps
an official LEDNet checkpoint onto the ``lednet`` preset, every tensor checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.heads.erfnet import single_tap
from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import register


def _cbr(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> ConvBNAct:
    """LEDNet's ``Conv2dBnRelu``: conv with bias, BN eps 1e-3, ReLU, same padding."""
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, bias=True, bn_eps=1e-3)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return resize_to(x, like.shape[-2:], align_corners=True)  # LEDNet: bilinear, align_corners=True


@register(
    "apn",
    kind="decoder",
    examples=[
        {"in_channels": (64,), "num_classes": 5, "tap_strides": (8,)},
    ],
)
class APN(nn.Module):
    """LEDNet attention pyramid network: (3-level single-channel pyramid) x (1x1 branch) + global branch.

    LEDNet (ICIP 2019) Sec. 2.2 / Fig. 3; official ``APN_Module(in_ch, out_ch)``.  Every conv is
    Conv (bias) -> BN (eps 1e-3) -> ReLU; all resizes are bilinear with align_corners=True::

        global = up(CBR 1x1 (C -> classes)(GAP(x)))
        mid    = CBR 1x1 (C -> classes)(x)
        x1 = CBR 7x7 s2 (C -> 1)(x); x2 = CBR 5x5 s2 (1 -> 1)(x1); x3 = CBR 3x3 (CBR 3x3 s2 (x2))
        p = up(up(x3) + CBR 5x5(x2)) + CBR 7x7(x1)
        out = up(p) * mid + global

    ``in_channels`` is one tap (LEDNet: the 128-channel 1/8 encoder output); ``emits_logits`` is true.

    Divergences from the official code:

    * The official ``Decoder`` hard-codes 20 output channels (19 Cityscapes classes + 1) and ignores
      ``num_classes``; here the output has ``num_classes`` channels.  Parameters: ``262 classes + 6407``
      for 128 input channels, so 11,385 for 19 classes and 11,647 for the official 20.
    * The official ``Decoder`` resizes the logits to a hard-coded 512x1024.  Here they stay at the tap's
      size and the network resizes them to the input size (``build.Network``; a LEDNet genome sets
      ``align_corners`` true to match the official bilinear, align_corners=True resize).
    * The pyramid's intermediate resizes go to the sizes of the maps they are added to; the official code
      resizes to ``h // 4`` and ``h // 2``, which is the same for sizes divisible by 4 and crashes otherwise.
    """

    emits_logits = True

    def __init__(self, in_channels: Sequence[int], num_classes: int):
        super().__init__()
        c = single_tap("apn", in_channels)
        # global pooling branch
        self.branch1 = nn.Sequential(nn.AdaptiveAvgPool2d(1), _cbr(c, num_classes, 1))
        # middle branch (a one-element Sequential, as in the official code, so checkpoint keys match)
        self.mid = nn.Sequential(_cbr(c, num_classes, 1))
        # pyramid, down path
        self.down1 = _cbr(c, 1, 7, 2)
        self.down2 = _cbr(1, 1, 5, 2)
        self.down3 = nn.Sequential(_cbr(1, 1, 3, 2), _cbr(1, 1, 3))
        # pyramid, lateral convs
        self.conv2 = _cbr(1, 1, 5)
        self.conv1 = _cbr(1, 1, 7)
        self.out_channels = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        # global branch, broadcast back to the feature size
        b1 = _up(self.branch1(x), x)
        mid = self.mid(x)
        # pyramid: three stride-2 levels down, then up with lateral 5x5 / 7x7 convs
        x1 = self.down1(x)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        p = self.conv2(x2) + _up(x3, x2)
        p = self.conv1(x1) + _up(p, x1)
        # pixel attention on the middle branch, plus the global branch
        return _up(p, x) * mid + b1
