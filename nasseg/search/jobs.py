"""What a worker runs: a :class:`Job` (plain values only) and :func:`run_job`, which trains one proxy and
returns a result dict; a broken candidate becomes a failed result, never an exception."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Job:
    """A genome to train: what a worker receives (plain values only)."""

    number: int  # Optuna trial number
    genome_json: str
    recipe: dict[str, Any]
    dataset: str
    seed: int
    device: str = "cpu"
    threads: int = 1
    weights_path: str | None = None
    trial: Any = None  # the driver's optuna Trial (never sent to workers)
    started: float = 0.0
    genome_id: str = ""  # the driver's: duplicates proposed while this job trains wait for its result
    init: dict[str, Any] | None = None  # warm start of leading stages: {"path", "stages"} (--init)

    def payload(self) -> dict[str, Any]:
        return {"number": self.number, "genome": self.genome_json, "recipe": self.recipe, "dataset": self.dataset,
                "seed": self.seed, "device": self.device, "threads": self.threads,
                "weights_path": self.weights_path, "init": self.init}


def run_job(payload: dict[str, Any], report: Callable[[int, float], bool] | None = None) -> dict[str, Any]:
    """Train one proxy (in a worker or in-process).  Returns a result dict; never raises for a bad trial."""
    import torch

    from nasseg.genome import from_json
    from nasseg.train import Recipe, proxy_train

    torch.set_num_threads(max(1, int(payload.get("threads", 1))))
    t0 = time.perf_counter()
    worker = worker_info()
    try:
        genome = from_json(payload["genome"])
        recipe = Recipe.from_dict(payload["recipe"])

        def cb(step: int, m: Any) -> bool:
            return True if report is None else bool(report(step, float(m.miou)))

        metrics = proxy_train(genome, recipe, payload["dataset"], payload["seed"], device=payload["device"],
                              callback=cb, weights_path=payload.get("weights_path"), init=payload.get("init"))
        return {"ok": True, "metrics": metrics.to_dict(), "wall_s": time.perf_counter() - t0, "worker": worker}
    except OSError as e:
        if e.errno != errno.ENOSPC:
            return _failed(e, t0, worker)
        # a full disk is not the candidate's fault: the driver stops the search (nasseg.search.driver)
        return {"ok": False, "disk_full": str(e.filename or payload.get("weights_path") or ""),
                "error": f"no space left on device: {e.filename or ''}".strip(), "wall_s": time.perf_counter() - t0,
                "worker": worker}
    except MemoryError as e:
        return {"ok": False, "error": f"out of memory: MemoryError {e}".strip()[:2000],
                "wall_s": time.perf_counter() - t0, "worker": worker}
    except Exception as e:  # a broken candidate must not stop the search: it becomes a failed trial
        return _failed(e, t0, worker)


def _failed(e: BaseException, t0: float, worker: dict[str, Any]) -> dict[str, Any]:
    tb = traceback.format_exc(limit=4)
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, RuntimeError) and any(s in str(e) for s in _OOM_TEXTS):
        text = "out of memory: " + text
    return {"ok": False, "error": text[:2000], "traceback": tb[-4000:], "wall_s": time.perf_counter() - t0,
            "worker": worker}


_OOM_TEXTS = ("can't allocate memory", "Cannot allocate memory", "out of memory", "OutOfMemory")


def worker_info() -> dict[str, Any]:
    """Where a proxy runs: host, pid and, under Ray, the Ray node id (stored in the trial as ``worker``)."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    ray = sys.modules.get("ray")
    if ray is not None:
        with contextlib.suppress(Exception):
            if ray.is_initialized():
                info["ray_node_id"] = ray.get_runtime_context().get_node_id()
    return info
