"""Pag / Bag / Light-Bag against XuJiacong/PIDNet ``models/model_utils.py`` and ``models/pidnet.py``.

``PIDNet(m, n, planes=C)`` builds ``pag3 = pag4 = PagFM(2C, C)`` and, for m == 2 (S, M),
``dfm = Light_Bag(4C, 4C)``, else (L) ``dfm = Bag(4C, 4C)``; C = 32 (S), 64 (M, L).
"""

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.errors import BlockArgumentError


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_pidnet_s_counts():
    # PagFM(64, 32): f_x and f_y each Conv1x1 64*32 (no bias) + BN 2*32
    pag = registry.get("pag", kind="fusion").create(64, 64, 64)
    assert pag.mid_channels == 32  # 0 = low_channels // 2
    assert _params(pag) == 2 * (64 * 32 + 2 * 32) == 4_224
    assert 2 * _params(pag) == 8_448  # pag3 + pag4
    # Light_Bag(128, 128): conv_p and conv_i each Conv1x1 128*128 (no bias) + BN 2*128
    assert _params(registry.get("light_bag").create(128, 128, 128)) == 2 * (128 * 128 + 2 * 128) == 33_280


def test_pidnet_m_and_l_counts():
    assert _params(registry.get("pag").create(128, 128, 128)) == 2 * (128 * 64 + 2 * 64) == 16_640
    assert _params(registry.get("light_bag").create(256, 256, 256)) == 2 * (256 * 256 + 512) == 132_096  # M
    # Bag(256, 256) of PIDNet-L: BN(256) 2*256 -> ReLU -> Conv3x3 256*256*9 (no bias)
    assert _params(registry.get("bag").create(256, 256, 256)) == 2 * 256 + 256 * 256 * 9 == 590_336


def test_pag_with_channel_count():
    # PagFM(64, 16, with_channel=True): f_x, f_y 64*16 + 32 each; up Conv1x1 16*64 + BN 128
    m = registry.get("pag").create(64, 64, 64, mid_channels=16, with_channel=True)
    assert _params(m) == 2 * (64 * 16 + 32) + 16 * 64 + 128 == 3_264


def test_pag_blends_with_one_similarity_map():
    m = registry.get("pag").create(6, 6, 6, mid_channels=3).eval()
    x, y = torch.randn(2, 6, 9, 13), torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        up = lambda t: F.interpolate(t, size=(9, 13), mode="bilinear", align_corners=False)  # noqa: E731
        s = torch.sigmoid((m.f_x(x) * up(m.f_y(y))).sum(1, keepdim=True))
        torch.testing.assert_close(m(x, y), (1 - s) * x + s * up(y))


def test_pag_after_relu_leaves_inputs_alone():
    m = registry.get("pag").create(4, 4, 4, after_relu=True).eval()
    x, y = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 3, 3)
    x0, y0 = x.clone(), y.clone()
    m(x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_pag_projects_differing_widths_and_equals_official_when_equal():
    m = registry.get("pag").create(32, 48, 16)
    # compress 48->32 (1x1 + BN) and project 32->16 (1x1 + BN) around the official PagFM(32, 16)
    assert _params(m) == (48 * 32 + 64) + 2 * (32 * 16 + 2 * 16) + (32 * 16 + 32)
    y = m(torch.randn(2, 32, 9, 13), torch.randn(2, 48, 5, 7))
    assert y.shape == (2, 16, 9, 13)
    same = registry.get("pag").create(32, 32, 32)
    assert isinstance(same.compress, torch.nn.Identity) and isinstance(same.project, torch.nn.Identity)


@pytest.mark.parametrize("name,channels,needle", [
    ("bag", (32, 16, 32), "high_channels"),
    ("light_bag", (32, 16, 32), "high_channels"),
])
def test_width_mismatch_raises(name, channels, needle):
    with pytest.raises(BlockArgumentError, match=needle):
        registry.get(name).create(*channels)


@pytest.mark.parametrize("name", ["bag", "light_bag"])
def test_three_inputs_and_guide_width(name):
    m = registry.get(name).create(8, 8, 5)
    assert m.num_inputs == 3 and m.guide_channels == 8 and m.out_channels == 5
    y = m(torch.randn(2, 8, 9, 13), torch.randn(2, 8, 5, 7), torch.randn(2, 8, 9, 13))
    assert y.shape == (2, 5, 9, 13)


@pytest.mark.parametrize("edge", [1e4, -1e4])
def test_boundary_attention_picks_p_at_edges_and_i_elsewhere(edge):
    p, i = torch.randn(2, 8, 9, 13), torch.randn(2, 8, 9, 13)
    d = torch.full((2, 8, 9, 13), edge)
    bag = registry.get("bag").create(8, 8, 5).eval()
    light = registry.get("light_bag").create(8, 8, 5).eval()
    with torch.no_grad():
        torch.testing.assert_close(bag(p, i, d), bag.conv(p if edge > 0 else i))
        if edge > 0:  # s = 1: conv_p(p) + conv_i(i + p)
            expected = light.conv_p(p) + light.conv_i(i + p)
        else:  # s = 0: conv_p(i + p) + conv_i(i)
            expected = light.conv_p(i + p) + light.conv_i(i)
        torch.testing.assert_close(light(p, i, d), expected)
