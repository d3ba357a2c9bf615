"""RegSeg's decoders against the official code.

Counts were taken by instantiating RolandGao/RegSeg at 0f61c66 (torch 2.13, CPU) with 19 classes and
the ``RegSegBody`` channels {"4": 48, "8": 128, "16": 320}: ``blocks.py`` ``Exp2_Decoder26/29/14/12/10/4``,
``Exp2_LRASPP`` and ``competitor_blocks.py`` ``SFNetDecoder``, ``BiseNetDecoder``.  With the official
weights loaded (``load_state_dict(strict=True)``; for the BiSeNet decoder with ``arm16.scale.1/2`` renamed
to ``arm16.conv_atten``/``bn_atten``), every decoder gave logits identical to the official one (checked
once, outside the suite, since the official code is not vendored).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError
from tests.blocks.test_regseg import EXP43, EXP48, RegSegBody

TAPS3 = (48, 128, 320)
TAPS2 = (128, 320)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def decoder(name, in_channels, num_classes=19, **kw):
    return registry.get(name, "decoder").create(in_channels, num_classes, **kw)


@pytest.mark.parametrize("name,taps,official", [
    ("decoder26", TAPS3, 174_947),
    ("decoder14", TAPS2, 208_019),
    ("decoder10", TAPS2, 135_035),
    ("decoder4", TAPS2, 232_403),
    ("decoder12", TAPS2, 76_947),
    ("lraspp", TAPS2, 87_078),
    ("sfnet_decoder", TAPS2, 245_075),
    ("bisenet_decoder", TAPS2, 766_003),
])
def test_decoder_params_match_official(name, taps, official):
    assert n_params(decoder(name, taps)) == official


def test_decoder29_is_decoder26_with_wider_widths():
    m = decoder("decoder26", TAPS3, head_channels=256, head4_channels=16, conv8_channels=128,
                conv4_channels=128)
    assert n_params(m) == 580_275  # official Exp2_Decoder29 on the same taps


def test_regseg_total_matches_official():
    # RegSeg = exp48_decoder26: 3,160,004 (stem + body) + 174,947 (decoder)
    assert n_params(RegSegBody(EXP48)) + n_params(decoder("decoder26", TAPS3)) == 3_334_951


@pytest.mark.parametrize("name,official", [
    ("decoder14", 3_368_023),   # reference §2.6: exp43/exp48 + decoder14 = 3.368 M
    ("decoder26", 3_334_951),
    ("decoder10", 3_295_039),
    ("decoder4", 3_392_407),
    ("decoder12", 3_236_951),
    ("lraspp", 3_247_082),
    ("sfnet_decoder", 3_405_079),
    ("bisenet_decoder", 3_926_007),
])
def test_decoder_ablation_networks_match_official(name, official):
    taps = TAPS3 if name == "decoder26" else TAPS2
    assert n_params(RegSegBody(EXP43)) + n_params(decoder(name, taps)) == official


def test_regseg_end_to_end_logits():
    body, dec = RegSegBody(EXP48).eval(), decoder("decoder26", TAPS3).eval()
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        logits = dec(body(x))
        out = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert logits.shape == (1, 19, 24, 40)  # 1/4
    assert out.shape == (1, 19, 96, 160) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", [
    "decoder14", "decoder10", "decoder4", "decoder12", "lraspp", "sfnet_decoder", "bisenet_decoder",
])
def test_two_tap_decoders_emit_logits_at_one_eighth(name):
    m = decoder(name, (24, 40), num_classes=7)
    assert m.emits_logits and m.out_channels == 7 and m.tap_strides == (8, 16) and m.in_channels == (24, 40)
    feats = [torch.randn(2, 24, 16, 24), torch.randn(2, 40, 8, 12)]
    assert m(feats).shape == (2, 7, 16, 24)
    m.eval()
    with torch.no_grad():  # odd tap sizes (1/16 of an odd-sized 1/8 map, rounded up)
        assert m([torch.randn(1, 24, 15, 23), torch.randn(1, 40, 8, 12)]).shape == (1, 7, 15, 23)


def test_decoder26_structure_sum_then_concat():
    m = decoder("decoder26", TAPS3)
    assert m.emits_logits and m.tap_strides == (4, 8, 16) and m.out_channels == 19
    assert m.head4.conv.out_channels == 8 and m.conv4.conv.in_channels == 72
    assert m.conv8.conv.kernel_size == (3, 3) and m.conv4.conv.kernel_size == (3, 3)
    assert m.classifier.bias is not None


def test_decoder10_uses_a_dblock():
    from nasseg.blocks.regseg import DBlock
    m = decoder("decoder10", TAPS2)
    assert isinstance(m.conv, DBlock)
    assert m.conv.in_channels == 160 and m.conv.out_channels == 128 and m.conv.se.conv1.out_channels == 40


def test_lraspp_sums_two_classifiers():
    m = decoder("lraspp", (24, 40), num_classes=3).eval()
    x8, x16 = torch.randn(1, 24, 8, 8), torch.randn(1, 40, 4, 4)
    with torch.no_grad():
        high = m.cbr(x16) * torch.sigmoid(m.scale[1](x16.mean((2, 3), keepdim=True)))
        high = F.interpolate(high, size=(8, 8), mode="bilinear", align_corners=False)
        torch.testing.assert_close(m([x8, x16]), m.low_classifier(x8) + m.high_classifier(high))


def test_sfnet_warp_samples_base_grid_plus_flow_over_size():
    warp = decoder("sfnet_decoder", (24, 40), num_classes=3).fpn_align._warp
    high = torch.randn(1, 5, 4, 6)
    # zero flow: the base grid is linspace(-1, 1) (corner pixels' edges, as with align_corners=True grids),
    # sampled with align_corners=False, as in RegSeg's flow_warp
    base = F.affine_grid(torch.eye(2, 3).unsqueeze(0), (1, 5, 8, 12), align_corners=True)
    torch.testing.assert_close(warp(high, torch.zeros(1, 2, 8, 12)),
                               F.grid_sample(high, base, align_corners=False))
    # the flow is in output pixels divided by (W, H): a flow of (W, 0) shifts x by one full grid unit
    flow = torch.zeros(1, 2, 8, 12)
    flow[:, 0] = 12.0
    shifted = base.clone()
    shifted[..., 0] += 1.0
    torch.testing.assert_close(warp(high, flow), F.grid_sample(high, shifted, align_corners=False))


@pytest.mark.parametrize("name,taps", [
    ("decoder26", TAPS2), ("decoder26", (8, 48, 128, 320)), ("decoder14", TAPS3), ("lraspp", (128,)),
    ("bisenet_decoder", (0, 320)),
])
def test_wrong_taps_raise(name, taps):
    with pytest.raises(BlockArgumentError) as e:
        decoder(name, taps)
    assert e.value.argument == "in_channels" and name in str(e.value) and "1/16" in str(e.value)


def test_decoder10_width_must_fit_group_width():
    with pytest.raises(BlockArgumentError, match="multiple of 16"):
        decoder("decoder10", TAPS2, channels=72)


@pytest.mark.parametrize("name,given", [("decoder26", {"head_channels": 0}), ("decoder14", {"width": 64}),
                                        ("sfnet_decoder", {"fpn_dim": 1})])
def test_registry_rejects_bad_arguments(name, given):
    with pytest.raises(BlockArgumentError):
        decoder(name, TAPS3 if name == "decoder26" else TAPS2, **given)


def test_parameter_names_are_the_official_ones():
    names = {k: tuple(v.shape) for k, v in decoder("decoder26", TAPS3).named_parameters()}
    assert names == {
        "head16.conv.weight": (128, 320, 1, 1), "head16.bn.weight": (128,), "head16.bn.bias": (128,),
        "head8.conv.weight": (128, 128, 1, 1), "head8.bn.weight": (128,), "head8.bn.bias": (128,),
        "head4.conv.weight": (8, 48, 1, 1), "head4.bn.weight": (8,), "head4.bn.bias": (8,),
        "conv8.conv.weight": (64, 128, 3, 3), "conv8.bn.weight": (64,), "conv8.bn.bias": (64,),
        "conv4.conv.weight": (64, 72, 3, 3), "conv4.bn.weight": (64,), "conv4.bn.bias": (64,),
        "classifier.weight": (19, 64, 1, 1), "classifier.bias": (19,),
    }
    sf = {k for k, _ in decoder("sfnet_decoder", TAPS2).named_parameters()}
    assert {"fpn_align.down_h.weight", "fpn_align.down_l.weight", "fpn_align.flow_make.weight",
            "head16.stages.0.1.conv.weight", "head16.bottleneck.conv.weight", "conv_last.1.bias"} <= sf
    bs = {k for k, _ in decoder("bisenet_decoder", TAPS2).named_parameters()}
    assert {"arm16.conv.conv.weight", "arm16.conv_atten.weight", "arm16.bn_atten.weight", "conv_avg.conv.weight",
            "ffm.conv.conv.weight", "ffm.se.conv1.bias", "conv_head16.conv.weight"} <= bs
