"""SeaFormer's squeeze-enhanced axial (SEA) transformer block.

Q. Wan, Z. Huang, J. Lu, G. Yu, L. Zhang, "SeaFormer: Squeeze-enhanced Axial Transformer for Mobile Semantic
Segmentation", ICLR 2023, Sec. 3.1-3.2, Fig. 2-3.  Official code: ``fudan-zvg/SeaFormer`` at 9718d05,
``seaformer-seg/mmseg/models/backbones/seaformer.py`` (``Sea_Attention``, ``Mlp``, ``Block``,
``SqueezeAxialPositionalEmbedding``).  Submodule names follow the official code.  The network's MobileNetV2
stages are nasseg's ``mbconv`` (the official ``InvertedResidual`` is the same block); its light segmentation
head is ``seaformer_head`` (:mod:`nasseg.heads.seaformer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import DropPath, make_act
from nasseg.registry import Arg, register

POS_EMBED_LENGTH = 16  # the official positional embeddings hold 16 positions, resized to the axis length


def h_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """SeaFormer's hard sigmoid, ``relu6(x + 3) / 6``, written as the official code computes it."""
    return F.relu6(x + 3) / 6


class ConvBN(nn.Sequential):
    """The official ``Conv2d_BN``: conv (no bias) ``c`` -> BatchNorm ``bn`` (weight starting at ``bn_weight_init``)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)


class SqueezeAxialPositionalEmbedding(nn.Module):
    """A learned ``(1, dim, 16)`` embedding, linearly resized to the axis length and added (official, Sec. 3.1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, dim, POS_EMBED_LENGTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.interpolate(self.pos_embed, size=x.shape[-1], mode="linear", align_corners=False)


class SeaAttention(nn.Module):
    """Squeeze-enhanced axial attention (SeaFormer Sec. 3.1, Fig. 3; official ``Sea_Attention``).

    q, k (``heads * key_dim``) and v (``heads * attn_ratio * key_dim``) by 1x1 conv + BN.  Detail enhancement:
    ``pwconv(act(dwconv(cat(q, k, v))))`` (3x3 depthwise + BN, act, 1x1 + BN to ``dim``).  Squeeze axial
    attention: q, k, v averaged over the width (row) and over the height (column), positional embeddings added
    to q and k, multi-head softmax attention along each axis, each result through act -> 1x1 + BN, broadcast
    and added to v; then act -> 1x1 + BN to ``dim`` and a hard-sigmoid gate on the detail branch.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int, act: str):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.scale = key_dim ** -0.5
        nh_kd = key_dim * num_heads
        self.dh = attn_ratio * key_dim * num_heads
        self.to_q = ConvBN(dim, nh_kd)
        self.to_k = ConvBN(dim, nh_kd)
        self.to_v = ConvBN(dim, self.dh)
        self.proj = nn.Sequential(make_act(act), ConvBN(self.dh, dim, bn_weight_init=0))
        self.proj_encode_row = nn.Sequential(make_act(act), ConvBN(self.dh, self.dh, bn_weight_init=0))
        self.pos_emb_rowq = SqueezeAxialPositionalEmbedding(nh_kd)
        self.pos_emb_rowk = SqueezeAxialPositionalEmbedding(nh_kd)
        self.proj_encode_column = nn.Sequential(make_act(act), ConvBN(self.dh, self.dh, bn_weight_init=0))
        self.pos_emb_columnq = SqueezeAxialPositionalEmbedding(nh_kd)
        self.pos_emb_columnk = SqueezeAxialPositionalEmbedding(nh_kd)
        self.dwconv = ConvBN(2 * self.dh, 2 * self.dh, 3, padding=1, groups=2 * self.dh)
        self.act = make_act(act)
        self.pwconv = ConvBN(2 * self.dh, dim)

    def _axial(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos_q: nn.Module,
               pos_k: nn.Module) -> torch.Tensor:
        """Multi-head attention along one squeezed axis: q, k (B, heads*kd, L), v (B, dh, L) -> (B, dh, L)."""
        b, n = v.shape[0], v.shape[-1]
        q = pos_q(q).reshape(b, self.num_heads, -1, n).permute(0, 1, 3, 2)
        k = pos_k(k).reshape(b, self.num_heads, -1, n)
        v = v.reshape(b, self.num_heads, -1, n).permute(0, 1, 3, 2)
        attn = (torch.matmul(q, k) * self.scale).softmax(dim=-1)
        return torch.matmul(attn, v).permute(0, 1, 3, 2).reshape(b, self.dh, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        # detail enhancement
        qkv = self.pwconv(self.act(self.dwconv(torch.cat([q, k, v], 1))))
        # squeeze axial attention: rows (mean over the width), then columns (mean over the height)
        row = self._axial(q.mean(-1), k.mean(-1), v.mean(-1), self.pos_emb_rowq, self.pos_emb_rowk)
        row = self.proj_encode_row(row.unsqueeze(-1))
        column = self._axial(q.mean(-2), k.mean(-2), v.mean(-2), self.pos_emb_columnq, self.pos_emb_columnk)
        column = self.proj_encode_column(column.unsqueeze(-2))
        # broadcast sum with v, projection, gate on the detail branch
        y = self.proj(v + (row + column))
        return h_sigmoid(y) * qkv


class Mlp(nn.Module):
    """SeaFormer's feed-forward: 1x1 + BN -> 3x3 depthwise (bias) -> act -> 1x1 + BN (official ``Mlp``)."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = ConvBN(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, bias=True, groups=hidden)
        self.act = make_act(act)
        self.fc2 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


@register(
    "sea",
    kind="block",
    args=[
        Arg("key_dim", "int", 16, "query/key width per head (SeaFormer-T: 16, 24)", low=4, high=128),
        Arg("num_heads", "int", 4, "attention heads (SeaFormer-T/S: 4, 6; B: 8)", low=1, high=16),
        Arg("attn_ratio", "int", 2, "value width per head = attn_ratio * key_dim (SeaFormer: 2)", low=1, high=4),
        Arg("mlp_ratio", "float", 2.0, "feed-forward width = mlp_ratio * channels (SeaFormer: 2, 4)",
            low=0.5, high=8.0),
        Arg("act", "str", "relu6", "activation in the attention and the feed-forward (SeaFormer: ReLU6)",
            choices=("relu6", "relu", "hardswish", "gelu")),
        Arg("drop_path", "float", 0.0, "stochastic depth on both residual branches (SeaFormer: 0 to 0.1 per "
            "stage, linearly)", low=0.0, high=0.5),
    ],
    examples=[
        {"in_channels": 128, "out_channels": 128, "stride": 1},
        {"in_channels": 160, "out_channels": 160, "stride": 1, "key_dim": 24, "mlp_ratio": 4.0, "drop_path": 0.1},
        {"in_channels": 48, "out_channels": 48, "stride": 1, "key_dim": 8, "num_heads": 2, "act": "relu"},
    ],
)
class SeaFormerBlock(nn.Module):
    """SeaFormer block (Wan et al., ICLR 2023, Sec. 3.2, Fig. 2; official ``Block``).

    ``x + drop_path(SeaAttention(x))``, then ``x + drop_path(Mlp(x))``; the attention is
    :class:`SeaAttention` (squeeze axial attention gated onto a depthwise detail branch), the feed-forward
    :class:`Mlp` with ``int(channels * mlp_ratio)`` hidden channels.  BatchNorm everywhere (eps 1e-5), no
    LayerNorm.  ``in_channels == out_channels`` and ``stride == 1``: SeaFormer downsamples with a MobileNetV2
    block in front of each transformer stage (a stage's ``down`` in nasseg).

    Divergences from the official code: none in the computation.  Stochastic depth is this module's own
    ``DropPath`` (the official copies timm's; the same in eval mode); ``attn_ratio`` is an integer (the
    official casts ``attn_ratio * key_dim`` to int).  The official ``SeaFormer`` passes ReLU6 to these blocks
    and plain ReLU to its MobileNetV2 blocks; here each block's ``act`` says which.
    Parameters: (128, key_dim 16, 4 heads, mlp 2) = 192,000; (160, key_dim 24, 4 heads, mlp 4) = 452,672
    (= official ``Block``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, key_dim: int = 16,
                 num_heads: int = 4, attn_ratio: int = 2, mlp_ratio: float = 2.0, act: str = "relu6",
                 drop_path: float = 0.0):
        super().__init__()
        if stride != 1:
            raise BlockArgumentError("sea", "stride", stride, "allowed: 1 (SeaFormer downsamples with a mbconv "
                                     "block in front: use the stage's 'down')")
        if out_channels != in_channels:
            raise BlockArgumentError("sea", "out_channels", out_channels,
                                     f"must equal in_channels ({in_channels}): both branches are residual")
        self.attn = SeaAttention(in_channels, key_dim, num_heads, attn_ratio, act)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(in_channels, int(in_channels * mlp_ratio), act)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))
