"""ResNet basic / bottleneck blocks and the DDRNet/PIDNet stem against the official code.

Counts were taken by instantiating the official classes (torch 2.13, CPU): ``BasicBlock`` / ``Bottleneck`` of
XuJiacong/PIDNet ``models/model_utils.py`` at 4c158cf (identical to ydhongHIT/DDRNet
``segmentation/DDRNet_23_slim.py`` at de0db31), each with the ``downsample`` its ``_make_layer`` builds (1x1 conv
no bias + BN where stride != 1 or the width changes; ``Bottleneck(in, out // 2, ...)``), and DDRNet-23-slim's
``conv1``.  With the official tensors loaded (``load_state_dict(strict=True)``, our key names), every case below,
with and without ``no_relu``, gave outputs identical to the official module (checked once, outside the suite,
since the official code is not vendored); the whole networks are checked by tests/test_weights.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def make(name, cin, cout, stride=1, **kw):
    return registry.get(name, "block").create(cin, cout, stride, **kw)


@pytest.mark.parametrize("cin,cout,stride,official", [
    (32, 32, 1, 18_560),        # DDRNet-23-slim / PIDNet-S layer1 block
    (32, 64, 2, 57_728),        # DDRNet-23-slim layer2.0 (with downsample)
    (64, 32, 1, 29_888),        # PIDNet-S layer3_d: BasicBlock(2C, C) with downsample
    (128, 256, 2, 919_040),     # DDRNet-23 layer4.0
    (256, 256, 1, 1_180_672),   # DDRNet-23 layer4.1
])
def test_basic_params_match_official(cin, cout, stride, official):
    assert n_params(make("resnet_basic", cin, cout, stride)) == official


@pytest.mark.parametrize("cin,cout,stride,official", [
    (32, 64, 1, 14_720),         # PIDNet-S layer4_d: Bottleneck(C, C) -> 2C
    (64, 128, 1, 58_112),        # DDRNet-23-slim layer5_ / PIDNet-S layer5_
    (256, 512, 2, 920_576),      # DDRNet-23-slim layer5
    (512, 1024, 2, 3_676_160),   # DDRNet-23 layer5
])
def test_bottleneck_params_match_official(cin, cout, stride, official):
    assert n_params(make("resnet_bottleneck", cin, cout, stride)) == official


def test_bottleneck_expansion_four_is_torchvisions():
    # torchvision resnet50 layer1.0 = Bottleneck(64, 64) + downsample 64 -> 256: 75,008 parameters
    b = make("resnet_bottleneck", 64, 256, 1, expansion=4)
    assert n_params(b) == 75_008 and b.conv1.out_channels == 64 and b.conv3.out_channels == 256


def test_stem_params_and_names_match_official_conv1():
    stem = make("ddr_stem", 3, 32, 4)
    assert n_params(stem) == 10_272  # DDRNet-23-slim conv1 (convs with bias)
    assert [k for k in stem.state_dict() if not k.endswith("num_batches_tracked")] == [
        f"layers.{i}.{t}" for i in (0, 1, 3, 4)
        for t in (("weight", "bias") if i in (0, 3) else ("weight", "bias", "running_mean", "running_var"))]
    assert stem(torch.randn(1, 3, 32, 64)).shape == (1, 32, 8, 16)


def test_official_submodule_names():
    basic = make("resnet_basic", 32, 64, 2)
    assert {k.rsplit(".", 1)[0] for k in basic.state_dict()} == {"conv1", "bn1", "conv2", "bn2", "downsample.0",
                                                               "downsample.1"}
    bott = make("resnet_bottleneck", 64, 128, 1)
    assert {k.rsplit(".", 1)[0] for k in bott.state_dict()} == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3",
                                                              "downsample.0", "downsample.1"}
    assert not any(k.startswith("downsample") for k in make("resnet_basic", 32, 32, 1).state_dict())


def _randomise(m: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for name, t in m.state_dict().items():
        if t.is_floating_point():
            t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith("running_var")
                    else torch.randn(t.shape, generator=g) * 0.3)
    return m.eval()


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


@pytest.mark.parametrize("no_relu", [False, True])
def test_basic_forward_is_the_residual_unit(no_relu):
    b = _randomise(make("resnet_basic", 16, 32, 2, no_relu=no_relu))
    x = torch.randn(2, 16, 12, 10)
    with torch.no_grad():
        y = F.relu(_bn(F.conv2d(x, b.conv1.weight, stride=2, padding=1), b.bn1))
        y = _bn(F.conv2d(y, b.conv2.weight, padding=1), b.bn2)
        y = y + _bn(F.conv2d(x, b.downsample[0].weight, stride=2), b.downsample[1])
        ref = y if no_relu else F.relu(y)
        out = b(x)
    assert torch.allclose(out, ref, atol=1e-5)
    assert (out.min() < 0) == no_relu  # no_relu keeps the negative part of the sum


@pytest.mark.parametrize("no_relu", [False, True])
def test_bottleneck_forward_is_the_residual_unit(no_relu):
    b = _randomise(make("resnet_bottleneck", 16, 32, 2, no_relu=no_relu))
    assert b.conv2.stride == (2, 2) and b.conv1.stride == (1, 1)  # the stride sits on the 3x3 (ResNet v1.5)
    x = torch.randn(2, 16, 12, 10)
    with torch.no_grad():
        y = F.relu(_bn(F.conv2d(x, b.conv1.weight), b.bn1))
        y = F.relu(_bn(F.conv2d(y, b.conv2.weight, stride=2, padding=1), b.bn2))
        y = _bn(F.conv2d(y, b.conv3.weight), b.bn3)
        y = y + _bn(F.conv2d(x, b.downsample[0].weight, stride=2), b.downsample[1])
        ref = y if no_relu else F.relu(y)
        out = b(x)
    assert torch.allclose(out, ref, atol=1e-5)
    assert (out.min() < 0) == no_relu


def test_identity_shortcut_adds_the_input():
    b = _randomise(make("resnet_basic", 8, 8, 1, no_relu=True))
    for p in (b.bn2.weight, b.bn2.bias):  # the residual branch contributes zero
        p.data.zero_()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        assert torch.equal(b(x), x)


def test_input_is_not_modified():
    x = torch.randn(1, 8, 6, 6)
    keep = x.clone()
    make("resnet_bottleneck", 8, 8, 1)(x)
    make("resnet_basic", 8, 8, 1)(x)
    assert torch.equal(x, keep)


def test_bottleneck_refuses_a_width_the_expansion_does_not_divide():
    with pytest.raises(BlockArgumentError, match=r"'expansion' = 4 .*must divide out_channels = 66.*1, 2, 3, 6"):
        make("resnet_bottleneck", 32, 66, 1, expansion=4)


def test_stem_refuses_a_stride_it_cannot_make():
    with pytest.raises(BlockArgumentError, match=r"ddr_stem.*'stride' = 1.*2, 4, 8"):
        make("ddr_stem", 3, 32, 1)
