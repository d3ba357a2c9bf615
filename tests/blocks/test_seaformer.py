"""SeaFormer's SEA block and light head against the official code.

Official counts: fudan-zvg/SeaFormer at 9718d05, ``seaformer-seg/mmseg/models/backbones/seaformer.py``
(``Block(dim, key_dim, num_heads, mlp_ratio, attn_ratio=2, act_layer=nn.ReLU6)``) and
``seaformer-seg/mmseg/models/decode_heads/light_head.py`` (``LightHead(in_channels, channels, embed_dims,
num_classes, is_dw)``), instantiated beside ours (torch 2.13, CPU; mmcv's ``ConvModule`` and BN builder stood in
for).  The whole SeaFormer-T's output with transferred weights is checked in ``tests/test_weights.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nasseg import presets, registry
from nasseg.blocks.seaformer import SeaAttention
from nasseg.build import build
from nasseg.errors import BlockArgumentError
from nasseg.genome import parse
from nasseg.space import load_space
from nasseg.train import Recipe, proxy_train


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def sea(c, **kw):
    return registry.get("sea", "block").create(c, c, 1, **kw)


@pytest.mark.parametrize("c,key_dim,heads,mlp,official", [
    (128, 16, 4, 2.0, 192_000),     # SeaFormer-T trans1 block
    (160, 24, 4, 4.0, 452_672),     # SeaFormer-T trans2 block
    (64, 16, 4, 2.0, 99_968),
    (256, 32, 8, 4.0, 1_749_504),
    (48, 8, 2, 2.0, 22_368),
])
def test_sea_block_params_match_official(c, key_dim, heads, mlp, official):
    assert n_params(sea(c, key_dim=key_dim, num_heads=heads, mlp_ratio=mlp)) == official


@pytest.mark.parametrize("taps,embed_dims,classes,dw,official", [
    ((32, 128, 160), (64, 96), 150, True, 47_222),      # SeaFormer-T
    ((48, 160, 192), (96, 128), 150, True, 77_462),     # SeaFormer-S
    ((64, 192, 256), (128, 160), 150, True, 119_990),   # SeaFormer-B
    ((32, 128, 160), (64, 96), 19, True, 34_515),
    ((32, 128, 160), (64, 96), 19, False, 43_635),      # is_dw=False
])
def test_light_head_params_match_official(taps, embed_dims, classes, dw, official):
    head = registry.get("seaformer_head", "decoder").create(taps, classes, embed_dims=embed_dims, dw=dw)
    assert n_params(head) == official


def _attention_reference(m: SeaAttention, x: torch.Tensor) -> torch.Tensor:
    """Sea attention written per head with einsum, from the paper's description (Sec. 3.1, Fig. 3)."""
    q, k, v = m.to_q(x), m.to_k(x), m.to_v(x)
    detail = m.pwconv(m.act(m.dwconv(torch.cat([q, k, v], 1))))
    heads = m.num_heads

    def axis(qs, ks, vs, pos_q, pos_k):  # (B, C, L) squeezed tensors -> (B, dh, L)
        qs, ks = pos_q(qs), pos_k(ks)
        b, _, n = vs.shape
        qh, kh, vh = (t.reshape(b, heads, -1, n) for t in (qs, ks, vs))
        attn = torch.einsum("bhci,bhcj->bhij", qh, kh) * m.key_dim ** -0.5
        return torch.einsum("bhij,bhcj->bhci", attn.softmax(-1), vh).reshape(b, -1, n)

    row = axis(q.mean(3), k.mean(3), v.mean(3), m.pos_emb_rowq, m.pos_emb_rowk)[..., None]
    col = axis(q.mean(2), k.mean(2), v.mean(2), m.pos_emb_columnq, m.pos_emb_columnk)[..., None, :]
    y = m.proj(v + m.proj_encode_row(row) + m.proj_encode_column(col))
    return F.relu6(y + 3) / 6 * detail


def test_sea_attention_follows_the_paper():
    torch.manual_seed(0)
    block = sea(64, key_dim=8, num_heads=4).eval()
    for mod in block.modules():  # non-trivial BN statistics (the official init zeroes the projections' BN)
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 64, 12, 20)
    with torch.no_grad():
        assert torch.allclose(block.attn(x), _attention_reference(block.attn, x), atol=1e-5)


def test_sea_block_is_two_residual_branches():
    torch.manual_seed(0)
    block = sea(32, key_dim=8, num_heads=2).eval()
    for mod in block.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(1, 32, 9, 14)
    with torch.no_grad():
        y = x + block.attn(x)
        assert torch.equal(block(x), y + block.mlp(y))


def test_projection_batchnorms_start_at_zero_as_officially():
    block = sea(64)
    for name in ("proj", "proj_encode_row", "proj_encode_column"):
        assert torch.all(getattr(block.attn, name)[1].bn.weight == 0)
    assert torch.all(block.attn.to_q.bn.weight == 1)


def test_positional_embedding_is_resized_to_the_axis():
    pos = SeaAttention(32, 8, 2, 2, "relu6").pos_emb_rowq
    x = torch.zeros(1, 16, 16)
    assert torch.equal(pos(x), pos.pos_embed.expand(1, -1, -1))  # 16 positions: the embedding as is
    assert pos(torch.zeros(1, 16, 5)).shape == (1, 16, 5)


def test_refusals_name_the_argument():
    with pytest.raises(BlockArgumentError, match="stride"):
        registry.get("sea", "block").create(64, 64, 2)
    with pytest.raises(BlockArgumentError, match="out_channels"):
        registry.get("sea", "block").create(64, 96, 1)
    with pytest.raises(BlockArgumentError, match="embed_dims.*3 taps"):
        registry.get("seaformer_head", "decoder").create((32, 64, 128), 5, embed_dims=(64,))


SMALL = ("v1|conv1x16s2/mbconv1x24s2(act=relu)/mbconv(act=relu)>sea1x32s2(key_dim=8,num_heads=2)/"
         "mbconv(act=relu)>sea1x48s2(key_dim=8,num_heads=2)|seaformer_head@1,2,3(embed_dims=[16,24])|-")


def test_small_seaformer_exports_to_onnx_with_a_dynamic_size():
    import onnxruntime as ort

    torch.manual_seed(0)
    net = build(parse(SMALL), 3).eval()
    f = io.BytesIO()
    torch.onnx.export(net, (torch.randn(1, 3, 64, 64),), f, opset_version=17, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    session = ort.InferenceSession(f.getvalue())
    for shape in ((1, 3, 64, 64), (2, 3, 48, 80), (1, 3, 50, 70)):
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = net(x).numpy()
        assert np.abs(session.run(None, {"x": x.numpy()})[0] - ref).max() < 1e-4


def test_small_seaformer_trains_in_the_proxy():
    recipe = Recipe(resolution=(32, 64), batch_size=2, steps=3, train_length=4, val_length=2, num_workers=0,
                    log_every=1)
    m = proxy_train(parse(SMALL), recipe, "synthetic", seed=0)
    assert len(m.loss_curve) == 3 and all(np.isfinite(v) for _, v in m.loss_curve)


@pytest.mark.slow  # load_space builds every SEA choice at every width (~5-9 s)
def test_the_seaformer_space_holds_the_preset_and_its_samples_run():
    space = load_space(Path(__file__).parents[2] / "search_spaces" / "seaformer.yaml")
    assert space.encode(presets.get("seaformer_tiny").genome) is not None
    for seed in range(2):
        net = build(space.random(seed), 3).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)
