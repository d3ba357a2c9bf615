"""Pre-screening: a candidate's latency and MACs from a table of per-unit measurements.

Timing a whole candidate (warm-up + >= 30 forward passes, :func:`nasseg.cost.measure_latency`) costs
40 forward passes: 1.5-9 s for a realtime.yaml member at 256x512 on one CPU core, so a search that
times every candidate end to end looks at fewer than one candidate a second, and spends a third to
two thirds of its time on candidates it then rejects (bench/README.md, prescreen).  Hardware-aware NAS
answers this with a latency lookup table (FBNet, ProxylessNAS, Once-for-All); this module is nasseg's.

A network is cut into **units**: every block of every stage (and the merge after a stage's
concatenation), the context module, every fusion of a chain decoder (or the whole decoder otherwise),
the head and the final resize to the input size (:func:`units`).  A unit's cost depends only on its
structure and on the shapes of its inputs, and units recur across the members of a space (a space has a
few hundred distinct ones), so :class:`CostTable` measures each distinct (structure, input shapes) once
on the target device -- latency over a few timed runs, fvcore's count per operator, and its output
shapes -- and predicts a candidate as the sum over its units.  To find the units' input shapes without
computing anything, the candidate is built on the meta device and run on a meta tensor, every unit
already in the table answering with meta tensors of its recorded output shapes; only a candidate with
units the table has not seen is built for real (once), and only those units run.  On CPU the search also
times every unit in place during the (untimed) warm-up passes of each end-to-end measurement it makes
(:meth:`CostTable.observe`), and a prediction prefers those timings: a unit timed alone has its weights
and input hot in cache and ran up to 1.5x faster than inside its network.

What the prediction is worth:

* ``params``: exact (counted on the meta-built network, inference parameters only);
* ``macs``: exact -- every convolution and matrix product runs inside a unit (tested against
  :func:`nasseg.cost.count_macs` on every shipped space);
* latency: a **prediction**.  Units timed alone miss the operations between units (concatenations,
  ESPNet's image pooling) and the caches they share, so the sum is scaled by a :class:`Calibration`
  fitted on candidates that were also measured end to end, and a candidate is rejected on the prediction
  only when it exceeds the budget by more than the calibration's own worst error.  The search
  (``nasseg search``, on by default, ``--no-screen``) measures every candidate it may train end to end
  as before; predictions only ever reject, and a rejected trial says that its latency was predicted.

The table lives in the study database (table ``nasseg_unit_costs``, SQLAlchemy), keyed by a hash of the
measurement context (device name, threads, dtype, runs, torch and nasseg versions, and the latency backend
when it is not PyTorch eager) and of the unit, so a resumed search, or a second driver of the same PostgreSQL
study, starts with it filled.

Backends: the search screens only with ``--latency-backend torch``.  Units are timed in PyTorch eager, one at a
time; onnxruntime and TensorRT run one optimised graph or engine per candidate, fusing operators across unit
boundaries (convolution + batch norm + activation, a stage's merge into the next convolution), so a sum of
eager units is not a model of their latency, and timing each unit on the backend would mean exporting and
building a graph per unit.  With another backend the driver says so once and measures every candidate end to
end on it.  A table for another backend, should one be built, is kept apart by its context.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import statistics
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasseg import __version__
from nasseg.errors import ConfigError

__all__ = ["UnitCost", "Prediction", "CostTable", "Calibration", "units", "fingerprint"]

TABLE_NAME = "nasseg_unit_costs"


# ------------------------------------------------------------------------------------------------ units
def units(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The units of a :class:`~nasseg.build.Network`, as (path, module), in the order they run.

    Disjoint, and together they hold every parameterised layer used at inference; what runs between them
    is concatenation, ESPNet's image pooling, the ReLU of a ``relu_in`` stage and the classifier's flatten.
    A multi-branch network's branch stages, then its links, come after the main stages (a link is one unit).
    """
    from nasseg.build import Network
    from nasseg.heads.chain import FusionChain

    if not isinstance(net, Network):
        raise ConfigError(f"cost tables cut nasseg networks into units; got {type(net).__name__}")
    out = net.stage_parts()  # every stage's blocks and merge, the main stages first, then the branches'
    out += [(f"branches.{b}.links.{i}", link) for b, branch in enumerate(net.branches)
            for i, link in enumerate(branch.links)]
    if isinstance(net.decoder, FusionChain):
        out.append(("decoder.context", net.decoder.context))
        out += [(f"decoder.fusions.{i}", f) for i, f in enumerate(net.decoder.fusions)]
    else:
        if not isinstance(net.context, nn.Identity):
            out.append(("context", net.context))
        out.append(("decoder", net.decoder))
    if not isinstance(net.head, nn.Identity):
        out.append(("head", net.head))
    out.append(("resize", net.resize))
    return out


_SKIP = object()


def _plain(v: Any) -> Any:
    """A JSON form of an attribute that can change what a module computes, or _SKIP."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, torch.dtype):
        return str(v)
    if isinstance(v, (tuple, list)):
        items = [_plain(x) for x in v]
        return _SKIP if any(x is _SKIP for x in items) else items
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', repr(v))}"
    return _SKIP


def fingerprint(module: nn.Module) -> str:
    """A hash of a module's structure: per submodule its class, public plain attributes (channels,
    strides, dilations, modes, flags, functions) and parameter / buffer shapes and dtypes.  Two modules with
    the same fingerprint run the same operators on the same shapes; values (weights) do not enter it."""
    parts = []
    for name, m in module.named_modules():
        attrs = {}
        for k, v in vars(m).items():
            if k.startswith("_") or k == "training":
                continue
            p = _plain(v)
            if p is not _SKIP:
                attrs[k] = p
        tensors = [[n, list(t.shape), str(t.dtype)] for n, t in
                   [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]]
        parts.append([name, f"{type(m).__module__}.{type(m).__qualname__}", attrs, tensors])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# A unit's inputs and outputs as JSON: a tensor by its shape, lists / tuples / plain values as such.
def _encode(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return {"tensor": list(v.shape)}
    if isinstance(v, (tuple, list)):  # torch.Size included
        return {"tuple" if isinstance(v, tuple) else "list": [_encode(x) for x in v]}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise ConfigError(f"cost table: a unit takes or returns a {type(v).__name__}, which it cannot record")


def _decode(v: Any, tensor: Callable[[list[int]], Any]) -> Any:
    if isinstance(v, dict):
        if "tensor" in v:
            return tensor(v["tensor"])
        if "tuple" in v:
            return tuple(_decode(x, tensor) for x in v["tuple"])
        return [_decode(x, tensor) for x in v["list"]]
    return v


class _Bound(nn.Module):
    """``unit(*inputs)`` with the non-tensor inputs bound, so that fvcore's tracer sees tensors only."""

    def __init__(self, unit: nn.Module, inputs: Any):
        super().__init__()
        self.unit, self.inputs = unit, inputs

    def forward(self, *tensors: torch.Tensor) -> Any:
        it = iter(tensors)
        return self.unit(*_decode(self.inputs, lambda shape: next(it)))


# ------------------------------------------------------------------------------------------------ table
@dataclass(frozen=True)
class UnitCost:
    """One distinct unit on one set of input shapes: its measured latency, fvcore counts and output shapes."""

    ms: float  # median of the timed runs
    cv: float
    runs: int
    by_operator: dict[str, int]
    skipped_ops: dict[str, int]
    output: Any  # encoded output (shapes)
    name: str  # the unit's class, for people reading the table
    source: str = "alone"  # "alone": timed on its own; "network": timed inside a whole network's pass

    @classmethod
    def from_samples(cls, samples: list[float], **fields: Any) -> UnitCost:
        """``ms`` = median of the timed calls, ``cv`` = their std / mean (0 for a single call)."""
        mean = statistics.fmean(samples)
        cv = statistics.stdev(samples) / mean if len(samples) > 1 and mean > 0 else 0.0
        return cls(ms=statistics.median(samples), cv=cv, runs=len(samples), **fields)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> UnitCost:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Prediction:
    """What :meth:`CostTable.predict` returns for one candidate.  ``table_ms`` = ``network_ms`` +
    ``alone_factor`` x ``alone_ms``, the sum of its units' latencies before any :class:`Calibration`; ``macs``
    and ``params`` are exact."""

    table_ms: float
    params: int
    network_ms: float  # part of the sum timed inside networks
    alone_ms: float  # part timed on its own, before the alone -> network factor
    alone_factor: float
    macs: int
    macs_all: int
    skipped_ops: dict[str, int]
    units: int  # unit calls in one forward pass
    new_units: int  # distinct units measured for this prediction
    seconds: float  # wall time of the prediction, measuring included
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"table_ms": self.table_ms, "network_ms": self.network_ms, "alone_ms": self.alone_ms,
                "alone_factor": self.alone_factor, "units": self.units, "new_units": self.new_units,
                "seconds": round(self.seconds, 4), "input_shape": list(self.input_shape)}


class CostTable:
    """Per-unit costs on one target (device, threads, dtype), measured on demand and kept in memory and,
    given an SQLAlchemy ``engine``, in its database (table ``nasseg_unit_costs``).

    ``warmup`` / ``runs``: untimed and timed calls per distinct unit (its median is the table's value).
    Units are cheap (a block at its stage's resolution), so 2 + 7 calls cost about 9 forward passes of
    the whole network for a candidate whose units are all new (a quarter of an end-to-end record), and
    nothing once they are known.

    Two sources per unit: timed **alone** (on demand, above) and timed **inside a network** (on CPU,
    :meth:`observe` times every unit during the untimed warm-up passes of an end-to-end measurement, at no
    extra cost).  A unit alone runs with its weights and input hot in cache, inside a network it does
    not: alone timings ran 1.0-1.5x faster (bench/README.md).  A prediction uses the network timing where
    there is one, and the alone timing otherwise, scaled by ``alone_factor``: the median network / alone
    ratio over the units that have both.
    """

    def __init__(self, device: str | torch.device = "cpu", *, threads: int | None = None, dtype: str = "float32",
                 warmup: int = 2, runs: int = 7, engine: Any = None, backend: str = "torch"):
        from nasseg.cost import DTYPES, _cpu_name, _device, _device_name, _positive_int

        self.device = _device(device)
        if dtype not in DTYPES:
            raise ConfigError(f"dtype = {dtype!r} is not allowed; valid: {', '.join(map(repr, DTYPES))}")
        self.dtype = dtype
        self.threads = _positive_int("threads", threads, 1) if threads is not None else (
            1 if self.device.type == "cpu" else torch.get_num_threads())
        self.warmup = _positive_int("warmup", warmup, 1)
        self.runs = _positive_int("runs", runs, 3)
        self.context = {
            "device": self.device.type, "device_name": _device_name(self.device) if self.device.type == "cuda"
            else _cpu_name(), "threads": self.threads, "dtype": dtype, "warmup": self.warmup, "runs": self.runs,
            "torch": torch.__version__, "nasseg": __version__,
        }
        if backend != "torch":  # keyed by backend; eager tables keep the context (and rows) they had before it
            self.context["backend"] = backend
        self.backend = backend
        self.context_id = hashlib.sha256(json.dumps(self.context, sort_keys=True).encode()).hexdigest()[:32]
        self.entries: dict[str, UnitCost] = {}  # timed alone
        self.network: dict[str, UnitCost] = {}  # timed inside a network
        self.measure_seconds = 0.0
        self._engine = None
        if engine is not None:
            self._attach(engine)

    def __len__(self) -> int:
        """Distinct units known (from either source)."""
        return len(self.entries.keys() | self.network.keys())

    def lookup(self, key: str) -> UnitCost | None:
        return self.network.get(key) or self.entries.get(key)

    @property
    def harvests(self) -> bool:
        """Whether :meth:`observe` can time units inside a network here (CPU: no asynchronous kernels)."""
        return self.device.type == "cpu"

    @property
    def alone_factor(self) -> float:
        ratios = [self.network[k].ms / e.ms for k, e in self.entries.items() if k in self.network and e.ms > 0]
        return statistics.median(ratios) if ratios else 1.0

    # -------------------------------------------------------------------------------------- storage
    def _attach(self, engine: Any) -> None:
        import sqlalchemy as sa

        self._table = _sql_table(sa)
        with contextlib.suppress(sa.exc.SQLAlchemyError):  # another driver created it at the same moment
            self._table.metadata.create_all(engine, checkfirst=True)
        with engine.connect() as con:
            rows = con.execute(sa.select(self._table.c.key, self._table.c.entry)
                               .where(self._table.c.context_id == self.context_id)).all()
        for key, text in rows:
            e = UnitCost.from_json(text)
            (self.network if e.source == "network" else self.entries)[key] = e
        self._engine = engine

    def _store(self, key: str, entry: UnitCost) -> None:
        (self.network if entry.source == "network" else self.entries)[key] = entry
        if self._engine is None:
            return
        import sqlalchemy as sa

        row = {"context_id": self.context_id, "key": key, "source": entry.source, "entry": entry.to_json(),
               "context": json.dumps(self.context, sort_keys=True),
               "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        with contextlib.suppress(sa.exc.IntegrityError), self._engine.begin() as con:
            con.execute(sa.insert(self._table).values(**row))  # a duplicate: another driver measured it first

    # ----------------------------------------------------------------------------------- prediction
    def _key(self, print_: str, inputs: Any) -> str:
        text = json.dumps([self.context_id, print_, inputs], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def predict(self, genome: Any, num_classes: int, input_shape: tuple[int, int, int, int]) -> Prediction:
        """Latency (table sum), exact params and MACs of ``build(genome, num_classes)`` on ``input_shape``.

        Units not in the table are measured now (the network is then built once for real); everything
        else runs on the meta device.
        """
        from nasseg.build import build
        from nasseg.cost import _check_input_shape, count_params, mac_total

        t0 = time.perf_counter()
        shape = _check_input_shape(input_shape)
        with torch.device("meta"):
            net = build(genome, num_classes)
        net.eval()
        calls: list[tuple[str, str]] = []  # (path, key) of every unit call, in order
        missing: dict[str, tuple[str, Any, Any, str]] = {}  # key -> (path, inputs, output, name)
        with _planned(net, self, calls, missing), torch.no_grad():
            net(torch.empty(shape, device="meta"))
        new = len(missing)
        if missing:
            self._measure_missing(genome, num_classes, missing)
        entries = [self.lookup(k) for _, k in calls]
        by_operator: dict[str, int] = {}
        skipped: dict[str, int] = {}
        factor = self.alone_factor
        network_ms = sum(e.ms for e in entries if e.source == "network")
        alone_ms = sum(e.ms for e in entries if e.source != "network")
        for e in entries:
            for op, n in e.by_operator.items():
                by_operator[op] = by_operator.get(op, 0) + n
            for op, n in e.skipped_ops.items():
                skipped[op] = skipped.get(op, 0) + n
        return Prediction(
            table_ms=network_ms + factor * alone_ms, network_ms=network_ms, alone_ms=alone_ms, alone_factor=factor,
            params=count_params(net), macs=mac_total(by_operator),
            macs_all=sum(by_operator.values()), skipped_ops=dict(sorted(skipped.items())), units=len(calls),
            new_units=new, seconds=time.perf_counter() - t0, input_shape=shape,
        )

    def _measure_missing(self, genome: Any, num_classes: int, missing: dict[str, tuple[str, Any, Any, str]]) -> None:
        from nasseg.build import build
        from nasseg.cost import DTYPES, fvcore_counts, time_calls

        t0 = time.perf_counter()
        real = build(genome, num_classes)
        dtype = DTYPES[self.dtype]
        for key, (path, inputs, output, name) in missing.items():
            unit = real.get_submodule(path).eval().to(self.device, dtype)
            gen = torch.Generator(device="cpu").manual_seed(0)
            args = _decode(inputs, lambda s, g=gen: torch.randn(s, generator=g).to(self.device, dtype))
            samples = time_calls(lambda u=unit, a=args: u(*a), self.device, warmup=self.warmup, runs=self.runs,
                                 threads=self.threads)
            by_operator, skipped, _ = fvcore_counts(_Bound(unit, inputs), tuple(_flat(args)), self.threads)
            self._store(key, UnitCost.from_samples(samples, by_operator=by_operator, skipped_ops=skipped,
                                                   output=output, name=name))
        self.measure_seconds += time.perf_counter() - t0

    @contextlib.contextmanager
    def observe(self, net: nn.Module, counts: dict[str, tuple[dict[str, int], dict[str, int]]],
                batch: int = 1) -> Iterator[None]:
        """While inside, every forward pass of ``net`` (a Network on this table's device, dtype and thread
        count) times each of its units; on leaving, each unit not yet timed inside a network is stored with
        source "network": the median of its calls after the first third (which absorb first-call set-up).

        ``counts``: fvcore's (by_operator, skipped_ops) per unit path for one image
        (``count_macs(..., submodules=paths)``); operator counts are multiplied by ``batch``.  Used as
        ``measure_latency(..., observe_warmup=...)``: the warm-up passes are timed, the record's runs are not.
        """
        hooks, seen = [], {}  # path -> [key, output, name, samples]
        for path, unit in units(net):
            print_, started = fingerprint(unit), [0]

            def pre(mod: nn.Module, args: tuple, _path: str = path, _print: str = print_,
                    _started: list = started) -> None:
                if _path not in seen:
                    seen[_path] = [self._key(_print, _encode(list(args))), None, type(mod).__name__, []]
                _started[0] = time.perf_counter_ns()

            def post(mod: nn.Module, args: tuple, out: Any, _path: str = path, _started: list = started) -> None:
                rec = seen[_path]
                rec[3].append((time.perf_counter_ns() - _started[0]) / 1e6)
                if rec[1] is None:
                    rec[1] = _encode(out)

            hooks += [unit.register_forward_pre_hook(pre), unit.register_forward_hook(post)]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()
        for path, (key, output, name, samples) in seen.items():
            samples = samples[len(samples) // 3:]
            if key in self.network or not samples or path not in counts:
                continue
            by_operator, skipped = counts[path]
            self._store(key, UnitCost.from_samples(
                samples, by_operator={op: n * batch for op, n in by_operator.items()}, skipped_ops=dict(skipped),
                output=output, name=name, source="network"))


def _flat(v: Any) -> Iterator[torch.Tensor]:
    if isinstance(v, torch.Tensor):
        yield v
    elif isinstance(v, (tuple, list)):
        for x in v:
            yield from _flat(x)


def _sql_table(sa: Any) -> Any:
    meta = sa.MetaData()
    return sa.Table(
        TABLE_NAME, meta,
        sa.Column("context_id", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("created_utc", sa.String(40), nullable=False),
    )


@contextlib.contextmanager
def _planned(net: nn.Module, table: CostTable, calls: list[tuple[str, str]],
             missing: dict[str, tuple[str, Any, Any, str]]) -> Iterator[None]:
    """While inside, each unit of the meta-built ``net`` looks itself up in ``table``: a known unit returns
    meta tensors of its recorded output shapes without computing; an unknown one computes on meta tensors
    (shapes only) and is noted in ``missing``.  Every call's (path, key) goes to ``calls``."""
    patched = []
    for path, unit in units(net):
        print_ = fingerprint(unit)
        original = unit.forward

        def forward(*args: Any, _path: str = path, _print: str = print_, _orig: Callable = original,
                    _name: str = type(unit).__name__) -> Any:
            inputs = _encode(list(args))
            key = table._key(_print, inputs)
            calls.append((_path, key))
            known = table.lookup(key)
            if known is not None:
                return _decode(known.output, lambda s: torch.empty(s, device="meta"))
            out = _orig(*args)
            if key not in missing:
                missing[key] = (_path, inputs, _encode(out), _name)
            return out

        unit.forward = forward  # an instance attribute: nn.Module.__call__ finds it first
        patched.append(unit)
    try:
        yield
    finally:
        for unit in patched:
            del unit.forward


# ------------------------------------------------------------------------------------------ calibration
class Calibration:
    """Table sums vs end-to-end medians of the same candidates: when to trust a prediction to reject.

    ``factor`` = median of measured / table over the pairs seen; ``error`` = the largest relative
    deviation of any pair from ``factor`` (so the worst prediction so far).  A candidate is rejected on its
    prediction only with at least ``min_pairs`` pairs and when ``table_ms x factor`` exceeds
    ``budget x (1 + max(margin, error))``: a prediction that was ever off by 30 % rejects nothing within
    30 % of the budget.  Candidates near or under the budget are always measured end to end.
    """

    def __init__(self, min_pairs: int = 5, margin: float = 0.15):
        if not isinstance(min_pairs, int) or isinstance(min_pairs, bool) or min_pairs < 1:
            raise ConfigError(f"screen min_pairs = {min_pairs!r}; valid: an integer >= 1")
        if isinstance(margin, bool) or not (isinstance(margin, (int, float)) and 0 <= margin < 10):
            raise ConfigError(f"--screen-margin = {margin!r}; valid: a fraction in [0, 10), e.g. 0.15 for 15 %")
        self.min_pairs, self.margin = min_pairs, float(margin)
        self.pairs: list[tuple[float, float]] = []

    def add(self, table_ms: float, measured_ms: float) -> None:
        if table_ms > 0 and measured_ms > 0:
            self.pairs.append((float(table_ms), float(measured_ms)))

    @property
    def ready(self) -> bool:
        return len(self.pairs) >= self.min_pairs

    @property
    def factor(self) -> float:
        return statistics.median(m / t for t, m in self.pairs) if self.pairs else 1.0

    @property
    def error(self) -> float:
        f = self.factor
        return max((abs(m / t / f - 1) for t, m in self.pairs), default=float("inf"))

    def threshold(self, budget_ms: float) -> float:
        """The predicted latency above which a candidate is rejected without an end-to-end measurement."""
        return budget_ms * (1 + max(self.margin, self.error))

    def rejects(self, table_ms: float, budget_ms: float) -> bool:
        return self.ready and table_ms * self.factor > self.threshold(budget_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": len(self.pairs), "factor": round(self.factor, 4),
                "error": round(self.error, 4) if self.pairs else None, "margin": self.margin}
