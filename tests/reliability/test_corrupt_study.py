"""A study file that is truncated, has a corrupt page, or is not a SQLite database at all: ``search``, ``status``
and ``export`` each refuse it in one line naming the file, exit 2, and leave its bytes exactly as they were
(nothing overwritten, no journal created beside it, nothing "repaired").  Real files, real commands."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from pathlib import Path

import optuna
import pytest

from nasseg.cli import main
from tests.conftest import TINY_SPACE


def _study_file(path: Path) -> None:
    """A real study of several pages (12 trials with long attributes), then one self-contained file."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}", directions=["maximize", "minimize"])
    for i in range(12):
        t = study.ask()
        t.suggest_int("stages.1.width", 8, 256)
        t.set_user_attr("genome", f"v1|conv1x{i}s2|" + "x" * 1500)
        study.tell(t, [0.1 * (i % 7), 1.0 + i])
    del study
    import gc

    gc.collect()


def _truncate(p: Path, size: int) -> None:
    with open(p, "r+b") as f:
        f.truncate(size)


def _overwrite(p: Path, offset: int, data: bytes) -> None:
    with open(p, "r+b") as f:
        f.seek(offset)
        f.write(data)


# name -> (how to damage a copy of a good study file, what the one line must say)
DAMAGE = {
    "truncated to half": (lambda p: _truncate(p, p.stat().st_size // 2), "is truncated or corrupt"),
    "truncated to one page": (lambda p: _truncate(p, 4096), "is truncated or corrupt"),
    "truncated mid-page": (lambda p: _truncate(p, p.stat().st_size - 1000), "is truncated or corrupt"),
    "a corrupt page": (lambda p: _overwrite(p, 2 * 4096, b"\xff" * 4096), "is truncated or corrupt"),
    "header then garbage": (lambda p: _overwrite(p, 100, os.urandom(p.stat().st_size - 100)),
                            "is truncated or corrupt"),
    "random bytes": (lambda p: p.write_bytes(os.urandom(9000)), "is not a SQLite database"),
    "a text file": (lambda p: p.write_text("trial,miou\n1,0.5\n" * 300), "is not a SQLite database"),
}


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def _commands(url: str, out: Path) -> dict[str, list[str]]:
    return {
        "status": ["status", "--storage", url, "--study", "s"],
        "export": ["export", "--storage", url, "--study", "s", "--out", str(out)],
        "search": ["search", "--space", TINY_SPACE, "--mode", "pareto", "--latency-resolution", "64x128",
                   "--latency-threads", "1", "--trials", "50", "--storage", url, "--study", "s",
                   "--proxy-resolution", "32x64", "--proxy-steps", "2", "--proxy-batch", "2", "--sampler", "random",
                   "--executor", "local", "--no-progress"],
    }


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "study.db"
    _study_file(path)
    assert path.stat().st_size > 8 * 4096, "the study must span several pages for the damage to hit data"
    return path


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_study_file_is_refused_in_one_line_and_never_touched(good, tmp_path, damage):
    hurt, must = DAMAGE[damage]
    path = tmp_path / "study.db"
    shutil.copy(good, path)
    hurt(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"sqlite:///{path}"
    for verb, argv in _commands(url, tmp_path / "export").items():
        code, err = _cli(argv)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2, f"{verb}: {err}"
        assert len(lines) == 1 and lines[0].startswith("nasseg: error: "), f"{verb}: {lines}"
        assert str(path) in lines[0] and must in lines[0] and "left as it is" in lines[0], f"{verb}: {lines[0]}"
        assert "Traceback" not in err and "[SQL:" not in err
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{verb} modified the damaged file"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"], f"{verb} wrote beside the file"


def test_the_undamaged_copy_still_opens(good, tmp_path):
    """The check refuses damage, not study files: the same file undamaged is read by status (exit 0)."""
    path = tmp_path / "study.db"
    shutil.copy(good, path)
    code, err = _cli(_commands(f"sqlite:///{path}", tmp_path / "export")["status"])
    assert code == 0, err
