"""BiSeNet V2 modules (stem block, GE layer, CE block, BGA, segment head) against the reference code.

Official counts: ``CoinCheung/BiSeNet`` at 6b4b67a, ``lib/models/bisenetv2.py`` (the widely used
re-implementation; the authors released no code), each class instantiated on CPU (torch 2.13) and its
parameters summed; the formulas beside them re-derive each number from the constructors.  Outside the
suite, each official module's state dict (with randomised BN statistics) loaded ``strict=True`` into ours
and gave identical eval outputs (max abs difference 0.0; /tmp harness, not vendored).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def cbr(i, o, k):  # ConvBNReLU without bias
    return i * o * k * k + 2 * o


# official StemBlock(): conv 3->16 s2, left 16->8 (1x1) -> 16 (3x3 s2), fuse 32->16 (3x3)
STEM = cbr(3, 16, 3) + cbr(16, 8, 1) + cbr(8, 16, 3) + cbr(32, 16, 3)


def ge_s1(c, e=6):  # GELayerS1(c, c): conv1, dwconv (3x3, groups c, c -> c*e) + BN, conv2 (1x1) + BN
    return cbr(c, c, 3) + (c * e * 9 + 2 * c * e) + (c * e * c + 2 * c)


def ge_s2(i, o, e=6):  # GELayerS2(i, o): conv1, dwconv1, dwconv2, conv2, shortcut (dw 3x3 + BN + 1x1 + BN)
    m = i * e
    return cbr(i, i, 3) + (m * 9 + 2 * m) + (m * 9 + 2 * m) + (m * o + 2 * o) + (i * 9 + 2 * i + i * o + 2 * o)


OFFICIAL = {  # name -> parameters of the official class
    "StemBlock()": 6_432,
    "GELayerS2(16, 32)": 8_336,
    "GELayerS2(32, 64)": 28_448,
    "GELayerS2(64, 128)": 104_000,
    "GELayerS1(32, 32)": 17_600,
    "GELayerS1(64, 64)": 65_920,
    "GELayerS1(128, 128)": 254_720,
    "CEBlock()": 164_608,
    "BGALayer()": 478_720,
    "SegmentHead(128, 1024, 19, 8, aux=False)": 1_201_171,
    "SegmentHead(16, 128, 19, 4)": 37_475,
    "SegmentHead(32, 128, 19, 8)": 112_211,
    "SegmentHead(64, 128, 19, 16)": 374_291,
    "SegmentHead(128, 128, 19, 32)": 1_348_883,
}


def _ours():
    blk, ctx, fus, head = (lambda n: registry.get(n, "block"), lambda n: registry.get(n, "context"),
                           lambda n: registry.get(n, "fusion"), registry.get("bisenetv2_head", "head"))
    return {
        "StemBlock()": blk("bisenetv2_stem").create(3, 16, 4),
        "GELayerS2(16, 32)": blk("ge").create(16, 32, 2),
        "GELayerS2(32, 64)": blk("ge").create(32, 64, 2),
        "GELayerS2(64, 128)": blk("ge").create(64, 128, 2),
        "GELayerS1(32, 32)": blk("ge").create(32, 32, 1),
        "GELayerS1(64, 64)": blk("ge").create(64, 64, 1),
        "GELayerS1(128, 128)": blk("ge").create(128, 128, 1),
        "CEBlock()": ctx("ce").create(128, 128),
        "BGALayer()": fus("bga").create(128, 128, 128),
        "SegmentHead(128, 1024, 19, 8, aux=False)": head.create(128, 19, mid_channels=1024),
        "SegmentHead(16, 128, 19, 4)": head.create(16, 19, mid_channels=128, up_channels=16),
        "SegmentHead(32, 128, 19, 8)": head.create(32, 19, mid_channels=128, up_channels=64),
        "SegmentHead(64, 128, 19, 16)": head.create(64, 19, mid_channels=128, up_channels=256),
        "SegmentHead(128, 128, 19, 32)": head.create(128, 19, mid_channels=128, up_channels=1024),
    }


def test_formulas_reproduce_official_counts():
    assert STEM == OFFICIAL["StemBlock()"]
    assert ge_s2(16, 32) == OFFICIAL["GELayerS2(16, 32)"]
    assert ge_s2(64, 128) == OFFICIAL["GELayerS2(64, 128)"]
    assert ge_s1(128) == OFFICIAL["GELayerS1(128, 128)"]
    assert 128 * 2 + cbr(128, 128, 1) + cbr(128, 128, 3) == OFFICIAL["CEBlock()"]  # bn, conv_gap, conv_last
    dw_pw = 128 * 9 + 256 + 128 * 128
    assert 2 * dw_pw + 2 * (128 * 128 * 9 + 256) + 128 * 128 * 9 + 256 == OFFICIAL["BGALayer()"]
    assert cbr(128, 1024, 3) + 1024 * 19 + 19 == OFFICIAL["SegmentHead(128, 1024, 19, 8, aux=False)"]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_params_equal_official_class(name):
    assert n_params(_ours()[name]) == OFFICIAL[name]


def test_official_state_dict_names():
    ours = _ours()
    ge2 = set(ours["GELayerS2(16, 32)"].state_dict())
    assert {"conv1.conv.weight", "dwconv1.0.weight", "dwconv2.1.running_var", "conv2.1.bias",
            "shortcut.0.weight", "shortcut.3.weight"} <= ge2
    assert "dwconv.0.weight" in ours["GELayerS1(32, 32)"].state_dict()
    assert {"left1.2.weight", "left2.1.bias", "right1.0.weight", "right2.2.weight", "conv.1.weight"} <= set(
        ours["BGALayer()"].state_dict())
    assert {"conv_out.0.1.conv.weight", "conv_out.1.bias"} <= set(ours["SegmentHead(16, 128, 19, 4)"].state_dict())
    assert {"bn.weight", "conv_gap.conv.weight", "conv_last.bn.weight"} <= set(ours["CEBlock()"].state_dict())


def test_shapes_at_official_resolutions():
    ours = _ours()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 128)
        assert ours["StemBlock()"].eval()(x).shape == (1, 16, 16, 32)
        assert ours["GELayerS2(16, 32)"].eval()(torch.randn(1, 16, 16, 32)).shape == (1, 32, 8, 16)
        out = ours["BGALayer()"].eval()(torch.randn(1, 128, 8, 16), torch.randn(1, 128, 2, 4))
        assert out.shape == (1, 128, 8, 16)
        aux = ours["SegmentHead(16, 128, 19, 4)"].eval()
        assert aux(torch.randn(1, 16, 8, 16)).shape == (1, 19, 16, 32) and aux.output_scale == 2


def test_bga_matches_fixed_factor_upsampling():
    """At high = low / 4 the size-based resizing equals the reference's nn.Upsample(scale_factor=4)."""
    torch.manual_seed(0)
    bga = registry.get("bga", "fusion").create(16, 24, 16).eval()
    low, high = torch.randn(1, 16, 16, 32), torch.randn(1, 24, 4, 8)
    up = nn.Upsample(scale_factor=4)
    with torch.no_grad():
        ref = bga.conv(bga.left1(low) * torch.sigmoid(up(bga.right1(high)))
                       + up(bga.left2(low) * torch.sigmoid(bga.right2(high))))
        assert torch.equal(bga(low, high), ref)


def test_bad_arguments_name_the_value():
    with pytest.raises(BlockArgumentError, match="stride"):
        registry.get("bisenetv2_stem", "block").create(3, 16, 2)
    with pytest.raises(BlockArgumentError, match="out_channels"):
        registry.get("ce", "context").create(128, 64)
    with pytest.raises(BlockArgumentError, match="stride"):
        registry.get("ge", "block").create(16, 16, 4)


def test_ge_stride1_width_change_projects():
    ge = registry.get("ge", "block").create(16, 32, 1)
    assert not isinstance(ge.shortcut, nn.Identity)
    assert ge(torch.randn(2, 16, 8, 8)).shape == (2, 32, 8, 8)
