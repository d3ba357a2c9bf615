"""CGNet's context-guided block against the official code.

Parameter counts were taken by instantiating the official classes (torch 2.13, CPU):
wutianyiRosun/CGNet ``model/CGNet.py`` at cfccea3 (``ContextGuidedBlock``, ``ContextGuidedBlock_Down``).  The
whole network's output with transferred weights is checked in tests/test_weights.py (``cgnet``).
"""

from __future__ import annotations

import pytest
import torch

from nasseg import registry
from nasseg.errors import ConfigError, GenomeError


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def cg(cin, cout, stride=1, **kw):
    return registry.get("cg", "block").create(cin, cout, stride, **kw)


@pytest.mark.parametrize("cin,cout,stride,d,r,official", [
    (64, 64, 1, 2, 8, 4_008),        # ContextGuidedBlock(64, 64, 2, 8): CGNet stage 2
    (128, 128, 1, 4, 16, 12_104),    # ContextGuidedBlock(128, 128, 4, 16): CGNet stage 3
    (32, 32, 1, 2, 4, 1_496),        # ContextGuidedBlock(32, 32, 2, 4)
    (35, 64, 2, 2, 8, 31_176),       # ContextGuidedBlock_Down(35, 64, 2, 8): CGNet level2_0
    (131, 128, 2, 4, 16, 189_320),   # ContextGuidedBlock_Down(131, 128, 4, 16): CGNet level3_0
    (16, 32, 2, 3, 4, 8_072),        # ContextGuidedBlock_Down(16, 32, 3, 4)
])
def test_cg_params_match_official(cin, cout, stride, d, r, official):
    assert n_params(cg(cin, cout, stride, dilation=d, reduction=r)) == official


def test_cg_structure():
    m = cg(64, 64, dilation=2, reduction=8)
    assert m.conv_in.conv.kernel_size == (1, 1) and m.conv_in.conv.out_channels == 32
    assert m.f_loc.groups == 32 and m.f_loc.dilation == (1, 1) and m.f_loc.bias is None
    assert m.f_sur.groups == 32 and m.f_sur.dilation == (2, 2) and m.f_sur.padding == (2, 2)
    assert m.br.bn.eps == 1e-3 and m.conv_in.bn.eps == 1e-3 and isinstance(m.br.act, torch.nn.PReLU)
    assert m.f_glo.fc[0].out_features == 8 and m.f_glo.fc[0].bias is not None
    assert isinstance(m.reduce, torch.nn.Identity) and m.use_residual
    down = cg(35, 64, 2, dilation=2, reduction=8)
    assert down.conv_in.conv.kernel_size == (3, 3) and down.conv_in.conv.stride == (2, 2)
    assert down.f_loc.groups == 64 and down.br.bn.num_features == 128
    assert down.reduce.in_channels == 128 and down.reduce.out_channels == 64 and down.reduce.bias is None
    assert not down.use_residual


def _reference(m, x, down):
    """The official forward written out (ContextGuidedBlock / ContextGuidedBlock_Down)."""
    out = m.conv_in(x)
    joi = torch.cat([m.f_loc(out), m.f_sur(out)], 1)
    joi = m.br.act(m.br.bn(joi))
    if down:
        joi = m.reduce(joi)
    w = torch.sigmoid(m.f_glo.fc[2](torch.relu(m.f_glo.fc[0](joi.mean((2, 3))))))
    y = joi * w.view(*w.shape, 1, 1)
    return y if down else x + y


@pytest.mark.parametrize("cin,cout,stride", [(48, 48, 1), (35, 64, 2)])
def test_cg_forward_follows_the_official_order(cin, cout, stride):
    torch.manual_seed(0)
    m = cg(cin, cout, stride, dilation=3, reduction=8).eval()
    for p in m.parameters():  # move BN / PReLU off their identity initialisation
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, cin, 17, 22)
    with torch.no_grad():
        assert torch.allclose(m(x), _reference(m, x, stride == 2), atol=1e-5)


def test_cg_residual_only_when_shapes_match():
    m = cg(32, 48, dilation=2, reduction=8).eval()
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        assert not m.use_residual and tuple(m(x).shape) == (1, 48, 8, 8)


@pytest.mark.parametrize("cin,cout,stride,needle", [
    (32, 33, 1, "must be even"),
    (8, 8, 1, "below reduction"),
    (8, 8, 2, "below reduction"),
    (8, 8, 4, "stride"),
])
def test_cg_rejects_impossible_configurations(cin, cout, stride, needle):
    with pytest.raises(ConfigError, match=needle):
        cg(cin, cout, stride, dilation=2, reduction=16)


@pytest.mark.parametrize("width", [16, 32, 48, 64, 96, 128, 256])
def test_cg_counts_at_several_widths_follow_the_official_formula(width):
    """Stride 1, d = 2, r = 8, from the official layer list: 1x1 conv + BN + PReLU (width / 2), two depthwise
    3x3 (width / 2 each), BN + PReLU (width), f_glo Linear width -> width / 8 -> width (with biases)."""
    m = width // 2
    h = width // 8
    expected = width * m + 3 * m + 2 * 9 * m + 3 * width + (width * h + h) + (h * width + width)
    assert n_params(cg(width, width, dilation=2, reduction=8)) == expected


def test_cg_preset_stage_error_names_the_genome_path():
    from nasseg import genome as G
    from nasseg.build import build
    g = G.parse("v1|conv1x32s2/cg2x33s2!cat|espnet_c_decoder@1|-")
    with pytest.raises(GenomeError, match=r"stages\.1\.block1 \(33->33, stride 1\).*must be even"):
        build(g, 5)
