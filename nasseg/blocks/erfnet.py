"""ERFNet blocks: the non-bottleneck-1D residual block and the ERFNet/LEDNet downsampler.

E. Romera, J. M. Alvarez, L. M. Bergasa, R. Arroyo, "ERFNet: Efficient Residual Factorized ConvNet for
Real-Time Semantic Segmentation", IEEE T-ITS 2018.  Official code: ``Eromera/erfnet_pytorch``,
``train/erfnet.py`` (``non_bottleneck_1d``, ``DownsamplerBlock``).  LEDNet reuses the downsampler
(``xiaoyufenfei/LEDNet``, ``train/lednet.py``), with its own handling of odd sizes (see ``Downsampler``).

Submodule names inside each block follow the official code.  The official networks number their blocks in one
list (``encoder.initial_block``, ``encoder.layers.N``), nasseg per stage (``stages.S.blocks.M``): official
ERFNet and LEDNet checkpoints (``Net(num_classes)`` of ``train/erfnet.py`` / ``train/lednet.py``) import into
the ``erfnet`` / ``lednet`` presets with ``nasseg weights import`` (``nasseg.weights``), not by
``load_state_dict`` as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.registry import Arg, register

BN_EPS = 1e-3  # both official repositories use eps 1e-3 in every BatchNorm of these blocks


def factorised_conv(channels: int, vertical: bool, dilation: int = 1) -> nn.Conv2d:
    """Dense 3x1 (``vertical``) or 1x3 conv, ``channels`` -> ``channels``, with bias, same padding.

    The unit of ERFNet's non-bottleneck-1D and LEDNet's SS-nbt; ``dilation`` acts along the kernel's long axis.
    """
    if vertical:
        return nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0), dilation=(dilation, 1), bias=True)
    return nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation), dilation=(1, dilation), bias=True)


def check_same_width_stride1(block: str, in_channels: int, out_channels: int, stride: int) -> None:
    """Residual blocks that keep shape (nb1d, SS-nbt) take in == out and stride 1 only."""
    if stride != 1:
        raise BlockArgumentError(block, "stride", stride, "allowed: 1 (the block keeps resolution; "
                                 "downsample with 'downsampler')")
    if out_channels != in_channels:
        raise BlockArgumentError(block, "out_channels", out_channels,
                                 f"must equal in_channels ({in_channels}): the block is an identity residual")


@register(
    "nb1d",
    kind="block",
    args=[
        Arg("dilation", "int", 1, "dilation of the second 3x1/1x3 pair (ERFNet uses 1, 2, 4, 8, 16)", low=1, high=64),
        Arg("dropout", "float", 0.0, "Dropout2d probability before the residual add (ERFNet: 0.03, 0.3)",
            low=0.0, high=0.99),
    ],
    examples=[
        {"in_channels": 32, "out_channels": 32, "stride": 1},
        {"in_channels": 16, "out_channels": 16, "stride": 1, "dilation": 4, "dropout": 0.3},
    ],
)
class NonBottleneck1D(nn.Module):
    """ERFNet non-bottleneck-1D: two factorised 3x1/1x3 pairs, BN, dropout, identity residual, ReLU.

    ERFNet (T-ITS 2018), Sec. III-A / Fig. 2(c); official ``non_bottleneck_1d(chann, dropprob, dilated)``.
    Order (all convs dense ``C -> C`` with bias, BN eps 1e-3)::

        3x1 -> ReLU -> 1x3 -> BN -> ReLU -> 3x1 (dil d,1) -> ReLU -> 1x3 (dil 1,d) -> BN
        -> Dropout2d(p) -> + input -> ReLU

    ``in_channels == out_channels`` and ``stride == 1`` only (anything else raises ``BlockArgumentError``).
    No divergence from the official code; ``dropout == 0`` is an ``nn.Identity`` (the official code skips it).
    Parameters: ``12 C^2 + 8 C`` (nb1d 16 = 3,200).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, dilation: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        check_same_width_stride1("nb1d", in_channels, out_channels, stride)
        c = in_channels
        self.conv3x1_1 = factorised_conv(c, vertical=True)
        self.conv1x3_1 = factorised_conv(c, vertical=False)
        self.bn1 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.conv3x1_2 = factorised_conv(c, vertical=True, dilation=dilation)
        self.conv1x3_2 = factorised_conv(c, vertical=False, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(c, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # first factorised pair (no dilation)
        y = F.relu(self.conv3x1_1(x))
        y = F.relu(self.bn1(self.conv1x3_1(y)))
        # second factorised pair (dilated)
        y = F.relu(self.conv3x1_2(y))
        y = self.bn2(self.conv1x3_2(y))
        # dropout, identity residual, ReLU
        return F.relu(self.dropout(y) + x)


ODD_POOL = ("ceil", "zero_pad")


@register(
    "downsampler",
    kind="block",
    args=[
        Arg("odd_pool", "str", "ceil",
            "how the max-pool half matches the conv half at odd sizes: 'ceil' (ceil-mode pool) or "
            "'zero_pad' (LEDNet: floor pool, zero-padded at the bottom/right)", choices=ODD_POOL),
    ],
    examples=[
        {"in_channels": 16, "out_channels": 64, "stride": 2},
        {"in_channels": 3, "out_channels": 32, "stride": 2, "odd_pool": "zero_pad"},
    ],
)
class Downsampler(nn.Module):
    """ERFNet/LEDNet downsampler: concat(3x3 s2 conv to out-in, 2x2 s2 max-pool of the input) -> BN -> ReLU.

    ERFNet (T-ITS 2018) Sec. III-B (the ENet initial block); official ``DownsamplerBlock(ninput, noutput)``
    in ``Eromera/erfnet_pytorch`` and ``xiaoyufenfei/LEDNet``.  The conv has bias; BN eps 1e-3; the conv
    output comes first in the concatenation.  ``stride`` must be 2 and ``out_channels > in_channels``.

    Odd input sizes (the only place the two official versions differ):

    * ERFNet's code crashes: the padded 3x3 s2 conv gives ``ceil(H/2)`` rows, the 2x2 pool ``floor(H/2)``.
      ``odd_pool='ceil'`` (default) uses ``MaxPool2d(2, 2, ceil_mode=True)`` instead, so the last, partial
      window pools the one remaining row/column.  This is a divergence; even sizes are unaffected.
    * LEDNet's code (HEAD 5d900d9) pools with floor and zero-pads the pooled map to the conv's size
      (``diff // 2`` before, the rest after, i.e. one zero row/column at the bottom/right).
      ``odd_pool='zero_pad'`` reproduces that exactly (computed as the ceil-mode pool with its partial last
      row/column replaced by zeros, which also works on 1-pixel sides, where LEDNet's floor pool raises).

    Parameters: ``9 in (out - in) + (out - in) + 2 out``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, *, odd_pool: str = "ceil"):
        super().__init__()
        if stride != 2:
            raise BlockArgumentError("downsampler", "stride", stride, "allowed: 2 (the block always halves "
                                     "the resolution)")
        if out_channels <= in_channels:
            raise BlockArgumentError("downsampler", "out_channels", out_channels,
                                     f"must exceed in_channels ({in_channels}): the conv half has out - in channels")
        if odd_pool not in ODD_POOL:
            raise BlockArgumentError("downsampler", "odd_pool", odd_pool, f"allowed: {', '.join(ODD_POOL)}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.odd_pool = odd_pool
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 3x3 s2 conv to out - in channels, 2x2 s2 max-pool of the input (ceil mode: the conv's size)
        conv, pooled = self.conv(x), self.pool(x)
        if self.odd_pool == "zero_pad":
            # LEDNet: keep the floor-mode windows, zero-pad the odd last row/column (bottom/right)
            h, w = x.shape[-2:]
            pooled = F.pad(pooled[..., : h // 2, : w // 2], [0, w % 2, 0, h % 2])
        # concat (conv first), BN, ReLU
        return F.relu(self.bn(torch.cat([conv, pooled], 1)))
