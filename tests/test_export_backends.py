"""Export cards show the runtime the study's latency was measured on, with the eager record beside it, and
``--remeasure`` times on the study's backend, or on ``--latency-backend`` / ``--latency-precision``."""

from __future__ import annotations

import pytest

from nasseg import search as S
from nasseg.cli import main
from nasseg.train import Recipe
from tests.conftest import TINY_SPACE


@pytest.fixture(scope="module")
def ort_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ort")
    recipe = Recipe(resolution=(32, 64), steps=2, batch_size=2, eval_every=0, warmup_steps=0, amp=False,
                    train_length=8, val_length=4, log_every=1)
    lat = S.LatencySpec(resolution=(32, 64), threads=1, warmup=2, backend="onnxruntime", max_seconds=1.0)
    cfg = S.SearchConfig(space=TINY_SPACE, storage=f"sqlite:///{tmp / 's.db'}", study="o", trials=2,
                         latency_budget_ms=None, mode="pareto", latency=lat, sampler="random", seed=2, recipe=recipe,
                         executor="local", progress=False)
    S.search(cfg, log=lambda s: None)
    return tmp, cfg.storage


def test_cards_show_the_backend_record_and_the_eager_one(ort_study):
    tmp, url = ort_study
    out = tmp / "ex"
    assert main(["export", "--storage", url, "--study", "o", "--out", str(out), "--no-progress", "--remeasure"]) == 0
    cards = [p.read_text() for p in out.glob("*/README.md")]
    assert cards
    for c in cards:
        assert "runtime **onnxruntime**" in c and "CPUExecutionProvider" in c and "median's 95 % interval" in c
        assert "## PyTorch eager latency, beside it" in c and "onnxruntime / eager:" in c
        remeasured = c.split("## Latency re-measured at export")[1]
        assert "runtime **onnxruntime**" in remeasured.split("##")[0]  # --remeasure used the study's backend
    report = (out / "report.md").read_text()
    assert "on **onnxruntime** (the eager PyTorch latency beside it" in report and "| eager ms |" in report


@pytest.mark.parametrize("args, needle", [
    (["--latency-backend", "torch"], "give --remeasure too"),
    (["--remeasure", "--latency-backend", "tensorrt"], "tensorrt"),
    (["--remeasure", "--latency-precision", "fp16"], "fp16"),
])
def test_bad_remeasure_settings_are_one_line_and_write_nothing(ort_study, capsys, args, needle):
    tmp, url = ort_study
    out = tmp / f"bad-{len(args)}-{needle}"
    rc = main(["export", "--storage", url, "--study", "o", "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()
