"""FasterNet PConv and block against the official code.

Counts were taken by instantiating JierunChen/FasterNet ``models/fasternet.py`` at e8fba44 (torch 2.13,
CPU) with the ``cfg/fasternet_t{0,1,2}.yaml`` settings: ``MLPBlock(40, n_div=4, mlp_ratio=2)`` and
``FasterNet(embed_dim=40/64/96, depths=(1, 2, 8, 2))`` with its ImageNet classifier (1000 classes).
With the official weights loaded (``load_state_dict(strict=True)``), ``Partial_conv3`` (both forwards),
``MLPBlock`` and ``PatchMerging`` + ``MLPBlock`` gave outputs identical to ``PConv``, ``FasterNetBlock`` and
``FasterNetBlock(C, 2C, stride=2)`` (checked once, outside the suite, since the official code is not
vendored).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.blocks.fasternet import FasterNetBlock, PConv
from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct, make_act


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def fasternet(cin, cout, stride=1, **kw):
    return registry.get("fasternet", "block").create(cin, cout, stride, **kw)


def pconv(cin, cout, stride=1, **kw):
    return registry.get("pconv", "block").create(cin, cout, stride, **kw)


def fasternet_classifier(embed_dim, act, depths=(1, 2, 8, 2), merge_in_block=False, num_classes=1000):
    """FasterNet: embedding 4x4 s4 conv + BN, four stages of blocks (PatchMerging 2x2 s2 conv + BN in
    between, or the blocks' own stride-2 merge), GAP -> 1x1 conv to 1280 (no bias) -> act -> Linear."""
    layers = [ConvBNAct(3, embed_dim, 4, 4, padding=0, act="none")]
    dim = embed_dim
    for i, depth in enumerate(depths):
        out = embed_dim * 2**i
        for j in range(depth):
            if j == 0 and i > 0 and merge_in_block:
                layers.append(fasternet(dim, out, 2, act=act))
            else:
                if j == 0 and i > 0:
                    layers.append(ConvBNAct(dim, out, 2, 2, padding=0, act="none"))
                layers.append(fasternet(out, out, act=act))
            dim = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, 1280, 1, bias=False), make_act(act), nn.Flatten(),
               nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


def test_block_dim40_matches_official():
    m = fasternet(40, 40, act="gelu")
    assert n_params(m) == 7_460  # reference §11
    assert n_params(m.spatial_mixing) == 900


@pytest.mark.parametrize("embed_dim,act,official", [
    (40, "gelu", 3_905_500),    # FasterNet-T0 (README 3.9 M)
    (64, "gelu", 7_595_368),    # FasterNet-T1 (README 7.6 M)
    (96, "relu", 14_982_888),   # FasterNet-T2 (README 15.0 M)
])
@pytest.mark.parametrize("merge_in_block", [False, True], ids=["patchmerging", "stride2-block"])
def test_fasternet_classifiers_match_official(embed_dim, act, official, merge_in_block):
    assert n_params(fasternet_classifier(embed_dim, act, merge_in_block=merge_in_block)) == official


def test_fasternet_t0_runs():
    net = fasternet_classifier(40, "gelu", merge_in_block=True).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_pconv_convolves_the_first_quarter_and_passes_the_rest():
    m = pconv(64, 64).eval()
    assert m.partial_conv3.in_channels == m.partial_conv3.out_channels == 16
    assert m.partial_conv3.bias is None
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        y = m(x)
        torch.testing.assert_close(y[:, 16:], x[:, 16:])
        torch.testing.assert_close(y[:, :16], m.partial_conv3(x[:, :16]))


@pytest.mark.parametrize("stride", [1, 2])
def test_pconv_slicing_equals_split_cat(stride):
    a = pconv(32, 48, stride)
    b = pconv(32, 48, stride, forward_mode="slicing")
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 32, 15, 17)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("channels,ratio,conv", [
    (64, 0.25, 16), (40, 0.25, 10), (48, 1 / 3, 16), (30, 1.0, 30), (10, 0.5, 5),
])
def test_partial_channels_floor(channels, ratio, conv):
    assert pconv(channels, channels, partial_ratio=ratio).dim_conv3 == conv
    assert fasternet(channels, channels, partial_ratio=ratio).spatial_mixing.dim_conv3 == conv


@pytest.mark.parametrize("make", [pconv, fasternet])
def test_partial_ratio_rounding_to_zero_channels_raises(make):
    with pytest.raises(BlockArgumentError) as e:
        make(3, 3, partial_ratio=0.25)
    assert e.value.argument == "partial_ratio"


def test_block_structure_is_pconv_then_mlp_with_residual():
    m = fasternet(32, 32, act="gelu").eval()
    conv1, bn, act, conv2 = m.mlp
    assert conv1.out_channels == 64 and conv1.bias is None and conv2.bias is None
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(act, nn.GELU)
    assert isinstance(m.merge, nn.Identity) and isinstance(m.drop_path, nn.Identity)
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x + m.mlp(m.spatial_mixing(x)))
    assert isinstance(fasternet(32, 32).mlp[2], nn.ReLU)  # default act is relu (T2 and larger)


def test_mlp_ratio_sets_hidden_width():
    assert fasternet(32, 32, mlp_ratio=1.5).mlp[0].out_channels == 48


def test_stride2_prepends_patchmerging_and_ceils_odd_sizes():
    m = fasternet(32, 64, 2)
    assert m.merge.reduction.kernel_size == (2, 2) and m.merge.reduction.stride == (2, 2)
    assert m.merge.reduction.bias is None and isinstance(m.merge.norm, nn.BatchNorm2d)
    assert m(torch.randn(2, 32, 33, 47)).shape == (2, 64, 17, 24)
    assert m(torch.randn(2, 32, 32, 48)).shape == (2, 64, 16, 24)


def test_stride1_width_change_is_a_1x1_merge():
    m = pconv(32, 64)
    assert m.merge.reduction.kernel_size == (1, 1)
    assert m(torch.randn(2, 32, 7, 9)).shape == (2, 64, 7, 9)


def test_drop_path_drops_whole_samples_in_training_only():
    m = fasternet(16, 16, drop_path=0.5)
    x = torch.randn(64, 16, 4, 4)
    m.train()
    with torch.no_grad():
        branch = m.mlp(m.spatial_mixing(x))
        y = m(x)
    kept = [(y[i] - x[i]).abs().sum() > 0 for i in range(64)]
    assert 5 < sum(kept) < 59  # about half the samples keep the branch
    for i in range(64):
        if kept[i]:
            torch.testing.assert_close(y[i], x[i] + 2 * branch[i])
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), x + m.mlp(m.spatial_mixing(x)))


@pytest.mark.parametrize("make,given", [
    (fasternet, {"partial_ratio": 0.0}), (fasternet, {"partial_ratio": 1.5}), (fasternet, {"act": "silu"}),
    (fasternet, {"drop_path": 1.0}), (fasternet, {"mlp_ratio": 0.0}), (pconv, {"forward_mode": "inplace"}),
])
def test_registry_rejects_bad_arguments(make, given):
    with pytest.raises(BlockArgumentError):
        make(32, 32, **given)


@pytest.mark.parametrize("cls", [FasterNetBlock, PConv])
def test_stride_other_than_1_or_2_raises(cls):
    with pytest.raises(BlockArgumentError, match="stride"):
        cls(32, 32, 4)


def test_parameter_names_are_the_official_ones():
    names = {k: tuple(v.shape) for k, v in fasternet(40, 80, 2).named_parameters()}
    assert names == {
        "merge.reduction.weight": (80, 40, 2, 2), "merge.norm.weight": (80,), "merge.norm.bias": (80,),
        "spatial_mixing.partial_conv3.weight": (20, 20, 3, 3),
        "mlp.0.weight": (160, 80, 1, 1), "mlp.1.weight": (160,), "mlp.1.bias": (160,),
        "mlp.3.weight": (80, 160, 1, 1),
    }


@pytest.mark.parametrize("cls,name", [(FasterNetBlock, "fasternet"), (PConv, "pconv")])
def test_signature_defaults_match_the_registry_table(cls, name):
    sig = inspect.signature(cls)
    for arg, default in registry.get(name).defaults().items():
        assert sig.parameters[arg].default == default


def test_dwconv_variant_is_the_block_with_a_depthwise_conv_in_pconvs_place():
    """fasternet_dw (the paper's PConv-vs-DWConv comparison): same merge, MLP and residual; the spatial mixing
    is a depthwise 3x3 (C x 9 weights) instead of PConv's (C/4)^2 x 9: 7,460 - 900 + 360 = 6,920 at C = 40."""
    dw = registry.get("fasternet_dw", "block").create(40, 40, 1)
    pc = fasternet(40, 40)
    assert sum(p.numel() for p in pc.parameters()) == 7460
    assert sum(p.numel() for p in dw.parameters()) == 7460 - 900 + 360
    conv = dw.spatial_mixing
    assert (conv.groups, conv.kernel_size, conv.stride, conv.padding, conv.bias) == (40, (3, 3), (1, 1), (1, 1), None)
    # with PConv's 3x3 replaced by an identity in both, the blocks compute the same function
    dw.load_state_dict({k: v for k, v in pc.state_dict().items() if not k.startswith("spatial_mixing")}, strict=False)
    x = torch.randn(2, 40, 9, 11)
    with torch.no_grad():
        dw.spatial_mixing.weight.zero_()
        dw.spatial_mixing.weight[:, 0, 1, 1] = 1.0
        pc.spatial_mixing.partial_conv3.weight.zero_()
        pc.spatial_mixing.partial_conv3.weight[torch.arange(10), torch.arange(10), 1, 1] = 1.0
        assert torch.allclose(dw.eval()(x), pc.eval()(x))
    sig = inspect.signature(type(dw))
    for arg, default in registry.get("fasternet_dw").defaults().items():
        assert sig.parameters[arg].default == default
