"""DDRNet's Deep Aggregation Pyramid Pooling Module (Hong et al., arXiv 2101.06085, Sec. 3.3, Fig. 5)."""

from __future__ import annotations

import torch
from torch import nn

from nasseg.layers import resize_to
from nasseg.registry import Arg, register

# Official DDRNet / PIDNet ``bn_mom = 0.1``: the same as PyTorch's default, written out so that it is
# visibly the official value.
BN_MOMENTUM = 0.1

# The four pooled branches shared by DAPPM and PAPPM: (kernel, stride, padding) of the average pools,
# then a global average pool.  Relative to the input these are scales 1/2, 1/4, 1/8 and global.
POOLS: tuple[tuple[int, int, int], ...] = ((5, 2, 2), (9, 4, 4), (17, 8, 8))


def bn_relu_conv(in_channels: int, out_channels: int, kernel_size: int = 1, *, groups: int = 1,
                 pool: nn.Module | None = None) -> nn.Sequential:
    """Pre-activation unit of DDRNet and PIDNet: [pool ->] BN -> ReLU -> conv (no bias).

    Children are numbered exactly as in the official ``nn.Sequential`` (pool first when present), so
    official DDRNet / PIDNet ``spp.*`` weights load key for key.
    """
    layers: list[nn.Module] = [] if pool is None else [pool]
    layers += [
        nn.BatchNorm2d(in_channels, momentum=BN_MOMENTUM),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups,
                  bias=False),
    ]
    return nn.Sequential(*layers)


def pooled_branches(module: nn.Module, in_channels: int, branch_channels: int) -> None:
    """Add ``scale0`` (no pool) and ``scale1..scale4`` (the pools of ``POOLS``, then global) to ``module``,
    each a BN-ReLU-1x1-conv in -> branch; the attribute names are the official ones."""
    module.scale0 = bn_relu_conv(in_channels, branch_channels)
    pools = [nn.AvgPool2d(k, s, p) for k, s, p in POOLS] + [nn.AdaptiveAvgPool2d((1, 1))]
    for i, pool in enumerate(pools, start=1):
        setattr(module, f"scale{i}", bn_relu_conv(in_channels, branch_channels, pool=pool))


def upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Bilinear, align_corners=False: the official ``algc = False`` (DDRNet-23-slim passes no flag)."""
    return resize_to(x, size, "bilinear", align_corners=False)


@register("dappm", kind="context", args=[
    Arg("branch_channels", "int", 128, "width of every pooled branch (DDRNet spp_planes)", low=1, high=4096),
])
class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module of DDRNet (arXiv 2101.06085, Sec. 3.3, Fig. 5).

    Official code ``ydhongHIT/DDRNet`` ``segmentation/DDRNet_23_slim.py`` ``DAPPM`` (identical in
    ``XuJiacong/PIDNet`` ``models/model_utils.py``, used by PIDNet-L).  Every unit is pre-activation
    BN -> ReLU -> conv, bias-free, BN momentum 0.1:

    * y0 = 1x1(x); branch_i = 1x1(pool_i(x)) with AvgPool (5, s2, p2), (9, s4, p4), (17, s8, p8)
      and a global average pool;
    * **cascade**: y_i = 3x3(up(branch_i) + y_{i-1}) for i = 1..4 (bilinear, align_corners=False);
    * out = 1x1(cat[y0..y4]: 5 * branch -> out) + 1x1 shortcut(x: in -> out).

    Submodule names (``scale0..4``, ``process1..4``, ``compression``, ``shortcut``) and their child
    numbering are the official ones, so official ``spp.*`` weights load key for key.  No divergence
    from the official code is known.  The pools work on maps smaller than their kernels (padding
    keeps at least one output pixel); the global branch normalises one value per channel and image,
    so training needs a batch of at least 2, as in the official code.
    """

    def __init__(self, in_channels: int, out_channels: int, *, branch_channels: int):
        super().__init__()
        pooled_branches(self, in_channels, branch_channels)
        for i in range(1, 5):
            setattr(self, f"process{i}", bn_relu_conv(branch_channels, branch_channels, 3))
        self.compression = bn_relu_conv(5 * branch_channels, out_channels)
        self.shortcut = bn_relu_conv(in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        ys = [self.scale0(x)]  # y0: 1x1 on the input
        # the cascade: each pooled branch, upsampled, is added to the previous output and refined by a 3x3
        for scale, process in ((self.scale1, self.process1), (self.scale2, self.process2),
                               (self.scale3, self.process3), (self.scale4, self.process4)):
            ys.append(process(upsample(scale(x), size) + ys[-1]))
        return self.compression(torch.cat(ys, 1)) + self.shortcut(x)  # fuse + shortcut
