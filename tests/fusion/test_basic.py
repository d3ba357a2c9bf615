"""AddFusion / ConcatFusion, and checks every fusion of this package shares."""

import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.errors import BlockArgumentError

FUSIONS = ["add", "arm", "bag", "cff", "concat", "fam", "ffm", "light_bag", "pag", "uafm"]


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _inputs(module, low_c, high_c, low_size, high_size):
    low, high = torch.randn(2, low_c, *low_size), torch.randn(2, high_c, *high_size)
    if getattr(module, "num_inputs", 2) == 3:
        return low, high, torch.randn(2, module.guide_channels, *low_size)
    return low, high


def test_all_fusions_are_registered():
    assert set(FUSIONS) <= set(registry.names("fusion"))


@pytest.mark.parametrize("name", FUSIONS)
@pytest.mark.parametrize("low_size,high_size", [((9, 13), (9, 13)), ((9, 13), (5, 7)), ((9, 13), (3, 4)),
                                                ((8, 8), (1, 1))])
def test_high_resized_to_low(name, low_size, high_size):
    entry = registry.get(name, kind="fusion")
    c = (16, 16, 16) if name in ("pag", "bag", "light_bag") else (8, 12, 16)
    m = entry.create(*c).train()
    y = m(*_inputs(m, c[0], c[1], low_size, high_size))
    assert y.shape == (2, m.out_channels, *low_size) and m.out_channels == c[2]
    assert torch.isfinite(y).all()


def test_add_with_equal_widths_has_no_parameters():
    m = registry.get("add").create(6, 6, 6)
    assert _params(m) == 0
    low, high = torch.randn(2, 6, 9, 13), torch.randn(2, 6, 5, 7)
    up = F.interpolate(high, size=(9, 13), mode="bilinear", align_corners=False)
    torch.testing.assert_close(m(low, high), low + up)


def test_add_projects_only_the_mismatched_side_before_upsampling():
    m = registry.get("add").create(6, 4, 6, upsample="nearest").eval()
    assert isinstance(m.proj_low, torch.nn.Identity)
    assert _params(m) == 4 * 6 + 2 * 6  # ConvBN 1x1 4 -> 6, no bias
    low, high = torch.randn(2, 6, 9, 13), torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(m(low, high), low + F.interpolate(m.proj_high(high), size=(9, 13)))
    assert _params(registry.get("add").create(3, 4, 6)) == (3 + 4) * 6 + 2 * 2 * 6


@pytest.mark.parametrize("k", [1, 3])
def test_concat_count_and_order(k):
    m = registry.get("concat").create(3, 5, 7, kernel_size=k).eval()
    assert _params(m) == 8 * 7 * k * k + 2 * 7  # ConvBNReLU, no bias
    low, high = torch.randn(2, 3, 9, 13), torch.randn(2, 5, 5, 7)
    with torch.no_grad():
        up = F.interpolate(high, size=(9, 13), mode="bilinear", align_corners=False)
        torch.testing.assert_close(m(low, high), m.conv(torch.cat([low, up], 1)))


def test_concat_kernel_size_is_checked():
    with pytest.raises(BlockArgumentError, match="kernel_size"):
        registry.get("concat").resolve({"kernel_size": 5})
