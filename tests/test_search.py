"""The search: measure first, train only feasible, dedup, resume after SIGKILL, early stop never complete."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from nasseg import search as S
from nasseg import study as St
from nasseg.build import build
from nasseg.errors import ConfigError, StorageError
from nasseg.genome import from_json
from nasseg.space import load_space
from nasseg.train import Recipe

TINY = str(Path(__file__).parent / "fixtures" / "tiny_space.yaml")
LAT_RES = (64, 128)


def _cfg(tmp_path: Path, budget: float, **kw) -> S.SearchConfig:
    recipe = Recipe(resolution=(32, 64), steps=6, batch_size=2, eval_every=3, warmup_steps=0, amp=False,
                    train_length=16, val_length=4, log_every=1)
    base = dict(space=TINY, storage=f"sqlite:///{tmp_path / 'study.db'}", study="t", trials=8,
                latency_budget_ms=budget, latency=S.LatencySpec(resolution=LAT_RES, threads=1, warmup=3),
                sampler="random", seed=3, recipe=recipe, executor="local", progress=False)
    steps = kw.pop("steps", None)
    if steps is not None:
        recipe = dataclasses.replace(recipe, steps=steps, eval_every=0)
        base["recipe"] = recipe
    base.update(kw)
    return S.SearchConfig(**base)


def _check_study(study: optuna.Study, budget: float) -> None:
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get(S.STATUS_KEY) == "trained"]
    rejected = [t for t in trials if t.user_attrs.get(S.STATUS_KEY) == "rejected"]
    assert trained and rejected, "the budget should split the tiny space"
    for t in trained:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.user_attrs["latency_ms"] <= budget
        assert t.user_attrs["train_seconds"] > 0 and t.user_attrs["fidelity"]["full"]
        assert 0.0 <= t.values[0] <= 1.0 and t.values[0] == t.user_attrs["miou"]
        weights = torch.load(t.user_attrs["weights_path"], weights_only=True)  # saved by the worker
        assert build(from_json(t.user_attrs["genome_json"]), 11).load_state_dict(weights) is not None
        lat = t.user_attrs["latency"]
        assert lat["runs"] >= 30 and "isolation" in lat and lat["threads"] == 1
        from_json(t.user_attrs["genome_json"])  # stored genomes rebuild
    for t in rejected:
        assert t.state == optuna.trial.TrialState.PRUNED and t.values is None
        assert t.user_attrs["latency_ms"] > budget and t.user_attrs["train_seconds"] == 0.0
        assert "metrics" not in t.user_attrs and "budget" in t.user_attrs["reason"]
    keys = [(t.user_attrs["genome_id"], t.user_attrs["recipe_json"]) for t in trained]
    assert len(keys) == len(set(keys)), "a genome was trained twice at the same fidelity"
    for t in study.best_trials:
        assert t.user_attrs[S.STATUS_KEY] in ("trained", "reused") and t.user_attrs["latency_ms"] <= budget


@pytest.mark.slow
def test_search_through_ray_tune_with_sqlite(tmp_path, tiny_budget_ms):
    cfg = _cfg(tmp_path, tiny_budget_ms, executor="ray", trials=8, concurrency=2)
    summary = S.search(cfg, log=lambda s: None)
    assert summary["finished"] == 8
    study = St.load_study(cfg.storage, "t")
    _check_study(study, tiny_budget_ms)
    # a separate process sees the same trials through plain optuna, and best_trials are feasible
    code = (
        "import json, optuna, sys; s = optuna.load_study(study_name='t', storage=sys.argv[1]);"
        "print(json.dumps([[t.number, t.state.name] for t in s.trials] + [[t.number for t in s.best_trials]]))"
    )
    out = subprocess.run([sys.executable, "-c", code, cfg.storage], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen[:-1] == [[t.number, t.state.name] for t in study.trials]
    assert set(seen[-1]) == {t.number for t in study.best_trials}
    meta = study.user_attrs[S.META_KEY]
    assert meta["latency_budget_ms"] == tiny_budget_ms and meta["sampler"]["name"] == "random"


def test_dedup_reuses_results_and_duplicates_do_not_take_trials(tmp_path, tiny_budget_ms):
    cfg = _cfg(tmp_path, tiny_budget_ms, trials=9)
    summary = S.search(cfg, log=lambda s: None)
    study = St.load_study(cfg.storage, "t")
    _check_study(study, tiny_budget_ms)
    c = summary["counts"]
    assert summary["duplicates"] > 0, "9 distinct of the tiny space's 12 architectures take more than 9 random draws"
    assert sum(c.values()) - summary["duplicates"] == 9 == summary["finished"] and not summary["exhausted"]
    by_id: dict[str, list] = {}
    for t in study.trials:
        by_id.setdefault(t.user_attrs["genome_id"], []).append(t)
    assert len(by_id) == 9, "--trials counts distinct architectures"
    repeated = [ts for ts in by_id.values() if len(ts) > 1]
    assert repeated
    for ts in repeated:
        first, *rest = ts
        for t in rest:
            assert t.user_attrs["reused_from"] == first.number and t.user_attrs["train_seconds"] == 0.0
            assert t.state == first.state and t.values == first.values


def test_resume_continues_and_counts_done_trials(tmp_path, tiny_budget_ms):
    cfg = _cfg(tmp_path, tiny_budget_ms, trials=3)
    S.search(cfg, log=lambda s: None)
    cfg2 = _cfg(tmp_path, tiny_budget_ms, trials=6, sampler=None)  # sampler restored from the study
    logs: list[str] = []
    summary = S.search(cfg2, log=logs.append)
    assert summary["finished"] == 6 and any("resuming" in m and "random" in m for m in logs)
    trials = St.load_study(cfg.storage, "t").trials
    assert len({t.user_attrs["genome_id"] for t in trials}) == 6, "six distinct architectures"


def test_a_resumed_sampler_does_not_replay_its_first_proposals(tmp_path, tiny_budget_ms):
    """Killed (here: stopped) after 3 trials and resumed: the restarted sampler must not propose the first run's
    genomes again, and a duplicate it does propose never takes one of the --trials slots."""
    S.search(_cfg(tmp_path, tiny_budget_ms, trials=3), log=lambda s: None)
    summary = S.search(_cfg(tmp_path, tiny_budget_ms, trials=6, sampler=None), log=lambda s: None)
    trials = St.load_study(f"sqlite:///{tmp_path / 'study.db'}", "t").trials
    first = [t.user_attrs["genome_id"] for t in trials[:3]]
    again = [t.user_attrs["genome_id"] for t in trials[3:6]]
    assert again != first, "the resumed sampler replayed its seeded start"
    assert summary["finished"] == 6 and len({t.user_attrs["genome_id"] for t in trials}) == 6
    assert S.resumed_seed(3, 3) != 3 and S.resumed_seed(3, 3) == S.resumed_seed(3, 3)


def test_a_space_smaller_than_trials_ends_with_every_architecture_once(tmp_path, tiny_budget_ms, monkeypatch):
    from nasseg.search import driver

    monkeypatch.setattr(driver, "MAX_DUPLICATES_IN_A_ROW", 30)
    logs: list[str] = []
    summary = S.search(_cfg(tmp_path, tiny_budget_ms, trials=40, steps=1), log=logs.append)
    assert summary["exhausted"] and summary["finished"] == 12  # 2 widths x 2 depths x (conv, mbconv x 2 expansions)
    assert any("already evaluated genomes in a row" in m for m in logs)


def test_resume_with_other_settings_is_refused(tmp_path, tiny_budget_ms):
    S.search(_cfg(tmp_path, tiny_budget_ms, trials=1), log=lambda s: None)
    with pytest.raises(ConfigError, match="latency_budget_ms"):
        S.search(_cfg(tmp_path, tiny_budget_ms * 2, trials=2), log=lambda s: None)
    with pytest.raises(ConfigError, match="sampler"):
        S.search(_cfg(tmp_path, tiny_budget_ms, trials=2, sampler="tpe"), log=lambda s: None)


def test_early_stopped_trial_is_pruned_and_never_best(tmp_path, tiny_budget_ms):
    cfg = _cfg(tmp_path, tiny_budget_ms, trials=30)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = St.open_storage(cfg.storage)
    study = optuna.create_study(study_name="t", storage=storage, sampler=S.make_sampler("random", 0))
    driver = S.Driver(cfg, study, load_space(TINY), 11, lambda s: None)
    jobs = driver.next_batch(2)
    assert len(jobs) == 2
    full = S.run_job(jobs[0].payload())
    driver.complete(jobs[0], full)
    # the second one stops early with a *higher* mIoU than the first: it must still never be best
    stopped = {"ok": True, "metrics": {"miou": 0.99, "steps_done": 3, "status": "stopped", "train_seconds": 0.1}}
    driver.complete(jobs[1], stopped, stopped=True)
    t1 = study.trials[jobs[1].number]
    assert t1.state == optuna.trial.TrialState.PRUNED and t1.user_attrs[S.STATUS_KEY] == "stopped"
    assert t1.user_attrs["fidelity"] == {"steps": 3, "planned_steps": 6, "resolution": [32, 64], "full": False}
    assert [t.number for t in study.best_trials] == [jobs[0].number]


def test_failed_proxy_becomes_failed_trial_with_reason(tmp_path, tiny_budget_ms):
    cfg = _cfg(tmp_path, tiny_budget_ms, trials=5)
    storage = St.open_storage(cfg.storage)
    study = optuna.create_study(study_name="t", storage=storage, sampler=S.make_sampler("random", 0))
    driver = S.Driver(cfg, study, load_space(TINY), 11, lambda s: None)
    job = driver.next_batch(1)[0]
    payload = job.payload() | {"dataset": "folder:/does/not/exist"}
    res = S.run_job(payload)
    assert not res["ok"] and "DatasetError" in res["error"]
    driver.complete(job, res)
    t = study.trials[job.number]
    assert t.state == optuna.trial.TrialState.FAIL and "DatasetError" in t.user_attrs["reason"]
    assert driver.finished() == sum(t.state.is_finished() and "reused_from" not in t.user_attrs
                                    for t in study.trials)  # failed trials count as done; duplicates do not
    assert driver.remaining() == 5 - driver.finished()


def test_second_driver_on_the_same_sqlite_file_fails_fast(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with St.driver_lock(url):
        t0 = time.perf_counter()
        with pytest.raises(StorageError, match="another nasseg driver"):
            with St.driver_lock(url):
                pass
        assert time.perf_counter() - t0 < 1.0


def test_missing_study_and_masked_password(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(StorageError, match="does not exist"):
        St.load_study(url, "x")
    assert St.mask_url("postgresql://bob:s3cret@db.example/nas") == "postgresql://bob:***@db.example/nas"


@pytest.mark.slow
def test_sigkilled_driver_resumes_without_loss_or_duplicates(tmp_path, tiny_budget_ms):
    """Kill the search with SIGKILL mid-run, rerun the same command: exactly N finished trials."""
    db = tmp_path / "study.db"
    cmd = [sys.executable, "-m", "nasseg", "search", "--space", TINY, "--latency-budget-ms", f"{tiny_budget_ms:.4f}",
           "--latency-resolution", "64x128", "--latency-threads", "1", "--trials", "8", "--storage",
           f"sqlite:///{db}", "--study", "k", "--proxy-resolution", "32x64", "--proxy-steps", "40", "--proxy-batch",
           "2", "--sampler", "random", "--seed", "5", "--executor", "local", "--no-progress"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 600  # generous: CI machines can be loaded
    done = 0
    while time.time() < deadline:  # wait until a few trials are told and one is running
        time.sleep(0.3)
        if proc.poll() is not None:
            pytest.fail("the search ended before it could be killed:\n" + (tmp_path / "first.log").read_text()[-3000:])
        if db.exists():
            try:  # read-only: a read-write open would race the driver's table creation
                st = St.load_study(f"sqlite:///{db}", "k", readonly=True)
            except Exception:
                continue
            done = sum(t.state.is_finished() for t in st.trials)
            if done >= 3 and any(t.state == optuna.trial.TrialState.RUNNING for t in st.trials):
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert done >= 3, "the search did not get far enough before the kill"
    finished_before = {t.number: (t.state, t.values) for t in
                       optuna.load_study(study_name="k", storage=f"sqlite:///{db}").trials if t.state.is_finished()}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{db}")
    counted = [t for t in study.trials if t.state.is_finished() and t.user_attrs.get(S.STATUS_KEY) != "crashed"
               and "reused_from" not in t.user_attrs]
    assert len(counted) == 8 == len({t.user_attrs["genome_id"] for t in counted})
    for n, (state, values) in finished_before.items():  # nothing told before the kill was lost or changed
        assert study.trials[n].state == state and study.trials[n].values == values
    crashed = [t for t in study.trials if t.user_attrs.get(S.STATUS_KEY) == "crashed"]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in crashed)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    trained = [t.user_attrs["genome_id"] for t in study.trials if t.user_attrs.get(S.STATUS_KEY) == "trained"]
    assert len(trained) == len(set(trained))


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="latency-budget-ms"):
        _cfg(tmp_path, -1.0).validate()
    with pytest.raises(ConfigError, match="latency-budget-ms is required"):
        _cfg(tmp_path, None).validate()
    with pytest.raises(ConfigError, match="trials"):
        _cfg(tmp_path, 1.0, trials=0).validate()
    assert torch.get_num_threads() >= 1
