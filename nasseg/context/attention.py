"""Self-attention context: interlaced sparse self-attention (ISA) and the dense (non-local) baseline.

Both share one attention block, so that the only difference between ``isa`` and ``nonlocal`` is
which positions attend to which: ISA's saving in attention memory and MACs is measured against
``nonlocal`` with everything else equal (``tests/context/test_attention.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.layers import ConvBNAct
from nasseg.registry import Arg, register


class SelfAttentionBlock(nn.Module):
    """Scaled dot-product self-attention over all positions of its input (non-local block).

    As openseg.pytorch ``lib/models/modules/isa_block.py`` ``SelfAttentionBlock2D`` (the official
    ISA code; mmsegmentation's ``isa_head.py`` builds the same): query and key projections are each
    two 1x1 ConvBNReLU (in -> key -> key), the value projection one 1x1 conv (no bias, no BN),
    attention = softmax(q k^T / sqrt(key)), context = attention @ v, then an output 1x1 ConvBNReLU
    (value -> out).  All convs are bias-free.

    The softmax is the child ``softmax``: a forward hook on it sees every attention matrix, shaped
    (groups, positions, positions), which is how the tests measure attention memory.
    """

    def __init__(self, in_channels: int, key_channels: int, value_channels: int, out_channels: int):
        super().__init__()
        self.key_project = nn.Sequential(ConvBNAct(in_channels, key_channels, 1),
                                         ConvBNAct(key_channels, key_channels, 1))
        self.query_project = nn.Sequential(ConvBNAct(in_channels, key_channels, 1),
                                           ConvBNAct(key_channels, key_channels, 1))
        self.value_project = nn.Conv2d(in_channels, value_channels, 1, bias=False)
        self.out_project = ConvBNAct(value_channels, out_channels, 1)
        self.softmax = nn.Softmax(dim=-1)
        self.scale = key_channels ** -0.5
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        query = self.query_project(x).flatten(2).transpose(1, 2)  # (n, hw, key)
        key = self.key_project(x).flatten(2)  # (n, key, hw)
        value = self.value_project(x).flatten(2).transpose(1, 2)  # (n, hw, value)
        attention = self.softmax(torch.matmul(query, key) * self.scale)  # (n, hw, hw)
        context = torch.matmul(attention, value)  # (n, hw, value)
        return self.out_project(context.transpose(1, 2).reshape(n, -1, h, w))


def _key_channels(in_channels: int, key_channels: int) -> int:
    """``key_channels=0`` means in/2: official ISANet (512 in, 256 key), mmseg's ``isa_channels``."""
    return key_channels if key_channels > 0 else max(1, in_channels // 2)


KEY_CHANNELS = Arg("key_channels", "int", 0, "query/key width; 0 means in_channels // 2 (official ISA: 256 "
                   "for 512)", low=0, high=4096)


@register("isa", kind="context", args=[
    Arg("down_factor", "ints", (8, 8), "(h, w) side of the local blocks; long-range groups take one pixel "
        "from each block", low=1, high=64, min_len=2, max_len=2),
    KEY_CHANNELS,
])
class ISA(nn.Module):
    """Interlaced Sparse Self-Attention (Huang et al., ISANet, arXiv 1907.12273, Sec. 3, Fig. 2).

    Official code openseg.pytorch ``lib/models/modules/isa_block.py`` (``ISA_Block``, ``ISA_Module``
    with one down factor); mmsegmentation ``decode_heads/isa_head.py`` is the same computation.
    With down factor (dh, dw) the (padded) map is cut into blocks of dh x dw pixels:

    1. pad H, W up to multiples of (dh, dw), split evenly on both sides (zeros, as the official code);
    2. **long-range** attention: the dh*dw groups of pixels that share the same position inside their
       block, each group ceil(H/dh) * ceil(W/dw) pixels, attend among themselves;
    3. **short-range** attention: the pixels of each block attend among themselves;
    4. crop the padding; out = 1x1 ConvBNReLU(cat[x, context]: 2 * in -> out).

    Both attentions are a ``SelfAttentionBlock`` with key width ``key_channels`` (0 = in/2) and
    value and output width ``in_channels`` (the official ISANet uses 512 in, 256 key, 512 value).
    For 64x128 features and 8x8 blocks the attention matrices hold 64*128^2 + 128*64^2 elements
    instead of dense attention's 8192^2, about 43x fewer.

    Divergences from the official code: the output projection maps to ``out_channels`` (the
    official module keeps the input width); the Dropout2d after it (0.05 in the official ISANet)
    is left to the head.  Padded zero pixels take part in the attention, as in the official code.
    """

    def __init__(self, in_channels: int, out_channels: int, *, down_factor: tuple[int, int],
                 key_channels: int):
        super().__init__()
        key = _key_channels(in_channels, key_channels)
        self.long_range_sa = SelfAttentionBlock(in_channels, key, in_channels, in_channels)
        self.short_range_sa = SelfAttentionBlock(in_channels, key, in_channels, in_channels)
        self.project = ConvBNAct(2 * in_channels, out_channels, 1)
        self.down_factor = (int(down_factor[0]), int(down_factor[1]))
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        dh, dw = self.down_factor
        gh, gw = math.ceil(h / dh), math.ceil(w / dw)  # blocks along H and W
        pad_h, pad_w = gh * dh - h, gw * dw - w
        # 1. pad to a whole number of blocks, split over both sides
        feats = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        # 2. long range: group the pixels at the same in-block position (dh*dw groups of gh*gw pixels)
        feats = feats.reshape(n, c, gh, dh, gw, dw).permute(0, 3, 5, 1, 2, 4).reshape(n * dh * dw, c, gh, gw)
        feats = self.long_range_sa(feats)
        # 3. short range: group the pixels of each block (gh*gw groups of dh*dw pixels)
        feats = feats.reshape(n, dh, dw, c, gh, gw).permute(0, 4, 5, 3, 1, 2).reshape(n * gh * gw, c, dh, dw)
        feats = self.short_range_sa(feats)
        # back to (n, c, H, W), then 4. crop the padding
        feats = feats.reshape(n, gh, gw, c, dh, dw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, gh * dh, gw * dw)
        feats = feats[:, :, pad_h // 2:pad_h // 2 + h, pad_w // 2:pad_w // 2 + w]
        return self.project(torch.cat([x, feats], 1))


@register("nonlocal", kind="context", args=[KEY_CHANNELS])
class DenseSelfAttention(nn.Module):
    """Dense (non-local) self-attention over all H*W positions: the baseline ISA is measured against.

    Wang et al., "Non-local Neural Networks" (CVPR 2018) in the form of ISANet's baseline
    (arXiv 1907.12273, Sec. 4, "self-attention" rows; OCNet's base object-context block): one
    ``SelfAttentionBlock`` with exactly ISA's projections (key width ``key_channels``, 0 = in/2;
    value and output width ``in_channels``) applied to every position at once, then the same
    1x1 ConvBNReLU(cat[x, context] -> out).  Attention memory is (H*W)^2 per image: 8192^2 = 67 M
    elements for 64x128 features, so keep it to small maps.
    """

    def __init__(self, in_channels: int, out_channels: int, *, key_channels: int):
        super().__init__()
        key = _key_channels(in_channels, key_channels)
        self.attention = SelfAttentionBlock(in_channels, key, in_channels, in_channels)
        self.project = ConvBNAct(2 * in_channels, out_channels, 1)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([x, self.attention(x)], 1))
