"""STDC module against the official code.

Counts were taken by instantiating MichaelFan01/STDC-Seg ``nets/stdcnet.py`` at 59ff37f (torch 2.13, CPU):
``CatBottleneck``/``AddBottleneck`` and ``STDCNet813`` (STDC1) / ``STDCNet1446`` (STDC2), whose
``features`` are the two stem ConvX plus the STDC modules (their ImageNet head is not counted).  With the
official weights loaded (``load_state_dict(strict=True)``), every ``num_blocks`` 2..5, both variants and
both strides gave outputs identical to the official modules (checked once, outside the suite, since the
official code is not vendored).
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg import registry
from nasseg.blocks.stdc import STDCModule, stdc_widths
from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def stdc(cin, cout, stride=1, **kw):
    return registry.get("stdc", "block").create(cin, cout, stride, **kw)


def stdc_features(layers, variant="cat", base=64, num_blocks=4):
    """STDCNet ``features``: ConvX 3->32 s2, ConvX 32->64 s2, then per stage a stride-2 module and
    stride-1 repeats, widths 256/512/1024 (official ``_make_layers``)."""
    mods = [ConvBNAct(3, base // 2, 3, 2), ConvBNAct(base // 2, base, 3, 2)]
    cin = base
    for i, n in enumerate(layers):
        cout = base * 2 ** (i + 2)
        for j in range(n):
            mods.append(stdc(cin, cout, 2 if j == 0 else 1, num_blocks=num_blocks, variant=variant))
            cin = cout
    return nn.Sequential(*mods)


@pytest.mark.parametrize("cin,cout,stride,official", [
    (64, 256, 2, 111_488),    # reference §11; STDC1/2 stage-3 first module
    (256, 256, 1, 134_656),   # reference §11
    (256, 512, 2, 474_880),
    (1024, 1024, 1, 2_148_352),
])
def test_cat_params_match_official(cin, cout, stride, official):
    assert n_params(stdc(cin, cout, stride)) == official


@pytest.mark.parametrize("cin,cout,stride,official", [
    (64, 256, 2, 129_088),    # AddBottleneck(64, 256, 4, 2): + depthwise/1x1 skip
    (256, 256, 1, 134_656),   # AddBottleneck(256, 256, 4, 1): identity skip, same as cat
])
def test_add_params_match_official(cin, cout, stride, official):
    assert n_params(stdc(cin, cout, stride, variant="add")) == official


@pytest.mark.parametrize("layers,variant,official", [
    ((2, 2, 2), "cat", 5_318_304),    # STDC1 (STDCNet813) features
    ((4, 5, 3), "cat", 9_348_768),    # STDC2 (STDCNet1446) features
    ((2, 2, 2), "add", 6_002_784),    # STDCNet813(type="add") features
    ((4, 5, 3), "add", 10_033_248),   # STDCNet1446(type="add") features
])
def test_backbone_features_match_official(layers, variant, official):
    assert n_params(stdc_features(layers, variant)) == official


def test_stdc1_backbone_runs_to_stride_32():
    feats = stdc_features((2, 2, 2)).eval()
    with torch.no_grad():
        out = feats(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 1024, 2, 3)


@pytest.mark.parametrize("n,widths", [
    (2, [128, 128]), (3, [128, 64, 64]), (4, [128, 64, 32, 32]), (5, [128, 64, 32, 16, 16]),
])
def test_block_widths_follow_official_rule(n, widths):
    assert stdc_widths(256, n) == widths
    m = stdc(64, 256, num_blocks=n)
    assert [c.out_channels for c in m.conv_list] == widths
    assert m.conv_list[0].conv.kernel_size == (1, 1)
    assert all(c.conv.kernel_size == (3, 3) and c.conv.stride == (1, 1) for c in m.conv_list[1:])


def test_cat_has_no_residual_and_block1_is_the_skip():
    m = stdc(32, 64, 1).eval()
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        out = m(x)
        out1 = m.conv_list[0](x)
    torch.testing.assert_close(out[:, :32], out1)  # concat member 1 is block 1 itself
    assert (out >= 0).all()  # every member ends in ReLU: nothing is added afterwards


def test_cat_stride2_avgpools_block1_and_downsamples_with_depthwise_conv():
    m = stdc(32, 64, 2).eval()
    dw = m.avd_layer[0]
    assert dw.stride == (2, 2) and dw.groups == 32 and dw.kernel_size == (3, 3)
    assert isinstance(m.avd_layer[1], nn.BatchNorm2d) and len(m.avd_layer) == 2  # no ReLU
    x = torch.randn(2, 32, 33, 47)
    with torch.no_grad():
        out = m(x)
        out1 = m.conv_list[0](x)
    assert out.shape == (2, 64, 17, 24)
    torch.testing.assert_close(out[:, :32], F.avg_pool2d(out1, 3, 2, 1))


def test_add_variant_sums_input_and_projects_stride2_skip():
    assert isinstance(stdc(64, 64, 1, variant="add").skip, nn.Identity)
    s2 = stdc(32, 64, 2, variant="add")
    kinds = [type(layer) for layer in s2.skip]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d]
    assert s2.skip[0].groups == 32 and s2.skip[0].stride == (2, 2)
    m2 = stdc(64, 64, 1, variant="add", num_blocks=2).eval()
    x = torch.randn(2, 64, 9, 9)
    with torch.no_grad():
        o1 = m2.conv_list[0](x)
        torch.testing.assert_close(m2(x), torch.cat([o1, m2.conv_list[1](o1)], 1) + x)


def test_add_variant_stride1_width_change_gets_a_projection():
    m = stdc(32, 64, 1, variant="add")
    assert [type(layer) for layer in m.skip] == [nn.Conv2d, nn.BatchNorm2d]
    assert m(torch.randn(2, 32, 8, 8)).shape == (2, 64, 8, 8)


@pytest.mark.parametrize("cout,n", [(100, 4), (36, 4), (12, 4), (30, 3), (7, 2)])
def test_widths_that_do_not_add_up_raise(cout, n):
    with pytest.raises(BlockArgumentError) as e:
        stdc(32, cout, num_blocks=n)
    assert "out_channels" in str(e.value) and str(2 ** (n - 1)) in str(e.value)


@pytest.mark.parametrize("given", [{"num_blocks": 1}, {"num_blocks": 6}, {"variant": "sum"}])
def test_registry_rejects_bad_arguments(given):
    with pytest.raises(BlockArgumentError):
        stdc(32, 64, **given)


def test_stride_other_than_1_or_2_raises():
    with pytest.raises(BlockArgumentError, match="stride"):
        STDCModule(32, 64, 3)


def test_parameter_names_are_the_official_ones():
    names = {k: tuple(v.shape) for k, v in stdc(64, 256, 2).named_parameters()}
    expected = {"avd_layer.0.weight": (128, 1, 3, 3), "avd_layer.1.weight": (128,),
                "avd_layer.1.bias": (128,)}
    for i, (cin, cout, k) in enumerate([(64, 128, 1), (128, 64, 3), (64, 32, 3), (32, 32, 3)]):
        expected[f"conv_list.{i}.conv.weight"] = (cout, cin, k, k)
        expected[f"conv_list.{i}.bn.weight"] = expected[f"conv_list.{i}.bn.bias"] = (cout,)
    assert names == expected


def test_signature_defaults_match_the_registry_table():
    sig = inspect.signature(STDCModule)
    for name, default in registry.get("stdc").defaults().items():
        assert sig.parameters[name].default == default
