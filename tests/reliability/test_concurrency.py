"""Concurrency: many writers on one PostgreSQL study; one driver per SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from nasseg import study as St
from tests.conftest import TINY_SPACE

WORKERS = 32
TRIALS_PER_WORKER = 6

# One parent imports optuna and nasseg once, then forks WORKERS processes.  Each opens its own storage with
# nasseg's settings (St.open_storage: pool pre-ping, heartbeats) and runs an ask / set_user_attr / tell loop
# exactly like the driver, all of them released at the same moment.  Any exception exits non-zero.
STRESS = r"""
import json, os, sys, time, traceback
import optuna
from nasseg import search as S
from nasseg import study as St

url, study_name, workers, per_worker, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
optuna.logging.set_verbosity(optuna.logging.WARNING)
pids = []
for w in range(workers):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            import warnings
            warnings.simplefilter("ignore")
            study = optuna.load_study(study_name=study_name, storage=St.open_storage(url),
                                      sampler=optuna.samplers.RandomSampler(seed=w))
            while not os.path.exists(go):
                time.sleep(0.005)
            for i in range(per_worker):
                trial = study.ask()
                trial.set_user_attr("writer", [w, i])
                trial.set_user_attr("driver", f"stress:{os.getpid()}")
                x = trial.suggest_float("x", 0.0, 1.0)
                study.tell(trial, w * 1000 + i + x / 10)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    pids.append(pid)
bad = 0
for pid in pids:
    _, status = os.waitpid(pid, 0)
    bad += status != 0
print(json.dumps({"failed_workers": bad}))
"""


def test_32_concurrent_writers_on_one_postgresql_study(postgres_url, tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="stress", storage=St.open_storage(postgres_url), direction="maximize")
    go = tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", STRESS, postgres_url, "stress", str(WORKERS),
                             str(TRIALS_PER_WORKER), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(2.0)  # let every worker connect and wait at the barrier
    go.touch()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"failed_workers": 0}, err[-3000:]
    for word in ("deadlock", "could not serialize", "lock", "Traceback", "StorageInternalError"):
        assert word.lower() not in err.lower(), err[-3000:]

    study = St.load_study(postgres_url, "stress")
    trials = study.get_trials(deepcopy=False)
    expected = WORKERS * TRIALS_PER_WORKER
    assert len(trials) == expected  # nothing lost, nothing extra
    assert sorted(t.number for t in trials) == list(range(expected))  # numbers unique and without gaps
    writers = [tuple(t.user_attrs["writer"]) for t in trials]
    assert len(set(writers)) == expected == len(writers)  # every (worker, i) exactly once
    assert {w for w, _ in writers} == set(range(WORKERS))
    for t in trials:
        w, i = t.user_attrs["writer"]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.value == pytest.approx(w * 1000 + i + t.params["x"] / 10)  # each value landed on its own trial


def _search_cmd(db: Path, trials: int, steps: int) -> list[str]:
    return [sys.executable, "-m", "nasseg", "search", "--space", TINY_SPACE, "--mode", "pareto",
            "--latency-resolution", "64x128", "--latency-threads", "1", "--trials", str(trials), "--storage",
            f"sqlite:///{db}", "--study", "one", "--proxy-resolution", "32x64", "--proxy-steps", str(steps),
            "--proxy-batch", "2", "--sampler", "random", "--seed", "2", "--executor", "local", "--no-progress"]


@pytest.mark.slow
def test_second_driver_on_a_sqlite_file_fails_fast_and_leaves_the_first_intact(tmp_path):
    """The supported SQLite mode is one driver process: a second `nasseg search` on the same file exits 2 at
    once with a one-line message, and the first finishes with an intact database."""
    db = tmp_path / "study.db"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen(_search_cmd(db, 5, 60), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                             text=True)
    lock = db.with_name(db.name + ".lock")
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.exists() and lock.read_text().startswith("pid")):
        time.sleep(0.1)
    assert first.poll() is None, first.stderr.read()[-2000:] if first.stderr else ""
    assert f"pid {first.pid}" in lock.read_text()

    t0 = time.perf_counter()
    second = subprocess.run(_search_cmd(db, 5, 60), capture_output=True, text=True, env=env, timeout=120)
    second_s = time.perf_counter() - t0
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2, second.stderr[-2000:]
    assert len(lines) == 1 and "another nasseg driver" in lines[0] and f"pid {first.pid}" in lines[0], lines
    assert "PostgreSQL" in lines[0] and "Traceback" not in second.stderr
    assert second_s < 30  # no waiting on the lock: start-up (imports, dataset) only
    assert first.poll() is None, "the refused driver must not disturb the running one"

    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    study = St.load_study(f"sqlite:///{db}", "one")
    assert sum(t.state.is_finished() and "reused_from" not in t.user_attrs for t in study.trials) == 5  # distinct
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
