"""Segmentation and auxiliary heads: a 3x3 conv unit, then a 1x1 classifier.

Two published forms share this one class:

* STDC-Seg ``BiSeNetOutput(in, mid, C)`` (``models/model_stages.py``): ConvBNReLU 3x3 in -> mid (no bias)
  -> Conv 1x1 mid -> C **without bias**.  PP-LiteSeg's ``SegHead`` (PaddleSeg ``models/pp_liteseg.py``)
  is the same computation, also with ``bias_attr=False`` on the classifier.
* PIDNet ``segmenthead(in, mid, C)`` (``models/model_utils.py``), pre-activation:
  BN(in) -> ReLU -> Conv 3x3 in -> mid (no bias) -> BN -> ReLU -> Conv 1x1 mid -> C **with bias**.
  That is ``preact=True, bias=True`` here.

Submodules: ``pre`` (BN + ReLU, or ``Identity``), ``conv`` (a ``ConvBNAct``: ``conv``/``bn``/``act``),
``drop`` and ``conv_out``.  STDC-Seg weights map by name (``conv.conv``, ``conv.bn``, ``conv_out``);
PIDNet's map as ``bn1 -> pre.bn``, ``conv1 -> conv.conv``, ``bn2 -> conv.bn``, ``conv2 -> conv_out``.
Neither official head upsamples inside the head in training (STDC-Seg upsamples in the network's
forward, PIDNet's ``scale_factor`` is ``None`` for every head it builds); the network resizes logits.
Weights use PyTorch's default initialisation (STDC-Seg re-initialises its convs with
``kaiming_normal_(a=1)``, PIDNet with ``kaiming_normal_(fan_out, relu)``).
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.layers import BNAct, ConvBNAct
from nasseg.registry import Arg, register

_SEG_ARGS = [
    Arg("mid_channels", "int", 64, "width of the 3x3 conv (0: in_channels)", low=0),
    Arg("dropout", "float", 0.0, "channel dropout (Dropout2d) before the classifier; 0: none",
        low=0.0, high=0.9),
    Arg("bias", "bool", False, "bias on the 1x1 classifier (STDC-Seg, PP-LiteSeg: no; PIDNet: yes)"),
    Arg("preact", "bool", False, "PIDNet segmenthead: BN + ReLU on the input, before the 3x3 conv"),
]
_SEG_EXAMPLES = [
    {"in_channels": 32, "num_classes": 5},
    {"in_channels": 32, "num_classes": 5, "mid_channels": 0, "preact": True, "bias": True, "dropout": 0.1},
]


@register("seg_head", kind="head", args=_SEG_ARGS, examples=_SEG_EXAMPLES)
class SegHead(nn.Module):
    """Main segmentation head: [BN-ReLU] -> ConvBNReLU 3x3 in -> mid -> [Dropout2d] -> Conv 1x1 mid -> C.

    Defaults are STDC-Seg's ``BiSeNetOutput`` / PP-LiteSeg's ``SegHead`` (no classifier bias).
    PIDNet's ``segmenthead`` is ``preact=True, bias=True`` (PIDNet-S final head: in 128, mid 128).
    ``mid_channels=0`` means ``in_channels`` (STDC-Seg's main head ``BiSeNetOutput(256, 256, C)``).
    ``dropout`` (not in either official head; mmsegmentation's heads use Dropout2d 0.1 here) drops
    whole channels before the classifier.  Output: logits at the input's H, W.
    """

    def __init__(self, in_channels: int, num_classes: int, *, mid_channels: int = 64, dropout: float = 0.0,
                 bias: bool = False, preact: bool = False):
        super().__init__()
        mid = mid_channels or in_channels
        self.pre = BNAct(in_channels) if preact else nn.Identity()  # PIDNet: bn1 -> relu
        self.conv = ConvBNAct(in_channels, mid, 3)  # 3x3 conv (no bias) -> BN -> ReLU
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_out = nn.Conv2d(mid, num_classes, 1, bias=bias)  # 1x1 classifier
        self.in_channels = in_channels
        self.mid_channels = mid
        self.out_channels = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.drop(self.conv(self.pre(x))))


@register("aux_head", kind="head", args=_SEG_ARGS, examples=_SEG_EXAMPLES)
class AuxHead(SegHead):
    """Auxiliary (deep-supervision) head on an intermediate feature; training only.

    The same computation and arguments as ``seg_head`` (a separate name so that a genome says which
    head is dropped at export, and so the two can be searched apart).  That is faithful to both papers:
    STDC-Seg's aux heads on the 1/8 and 1/16 context-path outputs are ``BiSeNetOutput(128, 64, C)``
    (the defaults here, ``mid_channels=64``), and PIDNet's P-branch aux head is the same
    ``segmenthead`` class as its main head (``segmenthead(2C, head_planes, C)``: ``preact=True,
    bias=True, mid_channels=128`` for PIDNet-S/M).  The losses on it (OHEM-CE weight 1 in STDC-Seg,
    CE weight 0.4 in PIDNet) belong to the training recipe.
    """
