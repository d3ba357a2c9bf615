"""DWRSeg FCN-like decoder.  No official code exists, so the count is checked against a formula written out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError
from nasseg.heads.dwrseg import DWRSegDecoder


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_count_by_hand():
    # taps (64, 128, 256) -> concat 448; fuse 1x1 (no bias) 448*128 = 57,344 + BN 256; classifier 128*19 + 19
    assert n_params(DWRSegDecoder((64, 128, 256), 19)) == 57_344 + 256 + 2_451 == 60_051
    # 3x3 fuse, 32 wide: 9*448*32 = 129,024 + BN 64; classifier 32*19 + 19 = 627
    assert n_params(DWRSegDecoder((64, 128, 256), 19, channels=32, kernel_size=3)) == 129_024 + 64 + 627


def test_deep_taps_are_upsampled_to_the_shallowest_and_concatenated():
    dec = DWRSegDecoder((8, 16, 32), 4).eval()
    feats = [torch.randn(1, 8, 16, 24), torch.randn(1, 16, 8, 12), torch.randn(1, 32, 4, 6)]
    seen = []
    dec.fuse.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    y = dec(feats)
    assert seen == [(1, 56, 16, 24)]
    assert y.shape == (1, 4, 16, 24) and dec.emits_logits and dec.out_channels == 4


def test_odd_tap_sizes():
    dec = DWRSegDecoder((8, 16, 32), 3)
    feats = [torch.randn(2, 8, 17, 23), torch.randn(2, 16, 9, 12), torch.randn(2, 32, 5, 6)]
    assert dec(feats).shape == (2, 3, 17, 23)


def test_needs_two_taps():
    with pytest.raises(BlockArgumentError, match="in_channels"):
        registry.get("dwrseg_decoder", "decoder").create((64,), 19)


def test_kernel_size_choices():
    with pytest.raises(BlockArgumentError, match="kernel_size"):
        registry.get("dwrseg_decoder", "decoder").resolve({"kernel_size": 5})
