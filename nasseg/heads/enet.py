"""ENet's decoder: upsampling bottlenecks that max-unpool with the encoder's pooling indices.

Paszke et al., "ENet: A Deep Neural Network Architecture for Real-Time Semantic Segmentation",
arXiv 1606.02147 (2016), Sec. 3, Table 1 (stages 4 and 5, fullconv).  Followed: the PyTorch port
``davidtvs/PyTorch-ENet`` ``models/enet.py`` at e17d404 (``UpsamplingBottleneck``, the decoder part of
``ENet``); the authors' code is Lua Torch (``e-lab/ENet-training``, ``train/models/decoder.lua``).  Submodule
names inside each bottleneck follow the port.

How the indices reach the decoder: ENet's downsampling bottleneck max-pools its input 2x2 and the decoder
unpools with those indices.  Here the decoder taps the *inputs* of the downsampling bottlenecks (the outputs
of the stages before them) and pools them again with the same 2x2 stride-2 (ceil-mode) max-pool: the same
operation on the same tensor gives the same indices, so no genome feature is needed and the network stays a
pure function of its taps.  The cost is one parameter-free 2x2 max-pool per upsampling bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.enet import ACTS, ENetBottleneck, activation, conv_bn, internal_width
from nasseg.errors import BlockArgumentError
from nasseg.registry import Arg, register


def max_unpool(x: torch.Tensor, indices: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """``F.max_unpool2d(x, indices, 2, 2, output_size=size)`` written as a scatter into a zero map.

    Each value goes to the position its index names inside its own H x W plane, every other position is
    zero; with non-overlapping 2x2 windows the indices are distinct, so this is exactly MaxUnpool2d.  The
    scatter form exports to ONNX (ScatterElements), which ``max_unpool2d`` does not with the legacy exporter.
    """
    n, c = x.shape[:2]
    h, w = size
    out = x.new_zeros(n, c, h * w)
    return out.scatter(2, indices.flatten(2), x.flatten(2)).view(n, c, h, w)


class UpsamplingBottleneck(nn.Module):
    """ENet upsampling bottleneck (Paszke et al. 2016, Sec. 3; official ``UpsamplingBottleneck`` of the port).

    Main branch: 1x1 conv in -> out -> BN, max-unpooled 2x with the indices of the 2x2 max-pool of ``skip``
    (the encoder feature the matching downsampling bottleneck pooled; ``out`` must be its channel count).
    Extension branch: 1x1 conv in -> c = in // internal_ratio -> BN -> act; 2x2 stride-2 transposed conv
    c -> c -> BN -> act; 1x1 conv c -> out -> BN; Dropout2d.  Output: ``act(main + ext)``, at ``skip``'s size.
    No conv has a bias.

    Divergence: at an odd ``skip`` size the transposed conv's extra row / column is cropped (the official code
    asks the transposed conv for the odd size directly); even sizes are unaffected.
    """

    onnx_argmax = True  # the unpooled positions are an argmax: the ONNX check allows rare flips (nasseg.export.onnx)

    def __init__(self, in_channels: int, out_channels: int, *, internal_ratio: int, dropout: float, act: str):
        super().__init__()
        c = internal_width("enet_decoder", in_channels, internal_ratio)
        # main branch: 1x1 projection to the skip's width (then unpooling, parameter-free)
        self.main_conv1 = nn.Sequential(*conv_bn(in_channels, out_channels, 1, None))
        # extension branch
        self.ext_conv1 = nn.Sequential(*conv_bn(in_channels, c, 1, act))
        self.ext_tconv1 = nn.ConvTranspose2d(c, c, 2, stride=2, bias=False)
        self.ext_tconv1_bnorm = nn.BatchNorm2d(c)
        self.ext_tconv1_activation = activation(act)
        self.ext_conv2 = nn.Sequential(*conv_bn(c, out_channels, 1, None))
        self.ext_regul = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.out_activation = activation(act)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        size = skip.shape[-2:]
        # the downsampling bottleneck's pooling indices, recomputed from the feature it pooled
        _, indices = F.max_pool2d(skip, 2, 2, ceil_mode=True, return_indices=True)
        if indices.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"enet_decoder: a tap of size {tuple(size)} pools to {tuple(indices.shape[-2:])}, "
                             f"but the deeper feature is {tuple(x.shape[-2:])}; consecutive taps must differ by "
                             "exactly one 2x downsampling")
        # main branch: projection, max-unpooling
        main = max_unpool(self.main_conv1(x), indices, size)
        # extension branch: projection, 2x2 transposed conv (cropped to the skip's size), expansion, dropout
        ext = self.ext_conv1(x)
        ext = self.ext_tconv1(ext)[..., : size[0], : size[1]]
        ext = self.ext_tconv1_activation(self.ext_tconv1_bnorm(ext))
        ext = self.ext_regul(self.ext_conv2(ext))
        return self.out_activation(main + ext)


class DecoderStage(nn.Module):
    """One ENet decoder stage: an upsampling bottleneck (``up``), then ``depth`` regular bottlenecks (``blocks``)."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, *, internal_ratio: int, dropout: float,
                 act: str):
        super().__init__()
        self.up = UpsamplingBottleneck(in_channels, out_channels, internal_ratio=internal_ratio, dropout=dropout,
                                       act=act)
        self.blocks = nn.Sequential(*(ENetBottleneck(out_channels, out_channels, 1, internal_ratio=internal_ratio,
                                                     dropout=dropout, act=act) for _ in range(depth)))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.up(x, skip))


@register(
    "enet_decoder",
    kind="decoder",
    args=[
        Arg("depths", "ints", (2, 1), "regular bottlenecks after each upsampling bottleneck, deep to shallow "
            "(ENet: 2, 1); one per tap but the deepest", low=0, high=8, min_len=1, max_len=4),
        Arg("internal_ratio", "int", 4, "projection width = in_channels // internal_ratio (ENet: 4)", low=2, high=8),
        Arg("dropout", "float", 0.1, "Dropout2d probability in every decoder bottleneck (ENet: 0.1)",
            low=0.0, high=0.99),
        Arg("act", "str", "relu", "activation of the decoder (ENet: ReLU)", choices=ACTS),
    ],
    examples=[
        {"in_channels": (16, 64, 128), "num_classes": 5, "tap_strides": (2, 4, 8)},
        {"in_channels": (8, 32), "num_classes": 3, "tap_strides": (4, 8), "depths": (0,), "act": "prelu",
         "dropout": 0.0},
    ],
)
class ENetDecoder(nn.Module):
    """ENet's decoder (Paszke et al. 2016, Table 1: bottleneck4.0-4.2, bottleneck5.0-5.1, fullconv).

    ``in_channels`` are the taps, shallow to deep: the deepest is the encoder output, each other one the input
    of a downsampling bottleneck (one 2x downsampling apart from the next tap).  From deep to shallow, per tap:
    an :class:`UpsamplingBottleneck` to that tap's width and size (unpooling with its pooling indices), then
    ``depths[i]`` regular ENet bottlenecks; last, a 3x3 stride-2 transposed conv (pad 1, output pad 1, no
    bias) to the classes at twice the shallowest tap's size.  ``emits_logits`` is true.

    Official (``ENet(num_classes)`` of the port): taps = the initial block's output (16) and stage 1's output
    (64), encoder output 128; ``upsample4_0`` (128 -> 64), ``regular4_1``, ``regular4_2``, ``upsample5_0``
    (64 -> 16), ``regular5_1``, ``transposed_conv``; ReLU and dropout 0.1 throughout.

    Divergences: the pooling indices are recomputed from the taps (module docstring: identical indices);
    the official final transposed conv is given the input size (``output_size``), here it always doubles
    (the same for even sizes; the network's final resize handles the rest); the Lua original differs more
    (projection ``out // 4``, 3x3 transposed convs, 2x2 final full conv, no dropout).
    Parameters with the defaults, taps (16, 64, 128), 20 classes: 34,560 (= the official decoder's).
    """

    emits_logits = True

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, depths: tuple[int, ...] = (2, 1),
                 internal_ratio: int = 4, dropout: float = 0.1, act: str = "relu"):
        super().__init__()
        taps = tuple(int(c) for c in in_channels)
        if len(taps) != len(depths) + 1:
            raise BlockArgumentError("enet_decoder", "depths", tuple(depths),
                                     f"needs one entry per tap but the deepest: {len(taps)} taps {taps} take "
                                     f"{len(taps) - 1} entries")
        self.stages = nn.ModuleList()
        c = taps[-1]
        for i, n in zip(range(len(taps) - 2, -1, -1), depths):
            self.stages.append(DecoderStage(c, taps[i], n, internal_ratio=internal_ratio, dropout=dropout, act=act))
            c = taps[i]
        self.transposed_conv = nn.ConvTranspose2d(c, num_classes, 3, stride=2, padding=1, output_padding=1,
                                                  bias=False)
        self.out_channels = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        y = feats[-1]
        # from deep to shallow: unpool to the tap's size, then the regular bottlenecks
        for k, stage in enumerate(self.stages):
            y = stage(y, feats[len(feats) - 2 - k])
        # fullconv: 3x3 stride-2 transposed conv to the classes
        return self.transposed_conv(y)
