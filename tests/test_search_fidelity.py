"""A search knows how well its proxy ranks: the stored fidelity study of its space, dataset and recipe is named
on every trial and in status (or the search says the fidelity is unchecked), and --prefilter uses a zero-cost
proxy only when its rank agreement was measured."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

import optuna
import pytest

from nasseg import search as S
from nasseg.cli import main
from nasseg.errors import ConfigError
from nasseg.fidelity.config import recipe_key
from nasseg.search.config import file_sha
from nasseg.study import META_KEY, STATUS_KEY, load_study, open_storage, study_names
from nasseg.train import Recipe
from tests.conftest import TINY_SPACE

RECIPE = Recipe(resolution=(32, 64), steps=2, batch_size=2, eval_every=0, warmup_steps=0, amp=False,
                train_length=8, val_length=4, log_every=1)


def _cfg(tmp_path: Path, **kw) -> S.SearchConfig:
    base = dict(space=TINY_SPACE, storage=f"sqlite:///{tmp_path / 's.db'}", study="s", trials=4,
                latency_budget_ms=None, mode="pareto", latency=S.LatencySpec(resolution=(32, 64)), sampler="random",
                seed=2, recipe=RECIPE, executor="local", progress=False, artifacts=str(tmp_path / "art"))
    base.update(kw)
    return S.SearchConfig(**base)


def _store_fidelity(url: str, proxies: dict[str, tuple[float, float, float]], rung_tau=(0.7, 0.4, 0.9)) -> None:
    """A fidelity study's stored result, as nasseg fidelity writes it (rungs 2 and 10, top 10)."""
    storage = open_storage(url)
    st = optuna.create_study(study_name="fid", storage=storage)
    rows = [{"kind": "rung", "steps": 2, "tau": rung_tau[0], "tau_low": rung_tau[1], "tau_high": rung_tau[2],
             "n": 12}, {"kind": "rung", "steps": 10, "tau": None, "n": 12}]
    rows += [{"kind": "proxy", "name": n, "tau": t, "tau_low": lo, "tau_high": hi, "n": 12}
             for n, (t, lo, hi) in proxies.items()]
    st.set_user_attr(META_KEY, {"kind": "fidelity", "space_sha": file_sha(TINY_SPACE), "dataset": "synthetic",
                                "recipe": recipe_key(RECIPE), "genome_ids": ["x"] * 12, "seeds": [0],
                                "result": {"top_rung": 10, "target_tau": 0.6, "recommended_rung": 2, "rows": rows,
                                           "computed_utc": datetime.datetime.now().isoformat()}})


def test_unchecked_fidelity_is_said_once_and_stored(tmp_path, capsys):
    logs: list[str] = []
    S.search(_cfg(tmp_path), log=logs.append)
    assert sum("proxy fidelity unchecked" in m for m in logs) == 1
    st = load_study(f"sqlite:///{tmp_path / 's.db'}", "s")
    assert st.user_attrs["proxy_fidelity"]["checked"] is False
    assert main(["status", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study", "s"]) == 0
    assert "proxy fidelity: proxy fidelity unchecked" in capsys.readouterr().out


def test_every_trial_carries_the_measured_rank_agreement(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    _store_fidelity(url, {})
    logs: list[str] = []
    S.search(_cfg(tmp_path), log=logs.append)
    assert any("rank agreement with 5x training: tau 0.70 [0.40, 0.90], n = 12" in m for m in logs)
    for t in load_study(url, "s").trials:
        pf = t.user_attrs["proxy_fidelity"]
        assert pf["tau"] == 0.7 and pf["steps"] == 2 and pf["top_rung"] == 10 and pf["study"] == "fid"
    assert main(["status", "--storage", url, "--study", "s"]) == 0
    assert "rank agreement with 5x training: tau 0.70" in capsys.readouterr().out


def test_prefilter_refuses_without_a_measured_proxy_and_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(ConfigError, match="no rank agreement of 'synflow'.*nasseg fidelity"):
        S.search(_cfg(tmp_path, prefilter=("synflow", 0.5)), log=lambda s: None)
    assert not (tmp_path / "s.db").exists()
    _store_fidelity(url, {"synflow": (0.05, -0.3, 0.4)})
    with pytest.raises(ConfigError, match="no better than chance"):
        S.search(_cfg(tmp_path, prefilter=("synflow", 0.5)), log=lambda s: None)
    assert study_names(url) == ["fid"]
    with pytest.raises(ConfigError, match="unknown zero-cost proxy 'synflw'.*synflow"):
        S.search(_cfg(tmp_path, prefilter=("synflw", 0.5)), log=lambda s: None)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        S.search(_cfg(tmp_path, prefilter=("synflow", 1.5)), log=lambda s: None)


def test_cli_prefilter_bad_value_is_one_line(tmp_path, capsys):
    rc = main(["search", "--space", TINY_SPACE, "--mode", "pareto", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
               "--prefilter", "synflow"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--prefilter synflow" in err[0]
    assert not (tmp_path / "x.db").exists()


def test_prefiltered_candidates_are_not_trained_and_take_no_slot(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    _store_fidelity(url, {"params": (0.6, 0.3, 0.8)})
    summary = S.search(_cfg(tmp_path, trials=8, prefilter=("params", 0.3)), log=lambda s: None)
    trials = load_study(url, "s").trials
    pre = [t for t in trials if t.user_attrs.get(STATUS_KEY) == "prefiltered"]
    assert pre and summary["counts"]["prefiltered"] == len(pre)
    assert summary["finished"] == 8  # prefiltered candidates took no slot of --trials
    for t in pre:
        assert t.state == optuna.trial.TrialState.PRUNED and "train_seconds" in t.user_attrs
        assert "latency" not in t.user_attrs and "metrics" not in t.user_attrs and "zero-cost params" in \
            t.user_attrs["reason"]
    assert all("params" in t.user_attrs["zero_cost"] for t in trials if "reused_from" not in t.user_attrs)
    with sqlite3.connect(tmp_path / "s.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
