"""MobileNetV3 bottleneck against torchvision's ``models/mobilenetv3.py`` (pytorch/vision 00542d9).

Counts were taken by instantiating torchvision's ``InvertedResidual(InvertedResidualConfig(in, k, exp, out, se,
'RE'/'HS', stride, dilation, 1.0), BatchNorm2d(eps=0.001, momentum=0.01))`` (torch 2.13, CPU); with its tensors
copied into ours in state-dict order (random values and BN statistics, eval mode) every configuration gave an
identical output (max difference 0.0).  The whole MobileNetV3-Large is compared in tests/test_weights.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def mbv3(cin, cout, stride=1, **kw):
    return registry.get("mbv3", "block").create(cin, cout, stride, **kw)


# (in, kernel, expanded, out, se, nl, stride, dilation) -> torchvision InvertedResidual parameters
OFFICIAL = [
    ((16, 3, 16, 16, False, "RE", 1, 1), 464),
    ((16, 3, 64, 24, False, "RE", 2, 1), 3_440),
    ((24, 5, 72, 40, True, "RE", 2, 1), 10_328),
    ((80, 3, 184, 80, False, "HS", 1, 1), 31_992),
    ((80, 3, 480, 112, True, "HS", 1, 1), 214_424),
    ((112, 5, 672, 160, True, "HS", 2, 1), 429_224),
    ((160, 5, 960, 160, True, "HS", 1, 2), 797_360),
]


@pytest.mark.parametrize("cfg,official", OFFICIAL, ids=[str(c) for c, _ in OFFICIAL])
def test_counts_match_torchvision_at_several_widths(cfg, official):
    cin, k, exp, cout, se, nl, s, d = cfg
    m = mbv3(cin, cout, s, expansion=exp / cin, kernel_size=k, se=se, act="hardswish" if nl == "HS" else "relu",
             dilation=d)
    assert m.hidden_channels == exp
    assert n_params(m) == official


def test_parameter_names_follow_torchvisions_order():
    """torchvision's block.0 (expand), block.1 (depthwise), block.2 (SE fc1/fc2), block.3 (project) are ours
    expand, dw, se (conv1/conv2), project, in the same order (nasseg.weights pairs them by order and shape)."""
    official = ["block.0.0.weight", "block.0.1.weight", "block.0.1.bias", "block.1.0.weight", "block.1.1.weight",
                "block.1.1.bias", "block.2.fc1.weight", "block.2.fc1.bias", "block.2.fc2.weight", "block.2.fc2.bias",
                "block.3.0.weight", "block.3.1.weight", "block.3.1.bias"]
    ours = [k for k, _ in mbv3(80, 112, 1, expansion=6.0, se=True).named_parameters()]
    renamed = {"block.0.0": "expand.conv", "block.0.1": "expand.bn", "block.1.0": "dw.conv", "block.1.1": "dw.bn",
               "block.2.fc1": "se.conv1", "block.2.fc2": "se.conv2", "block.3.0": "project.conv",
               "block.3.1": "project.bn"}
    assert ours == [renamed[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1] for k in official]


def test_expand_conv_is_left_out_when_the_width_does_not_grow():
    assert isinstance(mbv3(16, 16, expansion=1.0).expand, nn.Identity)
    assert not isinstance(mbv3(16, 24, 2, expansion=4.0).expand, nn.Identity)


def test_batchnorm_se_and_activation_are_torchvisions():
    m = mbv3(24, 40, 2, expansion=3.0, kernel_size=5, se=True, act="relu")
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    assert bns and all(b.eps == 1e-3 and b.momentum == 0.01 for b in bns)
    assert m.se.conv1.out_channels == 24  # _make_divisible(72 // 4, 8)
    assert m.se.gate(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0.0, 0.5, 1.0]
    assert isinstance(m.dw.act, nn.ReLU) and isinstance(mbv3(24, 40, 2).dw.act, nn.Hardswish)
    assert isinstance(m.project.act, nn.Identity)


def test_residual_only_at_stride_one_and_same_width():
    m = mbv3(40, 40, expansion=3.0).eval()
    x = torch.randn(1, 40, 8, 8)
    with torch.no_grad():
        assert torch.allclose(m(x), x + m.project(m.se(m.dw(m.expand(x)))))
    assert not mbv3(40, 80, 1).use_residual and not mbv3(40, 40, 2).use_residual


def test_dilation_needs_stride_one():
    assert mbv3(160, 160, 1, dilation=2).dw.conv.dilation == (2, 2)
    with pytest.raises(BlockArgumentError, match="'dilation' = 2"):
        mbv3(112, 160, 2, dilation=2)
