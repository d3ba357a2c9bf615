"""LEDNet SS-nbt and the LEDNet encoder, checked against counts from the official code.

Reference counts (shared/reference/blocks.md §6.4, §11; counted on xiaoyufenfei/LEDNet train/lednet.py):
SS-nbt 32 = 6,400; the LEDNet encoder (19 classes) = 913,887 including its 2,451-param output conv, which
the full network never calls.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.blocks.erfnet import Downsampler
from nasseg.blocks.lednet import SSnbt
from nasseg.errors import BlockArgumentError
from nasseg.layers import channel_shuffle

LEDNET_DILATIONS = (1, 2, 5, 9, 2, 5, 9, 17)

# LEDNet encoder, by hand (SS-nbt C = 6 C^2 + 8 C; Down(in->out) = 9 in (out-in) + (out-in) + 2 out):
#   Down(3->32):      9*3*29 + 29 + 64      =     876
#   3 x SS-nbt(32):   3 * 6,400             =  19,200
#   Down(32->64):     9*32*32 + 32 + 128    =   9,376
#   2 x SS-nbt(64):   2 * (6*64^2 + 8*64)   =  50,176
#   Down(64->128):    9*64*64 + 64 + 256    =  37,184
#   8 x SS-nbt(128):  8 * (6*128^2 + 8*128) = 794,624
#                                     total = 911,436  (+ unused output conv 128*19 + 19 = 2,451 -> 913,887)
LEDNET_ENCODER = 911_436


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def lednet_encoder() -> nn.Sequential:
    """LEDNet encoder (official ``Encoder`` minus its unused output conv), LEDNet's zero-padding downsampler."""
    def down(i: int, o: int) -> Downsampler:
        return Downsampler(i, o, odd_pool="zero_pad")

    layers: list[nn.Module] = [down(3, 32)] + [SSnbt(32, 32, dropout=0.03) for _ in range(3)]
    layers += [down(32, 64)] + [SSnbt(64, 64, dropout=0.03) for _ in range(2)]
    layers += [down(64, 128)] + [SSnbt(128, 128, dilation=d, dropout=0.3) for d in LEDNET_DILATIONS]
    return nn.Sequential(*layers)


def test_ssnbt_count_matches_official():
    assert n_params(SSnbt(32, 32)) == 6_400  # reference §11
    for c in (32, 64, 128):  # per half h = C/2: 4 (3 h^2 + h) + 4 h, two halves -> 6 C^2 + 8 C
        assert n_params(SSnbt(c, c, dilation=5)) == 6 * c * c + 8 * c


def test_ssnbt_right_half_is_mirrored_and_dilated():
    m = SSnbt(8, 8, dilation=9)
    order: list[str] = []
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d):
            mod.register_forward_hook(lambda *_, name=name: order.append(name))
    m(torch.randn(1, 8, 12, 12))
    assert order == ["conv3x1_1_l", "conv1x3_1_l", "conv3x1_2_l", "conv1x3_2_l",
                     "conv1x3_1_r", "conv3x1_1_r", "conv1x3_2_r", "conv3x1_2_r"]
    for side in "lr":
        assert getattr(m, f"conv3x1_2_{side}").dilation == (9, 1)
        assert getattr(m, f"conv1x3_2_{side}").dilation == (1, 9)
        assert getattr(m, f"conv3x1_1_{side}").groups == 1  # dense, not depthwise, despite the "dw" comments
    assert all(mod.eps == 1e-3 for mod in m.modules() if isinstance(mod, nn.BatchNorm2d))


def test_ssnbt_residual_relu_then_shuffle():
    m = SSnbt(6, 6).eval()
    for p in m.parameters():
        nn.init.zeros_(p)  # both branches output 0: the block is shuffle(relu(x))
    x = torch.randn(2, 6, 5, 7)
    y = m(x)
    assert torch.equal(y, channel_shuffle(torch.relu(x), 2))
    # shuffle with 2 groups interleaves the halves: left channel 0, right channel 0, left channel 1 ...
    assert torch.equal(y[:, 1], torch.relu(x[:, 3])) and torch.equal(y[:, 2], torch.relu(x[:, 1]))


def test_ssnbt_dropout_is_identity_when_zero():
    assert isinstance(SSnbt(8, 8).dropout, nn.Identity)
    assert isinstance(SSnbt(8, 8, dropout=0.3).dropout, nn.Dropout2d)


@pytest.mark.parametrize("args,argument", [((32, 32, 2), "stride"), ((32, 64, 1), "out_channels"),
                                           ((31, 31, 1), "in_channels")])
def test_ssnbt_rejects(args, argument):
    with pytest.raises(BlockArgumentError, match=argument):
        registry.get("ssnbt").create(*args)


def test_ssnbt_keeps_shape_at_odd_sizes():
    assert SSnbt(16, 16, dilation=17)(torch.randn(2, 16, 9, 13)).shape == (2, 16, 9, 13)


def test_lednet_encoder_count_matches_official():
    enc = lednet_encoder()
    assert n_params(enc) == LEDNET_ENCODER
    assert n_params(enc) + (128 * 19 + 19) == 913_887  # official Encoder(19), unused output conv included


@pytest.mark.parametrize("size,out", [((64, 128), (8, 16)), ((97, 131), (13, 17))])
def test_lednet_encoder_runs_at_odd_sizes(size, out):
    with torch.no_grad():
        y = lednet_encoder().eval()(torch.randn(1, 3, *size))
    assert y.shape == (1, 128, *out)
