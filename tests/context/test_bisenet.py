"""BiSeNet V2 context embedding block against ``CoinCheung/BiSeNet`` 6b4b67a ``lib/models/bisenetv2.py``
``CEBlock()`` (the re-implementation; no author code): 164,608 parameters counted from the instantiated class
(torch 2.13, CPU).  Outside the suite its state dict loaded ``strict=True`` into ours and gave identical eval
outputs."""

from __future__ import annotations

import pytest
import torch

from nasseg import registry
from nasseg.errors import BlockArgumentError

CE_OFFICIAL = 164_608
# bn (128 x 2) + conv_gap ConvBNReLU 1x1 (128*128 + 256) + conv_last ConvBNReLU 3x3 (128*128*9 + 256)
CE_FORMULA = 256 + (128 * 128 + 256) + (128 * 128 * 9 + 256)


def test_params_equal_official_class():
    assert CE_FORMULA == CE_OFFICIAL
    ce = registry.get("ce", "context").create(128, 128)
    assert sum(p.numel() for p in ce.parameters()) == CE_OFFICIAL
    assert {"bn.weight", "bn.running_var", "conv_gap.conv.weight", "conv_last.bn.weight"} <= set(ce.state_dict())


def test_forward_is_the_re_implementation_s():
    """conv_last(x + conv_gap(bn(mean(x)))), the pooled vector broadcast over H x W."""
    torch.manual_seed(0)
    ce = registry.get("ce", "context").create(16, 16).eval()
    x = torch.randn(2, 16, 5, 7)
    with torch.no_grad():
        ref = ce.conv_last(x + ce.conv_gap(ce.bn(x.mean((2, 3), keepdim=True))))
        assert torch.equal(ce(x), ref)


def test_width_change_is_refused():
    with pytest.raises(BlockArgumentError, match="out_channels"):
        registry.get("ce", "context").create(128, 64)
