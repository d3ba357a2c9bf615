"""The study storage on both backends: SQLite files and a real PostgreSQL server (nothing mocked)."""

from __future__ import annotations

import optuna
import pytest

from nasseg import search as S
from nasseg import study as St
from nasseg.errors import StorageError
from nasseg.space import load_space
from tests.conftest import TINY_SPACE
from tests.test_search import _cfg, _check_study

# nasseg drives PostgreSQL studies by ask/tell with heartbeats on purpose (search() silences this itself)
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


def test_open_creates_and_reopens(storage_url):
    storage = St.open_storage(storage_url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="a", storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    trial.set_user_attr("genome", "v1|x")
    study.tell(trial, [0.5, 3.0])
    again = St.load_study(storage_url, "a", readonly=False)
    assert [t.values for t in again.trials] == [[0.5, 3.0]] and again.trials[0].user_attrs == {"genome": "v1|x"}
    assert St.study_names(storage_url) == ["a"]


def test_read_only_load_sees_everything_and_writes_nothing(storage_url):
    storage = St.open_storage(storage_url)
    study = optuna.create_study(study_name="r", storage=storage)
    study.tell(study.ask(), 1.0)
    ro = St.load_study(storage_url, "r", readonly=True)
    assert [t.value for t in ro.trials] == [1.0]
    with pytest.raises(optuna.exceptions.StorageInternalError):  # SQLite mode=ro / PostgreSQL read-only
        ro.set_user_attr("x", 1)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        ro._storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "another")
    assert len(St.load_study(storage_url, "r").trials) == 1


def test_missing_study_lists_what_exists(storage_url):
    optuna.create_study(study_name="here", storage=St.open_storage(storage_url))
    with pytest.raises(StorageError, match=r"'gone' does not exist .*studies there: here"):
        St.load_study(storage_url, "gone")


def test_read_only_open_of_an_empty_database_says_so(storage_url):
    if storage_url.startswith("sqlite"):
        St.sqlite_path(storage_url).write_bytes(b"")  # an empty file is an empty SQLite database
    with pytest.raises(StorageError, match="holds no Optuna study tables"):
        St.load_study(storage_url, "x", readonly=True)


def test_search_create_check_and_resume(storage_url, tmp_path, tiny_budget_ms):
    """The measured-first search on each backend: rejections, training, dedup; then resume to more trials."""
    cfg = _cfg(tmp_path, tiny_budget_ms, storage=storage_url, trials=8)
    summary = S.search(cfg, log=lambda s: None)
    assert summary["finished"] == 8 and summary["storage"] == St.mask_url(storage_url)
    _check_study(St.load_study(storage_url, "t"), tiny_budget_ms)
    logs: list[str] = []
    summary = S.search(_cfg(tmp_path, tiny_budget_ms, storage=storage_url, trials=11, sampler=None), log=logs.append)
    assert summary["finished"] == 11 and any("resuming" in m for m in logs)
    study = St.load_study(storage_url, "t")
    assert len({t.user_attrs["genome_id"] for t in study.trials if "reused_from" not in t.user_attrs}) == 11
    _check_study(study, tiny_budget_ms)


def test_driver_tells_failed_and_stopped_trials(storage_url, tmp_path, tiny_budget_ms):
    cfg = _cfg(tmp_path, tiny_budget_ms, storage=storage_url, trials=30)
    study = optuna.create_study(study_name="t", storage=St.open_storage(storage_url),
                                sampler=S.make_sampler("random", 0))
    driver = S.Driver(cfg, study, load_space(TINY_SPACE), 11, lambda s: None)
    a, b = driver.next_batch(2)
    driver.complete(a, S.run_job(a.payload() | {"dataset": "folder:/does/not/exist"}))
    stopped = {"ok": True, "metrics": {"miou": 0.99, "steps_done": 3, "status": "stopped", "train_seconds": 0.1}}
    driver.complete(b, stopped, stopped=True)
    ro = St.load_study(storage_url, "t", readonly=True)
    ta, tb = ro.trials[a.number], ro.trials[b.number]
    assert ta.state == optuna.trial.TrialState.FAIL and "DatasetError" in ta.user_attrs["reason"]
    assert ta.user_attrs["worker"]["pid"] > 0  # where it ran, recorded from the worker's result
    assert tb.state == optuna.trial.TrialState.PRUNED and tb.user_attrs[S.STATUS_KEY] == "stopped"
    assert not ro.best_trials


def test_postgresql_url_without_a_driver_suffix_uses_the_installed_driver(postgres_url):
    """SQLAlchemy >= 2.1 maps a bare postgresql:// to psycopg 3; nasseg picks whichever driver is installed."""
    assert postgres_url.startswith("postgresql://")
    target = St.postgres_driver_url(postgres_url)
    assert target.split("://")[0] in ("postgresql+psycopg2", "postgresql+psycopg")
    assert St.open_storage(postgres_url).engine.dialect.driver in ("psycopg2", "psycopg")


def test_postgresql_recovers_trials_of_a_dead_driver_on_this_host_at_once(postgres_url, tmp_path, tiny_budget_ms):
    """On PostgreSQL a RUNNING trial is normally left alone until its heartbeat is older than the grace period
    (another driver may own it); one whose driver ran here under a pid that no longer exists is crashed and
    re-queued right away."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study = optuna.create_study(study_name="t", storage=St.open_storage(postgres_url))
    import socket

    alive = study.ask()
    alive.set_user_attr("driver", f"{socket.gethostname()}:1")  # pid 1 exists: maybe another driver's
    gone = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    gone.set_user_attr("driver", f"{socket.gethostname()}:{dead.stdout.strip()}")
    assert St.recover_crashed(study, postgres_url, lambda s: None) == 1
    states = {t.number: (t.state, t.user_attrs.get(S.STATUS_KEY)) for t in study.trials}
    assert states[alive.number] == (optuna.trial.TrialState.RUNNING, None)
    assert states[gone.number] == (optuna.trial.TrialState.FAIL, "crashed")
    assert study.trials[-1].state == optuna.trial.TrialState.WAITING  # its genome re-queued
    assert study.trials[-1].user_attrs["requeued_from"] == gone.number


def test_read_only_open_while_a_first_search_creates_the_schema_says_so(postgres_url):
    """The moment a first driver has created Optuna's tables but not yet written their version row: a reader
    (status, export, a second driver's fidelity lookup) opens read-only, Optuna tries to write that row, and the
    refusal comes back wrapped in Optuna's StorageInternalError; it must read as one StorageError line, not a
    traceback (the soak caught a driver dying of it)."""
    import sqlalchemy

    St.open_storage(postgres_url)  # a writer creates the schema (and the version row)
    engine = sqlalchemy.create_engine(St.postgres_driver_url(postgres_url))
    with engine.begin() as con:
        con.exec_driver_sql("DELETE FROM version_info")  # ... as it is just before that row is written
    engine.dispose()
    with pytest.raises(StorageError, match="holds no Optuna study tables"):
        St.open_storage(postgres_url, readonly=True)
