"""The study file: its schema (pydantic; unknown keys are errors), the change language that writes each
variant as a change to the base genome, and loading: :func:`load_study` / :func:`parse_study` validate a
whole file into a :class:`Study` of resolved :class:`Variant` genomes.  See the :mod:`nasseg.ablation`
docstring for the file's keys and the change language."""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nasseg.errors import ConfigError, DatasetError, GenomeError
from nasseg.search import LatencySpec

FIDELITIES = ("smoke", "proxy", "full")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
_PATH_RE = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


# ================================================================================== study schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class ChangeSpec(_Strict):
    """A change to a genome (see the :mod:`nasseg.ablation` docstring)."""

    set: dict[str, Any] = Field(default_factory=dict)
    per_block: dict[str, dict[str, list[Any] | str]] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    append: dict[str, list[Any]] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.set or self.per_block or self.remove or self.append)


class VariantSpec(ChangeSpec):
    name: str = Field(pattern=_NAME)
    label: str = ""  # the paper's name or notation of the row
    description: str = ""


class LatencyFile(_Strict):
    device: str = "cpu"
    resolution: tuple[int, int]
    batch: int = 1
    threads: int | None = 1
    runs: int = 30
    warmup: int = 5
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    note: str = ""  # what the paper measured (device, precision, resolution), for the report


class LatencyOverride(_Strict):
    device: str | None = None
    resolution: tuple[int, int] | None = None
    batch: int | None = None
    threads: int | None = None
    runs: int | None = None
    warmup: int | None = None


class ScalingFile(_Strict):
    """Costs at several resolutions (e.g. attention context modules whose cost grows with H*W squared)."""

    resolutions: list[tuple[int, int]] = Field(min_length=1)
    latency: bool = True
    peak_memory: bool = True
    runs: int = 30


class CostFile(_Strict):
    resolution: tuple[int, int]  # (H, W) at which the paper states MACs
    num_classes: int = Field(ge=1)  # classes of the paper's dataset (params and MACs count them)
    macs: Literal["conv", "all"] = "conv"  # which fvcore count the paper's MAC numbers are compared with
    scaling: ScalingFile | None = None


class FidelityFile(_Strict):
    description: str = ""
    dataset: str = "synthetic"
    seeds: int | list[int] = 1
    recipe: dict[str, Any] = Field(default_factory=dict)
    latency: LatencyOverride | None = None


PaperNumber = int | float | str  # a count, or a number with a unit as the paper prints it: "3.34 M", "35.2 G"


class PaperRow(_Strict):
    miou: float | None = None
    params: PaperNumber | None = None
    macs: PaperNumber | None = None
    fov: int | None = None
    latency_ms: float | None = None
    fps: float | None = None
    direction: Literal["better", "worse", "similar"] | None = None  # vs the reference, when stated in words
    note: str = ""
    source: str = ""


CHECK_QUANTITIES = ("params", "macs", "macs_all", "latency_ms", "fov", "peak_memory_bytes")


class CostCheck(_Strict):
    """A claim about costs that the replay can check exactly: ``variant`` RELATION ``than`` in ``quantity``,
    at the cost resolution and, where the study measures scaling, at every scaling resolution."""

    quantity: Literal["params", "macs", "macs_all", "latency_ms", "fov", "peak_memory_bytes"]
    variant: str
    relation: Literal["less", "greater", "equal"]
    than: str
    at: list[tuple[int, int]] | None = None  # only these resolutions (H, W); default: every one measured


class Claim(_Strict):
    text: str
    source: str
    variants: list[str] = Field(default_factory=list)
    check: CostCheck | None = None


class PaperFile(_Strict):
    citation: str
    source: str  # where the table's numbers come from (paper section / table, repository file)
    metric: str = ""  # what the paper's ``miou`` is (dataset, split, schedule)
    rows: dict[str, PaperRow] = Field(default_factory=dict)
    claims: list[Claim] = Field(default_factory=list)


class OfficialRow(_Strict):
    params: PaperNumber | None = None
    macs: PaperNumber | None = None
    fov: int | None = None
    note: str = ""


class OfficialFile(_Strict):
    """Counts of the authors' code (not printed in the paper), with where they were counted."""

    source: str
    rows: dict[str, OfficialRow] = Field(default_factory=dict)


class StudyFile(_Strict):
    name: str = Field(pattern=_NAME)
    title: str
    description: str = ""
    base: str  # a preset name, a compact genome string (v1|...) or genome JSON
    base_change: ChangeSpec | None = None
    reference: str | None = None  # default: the variant without a change
    variants: list[VariantSpec] = Field(min_length=2)
    fidelities: dict[Literal["smoke", "proxy", "full"], FidelityFile] = Field(min_length=1)
    cost: CostFile
    latency: LatencyFile
    paper: PaperFile
    official: OfficialFile | None = None


# ============================================================================= the change language
def _segments(path: str, where: str) -> list[str]:
    if not isinstance(path, str) or not _PATH_RE.match(path):
        raise ConfigError(f"{where}: {path!r} is not a key path; write dot-separated keys and list indices, "
                          "e.g. stages.3.args.dilations")
    return path.split(".")


def _index(node: list, seg: str, where: str, sofar: str) -> int:
    try:
        i = int(seg)
    except ValueError:
        raise ConfigError(f"{where}: '{sofar}' is a list; {seg!r} is not an index (valid: 0..{len(node) - 1} "
                          f"or -{len(node)}..-1)") from None
    if not -len(node) <= i < len(node):
        valid = f"0..{len(node) - 1} or -{len(node)}..-1" if node else "none, the list is empty"
        raise ConfigError(f"{where}: '{sofar}' has {len(node)} entries; index {i} does not exist (valid: {valid})")
    return i % len(node)


def _locate(root: Any, path: str, where: str) -> tuple[Any, Any]:
    """(container, key) of ``path`` in ``root``; every segment must exist."""
    segs = _segments(path, where)
    node, sofar = root, "genome"
    for n, seg in enumerate(segs):
        if isinstance(node, dict):
            if seg not in node:
                raise ConfigError(f"{where}: '{sofar}' has no key {seg!r}; keys there: {', '.join(sorted(node))}")
            key: Any = seg
        elif isinstance(node, list):
            key = _index(node, seg, where, sofar)
        else:
            raise ConfigError(f"{where}: '{sofar}' is a value ({node!r}), not an object or a list; it has no "
                              f"{seg!r}")
        if n == len(segs) - 1:
            return node, key
        node = node[key]
        sofar = ".".join(segs[: n + 1])
    raise AssertionError("unreachable")  # pragma: no cover


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def parse_per_block(text: str, where: str) -> list[Any]:
    """Values in the genome string's per-block notation: ``[1]*2,[1,2],[1,4]*4`` -> one value per block."""
    from nasseg.genome import _Parser

    try:
        p = _Parser(text)
        vals: list[Any] = []
        while True:
            v = p.value()
            n = 1
            if p.accept("*"):
                n = p.int_("a repeat count")
                if n < 1:
                    raise GenomeError(f"repeat count {n} is not allowed; allowed: an integer >= 1")
            vals.extend([v] * n)
            if not p.accept(","):
                break
        if p.peek()[0] != "end":
            raise p.error("',' or the end of the values")
    except GenomeError as e:
        msg = str(e).replace("genome string: ", "")
        raise ConfigError(f"{where}: {text!r}: {msg}; expected values such as [1]*2,[1,2],[1,4]*4") from None
    return [_jsonable(v) for v in vals]


_MODULE_NAME_KEYS = ("block", "kind", "name")


def apply_change(genome_dict: Mapping[str, Any], change: ChangeSpec, where: str) -> dict[str, Any]:
    """Apply ``change`` to a genome dict (:func:`nasseg.genome.to_dict` form); returns a new dict.

    ``where`` prefixes error messages (``file: key 'variants.3'``).  Raises ConfigError naming the
    operation and path; the result is not yet validated (see :func:`_resolve_changed`).
    """
    d = copy.deepcopy(_jsonable(dict(genome_dict)))
    explicit = {p for p in change.set}
    for path, value in change.set.items():
        w = f"{where}.set.{path}"
        parent, key = _locate(d, path, w)
        old = parent[key]
        parent[key] = copy.deepcopy(_jsonable(value))
        if isinstance(parent, dict) and key in _MODULE_NAME_KEYS and isinstance(value, str) and value != old:
            prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
            if "args" in parent and prefix + "args" not in explicit:
                parent["args"] = {}
            if key == "block" and "block_args" in parent and prefix + "block_args" not in explicit \
                    and prefix.rstrip(".") not in change.per_block:
                parent["block_args"] = []
    for stage_path, per in change.per_block.items():
        w = f"{where}.per_block.{stage_path}"
        parent, key = _locate(d, stage_path, w)
        stage = parent[key]
        if not isinstance(stage, dict) or "block_args" not in stage or "depth" not in stage:
            raise ConfigError(f"{w}: '{stage_path}' is not a stage (per_block takes a stage path such as stages.3)")
        if not per:
            raise ConfigError(f"{w}: give at least one argument with one value per block")
        values = {arg: (parse_per_block(v, f"{w}.{arg}") if isinstance(v, str) else _jsonable(v))
                  for arg, v in per.items()}
        lengths = {arg: len(v) for arg, v in values.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ConfigError(f"{w}: every argument needs the same number (>= 1) of per-block values, got "
                              + ", ".join(f"{a}: {n}" for a, n in lengths.items()))
        n = next(iter(lengths.values()))
        stage["block_args"] = [{arg: values[arg][j] for arg in values} for j in range(n)]
        stage["depth"] = n
    if change.remove:
        targets, seen = [], set()
        for path in change.remove:
            w = f"{where}.remove.{path}"
            parent, key = _locate(d, path, w)
            if (id(parent), key) in seen:
                raise ConfigError(f"{w}: this element is already removed by an earlier path of the same remove")
            seen.add((id(parent), key))
            targets.append((parent, key))
        for parent, key in sorted(targets, key=lambda t: t[1] if isinstance(t[1], int) else -1, reverse=True):
            if isinstance(parent, list):
                parent.pop(key)
            else:
                del parent[key]
    for path, items in change.append.items():
        w = f"{where}.append.{path}"
        parent, key = _locate(d, path, w)
        if not isinstance(parent[key], list):
            raise ConfigError(f"{w}: '{path}' is not a list (it holds {parent[key]!r}); append takes a list path "
                              "such as heads.extra")
        parent[key].extend(copy.deepcopy(_jsonable(items)))
    return d


# ============================================================================= loading a study file
@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    description: str
    genome: Any  # nasseg.genome.Genome
    genome_id: str
    change: ChangeSpec


@dataclass(frozen=True)
class Fidelity:
    name: str
    description: str
    dataset: str
    seeds: tuple[int, ...]
    recipe: Any  # nasseg.train.Recipe
    latency: LatencySpec


@dataclass(frozen=True)
class Study:
    """A validated study file."""

    path: str
    sha: str
    spec: StudyFile
    base: Any  # Genome
    variants: tuple[Variant, ...]
    reference: str

    @property
    def name(self) -> str:
        return self.spec.name

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"{self.path}: no variant {name!r}; variants: {', '.join(v.name for v in self.variants)}")

    def fidelity(self, name: str, seeds: int | None = None, dataset: str | None = None) -> Fidelity:
        """The recipe, seeds, dataset and latency spec of one fidelity (``--seeds`` / ``--dataset`` override)."""
        if name not in FIDELITIES:
            raise ConfigError(f"--fidelity = {name!r}; valid: {', '.join(FIDELITIES)}")
        if name not in self.spec.fidelities:
            raise ConfigError(f"{self.path}: fidelity {name!r} is not defined; this study defines: "
                              + ", ".join(self.spec.fidelities))
        f = self.spec.fidelities[name]
        if seeds is not None:
            if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
                raise ConfigError(f"--seeds = {seeds!r} must be a positive integer")
            seed_list = tuple(range(seeds))
        else:
            seed_list = _seed_list(f.seeds, f"{self.path}: key 'fidelities.{name}.seeds'")
        ds = dataset if dataset is not None else f.dataset
        _check_dataset(ds, "--dataset" if dataset is not None else f"{self.path}: key 'fidelities.{name}.dataset'")
        return Fidelity(name, f.description, ds, seed_list,
                        _recipe(f.recipe, f"{self.path}: key 'fidelities.{name}.recipe'"),
                        _latency(self.spec.latency, f.latency, f"{self.path}: key 'fidelities.{name}.latency'"))


def _seed_list(seeds: int | list[int], where: str) -> tuple[int, ...]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"{where}: {seeds!r} is not allowed; allowed: a count >= 1 or a list of seeds")
        return tuple(range(seeds))
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"{where}: {seeds!r} is not allowed; allowed: a non-empty list of distinct seeds >= 0")
    return tuple(seeds)


def _check_dataset(spec: str, where: str) -> None:
    from nasseg.data import describe_spec

    try:
        describe_spec(spec)
    except DatasetError as e:
        raise ConfigError(f"{where}: {e}") from None


def _recipe(d: Mapping[str, Any], where: str):
    from nasseg.train import Recipe

    try:
        return Recipe.from_dict(dict(d))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _latency(base: LatencyFile, over: LatencyOverride | None, where: str) -> LatencySpec:
    from nasseg.cost import MIN_RUNS

    d = base.model_dump(exclude={"note"})
    if over is not None:
        d.update({k: v for k, v in over.model_dump().items() if v is not None})
    spec = LatencySpec(device=d["device"], resolution=tuple(d["resolution"]), batch=d["batch"],
                       threads=d["threads"], runs=d["runs"], warmup=d["warmup"], dtype=d["dtype"])
    if not re.fullmatch(r"cpu|cuda(:\d+)?", spec.device):
        raise ConfigError(f"{where}: device {spec.device!r} is not allowed; valid: cpu, cuda, cuda:N")
    if spec.runs < MIN_RUNS:
        raise ConfigError(f"{where}: runs = {spec.runs} is too few; valid: an integer >= {MIN_RUNS}")
    if spec.batch < 1 or spec.warmup < 1 or (spec.threads is not None and spec.threads < 1) \
            or min(spec.resolution) < 1:
        raise ConfigError(f"{where}: batch, warmup, threads and resolution must be positive integers, got "
                          f"{spec.to_dict()}")
    return spec


_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def parse_paper_number(value: PaperNumber, where: str) -> tuple[float, int | None, str]:
    """(value, decimals printed, unit) of a paper number: 3807 -> (3807, 0, ''), "3.34 M" -> (3.34, 2, 'M').

    A count written as an integer is compared exactly; a number with decimals and a unit is compared at
    the precision the paper printed it (see :func:`stated_match`).
    """
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a number")
    if isinstance(value, int):
        return float(value), 0, ""
    if isinstance(value, float):
        text = repr(value)
        return value, (len(text.split(".")[1]) if "." in text and "e" not in text else None), ""
    m = re.fullmatch(r"\s*(\d+(?:\.(\d+))?)\s*([KMGT]?)\s*", str(value))
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a paper number; write an integer count or a number with a "
                          "unit K, M, G or T as printed, e.g. '3.34 M', '35.20 G'")
    return float(m.group(1)), len(m.group(2) or ""), m.group(3)


def stated_match(ours: float | int | None, stated: PaperNumber | None) -> bool | None:
    """Whether our count equals the stated one at the stated precision (None if either is missing)."""
    if ours is None or stated is None:
        return None
    value, decimals, unit = parse_paper_number(stated, "value")
    scaled = ours / _UNITS[unit]
    if decimals is None:
        return math.isclose(scaled, value, rel_tol=1e-9)
    return round(scaled, decimals) == round(value, decimals)


def _load_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read study file ({e.strerror or e})") from None


def load_study(path: str | Path, *, build_check: bool = True) -> Study:
    """Read and validate a study file; every variant is resolved (and, with ``build_check``, built)."""
    path = Path(path)
    text = _load_text(path)
    return parse_study(text, str(path), build_check=build_check)


def _base_genome(text: str, where: str):
    from nasseg import genome as G
    from nasseg import presets

    t = text.strip()
    try:
        if t.startswith("{"):
            return G.from_json(t)
        if t.startswith("v") and "|" in t:
            return G.parse(t)
        return presets.get(t).genome
    except (GenomeError, ConfigError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _resolve_changed(d: dict[str, Any], where: str):
    from nasseg.genome import from_dict

    try:
        return from_dict(d)
    except GenomeError as e:
        raise ConfigError(f"{where}: the changed genome is invalid: {e}") from None


def parse_study(text: str, source: str = "<string>", *, build_check: bool = True) -> Study:
    from nasseg.genome import genome_id, to_dict
    from nasseg.space import _validation_error, read_yaml_mapping

    raw = read_yaml_mapping(text, source, "a study file must be a YAML mapping with keys name, title, base, "
                                          "variants, fidelities, cost, latency, paper")
    try:
        spec = StudyFile.model_validate(raw)
    except ValidationError as e:
        raise _validation_error(source, e, raw, root=StudyFile) from None

    names = [v.name for v in spec.variants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{source}: key 'variants': variant name(s) {dup} given twice; names must be unique")
    for where, keys in (("paper.rows", spec.paper.rows), ("official.rows", spec.official.rows if spec.official
                                                             else {})):
        for k in keys:
            if k not in names:
                raise ConfigError(f"{source}: key '{where}.{k}': no variant named {k!r}; variants: {', '.join(names)}")
    for i, c in enumerate(spec.paper.claims):
        for k in c.variants:
            if k not in names:
                raise ConfigError(f"{source}: key 'paper.claims.{i}.variants': no variant named {k!r}; variants: "
                                  + ", ".join(names))
        if c.check is not None:
            for key in ("variant", "than"):
                if getattr(c.check, key) not in names:
                    raise ConfigError(f"{source}: key 'paper.claims.{i}.check.{key}': no variant named "
                                      f"{getattr(c.check, key)!r}; variants: {', '.join(names)}")
    for where, row in list(spec.paper.rows.items()) + list((spec.official.rows if spec.official else {}).items()):
        for q in ("params", "macs"):
            if getattr(row, q) is not None:
                parse_paper_number(getattr(row, q), f"{source}: key '{where}.{q}'")
    for fname, f in spec.fidelities.items():
        _seed_list(f.seeds, f"{source}: key 'fidelities.{fname}.seeds'")
        _check_dataset(f.dataset, f"{source}: key 'fidelities.{fname}.dataset'")
        _recipe(f.recipe, f"{source}: key 'fidelities.{fname}.recipe'")
        _latency(spec.latency, f.latency, f"{source}: key 'fidelities.{fname}.latency'")
    _latency(spec.latency, None, f"{source}: key 'latency'")
    if min(spec.cost.resolution) < 1:
        raise ConfigError(f"{source}: key 'cost.resolution': {list(spec.cost.resolution)} must be positive (H, W)")

    base = _base_genome(spec.base, f"{source}: key 'base'")
    if spec.base_change is not None and not spec.base_change.is_empty():
        base = _resolve_changed(apply_change(to_dict(base), spec.base_change, f"{source}: key 'base_change'"),
                                f"{source}: key 'base_change'")
    base_dict = to_dict(base)
    variants = []
    seen: dict[str, str] = {}
    for i, v in enumerate(spec.variants):
        where = f"{source}: key 'variants.{i}' (variant {v.name!r})"
        g = _resolve_changed(apply_change(base_dict, v, where), where) if not v.is_empty() else base
        gid = genome_id(g)
        if gid in seen:
            raise ConfigError(f"{where}: builds the same genome ({gid}) as variant {seen[gid]!r}; every variant must "
                              "differ from the others")
        seen[gid] = v.name
        change = ChangeSpec(set=v.set, per_block=v.per_block, remove=v.remove, append=v.append)
        variants.append(Variant(v.name, v.label, v.description, g, gid, change))
    if spec.reference is not None:
        if spec.reference not in names:
            raise ConfigError(f"{source}: key 'reference': {spec.reference!r} is not a variant; variants: "
                              + ", ".join(names))
        reference = spec.reference
    else:
        plain = [v.name for v in spec.variants if v.is_empty()]
        if len(plain) != 1:
            raise ConfigError(f"{source}: key 'reference' is missing and {len(plain)} variants have no change "
                              f"({plain}); name the row the others are compared with, e.g. reference: "
                              f"{names[0]}")
        reference = plain[0]
    if build_check:
        from nasseg.build import build

        for i, v in enumerate(variants):
            where = f"{source}: key 'variants.{i}' (variant {v.name!r})"
            try:
                net = build(v.genome, spec.cost.num_classes)
            except (GenomeError, ConfigError, ValueError, RuntimeError) as e:
                raise ConfigError(f"{where}: does not build: {e}") from None
            if net.is_classifier:
                raise ConfigError(f"{where}: builds an image classifier; an ablation replay trains segmentation "
                                  "networks (give the variant a segmentation decoder)")
    sha = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Study(source, sha, spec, base, tuple(variants), reference)


def study_files(root: str | Path | None = None) -> list[Path]:
    """The shipped ``studies/*.yaml`` (``root`` defaults to the repository's studies folder)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2] / "studies"
    return sorted(root.glob("*.yaml"))

