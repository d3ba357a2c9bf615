"""Pin the measuring thread to cores of its own while it times, and put everything back afterwards.

Where latency is timed (the search driver, an ablation's costs, the benchmarks) nothing else of nasseg runs at
that moment: the driver measures only while no proxy trains.  :func:`pinned` moves the calling thread -- and so
every thread it starts while pinned: onnxruntime's intra-op pool, TensorRT's -- onto the *last* ``threads``
cores the process may use (core 0 takes most interrupts and is where the OS and other processes tend to land
first), so the timed work does not migrate between cores mid-measurement.  On a 2-core CI box with one thread
that is one core, the other left to everything else.  On leaving, the calling thread gets its own mask back and
every thread born while pinned (which inherited the pinned mask) gets the process's mask: nothing stays pinned.

Only the calling thread is moved, never the whole process: the background threads of a Ray driver or of
SQLAlchemy would otherwise be squeezed onto the measuring core.  What was done is returned as a dict for the
latency record (``cores``, ``allowed``, ``scope``), or the reason nothing was (no ``sched_setaffinity`` on this
OS, or as many threads as allowed cores).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["pinned", "measurement_cores"]


def _thread_ids() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def measurement_cores(threads: int) -> tuple[list[int], list[int]] | None:
    """(cores to pin to, cores allowed now) for ``threads`` threads, or None where affinity cannot be set."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[-max(1, int(threads)):], allowed


@contextlib.contextmanager
def pinned(threads: int = 1) -> Iterator[dict[str, Any]]:
    """While inside, the calling thread (and the threads it starts) run on the last ``threads`` allowed cores.
    Yields the record's ``affinity`` dict."""
    cores = measurement_cores(threads)
    if cores is None:
        yield {"cores": None, "scope": "none: this OS has no sched_setaffinity"}
        return
    target, allowed = cores
    if len(target) >= len(allowed):
        yield {"cores": allowed, "allowed": allowed, "scope": f"none: {threads} thread(s) need every one of the "
               f"{len(allowed)} allowed core(s)"}
        return
    before = _thread_ids()
    own = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, target)
    except OSError as e:  # a container that forbids it: measure unpinned, and say so
        yield {"cores": None, "allowed": allowed, "scope": f"none: sched_setaffinity failed ({e.strerror})"}
        return
    try:
        yield {"cores": target, "allowed": allowed, "scope": "measuring thread and the threads it started"}
    finally:
        os.sched_setaffinity(0, own)
        for tid in _thread_ids() - before:  # born pinned (a runtime's thread pool): give them the whole mask
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, own)
