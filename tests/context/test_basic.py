import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.context.basic import GlobalContext, NoContext


def test_none_is_identity_and_keeps_in_channels():
    m = registry.get("none", kind="context").create(24, 96)
    assert isinstance(m, NoContext)
    assert m.out_channels == 24  # out_channels argument ignored: the tensor keeps its width
    x = torch.randn(2, 24, 7, 5)
    assert m(x) is x
    assert not list(m.parameters())


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (33, 47)])
def test_gap_broadcasts_one_vector_per_image(size):
    m = registry.get("gap", kind="context").create(16, 8).eval()
    assert isinstance(m, GlobalContext) and m.out_channels == 8
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        y = m(x)
        expected = m.conv(F.adaptive_avg_pool2d(x, 1))
    assert y.shape == (2, 8, *size)
    torch.testing.assert_close(y, expected.expand_as(y))


def test_gap_counts_stdc_seg_conv_avg():
    # STDC-Seg ContextPath.conv_avg = ConvBNReLU(1024, 128, 1x1, no bias): 1024*128 weights + BN 2*128
    m = GlobalContext(1024, 128)
    assert sum(p.numel() for p in m.parameters()) == 1024 * 128 + 2 * 128 == 131_328
    assert m.conv.conv.bias is None
