"""The GhostNet, ShuffleNet V2 and MobileNetV3 blocks (issue #20) in search_spaces/mobile.yaml: a network made
of each block alone is a member of the space, trains in the proxy (its weights move, its losses stay finite)
and exports to ONNX, checked in onnxruntime against PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasseg.build import build
from nasseg.export import ONNX_TOLERANCE, export_onnx
from nasseg.genome import parse
from nasseg.space import load_space
from nasseg.train import Recipe, proxy_train

SPACE = Path(__file__).parents[1] / "search_spaces" / "mobile.yaml"
# one network per new block, every searched stage made of it (stem 16, 1/4, 1/8, 1/16, last stage at 1/16)
NETWORKS = {
    "ghost": "v1|conv1x16s2/ghost2x24s2/ghost1x40s2(expansion=6.0,kernel_size=5,se=true)/ghost2x80s2/"
             "ghost1x160s1(se=true)|lraspp@2,4(inter_channels=64)|-",
    "shufflev2": "v1|conv1x24s2/shufflev22x24s2/shufflev21x48s2(kernel_size=5)/shufflev22x96s2/shufflev21x160s1"
                 "|decoder14@2,4|-",
    "mbv3": "v1|conv1x16s2(act=hardswish)/mbv32x24s2(act=relu,expansion=3.0)/"
            "mbv31x40s2(act=relu,kernel_size=5,se=true)/mbv32x80s2/mbv32x160s1(dilation=2,se=true)"
            "|lraspp@2,4(inter_channels=64)|-",
}


@pytest.fixture(scope="module")
def space():
    return load_space(SPACE)


@pytest.mark.parametrize("block", sorted(NETWORKS))
def test_a_network_of_the_block_is_a_member_of_the_space(space, block):
    g = parse(NETWORKS[block])
    assert space.contains(g)
    assert {s.block for s in g.stages[1:]} == {block}


@pytest.mark.parametrize("block", sorted(NETWORKS))
def test_the_block_trains_in_the_proxy(block, tmp_path):
    g = parse(NETWORKS[block])
    recipe = Recipe(resolution=(32, 64), batch_size=2, steps=3, train_length=4, val_length=2, num_workers=0,
                    log_every=1)
    m = proxy_train(g, recipe, "synthetic", seed=3, weights_path=tmp_path / "w.pt")
    assert m.status == "completed" and m.steps_done == 3
    assert len(m.loss_curve) == 3 and all(torch.isfinite(torch.tensor(loss)) for _, loss in m.loss_curve)
    assert 0.0 <= m.pixel_acc <= 1.0
    trained = torch.load(tmp_path / "w.pt", weights_only=True)
    torch.manual_seed(3)  # proxy_train builds under its seed: the same initial weights
    initial = build(g, len(m.per_class_iou)).state_dict()
    moved = [k for k, v in initial.items() if v.is_floating_point() and not torch.equal(v, trained[k])]
    blocks = [k for k in moved if k.startswith("stages.1.")]
    assert blocks, f"{block}: no weight of the first searched stage moved in training"


@pytest.mark.parametrize("block", sorted(NETWORKS))
def test_the_block_exports_to_onnx(block, tmp_path):
    net = build(parse(NETWORKS[block]), 5).eval()
    info = export_onnx(net, tmp_path / "m.onnx", (1, 3, 64, 128), check_batches=(),
                       log_path=tmp_path / "onnx_export.log")
    assert info["max_abs_diff"] <= ONNX_TOLERANCE
