"""BiSeNet V2 segment head against ``CoinCheung/BiSeNet`` 6b4b67a ``lib/models/bisenetv2.py`` ``SegmentHead``
(the re-implementation; no author code): parameters of the instantiated official classes (torch 2.13, CPU)
for the main head and the four aux heads ``BiSeNetV2(19)`` builds.  Outside the suite each state dict loaded
``strict=True`` into ours, and ours followed by a bilinear resize (what the network does) gave the official
head's eval output exactly."""

from __future__ import annotations

import pytest
import torch

from nasseg import registry

OFFICIAL = {  # (in, mid, up_factor, aux) -> params of SegmentHead(in, mid, 19, up_factor, aux)
    (128, 1024, 8, False): 1_201_171,
    (16, 128, 4, True): 37_475,
    (32, 128, 8, True): 112_211,
    (64, 128, 16, True): 374_291,
    (128, 128, 32, True): 1_348_883,
}


def _ours(cin, mid, up, aux):
    return registry.get("bisenetv2_head", "head").create(cin, 19, mid_channels=mid, up_channels=up * up if aux else 0)


@pytest.mark.parametrize("spec", list(OFFICIAL))
def test_params_equal_official_class(spec):
    assert sum(p.numel() for p in _ours(*spec).parameters()) == OFFICIAL[spec]


def test_main_head_formula():
    assert 128 * 1024 * 9 + 2 * 1024 + 1024 * 19 + 19 == OFFICIAL[(128, 1024, 8, False)]


def test_aux_variant_upsamples_twice_and_names_as_officially():
    aux = _ours(16, 128, 4, True).eval()
    assert {"conv.conv.weight", "conv_out.0.1.conv.weight", "conv_out.0.1.bn.running_mean",
            "conv_out.1.weight", "conv_out.1.bias"} <= set(aux.state_dict())
    with torch.no_grad():
        assert aux(torch.randn(1, 16, 8, 16)).shape == (1, 19, 16, 32)
    assert aux.output_scale == 2 and _ours(128, 1024, 8, False).output_scale == 1
