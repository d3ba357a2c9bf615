"""A disk that fills up under a running search: the artifacts folder, and separately the SQLite study, on a small
tmpfs the test mounts (root only; skipped with the reason otherwise) and fills while the search runs.  The search
stops with one line naming the path, exit 2; the study passes SQLite's integrity check and keeps every finished
trial; after the filler is deleted the same command resumes to --trials.  Real mounts, real processes."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from nasseg import search as S
from nasseg import study as St
from tests.reliability.common import counted, env, finished, search_cmd

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted on a temp dir (unmounted and removed afterwards)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the disk-full tests fill a filesystem of their own)")
    mnt = Path(tempfile.mkdtemp(prefix="nasseg-full-"))
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({(out.stderr or out.stdout).strip()[:200]}): the disk-full tests "
                    "need a filesystem of their own to fill")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        with contextlib.suppress(OSError):
            mnt.rmdir()


def fill(folder: Path) -> Path:
    """Write a filler file in ``folder`` until its filesystem has no byte left."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        with contextlib.suppress(OSError):
            while True:  # the last few bytes
                f.write(b"\0" * 512)
    st = os.statvfs(folder)
    assert st.f_bavail == 0, "the filesystem is not full"
    return filler


def told(db: Path) -> int:
    """Finished trials of a SQLite study, read-only beside the running driver."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state != 'RUNNING'").fetchone()[0]
    except sqlite3.Error:
        return 0


def run_until_full(cmd: list[str], db: Path, folder: Path, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Start the search, fill ``folder``'s filesystem once the first trial is told, wait for the search to end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=cwd)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and told(db) < 1:
        time.sleep(0.1)
    assert proc.poll() is None, "the search ended before the disk could be filled: " + proc.stderr.read()[-2000:]
    fill(folder)
    filled_at = time.time()
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), filled_at


FAST = ("--latency-tolerance", "0")  # a fixed 30 timed runs per candidate: what is tested here is storage


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("nasseg: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def integrity(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]


def check_resumed(url: str, before: dict, total: int) -> list[optuna.trial.FrozenTrial]:
    study = St.load_study(url, "f")
    trials = study.get_trials(deepcopy=False)
    now = finished(study)
    assert {k: now[k] for k in before} == before, "a finished trial was lost or changed"
    assert counted(study) == total
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    trained = [t.user_attrs["genome_id"] for t in trials if t.user_attrs.get(S.STATUS_KEY) == "trained"]
    assert len(trained) == len(set(trained)), "a genome was told trained twice"
    return trials


def test_study_disk_fills_up_mid_search(tmp_path):
    """The SQLite study on a 3 MB tmpfs filled after the first told trial (artifacts elsewhere)."""
    total = 5
    with small_filesystem("3m") as fs:
        db = fs / "study.db"
        url = f"sqlite:///{db}"
        cmd = search_cmd(url, "f", total, extra=("--artifacts", str(tmp_path / "art"), *FAST))
        out, _ = run_until_full(cmd, db, fs, tmp_path)
        assert out.returncode == 2, out.stderr[-3000:]
        line = error_line(out.stderr)
        print("\n" + line)
        assert f"no space left on the device holding {db}" in line and "run the same command again" in line, line
        assert integrity(db) == ["ok"]
        before = finished(St.load_study(url, "f"))
        assert 1 <= len(before) < total
        (fs / "filler").unlink()
        again = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        check_resumed(url, before, total)
        assert integrity(db) == ["ok"]
        print(f"\nFIGURES disk-full study: faults injected 1, finished trials before {len(before)}, "
              f"lost {len(before) - sum(k in finished(St.load_study(url, 'f')) for k in before)}")


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_artifacts_disk_fills_up_mid_search(tmp_path, executor):
    """The artifacts folder (proxy weights) on an 8 MB tmpfs filled after the first told trial (study elsewhere):
    the trial whose weights cannot be written is re-queued (not failed), no partial weights file is left.  On Ray
    the worker meets the full disk and the driver stops the search the same way (Tune itself would only log it)."""
    total = 3
    with small_filesystem("8m") as fs:
        db = tmp_path / "study.db"
        url = f"sqlite:///{db}"
        art = fs / "art"
        cmd = search_cmd(url, "f", total, extra=("--artifacts", str(art), *FAST))
        if executor == "ray":
            cmd[cmd.index("--executor") + 1] = "ray"
            cmd += ["--concurrency", "1"]
        out, _ = run_until_full(cmd, db, fs, tmp_path)
        assert out.returncode == 2, out.stderr[-3000:]
        line = error_line(out.stderr)
        print("\n" + line)
        assert f"no space left on the device holding {art}/" in line and "model.pt" in line, line
        assert "run the same command again" in line
        assert integrity(db) == ["ok"]
        study = St.load_study(url, "f")
        before = finished(study)
        crashed = [t for t in study.trials if t.user_attrs.get(S.STATUS_KEY) == "crashed"]
        assert len(crashed) == 1 and "no space left" in crashed[0].user_attrs["reason"]
        assert crashed[0].state == optuna.trial.TrialState.FAIL
        assert [t.user_attrs.get("requeued_from") for t in study.trials if t.state.name == "WAITING"] == \
            [crashed[0].number], "its genome must be queued again"
        assert not list(art.rglob("*.tmp*")), "a half-written weights file was left"
        if executor == "ray":  # resuming is the same on both executors (tested on the local one): save a Ray start
            return
        (fs / "filler").unlink()
        again = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        trials = check_resumed(url, before, total)
        for t in trials:
            if t.user_attrs.get(S.STATUS_KEY) == "trained":
                assert Path(t.user_attrs["weights_path"]).is_file()
        redo = [t for t in trials if t.user_attrs.get("requeued_from") == crashed[0].number]
        assert redo and redo[0].user_attrs[S.STATUS_KEY] == "trained", "the re-queued genome was not evaluated"


def test_filler_really_fills(tmp_path):
    """The helper itself: after fill(), writing one more byte fails with ENOSPC."""
    with small_filesystem("1m") as fs:
        fill(fs)
        with pytest.raises(OSError) as e, open(fs / "more", "wb") as f:
            f.write(b"x" * 4096)
            f.flush()
        assert e.value.errno == errno.ENOSPC
