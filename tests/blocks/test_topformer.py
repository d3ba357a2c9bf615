"""TopFormer's token pyramid decoder against the official code.

Official counts: hustvl/TopFormer at cc0f436, ``mmseg/models/backbones/topformer.py`` (``BasicLayer(4,
sum(channels), 16, heads, mlp_ratio=2, attn_ratio=2, act_layer=nn.ReLU6)`` + one ``InjectionMultiSum(c, width)``
per injected tap) and ``mmseg/models/decode_heads/simple_head.py`` (``SimpleHead(channels=width, is_dw=True)``),
instantiated beside ours (torch 2.13, CPU; mmcv stood in for).  The whole TopFormer-T's output with transferred
weights is checked in ``tests/test_weights.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasseg import presets, registry
from nasseg.build import build
from nasseg.errors import BlockArgumentError
from nasseg.export import ONNX_TOLERANCE, export_onnx
from nasseg.genome import parse
from nasseg.heads.topformer import TopFormerAttention
from nasseg.space import load_space
from nasseg.train import Recipe, proxy_train


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def decoder(taps, classes, **kw):
    return registry.get("topformer_decoder", "decoder").create(tuple(taps), classes, **kw)


@pytest.mark.parametrize("taps,width,heads,classes,official", [
    ((16, 32, 64, 96), 128, 4, 150, 1_132_822),    # TopFormer-T
    ((24, 48, 96, 128), 192, 6, 150, 2_309_718),   # TopFormer-S
    ((32, 64, 128, 160), 256, 8, 150, 3_900_310),  # TopFormer-B
    ((16, 32, 64, 96), 128, 4, 19, 1_115_923),
])
def test_decoder_params_match_official(taps, width, heads, classes, official):
    assert n_params(decoder(taps, classes, width=width, num_heads=heads)) == official


def test_attention_is_unscaled_as_officially():
    """softmax(q k) v per head: the official Attention defines key_dim ** -0.5 but never applies it."""
    torch.manual_seed(0)
    m = TopFormerAttention(32, 8, 2, 2, "relu6").eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 32, 3, 5)
    with torch.no_grad():
        q = m.to_q(x).flatten(2).reshape(2, 2, 8, 15)
        k = m.to_k(x).flatten(2).reshape(2, 2, 8, 15)
        v = m.to_v(x).flatten(2).reshape(2, 2, 16, 15)
        attn = torch.einsum("bhci,bhcj->bhij", q, k).softmax(-1)
        y = torch.einsum("bhij,bhcj->bhci", attn, v).reshape(2, 32, 3, 5)
        assert torch.allclose(m(x), m.proj(y), atol=1e-5)
        scaled = torch.einsum("bhij,bhcj->bhci", (torch.einsum("bhci,bhcj->bhij", q, k) / 8 ** 0.5).softmax(-1), v)
        assert not torch.allclose(m(x), m.proj(scaled.reshape(2, 32, 3, 5)), atol=1e-3)


def test_tokens_pool_every_tap_to_the_deepest_size_over_the_stride():
    torch.manual_seed(0)
    dec = decoder((8, 16, 24), 3, depth=1, num_heads=2, width=16, drop_path=0.0, dropout=0.0).eval()
    feats = [torch.randn(1, 8, 20, 28), torch.randn(1, 16, 10, 14), torch.randn(1, 24, 5, 7)]
    seen = {}
    dec.trans.register_forward_pre_hook(lambda mod, inp: seen.update(tokens=inp[0].shape))
    with torch.no_grad():
        y = dec(feats)
    assert seen["tokens"] == (1, 48, 3, 4)  # ceil(5 / 2) x ceil(7 / 2), 8 + 16 + 24 channels
    assert y.shape == (1, 3, 10, 14)  # logits at the first injected tap (inject_from = 1)


def test_injection_and_head_follow_the_official_sum():
    torch.manual_seed(0)
    dec = decoder((8, 16, 24), 3, depth=1, num_heads=2, width=16, drop_path=0.0, dropout=0.0).eval()
    feats = [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8), torch.randn(1, 24, 4, 4)]
    with torch.no_grad():
        tokens = torch.cat([F.adaptive_avg_pool2d(f, (2, 2)) for f in feats], 1)
        sem = dec.trans(tokens).split((8, 16, 24), 1)
        a, b = dec.SIM[1](feats[1], sem[1]), dec.SIM[2](feats[2], sem[2])
        x = a + F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
        assert torch.allclose(dec(feats), dec.conv_seg(dec.linear_fuse(x)), atol=1e-6)
    assert isinstance(dec.SIM[0], torch.nn.Identity)


def test_refusals_name_the_argument():
    with pytest.raises(BlockArgumentError, match="inject_from"):
        decoder((16, 32), 5, inject_from=2)


SMALL = ("v1|conv1x16s2/mbconv1x16s2(act=relu)/mbconv1x24s2(act=relu)/mbconv1x32s2(act=relu)|"
         "topformer_decoder@1,2,3(depth=1,num_heads=2,width=32)|-")


def test_small_topformer_exports_to_onnx(tmp_path):
    """nasseg's exporter (adaptive pooling written as matrices), checked in onnxruntime; the token size is a
    constant of the graph, so the export is static, and says why."""
    torch.manual_seed(0)
    net = build(parse(SMALL), 3).eval()
    info = export_onnx(net, tmp_path / "m.onnx", (1, 3, 80, 112), check_batches=(2,))
    assert info["hw"] == "static" and "differs" in info["dynamic_hw_failure"]
    assert info["max_abs_diff"] <= ONNX_TOLERANCE and info["checked_batches"] == [1, 2]


def test_small_topformer_trains_in_the_proxy():
    recipe = Recipe(resolution=(32, 64), batch_size=2, steps=3, train_length=4, val_length=2, num_workers=0,
                    log_every=1)
    m = proxy_train(parse(SMALL), recipe, "synthetic", seed=0)
    assert len(m.loss_curve) == 3 and all(np.isfinite(v) for _, v in m.loss_curve)


def test_the_topformer_space_holds_the_preset_and_its_samples_run():
    space = load_space(Path(__file__).parents[2] / "search_spaces" / "topformer.yaml")
    assert space.encode(presets.get("topformer_tiny").genome) is not None
    for seed in range(2):
        net = build(space.random(seed), 3).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)
