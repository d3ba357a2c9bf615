"""Shared pieces of the reliability tests: the tiny search as a command, a study's fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import optuna

from nasseg import search as S
from nasseg import study as St
from tests.conftest import TINY_SPACE


def search_cmd(storage: str, study: str, trials: int, *, steps: int = 8, budget_ms: float | None = None,
               extra: tuple[str, ...] = ()) -> list[str]:
    """``nasseg search`` on the tiny space, local executor, random sampler: a few seconds per run."""
    mode = ["--latency-budget-ms", f"{budget_ms:.4f}"] if budget_ms is not None else ["--mode", "pareto"]
    return [sys.executable, "-m", "nasseg", "search", "--space", TINY_SPACE, *mode, "--latency-resolution", "64x128",
            "--latency-threads", "1", "--trials", str(trials), "--storage", storage, "--study", study,
            "--proxy-resolution", "32x64", "--proxy-steps", str(steps), "--proxy-batch", "2", "--sampler", "random",
            "--seed", "5", "--executor", "local", "--no-progress", *extra]


def env(**kw: str) -> dict[str, str]:
    e = dict(os.environ, PYTHONUNBUFFERED="1", **kw)
    e.pop("RAY_ADDRESS", None)
    return e


def finished(study: optuna.Study) -> dict[int, tuple[Any, ...]]:
    """number -> (state, values, status) of every finished trial."""
    return {t.number: (t.state, t.values, t.user_attrs.get(S.STATUS_KEY)) for t in study.get_trials(deepcopy=False)
            if t.state.is_finished()}


def counted(study: optuna.Study) -> int:
    """Trials that count towards --trials (everything finished except crashed ones and a sampler's duplicates,
    as Driver.finished), written out here rather than imported so that the test checks the driver."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished()
               and t.user_attrs.get(S.STATUS_KEY) != "crashed" and "reused_from" not in t.user_attrs)


def distinct_evaluated(study: optuna.Study) -> int:
    """Distinct genomes evaluated (trained, rejected, stopped or failed; crashed and reused copies excluded)."""
    return len({t.user_attrs["genome_id"] for t in study.get_trials(deepcopy=False) if t.state.is_finished()
                and t.user_attrs.get(S.STATUS_KEY) != "crashed" and "reused_from" not in t.user_attrs})


def fingerprint(url: str) -> str:
    """A checksum of a study database: the file's bytes for SQLite, every row of every table for PostgreSQL."""
    path = St.sqlite_path(url)
    if path is not None:
        h = hashlib.sha256()
        for p in (path, path.with_name(path.name + "-wal")):
            if p.exists():
                h.update(p.read_bytes())
        return h.hexdigest()
    import sqlalchemy

    engine = sqlalchemy.create_engine(St.postgres_driver_url(url))
    h = hashlib.sha256()
    with engine.connect() as con:
        tables = [r[0] for r in con.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        for t in tables:
            rows = con.exec_driver_sql(f'SELECT * FROM "{t}"').fetchall()
            h.update(t.encode())
            h.update(json.dumps(sorted(map(repr, rows))).encode())
    engine.dispose()
    return h.hexdigest()


def sqlite_file(url: str) -> Path:
    path = St.sqlite_path(url)
    assert path is not None
    return path
