"""Ablation replay extras: proxy weights are kept only with ``--keep-weights`` (issue #15 item 10)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nasseg import ablation as A

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "ablation_tiny.yaml"


# ------------------------------------------------------------------------------- weights on disk
def _pt_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pt"))


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep-weights"])
def test_ablation_weights_are_written_only_with_keep_weights(tmp_path, keep):
    res = A.ablate(A.AblationConfig(study=str(TINY), storage=f"sqlite:///{tmp_path / 'abl.db'}", fidelity="smoke",
                                    seeds=1, executor="local", out=str(tmp_path / "out"), plot=False,
                                    keep_weights=keep), log=lambda s: None)
    assert res["counts"]["trained"] == 3 and res["keep_weights"] is keep
    study = optuna.load_study(study_name="ablation-tiny-smoke", storage=f"sqlite:///{tmp_path / 'abl.db'}")
    paths = [t.user_attrs.get("weights_path") for t in study.get_trials()]
    if keep:
        assert len(_pt_files(tmp_path)) == 3 and all(p and Path(p).exists() for p in paths)
    else:
        assert _pt_files(tmp_path) == [] and paths == [None] * 3
