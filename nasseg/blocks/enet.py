"""ENet's initial block and bottleneck (regular, dilated, asymmetric and downsampling).

A. Paszke, A. Chaurasia, S. Kim, E. Culurciello, "ENet: A Deep Neural Network Architecture for Real-Time
Semantic Segmentation", arXiv 1606.02147 (2016), Sec. 3, Fig. 2, Table 1.

The authors' code is Lua Torch (``e-lab/ENet-training``, ``train/models/encoder.lua`` and ``decoder.lua``); it
has no PyTorch version from the authors.  These modules follow the widely used PyTorch port
``davidtvs/PyTorch-ENet`` (``models/enet.py`` at e17d404: ``InitialBlock``, ``RegularBottleneck``,
``DownsamplingBottleneck``), whose submodule names they keep, so that port's checkpoints import into the
``enet`` preset with ``nasseg weights import`` (``nasseg.weights``).  The upsampling bottleneck and the decoder
are in :mod:`nasseg.heads.enet`: they need the encoder's max-pooling indices.

Where the PyTorch port (and so nasseg) differs from the Lua original:

* the downsampling bottleneck projects to ``in // 4`` channels (Lua: ``out // 4``, e.g. 16 instead of 4 in
  the 16 -> 64 bottleneck);
* the 1x1 expansion is followed by an activation (Lua: BN only, then dropout);
* PReLU has one slope per module (Lua: one per channel), BatchNorm eps is 1e-5 (Lua: 1e-3), no conv has a
  bias (Lua: the 3x3, dilated and second asymmetric convs have one);
* the asymmetric bottleneck puts BN and the activation between its 5x1 and 1x5 convs (Lua: neither);
* the initial block max-pools 3x3 stride 2 pad 1 (Lua: 2x2 stride 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.registry import Arg, register

ACTS = ("prelu", "relu")


def activation(act: str) -> nn.Module:
    """ENet's activation: PReLU with a single slope (the PyTorch port's ``nn.PReLU()``) or ReLU."""
    return nn.PReLU() if act == "prelu" else nn.ReLU()


def conv_bn(cin: int, cout: int, kernel: int | tuple[int, int], act: str | None, *, stride: int = 1,
            padding: int | tuple[int, int] = 0, dilation: int = 1) -> list[nn.Module]:
    """Conv (no bias) -> BN [-> act]: the layers of one step of an ENet branch."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(activation(act))
    return layers


def internal_width(block: str, channels: int, internal_ratio: int) -> int:
    """The bottleneck's projection width ``channels // internal_ratio`` (at least one channel)."""
    internal = channels // internal_ratio
    if internal < 1:
        raise BlockArgumentError(block, "internal_ratio", internal_ratio,
                                 f"must not exceed the projected width ({channels} channels): "
                                 f"{channels} // {internal_ratio} leaves no channel")
    return internal


@register(
    "enet_initial",
    kind="block",
    args=[Arg("act", "str", "prelu", "activation after the BN (ENet's encoder: PReLU)", choices=ACTS)],
    examples=[
        {"in_channels": 3, "out_channels": 16, "stride": 2},
        {"in_channels": 8, "out_channels": 24, "stride": 2, "act": "relu"},
    ],
)
class InitialBlock(nn.Module):
    """ENet's initial block (Paszke et al. 2016, Fig. 2a): concat(3x3 s2 conv, max-pool) -> BN -> act.

    Official (PyTorch port) ``InitialBlock(in, out)``: a 3x3 stride-2 conv (pad 1, no bias) to
    ``out - in`` channels and a 3x3 stride-2 max-pool (pad 1) of the input, concatenated conv first, then
    BN and PReLU (one slope).  Both halves give ``ceil(H/2)``, so odd sizes need no care.
    ``stride`` must be 2 and ``out_channels > in_channels``.

    Divergences: the official conv makes ``out - 3`` channels (it assumes an RGB input and fails on any other);
    here ``out - in``, the same for 3 input channels.  The Lua original pools 2x2 stride 2 (the port, and
    nasseg, 3x3 pad 1).  Parameters: ``9 in (out - in) + 2 out (+ 1 for PReLU)``: 3 -> 16 = 384 (= official).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, *, act: str = "prelu"):
        super().__init__()
        if stride != 2:
            raise BlockArgumentError("enet_initial", "stride", stride, "allowed: 2 (the block always halves "
                                     "the resolution)")
        if out_channels <= in_channels:
            raise BlockArgumentError("enet_initial", "out_channels", out_channels,
                                     f"must exceed in_channels ({in_channels}): the conv half has out - in channels")
        self.main_branch = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=False)
        self.ext_branch = nn.MaxPool2d(3, stride=2, padding=1)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.out_activation = activation(act)
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv half and pooled half, concatenated (conv first), BN, activation
        y = torch.cat([self.main_branch(x), self.ext_branch(x)], 1)
        return self.out_activation(self.batch_norm(y))


@register(
    "enet",
    kind="block",
    args=[
        Arg("kernel_size", "int", 3, "middle conv kernel (ENet: 3; 5 for the asymmetric 5x1/1x5)", choices=(3, 5, 7)),
        Arg("asymmetric", "bool", False, "middle conv as k x 1 then 1 x k (ENet's 'asymmetric' bottleneck)"),
        Arg("dilation", "int", 1, "dilation of the middle conv (ENet's 'dilated' bottlenecks: 2, 4, 8, 16)",
            low=1, high=32),
        Arg("internal_ratio", "int", 4, "projection width = in_channels // internal_ratio (ENet: 4)", low=2, high=8),
        Arg("dropout", "float", 0.0, "Dropout2d probability on the extension branch (ENet: 0.01, 0.1)",
            low=0.0, high=0.99),
        Arg("act", "str", "prelu", "activation (ENet's encoder: PReLU, its decoder: ReLU)", choices=ACTS),
    ],
    examples=[
        {"in_channels": 64, "out_channels": 64, "stride": 1},
        {"in_channels": 16, "out_channels": 64, "stride": 2, "dropout": 0.01},
        {"in_channels": 32, "out_channels": 32, "stride": 1, "dilation": 4, "act": "relu"},
        {"in_channels": 32, "out_channels": 32, "stride": 1, "kernel_size": 5, "asymmetric": True},
        {"in_channels": 32, "out_channels": 48, "stride": 2, "kernel_size": 5, "asymmetric": True, "dilation": 2},
    ],
)
class ENetBottleneck(nn.Module):
    """ENet bottleneck (Paszke et al. 2016, Sec. 3, Fig. 2b, Table 1): regular, dilated, asymmetric, downsampling.

    Extension branch (official ``RegularBottleneck`` / ``DownsamplingBottleneck`` of the PyTorch port)::

        ext_conv1: 1x1 (stride 1) or 2x2 stride 2 (downsampling) conv in -> c = in // internal_ratio -> BN -> act
        ext_conv2: k x k conv (dilation d)            -> BN -> act
                   or, asymmetric: k x 1 -> BN -> act -> 1 x k -> BN -> act
        ext_conv3: 1x1 conv c -> out -> BN -> act
        ext_regul: Dropout2d(p)

    Main branch: the input (stride 1, ``in == out``), or its 2x2 stride-2 max-pool zero-padded to ``out``
    channels (stride 2, ``out >= in``).  Output: ``out_activation(main + ext)``.  No conv has a bias.

    The paper's variants are arguments: regular (defaults), dilated (``dilation``), asymmetric
    (``asymmetric=True, kernel_size=5``), downsampling (``stride=2``).  The downsampling bottleneck's max-pool
    indices are not returned: ``enet_decoder`` recomputes them from the tapped encoder feature (the same
    pooling of the same tensor, so the same indices).

    Divergences from the official code (the PyTorch port; for the Lua original see the module docstring):

    * the official downsampling bottleneck's middle conv is always a plain 3x3; here it takes the block's
      ``kernel_size`` / ``asymmetric`` / ``dilation`` like a stride-1 block (the official blocks are the defaults);
    * odd sizes: the official downsampling bottleneck floors (2x2 pool and unpadded 2x2 conv); here both give
      ``ceil(H/2)`` like every nasseg block (ceil-mode pool, the 2x2 conv's input zero-padded by one row /
      column at the bottom / right); even sizes are unaffected;
    * padding is ``dilation * (k - 1) // 2`` on the conv's long axis (the official code passes a fixed
      ``padding``: the same value for every configuration it builds);
    * ``dropout == 0`` is an ``nn.Identity`` (the official code keeps a ``Dropout2d(0)``).

    Parameters (PReLU; ReLU has 4, asymmetric 5, fewer), each equal to the official block's: regular 64 = 4,548,
    128 = 17,796 (dilated the same); asymmetric 5 on 128 = 18,885; downsampling 16 -> 64 = 804, 64 -> 128 = 8,772.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, kernel_size: int = 3,
                 asymmetric: bool = False, dilation: int = 1, internal_ratio: int = 4, dropout: float = 0.0,
                 act: str = "prelu"):
        super().__init__()
        if stride not in (1, 2):
            raise BlockArgumentError("enet", "stride", stride, "allowed: 1 (regular) or 2 (downsampling)")
        if stride == 1 and out_channels != in_channels:
            raise BlockArgumentError("enet", "out_channels", out_channels,
                                     f"must equal in_channels ({in_channels}) at stride 1: the shortcut is the "
                                     "identity (a width change needs stride 2)")
        if stride == 2 and out_channels < in_channels:
            raise BlockArgumentError("enet", "out_channels", out_channels,
                                     f"must be >= in_channels ({in_channels}) at stride 2: the pooled shortcut is "
                                     "zero-padded up to out_channels")
        c = internal_width("enet", in_channels, internal_ratio)
        # Extension branch: projection (strided 2x2 when downsampling)
        self.ext_conv1 = nn.Sequential(*conv_bn(in_channels, c, stride, act, stride=stride))
        # middle conv: regular / dilated k x k, or asymmetric k x 1 then 1 x k
        pad = dilation * (kernel_size - 1) // 2
        if asymmetric:
            self.ext_conv2 = nn.Sequential(
                *conv_bn(c, c, (kernel_size, 1), act, padding=(pad, 0), dilation=dilation),
                *conv_bn(c, c, (1, kernel_size), act, padding=(0, pad), dilation=dilation))
        else:
            self.ext_conv2 = nn.Sequential(*conv_bn(c, c, kernel_size, act, padding=pad, dilation=dilation))
        # expansion, regulariser
        self.ext_conv3 = nn.Sequential(*conv_bn(c, out_channels, 1, act))
        self.ext_regul = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.out_activation = activation(act)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = x
        if self.stride == 2:
            # main branch: 2x2 max-pool (ceil mode), zero channels appended up to out_channels
            main = F.max_pool2d(x, 2, 2, ceil_mode=True)
            main = F.pad(main, [0, 0, 0, 0, 0, self.out_channels - self.in_channels])
            # the 2x2 stride-2 projection sees an even size (a zero row / column at odd sides)
            x = F.pad(x, [0, x.shape[-1] % 2, 0, x.shape[-2] % 2])
        # extension branch: projection, middle conv, expansion, dropout
        ext = self.ext_regul(self.ext_conv3(self.ext_conv2(self.ext_conv1(x))))
        # sum and activation
        return self.out_activation(main + ext)
