"""ShuffleNet V2 unit (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
ECCV 2018, Sec. 4, Fig. 3c (basic unit) and 3d (spatial down sampling unit), Table 5 (the network)), and the
3x3 stride-2 max pool of its stem.

The unit follows torchvision's ``models/shufflenetv2.py`` ``InvertedResidual`` (pytorch/vision 0248e36): the
reference whose ImageNet weights people load, and the layer order of the paper's Fig. 3 (concat, then channel
shuffle at the end of the unit; both branches of the down-sampling unit out/2 wide).  The authors' own code
(megvii-model/ShuffleNet-Series ``ShuffleNetV2/blocks.py``, aa91feb) builds the same kinds of layers with two
differences, listed in the docstring of :class:`ShuffleV2Unit`.  Submodule names and indices are
torchvision's (``branch1``, ``branch2``), so torchvision's ``shufflenet_v2_x1_0`` checkpoint imports into the
``shufflenetv2_1x`` preset with ``nasseg weights import``.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import channel_shuffle
from nasseg.registry import Arg, register


@register(
    "shufflev2",
    kind="block",
    args=[
        Arg("kernel_size", "int", 3, choices=(3, 5, 7),
            doc="depthwise kernel (ShuffleNet V2: 3; the authors' code takes 3/5/7, as in their SPOS supernet)"),
    ],
    examples=[
        {"in_channels": 24, "out_channels": 116, "stride": 2},
        {"in_channels": 116, "out_channels": 116, "stride": 1},
        {"in_channels": 64, "out_channels": 96, "stride": 1},
        {"in_channels": 48, "out_channels": 48, "stride": 1, "kernel_size": 5},
        {"in_channels": 48, "out_channels": 96, "stride": 2, "kernel_size": 7},
    ],
)
class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 unit (ECCV 2018, Sec. 4, Fig. 3c/3d).

    Stride 1 with in == out (Fig. 3c, the basic unit): channel split in two halves; the first passes
    unchanged, the second goes through 1x1 conv + BN + ReLU -> k x k depthwise conv + BN -> 1x1 conv + BN +
    ReLU; concat [first, branch]; channel shuffle with 2 groups.
    Stride 2 (Fig. 3d, the down-sampling unit): no split; ``branch1`` = k x k depthwise conv (stride 2) + BN ->
    1x1 conv in -> out/2 + BN + ReLU and ``branch2`` = 1x1 conv in -> out/2 + BN + ReLU -> depthwise (stride 2)
    + BN -> 1x1 + BN + ReLU; concat [branch1, branch2]; channel shuffle with 2 groups.  No conv has a bias;
    BN eps 1e-5.  ``out_channels`` must be even (two halves of out/2).

    Divergences from torchvision: a stride-1 unit whose width changes (in != out, which torchvision refuses) is
    the two-branch unit of Fig. 3d at stride 1, so that the unit can open a stage of any width; the
    depthwise kernel is an argument (torchvision: 3).  The authors' code (megvii ``ShuffleV2Block``) differs
    from this unit in two ways that change weights but not the layers' kinds: it shuffles at the *start* of a
    stride-1 unit (even/odd channel split) instead of the end of every unit, and its stride-2 unit's
    projection branch keeps the input width (``in -> in``) while the main branch makes ``out - in``
    (ShuffleNet V2 1.0x: 2,278,760 parameters, 145.8 M MACs there against torchvision's 2,278,604 and 144.9 M;
    megvii's classifier also has no bias).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, kernel_size: int = 3):
        super().__init__()
        if stride not in (1, 2):
            raise BlockArgumentError("shufflev2", "stride", stride, "allowed: 1, 2")
        if out_channels % 2:
            raise BlockArgumentError("shufflev2", "out_channels", out_channels,
                                     "allowed: an even width (the unit concatenates two halves of out/2)")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.split = stride == 1 and in_channels == out_channels
        branch = out_channels // 2
        pad = kernel_size // 2
        if self.split:
            self.branch1: nn.Module = nn.Identity()
        else:
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel_size, stride, pad, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, branch, 1, 1, 0, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch if self.split else in_channels, branch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            nn.Conv2d(branch, branch, kernel_size, stride, pad, groups=branch, bias=False),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            # channel split: one half passes, the other goes through the branch
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            # down-sampling (or width-changing) unit: both branches see the whole input
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        # channel shuffle, 2 groups
        return channel_shuffle(out, 2)


@register(
    "maxpool",
    kind="block",
    args=[Arg("kernel_size", "int", 3, choices=(2, 3), doc="pooling window (ShuffleNet V2 / ResNet stems: 3)")],
    examples=[
        {"in_channels": 24, "out_channels": 24, "stride": 2},
        {"in_channels": 16, "out_channels": 16, "stride": 1},
        {"in_channels": 16, "out_channels": 16, "stride": 2, "kernel_size": 2},
    ],
)
class MaxPool(nn.Module):
    """Max pooling as a stage of its own: the 3x3 stride-2 pool (padding 1) after ShuffleNet V2's first conv
    (Table 5, "MaxPool 3x3, stride 2"; torchvision ``maxpool``), the ResNet stem's pool.

    No weights; the width cannot change (``out_channels`` must equal ``in_channels``).  Odd kernels pad by
    k // 2; the 2x2 window pads the bottom/right with -inf (``ceil_mode``), so every size gives
    ceil(H / stride) x ceil(W / stride) like the other blocks.  Divergences: none for the 3x3 window.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, kernel_size: int = 3):
        super().__init__()
        if out_channels != in_channels:
            raise BlockArgumentError("maxpool", "out_channels", out_channels,
                                     f"allowed: {in_channels} (a pool keeps the width of its input)")
        if stride not in (1, 2):
            raise BlockArgumentError("maxpool", "stride", stride, "allowed: 1, 2")
        if kernel_size == 2 and stride != 2:
            raise BlockArgumentError("maxpool", "kernel_size", kernel_size, "allowed: 2 only with stride 2; 3")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        pad = kernel_size // 2 if kernel_size % 2 else 0
        self.pool = nn.MaxPool2d(kernel_size, stride, pad, ceil_mode=kernel_size % 2 == 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)
