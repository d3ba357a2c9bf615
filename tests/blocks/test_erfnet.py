"""ERFNet non-bottleneck-1D and the ERFNet/LEDNet downsampler, checked against official-code counts.

Reference counts (shared/reference/blocks.md §7, §11; counted on Eromera/erfnet_pytorch train/erfnet.py):
nb1d 16 = 3,200; the ERFNet encoder (19 classes) = 1,876,495 including its 2,451-param output conv, which
the full network never calls.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.blocks.erfnet import Downsampler, NonBottleneck1D
from nasseg.errors import BlockArgumentError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def erfnet_encoder() -> nn.Sequential:
    """ERFNet encoder (official ``Encoder`` minus its unused output conv): Down(3->16), Down(16->64),
    5x nb1d(64, p .03), Down(64->128), 2x nb1d(128, p .3, d = 2, 4, 8, 16)."""
    layers: list[nn.Module] = [Downsampler(3, 16), Downsampler(16, 64)]
    layers += [NonBottleneck1D(64, 64, dropout=0.03) for _ in range(5)]
    layers += [Downsampler(64, 128)]
    layers += [NonBottleneck1D(128, 128, dilation=d, dropout=0.3) for d in (2, 4, 8, 16, 2, 4, 8, 16)]
    return nn.Sequential(*layers)


# ERFNet encoder, by hand:
#   Down(3->16):    9*3*13 + 13 + 2*16      =       396
#   Down(16->64):   9*16*48 + 48 + 2*64     =     7,088
#   5 x nb1d(64):   5 * (12*64^2 + 8*64)    =   248,320
#   Down(64->128):  9*64*64 + 64 + 2*128    =    37,184
#   8 x nb1d(128):  8 * (12*128^2 + 8*128)  = 1,581,056
#                                     total = 1,874,044  (+ unused output conv 128*19 + 19 = 2,451 -> 1,876,495)
ERFNET_ENCODER = 1_874_044


def test_nb1d_count_matches_official():
    assert n_params(NonBottleneck1D(16, 16)) == 3_200  # reference §11
    for c in (16, 64, 128):  # four dense 3-tap convs with bias + two BNs: 4 (3 C^2 + C) + 4 C
        assert n_params(NonBottleneck1D(c, c, dilation=4)) == 12 * c * c + 8 * c


def test_nb1d_layer_order_and_dilation():
    m = NonBottleneck1D(8, 8, dilation=4)
    assert m.conv3x1_1.kernel_size == (3, 1) and m.conv1x3_1.kernel_size == (1, 3)
    assert m.conv3x1_2.dilation == (4, 1) and m.conv3x1_2.padding == (4, 0)
    assert m.conv1x3_2.dilation == (1, 4) and m.conv1x3_2.padding == (0, 4)
    assert all(bn.eps == 1e-3 for bn in (m.bn1, m.bn2))
    assert isinstance(m.dropout, nn.Identity) and isinstance(NonBottleneck1D(8, 8, dropout=0.3).dropout, nn.Dropout2d)


def test_nb1d_is_relu_of_identity_when_the_branch_is_zero():
    m = NonBottleneck1D(6, 6).eval()
    for p in m.parameters():
        nn.init.zeros_(p)  # every conv and BN beta zero: the branch outputs 0 (BN gamma 0)
    x = torch.randn(2, 6, 7, 9)
    assert torch.equal(m(x), torch.relu(x))


def test_nb1d_keeps_shape_at_odd_sizes():
    m = NonBottleneck1D(16, 16, dilation=8)
    assert m(torch.randn(2, 16, 13, 11)).shape == (2, 16, 13, 11)


@pytest.mark.parametrize("args,argument", [((16, 32, 1), "out_channels"), ((16, 16, 2), "stride")])
def test_nb1d_rejects_shape_change(args, argument):
    with pytest.raises(BlockArgumentError, match=argument):
        registry.get("nb1d").create(*args)


def test_downsampler_count_and_layout():
    m = Downsampler(16, 64)
    assert n_params(m) == 9 * 16 * 48 + 48 + 2 * 64 == 7_088
    assert m.conv.out_channels == 48 and m.conv.bias is not None and m.bn.eps == 1e-3
    x = torch.randn(2, 16, 32, 48)
    assert m(x).shape == (2, 64, 16, 24)


@pytest.mark.parametrize("odd_pool", ["ceil", "zero_pad"])
@pytest.mark.parametrize("size", [(33, 47), (1, 1), (2, 3)])
def test_downsampler_odd_sizes(odd_pool, size):
    m = Downsampler(3, 16, odd_pool=odd_pool)
    h, w = size
    assert m(torch.randn(2, 3, h, w)).shape == (2, 16, (h + 1) // 2, (w + 1) // 2)


def test_downsampler_variants_agree_on_even_and_differ_only_at_the_odd_edge():
    ceil, pad = Downsampler(4, 12, odd_pool="ceil").eval(), Downsampler(4, 12, odd_pool="zero_pad").eval()
    pad.load_state_dict(ceil.state_dict())
    x = torch.rand(1, 4, 8, 10) + 1.0  # positive, so pooled values are > 0 and ReLU keeps them
    assert torch.equal(ceil(x), pad(x))
    x = torch.rand(1, 4, 9, 11) + 1.0
    a, b = ceil(x), pad(x)
    # the conv half and the interior of the pooled half agree
    assert torch.equal(a[:, :8], b[:, :8]) and torch.equal(a[:, 8:, :-1, :-1], b[:, 8:, :-1, :-1])
    # LEDNet zero-pads the last row/column of the pooled half (BN of 0 in fresh eval mode is 0, ReLU 0)
    assert torch.all(b[:, 8:, -1, :] == 0) and torch.all(b[:, 8:, :, -1] == 0)
    # ceil mode pools the partial window instead
    assert torch.all(a[:, 8:, -1, :] > 0)


@pytest.mark.parametrize("args,argument", [((16, 64, 1), "stride"), ((64, 64, 2), "out_channels"),
                                           ((64, 32, 2), "out_channels")])
def test_downsampler_rejects(args, argument):
    with pytest.raises(BlockArgumentError, match=argument):
        registry.get("downsampler").create(*args)


def test_downsampler_rejects_unknown_odd_pool():
    with pytest.raises(BlockArgumentError, match="odd_pool.*'ceil', 'zero_pad'"):
        registry.get("downsampler").resolve({"odd_pool": "floor"})


def test_erfnet_encoder_count_matches_official():
    enc = erfnet_encoder()
    assert n_params(enc) == ERFNET_ENCODER
    assert n_params(enc) + (128 * 19 + 19) == 1_876_495  # official Encoder(19), unused output conv included
    with torch.no_grad():
        assert enc.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 128, 8, 12)
