"""ESP (ESPNet) and EESP (ESPNetv2) against the official code.

Parameter counts were taken by instantiating the official classes (torch 2.13, CPU):
sacmehta/ESPNet ``train/Model.py`` at b335e48 (``DilatedParllelResidualBlockB``, ``DownSamplerB``) and
sacmehta/EdgeNets ``nn_layers/eesp.py`` at 2b232d3 (``EESP``, ``DownSampler``).  With the official weights
copied over, both blocks gave outputs identical to the official modules (checked once, outside the suite,
since the official code is not vendored).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.blocks.espnet import ESP, eesp_dilations
from nasseg.errors import ConfigError


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def esp(cin, cout, stride=1, **kw):
    return registry.get("esp", "block").create(cin, cout, stride, **kw)


def eesp(cin, cout, stride=1, **kw):
    return registry.get("eesp", "block").create(cin, cout, stride, **kw)


# ---------------------------------------------------------------------------------------------- ESP


@pytest.mark.parametrize("cin,cout,stride,official", [
    (64, 64, 1, 7_872),      # DilatedParllelResidualBlockB(64, 64); also reference §11
    (128, 128, 1, 32_384),   # DilatedParllelResidualBlockB(128, 128)
    (19, 64, 2, 9_156),      # DownSamplerB(19, 64), ESPNet level2_0
    (131, 128, 2, 58_659),   # DownSamplerB(131, 128), ESPNet level3_0
    (40, 20, 1, 940),        # DilatedParllelResidualBlockB(40, 20, add=False), ESPNet decoder, 20 classes
])
def test_esp_params_match_official(cin, cout, stride, official):
    assert n_params(esp(cin, cout, stride)) == official


def test_esp_branch_widths_and_dilations():
    m = esp(64, 64)  # d = 12, the dilation-1 branch takes 64 - 4 * 12 = 16
    assert [b.out_channels for b in m.branches] == [16, 12, 12, 12, 12]
    assert [b.dilation[0] for b in m.branches] == [1, 2, 4, 8, 16]
    assert all(b.bias is None for b in m.branches) and m.reduce.bias is None
    assert m.reduce.kernel_size == (1, 1)
    m3 = esp(64, 66, branches=3)  # d = 22 each
    assert [b.out_channels for b in m3.branches] == [22, 22, 22]
    assert [b.dilation[0] for b in m3.branches] == [1, 2, 4]
    down = esp(19, 64, 2)
    assert down.reduce.kernel_size == (3, 3) and down.reduce.stride == (2, 2)
    assert m.br.bn.eps == 1e-3 and isinstance(m.br.act, torch.nn.PReLU) and m.br.act.num_parameters == 64


def _esp_reference(m: ESP, x: torch.Tensor, hff: bool, residual: bool) -> torch.Tensor:
    """The ESP forward written out for K = 5, as in the official DilatedParllelResidualBlockB."""
    r = m.reduce(x)
    d1, d2, d4, d8, d16 = (b(r) for b in m.branches)
    if hff:
        a1 = d2
        a2 = a1 + d4
        a3 = a2 + d8
        a4 = a3 + d16
        y = torch.cat([d1, a1, a2, a3, a4], 1)
    else:
        y = torch.cat([d1, d2, d4, d8, d16], 1)
    if residual:
        y = y + x
    return m.br.act(m.br.bn(y))


@pytest.mark.parametrize("hff", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_esp_forward_follows_the_paper(hff, residual):
    m = esp(40, 40, hff=hff, residual=residual).eval()
    x = torch.randn(2, 40, 20, 24)
    with torch.no_grad():
        assert torch.allclose(m(x), _esp_reference(m, x, hff, residual), atol=1e-6)


def test_esp_residual_only_when_shapes_match():
    assert esp(64, 64).use_residual
    assert not esp(64, 64, residual=False).use_residual
    assert not esp(32, 64).use_residual           # identity only: no projection shortcut
    assert not esp(64, 64, 2).use_residual        # DownSamplerB has none
    m = esp(32, 64).eval()
    x = torch.randn(1, 32, 16, 16)
    with torch.no_grad():
        assert torch.allclose(m(x), _esp_reference(m, x, True, False), atol=1e-6)


@pytest.mark.parametrize("size,expected", [((32, 48), (16, 24)), ((33, 47), (17, 24))])
def test_esp_stride_two_halves_rounding_up(size, expected):
    y = esp(19, 64, 2)(torch.randn(1, 19, *size))
    assert tuple(y.shape) == (1, 64, *expected)


def test_esp_rejects_impossible_configurations():
    with pytest.raises(ConfigError, match="out_channels >= branches"):
        esp(8, 4, branches=5)
    with pytest.raises(ConfigError, match="stride"):
        esp(8, 16, 3)
    with pytest.raises(ConfigError, match="branches"):
        esp(8, 16, branches=7)


# --------------------------------------------------------------------------------------------- EESP


@pytest.mark.parametrize("branches,r_lim,expected", [
    (4, 13, (1, 2, 3, 4)),
    (4, 9, (1, 2, 3, 4)),
    (4, 7, (1, 1, 2, 3)),   # RF 9 falls back to 3
    (4, 5, (1, 1, 1, 2)),
    (4, 3, (1, 1, 1, 1)),
    (2, 7, (1, 2)),
])
def test_eesp_dilations_as_edgenets(branches, r_lim, expected):
    assert eesp_dilations(branches, r_lim) == expected


@pytest.mark.parametrize("cin,cout,r_lim,official", [
    (128, 128, 9, 7_136),    # EESP(128, 128, k=4, r_lim=9): ESPNetv2 s=1.0 level3
    (128, 128, 7, 7_136),    # r_lim moves dilations only
    (256, 256, 7, 24_512),   # s=1.0 level4
    (512, 512, 5, 89_984),   # s=1.0 level5
    (64, 64, 7, 2_288),
])
def test_eesp_params_match_official(cin, cout, r_lim, official):
    assert n_params(eesp(cin, cout, r_lim=r_lim)) == official


# Official DownSampler(nin, nout, k=4, r_lim, reinf=False) minus the PReLU(nout - nin) that its strided EESP
# builds but never calls.  reinf=True adds the input-image reinforcement, left out here: CBR 3x3 (3->3) = 90,
# CB 1x1 (3->nout) = 5 * nout.
@pytest.mark.parametrize("cin,cout,r_lim,official_no_reinf,official_reinf", [
    (32, 64, 13, 888, 1_298),         # s=1.0 level2_0
    (64, 128, 11, 2_416, 3_146),      # s=1.0 level3_0
    (128, 256, 9, 7_392, 8_762),      # s=1.0 level4_0
    (32, 128, 13, 4_136, 4_866),      # s=2.0 level2_0
    (512, 1024, 7, 91_008, 96_218),   # s=2.0 level5_0
])
def test_eesp_stride_two_matches_official_downsampler(cin, cout, r_lim, official_no_reinf, official_reinf):
    unused_prelu = cout - cin
    reinforcement = 90 + 5 * cout
    assert official_reinf - official_no_reinf == reinforcement
    assert n_params(eesp(cin, cout, 2, r_lim=r_lim)) == official_no_reinf - unused_prelu


def test_eesp_structure():
    m = eesp(128, 128)
    assert m.proj_1x1.conv.groups == 4 and m.proj_1x1.conv.out_channels == 32
    assert isinstance(m.proj_1x1.act, torch.nn.PReLU)
    assert all(c.groups == 32 and c.bias is None for c in m.spp_dw)
    assert [c.dilation[0] for c in m.spp_dw] == [1, 1, 2, 3]
    assert m.conv_1x1_exp.conv.groups == 4 and isinstance(m.conv_1x1_exp.act, torch.nn.Identity)
    assert m.use_residual and not eesp(64, 128).use_residual
    down = eesp(64, 128, 2)
    assert down.proj_1x1.conv.out_channels == 16 and all(c.stride == (2, 2) for c in down.spp_dw)


def test_eesp_forward_follows_the_paper():
    m = eesp(64, 64, r_lim=9).eval()
    x = torch.randn(2, 64, 15, 21)
    with torch.no_grad():
        r = m.proj_1x1(x)
        b = [c(r) for c in m.spp_dw]
        o1 = b[0]
        o2 = b[1] + o1
        o3 = b[2] + o2
        o4 = b[3] + o3
        y = m.conv_1x1_exp(m.br_after_cat(torch.cat([o1, o2, o3, o4], 1)))
        assert torch.allclose(m(x), m.act(y + x), atol=1e-6)


def test_eesp_stride_two_concats_avg_pooled_input_first():
    m = eesp(32, 64, 2).eval()
    x = torch.randn(2, 32, 17, 23)
    with torch.no_grad():
        y = m(x)
        pooled = m.act(torch.cat([F.avg_pool2d(x, 3, 2, 1), torch.zeros(2, 32, 9, 12)], 1))[:, :32]
    assert tuple(y.shape) == (2, 64, 9, 12)
    assert torch.allclose(y[:, :32], pooled, atol=1e-6)


def test_eesp_rejects_impossible_configurations():
    with pytest.raises(ConfigError, match="multiples of branches"):
        eesp(64, 64, 2)             # no channels left for the EESP path
    with pytest.raises(ConfigError, match="multiples of branches"):
        eesp(32, 66)                # 66 does not split into 4 equal branches
    with pytest.raises(ConfigError, match="multiples of branches"):
        eesp(30, 64)                # group 1x1 conv with 4 groups
    with pytest.raises(ConfigError, match="stride"):
        eesp(32, 64, 4)
