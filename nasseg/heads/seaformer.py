"""SeaFormer's light segmentation head: fusion blocks that gate the 1/8 detail feature with deeper context.

Wan et al., "SeaFormer: Squeeze-enhanced Axial Transformer for Mobile Semantic Segmentation", ICLR 2023,
Sec. 3.3, Fig. 2 (the "light segmentation head").  Official code: ``fudan-zvg/SeaFormer`` at 9718d05,
``seaformer-seg/mmseg/models/decode_heads/light_head.py`` (``LightHead``, ``Fusion_block``) with the
``BaseDecodeHead`` of mmsegmentation (``cls_seg``: Dropout2d, then a 1x1 conv with bias).  Submodule names
follow the official head (``fuse1``, ``fuse2``, ``linear_fuse``, ``conv_seg``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.seaformer import h_sigmoid
from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct
from nasseg.registry import Arg, register


class FusionBlock(nn.Module):
    """SeaFormer fusion (official ``Fusion_block``): ``BN(1x1(local)) * up(h_sigmoid(BN(1x1(global))))``.

    Both 1x1 convs (no bias) + BN, no activation; the gate is bilinearly upsampled (``align_corners=False``)
    to the local feature's size.
    """

    def __init__(self, local_channels: int, global_channels: int, embed_dim: int):
        super().__init__()
        self.local_embedding = ConvBNAct(local_channels, embed_dim, 1, act="none")
        self.global_act = ConvBNAct(global_channels, embed_dim, 1, act="none")
        self.out_channels = embed_dim

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor) -> torch.Tensor:
        local = self.local_embedding(x_l)
        gate = F.interpolate(h_sigmoid(self.global_act(x_g)), size=x_l.shape[-2:], mode="bilinear",
                             align_corners=False)
        return local * gate


@register(
    "seaformer_head",
    kind="decoder",
    args=[
        Arg("embed_dims", "ints", (64, 96), "output width of each fusion block, one per tap but the first "
            "(SeaFormer-T: 64, 96; S: 64, 128; B: 128, 160)", low=8, high=1024, min_len=1, max_len=4),
        Arg("dw", "bool", True, "the final 1x1 'linear fuse' conv is depthwise (official is_dw=True)"),
        Arg("dropout", "float", 0.1, "Dropout2d before the classifier (official dropout_ratio)", low=0.0, high=0.99),
    ],
    examples=[
        {"in_channels": (32, 128, 160), "num_classes": 5, "tap_strides": (8, 32, 64)},
        {"in_channels": (24, 48), "num_classes": 3, "tap_strides": (8, 16), "embed_dims": (32,), "dw": False,
         "dropout": 0.0},
    ],
)
class SeaFormerHead(nn.Module):
    """SeaFormer's light head (ICLR 2023, Sec. 3.3; official ``LightHead``) on taps shallow to deep.

    The first tap is the detail feature (1/8 in SeaFormer); each deeper tap gates it in turn through a
    :class:`FusionBlock` (``fuse1`` with the second tap, ``fuse2`` with the third ...), the i-th giving
    ``embed_dims[i]`` channels; then ``linear_fuse`` (1x1 conv, depthwise when ``dw``, + BN + ReLU), Dropout2d
    and a 1x1 classifier with bias (``conv_seg``).  Logits come out at the first tap's resolution; the
    network resizes them to the input (bilinear, ``align_corners=False``, as the official ``EncoderDecoder``).
    ``emits_logits`` is true.

    Divergence: the official head's width (``channels``) is a separate setting that must equal the last
    embed dim (its ``linear_fuse`` runs on the last fusion's output); here it is that embed dim.
    Parameters, SeaFormer-T (taps 32, 128, 160; embed dims 64, 96), 150 classes: 47,222 (= official).
    """

    emits_logits = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, embed_dims: tuple[int, ...] = (64, 96),
                 dw: bool = True, dropout: float = 0.1):
        super().__init__()
        taps = tuple(int(c) for c in in_channels)
        if len(taps) != len(embed_dims) + 1:
            raise BlockArgumentError("seaformer_head", "embed_dims", tuple(embed_dims),
                                     f"needs one entry per tap but the first: {len(taps)} taps {taps} take "
                                     f"{len(taps) - 1} entries")
        c = taps[0]
        for i, e in enumerate(embed_dims):
            setattr(self, f"fuse{i + 1}", FusionBlock(c, taps[i + 1], e))
            c = e
        self.num_fusions = len(embed_dims)
        self.linear_fuse = ConvBNAct(c, c, 1, groups=c if dw else 1, act="relu")
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(c, num_classes, 1)
        self.out_channels = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[0]
        # each deeper tap gates the detail feature in turn
        for i in range(self.num_fusions):
            x = getattr(self, f"fuse{i + 1}")(x, feats[i + 1])
        # linear fuse, dropout, classifier
        return self.conv_seg(self.dropout(self.linear_fuse(x)))
