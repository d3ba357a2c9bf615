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
import re
import signal
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
HEARTBEAT_S = 30  # PostgreSQL studies: trial heartbeat interval (s)
GRACE_S = 120  # a RUNNING trial without a heartbeat this long is stale

# Tests only: NASSEG_TEST_KILL="POINT:N" makes the driver SIGKILL itself the N-th time it reaches POINT (ask,
# sampled, measured, before_tell, after_tell, result, recover, commit = inside the N-th DB transaction that
# wrote, after its INSERT/UPDATE statements and before its COMMIT).  tests/reliability/test_faults.py restarts
# the search after each kill and checks that nothing was lost or duplicated.
KILL_ENV = "NASSEG_TEST_KILL"
KILL_POINTS = ("ask", "sampled", "measured", "before_tell", "after_tell", "result", "recover", "commit")
_kill_counts: dict[str, int] = {}


def _fault_point(name: str) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec or spec.partition(":")[0] != name:
        return
    _kill_counts[name] = _kill_counts.get(name, 0) + 1
    if _kill_counts[name] == int(spec.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _arm_commit_kill(storage: Any) -> None:
    """With NASSEG_TEST_KILL=commit:N, SIGKILL inside the N-th transaction that wrote, before its COMMIT."""
    if os.environ.get(KILL_ENV, "").partition(":")[0] != "commit":
        return
    from sqlalchemy import event

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            conn.info["nasseg_wrote"] = True

    def on_commit(conn: Any) -> None:
        if conn.info.pop("nasseg_wrote", False):
            _fault_point("commit")

    event.listen(storage.engine, "before_cursor_execute", on_execute)
    event.listen(storage.engine, "commit", on_commit)
    event.listen(storage.engine, "rollback", lambda conn: conn.info.pop("nasseg_wrote", None))


# ------------------------------------------------------------------------------------------- storage
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^:/@\s]*):(\S*)@")  # greedy: up to the token's last @
_PASSWORD_KV = re.compile(r"((?:^|[?&;\s])password\s*=\s*)('[^']*'|[^&\s]+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` (or any text holding URLs) with every password replaced by ***, for logs and errors.

    Masks ``scheme://user:PASSWORD@host`` (also when the password holds an unescaped ``@``) and
    ``password=...`` query or libpq keyword parameters.
    """
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", str(url))
    return _PASSWORD_KV.sub(lambda m: f"{m.group(1)}***", text)


def _url_secrets(url: str) -> list[str]:
    """The password(s) a storage URL holds, decoded and raw, to scrub from driver messages."""
    out = []
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        u = make_url(url)
        out += [u.password or "", *(v for k, v in u.query.items() if k.lower() == "password" and isinstance(v, str))]
    m = _USERINFO.search(url)
    if m:
        out.append(m.group(3))
    out += [m.group(2).strip("'") for m in _PASSWORD_KV.finditer(url)]
    return sorted({s for s in out if s and len(s) >= 3}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """``text`` with the URL's password masked, wherever and however a driver or library quoted it."""
    text = mask_url(text)
    for secret in _url_secrets(url):
        text = text.replace(secret, "***")
    return text


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _check_url(url: str) -> None:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"--storage = {mask_url(str(url))!r} is not a database URL; valid: sqlite:///path.db or "
                          "postgresql://user:password@host/db")
    scheme = url.split("://", 1)[0]
    if not (scheme == "sqlite" or scheme.startswith("postgresql") or scheme.startswith("mysql")):
        raise ConfigError(f"--storage scheme {scheme!r} is not supported; valid: sqlite, postgresql")
    if scheme == "sqlite" and _sqlite_path(url) is None:
        raise ConfigError(f"--storage = {url!r} names no file; valid: sqlite:///path.db (an in-memory database "
                          "would lose the study)")


def _postgres_driver_url(url: str) -> str:
    """A bare ``postgresql://`` URL with the DB-API driver that is installed (SQLAlchemy >= 2.1 defaults to
    psycopg 3; psycopg2 is the common one).  Raises StorageError when there is none."""
    import importlib.util

    scheme, rest = url.split("://", 1)
    if scheme != "postgresql":
        return url
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    raise StorageError(f"storage {mask_url(url)}: no PostgreSQL driver is installed; valid: pip install "
                       "psycopg2-binary (or psycopg)")


def _sqlite_creator(path: Path) -> Callable[[], Any]:
    """Connections for a writable SQLite study: WAL (set once on the file) with ``synchronous=NORMAL``.

    SQLite's default ``FULL`` syncs the disk at every commit; a trial commits ~40 times (ask, each
    ``suggest_*``, each user attribute, each report, tell), which made commits half of the search's own
    overhead (2.3-2.9 ms each on the CI disk vs 0.04 ms, bench/README.md).  In WAL mode ``NORMAL`` never
    corrupts the file and a killed driver loses nothing (the WAL is in the OS cache); only a power loss or
    an OS crash can drop the last commits, which resume then treats like a crashed trial.
    """
    import sqlite3

    def connect() -> Any:
        con = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return connect


def open_storage(url: str, *, readonly: bool = False, create: bool = True):
    """An Optuna RDBStorage for ``url``; SQLite gets WAL and a busy timeout.

    ``readonly`` opens an existing SQLite file with ``mode=ro`` and PostgreSQL in read-only transactions
    (safe beside a running search: nothing can be written through it).  Errors name the (password-masked)
    URL and what went wrong, in one line.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    _check_url(url)
    shown = mask_url(url)
    path = _sqlite_path(url)
    kwargs: dict[str, Any] = {}
    target = url
    if path is not None:
        if path.is_dir():
            raise StorageError(f"storage {shown}: {path} is a directory; valid: sqlite:///path/to/file.db")
        if readonly or not create:
            if not path.exists():
                raise StorageError(f"storage {shown}: the file {path} does not exist; valid: the file a nasseg search "
                                   "wrote (check the path)")
        else:
            import sqlite3

            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.closing(sqlite3.connect(path, timeout=60)) as con:
                    con.execute("PRAGMA journal_mode=WAL")
            except (OSError, sqlite3.Error) as e:
                why = (f"{path} is not a SQLite database; valid: a study file written by nasseg search (or Optuna), "
                       "or the path of a new one") if "file is not a database" in str(e) else str(e)
                raise StorageError(f"cannot open storage {shown}: {why}") from None
        if readonly:
            target = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        if not readonly:
            kwargs["engine_kwargs"]["creator"] = _sqlite_creator(path)
    else:
        target = _postgres_driver_url(url)
        connect_args: dict[str, Any] = {}
        if target.startswith("postgresql"):
            connect_args["connect_timeout"] = 10
            if readonly:
                connect_args["options"] = "-c default_transaction_read_only=on"
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": connect_args}
        kwargs["heartbeat_interval"] = HEARTBEAT_S
        kwargs["grace_period"] = GRACE_S
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat_interval is "experimental" (stable since Optuna 3)
            return optuna.storages.RDBStorage(target, **kwargs)
    except (SQLAlchemyError, OSError, ValueError, RuntimeError, ImportError) as e:
        text = str(e).strip()
        text = re.sub(r"\(Background on this error at: [^)]*\)", "", text)
        msg = " ".join(text.split()) if text else type(e).__name__  # one line
        if readonly and ("read-only" in msg or "readonly" in msg):
            msg = "it holds no Optuna study tables (not a study database, or a copy taken before any write)"
        elif path is not None and "file is not a database" in msg:
            msg = (f"{path} is not a SQLite database; valid: a study file written by nasseg search (or Optuna), or "
                   "the path of a new one")
        raise StorageError(f"cannot open storage {shown}: {_scrub(msg, url)[:500]}") from None


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
class ScreenSpec:
    """Reject far-over-budget candidates on a predicted latency (see :mod:`nasseg.screen`).

    ``min_pairs`` candidates measured end to end calibrate the prediction before it may reject;
    ``margin`` is the smallest slack over the budget a prediction must exceed (the calibration's own worst
    error when larger); ``unit_warmup`` / ``unit_runs`` are the calls per distinct unit in the table.
    """

    min_pairs: int = 5
    margin: float = 0.15
    unit_warmup: int = 2
    unit_runs: int = 7


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
    screen: ScreenSpec | None = None  # None: every candidate is measured end to end (the CLI screens by default)

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
        if self.screen is not None:
            from nasseg.screen import Calibration

            Calibration(self.screen.min_pairs, self.screen.margin)  # raises ConfigError naming the bad value
            if self.screen.unit_runs < 3 or self.screen.unit_warmup < 1:
                raise ConfigError(f"screen unit_runs = {self.screen.unit_runs}, unit_warmup = "
                                  f"{self.screen.unit_warmup}; valid: runs >= 3, warm-up >= 1")


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate/group/constant_liar are "experimental" warnings
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
    worker = worker_info()
    try:
        genome = from_json(payload["genome"])
        recipe = Recipe.from_dict(payload["recipe"])

        def cb(step: int, m: Any) -> bool:
            return True if report is None else bool(report(step, float(m.miou)))

        metrics = proxy_train(genome, recipe, payload["dataset"], payload["seed"], device=payload["device"],
                              callback=cb, weights_path=payload.get("weights_path"))
        return {"ok": True, "metrics": metrics.to_dict(), "wall_s": time.perf_counter() - t0, "worker": worker}
    except MemoryError as e:
        return {"ok": False, "error": f"out of memory: MemoryError {e}".strip()[:2000],
                "wall_s": time.perf_counter() - t0, "worker": worker}
    except Exception as e:  # a broken candidate must not stop the search: it becomes a failed trial
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
        self.proposing: Any = None  # the trial being sampled and measured (heart-beaten like in-flight ones)
        self.table: Any = None  # nasseg.screen.CostTable when screening
        self.calibration: Any = None
        self.screened = 0  # candidates rejected on a predicted latency
        if cfg.screen is not None and cfg.latency_budget_ms is not None:
            from nasseg.screen import Calibration, CostTable

            ls, sc = cfg.latency, cfg.screen
            backend = getattr(study._storage, "_backend", study._storage)
            self.table = CostTable(ls.device, threads=ls.threads, dtype=ls.dtype, warmup=sc.unit_warmup,
                                   runs=sc.unit_runs, engine=getattr(backend, "engine", None))
            self.calibration = Calibration(sc.min_pairs, sc.margin)
        for t in study.get_trials(deepcopy=False):
            self._remember(t)
            if self.calibration is not None and t.user_attrs.get("latency_table_ms") is not None:
                lat = t.user_attrs.get("latency") or {}
                if lat.get("method", "measured") == "measured" and "median_ms" in lat:
                    self.calibration.add(t.user_attrs["latency_table_ms"], lat["median_ms"])

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
        trial = self.study.ask()
        self.proposing = trial
        try:
            return self._propose_trial(trial)
        finally:
            self.proposing = None

    def _propose_trial(self, trial: Any) -> Job | None:
        from nasseg.genome import genome_id, to_json, to_string

        trial.set_user_attr("driver", f"{socket.gethostname()}:{os.getpid()}")  # whose it is (recover_crashed)
        storage = self.study._storage
        if _heartbeat_on(storage):
            storage.record_heartbeat(trial._trial_id)  # so that a dead driver's trial goes stale
        _fault_point("ask")
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
        _fault_point("sampled")
        cached = self._cache.get(gid)
        if cached is not None:
            self._reuse(trial, cached)
            return None
        t0 = time.perf_counter()
        try:
            predicted = self._predict(genome)
            if predicted is not None and self.calibration.rejects(predicted.table_ms, self.cfg.latency_budget_ms):
                self._reject_predicted(trial, predicted)
                return None
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
        if predicted is not None:
            cost["latency_table_ms"] = predicted.table_ms
            self.calibration.add(predicted.table_ms, lat)
        budget = self.cfg.latency_budget_ms
        self._record_cost(trial, cost, lat)
        if budget is not None and lat > budget:
            self._reject(trial, f"latency {lat:.2f} ms > budget {budget:g} ms on {self.cfg.latency.device} at "
                                f"{self.cfg.latency.resolution[0]}x{self.cfg.latency.resolution[1]}")
            return None
        return self.make_job(trial, genome, self.cfg.seed)

    def _record_cost(self, trial: Any, cost: dict[str, Any], lat: float) -> None:
        """The cost attributes, ``latency_ms`` and the latency constraint of a measured or predicted candidate."""
        budget = self.cfg.latency_budget_ms
        constraint = (lat - budget,) if budget is not None else (0.0,)
        for k, v in cost.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("latency_ms", lat)
        trial.set_user_attr("constraint", constraint)
        if budget is not None:  # <= 0 is feasible; constraint-aware samplers and best_trials read it
            trial.set_constraint("latency_over_budget_ms", constraint[0])
        _fault_point("measured")

    def _reject(self, trial: Any, reason: str) -> None:
        """Over budget: told PRUNED with status ``rejected`` and the reason, never trained."""
        trial.set_user_attr(STATUS_KEY, "rejected")
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("train_seconds", 0.0)
        self._tell(trial, "pruned")
        self.counts["rejected"] += 1
        self._remember(self.study._storage.get_trial(trial._trial_id))

    def _predict(self, genome: Any) -> Any:
        """The table's prediction, or None (not screening, or the genome cannot be predicted: then it is
        measured end to end, which reports what is wrong with it)."""
        if self.table is None:
            return None
        ls = self.cfg.latency
        try:
            return self.table.predict(genome, self.num_classes, (ls.batch, 3, *ls.resolution))
        except Exception as e:  # noqa: BLE001 - screening is an optimisation; the measurement decides
            self.log(f"latency table: no prediction ({type(e).__name__}: {str(e)[:200]}); measuring end to end")
            return None

    def _reject_predicted(self, trial: Any, p: Any) -> None:
        """Rejected on the table's prediction: recorded as such (``latency.method`` = "predicted"), never as
        a measurement."""
        cal, budget, ls = self.calibration, self.cfg.latency_budget_ms, self.cfg.latency
        lat = p.table_ms * cal.factor
        record = {"method": "predicted", "median_ms": lat, **p.to_dict(), "calibration": cal.to_dict(),
                  "threshold_ms": cal.threshold(budget), "device": ls.device, "threads": self.table.threads,
                  "dtype": ls.dtype, "resolution": list(ls.resolution), "batch": ls.batch,
                  "table_context": self.table.context}
        self._record_cost(trial, {"params": p.params, "macs": p.macs, "macs_skipped_ops": p.skipped_ops,
                                  "latency": record, "latency_table_ms": p.table_ms}, lat)
        self._reject(trial, f"predicted latency {lat:.2f} ms > {cal.threshold(budget):.2f} ms (budget {budget:g} ms "
                            f"+ {100 * max(cal.margin, cal.error):.0f} % margin) on {ls.device} at {ls.resolution[0]}x"
                            f"{ls.resolution[1]}: sum of {p.units} unit latencies x {cal.factor:.3f}, calibrated on "
                            f"{len(cal.pairs)} candidates measured end to end; not measured end to end")
        self.screened += 1

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
        from nasseg.screen import units

        net = build(genome, self.num_classes)
        if net.is_classifier:
            raise NassegError("this genome builds an image classifier; segmentation search needs a segmentation "
                              "decoder (use another search space)")
        ls = self.cfg.latency
        h, w = ls.resolution
        harvest = self.table is not None and self.table.harvests  # time every unit during the warm-up passes
        macs = count_macs(net, (1, 3, h, w), submodules=[p for p, _ in units(net)] if harvest else ())
        observe = (lambda m: self.table.observe(m, macs.by_module, ls.batch)) if harvest else None
        rec = measure_latency(net, (ls.batch, 3, h, w), device=ls.device, warmup=ls.warmup, runs=ls.runs,
                              threads=ls.threads, dtype=ls.dtype, observe_warmup=observe)
        d = rec.to_dict()
        d["method"] = "measured"
        d["isolation"] = "exclusive: measured by the driver while no proxy was training"
        return {"params": count_params(net), "macs": macs.macs, "macs_skipped_ops": macs.skipped_ops,
                "latency": d}

    def _reuse(self, trial: Any, src: Any) -> None:
        # what describes this trial itself, or the run of the source (where and when it trained), is not copied
        skip = {"driver", "genome_id", "genome_json", "genome", "recipe_json", "dataset", "worker", "wall_seconds",
                "requeued_from", "traceback"}
        for k, v in src.user_attrs.items():
            if k not in skip:
                trial.set_user_attr(k, v)
        trial.set_user_attr("reused_from", src.number)
        trial.set_user_attr("train_seconds", 0.0)
        constraint = src.user_attrs.get("constraint")
        if self.cfg.latency_budget_ms is not None and constraint:  # what constraint-aware samplers read
            trial.set_constraint("latency_over_budget_ms", constraint[0])
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
        _fault_point("result")
        self.inflight.pop(job.number, None)
        self._settle()
        trial = job.trial
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - job.started, 3))
        if result.get("worker"):
            trial.set_user_attr("worker", result["worker"])
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
        _fault_point("before_tell")
        self.study.tell(trial, values=values if st == optuna.trial.TrialState.COMPLETE else None, state=st)
        _fault_point("after_tell")
        _checkpoint(self.study._storage)


def _heartbeat_on(storage: Any) -> bool:
    """Whether ``storage`` (an RDBStorage, or the _CachedStorage that Study wraps around it) records heartbeats."""
    return getattr(storage, "get_heartbeat_interval", lambda: None)() is not None


def _checkpoint(storage: Any) -> None:
    """SQLite: move the WAL into the main file after each result, so that a copy of the .db file alone (taken
    while the search runs) holds every told trial.  Passive: never waits for readers."""
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None and engine.dialect.name == "sqlite":
        with contextlib.suppress(Exception), engine.connect() as con:
            con.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def recover_crashed(study: Any, url: str, log: Callable[[str], None]) -> int:
    """Trials left RUNNING by a dead driver: mark them failed ('crashed') and re-queue their genomes.

    SQLite studies have one driver (the lock proves the old one is gone), so every RUNNING trial is
    stale; on PostgreSQL, trials whose heartbeat is older than the grace period are, and so are trials
    whose driver ran on this host under a process id that no longer exists.
    """
    import optuna

    storage = study._storage
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if _sqlite_path(url) is None:
        stale_ids = set(storage._get_stale_trial_ids(study._study_id)) if _heartbeat_on(storage) else set()
        running = [t for t in running if t._trial_id in stale_ids or _driver_is_dead(t.user_attrs.get("driver"))
                   or _orphan(t)]
    n = 0
    for t in running:
        _fault_point("recover")
        storage.set_trial_user_attr(t._trial_id, STATUS_KEY, "crashed")
        storage.set_trial_user_attr(t._trial_id, "reason", "its driver died before telling a result; re-queued")
        if storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
            if t.params:
                study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
            n += 1
    if n:
        log(f"recovered {n} trial(s) left running by a crashed driver; their genomes are re-queued")
    return n


def _orphan(trial: Any) -> bool:
    """A RUNNING trial that no driver ever claimed (its driver died inside ``ask``, before it could write its
    ``driver`` attribute or a heartbeat), started more than the grace period ago."""
    import datetime

    start = trial.datetime_start
    return "driver" not in trial.user_attrs and start is not None and \
        (datetime.datetime.now() - start).total_seconds() > GRACE_S


def _driver_is_dead(driver: Any) -> bool:
    """True when ``driver`` ("host:pid", a trial's user attr) names a process of this host that is gone."""
    if not isinstance(driver, str) or ":" not in driver:
        return False
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class _Heartbeat:
    """Records heartbeats for in-flight trials (PostgreSQL studies shared by several drivers)."""

    def __init__(self, study: Any, driver: Driver):
        self.study, self.driver = study, driver
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        storage = self.study._storage
        if _heartbeat_on(storage):
            self._thread = threading.Thread(target=self._run, daemon=True, name="nasseg-heartbeat")
            self._thread.start()
        return self

    def _run(self) -> None:
        storage = self.study._storage
        while not self._stop.wait(storage.get_heartbeat_interval() or HEARTBEAT_S):
            trials = [job.trial for job in list(self.driver.inflight.values())]
            trials.append(getattr(self.driver, "proposing", None))
            for trial in trials:
                if trial is not None:
                    with contextlib.suppress(Exception):
                        storage.record_heartbeat(trial._trial_id)

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
def _check_devices(cfg: SearchConfig) -> None:
    """The latency device (and a local executor's GPU) exist here, before a study is created or touched."""
    import torch

    dev, valid = cfg.latency.device, "cpu, cuda or cuda:N"
    try:
        d = torch.device(dev)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--latency-device = {dev!r} is not a device; valid: {valid}") from None
    if d.type not in ("cpu", "cuda"):
        raise ConfigError(f"--latency-device = {dev!r} is not supported; valid: {valid}")
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (d.index is not None and d.index >= n):
            raise ConfigError(f"--latency-device = {dev!r} is not on this machine ({n} CUDA device(s)); valid here: "
                              + ("cpu" if n == 0 else f"cpu, cuda:0..cuda:{n - 1}"))
    if cfg.gpus_per_trial > 0 and cfg.executor == "local" and not torch.cuda.is_available():
        raise ConfigError(f"--gpus-per-trial = {cfg.gpus_per_trial:g} with --executor local, but this machine has no "
                          "CUDA device; valid: --gpus-per-trial 0, or --executor ray on a cluster with GPUs")


def _dataset_classes(spec: str, log: Callable[[str], None] | None = None) -> int:
    """The dataset's class count, after reading every item of a real dataset once: an unreadable image or a
    mask with labels outside the class list stops the search before it starts (one line, naming the file),
    instead of failing every trial on a worker."""
    from nasseg.data import describe_spec, open_dataset
    from nasseg.errors import DatasetError

    describe_spec(spec)
    val = open_dataset(spec, "val")
    if spec != "synthetic":
        for split, ds in (("train", open_dataset(spec, "train")), ("val", val)):
            if log is not None and len(ds) > 200:
                log(f"checking the {len(ds)} {split} items of {spec} ...")
            bad: list[str] = []
            for i in range(len(ds)):
                try:
                    ds[i]
                except DatasetError as e:
                    bad.append(" ".join(str(e).split()))
            if bad:
                raise DatasetError(f"dataset {spec!r}: {len(bad)} of {len(ds)} {split} items are bad; first: "
                                   f"{bad[0]}")
    return int(val.num_classes)


def search(cfg: SearchConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a search; returns a summary dict.  Raises NassegError on bad settings."""
    import optuna

    from nasseg.space import load_space

    log = log or (lambda s: print(s, file=sys.stderr))
    cfg.validate()
    _check_devices(cfg)
    space = load_space(cfg.space)
    num_classes = _dataset_classes(cfg.dataset, log)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with driver_lock(cfg.storage), warnings.catch_warnings():
        # ask/tell with a heart-beating storage is what nasseg does on purpose (see _Heartbeat)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        storage = open_storage(cfg.storage)
        _arm_commit_kill(storage)
        existing = {s.study_name: s for s in optuna.study.get_all_study_summaries(storage)}
        directions = ["maximize"] if cfg.mode == "constrained" else ["maximize", "minimize"]
        study = None
        if cfg.study in existing:
            study = optuna.load_study(study_name=cfg.study, storage=storage)
            if META_KEY not in study.user_attrs and not study.trials and \
                    [d.name for d in study.directions] == [d.upper() for d in directions]:
                study = None  # created by a driver that died before it wrote the settings: adopt it
        if study is not None:
            meta = study.user_attrs.get(META_KEY)
            if not meta or meta.get("kind") != "search":
                raise StorageError(f"study {cfg.study!r} in {mask_url(cfg.storage)} was not created by nasseg search; "
                                   "valid: a study made by nasseg search, or a new --study name (studies there: "
                                   f"{', '.join(sorted(existing))})")
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
                                        sampler=make_sampler(sampler_name, cfg.seed), load_if_exists=True)
            study.set_user_attr(META_KEY, study_meta(cfg, num_classes, sampler_name))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" although stable since Optuna 3.2
                study.set_metric_names(["miou"] if cfg.mode == "constrained" else ["miou", "latency_ms"])
            _checkpoint(storage)
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
            "counts": dict(driver.counts), "screened": driver.screened,
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
            "latency_method": lat.get("method", "measured" if lat else ""),
            "params_M": (ua["params"] / 1e6) if "params" in ua else None,
            "GMACs": (ua["macs"] / 1e9) if "macs" in ua else None,
            "train_s": ua.get("train_seconds"), "genome_id": ua.get("genome_id", ""),
            "genome": ua.get("genome", ""), "reason": ua.get("reason", ""),
        })
    return pd.DataFrame(rows)


class _Progress:
    """A live table: trials done, feasible, rejected, best mIoU, current front."""

    def __init__(self, driver: Driver, cfg: SearchConfig, enabled: bool = True):
        self.driver, self.cfg = driver, cfg
        self.enabled = enabled and sys.stderr.isatty()
        self.plain = enabled and not self.enabled  # logs and CI: one line whenever a trial finishes
        self._live = None
        self._last = 0.0
        self._told = -1

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
        elif self.plain:
            d = self.driver
            done = d.finished()
            if done != self._told:
                self._told = done
                c = d.counts
                print(f"[nasseg] {done}/{self.cfg.trials} finished: {c['trained']} trained, {c['reused']} reused, "
                      f"{c['rejected']} rejected, {c['stopped']} stopped, {c['failed']} failed; "
                      f"{len(d.inflight)} in flight", file=sys.stderr, flush=True)

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
                   "(default: 1 on CPU, so that records compare across machines; always recorded)")
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
    p.add_argument("--no-screen", action="store_true", help="measure every candidate end to end (default: reject "
                   "candidates far over the budget on a latency predicted from a table of measured units)")
    p.add_argument("--screen-margin", type=float, default=0.15, help="a predicted latency must exceed the budget by "
                   "this fraction (or the prediction's worst error so far, if larger) to reject (default 0.15)")
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
                        concurrency=a.concurrency, asha=a.asha, progress=not a.no_progress, artifacts=a.artifacts,
                        screen=None if a.no_screen else ScreenSpec(margin=a.screen_margin))


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
    if cfg.screen is not None and cfg.latency_budget_ms is not None:
        con.print(f"screening: {summary['screened']} of the {c['rejected']} rejections on a predicted latency "
                  "(sum of measured units, calibrated on candidates measured end to end); every trained candidate "
                  "was measured end to end")
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
              + (f", budget {budget:g} ms" if budget else "") + " (* = on the feasible front; ~ = latency predicted "
              "by the cost table, not measured end to end)")
    for col in ("trial", "status", "mIoU", "latency ms", "CV", "params M", "GMACs", "train s", "genome id", "genome"):
        t.add_column(col, justify="left" if col in ("status", "genome id", "genome") else "right", no_wrap=True,
                     overflow="ellipsis", max_width=None if col != "genome" else 60)

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and pd.isna(v)) else format(v, fmt)

    for r in shown.itertuples():
        latency = ("~" if r.latency_method == "predicted" else "") + f(r.latency_ms, ".2f")
        t.add_row(f"{r.trial}{'*' if r.trial in best else ''}", r.status or r.state, f(r.miou, ".4f"),
                  latency, f(r.latency_cv, ".3f"), f(r.params_M, ".3f"), f(r.GMACs, ".2f"),
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
