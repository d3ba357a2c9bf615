"""Fast-SCNN's classifier against the reference code (Tramac/Fast-SCNN-pytorch ``models/fast_scnn.py`` at
0638517, ``Classifer``; the paper's authors published no code).  Counts from instantiating that class."""

from __future__ import annotations

import pytest
import torch

from nasseg import registry


@pytest.mark.parametrize("cin,classes,official", [(128, 19, 38_547), (64, 5, 10_181)])
def test_params_match_reference(cin, classes, official):
    m = registry.get("fastscnn_head", "head").create(cin, classes)
    assert sum(p.numel() for p in m.parameters()) == official
    assert isinstance(m.drop, torch.nn.Dropout) and m.drop.p == 0.1 and m.conv.bias is not None
    assert m.dsconv1.dw.conv.groups == cin


def test_forward_and_no_dropout():
    m = registry.get("fastscnn_head", "head").create(16, 3, dropout=0.0).eval()
    x = torch.randn(2, 16, 8, 12)
    assert isinstance(m.drop, torch.nn.Identity)
    with torch.no_grad():
        assert torch.equal(m(x), m.conv(m.dsconv2(m.dsconv1(x))))
