"""Fast-SCNN's feature fusion module against the reference code (Tramac/Fast-SCNN-pytorch
``models/fast_scnn.py`` at 0638517, ``FeatureFusionModule``; the paper's authors published no code), and the
``passthrough`` level the Fast-SCNN preset's chain decoder uses.  Counts from instantiating the reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry


def ffm(low, high, out):
    return registry.get("fastscnn_ffm", "fusion").create(low, high, out)


@pytest.mark.parametrize("low,high,out,official", [
    (64, 128, 128, 26_752),   # FeatureFusionModule(64, 128, 128): Fast-SCNN
    (32, 64, 128, 22_656),    # depthwise with channel multiplier 2
    (48, 96, 96, 15_456),
])
def test_params_match_reference(low, high, out, official):
    m = ffm(low, high, out)
    assert sum(p.numel() for p in m.parameters()) == official
    assert m.dwconv.conv.groups == high


def test_widths_the_reference_cannot_build_use_the_gcd():
    m = ffm(32, 64, 48)
    assert m.dwconv.conv.groups == 16
    assert tuple(m(torch.randn(2, 32, 16, 24), torch.randn(2, 64, 4, 6)).shape) == (2, 48, 16, 24)


def test_forward_follows_the_reference():
    torch.manual_seed(0)
    m = ffm(16, 32, 32).eval()
    low, high = torch.randn(2, 16, 16, 24), torch.randn(2, 32, 4, 6)
    with torch.no_grad():
        up = F.interpolate(high, scale_factor=4, mode="bilinear", align_corners=True)  # the reference's x4
        ref = F.relu(m.conv_higher_res(low) + m.conv_lower_res(m.dwconv(up)))
        assert torch.allclose(m(low, high), ref, atol=1e-6)
    assert m.conv_lower_res.conv.bias is not None and m.conv_higher_res.conv.bias is not None


def test_passthrough_returns_the_deeper_path():
    m = registry.get("passthrough", "fusion").create(32, 64, 48)
    assert m.out_channels == 64 and not list(m.parameters())
    high = torch.randn(1, 64, 8, 8)
    assert m(torch.randn(1, 32, 8, 8), high) is high
    assert tuple(m(torch.randn(1, 32, 16, 16), high).shape) == (1, 64, 16, 16)
