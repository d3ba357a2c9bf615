"""Soak: several drivers on one PostgreSQL study, killed at random, then resumed; nothing may be lost.

``--drivers`` copies of the same ``nasseg search`` command (tiny proxies on ``tests/fixtures/soak_space.yaml``,
local executor, ``--trials`` distinct evaluations) share one PostgreSQL study.  Every ``--kill-every`` seconds
(jittered +-50 %) one driver that holds a trial in flight gets SIGKILL and is restarted at once with the same
command (the resume), at most ``--max-kills`` times and only while fewer than 90 % of the trials are told.  When
every driver has exited, the same command runs once more (it must find nothing to do).  Then the study is read:

* finished: trials counting towards --trials (must equal --trials);
* trained twice: genomes with more than one ``trained`` trial (must be 0);
* lost: trials left RUNNING or WAITING, crashed trials whose genome was not re-queued, and trials that were
  finished before a kill and are missing or changed afterwards (must be 0);
* recovery: per kill, seconds from the SIGKILL until none of the killed driver's trials is RUNNING any more
  (its restarted successor marked them crashed and re-queued their genomes).

Prints one table and exits 1 when a must-be figure is wrong.  Storage: ``--storage postgresql://...``, else
``NASSEG_TEST_POSTGRES``, else a throwaway server from Debian's binaries (``tests/reliability/servers.py``).

    nice -n 10 python bench/soak.py                          # 200 trials, 4 drivers, a kill every ~3 s, <= 40
    python bench/soak.py --trials 20 --max-kills 3           # the size tests/reliability/test_soak.py runs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOAK_SPACE = str(ROOT / "tests" / "fixtures" / "soak_space.yaml")
STUDY = "soak"


def driver_cmd(url: str, trials: int, artifacts: Path, steps: int = 2) -> list[str]:
    """One driver: tiny proxies (``steps`` steps at 32x64), latency a fixed 30 runs at 32x64 on one thread."""
    return [sys.executable, "-m", "nasseg", "search", "--space", SOAK_SPACE, "--mode", "pareto",
            "--latency-resolution", "32x64", "--latency-threads", "1", "--latency-runs", "30",
            "--latency-tolerance", "0", "--no-latency-pin", "--trials", str(trials), "--storage", url,
            "--study", STUDY, "--proxy-resolution", "32x64", "--proxy-steps", str(steps), "--proxy-batch", "2",
            "--sampler", "random", "--seed", "11", "--executor", "local", "--no-progress",
            "--artifacts", str(artifacts)]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    return env


def _snapshot(url: str) -> list[dict[str, Any]]:
    """Every trial of the study as plain values (a fresh read-only connection each time)."""
    from nasseg import study as St

    try:
        study = St.load_study(url, STUDY, readonly=True)
    except Exception:  # noqa: BLE001 - not created yet
        return []
    out = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        out.append({"number": t.number, "state": t.state.name, "values": t.values, "status": ua.get("nasseg_status"),
                    "genome_id": ua.get("genome_id"), "driver": ua.get("driver"), "params": bool(t.params),
                    "reused_from": ua.get("reused_from"), "requeued_from": ua.get("requeued_from")})
    return out


def _counted(trials: list[dict[str, Any]]) -> int:
    """As nasseg.search.driver.counts_towards_trials, written out so that the soak checks the driver."""
    return sum(1 for t in trials if t["reused_from"] is None and t["status"] != "prefiltered"
               and (t["state"] in ("COMPLETE", "PRUNED") or (t["state"] == "FAIL" and t["status"] != "crashed")))


def _finished(trials: list[dict[str, Any]]) -> dict[int, tuple]:
    return {t["number"]: (t["state"], t["values"], t["status"]) for t in trials if t["state"] != "RUNNING"
            and t["state"] != "WAITING"}


class _Driver:
    def __init__(self, cmd: list[str], log_dir: Path, index: int):
        self.cmd, self.log_dir, self.index, self.starts = cmd, log_dir, index, 0
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        err = open(self.log_dir / f"driver{self.index}.{self.starts}.err", "w")  # noqa: SIM115 - closed by exit
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env(),
                                     stdin=subprocess.DEVNULL, cwd=self.log_dir)
        err.close()

    @property
    def tag(self) -> str:
        return f"{socket.gethostname()}:{self.proc.pid}"


def soak(url: str, *, trials: int = 200, drivers: int = 4, kill_every_s: float = 3.0, max_kills: int = 40,
         steps: int = 2, seed: int = 0, workdir: Path | None = None, timeout_s: float = 3600.0,
         log=lambda s: print(s, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Run the soak on ``url`` (an empty PostgreSQL database); returns its figures (see the module docstring)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="nasseg-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = driver_cmd(url, trials, workdir / "artifacts", steps)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    pool = [_Driver(cmd, workdir, i) for i in range(drivers)]  # all at once, on an empty database
    kills: list[dict[str, Any]] = []
    errors: list[str] = []
    next_kill = time.perf_counter() + kill_every_s * rng.uniform(0.5, 1.5)
    before_kills: dict[int, tuple] = {}
    try:
        while any(d.proc is not None for d in pool):
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"the soak ran past {timeout_s:g} s")
            time.sleep(0.25)
            now = time.perf_counter()
            for d in pool:
                if d.proc is not None and d.proc.poll() is not None:
                    if d.proc.returncode != 0:
                        errors.append(f"driver {d.index} (start {d.starts}) exited {d.proc.returncode}; see "
                                      f"{workdir / f'driver{d.index}.{d.starts}.err'}")
                    d.proc = None
            pending = [k for k in kills if k["recovered_s"] is None]
            snap = _snapshot(url) if pending or (now >= next_kill and len(kills) < max_kills) else None
            for k in pending:
                if not any(t["state"] == "RUNNING" and t["driver"] == k["tag"] for t in snap):
                    k["recovered_s"] = round(now - k["at"], 2)
            if snap is None or now < next_kill or len(kills) >= max_kills or _counted(snap) >= 0.9 * trials:
                continue
            busy = {t["driver"] for t in snap if t["state"] == "RUNNING"}
            victims = [d for d in pool if d.proc is not None and d.proc.poll() is None and d.tag in busy]
            if not victims:
                continue
            d = rng.choice(victims)
            tag = d.tag
            before_kills.update(_finished(snap))
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait()
            at = time.perf_counter()
            kills.append({"at": at, "tag": tag, "driver": d.index, "in_flight": sum(t["driver"] == tag for t in snap
                                                                                     if t["state"] == "RUNNING"),
                          "recovered_s": None})
            log(f"{at - t0:6.1f} s: SIGKILL driver {d.index} ({tag}) with {kills[-1]['in_flight']} trial(s) in "
                f"flight; restarted")
            d.start()  # the resume: the same command
            next_kill = at + kill_every_s * rng.uniform(0.5, 1.5)
        drivers_wall = time.perf_counter() - t0
        final = subprocess.run(cmd, capture_output=True, text=True, env=_env(), stdin=subprocess.DEVNULL,
                               cwd=workdir, timeout=600)
        if final.returncode != 0:
            errors.append(f"the final resume exited {final.returncode}: {final.stderr[-1000:]}")
    finally:
        for d in pool:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
    end = _snapshot(url)
    for k in kills:  # a kill whose trials the drivers left RUNNING: the final resume recovered them
        if k["recovered_s"] is None and not any(t["state"] == "RUNNING" and t["driver"] == k["tag"] for t in end):
            k["recovered_s"] = round(time.perf_counter() - k["at"], 2)
    trained = [t["genome_id"] for t in end if t["status"] == "trained"]
    crashed = [t for t in end if t["status"] == "crashed"]
    requeued = {t["requeued_from"] for t in end}
    finished_now = _finished(end)
    changed = [n for n, v in before_kills.items() if finished_now.get(n) != v]
    lost = ([t["number"] for t in end if t["state"] in ("RUNNING", "WAITING")]
            + [t["number"] for t in crashed if t["params"] and t["number"] not in requeued] + changed)
    rec = [k["recovered_s"] for k in kills if k["recovered_s"] is not None]
    return {
        "trials": trials, "drivers": drivers, "faults_injected": len(kills),
        "in_flight_at_kills": sum(k["in_flight"] for k in kills), "finished": _counted(end),
        "trained_twice": len(trained) - len(set(trained)), "lost": len(lost), "lost_trials": sorted(lost),
        "crashed_recovered": len(crashed), "recovery_s_median": statistics.median(rec) if rec else None,
        "recovery_s_max": max(rec) if rec else None, "unrecovered_kills": len(kills) - len(rec),
        "driver_starts": sum(d.starts for d in pool), "wall_s": round(drivers_wall, 1),
        "final_resume_stderr": final.stderr.strip().splitlines()[-3:], "errors": errors,
        "load_average_start": "/".join(f"{v:.1f}" for v in load0),
        "load_average_end": "/".join(f"{v:.1f}" for v in os.getloadavg()),
        "statuses": {s: sum(t["status"] == s for t in end) for s in sorted({str(t["status"]) for t in end})},
        "workdir": str(workdir),
    }


def _fail_reasons(r: dict[str, Any]) -> list[str]:
    bad = []
    if r["finished"] != r["trials"]:
        bad.append(f"finished {r['finished']} != {r['trials']}")
    if r["trained_twice"]:
        bad.append(f"{r['trained_twice']} genome(s) trained twice")
    if r["lost"]:
        bad.append(f"{r['lost']} trial(s) lost: {r['lost_trials']}")
    if r["errors"]:
        bad.append("; ".join(r["errors"]))
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--drivers", type=int, default=4)
    p.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills (jittered +-50 %%)")
    p.add_argument("--max-kills", type=int, default=40)
    p.add_argument("--steps", type=int, default=2, help="proxy steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    p.add_argument("--storage", default=None, help="postgresql://... (an empty database)")
    p.add_argument("--json", default=None, help="also write the figures here")
    a = p.parse_args(argv)
    server = None
    url = a.storage or os.environ.get("NASSEG_TEST_POSTGRES")
    from tests.reliability import servers

    if url is None:
        server = servers.PostgresServer()
        url = server.url
    elif a.storage is None:  # the CI server: a fresh database on it
        url, _ = servers.fresh_database(url)
    try:
        r = soak(url, trials=a.trials, drivers=a.drivers, kill_every_s=a.kill_every, max_kills=a.max_kills,
                 steps=a.steps, seed=a.seed)
    finally:
        if server is not None:
            server.stop()
    print(f"soak: {r['trials']} trials, {r['drivers']} drivers on PostgreSQL, a kill every ~{a.kill_every:g} s "
          f"(at most {a.max_kills}); nproc {os.cpu_count()}")
    for key in ("faults_injected", "in_flight_at_kills", "finished", "trained_twice", "lost", "crashed_recovered",
                "recovery_s_median", "recovery_s_max", "unrecovered_kills", "driver_starts", "wall_s",
                "load_average_start", "load_average_end", "statuses"):
        print(f"  {key:20s} {r[key]}")
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1) + "\n")
    bad = _fail_reasons(r)
    for b in bad:
        print(f"FAIL: {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
