"""TopFormer's token pyramid decoder: pooled multi-scale tokens, a transformer, semantic injection, a simple head.

W. Zhang, Z. Huang, G. Luo, T. Chen, X. Wang, W. Liu, G. Yu, C. Shen, "TopFormer: Token Pyramid Transformer for
Mobile Semantic Segmentation", CVPR 2022, Sec. 3, Fig. 2.  Official code: ``hustvl/TopFormer`` at cc0f436,
``mmseg/models/backbones/topformer.py`` (``PyramidPoolAgg``, ``Attention``, ``Block``, ``BasicLayer``,
``InjectionMultiSum``, the forward of ``Topformer``) and ``mmseg/models/decode_heads/simple_head.py``
(``SimpleHead``).  The token pyramid itself (the official ``TokenPyramidModule``) is a stack of MobileNetV2
blocks, nasseg's ``mbconv`` stages; its tapped outputs are this decoder's input.  Submodule names follow the
official code (``trans``, ``SIM``, ``linear_fuse``, ``conv_seg``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.seaformer import ConvBN, Mlp, h_sigmoid
from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct, DropPath, make_act
from nasseg.registry import Arg, register


class TopFormerAttention(nn.Module):
    """Multi-head attention over all tokens of a feature map (official TopFormer ``Attention``).

    q, k (``heads * key_dim``) and v (``heads * attn_ratio * key_dim``) by 1x1 conv + BN; softmax(q k) v per
    head; act -> 1x1 conv + BN (weight initialised to 0) back to ``dim``.  As in the official code the logits
    are **not** scaled by ``key_dim ** -0.5`` (it defines the scale but never applies it).
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int, act: str):
        super().__init__()
        self.num_heads, self.key_dim, self.d = num_heads, key_dim, attn_ratio * key_dim
        self.dh = self.d * num_heads
        self.to_q = ConvBN(dim, key_dim * num_heads)
        self.to_k = ConvBN(dim, key_dim * num_heads)
        self.to_v = ConvBN(dim, self.dh)
        self.proj = nn.Sequential(make_act(act), ConvBN(self.dh, dim, bn_weight_init=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.to_q(x).reshape(b, self.num_heads, self.key_dim, h * w).permute(0, 1, 3, 2)
        k = self.to_k(x).reshape(b, self.num_heads, self.key_dim, h * w)
        v = self.to_v(x).reshape(b, self.num_heads, self.d, h * w).permute(0, 1, 3, 2)
        y = torch.matmul(torch.matmul(q, k).softmax(dim=-1), v)
        return self.proj(y.permute(0, 1, 3, 2).reshape(b, self.dh, h, w))


class TopFormerBlock(nn.Module):
    """``x + drop_path(attn(x))``, then ``x + drop_path(mlp(x))`` (official ``Block``; the MLP is SeaFormer's)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int, mlp_ratio: float, act: str,
                 drop_path: float):
        super().__init__()
        self.attn = TopFormerAttention(dim, key_dim, num_heads, attn_ratio, act)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))


class BasicLayer(nn.Module):
    """The semantics extractor: ``depth`` :class:`TopFormerBlock` s (official ``BasicLayer``)."""

    def __init__(self, depth: int, dim: int, key_dim: int, num_heads: int, attn_ratio: int, mlp_ratio: float,
                 act: str, drop_path: float):
        super().__init__()
        # the official decay rule, torch.linspace(0, drop_path, depth), in plain Python: a build under the meta
        # device (the screening cost table) cannot read a tensor's values
        rates = [drop_path * i / (depth - 1) for i in range(depth)] if depth > 1 else [0.0] * depth
        self.transformer_blocks = nn.ModuleList(
            TopFormerBlock(dim, key_dim, num_heads, attn_ratio, mlp_ratio, act, r) for r in rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_blocks:
            x = block(x)
        return x


class InjectionMultiSum(nn.Module):
    """Semantic injection (official ``InjectionMultiSum``): ``BN(1x1(local)) * up(h_sigmoid(BN(1x1(global))))
    + up(BN(1x1(global)))``, each 1x1 conv without bias and without activation; bilinear, align_corners=False."""

    def __init__(self, local_channels: int, out_channels: int):
        super().__init__()
        self.local_embedding = ConvBNAct(local_channels, out_channels, 1, act="none")
        self.global_embedding = ConvBNAct(local_channels, out_channels, 1, act="none")
        self.global_act = ConvBNAct(local_channels, out_channels, 1, act="none")

    def forward(self, x_l: torch.Tensor, x_g: torch.Tensor) -> torch.Tensor:
        size = x_l.shape[-2:]
        local = self.local_embedding(x_l)
        gate = F.interpolate(h_sigmoid(self.global_act(x_g)), size=size, mode="bilinear", align_corners=False)
        glob = F.interpolate(self.global_embedding(x_g), size=size, mode="bilinear", align_corners=False)
        return local * gate + glob


@register(
    "topformer_decoder",
    kind="decoder",
    args=[
        Arg("depth", "int", 4, "transformer blocks of the semantics extractor (TopFormer: 4)", low=1, high=12),
        Arg("key_dim", "int", 16, "query/key width per head (TopFormer: 16)", low=4, high=64),
        Arg("num_heads", "int", 4, "attention heads (TopFormer-T: 4, S: 6, B: 8)", low=1, high=16),
        Arg("attn_ratio", "int", 2, "value width per head = attn_ratio * key_dim (TopFormer: 2)", low=1, high=4),
        Arg("mlp_ratio", "float", 2.0, "feed-forward width = mlp_ratio * token channels (TopFormer: 2)",
            low=0.5, high=8.0),
        Arg("c2t_stride", "int", 2, "the tokens' size: the deepest tap pooled by this stride (TopFormer: 2)",
            choices=(1, 2, 4)),
        Arg("width", "int", 128, "output width of each semantic injection and of the head (TopFormer-T/S: 128, "
            "B: 256)", low=8, high=1024),
        Arg("inject_from", "int", 1, "first tap that receives injected semantics (TopFormer: 1, so the 1/4 tap "
            "only feeds the tokens)", low=0, high=7),
        Arg("drop_path", "float", 0.1, "stochastic depth, rising linearly to this over the blocks (TopFormer: 0.1)",
            low=0.0, high=0.5),
        Arg("dw", "bool", True, "the head's 1x1 linear fuse is depthwise (official is_dw=True)"),
        Arg("dropout", "float", 0.1, "Dropout2d before the classifier (official dropout_ratio)", low=0.0, high=0.99),
    ],
    examples=[
        {"in_channels": (16, 32, 64, 96), "num_classes": 5, "tap_strides": (4, 8, 16, 32)},
        {"in_channels": (24, 48), "num_classes": 3, "tap_strides": (8, 16), "depth": 1, "num_heads": 2,
         "width": 32, "inject_from": 0, "c2t_stride": 1, "drop_path": 0.0, "dw": False, "dropout": 0.0},
    ],
)
class TopFormerDecoder(nn.Module):
    """TopFormer's token pyramid transformer and simple head on taps shallow to deep (CVPR 2022, Fig. 2).

    1. Pyramid pool aggregation (official ``PyramidPoolAgg``): every tap adaptive-average-pooled to the deepest
       tap's size divided by ``c2t_stride`` (rounded up), concatenated: ``sum(in_channels)`` token channels.
    2. Semantics extractor: ``depth`` transformer blocks (:class:`TopFormerBlock`, ReLU6) on the tokens.
    3. The tokens split back per tap; from tap ``inject_from`` on, :class:`InjectionMultiSum` injects each
       tap's share of the semantics into that tap (``width`` channels out).
    4. Simple head (official ``SimpleHead``): the injected features summed at the size of the first of them
       (bilinear), 1x1 ``linear_fuse`` (depthwise when ``dw``) + BN + ReLU, Dropout2d, 1x1 classifier with bias.

    Logits come out at the resolution of tap ``inject_from``; the network resizes them to the input (bilinear,
    ``align_corners=False``, as the official ``EncoderDecoder``).  ``emits_logits`` is true.

    ONNX: the token size is a constant of the exported graph, so a TopFormer exports with a static H x W (as the
    official code does: its ``get_shape`` turns sizes into numbers under ONNX export).

    Divergences from the official code: the injection width is one ``width`` for all taps (the official
    ``out_channels`` list, all 128 or 256 in the released configurations); drop-path rates are computed with
    ``torch.linspace(0, drop_path, depth)`` as officially.  None in the computation.
    Parameters, TopFormer-T (taps 16, 32, 64, 96; width 128), 150 classes: 1,132,822 (= the official ``trans``,
    ``SIM`` and ``SimpleHead``).
    """

    emits_logits = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, depth: int = 4, key_dim: int = 16,
                 num_heads: int = 4, attn_ratio: int = 2, mlp_ratio: float = 2.0, c2t_stride: int = 2,
                 width: int = 128, inject_from: int = 1, drop_path: float = 0.1, dw: bool = True,
                 dropout: float = 0.1):
        super().__init__()
        self.channels = tuple(int(c) for c in in_channels)
        if inject_from >= len(self.channels):
            raise BlockArgumentError("topformer_decoder", "inject_from", inject_from,
                                     f"must be a tap index below the number of taps ({len(self.channels)})")
        self.c2t_stride, self.inject_from = c2t_stride, inject_from
        self.trans = BasicLayer(depth, sum(self.channels), key_dim, num_heads, attn_ratio, mlp_ratio, "relu6",
                                drop_path)
        self.SIM = nn.ModuleList(InjectionMultiSum(c, width) if i >= inject_from else nn.Identity()
                                 for i, c in enumerate(self.channels))
        self.linear_fuse = ConvBNAct(width, width, 1, groups=width if dw else 1, act="relu")
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(width, num_classes, 1)
        self.out_channels = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        # pyramid pool aggregation to the tokens' size
        # Python ints: ONNX needs a constant pooled size (the official get_shape does the same under export), so
        # an exported graph holds one input size
        h, w = (int(v) for v in feats[-1].shape[-2:])
        size = ((h - 1) // self.c2t_stride + 1, (w - 1) // self.c2t_stride + 1)
        tokens = torch.cat([F.adaptive_avg_pool2d(f, size) for f in feats], 1)
        # semantics extractor, split back per tap, semantic injection
        semantics = self.trans(tokens).split(self.channels, dim=1)
        injected = [self.SIM[i](feats[i], semantics[i]) for i in range(self.inject_from, len(feats))]
        # simple head: sum at the first injected size, linear fuse, dropout, classifier
        x = injected[0]
        for y in injected[1:]:
            x = x + F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv_seg(self.dropout(self.linear_fuse(x)))
