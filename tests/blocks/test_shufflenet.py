"""ShuffleNet V2 unit and the max-pool stage against torchvision's ``models/shufflenetv2.py`` (pytorch/vision
0248e36), the layer order this unit follows.

Counts were taken by instantiating torchvision's ``InvertedResidual(inp, oup, stride)`` (torch 2.13, CPU); with
its tensors copied into ours (same names; random values and BN statistics, eval mode) every configuration gave
an identical output (max difference 0.0).  The whole ShuffleNet V2 1.0x is compared in tests/test_weights.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def unit(cin, cout, stride=1, **kw):
    return registry.get("shufflev2", "block").create(cin, cout, stride, **kw)


# (in, out, stride) -> torchvision InvertedResidual parameters
OFFICIAL = [((24, 116, 2), 7_398), ((116, 116, 1), 7_598), ((232, 232, 1), 28_652), ((232, 464, 2), 167_968),
            ((48, 48, 1), 1_512), ((24, 48, 2), 2_400)]


@pytest.mark.parametrize("cfg,official", OFFICIAL, ids=[str(c) for c, _ in OFFICIAL])
def test_counts_match_torchvision_at_several_widths(cfg, official):
    assert n_params(unit(*cfg)) == official


def test_parameter_names_are_torchvisions():
    official = ["branch1.0.weight", "branch1.1.weight", "branch1.1.bias", "branch1.2.weight", "branch1.3.weight",
                "branch1.3.bias", "branch2.0.weight", "branch2.1.weight", "branch2.1.bias", "branch2.3.weight",
                "branch2.4.weight", "branch2.4.bias", "branch2.5.weight", "branch2.6.weight", "branch2.6.bias"]
    assert [k for k, _ in unit(24, 116, 2).named_parameters()] == official
    assert [k for k, _ in unit(116, 116, 1).named_parameters()] == [k for k in official if k.startswith("branch2")]


def test_stride_one_unit_splits_then_shuffles():
    m = unit(8, 8).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        y = m(x)
        # cat([x1, branch(x2)]) shuffled with 2 groups: the untouched half lands on the even channels
        assert torch.equal(y[:, 0::2], x[:, :4])
        assert torch.equal(y[:, 1::2], m.branch2(x[:, 4:]))


def test_stride_two_unit_has_two_half_width_branches():
    m = unit(24, 48, 2, kernel_size=5).eval()
    assert m.branch1[0].kernel_size == (5, 5) and m.branch2[3].kernel_size == (5, 5)
    x = torch.randn(1, 24, 9, 9)
    with torch.no_grad():
        y = m(x)
        assert y.shape == (1, 48, 5, 5)
        assert torch.equal(y[:, 0::2], m.branch1(x)) and torch.equal(y[:, 1::2], m.branch2(x))


def test_width_change_at_stride_one_uses_the_two_branch_unit():
    m = unit(64, 96, 1)
    assert not m.split and m.branch1[0].stride == (1, 1)
    assert m(torch.randn(1, 64, 7, 7)).shape == (1, 96, 7, 7)


def test_odd_width_is_refused():
    with pytest.raises(BlockArgumentError, match="'out_channels' = 117"):
        unit(24, 117, 2)


def test_maxpool_is_shufflenets_stem_pool_and_keeps_the_width():
    pool = registry.get("maxpool", "block").create(24, 24, 2)
    x = torch.randn(1, 24, 112, 112)
    assert torch.equal(pool(x), nn.MaxPool2d(3, 2, 1)(x))
    assert pool(torch.randn(1, 24, 33, 47)).shape == (1, 24, 17, 24)
    with pytest.raises(BlockArgumentError, match="'out_channels' = 32"):
        registry.get("maxpool", "block").create(24, 32, 2)


@pytest.mark.parametrize("widths,published", [
    ((48, 96, 192, 1024), 1_366_792),   # shufflenet_v2_x0_5
    ((116, 232, 464, 1024), 2_278_604),  # shufflenet_v2_x1_0
    ((176, 352, 704, 1024), 3_503_624),  # shufflenet_v2_x1_5
    ((244, 488, 976, 2048), 7_393_996),  # shufflenet_v2_x2_0
])
def test_every_torchvision_width_has_its_published_parameter_count(widths, published):
    """torchvision's weights metadata (``num_params`` of ShuffleNet_V2_X*_Weights, pytorch/vision 0248e36)."""
    from nasseg.build import build
    from nasseg.cost import count_params
    from nasseg.genome import parse

    a, b, c, d = widths
    g = parse(f"v1|conv1x24s2/maxpool1x24s2/shufflev24x{a}s2/shufflev28x{b}s2/shufflev24x{c}s2/"
              f"conv1x{d}s1(kernel_size=1)|classifier@5(hidden_channels=0)|-")
    assert count_params(build(g, 1000)) == published
