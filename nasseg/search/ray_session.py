"""Ray processes a dead driver left behind: recorded when this driver starts Ray, reaped by the next one.

When a driver starts a local Ray instance it writes ``ray-driver-<host>-<pid>.json`` (its pid and Ray's
session folder) in the search's work folder and removes it after ``ray.shutdown()``.  A driver killed with
SIGKILL cannot shut Ray down; Ray's own processes (GCS, raylet, dashboard and runtime-env agents, workers)
usually notice and exit, but not always.  The next driver on the same host reads the records of drivers
that are gone and ends every process whose command line names that driver's Ray session folder: a
session folder is unique to one Ray instance, so only processes that provably belong to the dead driver's
Ray are touched (never another user's Ray, never a live driver's).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _record_path(workdir: Path, pid: int | None = None) -> Path:
    return workdir / f"ray-driver-{socket.gethostname()}-{pid or os.getpid()}.json"


def record(workdir: Path, session_dir: str) -> Path:
    """Note that this process started the Ray instance whose session folder is ``session_dir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = _record_path(workdir)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "session_dir": session_dir,
                                "started": time.time()}))
    return path


def session_dir() -> str | None:
    """The session folder of the Ray instance this process started or joined, when Ray says it."""
    with contextlib.suppress(Exception):
        import ray

        return str(ray._private.worker._global_node.get_session_dir_path())
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def processes_of(session: str) -> list[int]:
    """Pids of this host's processes whose command line names the Ray session folder ``session`` (as a whole path:
    followed by a separator, the end, a blank or a quote, so ``session_1`` never matches ``session_10``)."""
    import re

    pattern = re.compile(re.escape(session.rstrip("/")) + r"(?=$|[/\s\"',;:])")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if pattern.search(cmd):
                found.append(int(entry))
    return found


def reap(workdir: Path, log: Callable[[str], None], grace_s: float = 5.0) -> int:
    """End the Ray processes of this host's dead drivers recorded in ``workdir``; returns how many."""
    if not workdir.is_dir() or not Path("/proc").is_dir():
        return 0
    total = 0
    for path in workdir.glob(f"ray-driver-{socket.gethostname()}-*.json"):
        try:
            rec: dict[str, Any] = json.loads(path.read_text())
            pid, session = int(rec["pid"]), str(rec["session_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid) or not session.strip("/"):
            continue
        pids = processes_of(session)
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGTERM)
        deadline = time.time() + grace_s
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        for p in pids:
            if _alive(p):
                with contextlib.suppress(OSError):
                    os.kill(p, signal.SIGKILL)
        if pids:
            log(f"ended {len(pids)} Ray process(es) left by a dead driver (pid {pid}, Ray session {session})")
        total += len(pids)
        with contextlib.suppress(OSError):
            path.unlink()
    return total


def forget(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


#: exit status of ``nasseg search`` when the Ray head (its GCS) is lost mid-search; the same command resumes
HEAD_LOST_EXIT = 3


class HeadWatch:
    """Watch the Ray head from the driver: a daemon thread opens a TCP connection to the cluster's GCS every
    ``every_s``; when no connection succeeds for ``lost_after_s`` the head is gone (killed, its machine down),
    and ``on_lost`` gets one line.  Without this the driver sits in Ray's own reconnect loop for a minute and
    is then ended by Ray's C++ core with a log wall; the search instead says so in one line and exits with
    :data:`HEAD_LOST_EXIT` (``on_lost`` does), leaving its in-flight trials RUNNING for the next run's crash
    recovery (:func:`nasseg.study.recover_crashed`): every told trial stays, the same command resumes.
    """

    def __init__(self, gcs_address: str, on_lost: Callable[[str], None], *, every_s: float = 1.0,
                 lost_after_s: float = 5.0):
        import threading

        host, _, port = gcs_address.rpartition(":")
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        self.address, self.on_lost = gcs_address, on_lost
        self.every_s, self.lost_after_s = every_s, lost_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nasseg-ray-head-watch", daemon=True)

    def _reachable(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=max(0.5, self.every_s)):
                return True
        except OSError:
            return False

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.every_s):
            if self._reachable():
                last_ok = time.monotonic()
            elif time.monotonic() - last_ok >= self.lost_after_s and not self._stop.is_set():
                self.on_lost(f"the Ray head at {self.address} is lost (no connection for {self.lost_after_s:g} s): "
                             f"the search stops here; every told trial is kept, and the same command resumes it "
                             f"once a Ray head is back (trials in flight are re-queued)")
                return

    def __enter__(self) -> HeadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
