"""ENet's initial block, bottlenecks and decoder against the PyTorch port they follow.

Official counts: davidtvs/PyTorch-ENet ``models/enet.py`` at e17d404 (``InitialBlock``, ``RegularBottleneck``,
``DownsamplingBottleneck``, ``UpsamplingBottleneck``), instantiated beside ours (torch 2.13, CPU) with the
arguments in each comment (``relu=False``: PReLU).  The whole network's output with transferred weights is
checked in ``tests/test_weights.py`` (fixture ``tests/fixtures/weights/enet.pt``).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasseg import registry
from nasseg.build import build
from nasseg.errors import BlockArgumentError, GenomeError
from nasseg.genome import parse
from nasseg.heads.enet import UpsamplingBottleneck, max_unpool
from nasseg.train import Recipe, proxy_train


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def enet(cin, cout, stride=1, **kw):
    return registry.get("enet", "block").create(cin, cout, stride, **kw)


def initial(cin, cout, **kw):
    return registry.get("enet_initial", "block").create(cin, cout, 2, **kw)


def decoder(taps, classes, **kw):
    return registry.get("enet_decoder", "decoder").create(tuple(taps), classes, **kw)


# ------------------------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("c,kw,prelu,relu", [
    (16, {}, 324, 320),                                       # RegularBottleneck(16, padding=1)
    (64, {}, 4_548, 4_544),                                   # ENet regular1_x / regular4_x
    (128, {}, 17_796, 17_792),                                # ENet regular2_x
    (128, {"dilation": 4}, 17_796, 17_792),                   # RegularBottleneck(128, dilation=4, padding=4)
    (128, {"kernel_size": 5, "asymmetric": True}, 18_885, 18_880),  # (128, kernel_size=5, padding=2, asymmetric)
    (32, {"kernel_size": 5, "asymmetric": True}, 1_269, 1_264),
    (96, {"internal_ratio": 2}, 30_340, 30_336),              # RegularBottleneck(96, internal_ratio=2)
])
def test_regular_bottleneck_params_match_official(c, kw, prelu, relu):
    assert n_params(enet(c, c, act="prelu", **kw)) == prelu
    assert n_params(enet(c, c, act="relu", **kw)) == relu


@pytest.mark.parametrize("cin,cout,prelu,relu", [
    (16, 64, 804, 800),        # DownsamplingBottleneck(16, 64): ENet downsample1_0
    (64, 128, 8_772, 8_768),   # ENet downsample2_0
    (32, 96, 2_596, 2_592),
    (48, 48, 4_324, 4_320),
])
def test_downsampling_bottleneck_params_match_official(cin, cout, prelu, relu):
    assert n_params(enet(cin, cout, 2, act="prelu")) == prelu
    assert n_params(enet(cin, cout, 2, act="relu")) == relu


@pytest.mark.parametrize("cin,cout,prelu,relu", [
    (128, 64, 18_819, 18_816),   # UpsamplingBottleneck(128, 64): ENet upsample4_0
    (64, 16, 3_459, 3_456),      # ENet upsample5_0
    (96, 32, 8_675, 8_672),
    (256, 128, 74_499, 74_496),
])
def test_upsampling_bottleneck_params_match_official(cin, cout, prelu, relu):
    for act, official in (("prelu", prelu), ("relu", relu)):
        assert n_params(UpsamplingBottleneck(cin, cout, internal_ratio=4, dropout=0.1, act=act)) == official


@pytest.mark.parametrize("cin,cout,prelu,relu", [(3, 16, 384, 383), (3, 32, 848, 847)])  # InitialBlock(3, out)
def test_initial_block_params_match_official(cin, cout, prelu, relu):
    assert n_params(initial(cin, cout, act="prelu")) == prelu
    assert n_params(initial(cin, cout, act="relu")) == relu


def test_decoder_params_match_official():
    # upsample4_0, regular4_1, regular4_2, upsample5_0, regular5_1, transposed_conv of ENet(20): 34,560
    assert n_params(decoder((16, 64, 128), 20)) == 34_560


def test_prelu_has_one_slope_as_in_the_port():
    m = enet(64, 64)
    slopes = [p for n, p in m.named_parameters() if n.endswith(".weight") and p.dim() == 1 and p.numel() == 1]
    assert len(slopes) == 4  # ext_conv1, ext_conv2, ext_conv3, out_activation


# ------------------------------------------------------------------------------------------- forward
def _downsampling_reference(m, x):
    """The port's DownsamplingBottleneck.forward (even sizes): pool, zero channels appended, + extension, act."""
    main = F.max_pool2d(x, 2, 2)
    n, _, h, w = main.shape
    main = torch.cat([main, torch.zeros(n, m.out_channels - x.shape[1], h, w)], 1)
    ext = m.ext_conv3(m.ext_conv2(m.ext_conv1(x)))
    return m.out_activation(main + ext)


def test_downsampling_bottleneck_follows_the_port():
    torch.manual_seed(0)
    m = enet(16, 64, 2).eval()
    x = torch.randn(2, 16, 24, 32)
    with torch.no_grad():
        assert torch.equal(m(x), _downsampling_reference(m, x))
    assert m.ext_conv1[0].kernel_size == (2, 2) and m.ext_conv1[0].stride == (2, 2)
    assert m.ext_conv1[0].out_channels == 4  # in // 4 (the port; Lua: out // 4)


@pytest.mark.parametrize("size,expected", [((24, 32), (12, 16)), ((25, 31), (13, 16))])
def test_downsampling_rounds_up_at_odd_sizes(size, expected):
    y = enet(16, 32, 2)(torch.randn(1, 16, *size))
    assert tuple(y.shape) == (1, 32, *expected)


def test_middle_conv_variants():
    m = enet(64, 64, kernel_size=5, asymmetric=True, dilation=2)
    assert [c.kernel_size for c in m.ext_conv2 if isinstance(c, torch.nn.Conv2d)] == [(5, 1), (1, 5)]
    assert m.ext_conv2[0].padding == (4, 0) and m.ext_conv2[3].padding == (0, 4)
    d = enet(64, 64, dilation=8)
    assert d.ext_conv2[0].dilation == (8, 8) and d.ext_conv2[0].padding == (8, 8)
    x = torch.randn(1, 64, 17, 23)
    assert m(x).shape == x.shape and d(x).shape == x.shape


def test_max_unpool_is_max_unpool2d():
    torch.manual_seed(0)
    for h, w in ((8, 12), (9, 11)):
        skip = torch.randn(2, 5, h, w)
        _, idx = F.max_pool2d(skip, 2, 2, ceil_mode=True, return_indices=True)
        x = torch.randn(2, 5, *idx.shape[-2:])
        assert torch.equal(max_unpool(x, idx, (h, w)), F.max_unpool2d(x, idx, 2, 2, output_size=(h, w)))


def test_upsampling_bottleneck_unpools_with_the_encoders_indices():
    """The indices recomputed from the tap are the downsampling bottleneck's own (the port keeps them)."""
    torch.manual_seed(0)
    up = UpsamplingBottleneck(32, 16, internal_ratio=4, dropout=0.0, act="relu").eval()
    skip = torch.randn(1, 16, 20, 28)
    _, idx = torch.nn.MaxPool2d(2, 2, return_indices=True)(skip)  # the port's main_max1
    x = torch.randn(1, 32, 10, 14)
    with torch.no_grad():
        main = F.max_unpool2d(up.main_conv1(x), idx, 2, 2, output_size=skip.shape[-2:])
        ext = up.ext_conv2(up.ext_tconv1_activation(up.ext_tconv1_bnorm(up.ext_tconv1(up.ext_conv1(x)))))
        assert torch.equal(up(x, skip), up.out_activation(main + ext))


# ------------------------------------------------------------------------------------------- refusals
def test_refusals_name_the_argument():
    with pytest.raises(BlockArgumentError, match="out_channels.*identity"):
        enet(32, 64, 1)
    with pytest.raises(BlockArgumentError, match="out_channels.*zero-padded"):
        enet(64, 32, 2)
    with pytest.raises(BlockArgumentError, match="stride"):
        enet(32, 32, 4)
    with pytest.raises(BlockArgumentError, match="internal_ratio"):
        enet(4, 8, 2, internal_ratio=8)
    with pytest.raises(BlockArgumentError, match="out_channels"):
        initial(16, 16)
    with pytest.raises(BlockArgumentError, match="depths.*3 taps"):
        decoder((16, 64, 128), 5, depths=(1,))


SMALL = "v1|enet_initial1x8s2/enet2x32s2/enet3x64s2(act=relu){asymmetric=false,true,false;dilation=1,1,4;" \
        "kernel_size=3,5,3}|enet_decoder@0,1,2(dropout=0.0)|-"


def test_taps_must_be_one_downsampling_apart():
    net = build(parse("v1|enet_initial1x8s2/enet2x32s2/enet1x64s2|enet_decoder@0,2(depths=[1])|-"), 3).eval()
    with pytest.raises(ValueError, match="consecutive taps must differ by exactly one 2x downsampling"):
        net(torch.randn(1, 3, 32, 32))


def test_a_decoder_too_narrow_for_its_ratio_is_a_genome_error():
    # the regular bottleneck on the 4-channel tap would project to 4 // 8 = 0 channels
    with pytest.raises(GenomeError, match=r"decoder: .*internal_ratio"):
        build(parse("v1|enet_initial1x4s2/enet1x32s2|enet_decoder@0,1(depths=[1],internal_ratio=8)|-"), 3)


# ------------------------------------------------------------------------------------------- network
def test_small_enet_exports_to_onnx_with_a_dynamic_size():
    """ONNX (legacy exporter, opset 17) of an ENet-like genome, run in onnxruntime at an even and an odd size."""
    import onnxruntime as ort

    torch.manual_seed(0)
    net = build(parse(SMALL), 3).eval()
    f = io.BytesIO()
    torch.onnx.export(net, (torch.randn(1, 3, 32, 64),), f, opset_version=17, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    session = ort.InferenceSession(f.getvalue())
    # 40 x 56: 5 x 7 at 1/8 (odd sides in the decoder); 36 x 52: 9 x 13 at 1/4 (odd input to a downsampling)
    for shape in ((1, 3, 32, 64), (2, 3, 40, 56), (1, 3, 36, 52)):
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = net(x).numpy()
        assert np.abs(session.run(None, {"x": x.numpy()})[0] - ref).max() < 1e-4


def test_small_enet_trains_in_the_proxy():
    recipe = Recipe(resolution=(32, 64), batch_size=2, steps=3, train_length=4, val_length=2, num_workers=0,
                    log_every=1)
    m = proxy_train(parse(SMALL), recipe, "synthetic", seed=0)
    assert len(m.loss_curve) == 3 and all(np.isfinite(v) for _, v in m.loss_curve)
    assert 0.0 <= m.miou <= 1.0


def test_the_enet_space_holds_the_preset_and_its_samples_run():
    """search_spaces/enet.yaml: load_space builds every block choice at every width it can get; samples run."""
    from pathlib import Path

    from nasseg import presets
    from nasseg.space import load_space

    space = load_space(Path(__file__).parents[2] / "search_spaces" / "enet.yaml")
    assert space.encode(presets.get("enet").genome) is not None
    for seed in range(3):
        net = build(space.random(seed), 3).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 32, 48)).shape == (1, 3, 32, 48)


def test_the_onnx_check_tolerates_argmax_flips_only_for_unpooling_networks(tmp_path):
    """A flip (onnxruntime and PyTorch pick different maxima of a near-tied window) moves a few values; the
    check of nasseg.export.onnx allows that for a network with max-unpooling, and nothing more."""
    from nasseg.export import onnx as E

    torch.manual_seed(0)
    net = build(parse(SMALL), 3).eval()
    info = E.export_onnx(net, tmp_path / "m.onnx", (1, 3, 32, 64), check_batches=())
    assert info["argmax_flip_values"] == 0 and info["max_abs_diff"] <= 1e-5
    assert "argmax_flip_values" not in E.export_onnx(build(parse(SMALL.replace("enet_decoder@0,1,2(dropout=0.0)",
        "erfnet_decoder@2")), 3), tmp_path / "e.onnx", (1, 3, 32, 64), check_batches=())  # no argmax, no allowance

    class Shifted(torch.nn.Module):  # PyTorch's reference with some values changed by 1e-3
        def __init__(self, n):
            super().__init__()
            self.n = n

        def forward(self, x):
            y = net(x).clone()
            y.view(-1)[: self.n] += 1e-3
            return y

    x = torch.randn(1, 3, 32, 64)
    flips: list[int] = []
    assert E._check(Shifted(20), tmp_path / "m.onnx", [x], None, flips) <= 1e-5 and flips == [20]  # 0.3 %
    with pytest.raises(E._Attempt, match="differ by"):  # 2 % of the values: another function, not a flip
        E._check(Shifted(120), tmp_path / "m.onnx", [x], None, [])
    with pytest.raises(E._Attempt, match="differ by"):  # a network without an argmax gets no allowance
        E._check(Shifted(1), tmp_path / "m.onnx", [x], None, None)
