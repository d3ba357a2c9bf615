"""Plain convolution block used for stems, patch embeddings and patch merging."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ACTIVATIONS, ConvBNAct
from nasseg.registry import Arg, register


@register("conv", kind="block", args=[
    Arg("kernel_size", "int", 3, "square kernel; even kernels are patch embeddings (stride = kernel)",
        choices=(1, 2, 3, 4, 5, 7)),
    Arg("act", "str", "relu", "activation after BN", choices=ACTIVATIONS),
    Arg("norm", "bool", True, "BatchNorm after the conv"),
    Arg("bn_eps", "float", 1e-5, "BatchNorm epsilon (ESPNet/ERFNet use 1e-3)", low=0.0, high=0.1, low_open=True),
], examples=[
    {"in_channels": 32, "out_channels": 64, "stride": 1},
    {"in_channels": 32, "out_channels": 64, "stride": 2},
    {"in_channels": 3, "out_channels": 40, "stride": 4, "kernel_size": 4, "act": "none"},
    {"in_channels": 16, "out_channels": 16, "stride": 1, "act": "prelu", "bn_eps": 1e-3},
])
class ConvBlock(nn.Module):
    """Conv -> BN -> act, the stem unit of most real-time networks.

    Odd kernels: padding ``k // 2`` (STDC ConvX, RegSeg stem, ESPNet CBR, BiSeNet spatial path).
    Even kernels are non-overlapping patch embeddings with ``stride == kernel_size`` and no padding
    (FasterNet's 4x4/s4 embedding and 2x2/s2 PatchMerging, both conv (no bias) + BN without activation).
    Divergence: for input sides that are not multiples of the stride, even-kernel convs pad the
    bottom/right with zeros so the output is ceil(H/s) x ceil(W/s) (FasterNet would drop the rest).
    The conv has a bias only when ``norm`` is false.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, kernel_size: int, act: str,
                 norm: bool, bn_eps: float):
        super().__init__()
        if kernel_size % 2 == 0 and stride != kernel_size:
            raise BlockArgumentError("conv", "kernel_size", kernel_size,
                                     f"an even kernel is a patch embedding and needs stride == kernel_size "
                                     f"(stride is {stride}); use an odd kernel otherwise")
        pad = kernel_size // 2 if kernel_size % 2 else 0
        self.unit = ConvBNAct(in_channels, out_channels, kernel_size, stride, padding=pad, norm=norm, act=act,
                              bn_eps=bn_eps)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self._patch = kernel_size % 2 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._patch:
            s = self.stride
            ph, pw = (-x.shape[-2]) % s, (-x.shape[-1]) % s
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph))
        return self.unit(x)
