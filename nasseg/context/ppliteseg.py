"""PP-LiteSeg's simple pyramid pooling module (Peng et al., arXiv 2204.02681, Sec. 3.3, Fig. 5)."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register


@register("sppm", kind="context", args=[
    Arg("bins", "ints", (1, 2, 4), "pooled grid sides, one branch each (PP-LiteSeg Sec. 3.3)", low=1, high=16,
        max_len=8),
    Arg("inter_channels", "int", 128, "width of every branch and of the summed map", low=1, high=4096),
])
class SPPM(nn.Module):
    """Simple Pyramid Pooling Module of PP-LiteSeg (arXiv 2204.02681, Sec. 3.3, Fig. 5).

    Official code PaddleSeg ``paddleseg/models/pp_liteseg.py`` ``PPContextModule`` (built there
    as ``PPContextModule(1024, 128, 128, [1, 2, 4])`` on the STDC 1/32 feature): for every bin b,
    AdaptiveAvgPool(b) -> ConvBNReLU 1x1 in -> inter -> bilinear upsample (align_corners=False);
    the branches are **summed** (not concatenated) -> ConvBNReLU 3x3 inter -> out.

    Both convs keep a bias, as in the official code: PaddleSeg's ``layers.ConvBNReLU`` passes no
    ``bias_attr`` to ``nn.Conv2D``, whose default creates one.  No divergence from the official
    code is known.  The b=1 branch normalises one value per channel and image, so training needs a
    batch of at least 2.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bins: tuple[int, ...], inter_channels: int):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNAct(in_channels, inter_channels, 1, bias=True))
            for b in bins
        )
        self.conv_out = ConvBNAct(inter_channels, out_channels, 3, bias=True)
        self.bins = tuple(bins)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        # pool -> 1x1 ConvBNReLU -> upsample, for every bin; the branches are summed
        out = sum(resize_to(stage(x), size, "bilinear", align_corners=False) for stage in self.stages)
        return self.conv_out(out)  # 3x3 ConvBNReLU inter -> out
