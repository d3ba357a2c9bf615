"""Fast-SCNN's pyramid pooling against the reference code (Tramac/Fast-SCNN-pytorch ``models/fast_scnn.py`` at
0638517, ``PyramidPooling``; the paper's authors published no code).  Counts from instantiating that class."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.errors import ConfigError


def ppm(cin, cout):
    return registry.get("fastscnn_ppm", "context").create(cin, cout)


@pytest.mark.parametrize("cin,cout,official", [(128, 128, 49_664), (64, 96, 16_704)])
def test_params_match_reference(cin, cout, official):
    assert sum(p.numel() for p in ppm(cin, cout).parameters()) == official


def test_forward_follows_the_reference():
    torch.manual_seed(0)
    m = ppm(32, 24).eval()
    x = torch.randn(2, 32, 9, 13)
    with torch.no_grad():
        feats = [x] + [F.interpolate(c(F.adaptive_avg_pool2d(x, b)), (9, 13), mode="bilinear", align_corners=True)
                       for b, c in zip((1, 2, 3, 6), (m.conv1, m.conv2, m.conv3, m.conv4))]
        assert torch.equal(m(x), m.out(torch.cat(feats, 1)))
    assert m.out.conv.kernel_size == (1, 1) and m.conv1.conv.out_channels == 8 and m.out.conv.in_channels == 64


def test_too_few_channels_are_refused():
    with pytest.raises(ConfigError, match="in_channels must be >= 4"):
        ppm(3, 8)
