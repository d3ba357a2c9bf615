"""BiSeNet V2 segment head (Yu et al., "BiSeNet V2", IJCV 2021, Sec. 4.4 "booster training strategy").

Reference code (the authors released none): ``CoinCheung/BiSeNet`` ``lib/models/bisenetv2.py``
``SegmentHead`` (read at 6b4b67a).  Submodule names and Sequential indices kept (``conv``, ``drop``,
``conv_out.0`` = the aux variant's upsampling conv, ``conv_out.1`` = the classifier), so its checkpoints map.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.layers import ConvBNAct
from nasseg.registry import Arg, register


@register("bisenetv2_head", kind="head", args=[
    Arg("mid_channels", "int", 128, "width of the 3x3 ConvBNReLU (official: 1024 main head, 128 aux heads)",
        low=1),
    Arg("up_channels", "int", 0,
        "aux variant: nearest 2x upsampling then ConvBNReLU 3x3 mid -> up_channels before the classifier "
        "(official: up_factor**2, i.e. 16/64/256/1024 for the aux heads at 1/4, 1/8, 1/16, 1/32); 0: none",
        low=0),
    Arg("dropout", "float", 0.1, "element-wise dropout after the 3x3 conv (official nn.Dropout(0.1)); 0: none",
        low=0.0, high=0.9),
], examples=[
    {"in_channels": 32, "num_classes": 5},
    {"in_channels": 16, "num_classes": 5, "mid_channels": 32, "up_channels": 16, "dropout": 0.0},
])
class SegmentHead(nn.Module):
    """ConvBNReLU 3x3 (in -> mid) -> Dropout -> [up 2x nearest -> ConvBNReLU 3x3 (mid -> up)] -> Conv 1x1
    (-> C, with bias).

    Output: logits at the input's size, or at twice it when ``up_channels`` > 0 (``output_scale`` says which);
    the network resizes every head's logits to the image size, bilinear with align_corners=False, which is
    the official head's own final ``nn.Upsample`` (by up_factor, or up_factor / 2 for the aux variant) when
    the image size is a multiple of the head's stride.  Divergence: that final upsampling is the network's,
    not the head's.
    """

    def __init__(self, in_channels: int, num_classes: int, *, mid_channels: int = 128, up_channels: int = 0,
                 dropout: float = 0.1):
        super().__init__()
        self.conv = ConvBNAct(in_channels, mid_channels, 3)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        up: nn.Module = nn.Identity()
        if up_channels:
            up = nn.Sequential(nn.Upsample(scale_factor=2), ConvBNAct(mid_channels, up_channels, 3))
        self.conv_out = nn.Sequential(up, nn.Conv2d(up_channels or mid_channels, num_classes, 1, bias=True))
        self.in_channels, self.mid_channels, self.out_channels = in_channels, mid_channels, num_classes
        self.output_scale = 2 if up_channels else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.drop(self.conv(x)))  # 3x3 -> dropout -> [up + 3x3] -> 1x1
