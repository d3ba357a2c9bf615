"""CGNet's and Fast-SCNN's modules in their search spaces (issue #20): every new block builds and runs at every
width the spaces can give it, and the presets and space samples that hold the new modules export to ONNX and
train in the proxy.  (Per-module checks against the official code: tests/blocks/test_cgnet.py,
tests/blocks/test_fastscnn.py and the context / fusion / head tests; whole networks: tests/test_weights.py.)"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from nasseg import presets, registry
from nasseg.build import build
from nasseg.export import ONNX_TOLERANCE, export_onnx
from nasseg.genome import parse, to_string
from nasseg.space import load_space
from nasseg.train import Recipe, proxy_train

ROOT = Path(__file__).parents[1] / "search_spaces"
NEW_BLOCKS = {"cg", "ltd"}
# space samples that hold every new module: CG blocks in Fast-SCNN's global feature extractor, 'same' stem
# padding, the FFM at other widths, and a small CGNet
SAMPLES = {
    "fast_scnn_cg": "v1|ltd1x48s8(channels=[16,32],stem_padding=same)/cg2x64s2(reduction=8)/mbconv2x96s2(act=relu,"
                    "expansion=4)/cg3x128s1(dilation=4,reduction=8)|chain@0,3~fastscnn_ppm>96:fastscnn_ffm96/"
                    "passthrough96|fastscnn_head!ac",
    "cgnet_small": "v1|conv1x16s2(act=prelu,bn_eps=0.001)!inject/cg2x32s2(dilation=4,reduction=4)!inject!cat/"
                   "cg6x64s2(dilation=8)!cat!lead|espnet_c_decoder@2|-",
}


def _stage_cases(name: str):
    space = load_space(ROOT / f"{name}.yaml")
    in_widths = {3}
    for i, sd in enumerate(space.stages):
        widths = sorted(set(sd.width.values()))
        for opt in sd.block.options:
            if opt.name in NEW_BLOCKS:
                for c_in, w, args in itertools.product(sorted(in_widths), widths, opt.combos()):
                    yield i, opt.name, c_in, w, sd.stride, args
        in_widths = {w * (2 if sd.concat_first else 1) + (3 if sd.inject else 0) for w in widths}


@pytest.mark.parametrize("space", ["cgnet", "fast_scnn"])
def test_every_new_block_runs_at_every_width_its_space_gives(space):
    cases = list(_stage_cases(space))
    assert {c[1] for c in cases} == ({"cg"} if space == "cgnet" else {"cg", "ltd"})
    with torch.no_grad():
        for i, name, c_in, w, stride, args in cases:
            entry = registry.get(name, "block")
            first = entry.create(c_in, w, stride, **args).eval()
            y = first(torch.randn(1, c_in, 24, 40))
            assert tuple(y.shape) == (1, w, math.ceil(24 / stride), math.ceil(40 / stride)), (space, i, name, args)
            if name != "ltd":  # the repeated blocks of a stage
                assert tuple(entry.create(w, w, 1, **args).eval()(y).shape) == tuple(y.shape)


def test_the_presets_are_members_of_their_spaces():
    for name in ("cgnet", "fast_scnn"):
        assert load_space(ROOT / f"{name}.yaml").contains(presets.get(name).genome)
    space = load_space(ROOT / "fast_scnn.yaml")
    assert space.contains(parse(SAMPLES["fast_scnn_cg"]))
    assert load_space(ROOT / "cgnet.yaml").contains(parse(SAMPLES["cgnet_small"]))


def _genomes():
    return [pytest.param(presets.get(n).genome, id=n) for n in ("cgnet", "fast_scnn")] + \
        [pytest.param(parse(s), id=k) for k, s in SAMPLES.items()]


@pytest.mark.slow
@pytest.mark.parametrize("genome", _genomes())
def test_exports_to_onnx(genome, tmp_path):
    net = build(genome, 5).eval()
    info = export_onnx(net, tmp_path / "m.onnx", (1, 3, 64, 128), check_batches=(),
                       log_path=tmp_path / "onnx_export.log")
    assert info["max_abs_diff"] <= ONNX_TOLERANCE, to_string(genome)


@pytest.mark.slow
@pytest.mark.parametrize("genome", _genomes())
def test_trains_in_the_proxy(genome):
    recipe = Recipe(resolution=(64, 128), batch_size=2, steps=2, train_length=4, val_length=2, num_workers=0)
    m = proxy_train(genome, recipe, "synthetic", seed=0)
    assert m.status == "completed" and m.steps_done == 2 and len(m.per_class_iou) == 11
    assert all(math.isfinite(v) for _, v in m.loss_curve)
