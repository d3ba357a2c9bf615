"""Image-classification head, used only to check backbones against their published ImageNet figures."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.layers import make_act
from nasseg.registry import Arg, register


@register("classifier", kind="decoder", args=[
    Arg("hidden_channels", "int", 1280, "width of the 1x1 conv before the linear layer (0: none)", low=0),
    Arg("act", "str", "relu", "activation after the hidden conv", choices=("relu", "gelu")),
    Arg("dropout", "float", 0.0, "dropout before the linear layer", low=0.0, high=0.9),
], examples=[{"in_channels": (64,), "num_classes": 10, "tap_strides": (32,)}])
class Classifier(nn.Module):
    """FasterNet classifier: GAP -> 1x1 conv (no bias) -> act -> (dropout) -> Linear.

    FasterNet (Chen et al., CVPR 2023), ``models/fasternet.py``: ``avgpool_pre_head`` (GAP, 1x1 conv
    to 1280 without bias, act) then ``head`` (Linear 1280 -> classes).  Output is (N, classes, 1, 1)
    so that it stays a 4-D tensor like every decoder output; the network flattens it.
    Only the deepest tap is used.
    """

    emits_logits = True
    is_classifier = True

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, *, hidden_channels: int, act: str,
                 dropout: float):
        super().__init__()
        c = in_channels[-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden_channels:
            self.pre_head = nn.Sequential(nn.Conv2d(c, hidden_channels, 1, bias=False), make_act(act))
            c = hidden_channels
        else:
            self.pre_head = nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c, num_classes)
        self.out_channels = num_classes

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.pre_head(self.pool(feats[-1]))
        x = self.fc(self.dropout(torch.flatten(x, 1)))
        return x[:, :, None, None]


@register("mlp_classifier", kind="decoder", args=[
    Arg("hidden_channels", "int", 1280, "width of the hidden layer after pooling", low=1),
    Arg("hidden_layer", "str", "linear", "the hidden layer's form: 'linear' (torchvision MobileNetV3) or "
        "'conv1x1' (GhostNet's conv_head); the same map, only the weight's shape differs",
        choices=("linear", "conv1x1")),
    Arg("act", "str", "hardswish", "activation after the hidden layer", choices=("relu", "hardswish")),
    Arg("dropout", "float", 0.2, "dropout before the last linear layer", low=0.0, high=0.9),
], examples=[{"in_channels": (64,), "num_classes": 10, "tap_strides": (32,)},
             {"in_channels": (32, 64), "num_classes": 10, "tap_strides": (16, 32), "hidden_layer": "conv1x1",
              "act": "relu", "dropout": 0.0}])
class MLPClassifier(nn.Module):
    """MobileNetV3 / GhostNet classifier: GAP -> hidden layer with bias -> act -> dropout -> Linear.

    torchvision ``mobilenetv3.py``: ``avgpool`` then ``classifier`` = Linear(960, 1280) -> Hardswish ->
    Dropout(0.2) -> Linear (Howard et al., ICCV 2019, Table 1: the last two "conv2d 1x1, NBN" rows).
    GhostNet ``ghostnet.py``: ``global_pool``, ``conv_head`` (1x1 conv 960 -> 1280 with bias), ReLU, dropout
    0.2, ``classifier`` (Linear).  A separate decoder from ``classifier`` because that one's hidden conv has
    no bias, and a new argument there would change the stored genomes of the FasterNet presets.
    Output (N, classes, 1, 1); only the deepest tap is used.  Divergences: none.
    """

    emits_logits = True
    is_classifier = True

    def __init__(self, in_channels: tuple[int, ...], num_classes: int, *, hidden_channels: int, hidden_layer: str,
                 act: str, dropout: float):
        super().__init__()
        c = in_channels[-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden_layer == "linear":
            self.hidden: nn.Module = nn.Linear(c, hidden_channels)
        else:
            self.hidden = nn.Conv2d(c, hidden_channels, 1, bias=True)
        self.flat_hidden = hidden_layer == "linear"
        self.act = make_act(act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden_channels, num_classes)
        self.out_channels = num_classes

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.pool(feats[-1])
        x = self.hidden(torch.flatten(x, 1)) if self.flat_hidden else torch.flatten(self.hidden(x), 1)
        x = self.fc(self.dropout(self.act(x)))
        return x[:, :, None, None]
