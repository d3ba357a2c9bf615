"""GhostNet's Ghost module and Ghost bottleneck against the official code.

Counts were taken by instantiating huawei-noah/Efficient-AI-Backbones ``ghostnet_pytorch/ghostnet.py`` at
f90e129 (torch 2.13, CPU): ``GhostBottleneck(in, mid, out, dw_kernel_size, stride, se_ratio=...)`` and
``GhostModule(in, out, ratio, dw_size)``.  With the official block's tensors copied into ours in state-dict
order (random values, random BN statistics, eval mode), every configuration below gave an output identical
(max difference 0.0) to the official block's; the whole network's equality is tested in tests/test_weights.py
with committed fixtures made by the official code.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.blocks.ghostnet import GhostBottleneck, GhostModule
from nasseg.errors import BlockArgumentError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def ghost(cin, cout, stride=1, **kw):
    return registry.get("ghost", "block").create(cin, cout, stride, **kw)


# (in, official mid_chs, out, dw kernel, stride, se_ratio) -> official GhostBottleneck parameters
OFFICIAL = [
    ((16, 16, 16, 3, 1, 0.0), 464),
    ((16, 48, 24, 3, 2, 0.0), 2_564),
    ((24, 72, 40, 5, 2, 0.25), 9_636),
    ((80, 184, 80, 3, 1, 0.0), 16_436),
    ((80, 480, 112, 3, 1, 0.25), 175_792),
    ((112, 672, 160, 5, 2, 0.25), 362_840),
    ((160, 960, 160, 5, 1, 0.25), 622_880),
]


@pytest.mark.parametrize("cfg,official", OFFICIAL, ids=[str(c) for c, _ in OFFICIAL])
def test_bottleneck_counts_match_official_at_several_widths(cfg, official):
    cin, mid, cout, k, s, se = cfg
    m = ghost(cin, cout, s, expansion=mid / cin, kernel_size=k, se=se > 0)
    assert m.hidden_channels == mid
    assert n_params(m) == official


def test_ghost_module_counts_match_official():
    assert n_params(GhostModule(16, 24, ratio=3, dw_size=5)) == 576  # official GhostModule(16, 24, ratio=3, dw_size=5)
    assert n_params(GhostModule(32, 48, ratio=4, dw_size=1)) == 516


def test_parameter_names_are_the_official_ones():
    """Official GhostBottleneck(80, 480, 112, 3, 1, se_ratio=0.25) names; the SE is nasseg's shared SE, whose
    conv1/conv2 are the official conv_reduce/conv_expand (nasseg.weights pairs them by order and shape)."""
    official = ["ghost1.primary_conv.0.weight", "ghost1.primary_conv.1.weight", "ghost1.primary_conv.1.bias",
                "ghost1.cheap_operation.0.weight", "ghost1.cheap_operation.1.weight", "ghost1.cheap_operation.1.bias",
                "se.conv_reduce.weight", "se.conv_reduce.bias", "se.conv_expand.weight", "se.conv_expand.bias",
                "ghost2.primary_conv.0.weight", "ghost2.primary_conv.1.weight", "ghost2.primary_conv.1.bias",
                "ghost2.cheap_operation.0.weight", "ghost2.cheap_operation.1.weight", "ghost2.cheap_operation.1.bias",
                "shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias", "shortcut.2.weight",
                "shortcut.3.weight", "shortcut.3.bias"]
    ours = [k for k, _ in ghost(80, 112, 1, expansion=6.0, se=True).named_parameters()]
    assert ours == [k.replace("conv_reduce", "conv1").replace("conv_expand", "conv2") for k in official]


def test_se_squeezes_to_a_quarter_rounded_to_four():
    # official SqueezeExcite(72, 0.25): _make_divisible(18, 4) = 20 (MobileNetV3's rule would give 24)
    m = ghost(24, 40, 2, expansion=3.0, kernel_size=5, se=True)
    assert m.se.conv1.out_channels == 20
    assert m.se.gate(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0.0, 0.5, 1.0]  # relu6(x + 3) / 6


def test_ghost_module_concatenates_intrinsic_and_ghost_maps_and_cuts_to_width():
    m = GhostModule(8, 7, ratio=2, dw_size=3).eval()  # ceil(7/2) = 4 intrinsic, 4 ghost maps, cut to 7
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        y, x1 = m(x), m.primary_conv(x)
        assert y.shape == (1, 7, 5, 5)
        assert torch.equal(y[:, :4], x1)
        assert torch.equal(y[:, 4:], m.cheap_operation(x1)[:, :3])


def test_layer_order_and_shortcut():
    m = ghost(16, 16, 1, expansion=1.0).eval()
    assert isinstance(m.shortcut, nn.Sequential) and len(m.shortcut) == 0  # identity
    assert isinstance(m.conv_dw, nn.Identity)  # no depthwise conv at stride 1
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        assert torch.allclose(m(x), m.ghost2(m.ghost1(x)) + x)
    d = ghost(16, 24, 2).eval()  # stride 2: dw conv after ghost1, projection shortcut
    assert d.conv_dw.stride == (2, 2) and d.conv_dw.groups == d.hidden_channels
    with torch.no_grad():
        y = d.ghost2(d.bn_dw(d.conv_dw(d.ghost1(x)))) + d.shortcut(x)
        assert torch.allclose(d(x), y)
    assert isinstance(d.ghost2.primary_conv[2], nn.Sequential)  # the projection Ghost module has no ReLU


def test_bad_arguments_name_the_argument():
    with pytest.raises(BlockArgumentError, match="'stride' = 4"):
        GhostBottleneck(16, 16, 4)
    with pytest.raises(BlockArgumentError, match="'ratio'"):
        ghost(16, 16, 1, ratio=6)
