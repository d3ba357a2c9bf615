"""Latency-constrained architecture search: an Optuna study in SQL, proxies on Ray Tune workers.

The only importer of Optuna's study API and of ``ray.tune``.  One driver process owns the study:

1. ``study.ask()``, then ``space.sample(trial)`` -> genome;
2. a genome already evaluated with the same recipe and dataset is *reused* (its result copied, not trained);
3. otherwise the genome is built and measured (params, MACs, latency on the target device) **before**
   any training; over the budget it is told as *rejected* (Optuna state PRUNED, no value, a reason,
   zero training time) and never trained;
4. feasible genomes train a short proxy on a Ray Tune worker (or in-process with ``--executor local``);
   intermediate mIoU goes to the trial as intermediate values; with ``--asha`` a trial stopped early is
   told as PRUNED with its last fidelity, never as COMPLETE, so it can never reach ``best_trials`` or
   the Pareto front;
5. the driver tells the result: COMPLETE with ``miou`` (constrained) or ``(miou, latency_ms)`` (pareto),
   and the latency constraint stored for constraint-aware samplers (TPE, NSGA-II), so
   ``study.best_trials`` is feasible-only.

Latency is never measured while a proxy trains: candidates are measured in batches while no worker
runs (recorded in each latency record's ``isolation``).  The study is a plain Optuna RDB storage:
``optuna studies --storage URL``, ``optuna.load_study`` and optuna-dashboard open it unmodified.
Every trial's user attributes hold the genome JSON/string/id, params, MACs, the latency record, the
proxy metrics, the recipe, the dataset and the fidelity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasseg import __version__
from nasseg.errors import ConfigError, NassegError, StorageError

STATUS_KEY = "nasseg_status"  # trained | reused | rejected | stopped | failed | crashed
META_KEY = "nasseg"
MODES = ("constrained", "pareto")
SAMPLERS = ("tpe", "nsga2", "random")
EXECUTORS = ("ray", "local")


# ------------------------------------------------------------------------------------------- storage
def mask_url(url: str) -> str:
    """The storage URL with any password replaced by ***, for logs and errors."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: show only the scheme
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _check_url(url: str) -> None:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"--storage = {url!r} is not a database URL; valid: sqlite:///path.db or "
                          "postgresql://user:password@host/db")
    scheme = url.split("://", 1)[0]
    if not (scheme == "sqlite" or scheme.startswith("postgresql") or scheme.startswith("mysql")):
        raise ConfigError(f"--storage scheme {scheme!r} is not supported; valid: sqlite, postgresql")


def open_storage(url: str, *, readonly: bool = False, create: bool = True):
    """An Optuna RDBStorage for ``url``; SQLite gets WAL and a busy timeout.

    ``readonly`` opens an existing SQLite file with ``mode=ro`` (safe beside a running search).
    Errors name the (password-masked) URL and what went wrong.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    _check_url(url)
    path = _sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if path is not None:
        if readonly or not create:
            if not path.exists():
                raise StorageError(f"storage {mask_url(url)}: the file {path} does not exist")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            import sqlite3

            with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
                con.execute("PRAGMA journal_mode=WAL")
        if readonly:
            url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}} \
            if url.startswith("postgresql") else {"pool_pre_ping": True}
        kwargs["heartbeat_interval"] = 30
        kwargs["grace_period"] = 120
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except (SQLAlchemyError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StorageError(f"cannot open storage {mask_url(url)}: {mask_url(msg) if '://' in msg else msg}") \
            from None


def study_names(url: str) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.study.get_all_study_summaries(open_storage(url, readonly=True))]


def load_study(url: str, name: str, *, readonly: bool = True):
    """An existing study; a missing one raises StorageError listing the studies that exist."""
    import optuna

    storage = open_storage(url, readonly=readonly, create=False)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
    if name not in names:
        raise StorageError(f"study {name!r} does not exist in {mask_url(url)}; studies there: "
                           + (", ".join(names) if names else "(none)"))
    return optuna.load_study(study_name=name, storage=storage)


@contextlib.contextmanager
def driver_lock(url: str) -> Iterator[None]:
    """One driver per SQLite file: a second concurrent driver fails fast instead of corrupting or deadlocking."""
    path = _sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise StorageError(f"{path} is being written by another nasseg driver ({holder}); a SQLite study takes "
                               "one driver at a time: wait for it to finish, or use a PostgreSQL --storage for "
                               "several drivers") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class LatencySpec:
    device: str = "cpu"
    resolution: tuple[int, int] = (512, 1024)
    batch: int = 1
    threads: int | None = None
    runs: int = 30
    warmup: int = 10
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolution"] = list(self.resolution)
        return d


@dataclass(frozen=True)
class SearchConfig:
    space: str
    storage: str
    study: str
    trials: int
    latency_budget_ms: float | None
    latency: LatencySpec = field(default_factory=LatencySpec)
    mode: str = "constrained"
    sampler: str | None = None  # None: the study's own, or tpe for a new study
    seed: int = 0
    dataset: str = "synthetic"
    recipe: Any = None  # nasseg.train.Recipe
    executor: str = "ray"
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrency: int | None = None
    asha: bool = False
    progress: bool = True
    artifacts: str | None = None  # where workers save proxy weights (default: beside a SQLite file, else runs/)

    def artifacts_dir(self) -> Path:
        """Per-study folder for trained weights; on a multi-node cluster it must be a shared path."""
        if self.artifacts:
            return Path(self.artifacts) / self.study
        path = _sqlite_path(self.storage)
        base = path.parent / f"{path.stem}_artifacts" if path is not None else Path("runs") / "artifacts"
        return base / self.study

    def validate(self) -> None:
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"--trials = {self.trials!r} must be a positive integer")
        if self.mode not in MODES:
            raise ConfigError(f"--mode = {self.mode!r}; valid: {', '.join(MODES)}")
        if self.mode == "constrained" and self.latency_budget_ms is None:
            raise ConfigError("--latency-budget-ms is required in constrained mode (or use --mode pareto)")
        if self.latency_budget_ms is not None and not (math.isfinite(self.latency_budget_ms)
                                                       and self.latency_budget_ms > 0):
            raise ConfigError(f"--latency-budget-ms = {self.latency_budget_ms!r} must be a positive number of "
                              "milliseconds")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler = {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor = {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        if not self.cpus_per_trial > 0 or self.gpus_per_trial < 0:
            raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0 (fractions allowed)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"--concurrency = {self.concurrency} must be >= 1")
        if not self.study or not isinstance(self.study, str):
            raise ConfigError("--study needs a name")


def _file_sha(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read search space ({e.strerror})") from None


def study_meta(cfg: SearchConfig, num_classes: int, sampler: str) -> dict[str, Any]:
    """What defines a study; a resumed study must match it."""
    return {
        "kind": "search",
        "space": str(cfg.space), "space_sha": _file_sha(cfg.space),
        "mode": cfg.mode, "latency_budget_ms": cfg.latency_budget_ms, "latency": cfg.latency.to_dict(),
        "dataset": cfg.dataset, "num_classes": num_classes, "recipe": cfg.recipe.to_dict(),
        "sampler": {"name": sampler, "seed": cfg.seed}, "asha": cfg.asha,
        "nasseg_version": __version__,
    }


_DEFINING = ("space_sha", "mode", "latency_budget_ms", "latency", "dataset", "recipe", "sampler", "asha")


def make_sampler(name: str, seed: int):
    """The study's sampler.  The latency constraint reaches constraint-aware samplers through
    ``trial.set_constraint`` (Optuna >= 5), so it lives in the study, not in sampler settings."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=8)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    return optuna.samplers.RandomSampler(seed=seed)


# --------------------------------------------------------------------------------------------- jobs
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

    def payload(self) -> dict[str, Any]:
        return {"number": self.number, "genome": self.genome_json, "recipe": self.recipe, "dataset": self.dataset,
                "seed": self.seed, "device": self.device, "threads": self.threads,
                "weights_path": self.weights_path}


def run_job(payload: dict[str, Any], report: Callable[[int, float], bool] | None = None) -> dict[str, Any]:
    """Train one proxy (in a worker or in-process).  Returns a result dict; never raises for a bad trial."""
    import torch

    from nasseg.genome import from_json
    from nasseg.train import Recipe, proxy_train

    torch.set_num_threads(max(1, int(payload.get("threads", 1))))
    t0 = time.perf_counter()
    try:
        genome = from_json(payload["genome"])
        recipe = Recipe.from_dict(payload["recipe"])

        def cb(step: int, m: Any) -> bool:
            return True if report is None else bool(report(step, float(m.miou)))

        metrics = proxy_train(genome, recipe, payload["dataset"], payload["seed"], device=payload["device"],
                              callback=cb, weights_path=payload.get("weights_path"))
        return {"ok": True, "metrics": metrics.to_dict(), "wall_s": time.perf_counter() - t0}
    except MemoryError:
        return {"ok": False, "error": "MemoryError: the proxy ran out of memory", "wall_s": time.perf_counter() - t0}
    except Exception as e:  # a broken candidate must not stop the search: it becomes a failed trial
        tb = traceback.format_exc(limit=4)
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000], "traceback": tb[-4000:],
                "wall_s": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------- driver
class Driver:
    """Owns the study: asks, samples, measures, rejects, reuses and tells.  The only DB writer."""

    def __init__(self, cfg: SearchConfig, study: Any, space: Any, num_classes: int, log: Callable[[str], None]):
        self.cfg, self.study, self.space, self.num_classes, self.log = cfg, study, space, num_classes, log
        self.recipe_json = cfg.recipe.to_json()
        self.inflight: dict[int, Job] = {}
        self.counts = {"trained": 0, "reused": 0, "rejected": 0, "stopped": 0, "failed": 0}
        self.trained_s = 0.0  # worker-seconds inside proxy training (summed over parallel workers)
        self.measure_s = 0.0  # driver seconds building and measuring candidates
        self.busy_s = 0.0  # wall seconds during which at least one proxy was in flight
        self._busy_since: float | None = None
        self._cache: dict[str, Any] = {}  # genome_id -> finished FrozenTrial (trained or rejected)
        for t in study.get_trials(deepcopy=False):
            self._remember(t)

    # ---------------------------------------------------------------------------------- bookkeeping
    def _remember(self, t: Any) -> None:
        ua = t.user_attrs
        if ua.get(STATUS_KEY) in ("trained", "rejected") and ua.get("recipe_json") == self.recipe_json \
                and ua.get("dataset") == self.cfg.dataset:
            self._cache.setdefault(ua["genome_id"], t)

    def finished(self) -> int:
        """Trials that count towards --trials: everything told, except crashed ones (re-queued)."""
        import optuna

        n = 0
        for t in self.study.get_trials(deepcopy=False):
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
                n += 1
            elif t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get(STATUS_KEY) != "crashed":
                n += 1
        return n

    def remaining(self) -> int:
        return self.cfg.trials - self.finished() - len(self.inflight)

    # ------------------------------------------------------------------------------------- proposing
    def next_batch(self, n: int) -> list[Job]:
        """Up to ``n`` feasible candidates, measured now (nothing is training when this is called)."""
        jobs: list[Job] = []
        guard = 0
        while len(jobs) < n and self.remaining() > 0:
            guard += 1
            if guard > 50 * max(1, n) + 1000:
                raise NassegError("the search space produced no trainable candidate in 1000 draws")
            job = self._propose()
            if job is not None:
                jobs.append(job)
                self.inflight[job.number] = job
        if self.inflight and self._busy_since is None:
            self._busy_since = time.perf_counter()
        return jobs

    def _settle(self) -> None:
        if not self.inflight and self._busy_since is not None:
            self.busy_s += time.perf_counter() - self._busy_since
            self._busy_since = None

    def _propose(self) -> Job | None:
        from nasseg.genome import genome_id, to_json, to_string

        trial = self.study.ask()
        trial.set_user_attr("driver", f"{socket.gethostname()}:{os.getpid()}")
        try:
            genome = self.space.sample(trial)
        except NassegError as e:
            self._fail(trial, f"the space produced an invalid genome: {e}")
            return None
        gid = genome_id(genome)
        trial.set_user_attr("genome_id", gid)
        trial.set_user_attr("genome_json", to_json(genome))
        trial.set_user_attr("genome", to_string(genome))
        trial.set_user_attr("recipe_json", self.recipe_json)
        trial.set_user_attr("dataset", self.cfg.dataset)
        cached = self._cache.get(gid)
        if cached is not None:
            self._reuse(trial, cached)
            return None
        t0 = time.perf_counter()
        try:
            cost = self._measure(genome)
        except NassegError as e:
            self._fail(trial, f"cannot build or measure the genome: {e}")
            return None
        except RuntimeError as e:  # e.g. an architecture too large for the latency device
            self._fail(trial, f"measurement failed: {type(e).__name__}: {str(e)[:300]}")
            return None
        finally:
            self.measure_s += time.perf_counter() - t0
        lat = cost["latency"]["median_ms"]
        budget = self.cfg.latency_budget_ms
        constraint = (lat - budget,) if budget is not None else (0.0,)
        for k, v in cost.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("latency_ms", lat)
        trial.set_user_attr("constraint", constraint)
        if budget is not None:  # <= 0 is feasible; constraint-aware samplers and best_trials read it
            trial.set_constraint("latency_over_budget_ms", constraint[0])
        if budget is not None and lat > budget:
            trial.set_user_attr(STATUS_KEY, "rejected")
            trial.set_user_attr("reason", f"latency {lat:.2f} ms > budget {budget:g} ms on "
                                          f"{self.cfg.latency.device} at {self.cfg.latency.resolution[0]}x"
                                          f"{self.cfg.latency.resolution[1]}")
            trial.set_user_attr("train_seconds", 0.0)
            self._tell(trial, "pruned")
            self.counts["rejected"] += 1
            self._remember(self.study._storage.get_trial(trial._trial_id))
            return None
        return self.make_job(trial, genome, self.cfg.seed)

    def make_job(self, trial: Any, genome: Any, seed: int) -> Job:
        from nasseg.genome import to_json

        device = "cuda" if self.cfg.gpus_per_trial > 0 else "cpu"
        threads = max(1, int(self.cfg.cpus_per_trial))
        weights = str((self.cfg.artifacts_dir() / f"trial_{trial.number:05d}" / "model.pt").resolve())
        return Job(trial.number, to_json(genome), self.cfg.recipe.to_dict(), self.cfg.dataset, seed,
                   device, threads, weights, trial, time.perf_counter())

    def _measure(self, genome: Any) -> dict[str, Any]:
        from nasseg.build import build
        from nasseg.cost import count_macs, count_params, measure_latency

        net = build(genome, self.num_classes)
        if net.is_classifier:
            raise NassegError("this genome builds an image classifier; segmentation search needs a segmentation "
                              "decoder (use another search space)")
        ls = self.cfg.latency
        h, w = ls.resolution
        macs = count_macs(net, (1, 3, h, w))
        rec = measure_latency(net, (ls.batch, 3, h, w), device=ls.device, warmup=ls.warmup, runs=ls.runs,
                              threads=ls.threads, dtype=ls.dtype)
        d = rec.to_dict()
        d["isolation"] = "exclusive: measured by the driver while no proxy was training"
        return {"params": count_params(net), "macs": macs.macs, "macs_skipped_ops": macs.skipped_ops,
                "latency": d}

    def _reuse(self, trial: Any, src: Any) -> None:
        skip = {"driver", "genome_id", "genome_json", "genome", "recipe_json", "dataset"}
        for k, v in src.user_attrs.items():
            if k not in skip:
                trial.set_user_attr(k, v)
        trial.set_user_attr("reused_from", src.number)
        trial.set_user_attr("train_seconds", 0.0)
        status = src.user_attrs.get(STATUS_KEY)
        if status == "trained":
            trial.set_user_attr(STATUS_KEY, "reused")
            self._tell(trial, "complete", values=src.values)
            self.counts["reused"] += 1
        else:
            trial.set_user_attr(STATUS_KEY, "rejected")
            self._tell(trial, "pruned")
            self.counts["rejected"] += 1

    # ------------------------------------------------------------------------------------- results
    def intermediate(self, job: Job, step: int, miou: float) -> None:
        with contextlib.suppress(Exception):  # a duplicate step report is harmless
            job.trial.report(miou, step)

    def complete(self, job: Job, result: dict[str, Any], stopped: bool = False) -> None:
        self.inflight.pop(job.number, None)
        self._settle()
        trial = job.trial
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - job.started, 3))
        if not result.get("ok"):
            self._fail(trial, result.get("error", "the worker failed"), result.get("traceback"))
            return
        m = result["metrics"]
        self.trained_s += float(m.get("train_seconds", 0.0))
        trial.set_user_attr("metrics", m)
        trial.set_user_attr("miou", m["miou"])
        trial.set_user_attr("seed", job.seed)
        if job.weights_path and Path(job.weights_path).exists():
            trial.set_user_attr("weights_path", job.weights_path)
        trial.set_user_attr("train_seconds", m.get("train_seconds", 0.0))
        steps = int(m.get("steps_done", 0))
        full = steps >= int(job.recipe["steps"]) and m.get("status", "completed") == "completed"
        trial.set_user_attr("fidelity", {"steps": steps, "planned_steps": job.recipe["steps"],
                                         "resolution": list(job.recipe["resolution"]), "full": bool(full)})
        if stopped or not full:
            trial.set_user_attr(STATUS_KEY, "stopped")
            trial.set_user_attr("reason", f"stopped early at step {steps} of {job.recipe['steps']} (ASHA)")
            with contextlib.suppress(Exception):
                trial.report(m["miou"], steps)
            self._tell(trial, "pruned")
            self.counts["stopped"] += 1
            return
        trial.set_user_attr(STATUS_KEY, "trained")
        values = [m["miou"]] if self.cfg.mode == "constrained" else [m["miou"], trial.user_attrs["latency_ms"]]
        self._tell(trial, "complete", values=values)
        self.counts["trained"] += 1
        self._remember(self.study._storage.get_trial(trial._trial_id))

    def _fail(self, trial: Any, reason: str, tb: str | None = None) -> None:
        self.inflight.pop(trial.number, None)
        self._settle()
        trial.set_user_attr(STATUS_KEY, "failed")
        trial.set_user_attr("reason", reason)
        if tb:
            trial.set_user_attr("traceback", tb)
        self._tell(trial, "fail")
        self.counts["failed"] += 1
        self.log(f"trial {trial.number} failed: {reason}")

    def _tell(self, trial: Any, state: str, values: Any = None) -> None:
        import optuna

        st = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
              "fail": optuna.trial.TrialState.FAIL}[state]
        self.study.tell(trial, values=values if st == optuna.trial.TrialState.COMPLETE else None, state=st)


def recover_crashed(study: Any, url: str, log: Callable[[str], None]) -> int:
    """Trials left RUNNING by a dead driver: mark them failed ('crashed') and re-queue their genomes.

    SQLite studies have one driver (the lock proves the old one is gone), so every RUNNING trial is
    stale; on PostgreSQL only trials whose heartbeat is older than the grace period are.
    """
    import optuna

    storage = study._storage
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if _sqlite_path(url) is None:
        stale_ids = set(storage._get_stale_trial_ids(study._study_id)) if storage.is_heartbeat_enabled() else set()
        running = [t for t in running if t._trial_id in stale_ids]
    n = 0
    for t in running:
        storage.set_trial_user_attr(t._trial_id, STATUS_KEY, "crashed")
        storage.set_trial_user_attr(t._trial_id, "reason", "its driver died before telling a result; re-queued")
        if storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
            if t.params:
                study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
            n += 1
    if n:
        log(f"recovered {n} trial(s) left running by a crashed driver; their genomes are re-queued")
    return n


class _Heartbeat:
    """Records heartbeats for in-flight trials (PostgreSQL studies shared by several drivers)."""

    def __init__(self, study: Any, driver: Driver):
        self.study, self.driver = study, driver
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        storage = self.study._storage
        if getattr(storage, "is_heartbeat_enabled", lambda: False)():
            self._thread = threading.Thread(target=self._run, daemon=True, name="nasseg-heartbeat")
            self._thread.start()
        return self

    def _run(self) -> None:
        storage = self.study._storage
        while not self._stop.wait(storage.get_heartbeat_interval() or 30):
            for job in list(self.driver.inflight.values()):
                with contextlib.suppress(Exception):
                    storage.record_heartbeat(job.trial._trial_id)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------------------- executors
def run_local(driver: Driver, progress: Callable[[], None]) -> None:
    """Train candidates one at a time in this process (no Ray); measurement never overlaps training."""
    while driver.remaining() > 0:
        jobs = driver.next_batch(1)
        progress()
        for job in jobs:
            res = run_job(job.payload(), lambda s, m, j=job: (driver.intermediate(j, s, m), True)[1])
            driver.complete(job, res)
            progress()


def _ray_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one proxy run, intermediate mIoU reported to Tune."""
    from ray import tune

    def report(step: int, miou: float) -> bool:
        tune.report({"miou": miou, "step": step, "final": False})
        return True

    res = run_job(config["job"], report)
    miou = res["metrics"]["miou"] if res.get("ok") else float("nan")
    step = res["metrics"].get("steps_done", 0) if res.get("ok") else 0
    tune.report({"miou": miou, "step": step, "final": True, "result": json.dumps(res)})


def _searcher_class():
    from ray.tune.search import Searcher

    class MeasureFirstSearcher(Searcher):
        """Ray Tune searcher over the driver: proposes measured, feasible candidates in batches, and only
        while no proxy trains (so latency is measured on idle cores).  It tells early-stopped trials as
        PRUNED, never COMPLETE, and rejected ones never reach Tune.  Pickled by Tune: the driver is not
        part of its state."""

        def __init__(self, driver: Driver, concurrency: int, progress: Callable[[], None]):
            super().__init__(metric="miou", mode="max")
            self.driver, self.concurrency, self.progress = driver, concurrency, progress
            self.jobs: dict[str, Job] = {}
            self.queue: list[Job] = []

        def __getstate__(self) -> dict[str, Any]:
            return {"_metric": self._metric, "_mode": self._mode}

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

        def save(self, checkpoint_path: str) -> None:  # the study DB is the checkpoint
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            d = self.driver
            if not self.queue:
                if self.jobs:  # workers are training: measuring now would disturb the latency
                    return None
                if d.remaining() <= 0:
                    return Searcher.FINISHED
                self.queue.extend(d.next_batch(self.concurrency))
                self.progress()
                if not self.queue:
                    return Searcher.FINISHED if d.remaining() <= 0 else None
            job = self.queue.pop(0)
            self.jobs[trial_id] = job
            return {"job": job.payload()}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            job = self.jobs.get(trial_id)
            if job is not None and not result.get("final") and math.isfinite(result.get("miou", float("nan"))):
                self.driver.intermediate(job, int(result["step"]), float(result["miou"]))
                self.progress()

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            job = self.jobs.pop(trial_id, None)
            if job is None:
                return
            if error or not result:
                self.driver.complete(job, {"ok": False, "error": "the Ray worker died or raised outside the "
                                                                 "proxy (after one retry)"})
            elif result.get("final") and "result" in result:
                self.driver.complete(job, json.loads(result["result"]))
            else:  # stopped by the scheduler before its final report
                m = {"miou": float(result.get("miou", float("nan"))), "steps_done": int(result.get("step", 0)),
                     "status": "stopped", "train_seconds": float(result.get("time_total_s", 0.0))}
                self.driver.complete(job, {"ok": True, "metrics": m}, stopped=True)
            self.progress()

    return MeasureFirstSearcher


def run_ray(driver: Driver, cfg: SearchConfig, progress: Callable[[], None], workdir: Path) -> None:
    """Proxies on Ray Tune workers; a searcher that proposes only when no worker is training."""
    import ray
    from ray import tune

    MeasureFirstSearcher = _searcher_class()
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    started_here = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=max(1, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=True)
        except Exception as e:
            raise NassegError(f"cannot start or join Ray ({'address ' + address if address else 'local'}): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        started_here = True
    cluster = ray.cluster_resources()
    per_trial = max(cfg.cpus_per_trial, 1e-3)
    concurrency = cfg.concurrency or max(1, int(cluster.get("CPU", 1) // per_trial))
    if cfg.gpus_per_trial > 0:
        if cluster.get("GPU", 0) <= 0:
            raise NassegError("--gpus-per-trial > 0 but the Ray cluster has no GPU")
        concurrency = min(concurrency, max(1, int(cluster["GPU"] // cfg.gpus_per_trial)))
    searcher = MeasureFirstSearcher(driver, concurrency, progress)
    scheduler = None
    if cfg.asha:
        from ray.tune.schedulers import ASHAScheduler

        steps = int(cfg.recipe.steps)
        every = max(1, int(cfg.recipe.eval_every) or steps)
        scheduler = ASHAScheduler(time_attr="step", metric="miou", mode="max", max_t=steps,
                                  grace_period=min(steps, every), reduction_factor=2)
    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(_ray_trainable, resources),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=f"nasseg-{os.getpid()}", storage_path=str(workdir.resolve()), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
    try:
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


# --------------------------------------------------------------------------------------- main entry
def _dataset_classes(spec: str) -> int:
    from nasseg.data import describe_spec, open_dataset

    describe_spec(spec)
    return int(open_dataset(spec, "val").num_classes)


def search(cfg: SearchConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a search; returns a summary dict.  Raises NassegError on bad settings."""
    import optuna

    from nasseg.space import load_space

    log = log or (lambda s: print(s, file=sys.stderr))
    cfg.validate()
    space = load_space(cfg.space)
    num_classes = _dataset_classes(cfg.dataset)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with driver_lock(cfg.storage):
        storage = open_storage(cfg.storage)
        existing = {s.study_name: s for s in optuna.study.get_all_study_summaries(storage)}
        directions = ["maximize"] if cfg.mode == "constrained" else ["maximize", "minimize"]
        if cfg.study in existing:
            study = optuna.load_study(study_name=cfg.study, storage=storage)
            meta = study.user_attrs.get(META_KEY)
            if not meta or meta.get("kind") != "search":
                raise StorageError(f"study {cfg.study!r} in {mask_url(cfg.storage)} was not created by nasseg search")
            sampler_name = cfg.sampler or meta["sampler"]["name"]
            want = study_meta(dataclasses.replace(cfg, seed=meta["sampler"]["seed"] if cfg.sampler is None else
                                                  cfg.seed), num_classes, sampler_name)
            for key in _DEFINING:
                if want[key] != meta.get(key):
                    raise ConfigError(
                        f"study {cfg.study!r} was created with {key} = {json.dumps(meta.get(key))}; this command "
                        f"gives {json.dumps(want[key])}. Resume with the same settings, or choose a new --study")
            study.sampler = make_sampler(sampler_name, meta["sampler"]["seed"])
            log(f"resuming study {cfg.study!r} ({len(study.trials)} trials so far; sampler {sampler_name}, "
                f"seed {meta['sampler']['seed']})")
            recover_crashed(study, cfg.storage, log)
        else:
            sampler_name = cfg.sampler or "tpe"
            study = optuna.create_study(study_name=cfg.study, storage=storage, directions=directions,
                                        sampler=make_sampler(sampler_name, cfg.seed))
            study.set_user_attr(META_KEY, study_meta(cfg, num_classes, sampler_name))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" although stable since Optuna 3.2
                study.set_metric_names(["miou"] if cfg.mode == "constrained" else ["miou", "latency_ms"])
        driver = Driver(cfg, study, space, num_classes, log)
        t0 = time.perf_counter()
        with _Progress(driver, cfg, enabled=cfg.progress) as prog, _Heartbeat(study, driver):
            if driver.remaining() > 0:
                if cfg.executor == "local":
                    run_local(driver, prog.update)
                else:
                    workdir = (_sqlite_path(cfg.storage) or Path("runs/x")).parent / "ray_results"
                    run_ray(driver, cfg, prog.update, workdir)
        wall = time.perf_counter() - t0
    return {"study": cfg.study, "storage": mask_url(cfg.storage), "wall_seconds": wall,
            "train_seconds": driver.trained_s, "measure_seconds": driver.measure_s, "busy_seconds": driver.busy_s,
            "counts": dict(driver.counts),
            "finished": driver.finished()}


# ------------------------------------------------------------------------------------------ reading
def trials_frame(study: Any):
    """A pandas DataFrame, one row per trial, with the columns people read."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        lat = ua.get("latency") or {}
        rows.append({
            "trial": t.number, "state": t.state.name, "status": ua.get(STATUS_KEY, ""),
            "miou": ua.get("miou"), "latency_ms": ua.get("latency_ms"), "latency_cv": lat.get("cv"),
            "params_M": (ua["params"] / 1e6) if "params" in ua else None,
            "GMACs": (ua["macs"] / 1e9) if "macs" in ua else None,
            "train_s": ua.get("train_seconds"), "genome_id": ua.get("genome_id", ""),
            "genome": ua.get("genome", ""), "reason": ua.get("reason", ""),
        })
    return pd.DataFrame(rows)


class _Progress:
    """A live table: trials done, feasible, rejected, best mIoU, current front."""

    def __init__(self, driver: Driver, cfg: SearchConfig, enabled: bool = True):
        self.driver, self.cfg, self.enabled = driver, cfg, enabled and sys.stderr.isatty()
        self._live = None
        self._last = 0.0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(stderr=True), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def update(self) -> None:
        now = time.perf_counter()
        if self._live is not None and now - self._last > 0.25:
            self._last = now
            self._live.update(self._render())

    def _render(self):
        from rich.table import Table

        d = self.driver
        c = d.counts
        best = None
        with contextlib.suppress(Exception):
            feas = [t for t in d.study.best_trials]
            if feas:
                best = max(t.values[0] for t in feas)
        t = Table(title=f"nasseg search — study {self.cfg.study}", show_header=True)
        for col in ("finished", "of", "in flight", "trained", "reused", "rejected", "stopped", "failed",
                    "best mIoU", "front size"):
            t.add_column(col, justify="right")
        front = 0
        with contextlib.suppress(Exception):
            front = len(d.study.best_trials)
        t.add_row(str(d.finished()), str(self.cfg.trials), str(len(d.inflight)), str(c["trained"]),
                  str(c["reused"]), str(c["rejected"]), str(c["stopped"]), str(c["failed"]),
                  "-" if best is None else f"{best:.4f}", str(front))
        return t

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)


# ---------------------------------------------------------------------------------------------- CLI
def _add_search_args(p: Any) -> None:
    p.add_argument("--space", default="search_spaces/realtime.yaml", help="search space YAML")
    p.add_argument("--latency-budget-ms", type=float, default=None, help="latency budget (ms) on the target device")
    p.add_argument("--latency-device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--latency-resolution", default="512x1024", help="HxW of the latency measurement")
    p.add_argument("--latency-batch", type=int, default=1)
    p.add_argument("--latency-threads", type=int, default=None, help="CPU threads for the measurement "
                   "(default: all cores; always recorded)")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per candidate (>= 30)")
    p.add_argument("--trials", type=int, default=50, help="total finished trials of the study")
    p.add_argument("--storage", default="sqlite:///runs/study.db", help="sqlite:///path.db or postgresql://...")
    p.add_argument("--study", default="realtime", help="study name (an existing one is resumed)")
    p.add_argument("--dataset", default="synthetic", help="synthetic or LAYOUT:PATH (cityscapes, camvid, ade20k, "
                   "voc, folder)")
    p.add_argument("--proxy-resolution", default="128x256", help="HxW of proxy training")
    p.add_argument("--proxy-steps", type=int, default=300)
    p.add_argument("--proxy-batch", type=int, default=8)
    p.add_argument("--proxy-lr", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=None, help="steps between intermediate evaluations")
    p.add_argument("--mode", choices=MODES, default="constrained")
    p.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the study's own, tpe for a new one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--executor", choices=EXECUTORS, default="ray", help="ray (default) or local (no Ray)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (else RAY_ADDRESS or local)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--concurrency", type=int, default=None, help="proxies training at once (default: as resources "
                   "allow)")
    p.add_argument("--asha", action="store_true", help="stop weak proxies early (ASHA on intermediate mIoU)")
    p.add_argument("--artifacts", default=None, help="folder for proxy weights (default: beside the SQLite file; "
                   "must be shared by all nodes of a cluster)")
    p.add_argument("--no-progress", action="store_true")


def config_from_args(a: Any) -> SearchConfig:
    from nasseg.cli import parse_resolution
    from nasseg.train import Recipe

    steps = a.proxy_steps
    if steps < 1:
        raise ConfigError(f"--proxy-steps = {steps} must be >= 1")
    recipe_kw: dict[str, Any] = {
        "resolution": parse_resolution(a.proxy_resolution, "--proxy-resolution"), "steps": steps,
        "batch_size": a.proxy_batch, "eval_every": a.eval_every if a.eval_every is not None
        else (max(1, steps // 4) if a.asha else 0),
        "warmup_steps": min(steps - 1, max(0, steps // 20)), "amp": a.gpus_per_trial > 0,
    }
    if a.proxy_lr is not None:
        recipe_kw["lr"] = a.proxy_lr
    lat = LatencySpec(device=a.latency_device, resolution=parse_resolution(a.latency_resolution,
                                                                            "--latency-resolution"),
                      batch=a.latency_batch, threads=a.latency_threads, runs=a.latency_runs)
    if lat.runs < 30:
        raise ConfigError(f"--latency-runs = {lat.runs}: at least 30 timed runs are needed for a stable median")
    if lat.batch < 1 or (lat.threads is not None and lat.threads < 1):
        raise ConfigError("--latency-batch and --latency-threads must be positive integers")
    return SearchConfig(space=a.space, storage=a.storage, study=a.study, trials=a.trials,
                        latency_budget_ms=a.latency_budget_ms, latency=lat, mode=a.mode, sampler=a.sampler,
                        seed=a.seed, dataset=a.dataset, recipe=Recipe(**recipe_kw), executor=a.executor,
                        ray_address=a.ray_address, cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial,
                        concurrency=a.concurrency, asha=a.asha, progress=not a.no_progress, artifacts=a.artifacts)


def _run_search(a: Any) -> int:
    from rich.console import Console

    cfg = config_from_args(a)
    con = Console(stderr=True, highlight=False)
    summary = search(cfg, log=lambda s: con.print(s))
    study = load_study(cfg.storage, cfg.study)
    _print_study(study, _wide_console())
    c = summary["counts"]
    wall, train = summary["wall_seconds"], summary["train_seconds"]
    con.print(f"\n{summary['finished']} finished trials in study {cfg.study!r} at {summary['storage']}: "
              f"{c['trained']} trained, {c['reused']} reused, {c['rejected']} rejected over budget, "
              f"{c['stopped']} stopped early, {c['failed']} failed (this run).")
    if wall > 0:
        busy, meas = summary["busy_seconds"], summary["measure_seconds"]
        other = max(0.0, wall - busy - meas)
        con.print(f"wall {wall:.1f} s = proxies in flight {busy:.1f} s ({100 * busy / wall:.0f} %; {train:.1f} "
                  f"worker-seconds of training inside them) + latency measurement {meas:.1f} s "
                  f"({100 * meas / wall:.0f} %) + start-up and orchestration {other:.1f} s "
                  f"({100 * other / wall:.0f} %)")
    con.print(f"inspect: nasseg status --storage {summary['storage']} --study {cfg.study}")
    return 0


def _print_study(study: Any, con: Any, limit: int = 40) -> None:
    import pandas as pd
    from rich.table import Table

    df = trials_frame(study)
    if df.empty:
        con.print(f"study {study.study_name!r} has no trials yet")
        return
    meta = study.user_attrs.get(META_KEY, {})
    budget = meta.get("latency_budget_ms")
    best = {t.number for t in study.best_trials} if any(df.state == "COMPLETE") else set()
    shown = df.sort_values(["miou", "latency_ms"], ascending=[False, True], na_position="last").head(limit)
    t = Table(title=f"study {study.study_name!r}: {len(df)} trials"
              + (f", budget {budget:g} ms" if budget else "") + " (* = on the feasible front)")
    for col in ("trial", "status", "mIoU", "latency ms", "CV", "params M", "GMACs", "train s", "genome id", "genome"):
        t.add_column(col, justify="left" if col in ("status", "genome id", "genome") else "right", no_wrap=True,
                     overflow="ellipsis", max_width=None if col != "genome" else 60)

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and pd.isna(v)) else format(v, fmt)

    for r in shown.itertuples():
        t.add_row(f"{r.trial}{'*' if r.trial in best else ''}", r.status or r.state, f(r.miou, ".4f"),
                  f(r.latency_ms, ".2f"), f(r.latency_cv, ".3f"), f(r.params_M, ".3f"), f(r.GMACs, ".2f"),
                  f(r.train_s, ".1f"), r.genome_id, r.genome)
    con.print(t)
    con.print("full genome strings: nasseg status --csv FILE, or nasseg show <genome>")
    counts = df.status.replace("", "running").value_counts().to_dict()
    con.print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def _wide_console() -> Any:
    from rich.console import Console

    con = Console(highlight=False)
    return con if con.is_terminal else Console(highlight=False, width=180)


def _add_status_args(p: Any) -> None:
    p.add_argument("--storage", required=True, help="sqlite:///path.db or postgresql://...")
    p.add_argument("--study", required=True)
    p.add_argument("--csv", default=None, help="also write the full table to this CSV file")
    p.add_argument("--limit", type=int, default=40, help="rows to print (best first)")


def _run_status(a: Any) -> int:

    study = load_study(a.storage, a.study, readonly=True)
    _print_study(study, _wide_console(), a.limit)
    if a.csv:
        trials_frame(study).to_csv(a.csv, index=False)
    return 0


def _register_cli() -> None:
    from nasseg.cli import COMMANDS

    COMMANDS["search"] = (_add_search_args, _run_search, "latency-constrained architecture search")
    COMMANDS["status"] = (_add_status_args, _run_status, "a study's trials (read-only)")


_register_cli()
