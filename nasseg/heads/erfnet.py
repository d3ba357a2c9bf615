"""ERFNet decoder: two transposed-conv upsamplers with non-bottleneck-1D blocks, then a 2x2 transposed classifier.

E. Romera et al., "ERFNet: Efficient Residual Factorized ConvNet for Real-Time Semantic Segmentation",
IEEE T-ITS 2018, Sec. III / Table I.  Official code: ``Eromera/erfnet_pytorch``, ``train/erfnet.py``
(``UpsamplerBlock``, ``Decoder``).  Submodule names follow the official decoder, so its tensors keep their
official names below ``decoder.``; the whole official network imports into the ``erfnet`` preset with
``nasseg weights import`` (``nasseg.weights``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.erfnet import BN_EPS, NonBottleneck1D
from nasseg.errors import BlockArgumentError
from nasseg.registry import Arg, register


def single_tap(decoder: str, in_channels: Sequence[int]) -> int:
    """The channel count of the one tap a single-input decoder takes; any other tap count raises."""
    taps = tuple(in_channels)
    if len(taps) != 1:
        raise BlockArgumentError(decoder, "in_channels", taps, "takes exactly one tap (the 1/8 encoder output), "
                                 "e.g. (128,)")
    return int(taps[0])


class UpsamplerBlock(nn.Module):
    """ERFNet upsampler: ConvTranspose 3x3 s2 (pad 1, output pad 1, bias) -> BN (eps 1e-3) -> ReLU; exactly 2x."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1,
                                       bias=True)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


@register(
    "erfnet_decoder",
    kind="decoder",
    args=[
        Arg("widths", "ints", (64, 16), "output width of each 2x upsampler (ERFNet: 64, 16)", low=1, high=1024,
            min_len=1, max_len=4),
        Arg("num_blocks", "int", 2, "non-bottleneck-1D blocks after each upsampler (ERFNet: 2)", low=0, high=8),
    ],
    examples=[
        {"in_channels": (64,), "num_classes": 5, "tap_strides": (8,)},
        {"in_channels": (32,), "num_classes": 3, "tap_strides": (8,), "widths": (16, 8), "num_blocks": 1},
    ],
)
class ERFNetDecoder(nn.Module):
    """ERFNet decoder on the 1/8 encoder output: [Up -> nb1d x n] per width, then ConvTranspose 2x2 s2 -> classes.

    ERFNet (T-ITS 2018) Table I, layers 17-23; official ``Decoder(num_classes)``::

        UpsamplerBlock(128 -> 64), 2x nb1d(64, p 0, d 1), UpsamplerBlock(64 -> 16), 2x nb1d(16, p 0, d 1),
        ConvTranspose2d(16 -> classes, 2x2, stride 2, bias)

    Each upsampler is ConvTranspose 3x3 s2 p1 op1 (bias) -> BN eps 1e-3 -> ReLU, so the logits come out at
    ``2^(len(widths) + 1)`` times the tap size (x8 for the paper's two widths: the input resolution).
    ``in_channels`` is one tap (the 1/8 feature); ``emits_logits`` is true.

    For sizes that are not multiples of 8 (the official encoder crashes on odd sizes) the logits are
    ``8 * ceil(H/8)`` high; the network's final resize to the input size brings them back.

    Parameters with the defaults: ``190,147`` for 128 input channels and 19 classes (= official decoder).
    """

    emits_logits = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, widths: tuple[int, ...] = (64, 16),
                 num_blocks: int = 2):
        super().__init__()
        c = single_tap("erfnet_decoder", in_channels)
        self.layers = nn.ModuleList()
        for width in widths:
            self.layers.append(UpsamplerBlock(c, width))
            self.layers.extend(NonBottleneck1D(width, width, dilation=1, dropout=0.0) for _ in range(num_blocks))
            c = width
        self.output_conv = nn.ConvTranspose2d(c, num_classes, 2, stride=2, padding=0, output_padding=0, bias=True)
        self.out_channels = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        y = feats[-1]
        # upsamplers, each followed by its non-bottleneck-1D blocks
        for layer in self.layers:
            y = layer(y)
        # 2x2 transposed-conv classifier (x2)
        return self.output_conv(y)
