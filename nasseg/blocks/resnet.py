"""ResNet residual blocks (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 3.3,
Fig. 5) as DDRNet and PIDNet write them, and their two-conv stem.

* DDRNet (Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic Segmentation of Road
  Scenes", arXiv 2101.06085, Sec. 3): ``ydhongHIT/DDRNet`` at de0db31, ``segmentation/DDRNet_23_slim.py`` and
  ``segmentation/DDRNet_23.py`` (``BasicBlock``, ``Bottleneck``, ``DualResNet.conv1``).
* PIDNet (Xu et al., "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID Controllers", CVPR 2023,
  Sec. 3.1): ``XuJiacong/PIDNet`` at 4c158cf, ``models/model_utils.py`` (the same ``BasicBlock`` / ``Bottleneck``)
  and ``models/pidnet.py`` (``PIDNet.conv1``).

Both papers take torchvision's ResNet units and add one flag, ``no_relu``: the last block of each of their
layers leaves out the ReLU after the residual sum, because the sum is later added to the other branch and the
next layer applies the ReLU to its input (``Stage.relu_in``).  Their ``Bottleneck`` widens by 2 (torchvision's
by 4; ``expansion`` here).  Submodules carry the official names (``conv1``, ``bn1``, ``conv2``, ``bn2``,
``conv3``, ``bn3``, ``downsample.0`` / ``.1``), so official checkpoints map one to one.  BatchNorm: momentum 0.1,
eps 1e-5 (the official ``bn_mom = 0.1``, PyTorch's defaults).  Convs have no bias, except the stem's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.registry import Arg, register

_NO_RELU = Arg("no_relu", "bool", False, "leave out the ReLU after the residual sum (DDRNet/PIDNet: the last "
               "block of a layer; torchvision: false)")


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The official ``downsample``: 1x1 conv (stride, no bias) + BN where the shape changes, else identity."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


@register("resnet_basic", kind="block", args=[_NO_RELU], examples=[
    {"in_channels": 32, "out_channels": 32, "stride": 1},
    {"in_channels": 32, "out_channels": 64, "stride": 2},
    {"in_channels": 64, "out_channels": 32, "stride": 1, "no_relu": True},  # PIDNet-S/M D branch, 2C -> C
])
class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3 (stride) - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU.

    The shortcut is the input, or ``downsample`` = conv1x1 (stride, no bias) + BN when the stride is not 1
    or the width changes (DDRNet/PIDNet ``_make_layer``).  ``no_relu`` leaves out the final ReLU (official
    ``BasicBlock(no_relu=True)``).  Divergence: the official sum is in place (``out += residual``); here
    it is not, which changes no value.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, no_relu: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = _shortcut(in_channels, out_channels, stride)
        self.no_relu = no_relu
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # 3x3 (stride) - BN - ReLU
        out = self.bn2(self.conv2(out))  # 3x3 - BN
        out = out + self.downsample(x)  # residual sum
        return out if self.no_relu else self.relu(out)


@register("resnet_bottleneck", kind="block", args=[
    Arg("expansion", "int", 2, "output width over the inner width (DDRNet/PIDNet: 2; torchvision: 4)",
        low=1, high=8),
    _NO_RELU,
], examples=[
    {"in_channels": 32, "out_channels": 64, "stride": 1},  # DDRNet layer5_: 64 -> planes 32 -> 64 (slim: 64 -> 128)
    {"in_channels": 64, "out_channels": 128, "stride": 2, "no_relu": True},
    {"in_channels": 64, "out_channels": 64, "stride": 1, "expansion": 4},
])
class Bottleneck(nn.Module):
    """ResNet bottleneck: conv1x1 - BN - ReLU, conv3x3 (stride) - BN - ReLU, conv1x1 - BN, + shortcut, ReLU.

    ``out_channels`` is the block's output width; the inner width is ``out_channels // expansion`` (official
    ``planes``, output ``planes * expansion``; DDRNet/PIDNet ``expansion = 2``, torchvision's 4) and must
    divide.  The stride sits on the 3x3 conv (ResNet v1.5, as both official files).  Shortcut and ``no_relu``
    as :class:`BasicBlock`.  Note the official ``Bottleneck``'s own default is ``no_relu=True``; the
    argument's default here is false for both blocks, and presets write it out where the official code
    relies on that default.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, expansion: int, no_relu: bool):
        super().__init__()
        if out_channels % expansion:
            raise BlockArgumentError("resnet_bottleneck", "expansion", expansion,
                                     f"must divide out_channels = {out_channels} (inner width = out_channels / "
                                     f"expansion); allowed here: "
                                     f"{', '.join(str(e) for e in range(1, 9) if out_channels % e == 0)}")
        planes = out_channels // expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)
        self.no_relu = no_relu
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # 1x1 reduce
        out = self.relu(self.bn2(self.conv2(out)))  # 3x3 (stride)
        out = self.bn3(self.conv3(out))  # 1x1 expand
        out = out + self.downsample(x)  # residual sum
        return out if self.no_relu else self.relu(out)


@register("ddr_stem", kind="block", examples=[
    {"in_channels": 3, "out_channels": 32, "stride": 4},
    {"in_channels": 3, "out_channels": 16, "stride": 2},
])
class DualStem(nn.Module):
    """DDRNet / PIDNet stem (``conv1``): log2(stride) times conv3x3 s2 (**with bias**) - BN - ReLU, all at
    ``out_channels`` (both papers: two, to 1/4).

    A block of its own because the official convs keep their bias in front of the BN (the ``conv`` block
    has none with a BN).  ``layers`` is the official ``conv1`` Sequential index for index (conv ``0``, BN
    ``1``, ReLU ``2``, conv ``3`` ...).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if stride not in (2, 4, 8):
            raise BlockArgumentError("ddr_stem", "stride", stride, "allowed: 2, 4, 8 (one conv3x3 s2 per halving)")
        mods: list[nn.Module] = []
        c = in_channels
        for _ in range(int(math.log2(stride))):
            mods += [nn.Conv2d(c, out_channels, 3, 2, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            c = out_channels
        self.layers = nn.Sequential(*mods)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
