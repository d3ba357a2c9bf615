"""What a network costs: parameters, multiply-accumulates and measured latency.

This is the only module that imports fvcore.  Three quantities, each with its unit in its name:

* ``params`` -- number of scalar parameters used at inference (see :func:`count_params`).
* ``macs`` -- multiply-accumulates of convolutions (transposed included) and linear / matmul / bmm / einsum,
  as fvcore counts them, one multiply-add = 1.  This is what the papers call "FLOPs" (STDC813 -> 0.806 G).
  ``macs_all`` additionally takes fvcore's default handlers for batch norm, upsampling, adaptive pooling,
  group/layer/instance norm and grid sampling: the number RegSeg's own ``calculate_flops`` prints
  (reference section 0, "fvcore-all").  Operators fvcore has no handler for (additions, activations ...)
  are counted in neither and listed in ``skipped_ops``.
* latency -- milliseconds of a forward pass in eval mode under ``torch.inference_mode``, recorded with
  its spread (median, p90, mean, std, CV, min, every sample), the median's distribution-free interval and
  its provenance (device, threads, precision, resolution, batch, timer, versions, date, host, the cores it
  was pinned to) in a :class:`LatencyRecord`.  Timed by the host's clock around a synchronised pass
  (``perf_counter``, the default on every device) or, on CUDA, by CUDA events recorded on the stream around
  it (``cuda_event``); a fixed count of runs, or as many as :class:`nasseg.latency.StoppingRule` asks for.
  Other runtimes than PyTorch eager (onnxruntime, TensorRT) are :mod:`nasseg.latency.backends`; they return
  the same record with ``backend`` set.

Nothing here changes the module it is given: MACs are counted in eval mode and the previous mode is
restored; latency is measured on a deep copy moved to the device, dtype and memory format asked for (or,
when nothing needs moving or converting, on the module itself in eval mode, its modes restored).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import gc
import json
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from nasseg import __version__
from nasseg.errors import ConfigError
from nasseg.latency.affinity import pinned
from nasseg.latency.stats import StoppingRule, latency_stats

__all__ = [
    "MIN_RUNS",
    "DTYPES",
    "TIMERS",
    "MacCount",
    "LatencyRecord",
    "Cost",
    "count_params",
    "count_macs",
    "measure_latency",
    "measure_latency_checked",
    "pool_records",
    "measure",
]

#: Fewest timed runs a latency record may rest on: fewer gives a median and p90 too noisy to rank by.
MIN_RUNS = 30

#: Precisions :func:`measure_latency` accepts, by the name recorded in a :class:`LatencyRecord`.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

#: How :func:`measure_latency` may time a pass, by the name recorded in a :class:`LatencyRecord`:
#: ``perf_counter`` (host clock; on CUDA the device is synchronised before and after each pass) or
#: ``cuda_event`` (CUDA only: the GPU time between two ``torch.cuda.Event`` recorded on the stream).
TIMERS: tuple[str, ...] = ("perf_counter", "cuda_event")

# fvcore's operator names (as ``by_operator()`` keys them) whose counts make up ``macs``: convolution
# (transposed too) and the matrix products.  Everything else fvcore counts goes only into ``macs_all``.
_MAC_OPERATORS = frozenset({"conv", "linear", "matmul", "mm", "addmm", "bmm", "einsum"})

_VALID_DEVICES = "'cpu', 'cuda' or 'cuda:<index>'"


# ----------------------------------------------------------------------------------------------- params
def _inference_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    params = module.inference_parameters() if hasattr(module, "inference_parameters") else module.parameters()
    seen: set[int] = set()
    for p in params:  # a shared (tied) parameter counts once
        if id(p) not in seen:
            seen.add(id(p))
            yield p


def count_params(module: nn.Module) -> int:
    """Number of scalar parameters used at inference.

    Uses ``module.inference_parameters()`` when the module offers it (``build()`` models do: it leaves
    out auxiliary, detail and boundary heads that only train), otherwise ``module.parameters()``.
    BN gamma/beta and PReLU slopes count; BN running statistics (buffers) do not; a tied parameter
    counts once.
    """
    return sum(p.numel() for p in _inference_parameters(module))


# -------------------------------------------------------------------------------------------------- MACs
_Counts = tuple[dict[str, int], dict[str, int]]  # fvcore's (count per operator, skipped operators)


@dataclass(frozen=True)
class MacCount:
    """fvcore's count for one input shape.

    ``macs``: conv + transposed conv + linear/matmul/mm/addmm/bmm/einsum, one multiply-add = 1.
    ``macs_all``: ``macs`` plus fvcore's default handlers (batch/group/layer/instance norm, nearest and
    bilinear upsampling, adaptive average pooling, grid sampling) -- "fvcore-all".
    ``skipped_ops``: operators seen in the trace that fvcore has no handler for (``aten::add``,
    ``aten::sigmoid`` ...), with how often each occurred; they are in neither count.
    ``by_operator``: fvcore's count per operator name, the parts both totals are summed from.
    ``by_module``: for the submodule paths asked for, their own (by_operator, skipped_ops).
    """

    macs: int
    macs_all: int
    skipped_ops: dict[str, int]
    by_operator: dict[str, int]
    input_shape: tuple[int, ...]
    by_module: dict[str, _Counts] = field(default_factory=dict)


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ConfigError(
            f"input_shape = {input_shape!r} is not allowed; valid: four positive integers (N, C, H, W)"
        )
    return shape  # type: ignore[return-value]


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device = {device!r} is not allowed; valid: {_VALID_DEVICES}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} is not available: torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device = {device!r} is not supported; valid: {_VALID_DEVICES}")
    if dev.type == "cuda" and dev.index is None:  # name the GPU: records say which one, devices compare
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode; every submodule's own mode is put back afterwards.

    Restored flag by flag: ``m.train(mode)`` recurses into all of ``m``'s children, so calling it on
    every module is quadratic in the depth (about 15 % of ``count_macs``'s CPU time, bench/README.md).
    Modules that override ``train()`` still get their ``eval()`` call on the way in.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def count_macs(
    module: nn.Module, input_shape: Sequence[int], device: str | torch.device = "cpu", *, threads: int | None = None,
    submodules: Sequence[str] = (),
) -> MacCount:
    """Trace ``module`` in eval mode on a zero input of ``input_shape`` (N, C, H, W) and count its MACs.

    The trace runs on ``device``; a module whose parameters are elsewhere is deep-copied there first,
    so the caller's module never moves.  fvcore's warnings (unsupported
    operators, uncalled submodules, tracer warnings) are silenced: the unsupported operators are
    returned in ``skipped_ops`` instead, and uncalled submodules are expected (auxiliary heads do not
    run in eval mode).

    The trace is one real forward pass.  ``threads`` is the intra-op thread count it runs with: 1 on
    CPU by default, as :func:`measure_latency` (the count cannot change the result, only the time: on
    a 2-core machine torch's default of one thread per core made the trace 1.3x slower in wall time
    when the machine was quiet and about 6x when other processes kept the cores busy, bench/README.md);
    on CUDA the current count.  The previous count is restored.  ``submodules``: module paths whose own
    counts go into ``by_module`` (from the same trace).
    """
    shape = _check_input_shape(input_shape)
    dev = _device(device)
    if threads is not None:
        _positive_int("threads", threads, 1)
    previous_threads = torch.get_num_threads()
    if threads is None:
        threads = 1 if dev.type == "cpu" else previous_threads
    first = next(module.parameters(), None)
    if first is not None and first.device != dev:
        module = copy.deepcopy(module).to(dev)
    by_operator, skipped, by_module = fvcore_counts(module, (torch.zeros(shape, device=dev),), threads, submodules)
    return MacCount(
        macs=mac_total(by_operator),
        macs_all=sum(by_operator.values()),
        skipped_ops=skipped,
        by_operator=by_operator,
        input_shape=shape,
        by_module=by_module,
    )


def mac_total(by_operator: dict[str, int]) -> int:
    """``macs`` from fvcore's per-operator counts: convolutions and matrix products only."""
    return sum(n for op, n in by_operator.items() if op in _MAC_OPERATORS)


def fvcore_counts(module: nn.Module, inputs: tuple, threads: int,
                  submodules: Sequence[str] = ()) -> tuple[dict[str, int], dict[str, int], dict[str, _Counts]]:
    """fvcore's count per operator and its skipped operators for ``module(*inputs)`` in eval mode.

    ``inputs`` are tensors (or lists / tuples of tensors) already on the module's device; the trace runs
    on ``threads`` intra-op threads (the previous count is restored).  The engine of :func:`count_macs`;
    :mod:`nasseg.screen` calls it per unit of a network.  The third element holds the counts of each of
    ``submodules`` (module paths) from the same trace, as ``{path: (by_operator, skipped)}``.
    """
    previous_threads = torch.get_num_threads()
    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    with _eval_mode(module), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings, and torch.jit deprecations on fvcore's import
        fvcore_logger.setLevel(logging.ERROR)
        torch.set_num_threads(threads)
        try:
            from fvcore.nn import FlopCountAnalysis  # the only fvcore import in nasseg

            analysis = (
                FlopCountAnalysis(module, inputs)
                .unsupported_ops_warnings(False)
                .uncalled_modules_warnings(False)
                .tracer_warnings("none")
            )
            by_operator = {op: int(round(n)) for op, n in sorted(analysis.by_operator().items())}
            skipped = dict(sorted(analysis.unsupported_ops().items()))
            per = analysis.by_module_and_operator() if submodules else {}
            parts = {p: ({op: int(round(n)) for op, n in sorted(per.get(p, {}).items())},
                         dict(sorted(analysis.unsupported_ops(p).items()))) for p in submodules}
        finally:
            fvcore_logger.setLevel(level)
            torch.set_num_threads(previous_threads)
    return by_operator, skipped, parts


# ----------------------------------------------------------------------------------------------- latency
@dataclass(frozen=True)
class LatencyRecord:
    """Latency of one forward pass, in milliseconds, with its spread and where it was measured.

    ``samples_ms`` holds every timed run in order; the statistics are derived from it: ``median_ms``,
    ``p90_ms`` (linear interpolation, as numpy's default), ``mean_ms``, ``std_ms`` (sample standard
    deviation), ``cv`` = std / mean, ``min_ms``.  ``resolution`` is (H, W) and ``batch`` N of the input.
    ``timer`` is one of :data:`TIMERS`; a record written before it was recorded loads as
    ``perf_counter``, the only timer there was.

    Which runtime ran the passes: ``backend`` (``torch`` = PyTorch eager, ``onnxruntime``, ``tensorrt``; see
    :mod:`nasseg.latency.backends`), ``backend_version``, ``providers`` (onnxruntime's execution providers as
    the session reports them) and ``backend_options`` (its settings: graph optimisation level, intra-/inter-op
    threads, the ONNX export's check, TensorRT's engine build seconds ...).  ``median_ci_ms`` is the median's
    distribution-free interval at ``ci_level`` (:func:`nasseg.latency.median_interval`); ``stopping`` the
    stopping rule and why it stopped (None: a fixed count of runs); ``affinity`` the cores the measuring
    thread was pinned to (:func:`nasseg.latency.pinned`; None: not pinned).  A record written before these
    fields loads as PyTorch eager (``backend`` ``torch``, its ``torch_version`` as ``backend_version``) with
    no interval, rule or pinning recorded.
    """

    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    samples_ms: tuple[float, ...]
    device: str
    device_name: str
    threads: int
    dtype: str
    resolution: tuple[int, int]
    batch: int
    channels_last: bool
    compile: bool
    warmup: int
    runs: int
    torch_version: str
    cuda_version: str | None
    date_utc: str
    hostname: str
    nasseg_version: str
    timer: str = "perf_counter"
    backend: str = "torch"
    backend_version: str | None = None
    providers: tuple[str, ...] = ()
    backend_options: dict = field(default_factory=dict)
    median_ci_ms: tuple[float, float] | None = None
    ci_level: float | None = None
    stopping: dict | None = None
    affinity: dict | None = None

    @classmethod
    def from_samples(cls, samples: Sequence[float], *, level: float = 0.95, **provenance: object) -> LatencyRecord:
        """A record of ``samples`` (milliseconds, in order) with its statistics computed here
        (:func:`nasseg.latency.latency_stats`) and ``provenance`` (every other field) as given."""
        stats = latency_stats(samples, level)
        return cls(samples_ms=tuple(samples), runs=len(samples), **stats, **provenance)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        """Plain JSON-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["samples_ms"] = list(self.samples_ms)
        d["resolution"] = list(self.resolution)
        d["providers"] = list(self.providers)
        d["median_ci_ms"] = None if self.median_ci_ms is None else list(self.median_ci_ms)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LatencyRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        # records from before a field: the host clock was the only timer and PyTorch eager the only backend
        d = {"timer": "perf_counter", "backend": "torch", "backend_version": d.get("torch_version"),
             "providers": (), "backend_options": {}, "median_ci_ms": None, "ci_level": None, "stopping": None,
             "affinity": None, **d}
        unknown, missing = sorted(set(d) - names), sorted(names - set(d))
        if unknown or missing:
            raise ConfigError(f"latency record: unknown keys {unknown}, missing keys {missing}")
        ci = d["median_ci_ms"]
        return cls(**{**d, "samples_ms": tuple(d["samples_ms"]), "resolution": tuple(d["resolution"]),
                      "providers": tuple(d["providers"]), "median_ci_ms": None if ci is None else tuple(ci)})

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LatencyRecord:
        return cls.from_dict(json.loads(text))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()


def _positive_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} = {value!r} is not allowed; valid: an integer >= {low}")
    return value


def measure_latency(
    module: nn.Module,
    input_shape: Sequence[int] = (1, 3, 512, 1024),
    device: str | torch.device = "cpu",
    *,
    warmup: int = 10,
    runs: int = 30,
    threads: int | None = None,
    dtype: str = "float32",
    channels_last: bool = False,
    compile: bool = False,
    observe_warmup: Callable[[nn.Module], contextlib.AbstractContextManager] | None = None,
    timer: str = "perf_counter",
    stopping: StoppingRule | None = None,
    pin: bool = False,
) -> LatencyRecord:
    """Time ``runs`` forward passes of ``module`` on a random input of ``input_shape`` (N, C, H, W).

    A deep copy of the module is put in eval mode and moved to ``device``, ``dtype`` and (optionally)
    channels-last memory format, optionally wrapped in ``torch.compile``.  When there is nothing to
    move, convert or compile (every floating parameter and buffer already on ``device`` in ``dtype``,
    no channels-last, no compile), the module itself is timed in eval mode and every submodule's mode
    is restored afterwards: the deep copy alone took 70-240 ms for 4-11 M-parameter candidates, 3-5 %
    of a 256x512 CPU measurement (bench/README.md).  ``warmup`` untimed passes come first (they also
    absorb compilation and cuDNN autotuning).  Each pass runs under ``torch.inference_mode`` and is timed
    by ``timer`` (see :func:`time_calls`): ``"perf_counter"`` (default) reads ``time.perf_counter_ns``
    around it, on CUDA with the device synchronised before and after, so a sample is the end-to-end time
    of one forward as the host sees it, launch overhead included; ``"cuda_event"`` (CUDA only) is the
    GPU time between two CUDA events recorded on the stream before and after the pass.

    ``threads`` is the intra-op thread count during the measurement.  It defaults to 1 on CPU: a fixed
    count that every machine can honour (CI has 2 cores, and Ray trials share a node), so records from
    different hosts and concurrent trials compare.  Pass a larger count to measure a multi-core target;
    the count used is recorded either way.  On CUDA it defaults to the current count (it only affects
    host-side work).  The previous thread count is restored afterwards.

    ``observe_warmup(model)``, when given, returns a context manager entered around the warm-up passes of
    the model actually timed (:mod:`nasseg.screen` times its units there); the timed runs are untouched.

    ``stopping``: a :class:`nasseg.latency.StoppingRule`; ``runs`` is then the minimum count, and timing goes
    on until the median's interval is within the rule's tolerance or its count or time bound is reached (the
    record's ``stopping`` says which).  None: exactly ``runs`` passes.  Either way the record holds the
    median's distribution-free interval (``median_ci_ms``).  ``pin``: the warm-up and timed passes run with
    the calling thread pinned to cores of its own (:func:`nasseg.latency.pinned`; recorded in ``affinity``).

    Raises ``ConfigError`` for fewer than ``MIN_RUNS`` runs, fewer than 1 warm-up pass, an unknown dtype
    or timer, ``cuda_event`` on a CPU device, a bad input shape, a bad stopping rule, or an unavailable device.
    """
    shape = _check_input_shape(input_shape)
    dev = _device(device)
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < MIN_RUNS:
        raise ConfigError(
            f"runs = {runs!r} is too few; valid: an integer >= {MIN_RUNS} "
            "(median and p90 need that many samples)"
        )
    _positive_int("warmup", warmup, 1)
    if threads is not None:
        _positive_int("threads", threads, 1)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype = {dtype!r} is not allowed; valid: {', '.join(map(repr, DTYPES))}")
    if timer not in TIMERS:
        raise ConfigError(f"timer = {timer!r} is not allowed; valid: {', '.join(map(repr, TIMERS))}")
    if timer == "cuda_event" and dev.type != "cuda":
        raise ConfigError(f"timer = 'cuda_event' needs a CUDA device, not {str(dev)!r}; valid on CPU: 'perf_counter'")
    if stopping is not None:
        stopping.check(runs)

    if threads is None:
        threads = 1 if dev.type == "cpu" else torch.get_num_threads()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    tensors = [*module.parameters(), *module.buffers()]
    as_is = not compile and not channels_last and all(
        t.device == dev and (t.dtype == DTYPES[dtype] or not t.is_floating_point()) for t in tensors
    )
    if as_is:  # nothing to convert: time the module itself, in eval mode (restored afterwards)
        model, mode = module, _eval_mode(module)
    else:
        model = copy.deepcopy(module).eval().to(device=dev, dtype=DTYPES[dtype], memory_format=memory_format)
        mode = contextlib.nullcontext(model)
        if compile:
            model = torch.compile(model)
    x = torch.randn(shape, device=dev).to(dtype=DTYPES[dtype], memory_format=memory_format)

    report: dict = {}
    with mode, (pinned(threads) if pin else contextlib.nullcontext(None)) as affinity:
        samples = time_calls(lambda: model(x), dev, warmup=warmup, runs=runs, threads=threads,
                             warmup_context=observe_warmup(model) if observe_warmup is not None else None,
                             timer=timer, stopping=stopping, report=report)
    return LatencyRecord.from_samples(
        samples, level=stopping.level if stopping is not None else 0.95, **provenance(dev, threads),
        dtype=dtype, resolution=(shape[2], shape[3]), batch=shape[0], channels_last=channels_last, compile=compile,
        warmup=warmup, timer=timer, backend="torch", backend_version=torch.__version__,
        stopping=stopping_record(stopping, report, samples), affinity=affinity,
    )


def provenance(dev: torch.device, threads: int) -> dict:
    """The fields of a :class:`LatencyRecord` that say where and when it was measured, whatever the backend."""
    return {"device": str(dev), "device_name": _device_name(dev), "threads": threads,
            "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hostname": platform.node(), "nasseg_version": __version__}


def stopping_record(rule: StoppingRule | None, report: dict, samples: Sequence[float]) -> dict | None:
    """A record's ``stopping``: the rule, why it stopped (``reason``), whether the final interval is within
    its tolerance (``within_tolerance``) and the seconds spent timing; None for a fixed count."""
    if rule is None:
        return None
    from nasseg.latency.stats import relative_half_width

    width = relative_half_width(samples, rule.level)
    return {**rule.to_dict(), "reason": report.get("reason"), "within_tolerance": width <= rule.tolerance,
            "relative_half_width": round(width, 5) if math.isfinite(width) else None,
            "timed_seconds": round(report.get("seconds", 0.0), 3)}


#: a latency record whose CV exceeds this is measured again (bounded by ``NOISE_RETRIES``)
NOISY_CV = 0.10
#: ... and so is one taken while other tasks than the measuring one were runnable, more than this many per core
#: (the instantaneous count of ``/proc/loadavg``; the 1-minute load average where that is missing)
NOISY_LOAD_PER_CPU = 1.0
NOISE_RETRIES = 2


def runnable_tasks() -> int | None:
    """Tasks runnable on this host right now (Linux ``/proc/loadavg``), the caller included; None elsewhere.
    Unlike the load averages it does not lag: a search's own proxies that finished a second ago do not count."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> list[float] | None:
    """The host's 1-, 5- and 15-minute load averages (None where the OS does not say)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def measure_latency_checked(module: nn.Module, input_shape: Sequence[int], device: str | torch.device = "cpu", *,
                            retries: int | None = None, noisy_cv: float | None = None,
                            noisy_load_per_cpu: float | None = None,
                            observe_warmup: Callable[[nn.Module], contextlib.AbstractContextManager] | None = None,
                            measure: Callable[..., LatencyRecord] | None = None, **kwargs: object) -> dict:
    """:func:`measure_latency` (or ``measure``, which takes the same arguments: another backend's, see
    :func:`nasseg.latency.measure_backend`), re-measured (at most ``retries`` more times) while the record is
    noisy: its CV above ``noisy_cv``, or more other runnable tasks per core than ``noisy_load_per_cpu`` just
    before or just after it (defaults: the module's ``NOISE_RETRIES``, ``NOISY_CV``, ``NOISY_LOAD_PER_CPU``).
    Returns the least noisy record's dict with its provenance: ``load_avg_before`` / ``load_avg_after`` (1, 5,
    15 min), ``runnable_before`` / ``runnable_after``, ``cpus``, ``attempts``, ``attempt_cvs``, and, when even the last
    attempt was noisy, ``noisy: True`` and a one-line ``warning`` that the search shows on the trial, in
    ``nasseg status`` and on the export card.  A record whose stopping rule ended at its count or time bound
    without the median's interval within tolerance is flagged the same way, but not re-measured (the rule has
    already spent what it was allowed).  ``observe_warmup`` applies to the first attempt only.
    """
    retries = NOISE_RETRIES if retries is None else retries
    noisy_cv = NOISY_CV if noisy_cv is None else noisy_cv
    noisy_load_per_cpu = NOISY_LOAD_PER_CPU if noisy_load_per_cpu is None else noisy_load_per_cpu
    cpus = os.cpu_count() or 1
    attempts: list[tuple[float, dict, list[str]]] = []
    for attempt in range(1 + max(0, int(retries))):
        before, run_before = load_average(), runnable_tasks()
        rec = (measure or measure_latency)(module, input_shape, device,
                                           observe_warmup=observe_warmup if attempt == 0 else None,
                                           **kwargs)  # type: ignore[arg-type]
        after, run_after = load_average(), runnable_tasks()
        d = rec.to_dict()
        d.update(load_avg_before=before, load_avg_after=after, runnable_before=run_before, runnable_after=run_after,
                 cpus=cpus)
        if run_before is not None and run_after is not None:  # others than this process, now
            busy, what = max(run_before, run_after) - 1, "other runnable task(s)"
        else:
            busy, what = max((before or [0.0])[0], (after or [0.0])[0]), "1-minute load average"
        load = busy / cpus
        reasons = ([f"CV {rec.cv:.2f} > {noisy_cv:g}"] if rec.cv > noisy_cv else []) + \
                  ([f"{what} {busy:g} on {cpus} core(s)"] if load > noisy_load_per_cpu else [])
        attempts.append((rec.cv + max(0.0, load - noisy_load_per_cpu), d, reasons))
        if not reasons:
            break
    _, d, reasons = attempts[-1] if not attempts[-1][2] else min(attempts, key=lambda a: a[0])
    d.update(attempts=len(attempts), attempt_cvs=[round(a[1]["cv"], 4) for a in attempts])
    stop = d.get("stopping") or {}
    if stop and not stop.get("within_tolerance"):  # the rule already spent its bounds: flagged, not re-measured
        width = stop.get("relative_half_width")
        reasons = [*reasons, f"median interval +-{100 * width:.1f} % > +-{100 * stop['tolerance']:g} % after "
                             f"{d['runs']} runs ({stop.get('reason')})" if width is not None else
                   f"no median interval after {d['runs']} runs"]
    if reasons:
        d.update(noisy=True, warning=f"noisy latency after {len(attempts)} measurement(s): {'; '.join(reasons)}; "
                                     "the median may be off (measure on a quieter machine, or re-measure with "
                                     "nasseg export --remeasure)")
    return d


def pool_records(first: dict, second: dict) -> dict:
    """Two checked latency records (dicts) of the same network and settings as one: ``second``'s provenance with the
    statistics of both records' samples together (``runs`` their count, a narrower interval of the median), and
    ``pooled``: what each record was on its own (runs, median, interval, CV, date, load averages).  Noisy when
    either was; both warnings kept.  ``stopping`` and ``affinity`` stay the second record's (how it was taken)."""
    samples = [*first["samples_ms"], *second["samples_ms"]]
    stats = latency_stats(samples, second.get("ci_level") or 0.95)
    keep = ("runs", "median_ms", "median_ci_ms", "cv", "date_utc", "load_avg_before", "load_avg_after", "attempts")
    out = {**second, **stats, "samples_ms": samples, "runs": len(samples),
           "median_ci_ms": None if stats["median_ci_ms"] is None else list(stats["median_ci_ms"]),
           "pooled": [{k: r.get(k) for k in keep} for r in (first, second)]}
    warnings_ = [r["warning"] for r in (first, second) if r.get("warning")]
    if warnings_:
        out.update(noisy=True, warning=" / ".join(warnings_))
    return out


def time_calls(call: Callable[[], object], device: torch.device, *, warmup: int, runs: int,
               threads: int, warmup_context: contextlib.AbstractContextManager | None = None,
               timer: str = "perf_counter", stopping: StoppingRule | None = None,
               report: dict | None = None) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``call()`` after ``warmup`` untimed ones (with ``stopping``: at
    least ``runs``, then as many as the rule asks for; ``report``, when given, receives the rule's ``reason``
    and the ``seconds`` spent in the timed calls).

    The timing loop of :func:`measure_latency` (which checks its arguments; this does not): under
    ``torch.inference_mode`` with ``threads`` intra-op threads (restored afterwards), garbage collection
    off.  ``timer="perf_counter"``: each call between two ``time.perf_counter_ns`` readings, on CUDA with
    the device synchronised before and after each call.  ``timer="cuda_event"`` (``device`` must be a
    CUDA device): ``torch.cuda.Event(enable_timing=True)`` recorded on the device's current stream before
    and after each call, the host waiting for the second one; the sample is ``elapsed_time`` between
    them.  ``warmup_context`` is entered around the warm-up calls only.
    """
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda *a: None)
    samples: list[float] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection in the middle of a run is not the network's cost
    try:
        with torch.inference_mode():
            with warmup_context or contextlib.nullcontext():
                for _ in range(warmup):
                    call()
            sync(device)
            events = timer == "cuda_event"
            # the events go on the stream the call launches on
            with torch.cuda.device(device) if events else contextlib.nullcontext():
                start, end = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) \
                    if events else (None, None)
            began = time.perf_counter()
            reason = None
            while reason is None:
                if events:
                    with torch.cuda.device(device):
                        start.record()
                        call()
                        end.record()
                        end.synchronize()
                        samples.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter_ns()
                    call()
                    sync(device)
                    samples.append((time.perf_counter_ns() - t0) / 1e6)
                if stopping is None:
                    reason = "count" if len(samples) >= runs else None
                else:
                    reason = stopping.verdict(samples, time.perf_counter() - began, runs)
            if report is not None:
                report.update(reason=reason, seconds=time.perf_counter() - began)
    finally:
        torch.set_num_threads(previous_threads)
        if gc_was_enabled:
            gc.enable()
    return samples


# -------------------------------------------------------------------------------------------------- all
@dataclass(frozen=True)
class Cost:
    """Everything :func:`measure` finds for one module and input shape; ``latency`` is None when not timed."""

    params: int
    macs: int
    macs_all: int
    skipped_ops: dict[str, int] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()
    latency: LatencyRecord | None = None

    def to_dict(self) -> dict:
        """Plain JSON-safe dict; ``latency`` is nested as :meth:`LatencyRecord.to_dict` or None."""
        return {
            "params": self.params,
            "macs": self.macs,
            "macs_all": self.macs_all,
            "skipped_ops": dict(self.skipped_ops),
            "input_shape": list(self.input_shape),
            "latency": None if self.latency is None else self.latency.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Cost:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"cost record: unknown keys {unknown}; valid: {sorted(names)}")
        latency = d.get("latency")
        return cls(
            params=d["params"],
            macs=d["macs"],
            macs_all=d["macs_all"],
            skipped_ops=dict(d.get("skipped_ops", {})),
            input_shape=tuple(d.get("input_shape", ())),
            latency=None if latency is None else LatencyRecord.from_dict(latency),
        )


def measure(
    module: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    latency: bool = True,
    **latency_kw,
) -> Cost:
    """Parameters, MACs and (when ``latency``) measured latency of ``module`` for ``input_shape``.

    ``latency_kw`` goes to :func:`measure_latency` (``warmup``, ``runs``, ``threads``, ``dtype``,
    ``channels_last``, ``compile``, ``timer``); an unknown keyword raises ``TypeError`` there, and giving any with
    ``latency=False`` raises ``ConfigError`` rather than being ignored.
    """
    if not latency and latency_kw:
        raise ConfigError(
            f"latency options {sorted(latency_kw)} given with latency=False; drop them or set latency=True"
        )
    mac = count_macs(module, input_shape, device)
    return Cost(
        params=count_params(module),
        macs=mac.macs,
        macs_all=mac.macs_all,
        skipped_ops=mac.skipped_ops,
        input_shape=mac.input_shape,
        latency=measure_latency(module, input_shape, device, **latency_kw) if latency else None,
    )
