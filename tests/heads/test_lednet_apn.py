"""LEDNet APN decoder, and the whole LEDNet rebuilt from nasseg blocks against the official count.

Official (xiaoyufenfei/LEDNet train/lednet.py, ``Net(19)``): 925,534 parameters = encoder 913,887 (including
an output conv 128 -> 19, 2,451, that the full network never calls) + APN 11,647.  The official APN has 20
output channels whatever ``num_classes`` is; nasseg's has ``num_classes``, so 11,385 for 19 classes.
fvcore conv+linear MACs at 512x1024 (counted outside the test suite): 11.2095 G official (20-channel APN);
11.2085 G for nasseg's 19-class LEDNet = encoder 11.1756 G + APN 0.0329 G.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError
from nasseg.heads.lednet import APN
from tests.blocks.test_lednet import LEDNET_ENCODER, lednet_encoder


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def apn_params(c_in: int, k: int) -> int:
    """APN by hand; every unit is Conv (bias) + BN (2 per channel)."""
    branch1 = c_in * k + k + 2 * k           # GAP -> 1x1 C -> k
    mid = c_in * k + k + 2 * k               # 1x1 C -> k
    down1 = 7 * 7 * c_in + 1 + 2             # 7x7 s2 C -> 1
    down2 = 5 * 5 + 1 + 2                    # 5x5 s2 1 -> 1
    down3 = 2 * (3 * 3 + 1 + 2)              # 3x3 s2 1 -> 1, 3x3 1 -> 1
    conv2 = 5 * 5 + 1 + 2                    # lateral 5x5
    conv1 = 7 * 7 + 1 + 2                    # lateral 7x7
    return branch1 + mid + down1 + down2 + down3 + conv2 + conv1


def test_apn_count_matches_official():
    assert apn_params(128, 20) == 262 * 20 + 6_407 == 11_647  # reference §6.4 (official 20-channel APN)
    assert n_params(APN((128,), 20)) == 11_647
    assert n_params(APN((128,), 19)) == apn_params(128, 19) == 11_385


def test_whole_lednet_matches_official():
    enc, dec = lednet_encoder(), APN((128,), 19)
    assert n_params(enc) == LEDNET_ENCODER == 911_436
    assert n_params(enc) + n_params(dec) == 922_821  # nasseg LEDNet, 19 classes
    # the official Net(19): + its unused encoder output conv (128*19 + 19) and its 20-channel APN
    assert n_params(enc) + (128 * 19 + 19) + n_params(APN((128,), 20)) == 925_534
    # at inference the official network uses 911,436 + 11,647 = 923,083, which nasseg gives for 20 classes
    assert n_params(enc) + n_params(APN((128,), 20)) == 923_083


def test_whole_lednet_forward():
    enc, dec = lednet_encoder().eval(), APN((128,), 19).eval()
    with torch.no_grad():
        y = dec([enc(torch.randn(1, 3, 64, 128))])
    assert y.shape == (1, 19, 8, 16)  # logits at the tap's size; the network resizes to the input


@pytest.mark.parametrize("size", [(8, 16), (13, 17), (1, 1), (3, 5)])
def test_apn_keeps_the_tap_size(size):
    apn = APN((32,), 5)
    y = apn([torch.randn(2, 32, *size)])
    assert y.shape == (2, 5, *size) and apn.emits_logits and apn.out_channels == 5


def test_apn_with_zero_attention_leaves_the_global_branch():
    apn = APN((16,), 3).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        nn.init.zeros_(apn.conv1.conv.weight)
        apn.conv1.conv.bias.fill_(-10.0)  # 7x7 lateral ReLU'd to 0, the rest of the pyramid too:
        apn.conv2.conv.bias.fill_(-10.0)
        nn.init.zeros_(apn.conv2.conv.weight)
        apn.down3[1].conv.bias.fill_(-10.0)
        nn.init.zeros_(apn.down3[1].conv.weight)
        y = apn([x])
        glob = apn.branch1(x).expand_as(y)
    assert torch.allclose(y, glob)  # zero attention: only the global branch is left


def test_apn_takes_one_tap():
    with pytest.raises(BlockArgumentError, match="in_channels"):
        registry.get("apn", "decoder").create((64, 128), 19)
