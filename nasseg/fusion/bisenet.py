"""BiSeNet's attention refinement (ARM) and feature fusion (FFM) modules, as STDC-Seg uses them, and
BiSeNet V2's bilateral guided aggregation (BGA, at the end of this file).

Yu et al., "BiSeNet", ECCV 2018, Sec. 3.3, Fig. 2(b)/(c); Fan et al., "Rethinking BiSeNet" (STDC-Seg),
CVPR 2021, Sec. 3.2.  Official code: STDC-Seg ``models/model_stages.py`` (``AttentionRefinementModule``,
``FeatureFusionModule``, ``ContextPath``); BiSeNet author code ``ycszen/TorchSeg``
``furnace/seg_opr/seg_oprs.py``.

STDC-Seg's context path written as the generic top-down chain (taps f8, f16, f32 of STDC1/2)::

    cp32 = ARM32(f32) + gap(f32)                 = arm(refine="none")   (low=f32, high=gap(f32))
    cp16 = ARM16(f16) + conv_head32(up(cp32))    = arm(refine="conv3x3")(low=f16, high=cp32)
    out  = FFM(cat(f8, conv_head16(up(cp16))))   = ffm(refine="conv3x3")(low=f8,  high=cp16)

Submodule names follow the official classes (``conv``, ``conv_atten``, ``bn_atten``, ``convblk``,
``conv1``, ``conv2``), so STDC-Seg weights map one to one (``nasseg weights import stdc1_seg``: ``cp.arm16``
-> ``decoder.fusions.1.arm``, ``cp.conv_head32`` -> ``decoder.fusions.1.refine`` ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct, resize_to
from nasseg.registry import Arg, register

_UPSAMPLE = Arg("upsample", "str", "nearest",
                "how `high` is resized to `low`: nearest (STDC-Seg, CoinCheung) or bilinear "
                "(TorchSeg, align_corners=True)", choices=("nearest", "bilinear"))


def _refine(name: str, refine: str, high_channels: int, out_channels: int) -> nn.Module:
    """STDC-Seg's ``conv_head32/16``: ConvBNReLU 3x3 on the upsampled high feature, or nothing."""
    if refine == "conv3x3":
        return ConvBNAct(high_channels, out_channels, 3)
    if high_channels != out_channels:
        raise BlockArgumentError(
            name, "refine", refine,
            f"'none' needs high_channels == {out_channels} (got high_channels={high_channels}); "
            "use refine='conv3x3' to change the width")
    return nn.Identity()


def _upsample(x: torch.Tensor, size: torch.Size, mode: str) -> torch.Tensor:
    return resize_to(x, size, mode, align_corners=True)


class AttentionRefinementModule(nn.Module):
    """ARM: F = ConvBNReLU 3x3 (in -> out); a = sigmoid(BN(Conv1x1 no bias(GAP F))); out = F * a.

    STDC-Seg ``AttentionRefinementModule(in_chan, out_chan)``; BiSeNet Fig. 2(b).  The attention BN
    sees one value per channel and image, so training needs a batch of at least 2 (as officially).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNAct(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)  # 3x3 ConvBNReLU
        atten = self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1)))  # GAP -> 1x1 conv -> BN
        atten = torch.sigmoid(atten)
        return feat * atten


class FeatureFusionModule(nn.Module):
    """FFM: F = ConvBNReLU 1x1 (cat -> out); a = sigmoid(W2 ReLU(W1 GAP F)); out = F + F * a.

    STDC-Seg ``FeatureFusionModule(in_chan, out_chan)``; BiSeNet Fig. 2(c).  W1: out -> out // reduction,
    W2: back to out, both 1x1 convs without bias or BN.  STDC-Seg uses reduction 4, TorchSeg's BiSeNet 1.
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 4):
        super().__init__()
        mid = out_channels // reduction
        if mid < 1:
            raise BlockArgumentError("ffm", "reduction", reduction,
                                     f"at most out_channels={out_channels} (out_channels // reduction >= 1)")
        self.convblk = ConvBNAct(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2d(out_channels, mid, 1, bias=False)
        self.conv2 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([low, high], dim=1))  # concat -> 1x1 ConvBNReLU
        atten = F.adaptive_avg_pool2d(feat, 1)  # GAP
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(atten))))  # 1x1 -> ReLU -> 1x1 -> sigmoid
        return feat + feat * atten


@register("arm", kind="fusion", args=[
    Arg("refine", "str", "conv3x3",
        "conv3x3: ConvBNReLU 3x3 high -> out after upsampling (STDC-Seg conv_head32/16); none: identity "
        "(high_channels must equal out_channels)", choices=("conv3x3", "none")),
    _UPSAMPLE,
], examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
    {"low_channels": 32, "high_channels": 48, "out_channels": 48, "refine": "none", "upsample": "bilinear"},
])
class ARMFusion(nn.Module):
    """BiSeNet/STDC-Seg context-path step: out = ARM(low: low -> out) + R(up(high)).

    STDC-Seg ``ContextPath.forward``: ``feat16_sum = arm16(feat16) + conv_head32(up(feat32_sum))``, with
    R = ``conv_head32`` (ConvBNReLU 3x3 high -> out, applied *after* upsampling) for ``refine="conv3x3"``;
    ``refine="none"`` is the first step ``arm32(feat32) + avg`` where ``high`` is the global context
    (a 1x1 map, which nearest upsampling broadcasts).

    Divergence: the official code applies the head conv to the sum of the *previous* step and upsamples
    there; as a chain, this module owns the conv that consumes its ``high`` input.  Parameter counts are
    identical (tests/fusion/test_bisenet.py).  Bilinear upsampling uses align_corners=True (TorchSeg).
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, refine: str,
                 upsample: str):
        super().__init__()
        self.arm = AttentionRefinementModule(low_channels, out_channels)
        self.refine = _refine("arm", refine, high_channels, out_channels)
        self.upsample = upsample
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = self.refine(_upsample(high, low.shape[-2:], self.upsample))  # up, then conv_head
        return self.arm(low) + high


@register("ffm", kind="fusion", args=[
    Arg("refine", "str", "conv3x3",
        "conv3x3: ConvBNReLU 3x3 high -> high after upsampling (STDC-Seg conv_head16); none: identity",
        choices=("conv3x3", "none")),
    Arg("reduction", "int", 4, "channel attention squeeze: out -> out // reduction (STDC-Seg 4, TorchSeg 1)",
        low=1, high=64),
    _UPSAMPLE,
], examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
    {"low_channels": 32, "high_channels": 64, "out_channels": 48, "refine": "none", "reduction": 1,
     "upsample": "bilinear"},
])
class FFMFusion(nn.Module):
    """BiSeNet/STDC-Seg fusion of the 1/8 feature with the context path: out = FFM(cat(low, R(up(high)))).

    STDC-Seg: ``ffm(feat8, conv_head16(up(feat16_sum)))`` with ``FeatureFusionModule(256 + 128, 256)``;
    R = ``conv_head16`` (ConvBNReLU 3x3 high -> high, after upsampling) for ``refine="conv3x3"``.
    With ``refine="none"`` this is BiSeNet's FFM over spatial path (low) and context path (high).
    Bilinear upsampling uses align_corners=True (TorchSeg).  No other divergence is known.
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, *, refine: str,
                 reduction: int, upsample: str):
        super().__init__()
        self.refine = _refine("ffm", refine, high_channels, high_channels)
        self.ffm = FeatureFusionModule(low_channels + high_channels, out_channels, reduction)
        self.upsample = upsample
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = self.refine(_upsample(high, low.shape[-2:], self.upsample))  # up, then conv_head
        return self.ffm(low, high)


def _bn_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels)]


@register("bga", kind="fusion", examples=[
    {"low_channels": 32, "high_channels": 64, "out_channels": 48},
    {"low_channels": 32, "high_channels": 32, "out_channels": 32},
])
class BGAFusion(nn.Module):
    """BiSeNet V2 bilateral guided aggregation (Yu et al., IJCV 2021, Sec. 4.3, Fig. 6): low = detail branch
    (1/8), high = semantic branch (1/32 officially).

    ``left1`` = depthwise 3x3 (low) + BN + 1x1 (low -> out); ``left2`` = 3x3 s2 (low -> out) + BN + AvgPool 3x3
    s2 p1; ``right1`` = 3x3 (high -> out) + BN; ``right2`` = depthwise 3x3 (high) + BN + 1x1 (high -> out);
    out = ``conv``(left1 * sigmoid(up(right1)) + up(left2 * sigmoid(right2))), ``conv`` = 3x3 (out -> out) +
    BN + ReLU (the ReLU is the re-implementation's, "not shown in paper").  Upsampling is nearest, as the
    re-implementation's ``nn.Upsample(scale_factor=4)``.

    Reference: ``CoinCheung/BiSeNet`` ``lib/models/bisenetv2.py`` ``BGALayer`` (6b4b67a; no author code),
    submodule names and Sequential indices kept.  Divergences: the official layer fixes every width at 128
    (here low, high and out are arguments) and upsamples by a fixed factor 4; here ``up`` resizes to the
    detail feature's size and ``right2`` is resized (nearest) to ``left2``'s size where they differ, so any
    pair of resolutions works (identical to the official layer when high is exactly 1/4 of low).
    """

    def __init__(self, low_channels: int, high_channels: int, out_channels: int):
        super().__init__()
        self.left1 = nn.Sequential(*_bn_conv(low_channels, low_channels, 3, groups=low_channels),
                                   nn.Conv2d(low_channels, out_channels, 1, bias=False))
        self.left2 = nn.Sequential(*_bn_conv(low_channels, out_channels, 3, 2),
                                   nn.AvgPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=False))
        self.right1 = nn.Sequential(*_bn_conv(high_channels, out_channels, 3))
        self.right2 = nn.Sequential(*_bn_conv(high_channels, high_channels, 3, groups=high_channels),
                                    nn.Conv2d(high_channels, out_channels, 1, bias=False))
        self.conv = nn.Sequential(*_bn_conv(out_channels, out_channels, 3), nn.ReLU(inplace=True))
        self.out_channels = out_channels

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        size = low.shape[-2:]
        left1 = self.left1(low)  # detail, full (1/8) resolution
        left2 = self.left2(low)  # detail, down to the semantic resolution
        right1 = resize_to(self.right1(high), size, "nearest")  # semantic, up to the detail resolution
        right2 = self.right2(high)  # semantic, its own resolution
        if right2.shape[-2:] != left2.shape[-2:]:
            right2 = resize_to(right2, left2.shape[-2:], "nearest")
        left = left1 * torch.sigmoid(right1)  # detail guided by semantics
        right = resize_to(left2 * torch.sigmoid(right2), size, "nearest")  # semantics guided by detail, up
        return self.conv(left + right)
