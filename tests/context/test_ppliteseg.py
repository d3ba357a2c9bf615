import pytest
import torch

from nasseg import registry
from nasseg.context.ppliteseg import SPPM
from nasseg.layers import resize_to


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_count_pp_liteseg_t_sppm():
    # PaddleSeg pp_liteseg.py: PPContextModule(1024, 128, 128, bin_sizes=[1, 2, 4]).
    # layers.ConvBNReLU leaves Paddle's Conv2D bias on.
    # branch: 1x1 conv 1024->128 + bias + BN(128) = 131,072 + 128 + 256 = 131,456; three branches: 394,368
    # conv_out: 3x3 conv 128->128 + bias + BN(128) = 147,456 + 128 + 256 = 147,840
    # total 394,368 + 147,840 = 542,208
    m = registry.get("sppm", kind="context").create(1024, 128)
    assert m.bins == (1, 2, 4)
    assert _params(m.stages) == 3 * (1024 * 128 + 128 + 2 * 128) == 394_368
    assert _params(m.conv_out) == 128 * 128 * 9 + 128 + 2 * 128 == 147_840
    assert _params(m) == 542_208
    assert all(s[1].conv.bias is not None for s in m.stages) and m.conv_out.conv.bias is not None


def test_branches_are_summed():
    m = SPPM(16, 8, bins=(1, 2, 4), inter_channels=12).eval()
    x = torch.randn(2, 16, 9, 11)
    with torch.no_grad():
        summed = sum(resize_to(s(x), (9, 11), "bilinear", align_corners=False) for s in m.stages)
        torch.testing.assert_close(m(x), m.conv_out(summed))
    assert m.conv_out.conv.in_channels == 12  # summed, not concatenated (3 * 12)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (33, 47)])
def test_maps_smaller_than_bins(size):
    y = SPPM(16, 8, bins=(1, 2, 4), inter_channels=12).train()(torch.randn(2, 16, *size))
    assert y.shape == (2, 8, *size) and torch.isfinite(y).all()
