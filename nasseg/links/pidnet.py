"""PIDNet's links from the integral (I, main) path into the proportional (P) and derivative (D) branches
(Xu et al., "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID Controllers", CVPR 2023,
Sec. 3.2, Fig. 4).

Official code ``XuJiacong/PIDNet`` ``models/pidnet.py`` (``compression3/4``, ``pag3/4``, ``diff3/4`` and the
``forward`` lines around them)::

    x_  = pag3(x_, compression3(x))                                  # P <- I: pid_pag
    x_d = x_d + interpolate(diff3(x), bilinear, align_corners=False)  # D <- I: pid_diff

The I path itself is unchanged by both.  Both read ``relu(main)``: the official I path applies a ReLU after
every layer (``x = self.relu(self.layer3(x))``), and in nasseg's convention for multi-branch genomes a main stage
that feeds a link ends before its ReLU (its last block ``no_relu``) and the next stage applies it (``relu_in``),
as DDRNet's code does; so DDRNet and PIDNet genomes share one main path, and a link reads the ReLU'd value where
the official code does.  Numerically this is the official computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.fusion.pidnet import PagFM
from nasseg.layers import resize_to
from nasseg.links.common import halvings
from nasseg.registry import Arg, register


@register("pid_pag", kind="link", args=[
    Arg("mid_channels", "int", 0, "width of Pag's 1x1 query/key projections; 0 = branch_channels // 2 "
        "(PIDNet PagFM(2C, C))", low=0, high=4096),
], examples=[
    {"main_channels": 128, "branch_channels": 64, "scale": 2},
    {"main_channels": 256, "branch_channels": 64, "scale": 4, "mid_channels": 16},
])
class PagLink(nn.Module):
    """P <- I through Pag: ``branch = PagFM(branch, compress(relu(main)))``; the main path is returned unchanged.

    ``compress``: 1x1 conv (no bias) + BN, main -> branch width (PIDNet ``compression3`` 4C -> 2C,
    ``compression4`` 8C -> 2C); ``pag``: nasseg's ``pag`` fusion with equal widths, which is exactly the
    official ``PagFM(2C, C)`` (after_relu and with_channel off).  Children ``compress`` (a Sequential indexed
    like ``compression3``) and ``pag``.  No divergence from the official modules is known.
    """

    def __init__(self, main_channels: int, branch_channels: int, scale: int, *, mid_channels: int):
        super().__init__()
        halvings("pid_pag", scale)
        self.compress = nn.Sequential(nn.Conv2d(main_channels, branch_channels, 1, bias=False),
                                      nn.BatchNorm2d(branch_channels))
        self.pag = PagFM(branch_channels, branch_channels, branch_channels, mid_channels=mid_channels,
                         after_relu=False, with_channel=False)
        self.main_channels, self.branch_channels = main_channels, branch_channels
        self.out_channels = branch_channels

    def forward(self, main: torch.Tensor, branch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return main, self.pag(branch, self.compress(F.relu(main)))


@register("pid_diff", kind="link", examples=[
    {"main_channels": 128, "branch_channels": 32, "scale": 2},
    {"main_channels": 256, "branch_channels": 64, "scale": 4},
])
class DiffLink(nn.Module):
    """D <- I: ``branch = branch + up(diff(relu(main)))``; the main path is returned unchanged.

    ``diff``: 3x3 conv (no bias) + BN, main -> branch width (PIDNet-S/M ``diff3`` 4C -> C, ``diff4`` 8C -> 2C;
    PIDNet-L 4C -> 2C, 8C -> 2C), upsampled bilinearly (align_corners=False) to the branch.  Child ``diff``
    (a Sequential indexed like ``diff3``).  No divergence from the official modules is known.
    """

    def __init__(self, main_channels: int, branch_channels: int, scale: int):
        super().__init__()
        halvings("pid_diff", scale)
        self.diff = nn.Sequential(nn.Conv2d(main_channels, branch_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(branch_channels))
        self.main_channels, self.branch_channels = main_channels, branch_channels
        self.out_channels = branch_channels

    def forward(self, main: torch.Tensor, branch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return main, branch + resize_to(self.diff(F.relu(main)), branch.shape[-2:], "bilinear", align_corners=False)
