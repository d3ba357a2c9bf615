"""PSPNet's pyramid pooling module (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017, Sec. 3.2)."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import ConfigError
from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register


@register("ppm", kind="context", args=[
    Arg("bins", "ints", (1, 2, 3, 6), "pooled grid sides, one branch each (PSPNet Fig. 3)", low=1, high=16,
        max_len=8),
])
class PPM(nn.Module):
    """Pyramid pooling module of PSPNet (CVPR 2017, Sec. 3.2, Fig. 3).

    Official PyTorch code ``hszhao/semseg`` ``model/pspnet.py`` ``PPM``: for every bin b,
    AdaptiveAvgPool(b) -> 1x1 conv (no bias) in -> in/len(bins) -> BN -> ReLU -> bilinear
    upsample (align_corners=True); the branches are concatenated **with the input**
    (in + len(bins) * in/len(bins) channels).  Then, as PSPNet's classifier head (``cls``) and
    PaddleSeg's ``PPModule`` do, a 3x3 ConvBNReLU (no bias) maps the concatenation to
    ``out_channels``.

    Divergences from the official code:

    * the branch width is ``in_channels // len(bins)`` (PSPNet asserts divisibility; PaddleSeg
      floors as here);
    * the Dropout2d(0.1) of PSPNet's head is not part of this module (it belongs to the head).

    ``features`` keeps semseg's child layout (``features.i.{0 pool, 1 conv, 2 bn, 3 relu}``), so
    semseg ``ppm.*`` weights load key for key.  A bin larger than the feature map still works
    (adaptive pooling repeats pixels).  Like the official code, the b=1 branch normalises one value
    per channel and image, so training needs a batch of at least 2.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bins: tuple[int, ...]):
        super().__init__()
        reduction = in_channels // len(bins)
        if reduction < 1:
            raise ConfigError(
                f"context 'ppm': in_channels={in_channels} cannot be split over {len(bins)} bins "
                f"(each branch gets in_channels // len(bins) channels); use fewer bins or more channels"
            )
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, reduction, 1, bias=False),
                nn.BatchNorm2d(reduction),
                nn.ReLU(inplace=True),
            )
            for b in bins
        )
        self.bottleneck = ConvBNAct(in_channels + reduction * len(bins), out_channels, 3)
        self.bins = tuple(bins)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        # pool to b x b, reduce, upsample back; keep the input as the first member of the concat
        out = [x] + [resize_to(f(x), size, "bilinear", align_corners=True) for f in self.features]
        return self.bottleneck(torch.cat(out, 1))  # 3x3 ConvBNReLU -> out_channels
