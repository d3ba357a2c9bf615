"""RegSeg D block against the official code.

Counts were taken by instantiating RolandGao/RegSeg ``blocks.py`` at 0f61c66 (torch 2.13, CPU):
``DBlock(in, out, dilations, 16, stride, "se")`` and ``ConvBnAct(3, 32, 3, 2, 1)`` + ``RegSegBody(ds)``
(the stem and body of ``RegSeg("exp48_decoder26")`` in ``model.py``).  With the official weights loaded
(``load_state_dict(strict=True)``), single- and multi-dilation blocks at both strides gave outputs identical
to the official ``DBlock`` (checked once, outside the suite, since the official code is not vendored).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from nasseg import registry
from nasseg.blocks.regseg import DBlock
from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct

# RegSeg's 1/16-stage dilation lists (model.py), one per block after the stride-2 block
EXP48 = [(1,), (1, 2)] + 4 * [(1, 4)] + 7 * [(1, 14)]
EXP43 = [(1,), (1, 2), (1, 4), (1, 6), (1, 8), (1, 10)] + 7 * [(1, 12)]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def dblock(cin, cout, stride=1, **kw):
    return registry.get("dblock", "block").create(cin, cout, stride, **kw)


class RegSegBody(nn.Module):
    """Stem ConvBNReLU 3->32 s2 + the 18 D blocks of the official ``RegSegBody``; returns the 1/4, 1/8
    and 1/16 taps (48, 128, 320 channels)."""

    def __init__(self, ds=EXP48):
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, 2)
        self.stage4 = dblock(32, 48, 2)
        self.stage8 = nn.Sequential(dblock(48, 128, 2), dblock(128, 128), dblock(128, 128))
        self.stage16 = nn.Sequential(
            dblock(128, 256, 2),
            *[dblock(256, 256, dilations=d) for d in ds[:-1]],
            dblock(256, 320, dilations=ds[-1]),
        )

    def forward(self, x):
        x4 = self.stage4(self.stem(x))
        x8 = self.stage8(x4)
        return [x4, x8, self.stage16(x8)]


@pytest.mark.parametrize("cin,cout,stride,dilations,official", [
    (32, 48, 2, (1,), 13_496),       # reference §11, RegSeg stage4
    (128, 128, 1, (1,), 60_320),     # reference §11
    (128, 256, 2, (1,), 186_656),    # first 1/16 block
    (256, 256, 1, (1, 14), 202_560),
    (256, 320, 1, (1, 14), 356_224),  # last block, 256 -> 320
])
def test_params_match_official(cin, cout, stride, dilations, official):
    assert n_params(dblock(cin, cout, stride, dilations=dilations)) == official


@pytest.mark.parametrize("ds", [EXP48, EXP43], ids=["exp48", "exp43"])
def test_regseg_stem_and_body_match_official(ds):
    assert len(ds) == 13
    body = RegSegBody(ds)
    assert sum(1 for m in body.modules() if isinstance(m, DBlock)) == 18
    assert n_params(body) == 3_160_004


def test_regseg_body_taps():
    body = RegSegBody().eval()
    with torch.no_grad():
        x4, x8, x16 = body(torch.randn(1, 3, 64, 96))
    assert x4.shape == (1, 48, 16, 24) and x8.shape == (1, 128, 8, 12) and x16.shape == (1, 320, 4, 6)


def test_se_squeeze_is_in_channels_over_4():
    m = dblock(32, 48, 2)
    assert m.se.conv1.in_channels == 48 and m.se.conv1.out_channels == 8
    assert dblock(64, 64, se_ratio=0.5).se.conv1.out_channels == 32


def test_se_ratio_zero_drops_the_se():
    m = dblock(128, 128, se_ratio=0.0)
    assert isinstance(m.se, nn.Identity)
    assert n_params(m) == 60_320 - (128 * 32 + 32 + 32 * 128 + 128)


def test_grouped_conv_single_dilation():
    m = dblock(128, 128, dilations=(4,))
    assert isinstance(m.conv2, nn.Conv2d)
    assert m.conv2.groups == 8 and m.conv2.dilation == (4, 4) and m.conv2.padding == (4, 4)


def test_multiple_dilations_split_channels_evenly():
    m = dblock(256, 256, dilations=(1, 6, 12, 18))
    convs = m.conv2.convs
    assert [c.dilation[0] for c in convs] == [1, 6, 12, 18]
    assert all(c.in_channels == c.out_channels == 64 and c.groups == 4 for c in convs)
    # each split sees only its own channels
    x = torch.zeros(1, 256, 8, 8)
    x[:, :64] = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        y = m.conv2(x)
    assert y[:, :64].abs().sum() > 0 and y[:, 64:].abs().sum() == 0


def test_stride2_shortcut_is_ceil_avgpool_conv_bn():
    m = dblock(32, 48, 2)
    assert isinstance(m.shortcut.avg, nn.AvgPool2d) and m.shortcut.avg.ceil_mode
    assert m.shortcut.avg.kernel_size == 2 and m.shortcut.avg.stride == 2
    assert m.conv2.stride == (2, 2)
    assert m(torch.randn(2, 32, 33, 47)).shape == (2, 48, 17, 24)


def test_shortcut_kinds():
    assert isinstance(dblock(64, 64).shortcut, nn.Identity)
    chan = dblock(64, 96).shortcut
    assert isinstance(chan.avg, nn.Identity) and chan.conv.out_channels == 96
    assert isinstance(dblock(64, 64, 2).shortcut.avg, nn.AvgPool2d)


def test_stride2_with_dilation_is_allowed_as_in_the_official_code():
    m = dblock(64, 64, 2, dilations=(1, 4))
    assert m(torch.randn(2, 64, 33, 47)).shape == (2, 64, 17, 24)


def test_output_is_relu_of_branch_plus_identity():
    m = dblock(64, 64).eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        branch = m.bn3(m.conv3(m.se(m.act2(m.bn2(m.conv2(m.act1(m.bn1(m.conv1(x)))))))))
        torch.testing.assert_close(m(x), torch.relu(branch + x))


@pytest.mark.parametrize("cin,cout,given,arg", [
    (64, 40, {}, "group_width"),                       # 40 is not a multiple of 16
    (64, 48, {"dilations": (1, 4)}, "group_width"),    # 24 per split, not a multiple of 16
    (64, 64, {"group_width": 128}, "group_width"),
    (3, 32, {}, "se_ratio"),                          # int(3 / 4) = 0 squeeze channels
])
def test_impossible_widths_raise(cin, cout, given, arg):
    with pytest.raises(BlockArgumentError) as e:
        dblock(cin, cout, **given)
    assert e.value.argument == arg and "dblock" in str(e.value)


@pytest.mark.parametrize("given", [{"dilations": ()}, {"dilations": (0,)}, {"group_width": 0},
                                   {"se_ratio": 1.5}, {"dilation": (1,)}])
def test_registry_rejects_bad_arguments(given):
    with pytest.raises(BlockArgumentError):
        dblock(64, 64, **given)


def test_parameter_names_are_the_official_ones():
    names = {k: tuple(v.shape) for k, v in dblock(128, 256, 2, dilations=(1, 4)).named_parameters()}
    assert names == {
        "conv1.weight": (256, 128, 1, 1), "bn1.weight": (256,), "bn1.bias": (256,),
        "conv2.convs.0.weight": (128, 16, 3, 3), "conv2.convs.1.weight": (128, 16, 3, 3),
        "bn2.weight": (256,), "bn2.bias": (256,),
        "se.conv1.weight": (32, 256, 1, 1), "se.conv1.bias": (32,),
        "se.conv2.weight": (256, 32, 1, 1), "se.conv2.bias": (256,),
        "conv3.weight": (256, 256, 1, 1), "bn3.weight": (256,), "bn3.bias": (256,),
        "shortcut.conv.weight": (256, 128, 1, 1), "shortcut.bn.weight": (256,), "shortcut.bn.bias": (256,),
    }


def test_signature_defaults_match_the_registry_table():
    sig = inspect.signature(DBlock)
    for name, default in registry.get("dblock").defaults().items():
        assert sig.parameters[name].default == default
