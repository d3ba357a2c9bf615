"""Fast-SCNN's learning-to-downsample block and its MobileNetV2 bottlenecks against the reference code.

The paper's authors published no code; the reference is Tramac/Fast-SCNN-pytorch ``models/fast_scnn.py`` at
0638517.  Parameter counts were taken by instantiating its classes (torch 2.13, CPU): ``LearningToDownsample``,
``LinearBottleneck``.  The whole network's output with transferred weights is checked in tests/test_weights.py
(``fast_scnn``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.errors import ConfigError


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def ltd(cin, cout, stride=8, **kw):
    return registry.get("ltd", "block").create(cin, cout, stride, **kw)


@pytest.mark.parametrize("channels,cout,official", [
    ((32, 48), 64, 6_640),   # LearningToDownsample(32, 48, 64): Fast-SCNN
    ((16, 24), 32, 2_168),   # LearningToDownsample(16, 24, 32)
    ((32, 48), 96, 8_240),   # LearningToDownsample(32, 48, 96)
])
def test_ltd_params_match_reference(channels, cout, official):
    assert n_params(ltd(3, cout, channels=channels)) == official
    assert n_params(ltd(3, cout, channels=channels, stem_padding="same")) == official


def _reference(m, x):
    """Tramac's forward: the stem conv without padding, then two DSConvs (depthwise 3x3 s2 pad 1, 1x1)."""
    c = m.conv
    y = F.relu(c.bn(F.conv2d(x, c.conv.weight, stride=2, padding=0)))
    for ds in (m.dsconv1, m.dsconv2):
        y = ds.pw(ds.dw(y))
    return y


@pytest.mark.parametrize("size", [(64, 128), (40, 56)])
def test_ltd_valid_equals_reference_on_multiples_of_eight(size):
    torch.manual_seed(0)
    m = ltd(3, 64).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        y = m(x)
        assert tuple(y.shape) == (1, 64, size[0] // 8, size[1] // 8)
        assert torch.equal(y, _reference(m, x))
    assert m.conv.conv.padding == (0, 0) and m.conv.conv.stride == (2, 2)
    assert m.dsconv1.dw.conv.groups == 32 and m.dsconv2.dw.conv.groups == 48


@pytest.mark.parametrize("size", [(33, 47), (57, 70)])
def test_ltd_other_sides_round_up(size):
    m = ltd(3, 64).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        y = m(x)
        padded = F.pad(x, (0, (-size[1]) % 8, 0, (-size[0]) % 8))
        assert tuple(y.shape) == (1, 64, math.ceil(size[0] / 8), math.ceil(size[1] / 8))
        assert torch.equal(y, _reference(m, padded))


def test_ltd_same_padding_and_stride_four():
    m = ltd(3, 64, stem_padding="same")
    assert m.conv.conv.padding == (1, 1)
    y = m(torch.randn(2, 3, 33, 47))
    assert tuple(y.shape) == (2, 64, 5, 6)
    m4 = ltd(3, 48, 4)
    assert m4.dsconv2.dw.conv.stride == (1, 1) and m4.stride == 4
    assert tuple(m4(torch.randn(2, 3, 32, 48)).shape) == (2, 48, 8, 12)


def test_ltd_rejects_other_strides():
    for s in (1, 2):
        with pytest.raises(ConfigError, match="stride"):
            ltd(3, 64, s)


@pytest.mark.parametrize("cin,cout,stride,official", [
    (64, 64, 2, 54_272),     # LinearBottleneck(64, 64, 6, 2): bottleneck1.0
    (64, 64, 1, 54_272),     # bottleneck1.1
    (64, 96, 2, 66_624),     # LinearBottleneck(64, 96, 6, 2): bottleneck2.0
    (96, 96, 1, 118_272),    # bottleneck2.1
    (96, 128, 1, 136_768),   # bottleneck3.0
    (128, 128, 1, 206_848),  # bottleneck3.1
])
def test_mbconv_relu_is_fast_scnn_bottleneck(cin, cout, stride, official):
    m = registry.get("mbconv", "block").create(cin, cout, stride, act="relu")
    assert n_params(m) == official
    assert m.use_residual == (stride == 1 and cin == cout)
    assert isinstance(m.dw.act, torch.nn.ReLU) and isinstance(m.project.act, torch.nn.Identity)
