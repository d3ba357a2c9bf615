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


# ------------------------------------------------------------------------------------------- latency backends
@pytest.mark.slow
def test_search_on_onnxruntime_records_eager_and_backend_latency(tmp_path, tiny_budget_ms):
    """A tiny search timed on onnxruntime: the budget applies to it, and every measured trial also holds its eager
    record, both with full provenance; screening says it is off."""
    lat = S.LatencySpec(resolution=LAT_RES, threads=1, warmup=3, backend="onnxruntime", max_seconds=2.0)
    cfg = _cfg(tmp_path, tiny_budget_ms, trials=4, latency=lat, screen=S.ScreenSpec())
    logs: list[str] = []
    S.search(cfg, log=logs.append)
    assert any("screening off with --latency-backend onnxruntime" in m for m in logs)
    study = St.load_study(cfg.storage, "t")
    assert study.user_attrs[S.META_KEY]["latency"]["backend"] == "onnxruntime"
    measured = [t for t in study.trials if "latency" in t.user_attrs and "reused_from" not in t.user_attrs]
    assert len(measured) == 4
    for t in measured:
        ua = t.user_attrs
        ort, eager = ua["latency"], ua["latency_eager"]
        assert ua["latency_backend"] == ort["backend"] == "onnxruntime" and eager["backend"] == "torch"
        assert ort["providers"] == ["CPUExecutionProvider"] and ort["backend_options"]["intra_op_num_threads"] == 1
        assert ort["backend_version"] and eager["backend_version"] == torch.__version__
        for rec in (ort, eager):
            assert rec["method"] == "measured" and rec["runs"] >= 30 and rec["dtype"] == "float32"
            assert rec["median_ci_ms"][0] <= rec["median_ms"] <= rec["median_ci_ms"][1] and rec["stopping"]
            assert "load_avg_before" in rec and "affinity" in rec
        assert ua["latency_ms"] == ort["median_ms"] and ua["latency_eager_ms"] == eager["median_ms"]
        assert ua["latency_decision"] in ("clear", "close")
        if ua[S.STATUS_KEY] == "trained":
            assert ua["latency_ms"] <= tiny_budget_ms
        else:
            assert ua["latency_ms"] > tiny_budget_ms and "(onnxruntime)" in ua["reason"]
    frame = S.trials_frame(study)
    assert set(frame.latency_backend) == {"onnxruntime"} and frame.latency_eager_ms.notna().all()


def _record(samples: list[float]) -> dict:
    from nasseg.latency import latency_stats

    st = latency_stats(samples)
    return {**st, "median_ci_ms": list(st["median_ci_ms"]), "samples_ms": samples, "runs": len(samples),
            "date_utc": "2026-01-01T00:00:00+00:00", "method": "measured"}


def _decider(tmp_path: Path, budget: float, records: list[dict]):
    drv = object.__new__(S.Driver)  # only what _decide reads
    drv.cfg, drv.logs = _cfg(tmp_path, budget), []
    drv.log = drv.logs.append
    it = iter(records)
    drv._latency = lambda *a, **k: next(it)
    return drv


def test_a_budget_inside_the_interval_is_remeasured_before_deciding(tmp_path):
    g = load_space(TINY).random(0)
    spread = [10.0 + 0.1 * (i - 15) for i in range(31)]  # median 10, interval [9.5, 10.5]
    far = _decider(tmp_path, 20.0, [])
    assert far._decide(None, (1, 3, 8, 8), g, _record(spread)) == (_record(spread), "clear") and not far.logs

    again = [10.0] * 400  # the second record pins the median: the pooled interval leaves the budget out
    resolved = _decider(tmp_path, 10.4, [_record(again)])
    rec, decision = resolved._decide(None, (1, 3, 8, 8), g, _record(spread))
    assert decision == "clear" and rec["runs"] == 431 and len(rec["pooled"]) == 2
    assert rec["median_ci_ms"][1] < 10.4 and "measuring again" in resolved.logs[0]

    close = _decider(tmp_path, 10.0, [_record(spread)])
    rec, decision = close._decide(None, (1, 3, 8, 8), g, _record(spread))
    assert decision == "close" and rec["median_ci_ms"][0] <= 10.0 <= rec["median_ci_ms"][1]
    assert [p["runs"] for p in rec["pooled"]] == [31, 31]


@pytest.mark.slow
def test_resuming_with_another_backend_is_refused_but_another_stopping_rule_is_not(tmp_path, tiny_budget_ms):
    S.search(_cfg(tmp_path, tiny_budget_ms, trials=1), log=lambda s: None)
    other = S.LatencySpec(resolution=LAT_RES, threads=1, warmup=3, backend="onnxruntime")
    with pytest.raises(ConfigError, match="latency"):
        S.search(_cfg(tmp_path, tiny_budget_ms, trials=2, latency=other), log=lambda s: None)
    looser = S.LatencySpec(resolution=LAT_RES, threads=1, warmup=3, tolerance=0.1, max_runs=50, pin=False)
    assert S.search(_cfg(tmp_path, tiny_budget_ms, trials=2, latency=looser), log=lambda s: None)["finished"] == 2


def test_latency_defining_reads_old_specs_as_eager():
    old = {"device": "cpu", "resolution": [64, 128], "batch": 1, "threads": 1, "runs": 30, "warmup": 3,
           "dtype": "float32"}
    new = S.LatencySpec(resolution=(64, 128), threads=1, warmup=3)
    assert S.latency_defining(old) == new.defining() == old  # ablation cost keys hash this: unchanged for eager
    assert "backend" in S.LatencySpec(backend="onnxruntime").defining()


@pytest.mark.parametrize("kw,needle", [({"backend": "tvm"}, "--latency-backend = 'tvm'"),
                                       ({"dtype": "float64"}, "--latency-precision"),
                                       ({"tolerance": -0.1}, "--latency-tolerance"),
                                       ({"max_runs": 20}, "--latency-max-runs = 20"),
                                       ({"max_seconds": 0.0}, "--latency-max-seconds")])
def test_bad_latency_settings_are_config_errors(tmp_path, kw, needle):
    with pytest.raises(ConfigError, match=needle):
        _cfg(tmp_path, 1.0, latency=S.LatencySpec(**kw)).validate()
