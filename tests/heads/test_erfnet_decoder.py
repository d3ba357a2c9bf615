"""ERFNet decoder, and the whole ERFNet rebuilt from nasseg blocks against the official count.

Official (Eromera/erfnet_pytorch train/erfnet.py, ``Net(19)``, counted from the code): 2,066,642 parameters =
encoder 1,876,495 (including an output conv 128 -> 19, 2,451, that the full network never calls) + decoder
190,147; so 2,064,191 at inference (published: 2.06 M).  ``Net(20)``: 2,066,836 / 2,064,256 at inference.
fvcore conv (incl. transposed) + linear MACs at 512x1024 (counted outside the test suite), 19 classes:
26.6043 G = encoder 21.5125 G + decoder 5.0919 G (20 classes: 26.6127 G).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError
from nasseg.heads.erfnet import ERFNetDecoder
from tests.blocks.test_erfnet import ERFNET_ENCODER, erfnet_encoder

# ERFNet decoder, 128 in, 19 classes, by hand:
#   Up(128->64):   ConvT 9*128*64 + 64, BN 2*64  =  73,920
#   2 x nb1d(64):  2 * (12*64^2 + 8*64)           =  99,328
#   Up(64->16):    ConvT 9*64*16 + 16, BN 2*16    =   9,264
#   2 x nb1d(16):  2 * 3,200                      =   6,400
#   ConvT 2x2:     4*16*19 + 19                   =   1,235
#                                           total = 190,147
ERFNET_DECODER_19 = 190_147


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_decoder_count_matches_official():
    assert 73_920 + 99_328 + 9_264 + 6_400 + 1_235 == ERFNET_DECODER_19
    assert n_params(ERFNetDecoder((128,), 19)) == ERFNET_DECODER_19
    assert n_params(ERFNetDecoder((128,), 20)) == ERFNET_DECODER_19 + 4 * 16 + 1  # 190,212


def test_whole_erfnet_matches_official():
    total = ERFNET_ENCODER + ERFNET_DECODER_19
    assert n_params(erfnet_encoder()) + n_params(ERFNetDecoder((128,), 19)) == total == 2_064_191
    assert total + (128 * 19 + 19) == 2_066_642  # official Net(19), unused encoder output conv included
    assert round(total / 1e6, 2) == 2.06  # published 2.06 M


def test_whole_erfnet_forward_is_at_input_size():
    enc, dec = erfnet_encoder().eval(), ERFNetDecoder((128,), 19).eval()
    with torch.no_grad():
        y = dec([enc(torch.randn(1, 3, 64, 96))])
    assert y.shape == (1, 19, 64, 96)


def test_decoder_layout_follows_the_official_state_dict():
    keys = set(ERFNetDecoder((128,), 19).state_dict())
    assert {"layers.0.conv.weight", "layers.0.bn.running_var", "layers.1.conv3x1_1.weight",
            "layers.3.conv.weight", "layers.5.conv1x3_2.bias", "output_conv.weight"} <= keys
    assert not any(k.startswith("layers.6.") for k in keys)


@pytest.mark.parametrize("widths,num_blocks,scale", [((64, 16), 2, 8), ((32,), 1, 4), ((32, 16, 8), 0, 16)])
def test_decoder_upsamples_by_two_per_width_and_once_more(widths, num_blocks, scale):
    dec = ERFNetDecoder((48,), 5, widths=widths, num_blocks=num_blocks)
    y = dec([torch.randn(2, 48, 5, 7)])
    assert y.shape == (2, 5, 5 * scale, 7 * scale) and dec.emits_logits and dec.out_channels == 5
    assert len(dec.layers) == len(widths) * (1 + num_blocks)


def test_decoder_takes_one_tap():
    with pytest.raises(BlockArgumentError, match="in_channels"):
        registry.get("erfnet_decoder", "decoder").create((64, 128), 19)
