"""FasterNet's partial convolution and block (Chen et al., "Run, Don't Walk: Chasing Higher FLOPS for Faster
Neural Networks", CVPR 2023, Sec. 3.1-3.3, Fig. 4-5).

Follows the official ``JierunChen/FasterNet`` ``models/fasternet.py`` (``Partial_conv3``, ``MLPBlock``,
``PatchMerging``) layer for layer, with the official submodule names (``partial_conv3``,
``spatial_mixing``, ``mlp``, ``reduction``/``norm``), so a block's tensors have the official names inside
the block.  The official ImageNet checkpoints of FasterNet-T0/T1/T2 (``patch_embed``, ``stages.K.blocks.M``,
``avgpool_pre_head``, ``head``) import into the ``fasternet_t0/t1/t2`` presets with ``nasseg weights
import`` (``nasseg.weights``), every tensor checked; they do not ``load_state_dict`` as is.  FasterNet-S/M/L
have no preset.

The FasterNet network keeps the width inside a stage and downsamples between stages with PatchMerging
(2x2 conv stride 2 + BN, C -> 2C).  So that these modules can start a stage in a searched network, a block
built with stride 2 or with in != out **prepends that PatchMerging** (``merge``; kernel = stride, so a
stride-1 width change is a 1x1 conv + BN): ``FasterNetBlock(C, 2C, stride=2)`` is exactly the official
``PatchMerging(C)`` followed by ``MLPBlock(2C)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import DropPath, make_act
from nasseg.registry import Arg, register

PCONV_FORWARD_MODES: tuple[str, ...] = ("split_cat", "slicing")


def partial_channels(channels: int, partial_ratio: float) -> int:
    """Channels PConv convolves: floor(channels * r) (official ``dim // n_div`` with n_div = 1/r)."""
    return math.floor(channels * partial_ratio + 1e-9)


class PatchMerging(nn.Module):
    """FasterNet's PatchMerging: conv (kernel = stride = ``stride``, no bias) + BN.

    Official: 2x2 stride 2, C -> 2C.  An odd input is zero-padded on the bottom/right first, so the output
    is ceil(H/2) x ceil(W/2) like every nasseg block (the official net only sees even sizes).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.reduction = nn.Conv2d(in_channels, out_channels, stride, stride, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            h, w = x.shape[-2:]
            pad_h, pad_w = -h % self.stride, -w % self.stride
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.norm(self.reduction(x))


def _merge(block: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride not in (1, 2):
        raise BlockArgumentError(block, "stride", stride, "allowed: 1, 2")
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return PatchMerging(in_channels, out_channels, stride)


def _check_partial(block: str, channels: int, partial_ratio: float) -> int:
    conv = partial_channels(channels, partial_ratio)
    if not 0 < partial_ratio <= 1 or conv < 1:
        raise BlockArgumentError(
            block, "partial_ratio", partial_ratio,
            f"allowed: a ratio in (0, 1] with floor({channels} * partial_ratio) >= 1 convolved channel",
        )
    return conv


@register(
    "pconv",
    kind="block",
    args=[
        Arg("partial_ratio", "float", 0.25, low=0.0, high=1.0, low_open=True,
            doc="fraction r of the channels the 3x3 conv sees (FasterNet: 1/4 everywhere)"),
        Arg("forward_mode", "str", "split_cat", choices=PCONV_FORWARD_MODES,
            doc="'split_cat' (official training path) or 'slicing' (official inference path); same output"),
    ],
    examples=[
        {"in_channels": 32, "out_channels": 32, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 2},
        {"in_channels": 48, "out_channels": 48, "stride": 1, "partial_ratio": 1.0, "forward_mode": "slicing"},
        {"in_channels": 32, "out_channels": 32, "stride": 2, "partial_ratio": 0.5, "forward_mode": "slicing"},
    ],
)
class PConv(nn.Module):
    """Partial convolution (FasterNet, CVPR 2023, Sec. 3.1, Fig. 4): a regular 3x3 conv on r of the channels.

    A dense 3x3 conv (stride 1, no bias, no BN/act) is applied to the first floor(C * r) channels; the other
    channels pass through unchanged and the channel order is kept (official ``Partial_conv3``, n_div = 1/r).
    ``forward_mode`` picks the official ``split_cat`` or ``slicing`` forward (identical outputs).

    Divergences from the official code: with stride 2 or in != out a FasterNet PatchMerging (``merge``:
    conv kernel = stride, stride ``stride``, no bias, + BN; 1x1 at stride 1) runs first and the partial conv
    works at ``out_channels`` (the official network places PatchMerging between stages); odd sizes are
    zero-padded on the bottom/right before a stride-2 merge.  The official class takes n_div (an integer);
    ``partial_ratio`` = 1/n_div.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        partial_ratio: float = 0.25,
        forward_mode: str = "split_cat",
    ):
        super().__init__()
        if forward_mode not in PCONV_FORWARD_MODES:
            raise BlockArgumentError("pconv", "forward_mode", forward_mode,
                                     "allowed: " + ", ".join(map(repr, PCONV_FORWARD_MODES)))
        conv_channels = _check_partial("pconv", out_channels, partial_ratio)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.forward_mode = forward_mode
        self.dim_conv3 = conv_channels
        self.dim_untouched = out_channels - conv_channels
        self.merge = _merge("pconv", in_channels, out_channels, stride)
        self.partial_conv3 = nn.Conv2d(conv_channels, conv_channels, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # PatchMerging when the block downsamples or changes width (identity otherwise)
        x = self.merge(x)
        if self.forward_mode == "slicing":
            # official inference path: write the conv of the first channels into a copy of the input
            # (the input stays intact for a residual around this conv)
            y = self.partial_conv3(x[:, : self.dim_conv3])
            x = x.clone()
            x[:, : self.dim_conv3] = y
            return x
        # split -> 3x3 conv on the first part -> concat (convolved part first, channel order kept)
        x1, x2 = torch.split(x, [self.dim_conv3, self.dim_untouched], dim=1)
        return torch.cat((self.partial_conv3(x1), x2), 1)


_MLP_ARGS = [
    Arg("mlp_ratio", "float", 2.0, low=0.0, high=16.0, low_open=True,
        doc="hidden width of the 1x1-conv MLP = int(C * mlp_ratio) (FasterNet: 2)"),
    Arg("act", "str", "relu", choices=("gelu", "relu"),
        doc="activation between the two 1x1 convs (FasterNet-T0/T1 GELU, T2 and larger ReLU)"),
    Arg("drop_path", "float", 0.0, low=0.0, high=0.9,
        doc="stochastic-depth probability of the residual branch (FasterNet: 0 ... 0.3)"),
]


@register(
    "fasternet",
    kind="block",
    args=[
        Arg("partial_ratio", "float", 0.25, low=0.0, high=1.0, low_open=True,
            doc="fraction r of the channels PConv convolves (FasterNet: 1/4)"),
        *_MLP_ARGS,
    ],
    examples=[
        {"in_channels": 32, "out_channels": 32, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 2},
        {"in_channels": 40, "out_channels": 40, "stride": 1, "act": "gelu", "drop_path": 0.1},
        {"in_channels": 48, "out_channels": 48, "stride": 2, "partial_ratio": 0.5, "mlp_ratio": 1.5},
    ],
)
class FasterNetBlock(nn.Module):
    """FasterNet block (CVPR 2023, Sec. 3.3, Fig. 5): PConv -> 1x1 conv (C -> mlp_ratio*C) + BN + act ->
    1x1 conv (-> C, no BN) -> DropPath -> + input.

    The official ``MLPBlock``: no bias anywhere, BN and the activation only between the two 1x1 convs, the
    residual taken from the block input (before PConv); layer scale is off in every released model and is
    not offered.

    Divergences from the official code: with stride 2 or in != out a FasterNet PatchMerging (``merge``:
    conv kernel = stride, stride ``stride``, no bias, + BN; 1x1 at stride 1) runs first and the block works
    at ``out_channels`` — for (C, 2C, stride 2) this is exactly the official between-stage PatchMerging
    followed by an ``MLPBlock(2C)``; the residual is taken after the merge.  Odd sizes are zero-padded on
    the bottom/right before a stride-2 merge.  ``partial_ratio`` = 1/n_div of the official code.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        partial_ratio: float = 0.25,
        mlp_ratio: float = 2.0,
        act: str = "relu",
        drop_path: float = 0.0,
    ):
        super().__init__()
        if act not in ("gelu", "relu"):
            raise BlockArgumentError("fasternet", "act", act, "allowed: 'gelu', 'relu'")
        _check_partial("fasternet", out_channels, partial_ratio)
        hidden = int(out_channels * mlp_ratio)
        if hidden < 1:
            raise BlockArgumentError("fasternet", "mlp_ratio", mlp_ratio,
                                     f"allowed: a ratio with int({out_channels} * mlp_ratio) >= 1")
        if not 0.0 <= drop_path < 1.0:
            raise BlockArgumentError("fasternet", "drop_path", drop_path, "allowed: a probability in [0, 1)")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.merge = _merge("fasternet", in_channels, out_channels, stride)
        self.spatial_mixing = PConv(out_channels, out_channels, 1, partial_ratio=partial_ratio,
                                    forward_mode="split_cat")
        self.mlp = nn.Sequential(
            nn.Conv2d(out_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            make_act(act),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # PatchMerging when the block downsamples or changes width (identity otherwise)
        shortcut = x = self.merge(x)
        # spatial mixing on r of the channels, then the channel MLP, then the residual
        x = self.spatial_mixing(x)
        return shortcut + self.drop_path(self.mlp(x))


@register(
    "fasternet_dw",
    kind="block",
    args=_MLP_ARGS,
    examples=[
        {"in_channels": 40, "out_channels": 40, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 2, "act": "gelu"},
        {"in_channels": 32, "out_channels": 64, "stride": 1, "drop_path": 0.1},
    ],
)
class FasterNetDWBlock(FasterNetBlock):
    """The FasterNet block with a depthwise 3x3 conv where PConv is, everything else equal: the block of the
    paper's PConv-vs-DWConv comparison (Sec. 3.1: DWConv has fewer FLOPs than PConv but more memory access
    per FLOP).  Not in the official code; like PConv the depthwise conv is 3x3, stride 1, no bias, no BN or
    activation, and keeps the official submodule name ``spatial_mixing``.  Parameters: the FasterNet block's
    minus PConv's (r C)^2 x 9 plus C x 9.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, mlp_ratio: float = 2.0,
                 act: str = "relu", drop_path: float = 0.0):
        super().__init__(in_channels, out_channels, stride, mlp_ratio=mlp_ratio, act=act, drop_path=drop_path)
        self.spatial_mixing = nn.Conv2d(out_channels, out_channels, 3, 1, 1, groups=out_channels, bias=False)
