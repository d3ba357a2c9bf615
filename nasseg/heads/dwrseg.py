"""DWRSeg decoder: the simple FCN-like decoder (upsample the deep features, concatenate, conv, classify).

H. Wei et al., "DWRSeg: Rethinking Efficient Acquisition of Multi-scale Contextual Information for Real-time
Semantic Segmentation", arXiv 2212.01173.  **No official code is public**; built from the paper's one-line
description (reference blocks.md section 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register


@register(
    "dwrseg_decoder",
    kind="decoder",
    args=[
        Arg("channels", "int", 128, "width of the fusion conv after the concatenation", low=1, high=1024),
        Arg("kernel_size", "int", 1, "kernel of the fusion conv", choices=(1, 3)),
    ],
    examples=[
        {"in_channels": (32, 64, 128), "num_classes": 5, "tap_strides": (8, 16, 32)},
        {"in_channels": (16, 32, 64, 96), "num_classes": 4, "tap_strides": (4, 8, 16, 32), "channels": 24,
         "kernel_size": 3},
    ],
)
class DWRSegDecoder(nn.Module):
    """DWRSeg FCN-like decoder: resize every tap to the shallowest one, concat, conv-BN-ReLU, 1x1 classifier.

    DWRSeg (arXiv 2212.01173) Sec. 3: "a simple FCN-like decoder ... directly upsamples the feature maps of
    the last two stages, which carry strong semantics, and concatenates them with feature maps of lower
    stages, which carry details, for the final prediction".  **No official code**; what is assumed here::

        taps (shallow -> deep), e.g. (1/8, 1/16, 1/32)
        every tap bilinearly resized (align_corners=False) to the first (shallowest) tap's size
        concat -> ConvBNAct k x k (sum(in) -> channels) -> Conv 1x1 (channels -> classes, bias)

    * With the usual three taps the two deep ones are upsampled and the shallow one is kept, which is the
      paper's sentence; more shallow taps are all resized to the shallowest (a generalisation).
    * Fusion conv: ``kernel_size`` 1 by default (FCN's score layers are 1x1 and a 3x3 conv on the full
      concatenation would dominate the cost of a 300-FPS network), width ``channels`` 128; neither is given
      in the paper.  No dropout.
    * Logits come out at the shallowest tap's size; the network resizes them to the input size.

    ``in_channels`` needs at least two taps.  Parameters: ``k^2 sum(in) channels + 2 channels +
    channels classes + classes``.
    """

    emits_logits = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, channels: int = 128, kernel_size: int = 1):
        super().__init__()
        taps = tuple(int(c) for c in in_channels)
        if len(taps) < 2:
            raise BlockArgumentError("dwrseg_decoder", "in_channels", taps, "needs at least two taps "
                                     "(shallow -> deep), e.g. the 1/8, 1/16 and 1/32 stage outputs")
        self.fuse = ConvBNAct(sum(taps), channels, kernel_size)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=True)
        self.out_channels = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        # upsample the deeper stages to the shallowest tap and concatenate
        y = torch.cat([resize_to(f, size, align_corners=False) for f in feats], 1)
        # fusion conv, classifier
        return self.classifier(self.fuse(y))
