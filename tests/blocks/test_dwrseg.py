"""DWRSeg SIR and DWR.  No official code exists, so counts are checked against formulas written out here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.blocks.dwrseg import DWR, SIR
from nasseg.errors import BlockArgumentError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------------------------------------- SIR
def test_sir_count_by_hand():
    # SIR(32 -> 32, lambda 3): E = 96
    #   3x3 expand (no bias) 9*32*96 = 27,648; BN 2*96 = 192; 1x1 project 96*32 = 3,072; BN 2*32 = 64
    assert n_params(SIR(32, 32)) == 27_648 + 192 + 3_072 + 64 == 30_976
    # SIR(32 -> 64, stride 2, lambda 3): 9*32*96 + 2*96 + 96*64 + 2*64 = 27,648 + 192 + 6,144 + 128
    assert n_params(SIR(32, 64, 2)) == 34_112
    # general: 9 in E + 2 E + E out + 2 out with E = lambda * in
    for cin, cout, lam in ((16, 24, 2), (64, 64, 4)):
        e = lam * cin
        assert n_params(SIR(cin, cout, expansion=lam)) == 9 * cin * e + 2 * e + e * cout + 2 * cout


def test_sir_layout():
    m = SIR(16, 16, expansion=3)
    assert m.expand.conv.kernel_size == (3, 3) and m.expand.conv.out_channels == 48
    assert m.project.conv.kernel_size == (1, 1) and isinstance(m.project.bn, nn.BatchNorm2d)
    assert isinstance(m.project.act, nn.Identity)


def test_sir_residual_only_when_shape_is_kept():
    assert SIR(16, 16).use_residual
    assert not SIR(16, 16, 2).use_residual and not SIR(16, 24).use_residual
    m = SIR(8, 8).eval()
    nn.init.zeros_(m.project.bn.weight)  # branch outputs BN beta = 0: the block is the identity
    x = torch.randn(2, 8, 5, 7)
    assert torch.equal(m(x), x)


@pytest.mark.parametrize("size", [(32, 48), (33, 47)])
def test_sir_stride2_shapes(size):
    h, w = size
    assert SIR(16, 32, 2)(torch.randn(2, 16, h, w)).shape == (2, 32, (h + 1) // 2, (w + 1) // 2)


def test_sir_rejects_stride_4():
    with pytest.raises(BlockArgumentError, match="stride"):
        registry.get("sir").create(16, 16, 4)


# ---------------------------------------------------------------------------------------------- DWR
def test_dwr_count_by_hand():
    # DWR(64), beta 0.5 -> R = 32, alpha 2:1:1 -> branches 16, 8, 8
    #   RR 3x3 (no bias) 9*64*32 = 18,432; BN 2*32 = 64
    #   depthwise 3x3 (no bias) 9*(16+8+8) = 288; BN 2*32 = 64
    #   point-wise 1x1 with bias 32*64 + 64 = 2,112
    assert n_params(DWR(64, 64)) == 18_432 + 64 + 288 + 64 + 2_112 == 20_960
    # general: 10 C R + 13 R + C
    for c, beta, ratios in ((48, 0.5, (1, 1, 1)), (32, 1.0, (3, 1)), (128, 0.25, (2, 1, 1))):
        r = int(c * beta)
        m = DWR(c, c, dilations=(1, 3, 5)[: len(ratios)], ratios=ratios, rr_ratio=beta)
        assert n_params(m) == 10 * c * r + 13 * r + c


def test_dwr_split_is_by_ratio_and_branches_are_depthwise_dilated():
    m = DWR(64, 64, dilations=(1, 3, 5), ratios=(2, 1, 1), rr_ratio=0.5)
    assert m.split_sizes == [16, 8, 8]
    for branch, c, d in zip(m.branches, (16, 8, 8), (1, 3, 5)):
        conv = branch.conv
        assert conv.in_channels == conv.out_channels == conv.groups == c
        assert conv.dilation == (d, d) and conv.padding == (d, d)
        assert isinstance(branch.act, nn.Identity)  # SR: BN, no ReLU
    assert m.rr.conv.kernel_size == (3, 3) and m.rr.conv.out_channels == 32 and not isinstance(m.rr.act, nn.Identity)
    assert m.pointwise.kernel_size == (1, 1) and m.pointwise.bias is not None  # no BN after the point-wise conv


def test_dwr_each_rr_channel_feeds_exactly_one_branch():
    m = DWR(16, 16, dilations=(1, 3), ratios=(1, 1), rr_ratio=0.5).eval()
    seen = []
    for b in m.branches:
        b.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[1]))
    m(torch.randn(1, 16, 9, 9))
    assert seen == [4, 4]  # the 8 RR channels are split, not shared


def test_dwr_is_residual():
    m = DWR(16, 16).eval()
    nn.init.zeros_(m.pointwise.weight)
    nn.init.zeros_(m.pointwise.bias)
    x = torch.randn(2, 16, 11, 13)
    assert torch.equal(m(x), x)


@pytest.mark.parametrize("args,kw,argument", [
    ((64, 64, 2), {}, "stride"),
    ((64, 32, 1), {}, "out_channels"),
    ((64, 64, 1), {"ratios": (2, 1)}, "ratios"),              # one ratio per dilation
    ((36, 36, 1), {}, "ratios"),                              # R = 18 does not split 2:1:1
    ((30, 30, 1), {"rr_ratio": 0.25}, "rr_ratio"),            # 7.5 channels
])
def test_dwr_rejects(args, kw, argument):
    with pytest.raises(BlockArgumentError, match=argument):
        registry.get("dwr").create(*args, **kw)


@pytest.mark.parametrize("size", [(32, 48), (33, 47)])
def test_dwr_keeps_shape(size):
    assert DWR(32, 32, dilations=(1, 5, 9))(torch.randn(2, 32, *size)).shape == (2, 32, *size)
