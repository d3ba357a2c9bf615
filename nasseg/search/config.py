"""What defines a search: its settings (:class:`SearchConfig`, :class:`LatencySpec`, :class:`ScreenSpec`),
the study metadata a resumed search must match (:func:`study_meta`) and the sampler (:func:`make_sampler`)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasseg import __version__
from nasseg.errors import ConfigError
from nasseg.study import sqlite_path

MODES = ("constrained", "pareto")
SAMPLERS = ("tpe", "nsga2", "random")
EXECUTORS = ("ray", "local")


#: the keys of a latency spec that say *what* is measured (a resumed study must match them); the others say how
#: carefully (the stopping rule, pinning) and may change between runs of a study
LATENCY_DEFINING = ("device", "resolution", "batch", "threads", "runs", "warmup", "dtype", "backend")


@dataclass(frozen=True)
class LatencySpec:
    """How candidates are timed: on ``backend`` (``torch`` eager, ``onnxruntime``, ``tensorrt``: see
    :mod:`nasseg.latency.backends`) on ``device`` in ``dtype``, ``batch`` x 3 x ``resolution``, ``threads``
    intra-op threads (1 on CPU when None), ``warmup`` untimed passes, then at least ``runs`` timed ones and more
    until the median's 95 % interval is within +-``tolerance`` (relative), at most ``max_runs`` passes or
    ``max_seconds`` of timing (``tolerance`` 0: exactly ``runs``; see :class:`nasseg.latency.StoppingRule`);
    ``pin``: the measuring thread on cores of its own (:func:`nasseg.latency.pinned`)."""

    device: str = "cpu"
    resolution: tuple[int, int] = (512, 1024)
    batch: int = 1
    threads: int | None = None
    runs: int = 30
    warmup: int = 10
    dtype: str = "float32"
    backend: str = "torch"
    tolerance: float = 0.02
    max_runs: int = 200
    max_seconds: float = 10.0
    pin: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resolution"] = list(self.resolution)
        return d

    def defining(self) -> dict[str, Any]:
        """What the measurement means (:func:`latency_defining` of :meth:`to_dict`)."""
        return latency_defining(self.to_dict())

    def stopping_rule(self) -> Any:
        """The :class:`nasseg.latency.StoppingRule`, or None for a fixed count (``tolerance`` 0)."""
        from nasseg.latency import StoppingRule

        if not self.tolerance:
            return None
        return StoppingRule(tolerance=self.tolerance, max_runs=self.max_runs, max_seconds=self.max_seconds)

    def measure_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`nasseg.latency.measure_backend` (and, but for ``backend``, of
        :func:`nasseg.cost.measure_latency`) that this spec sets."""
        return {"warmup": self.warmup, "runs": self.runs, "threads": self.threads, "dtype": self.dtype,
                "stopping": self.stopping_rule(), "pin": self.pin}

    def validate(self) -> None:
        from nasseg.cost import DTYPES, MIN_RUNS
        from nasseg.latency import BACKENDS, PRECISIONS

        if self.backend not in BACKENDS:
            raise ConfigError(f"--latency-backend = {self.backend!r} is not known; valid: {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--latency-precision = {self.dtype!r} is not known; valid: {', '.join(PRECISIONS)}")
        if self.runs < MIN_RUNS:
            raise ConfigError(f"--latency-runs = {self.runs}: at least {MIN_RUNS} timed runs are needed for a stable "
                              "median")
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) or self.tolerance < 0:
            raise ConfigError(f"--latency-tolerance = {self.tolerance!r} is not allowed; valid: a fraction in (0, 1), "
                              "or 0 for a fixed count of --latency-runs")
        rule = self.stopping_rule()
        if rule is not None:
            rule.check(self.runs)


def latency_defining(d: dict[str, Any] | None) -> dict[str, Any]:
    """The defining part (:data:`LATENCY_DEFINING`) of a stored latency spec.  A study's spec from before the
    backend existed has no ``backend`` key and means PyTorch eager; ``backend`` is left out when it is ``torch``,
    so that the dict of an eager spec is the same as before (ablation cost keys hash it)."""
    d = dict(d or {})
    out = {k: d.get(k) for k in LATENCY_DEFINING if k != "backend"}
    if d.get("backend", "torch") != "torch":
        out["backend"] = d["backend"]
    if isinstance(out.get("resolution"), tuple):
        out["resolution"] = list(out["resolution"])
    return out


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
    verbose: bool = False  # Ray's own console output (its experiment box, TensorBoard hint) and dashboard
    fidelity_storage: str | None = None  # where to look for a fidelity study (default: the search's storage)
    prefilter: tuple[str, float] | None = None  # (zero-cost proxy, fraction kept): see nasseg.search.prefilter
    init: str | None = None  # "PRESET:CHECKPOINT": warm-start the stages a candidate shares with the preset

    def artifacts_dir(self) -> Path:
        """Per-study folder for trained weights; on a multi-node cluster it must be a shared path."""
        if self.artifacts:
            return Path(self.artifacts) / self.study
        path = sqlite_path(self.storage)
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
        check_executor(self.executor, self.cpus_per_trial, self.gpus_per_trial, self.concurrency)
        if not self.study or not isinstance(self.study, str):
            raise ConfigError("--study needs a name")
        if self.init is not None:
            parse_init(self.init)
        self.latency.validate()
        if self.prefilter is not None:
            from nasseg.search.prefilter import check_spec

            check_spec(self.prefilter)
        if self.screen is not None:
            from nasseg.screen import Calibration

            Calibration(self.screen.min_pairs, self.screen.margin)  # raises ConfigError naming the bad value
            if self.screen.unit_runs < 3 or self.screen.unit_warmup < 1:
                raise ConfigError(f"screen unit_runs = {self.screen.unit_runs}, unit_warmup = "
                                  f"{self.screen.unit_warmup}; valid: runs >= 3, warm-up >= 1")


def check_executor(executor: str, cpus_per_trial: float, gpus_per_trial: float, concurrency: int | None) -> None:
    """Where proxies train and with what (search, fidelity): one line naming the bad option and what is valid."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor = {executor!r}; valid: {', '.join(EXECUTORS)}")
    if not cpus_per_trial > 0 or gpus_per_trial < 0:
        raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0 (fractions allowed)")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"--concurrency = {concurrency} must be >= 1")


def file_sha(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read search space ({e.strerror})") from None


def study_meta(cfg: SearchConfig, num_classes: int, sampler: str) -> dict[str, Any]:
    """What defines a study; a resumed study must match it."""
    return {
        "kind": "search",
        "space": str(cfg.space), "space_sha": file_sha(cfg.space),
        "mode": cfg.mode, "latency_budget_ms": cfg.latency_budget_ms, "latency": cfg.latency.to_dict(),
        "dataset": cfg.dataset, "num_classes": num_classes, "recipe": cfg.recipe.to_dict(),
        "sampler": {"name": sampler, "seed": cfg.seed}, "asha": cfg.asha,
        "prefilter": list(cfg.prefilter) if cfg.prefilter else None,
        "init": init_key(cfg.init) if cfg.init else None,
        "nasseg_version": __version__,
    }


DEFINING = ("space_sha", "mode", "latency_budget_ms", "latency", "dataset", "recipe", "sampler", "asha", "prefilter",
            "init")


def parse_init(text: str) -> tuple[str, Path]:
    """``PRESET:CHECKPOINT`` -> (preset name, path); errors name the value and what is valid."""
    preset, sep, path = str(text).partition(":")
    if not sep or not preset or not path:
        raise ConfigError(f"--init {text!r}: expected PRESET:CHECKPOINT, e.g. stdc1_seg:runs/stdc1.pt")
    from nasseg import weights

    if preset not in weights.names():
        raise ConfigError(f"--init {text!r}: preset {preset!r} has no importable checkpoint; valid: "
                          + ", ".join(weights.names()))
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--init {text!r}: {path} is not a file; valid: a checkpoint file (official, or written by "
                          "nasseg weights import)")
    return preset, p


def init_key(text: str) -> str:
    """What identifies a warm start in the study (and keeps a resume honest): the preset and the checkpoint's
    content hash."""
    preset, path = parse_init(text)
    return f"{preset}:{file_sha(str(path))}"


def resumed_seed(seed: int, told: int) -> int:
    """The sampler seed of a resumed study that already holds ``told`` trials: a fresh stream, the same on every
    machine, so a restarted sampler does not replay the proposals of its first run (which would all be
    duplicates)."""
    return (int(seed) * 1_000_003 + int(told) * 7_919 + 1) % 2**31


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
