"""RegSeg's decoders (Gao, "Rethinking Dilated Convolution for Real-time Semantic Segmentation", Sec. 3.4,
Fig. 5, and the decoder ablation of the official ``AblationStudies.md``).

Each class follows its official counterpart in ``RolandGao/RegSeg`` (``blocks.py``: ``Exp2_Decoder26``,
``Exp2_Decoder14``, ``Exp2_Decoder10``, ``Exp2_Decoder4``, ``Exp2_Decoder12``, ``Exp2_LRASPP``;
``competitor_blocks.py``: ``SFNetDecoder``, ``BiseNetDecoder`` — RegSeg's own re-implementations, not the
SFNet/BiSeNet authors' code) layer for layer, with the official submodule names (only the BiSeNet
decoder's ARM, shared with ``nasseg.fusion.bisenet``, names its attention layers differently), so a decoder's
tensors keep their official names below ``decoder.``.  What loads: ``nasseg weights import regseg`` imports a
released ``exp48_decoder26`` checkpoint (body and decoder26) into the ``regseg`` preset; the other decoders
and ``exp53_decoder29`` have no preset and no importer.  Width arguments default to the official values.

All are ``decoder`` modules: ``(in_channels, num_classes, *, args)`` where ``in_channels`` lists the tap
widths shallow to deep; ``forward`` takes the taps in that order and returns logits
(``emits_logits = True``) at the resolution of the shallowest tap (1/4 for decoder26, 1/8 for the
others).  RegSeg's ``model.py`` then upsamples them bilinearly (align_corners=False) to the input size.
Upsampling inside the decoders goes to the size of the next shallower tap, so any tap strides work;
``tap_strides`` records the strides the paper uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasseg.blocks.regseg import DBlock
from nasseg.errors import BlockArgumentError
from nasseg.fusion.bisenet import AttentionRefinementModule
from nasseg.layers import SE, ConvBNAct, resize_to
from nasseg.registry import Arg, register


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """RegSeg's upsampling: bilinear, align_corners=False, to ``like``'s size."""
    return resize_to(x, like.shape[-2:], "bilinear", align_corners=False)


class _Decoder(nn.Module):
    """Shared bookkeeping of the RegSeg decoders (not registered)."""

    tap_strides: tuple[int, ...] = (8, 16)
    emits_logits = True

    def _setup(self, in_channels: Sequence[int], num_classes: int) -> tuple[int, ...]:
        """Validate the taps (one width per entry of ``tap_strides``) and set the common attributes."""
        taps = tuple(in_channels)
        if len(taps) != len(self.tap_strides) or any(not isinstance(c, int) or c < 1 for c in taps):
            where = ", ".join(f"1/{s}" for s in self.tap_strides)
            raise BlockArgumentError(
                self.registry_name, "in_channels", in_channels,
                f"allowed: {len(self.tap_strides)} positive channel counts, "
                f"the taps at {where} (shallow to deep)",
            )
        if num_classes < 1:
            raise BlockArgumentError(self.registry_name, "num_classes", num_classes,
                                     "allowed: an integer >= 1")
        self.in_channels = taps
        self.num_classes = num_classes
        self.out_channels = num_classes
        return taps


_EXAMPLE_3 = {"in_channels": (16, 32, 48), "num_classes": 5, "tap_strides": (4, 8, 16)}
_EXAMPLE_2 = {"in_channels": (32, 48), "num_classes": 5, "tap_strides": (8, 16)}


def _width(name: str, doc: str, default: int, low: int = 1) -> Arg:
    return Arg(name, "int", default, low=low, doc=doc)


@register(
    "decoder26",
    kind="decoder",
    args=[
        _width("head_channels", "width of the 1x1 heads on the 1/16 and 1/8 taps (summed); 128", 128),
        _width("head4_channels", "width of the 1x1 head on the 1/4 tap (concatenated); 8", 8),
        _width("conv8_channels", "width of the 3x3 conv after the 1/8 sum; 64", 64),
        _width("conv4_channels", "width of the 3x3 conv after the 1/4 concat; 64", 64),
    ],
    examples=[_EXAMPLE_3, {**_EXAMPLE_3, "head_channels": 32, "head4_channels": 4, "conv8_channels": 16,
                           "conv4_channels": 16}],
)
class Decoder26(_Decoder):
    """RegSeg's decoder (Sec. 3.4, Fig. 5; official ``Exp2_Decoder26``), the one in the final RegSeg model.

    head16 = ConvBNReLU 1x1 (C16 -> 128), head8 = ConvBNReLU 1x1 (C8 -> 128), head4 = ConvBNReLU 1x1
    (C4 -> 8); head16 bilinear-up to 1/8 and **added** to head8 -> ConvBNReLU 3x3 (128 -> 64) -> bilinear-up
    to 1/4 -> **concat** [x8, head4] -> ConvBNReLU 3x3 (72 -> 64) -> 1x1 conv (bias) -> classes, at 1/4.
    The official ``Exp2_Decoder29`` (RegSeg-large) is this class with widths (256, 16, 128, 128).
    No divergence from the official code.
    """

    tap_strides = (4, 8, 16)

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        head_channels: int = 128,
        head4_channels: int = 8,
        conv8_channels: int = 64,
        conv4_channels: int = 64,
    ):
        super().__init__()
        c4, c8, c16 = self._setup(in_channels, num_classes)
        self.head16 = ConvBNAct(c16, head_channels, 1)
        self.head8 = ConvBNAct(c8, head_channels, 1)
        self.head4 = ConvBNAct(c4, head4_channels, 1)
        self.conv8 = ConvBNAct(head_channels, conv8_channels, 3)
        self.conv4 = ConvBNAct(conv8_channels + head4_channels, conv4_channels, 3)
        self.classifier = nn.Conv2d(conv4_channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x4, x8, x16 = feats
        # 1x1 heads on the three taps
        x16, x8, x4 = self.head16(x16), self.head8(x8), self.head4(x4)
        # 1/16 up to 1/8, sum, 3x3
        x8 = self.conv8(x8 + _up(x16, x8))
        # 1/8 up to 1/4, concat with the 1/4 head, 3x3, classifier
        x4 = self.conv4(torch.cat((_up(x8, x4), x4), dim=1))
        return self.classifier(x4)


class _SumDecoder(_Decoder):
    """decoder14 / decoder12: 1x1 heads on 1/16 and 1/8, sum at 1/8, one ConvBNReLU (k x k), classifier."""

    kernel_size = 3

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, channels: int = 128):
        super().__init__()
        c8, c16 = self._setup(in_channels, num_classes)
        self.head16 = ConvBNAct(c16, channels, 1)
        self.head8 = ConvBNAct(c8, channels, 1)
        self.conv = ConvBNAct(channels, channels, self.kernel_size)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x8, x16 = feats
        # 1x1 heads, 1/16 bilinear-up to 1/8, sum
        x16 = self.head16(x16)
        x8 = self.head8(x8)
        x = self.conv(x8 + _up(x16, x8))
        return self.classifier(x)


_SUM_ARGS = [_width("channels", "width of both 1x1 heads and of the conv after the sum; 128", 128)]


@register("decoder14", kind="decoder", args=_SUM_ARGS, examples=[_EXAMPLE_2, {**_EXAMPLE_2, "channels": 24}])
class Decoder14(_SumDecoder):
    """RegSeg ablation decoder "sum + 3x3 conv" (official ``Exp2_Decoder14``; the dilation study's decoder).

    head16 = ConvBNReLU 1x1 (C16 -> 128), head8 = ConvBNReLU 1x1 (C8 -> 128); head16 bilinear-up to 1/8,
    added to head8 -> ConvBNReLU 3x3 (128 -> 128) -> 1x1 conv (bias) -> classes, at 1/8.
    No divergence from the official code.
    """

    kernel_size = 3


@register("decoder12", kind="decoder", args=_SUM_ARGS, examples=[_EXAMPLE_2])
class Decoder12(_SumDecoder):
    """RegSeg ablation decoder "sum + 1x1 conv" (official ``Exp2_Decoder12``).

    As decoder14 with the conv after the sum a ConvBNReLU **1x1** (128 -> 128).
    No divergence from the official code.
    """

    kernel_size = 1


class _ConcatDecoder(_Decoder):
    """decoder4 / decoder10: 1x1 heads (1/8 -> 32, 1/16 -> 128), concat [x8, x16] at 1/8, a block,
    classifier."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, head8_channels: int = 32,
                 head16_channels: int = 128, channels: int = 128):
        super().__init__()
        c8, c16 = self._setup(in_channels, num_classes)
        self.head8 = ConvBNAct(c8, head8_channels, 1)
        self.head16 = ConvBNAct(c16, head16_channels, 1)
        self.conv = self._make_conv(head8_channels + head16_channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def _make_conv(self, in_channels: int, channels: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x8, x16 = feats
        # 1x1 heads, 1/16 bilinear-up to 1/8, concat (1/8 first)
        x16 = self.head16(x16)
        x8 = self.head8(x8)
        x = self.conv(torch.cat((x8, _up(x16, x8)), dim=1))
        return self.classifier(x)


_CONCAT_ARGS = [
    _width("head8_channels", "width of the 1x1 head on the 1/8 tap; 32", 32),
    _width("head16_channels", "width of the 1x1 head on the 1/16 tap; 128", 128),
    _width("channels", "width of the block after the concat; 128", 128),
]


@register("decoder4", kind="decoder", args=_CONCAT_ARGS, examples=[_EXAMPLE_2])
class Decoder4(_ConcatDecoder):
    """RegSeg ablation decoder "concat + 3x3 conv" (official ``Exp2_Decoder4``).

    head8 = ConvBNReLU 1x1 (C8 -> 32), head16 = ConvBNReLU 1x1 (C16 -> 128) bilinear-up to 1/8;
    concat [head8, head16] -> ConvBNReLU 3x3 (160 -> 128) -> 1x1 conv (bias) -> classes, at 1/8.
    No divergence from the official code.
    """

    def _make_conv(self, in_channels: int, channels: int) -> nn.Module:
        return ConvBNAct(in_channels, channels, 3)


@register("decoder10", kind="decoder", args=_CONCAT_ARGS,
          examples=[_EXAMPLE_2, {**_EXAMPLE_2, "head8_channels": 16, "head16_channels": 16, "channels": 32}])
class Decoder10(_ConcatDecoder):
    """RegSeg ablation decoder "concat + Y block" (official ``Exp2_Decoder10``).

    As decoder4 with the 3x3 conv replaced by a D block with dilation 1 (a RegNet Y block):
    ``DBlock(160 -> 128, dilations=(1,), group_width=16, stride 1, SE in/4)`` (1x1 conv + BN shortcut).
    The initial official release referenced an undefined ``RBlock`` here; the fixed official code (and
    this class) uses ``DBlock(128+32, 128, [1], 16, 1, "se")``.  ``channels`` must be a multiple of 16.
    No divergence from the (fixed) official code.
    """

    def _make_conv(self, in_channels: int, channels: int) -> nn.Module:
        if channels % 16:
            raise BlockArgumentError("decoder10", "channels", channels,
                                     "allowed: a multiple of 16 (the D block's group width)")
        return DBlock(in_channels, channels, 1, dilations=(1,), group_width=16, se_ratio=0.25)


@register(
    "lraspp",
    kind="decoder",
    args=[_width("inter_channels", "width of the 1/16 branch; 128", 128)],
    examples=[_EXAMPLE_2],
)
class LRASPP(_Decoder):
    """LR-ASPP as RegSeg's decoder ablation uses it (official ``Exp2_LRASPP``; MobileNetV3's Lite R-ASPP,
    torchvision-style with global pooling).

    x = ConvBNReLU 1x1 (C16 -> 128)(x16) * sigmoid(1x1 conv (no bias)(GAP(x16))); bilinear-up to 1/8;
    logits = 1x1 conv (bias)(x8) + 1x1 conv (bias)(x), at 1/8.
    No divergence from the official code.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, inter_channels: int = 128):
        super().__init__()
        c8, c16 = self._setup(in_channels, num_classes)
        self.cbr = ConvBNAct(c16, inter_channels, 1)
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c16, inter_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(c8, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x8, x16 = feats
        # 1/16 branch gated by its global context, up to 1/8
        x = self.cbr(x16) * self.scale(x16)
        x = _up(x, x8)
        # two classifiers summed
        return self.low_classifier(x8) + self.high_classifier(x)


class _PSPModule(nn.Module):
    """RegSeg's ``PSPModule``: bins (1, 2, 3, 6), each AdaptiveAvgPool -> 1x1 conv + BN (no act) ->
    bilinear-up; concat with the input -> ConvBNReLU 1x1 -> ``out_channels``.  (The official class also
    builds a Dropout2d(0.1) that its forward never calls; it is left out.)"""

    def __init__(self, in_channels: int, out_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNAct(in_channels, out_channels, 1, act="none"))
            for b in bins
        )
        self.bottleneck = ConvBNAct(in_channels + len(bins) * out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [x] + [_up(stage(x), x) for stage in self.stages]
        return self.bottleneck(torch.cat(ys, 1))


class _AlignedModule(nn.Module):
    """RegSeg's ``AlignedModule`` (SFNet's flow alignment module, FAM): returns the high-level feature warped
    to the low-level one's size by a learned 2-channel flow.

    down_l / down_h = 1x1 conv (no bias) -> ``outplane``; down_h(high) bilinear-up to the low size;
    flow = 3x3 conv (no bias, 2*outplane -> 2) on concat [high, low]; output = grid_sample of the
    **original** high feature at base grid + flow / (W, H).  RegSeg's version samples with
    align_corners=False (the SFNet authors' code uses True)."""

    def __init__(self, inplane: int, outplane: int):
        super().__init__()
        self.down_h = nn.Conv2d(inplane, outplane, 1, bias=False)
        self.down_l = nn.Conv2d(inplane, outplane, 1, bias=False)
        self.flow_make = nn.Conv2d(outplane * 2, 2, kernel_size=3, padding=1, bias=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        h_low = self.down_l(low)
        h_high = _up(self.down_h(high), low)
        flow = self.flow_make(torch.cat([h_high, h_low], 1))
        return self._warp(high, flow)

    @staticmethod
    def _warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        out_h, out_w = flow.shape[-2:]
        norm = torch.tensor([out_w, out_h], dtype=x.dtype, device=x.device).view(1, 1, 1, 2)
        # default dtype first, then cast: the ONNX exporter drops linspace's dtype argument (float64 grid)
        ys = torch.linspace(-1.0, 1.0, out_h, device=x.device).to(x.dtype).view(-1, 1).expand(out_h, out_w)
        xs = torch.linspace(-1.0, 1.0, out_w, device=x.device).to(x.dtype).view(1, -1).expand(out_h, out_w)
        grid = torch.stack((xs, ys), dim=2).unsqueeze(0).expand(n, -1, -1, -1)
        grid = grid + flow.permute(0, 2, 3, 1) / norm
        return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


@register(
    "sfnet_decoder",
    kind="decoder",
    args=[_width("fpn_dim", "FPN width (PSP output, 1/8 head, convs); the FAM reduces to fpn_dim // 2; 64",
                 64, low=2)],
    examples=[_EXAMPLE_2, {**_EXAMPLE_2, "fpn_dim": 16}],
)
class SFNetDecoder(_Decoder):
    """SFNet decoder as re-implemented for RegSeg's decoder ablation (official RegSeg ``SFNetDecoder``).

    head16 = PSP module (bins 1,2,3,6; -> 64) on the 1/16 tap; head8 = ConvBNReLU 1x1 (C8 -> 64);
    x8 = ConvBNReLU 3x3(head8 + FAM(head8, head16)) where the FAM (flow alignment, reduce to 32) warps head16
    to 1/8; then concat [x8, bilinear-up(head16) (align_corners=True)] -> ConvBNReLU 3x3 (128 -> 64) ->
    1x1 conv (bias) -> classes, at 1/8.
    No divergence from the official RegSeg code (its unused Dropout2d and ``fpn_dsn`` flag are left out).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, fpn_dim: int = 64):
        super().__init__()
        c8, c16 = self._setup(in_channels, num_classes)
        self.head16 = _PSPModule(c16, fpn_dim)
        self.head8 = ConvBNAct(c8, fpn_dim, 1)
        self.fpn_align = _AlignedModule(fpn_dim, fpn_dim // 2)
        self.conv = ConvBNAct(fpn_dim, fpn_dim, 3)
        self.conv_last = nn.Sequential(
            ConvBNAct(2 * fpn_dim, fpn_dim, 3),
            nn.Conv2d(fpn_dim, num_classes, kernel_size=1),
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x8, x16 = feats
        # PSP context on 1/16, 1x1 head on 1/8
        x16 = self.head16(x16)
        x8 = self.head8(x8)
        # flow-aligned 1/16 added to 1/8, 3x3
        x8 = self.conv(x8 + self.fpn_align(x8, x16))
        # concat with the plainly upsampled 1/16 context, 3x3, classifier
        x16_up = resize_to(x16, x8.shape[-2:], "bilinear", align_corners=True)
        return self.conv_last(torch.cat([x8, x16_up], dim=1))


class _FeatureFusion(nn.Module):
    """RegSeg's BiSeNet FFM: concat -> ConvBNReLU 1x1 -> F; SE(F) + F with an SE of squeeze out/4 whose
    1x1 convs **have biases** (BiSeNet's own FFM has none)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNAct(in_channels, out_channels, 1)
        self.se = SE(out_channels, out_channels // 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.conv(torch.cat([x, y], dim=1))
        return self.se(x) + x


@register(
    "bisenet_decoder",
    kind="decoder",
    args=[_width("channels", "width of the context path, FFM and final conv; 128 (>= 4 for the FFM's SE)",
                 128, low=4)],
    examples=[_EXAMPLE_2, {**_EXAMPLE_2, "channels": 16}],
)
class BiSeNetDecoder(_Decoder):
    """BiSeNet decoder as re-implemented for RegSeg's decoder ablation (official RegSeg ``BiseNetDecoder``).

    Context: avg = ConvBNReLU 1x1 (C16 -> 128)(GAP(x16)) broadcast (nearest); x16 = ARM(x16) + avg
    (BiSeNet's ARM: ConvBNReLU 3x3, then * sigmoid(BN(1x1 conv(GAP))), the same as RegSeg's) ->
    nearest-up to 1/8 -> ConvBNReLU 3x3 (``conv_head16``); FFM(x8, x16) (concat [x8, x16], 1x1 ConvBNReLU
    -> 128, + SE with biases) -> ConvBNReLU 3x3 -> 1x1 conv (bias) -> classes, at 1/8.  Unlike BiSeNet,
    the FFM's low input is the backbone's 1/8 tap (no spatial path), and there is no 1/32 branch.
    Note: the global-pool branch has a BN on a 1x1 map, so training needs a batch of 2 or more.
    No divergence from the official RegSeg code in what it computes; the ARM's attention layers are named
    as in STDC-Seg (``conv_atten``, ``bn_atten``) rather than RegSeg's ``scale.1``/``scale.2``.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, channels: int = 128):
        super().__init__()
        c8, c16 = self._setup(in_channels, num_classes)
        self.arm16 = AttentionRefinementModule(c16, channels)
        self.conv_head16 = ConvBNAct(channels, channels, 3)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_avg = ConvBNAct(c16, channels, 1)
        self.ffm = _FeatureFusion(channels + c8, channels)
        self.conv = ConvBNAct(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x8, x16 = feats
        # global context vector, broadcast to 1/16
        avg = self.conv_avg(self.avg_pool(x16))
        avg_up = F.interpolate(avg, size=x16.shape[-2:], mode="nearest")
        # ARM on 1/16 plus context, nearest-up to 1/8, 3x3
        x16 = self.arm16(x16) + avg_up
        x16 = self.conv_head16(F.interpolate(x16, size=x8.shape[-2:], mode="nearest"))
        # fuse with the 1/8 tap, 3x3, classifier
        x = self.conv(self.ffm(x8, x16))
        return self.classifier(x)
