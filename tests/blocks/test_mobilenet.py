"""MBConv against torchvision's inverted residuals.

Counts are the integers of torchvision's code (pytorch/vision ``torchvision/models/mobilenetv2.py``
``InvertedResidual``; ``mobilenetv3.py`` ``InvertedResidual`` + ``SqueezeExcitation``), worked out below and
confirmed once on torchvision 0.28.0's classes (outputs identical with copied weights); torchvision is not
a dependency of the suite.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg import registry
from nasseg.blocks.mobilenet import MBConv, make_divisible
from nasseg.errors import BlockArgumentError, ConfigError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def mbconv(cin, cout, stride=1, **kw) -> MBConv:
    return registry.get("mbconv", "block").create(cin, cout, stride, **kw)


@pytest.mark.parametrize("cin,cout,stride,kw,expected", [
    # MobileNetV2 features[1] = InvertedResidual(32, 16, 1, t=1): dw 32*9 + BN 64; pw 32*16 + BN 32
    (32, 16, 1, {"expansion": 1}, 896),
    # features[2] = InvertedResidual(16, 24, 2, t=6): pw 16*96 + 192; dw 96*9 + 192; pw 96*24 + 48
    (16, 24, 2, {}, 5_136),
    # InvertedResidual(64, 64, 1, t=6): 24576 + 768; 3456 + 768; 24576 + 128
    (64, 64, 1, {}, 54_272),
    # MobileNetV3-Large bneck(24, k5, exp 72, 40, SE, RE, s2): 1728 + 144; 1800 + 144;
    # SE with squeeze make_divisible(72 // 4, 8) = 24: 72*24 + 24 + 24*72 + 72; 2880 + 80
    (24, 40, 2, {"expansion": 3, "kernel_size": 5, "act": "relu", "se": True}, 10_328),
    # MobileNetV3-Large bneck(40, k5, exp 240, 40, SE, HS, s1): 9600 + 480; 6000 + 480;
    # SE squeeze 64: 240*64 + 64 + 64*240 + 240; 9600 + 80
    (40, 40, 1, {"expansion": 6, "kernel_size": 5, "act": "hardswish", "se": True}, 57_264),
])
def test_params_match_torchvision(cin, cout, stride, kw, expected):
    assert n_params(mbconv(cin, cout, stride, **kw)) == expected


@pytest.mark.parametrize("v,expected", [(18, 24), (60, 64), (120, 120), (4, 8), (30, 32)])
def test_make_divisible_as_torchvision(v, expected):
    assert make_divisible(v, 8) == expected


def test_structure():
    m = mbconv(16, 24, 2)
    assert m.expand.conv.kernel_size == (1, 1) and m.expand.conv.out_channels == 96
    assert isinstance(m.expand.act, nn.ReLU6) and isinstance(m.dw.act, nn.ReLU6)
    assert m.dw.conv.groups == 96 and m.dw.conv.stride == (2, 2)
    assert isinstance(m.project.act, nn.Identity)           # linear bottleneck
    assert all(c.bias is None for c in (m.expand.conv, m.dw.conv, m.project.conv))
    assert isinstance(m.se, nn.Identity)
    assert isinstance(mbconv(32, 16, expansion=1).expand, nn.Identity)
    assert mbconv(16, 16, kernel_size=5).dw.conv.padding == (2, 2)


def test_residual_only_with_stride_one_and_same_width():
    assert mbconv(24, 24).use_residual
    assert not mbconv(24, 24, 2).use_residual
    assert not mbconv(24, 32).use_residual
    m = mbconv(24, 24).eval()
    x = torch.randn(2, 24, 9, 11)
    with torch.no_grad():
        assert torch.allclose(m(x), x + m.project(m.se(m.dw(m.expand(x)))), atol=1e-6)


def test_se_is_mobilenetv3_hard_sigmoid_gate():
    m = mbconv(16, 16, expansion=4, se=True).eval()
    assert m.se.conv1.out_channels == 16 and m.se.gate is F.hardsigmoid
    x = torch.randn(1, 64, 5, 5)
    with torch.no_grad():
        s = m.se.conv2(F.relu(m.se.conv1(x.mean((2, 3), keepdim=True))))
        assert torch.allclose(m.se(x), x * F.hardsigmoid(s), atol=1e-6)


@pytest.mark.parametrize("size,expected", [((32, 48), (16, 24)), ((33, 47), (17, 24))])
def test_stride_two_output_size(size, expected):
    assert tuple(mbconv(16, 24, 2)(torch.randn(1, 16, *size)).shape) == (1, 24, *expected)


def test_bad_arguments():
    with pytest.raises(BlockArgumentError, match="kernel_size"):
        mbconv(16, 16, kernel_size=7)
    with pytest.raises(BlockArgumentError, match="act"):
        mbconv(16, 16, act="tanh")
    with pytest.raises(ConfigError, match="stride"):
        mbconv(16, 16, 3)
