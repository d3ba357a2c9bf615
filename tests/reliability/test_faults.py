"""Faults: proxies that raise, diverge or run out of memory; Ray workers and the driver killed mid-run; a study
database copied while it is written.  Nothing is mocked: real processes, real signals, real databases."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from nasseg import faults
from nasseg import search as S
from nasseg import study as St
from nasseg.errors import StorageError
from nasseg.train import Recipe
from tests.conftest import TINY_SPACE
from tests.reliability.common import counted, distinct_evaluated, env, finished, search_cmd
from tests.reliability.servers import _with_descendants


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env(**kw), timeout=600, stdin=subprocess.DEVNULL)


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return St.load_study(url, name).get_trials(deepcopy=False)


# ------------------------------------------------------------------------------------ failing proxies
def _search(tmp_path: Path, name: str, trials: int, **recipe_kw) -> tuple[dict, list[str]]:
    """The tiny search in this process (pareto mode: every candidate trains), with its log lines."""
    recipe = Recipe(**{**dict(resolution=(32, 64), steps=8, batch_size=2, eval_every=0, warmup_steps=0, amp=False,
                              train_length=8, val_length=4, log_every=1), **recipe_kw})
    cfg = S.SearchConfig(space=TINY_SPACE, storage=f"sqlite:///{tmp_path / 'study.db'}", study=name, trials=trials,
                         latency_budget_ms=None, mode="pareto",
                         latency=S.LatencySpec(resolution=(64, 128), threads=1, warmup=3), sampler="random",
                         seed=5, recipe=recipe, executor="local", progress=False, artifacts=str(tmp_path / "art"))
    logs: list[str] = []
    return S.search(cfg, log=logs.append), logs


def test_proxy_that_raises_becomes_a_failed_trial_and_the_search_goes_on(tmp_path):
    """Trial 1's weights folder is blocked by a file: its worker raises while saving; the others train."""
    (tmp_path / "art" / "r").mkdir(parents=True)
    (tmp_path / "art" / "r" / "trial_00001").write_text("not a folder")
    summary, logs = _search(tmp_path, "r", 4)
    assert summary["finished"] == 4 and summary["counts"]["failed"] == 1
    trials = _trials(f"sqlite:///{tmp_path / 'study.db'}", "r")
    t1 = trials[1]
    assert t1.state == optuna.trial.TrialState.FAIL and t1.user_attrs[S.STATUS_KEY] == "failed"
    assert "trial_00001" in t1.user_attrs["reason"] and "Error" in t1.user_attrs["reason"]
    assert "Traceback" in t1.user_attrs["traceback"]
    assert [t for t in trials[2:] if t.state == optuna.trial.TrialState.COMPLETE], "the search must go on"
    assert any(m.startswith("trial 1 failed: ") for m in logs)


def test_diverging_proxy_becomes_a_failed_trial_with_the_step(tmp_path):
    """A learning rate of 1e12 turns the loss into NaN: TrainingDiverged, recorded as failed, search finishes."""
    summary, _ = _search(tmp_path, "d", 3, lr=1e12, steps=12)
    assert summary["finished"] == 3 and summary["counts"]["failed"] == 3
    for t in _trials(f"sqlite:///{tmp_path / 'study.db'}", "d"):
        assert t.state == optuna.trial.TrialState.FAIL and t.values is None
        assert t.user_attrs["reason"].startswith("TrainingDiverged: training diverged: loss = nan at step")
        assert "miou" not in t.user_attrs


MEMORY_RUN = r"""
import json, resource, sys
import torch
from nasseg import search as S
from nasseg import study as St
from nasseg import faults
from nasseg.train import Recipe

torch.set_num_threads(1)
db, space, extra_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, vm + extra_bytes))  # this process and its workers
recipe = Recipe(resolution=(256, 512), steps=2, batch_size=4, eval_every=0, warmup_steps=0, amp=False,
                train_length=8, val_length=2, log_every=1, num_workers=0)
cfg = S.SearchConfig(space=space, storage=f"sqlite:///{db}", study="m", trials=6, latency_budget_ms=None,
                     mode="pareto", latency=S.LatencySpec(resolution=(64, 128), threads=1, warmup=3),
                     sampler="random", seed=4, recipe=recipe, executor="local", progress=False)
print(json.dumps(S.search(cfg, log=lambda s: print(s, file=sys.stderr))["counts"]))
"""


def test_proxy_out_of_memory_becomes_a_failed_trial_and_the_search_goes_on(tmp_path):
    """Address space limited to 700 MB above the start-up size: the 256-channel candidates (about 1 GB at
    256x512, batch 4) cannot allocate and fail with 'out of memory'; the 8-channel ones train."""
    db = tmp_path / "study.db"
    out = subprocess.run([sys.executable, "-c", MEMORY_RUN, str(db), TINY_SPACE, str(700 * 2**20)],
                         capture_output=True, text=True, timeout=600, env=env())
    assert out.returncode == 0, out.stderr[-3000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    trials = _trials(f"sqlite:///{db}", "m")
    oom = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert oom and done and counts["failed"] == len(oom)
    assert len([t for t in trials if "reused_from" not in t.user_attrs]) == 6  # duplicates are not counted
    for t in oom:
        assert t.user_attrs["reason"].startswith("out of memory"), t.user_attrs["reason"]
        assert t.user_attrs["genome_json"] and "x256" in t.user_attrs["genome"]
    assert all("x256" not in t.user_attrs["genome"] for t in done if t.user_attrs[S.STATUS_KEY] == "trained")
    assert max(t.number for t in done) > min(t.number for t in oom), "a trial must complete after an OOM one"


@pytest.mark.slow
def test_ray_worker_killed_mid_trial_is_retried_and_the_search_goes_on(tmp_path):
    """SIGKILL the Ray Tune worker process while it trains a proxy: Tune retries the trial on a new worker
    (FailureConfig(max_failures=1)); the search finishes with every trial told, none left running."""
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    cmd = search_cmd(url, "rk", 3, steps=150)
    cmd[cmd.index("--executor") + 1] = "ray"
    cmd += ["--concurrency", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=tmp_path)
    killed, deadline = None, time.time() + 300
    try:
        while killed is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            for pid in _with_descendants([proc.pid]):  # ray.init() started the local cluster as children
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_text()
                except OSError:
                    continue
                if title.startswith("ray::ImplicitFunc.train") and _in_flight(db):
                    time.sleep(1.0)  # well inside the proxy's training loop
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
                    break
        _, err = proc.communicate(timeout=600)
    finally:
        for pid in _with_descendants([proc.pid]) if proc.poll() is None else []:
            os.kill(pid, signal.SIGKILL)
    assert killed is not None, "no Ray worker was seen training"
    assert proc.returncode == 0, err[-3000:]
    trials = _trials(url, "rk")
    assert len([t for t in trials if "reused_from" not in t.user_attrs]) == 3
    assert all(t.state.is_finished() for t in trials)
    for t in trials:
        if t.state == optuna.trial.TrialState.FAIL:  # retried and died again: failed with a reason
            assert "Ray worker died" in t.user_attrs["reason"]
        elif t.user_attrs[S.STATUS_KEY] == "trained":
            assert t.user_attrs["worker"]["pid"] != killed  # finished on the worker that replaced it
            assert t.user_attrs["worker"]["ray_node_id"]


def _in_flight(db: Path) -> int:
    """RUNNING trials that were measured and handed to a worker (read-only, beside the driver)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id"
                               " WHERE t.state = 'RUNNING' AND a.key = 'latency'").fetchone()[0]
    except sqlite3.Error:
        return 0


# ------------------------------------------------------------------------------------- killed driver
# (point, N): SIGKILL the driver the N-th time it reaches point; "commit" is inside a writing transaction.
# The first kill lands in the 2nd write, between create_study and storing the study's settings.
KILLS_SQLITE = [("commit", 2), ("measured", 2), ("recover", 1), ("result", 1), ("commit", None), ("after_tell", 3),
                ("ask", 2)]
KILLS_POSTGRES = [("commit", 2), ("sampled", 3), ("before_tell", 2), ("recover", 1), ("commit", None)]


@pytest.mark.slow
def test_driver_sigkilled_at_many_points_loses_and_duplicates_nothing(storage_url, tiny_budget_ms):
    """Kill the driver with SIGKILL at each point in turn (including inside DB writes), restart the same
    command each time: no finished trial is lost or changed, no genome is trained twice, and the final run
    ends with exactly --trials counted trials and nothing left running."""
    total = 12
    rng = random.Random(7)
    kills = KILLS_SQLITE if storage_url.startswith("sqlite") else KILLS_POSTGRES
    cmd = search_cmd(storage_url, "k", total, budget_ms=tiny_budget_ms)
    before: dict[int, tuple] = {}
    survived = 0
    for point, n in kills:
        n = n if n is not None else rng.randint(3, 12)
        out = _run(cmd, **{faults.KILL_ENV: f"{point}:{n}"})
        assert out.returncode == -signal.SIGKILL, f"{point}:{n} was not reached: {out.stderr[-2000:]}"
        survived += 1
        study = St.load_study(storage_url, "k")
        if (point, n) == ("commit", 2):  # killed while storing the new study's settings: adopted on restart
            assert S.META_KEY not in study.user_attrs and not study.trials
        now = finished(study)
        assert {k: now[k] for k in before} == before, f"a finished trial changed after the kill at {point}:{n}"
        before = now
        assert counted(study) < total, "the kills must all land before the study is complete"
    out = _run(cmd)
    assert out.returncode == 0, out.stderr[-3000:]
    study = St.load_study(storage_url, "k")
    trials = study.get_trials(deepcopy=False)
    assert {k: finished(study)[k] for k in before} == before
    assert counted(study) == total
    assert distinct_evaluated(study) == total, "a sampler's duplicate took a slot of --trials"
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    trained = [t.user_attrs["genome_id"] for t in trials if t.user_attrs.get(S.STATUS_KEY) == "trained"]
    assert len(trained) == len(set(trained)), "a genome was trained twice"
    crashed = [t for t in trials if t.user_attrs.get(S.STATUS_KEY) == "crashed"]
    assert crashed and all(t.state == optuna.trial.TrialState.FAIL for t in crashed)
    requeued = {t.user_attrs.get("requeued_from") for t in trials}
    assert all(t.number in requeued for t in crashed if t.params), "a crashed trial's genome was not re-queued"
    meta = study.user_attrs[S.META_KEY]  # the study adopted after the kill between create and settings
    assert meta["kind"] == "search" and meta["latency_budget_ms"] == pytest.approx(tiny_budget_ms, abs=1e-4)
    assert survived == len(kills)


# ------------------------------------------------------------------------------------- copied database
@pytest.mark.slow
def test_study_db_copied_while_being_written_opens_read_only(tmp_path):
    """`cp study.db` again and again while a search writes it: every copy opens read-only and shows what the
    study held then (the driver moves the WAL into the file after each result), and reading a copy does
    not modify it."""
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    proc = subprocess.Popen(search_cmd(url, "c", 6, steps=12), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env())
    copies: list[Path] = []
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and len(copies) < 30:
        time.sleep(0.2)
        if copies or (db.exists() and _finished_count(db) > 0):  # from the first told result on
            dst = tmp_path / f"copy{len(copies)}.db"
            shutil.copy(db, dst)
            copies.append(dst)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert len(copies) >= 3, "the search finished before it could be copied"
    final = {t.number: t.state for t in _trials(url, "c")}
    seen = []
    for copy in copies:
        digest = copy.read_bytes()
        try:
            study = St.load_study(f"sqlite:///{copy}", "c", readonly=True)
        except StorageError as e:  # only a copy torn by a concurrent page write may be refused, in one line
            assert "\n" not in str(e) and "cannot open storage" in str(e)
            continue
        told = {t.number: t.state for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        assert all(final[n] == state for n, state in told.items())  # a prefix of the real study
        seen.append(len(told))
        assert copy.read_bytes() == digest, "reading a copy modified it"
    assert len(seen) >= len(copies) - 1 and seen[-1] >= 1 and seen == sorted(seen)
    with pytest.raises(optuna.exceptions.StorageInternalError):  # read-only means read-only
        St.load_study(f"sqlite:///{copies[-1]}", "c", readonly=True).set_user_attr("x", 1)


def _finished_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state != 'RUNNING'").fetchone()[0]
    except sqlite3.Error:
        return 0
