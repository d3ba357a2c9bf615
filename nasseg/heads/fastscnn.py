"""Fast-SCNN's classifier (Poudel et al., "Fast-SCNN", BMVC 2019, Sec. 3.2.4, Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.blocks.fastscnn import DSConv
from nasseg.registry import Arg, register


@register("fastscnn_head", kind="head", args=[
    Arg("dropout", "float", 0.1, "element-wise dropout before the 1x1 classifier (Tramac: 0.1; 0: none)",
        low=0.0, high=0.9),
], examples=[
    {"in_channels": 32, "num_classes": 5},
    {"in_channels": 128, "num_classes": 19, "dropout": 0.0},
])
class FastSCNNHead(nn.Module):
    """Fast-SCNN's classifier: DSConv in -> in, DSConv in -> in, Dropout, 1x1 conv in -> C (with bias).

    Paper Table 1: two DSConv (stride 1) and a 1x1 conv, then the upsampling and softmax that the network
    does here.  There is no code from the paper's authors; the reference is Tramac/Fast-SCNN-pytorch
    ``models/fast_scnn.py`` ``Classifer(128, C)`` (commit 0638517): 38,547 parameters for 19 classes, as this
    head.  Its ``nn.Dropout(0.1)`` (element-wise, not Dropout2d) is the ``dropout`` default; it is not in the
    paper's table.  Submodules (the official names): ``dsconv1``, ``dsconv2`` (each ``dw``, ``pw``), ``drop``,
    ``conv``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float):
        super().__init__()
        self.dsconv1 = DSConv(in_channels, in_channels)
        self.dsconv2 = DSConv(in_channels, in_channels)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
        self.in_channels, self.out_channels = in_channels, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.drop(self.dsconv2(self.dsconv1(x))))
