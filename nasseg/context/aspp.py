"""DeepLabv3's atrous spatial pyramid pooling (Chen et al., arXiv 1706.05587, Sec. 3.3, Fig. 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register


class ASPPPooling(nn.Module):
    """Image-level branch: GAP -> 1x1 ConvBNReLU -> bilinear upsample (align_corners=False)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(F.adaptive_avg_pool2d(x, 1))
        return resize_to(pooled, x.shape[-2:], "bilinear", align_corners=False)


@register("aspp", kind="context", args=[
    Arg("rates", "ints", (6, 12, 18), "dilations of the 3x3 branches (DeepLabv3: 6, 12, 18 at output "
        "stride 16)", low=1, high=64, max_len=6),
    Arg("image_pooling", "bool", True, "add the image-level (GAP) branch (DeepLabv3 Sec. 3.3)"),
    Arg("inter_channels", "int", 256, "width of every branch", low=1, high=4096),
    Arg("dropout", "float", 0.1, "dropout after the projection (torchvision 0.5, PaddleSeg 0.1)", low=0.0,
        high=0.9),
])
class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling of DeepLabv3 (arXiv 1706.05587, Sec. 3.3, Fig. 5).

    Reference implementation torchvision ``models/segmentation/deeplabv3.py`` ``ASPP`` (the official
    DeepLab code is TensorFlow): a 1x1 ConvBNReLU branch, one 3x3 ConvBNReLU branch per atrous rate
    (padding = dilation), optionally the image-level branch (GAP -> 1x1 ConvBNReLU -> bilinear
    upsample); all convs bias-free, every branch in -> ``inter_channels``; concatenation -> 1x1
    ConvBNReLU -> ``out_channels`` -> Dropout.

    With ``rates=(12, 24, 36), inter_channels=256, out_channels=256, dropout=0.5`` this is
    torchvision's ``ASPP(in, [12, 24, 36], 256)`` exactly.  Divergences: ``inter_channels`` and
    ``out_channels`` are separate (torchvision uses one width for both); the defaults are the
    paper's rates (6, 12, 18) for output stride 16 and PaddleSeg's ``ASPPModule`` dropout 0.1;
    ``image_pooling=False`` drops the pooling branch (as PaddleSeg allows).  With image pooling the
    BN of that branch sees one value per channel and image, so training needs a batch of at least 2.
    """

    def __init__(self, in_channels: int, out_channels: int, *, rates: tuple[int, ...], image_pooling: bool,
                 inter_channels: int, dropout: float):
        super().__init__()
        branches: list[nn.Module] = [ConvBNAct(in_channels, inter_channels, 1)]
        branches += [ConvBNAct(in_channels, inter_channels, 3, dilation=r) for r in rates]
        if image_pooling:
            branches.append(ASPPPooling(in_channels, inter_channels))
        self.convs = nn.ModuleList(branches)
        self.project = ConvBNAct(len(branches) * inter_channels, out_channels, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.rates = tuple(rates)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # parallel branches: 1x1, one atrous 3x3 per rate, image pooling; concatenated
        y = torch.cat([branch(x) for branch in self.convs], 1)
        return self.dropout(self.project(y))  # 1x1 projection -> Dropout
