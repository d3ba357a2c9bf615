"""BiSeNet V2 blocks (stem block, GE layer) against the reference code (CE block: tests/context, BGA:
tests/fusion, segment head: tests/heads).

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
}


def _ours():
    def blk(n):
        return registry.get(n, "block")

    return {
        "StemBlock()": blk("bisenetv2_stem").create(3, 16, 4),
        "GELayerS2(16, 32)": blk("ge").create(16, 32, 2),
        "GELayerS2(32, 64)": blk("ge").create(32, 64, 2),
        "GELayerS2(64, 128)": blk("ge").create(64, 128, 2),
        "GELayerS1(32, 32)": blk("ge").create(32, 32, 1),
        "GELayerS1(64, 64)": blk("ge").create(64, 64, 1),
        "GELayerS1(128, 128)": blk("ge").create(128, 128, 1),
    }


def test_formulas_reproduce_official_counts():
    assert STEM == OFFICIAL["StemBlock()"]
    assert ge_s2(16, 32) == OFFICIAL["GELayerS2(16, 32)"]
    assert ge_s2(64, 128) == OFFICIAL["GELayerS2(64, 128)"]
    assert ge_s1(128) == OFFICIAL["GELayerS1(128, 128)"]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_params_equal_official_class(name):
    assert n_params(_ours()[name]) == OFFICIAL[name]


def test_official_state_dict_names():
    ours = _ours()
    ge2 = set(ours["GELayerS2(16, 32)"].state_dict())
    assert {"conv1.conv.weight", "dwconv1.0.weight", "dwconv2.1.running_var", "conv2.1.bias",
            "shortcut.0.weight", "shortcut.3.weight"} <= ge2
    assert "dwconv.0.weight" in ours["GELayerS1(32, 32)"].state_dict()


def test_shapes_at_official_resolutions():
    ours = _ours()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 128)
        assert ours["StemBlock()"].eval()(x).shape == (1, 16, 16, 32)
        assert ours["GELayerS2(16, 32)"].eval()(torch.randn(1, 16, 16, 32)).shape == (1, 32, 8, 16)


def test_bad_arguments_name_the_value():
    with pytest.raises(BlockArgumentError, match="stride"):
        registry.get("bisenetv2_stem", "block").create(3, 16, 2)
    with pytest.raises(BlockArgumentError, match="stride"):
        registry.get("ge", "block").create(16, 16, 4)


def test_ge_stride1_width_change_projects():
    ge = registry.get("ge", "block").create(16, 32, 1)
    assert not isinstance(ge.shortcut, nn.Identity)
    assert ge(torch.randn(2, 16, 8, 8)).shape == (2, 32, 8, 8)
