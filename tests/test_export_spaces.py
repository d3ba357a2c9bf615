"""Every architecture a shipped search space can propose, and every preset, exports to ONNX (issue #15).

A sample is what a search draws: ``load_space(path).sample(trial)`` on an Optuna ``RandomSampler`` trial.
Each export traces the network at two resolutions (the graph must not depend on the one it was traced at)
and checks it in onnxruntime against PyTorch at both, or falls back to a static H x W checked at the first;
either way it must succeed.  A tiny class count keeps the heads small (ESPNet's decoder needs >= 5).
The fast path exports one sample per space at 64x128; the slow tests export two more samples per space and
every preset at 128x256 (each export already traces and checks two sizes), and the exact architecture of the
issue at two deployment sizes.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nasseg import presets
from nasseg.build import build
from nasseg.export import ONNX_TOLERANCE, export_onnx
from nasseg.genome import parse, to_string
from nasseg.space import load_space

SPACES = sorted((Path(__file__).parents[1] / "search_spaces").glob("*.yaml"))
NUM_CLASSES = 5
#: The architecture of issue #15: its PPM sits behind a D block with two dilations (tensor_split).
ISSUE_15 = ("v1|conv1x32s2/conv1x64s2/mbconv4x128s2(expansion=3)/mbconv4x256s2(expansion=3)/"
            "dblock2x384s2(dilations=[1,2])|chain@2,3,4~ppm>128:ffm64(reduction=1)/ffm64(reduction=1)/"
            "ffm64(reduction=1)|seg_head(mid_channels=128)")


def _sample(space: Path, seed: int):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return load_space(space).sample(study.ask())


def _export(genome, tmp_path: Path, resolution: tuple[int, int]) -> dict:
    net = build(genome, NUM_CLASSES).eval()
    try:
        info = export_onnx(net, tmp_path / "m.onnx", (1, 3, *resolution), check_batches=(),
                           log_path=tmp_path / "onnx_export.log")
    except Exception as e:
        raise AssertionError(f"{to_string(genome)} at {resolution}: {e}") from None
    assert info["max_abs_diff"] <= ONNX_TOLERANCE and info["checked_resolutions"][0] == list(resolution)
    assert info["hw"] == "static" or len(info["checked_resolutions"]) == 2
    return info


def test_every_shipped_space_is_tested():
    assert {p.stem for p in SPACES} >= {"realtime", "stdc", "regseg", "factorized", "espnet", "dwrseg", "fasternet"}


@pytest.mark.parametrize("space", SPACES, ids=lambda p: p.stem)
def test_a_sample_of_every_space_exports(space, tmp_path):
    _export(_sample(space, 0), tmp_path, (64, 128))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("space", SPACES, ids=lambda p: p.stem)
def test_samples_of_every_space_export(space, seed, tmp_path):
    _export(_sample(space, seed), tmp_path, (128, 256))


@pytest.mark.slow
@pytest.mark.parametrize("resolution", [(128, 256), (256, 512)])
def test_the_architecture_of_issue_15_exports_with_a_dynamic_height_and_width(resolution, tmp_path):
    info = _export(parse(ISSUE_15), tmp_path, resolution)
    assert info["hw"] == "dynamic" and info["dynamic_hw_failure"] is None


@pytest.mark.slow
@pytest.mark.parametrize("name", presets.names())
def test_every_preset_exports(name, tmp_path):
    _export(presets.get(name).genome, tmp_path, (128, 256))
