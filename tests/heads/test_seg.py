"""seg_head and aux_head: structure, parameter counts against STDC-Seg / PIDNet heads, arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError
from nasseg.heads.seg import AuxHead, SegHead


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# Counts of the official classes, worked out from their layers (conv weights + BN affine + bias):
#   STDC-Seg BiSeNetOutput(256, 256, 19): 256*256*9 + 2*256 + 256*19           = 595,200
#   STDC-Seg BiSeNetOutput(128, 64, 19):  128*64*9 + 2*64 + 64*19               =  75,072
#   PIDNet segmenthead(128, 128, 19):     2*128 + 128*128*9 + 2*128 + 128*19+19 = 150,419  (PIDNet-S final)
#   PIDNet segmenthead(64, 128, 19):      2*64 + 64*128*9 + 2*128 + 128*19+19   =  76,563  (PIDNet-S P aux)
@pytest.mark.parametrize("name,in_ch,kwargs,expected", [
    ("seg_head", 256, {"mid_channels": 0}, 595_200),
    ("seg_head", 256, {"mid_channels": 256}, 595_200),
    ("seg_head", 128, {"mid_channels": 128, "preact": True, "bias": True}, 150_419),
    ("aux_head", 128, {}, 75_072),
    ("aux_head", 64, {"mid_channels": 128, "preact": True, "bias": True}, 76_563),
])
def test_parameter_counts_match_official_heads(name, in_ch, kwargs, expected):
    head = registry.get(name, "head").create(in_ch, 19, **kwargs)
    assert _params(head) == expected


def test_stdc_form_has_no_classifier_bias_and_is_conv_bn_relu_then_1x1():
    head = SegHead(16, 7, mid_channels=8).eval()
    assert head.conv_out.bias is None
    assert isinstance(head.pre, nn.Identity) and isinstance(head.drop, nn.Identity)
    x = torch.randn(2, 16, 9, 11)
    c = head.conv
    manual = F.conv2d(F.relu(c.bn(F.conv2d(x, c.conv.weight, padding=1))), head.conv_out.weight)
    torch.testing.assert_close(head(x), manual)


def test_preact_form_is_pidnet_segmenthead_order():
    head = SegHead(16, 7, mid_channels=8, preact=True, bias=True).eval()
    for bn in (head.pre.bn, head.conv.bn):  # non-trivial BN statistics so the order matters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 16, 9, 11)
    # BN -> ReLU -> 3x3 conv (no bias) -> BN -> ReLU -> 1x1 conv (bias)
    y = F.conv2d(F.relu(head.pre.bn(x)), head.conv.conv.weight, padding=1)
    assert head.conv.conv.bias is None
    manual = F.conv2d(F.relu(head.conv.bn(y)), head.conv_out.weight, head.conv_out.bias)
    torch.testing.assert_close(head(x), manual)


def test_state_dict_names_are_stable():
    keys = set(SegHead(8, 3, preact=True, bias=True).state_dict())
    assert {"pre.bn.weight", "conv.conv.weight", "conv.bn.weight", "conv_out.weight", "conv_out.bias"} <= keys


@pytest.mark.parametrize("size", [(16, 24), (17, 23)])
def test_output_is_logits_at_input_size(size):
    head = AuxHead(12, 5)
    assert head(torch.randn(2, 12, *size)).shape == (2, 5, *size)
    assert head.out_channels == 5 and head.mid_channels == 64


def test_dropout_is_channel_dropout_off_in_eval():
    head = SegHead(8, 3, mid_channels=4, dropout=0.5)
    assert isinstance(head.drop, nn.Dropout2d) and head.drop.p == 0.5
    x = torch.randn(1, 8, 6, 6)
    head.eval()
    torch.testing.assert_close(head(x), head.conv_out(head.conv(x)))


def test_aux_head_is_the_same_computation_as_seg_head():
    torch.manual_seed(3)
    a = SegHead(8, 3, mid_channels=4)
    b = AuxHead(8, 3, mid_channels=4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_registry_defaults_and_bad_values():
    for name in ("seg_head", "aux_head"):
        entry = registry.get(name, "head")
        assert entry.resolve({}) == {"mid_channels": 64, "dropout": 0.0, "bias": False, "preact": False}
        with pytest.raises(BlockArgumentError, match="mid_channels"):
            entry.resolve({"mid_channels": -1})
        with pytest.raises(BlockArgumentError, match="dropout"):
            entry.resolve({"dropout": 1.0})
