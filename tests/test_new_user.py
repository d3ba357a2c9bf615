"""What a new user meets first (issue #15): nasseg speaks before Ray, clean exits leave one file, output
options with a bad folder fail in one line, a finished study says so, Ray left behind by a killed driver is
ended by the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasseg.search import ray_session
from tests.conftest import TINY_SPACE


def _cmd(storage: str, trials: int = 3, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nasseg", "search", "--space", TINY_SPACE, "--mode", "pareto",
            "--latency-resolution", "32x64", "--trials", str(trials), "--proxy-resolution", "32x64",
            "--proxy-steps", "2", "--proxy-batch", "2", "--sampler", "random", "--seed", "1", "--no-progress",
            "--storage", storage, "--study", "s", *extra]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
                          stdin=subprocess.DEVNULL)


def test_clean_exit_leaves_only_the_database_and_a_rerun_says_nothing_ran(tmp_path):
    out = _run(_cmd("sqlite:///new/folder/s.db", 3, "--executor", "local"), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.splitlines()[0].startswith("nasseg search: study 's'")  # nasseg speaks first
    assert "created the folder new/folder for the study database" in out.stderr
    assert "next:" in out.stderr and "nasseg export --storage sqlite:///new/folder/s.db --study s" in out.stderr
    files = sorted(p.name for p in (tmp_path / "new" / "folder").iterdir())
    assert files == ["s.db", "s_artifacts"], files  # no -wal, -shm or .lock after a clean exit
    again = _run(_cmd("sqlite:///new/folder/s.db", 3, "--executor", "local"), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already has its 3 of 3 trials: nothing ran" in again.stderr and "wall 0.0 s" not in again.stderr
    status = _run([sys.executable, "-m", "nasseg", "status", "--storage", "sqlite:///new/folder/s.db", "--study",
                   "s"], tmp_path)
    assert status.returncode == 0 and sorted(p.name for p in (tmp_path / "new" / "folder").iterdir()) == files


@pytest.mark.parametrize("args", [
    ["status", "--storage", "sqlite:///{db}", "--study", "s", "--csv", "/nonexistent/x.csv"],
    ["status", "--storage", "sqlite:///{db}", "--study", "s", "--csv", "{db}/x.csv"],
    ["search", "--space", TINY_SPACE, "--mode", "pareto", "--storage", "sqlite:///{tmp}/t.db", "--artifacts",
     "/nonexistent/art"],
    ["export", "--storage", "sqlite:///{db}", "--study", "s", "--out", "/nonexistent/out"],
    ["ablate", "tests/fixtures/ablation_tiny.yaml", "--storage", "sqlite:///{tmp}/t.db", "--out", "{db}/out"],
    ["fidelity", "--space", TINY_SPACE, "--storage", "sqlite:///{tmp}/t.db", "--study", "f", "--out",
     "/nonexistent/out"],
])
def test_output_option_with_a_missing_or_bad_folder_is_one_line_exit_2(tmp_path, args):
    db = tmp_path / "s.db"
    db.write_bytes(b"")
    argv = [a.format(db=db, tmp=tmp_path) for a in args]
    out = _run([sys.executable, "-m", "nasseg", *argv], Path(__file__).parent.parent)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert lines[0].startswith("nasseg: error: --") and "valid:" in lines[0]
    assert not (tmp_path / "t.db").exists()


def test_the_next_driver_ends_ray_processes_that_provably_belong_to_a_dead_driver(tmp_path):
    """A record naming a dead driver and its Ray session folder: every process whose command line names that
    folder is ended; a process that does not name it (even one naming a longer folder name that starts with it) is
    left alone, and so is a live driver's record."""
    session = str(tmp_path / "ray" / "session_2026-01-01_00-00-00_000000_1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", f"--session-dir={session}"])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "--session-dir=/elsewhere"])
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", f"--x={session}0/logs"])
    try:
        import socket

        host = socket.gethostname()
        (tmp_path / f"ray-driver-{host}-{dead.pid}.json").write_text(json.dumps({"pid": dead.pid,
                                                                               "session_dir": session}))
        (tmp_path / f"ray-driver-{host}-{os.getpid()}.json").write_text(json.dumps({"pid": os.getpid(),
                                                                                   "session_dir": session + "0"}))
        logs: list[str] = []
        assert ray_session.reap(tmp_path, logs.append, grace_s=5) == 1
        assert left.wait(timeout=10) is not None
        assert bystander.poll() is None and live.poll() is None
        assert not (tmp_path / f"ray-driver-{host}-{dead.pid}.json").exists()
        assert (tmp_path / f"ray-driver-{host}-{os.getpid()}.json").exists()  # its driver is alive
        assert logs and "dead driver" in logs[0]
    finally:
        for p in (left, bystander, live):
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_ray_is_quiet_and_a_killed_drivers_ray_is_gone_after_the_next_run(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_cmd("sqlite:///s.db", 40, "--proxy-steps", "200"), cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    records: list[Path] = []
    deadline = time.time() + 300
    while time.time() < deadline and not records and proc.poll() is None:
        time.sleep(0.5)
        records = list((tmp_path / "ray_results").glob("ray-driver-*.json")) if (tmp_path / "ray_results").is_dir() \
            else []
    assert records, (tmp_path / "first.log").read_text()[-3000:]
    session = json.loads(records[0].read_text())["session_dir"]
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    out = _run(_cmd("sqlite:///s.db", 1, "--proxy-steps", "200"), tmp_path)  # nothing to run: reaps, ends
    assert out.returncode == 0, out.stderr[-3000:]
    deadline = time.time() + 30
    while time.time() < deadline and ray_session.processes_of(session):
        time.sleep(0.5)
    assert not ray_session.processes_of(session), "Ray processes of the killed driver outlived the next run"
    assert not list((tmp_path / "ray_results").glob("ray-driver-*.json"))
    text = (tmp_path / "first.log").read_text() + out.stderr + out.stdout
    assert "Number of trials" not in text and "tensorboard" not in text.lower()
    assert "Ray: started on this machine" in (tmp_path / "first.log").read_text()


def test_a_noisy_latency_is_flagged_on_the_trial_and_in_status(tmp_path, monkeypatch, capsys):
    from nasseg import cost
    from nasseg import search as S
    from nasseg.cli import main
    from nasseg.train import Recipe

    monkeypatch.setattr(cost, "NOISY_CV", -1.0)  # every record counts as noisy: re-measured, then flagged
    monkeypatch.setattr(cost, "NOISE_RETRIES", 1)
    recipe = Recipe(resolution=(32, 64), steps=2, batch_size=2, eval_every=0, warmup_steps=0, amp=False,
                    train_length=8, val_length=4, log_every=1)
    cfg = S.SearchConfig(space=TINY_SPACE, storage=f"sqlite:///{tmp_path / 's.db'}", study="s", trials=2,
                         latency_budget_ms=None, mode="pareto", latency=S.LatencySpec(resolution=(32, 64)),
                         sampler="random", seed=1, recipe=recipe, executor="local", progress=False)
    logs: list[str] = []
    S.search(cfg, log=logs.append)
    from nasseg.study import load_study

    for t in load_study(cfg.storage, "s").trials:
        lat = t.user_attrs["latency"]
        assert lat["noisy"] and lat["attempts"] == 2 and t.user_attrs["latency_warning"] == lat["warning"]
        assert "load_avg_before" in lat
    assert any("noisy latency" in m for m in logs)
    assert main(["status", "--storage", cfg.storage, "--study", "s"]) == 0
    out = capsys.readouterr().out
    assert "! = noisy latency (2 trial(s)" in out
    monkeypatch.undo()
    assert main(["export", "--storage", cfg.storage, "--study", "s", "--out", str(tmp_path / "ex"),
                 "--no-progress"]) == 0
    cards = [p.read_text() for p in (tmp_path / "ex").glob("*/README.md")]
    assert cards and all("**warning: noisy latency after 2 measurement(s)" in c for c in cards)
    assert all("How well this proxy ranks architectures: **unchecked**" in c for c in cards)
    assert "proxy fidelity: proxy fidelity unchecked" in (tmp_path / "ex" / "report.md").read_text()
