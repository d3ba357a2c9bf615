import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.context.aspp import ASPP


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_count_matches_torchvision():
    # torchvision deeplabv3.py ASPP(2048, [12, 24, 36], 256), every conv bias-free + BN(256):
    # 1x1 branch 2048*256 + 512 = 524,800; three 3x3 branches 3 * (2048*256*9 + 512) = 14,157,312;
    # pooling branch 524,800; project 5*256*256 + 512 = 328,192; total 15,535,104
    m = registry.get("aspp", kind="context").create(2048, 256, rates=(12, 24, 36), dropout=0.5)
    assert _params(m) == 524_800 + 14_157_312 + 524_800 + 328_192 == 15_535_104
    assert isinstance(m.dropout, nn.Dropout) and m.dropout.p == 0.5
    assert [c.conv.dilation for c in m.convs[1:4]] == [(12, 12), (24, 24), (36, 36)]
    assert [c.conv.padding for c in m.convs[1:4]] == [(12, 12), (24, 24), (36, 36)]


def test_defaults_and_no_image_pooling():
    e = registry.get("aspp", kind="context")
    assert e.defaults() == {"rates": (6, 12, 18), "image_pooling": True, "inter_channels": 256,
                            "dropout": 0.1}
    with_pool = e.create(64, 32, inter_channels=16)
    without = e.create(64, 32, inter_channels=16, image_pooling=False)
    assert len(with_pool.convs) == 5 and len(without.convs) == 4
    # drops the pooling branch (64*16 + 2*16) and one input group of the projection (16*32)
    assert _params(with_pool) - _params(without) == 64 * 16 + 2 * 16 + 16 * 32
    assert isinstance(e.create(8, 8, dropout=0.0).dropout, nn.Identity)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (33, 47)])
def test_maps_smaller_than_dilation(size):
    y = ASPP(16, 8, rates=(6, 12, 18), image_pooling=True, inter_channels=8, dropout=0.1).train()(
        torch.randn(2, 16, *size))
    assert y.shape == (2, 8, *size) and torch.isfinite(y).all()
