import pytest
import torch

from nasseg import registry
from nasseg.context.ppm import PPM
from nasseg.errors import ConfigError


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_counts_match_pspnet():
    # hszhao/semseg model/pspnet.py: PPM(2048, 512, (1, 2, 3, 6)) has four branches of
    # 1x1 conv 2048->512 (no bias) + BN(512): 4 * (2048*512 + 2*512) = 4,198,400.
    # PSPNet.cls starts with 3x3 conv 4096->512 (no bias) + BN(512): 4096*512*9 + 2*512 = 18,875,392.
    m = registry.get("ppm", kind="context").create(2048, 512)
    assert m.bins == (1, 2, 3, 6)
    assert _params(m.features) == 4 * (2048 * 512 + 2 * 512) == 4_198_400
    assert _params(m.bottleneck) == 4096 * 512 * 9 + 2 * 512 == 18_875_392
    assert _params(m) == 23_073_792


def test_semseg_key_layout():
    keys = set(PPM(64, 32, bins=(1, 2)).state_dict())
    assert {"features.0.1.weight", "features.0.2.running_mean", "features.1.2.weight"} <= keys
    assert "features.0.1.bias" not in keys


def test_concat_includes_input_and_branches_are_in_over_bins():
    m = PPM(60, 16, bins=(1, 2, 3))
    assert m.features[0][1].out_channels == 20
    assert m.bottleneck.conv.in_channels == 60 + 3 * 20
    assert m.bottleneck.conv.kernel_size == (3, 3)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (33, 47)])
def test_maps_smaller_than_bins(size):
    m = PPM(32, 16, bins=(1, 2, 3, 6)).train()
    y = m(torch.randn(2, 32, *size))
    assert y.shape == (2, 16, *size) and torch.isfinite(y).all()


def test_too_many_bins_for_channels_is_a_config_error():
    with pytest.raises(ConfigError, match="in_channels=3 cannot be split over 4 bins"):
        PPM(3, 8, bins=(1, 2, 3, 6))
