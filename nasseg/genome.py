"""Genomes: small, frozen, serialisable descriptions of a segmentation network.

A genome is a tree of frozen dataclasses holding only primitives and tuples:

* ``stages``: the encoder, a sequence of :class:`Stage` (block type, depth, width, stride, block
  arguments, optional separate downsampling block, optional per-block overrides such as RegSeg's
  dilation list, and ESPNet's input injection / first-block concatenation with its order);
* ``decoder``: a :class:`Decoder`, either ``chain`` (a context module on the deepest tap, then one
  registered fusion module per tap from deep to shallow) or a registered paper decoder
  (``decoder26``, ``apn``, ``erfnet_decoder`` ...) over chosen taps;
* ``heads``: a :class:`Heads` (main segmentation head, auxiliary / detail / boundary heads).

Every module argument is stored *resolved* (defaults written out), so changing a default later never
changes what a stored genome builds.  Two serialisations:

* canonical JSON (:func:`to_json`, sorted keys, no spaces) -- what the study DB and exports hold;
  :func:`genome_id` is a short SHA-256 of it, identical on every machine;
* a compact human string (:func:`to_string` / :func:`parse`), e.g. for STDC1-Seg::

    v1|conv1x32s2/conv1x64s2/stdc2x256s2/stdc2x512s2/stdc2x1024s2
      |chain@2,3,4~gap>128:ffm256/arm128/arm128(refine=none)
      |seg_head(mid_channels=256)/aux@l1=seg_head/aux@l2=seg_head/detail@s2=detail_head

  (one line, no spaces).  The string omits arguments equal to their registry default; the parser
  writes the defaults back, and ``tests/fixtures/genome_strings.json`` pins old strings to their JSON
  so that a changed default cannot silently change what an old string means.

String grammar (v1)::

    genome   := "v1" "|" stages "|" decoder "|" heads
    stages   := stage ("/" stage)*
    stage    := [module ">"] NAME DEPTH "x" WIDTH "s" STRIDE [args] [perblock] ("!" ("inject" | "cat" | "lead"))*
    module   := NAME [args]
    args     := "(" KEY "=" value ("," KEY "=" value)* ")"
    value    := INT | FLOAT | "true" | "false" | IDENT | "[" [INT ("," INT)*] "]"
    perblock := "{" KEY "=" item ("," item)* (";" KEY "=" item ("," item)*)* "}"   item := value ["*" INT]
    decoder  := NAME "@" INT ("," INT)* [args] ["~" module ">" WIDTH] [":" fusion ("/" fusion)*]
    fusion   := NAME WIDTH [args]                                 (one per tap, shallow -> deep)
    heads    := (module | "-") ("/" extra)* ["!ac"]
    extra    := ("aux" | "detail" | "boundary") "@" ("s" | "l") INT "=" module

``s`` taps a stage output, ``l`` a chain level output; ``-`` means the decoder already emits logits;
``!ac`` = final upsampling with ``align_corners=True``; ``!cat`` concatenates a stage's last and first
block outputs in that order, ``!cat!lead`` in the order first, last (see :class:`Stage`).

Fields added to schema 1 after its release (``Stage.first_leads``) are written to the JSON only when set,
so a genome that does not use them keeps its JSON and ``genome_id``; an older nasseg refuses a genome that
does use them (unknown key, unknown stage flag) instead of building something else.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from nasseg import registry
from nasseg.errors import BlockArgumentError, GenomeError, UnknownBlockError

SCHEMA = 1
STRIDES = (1, 2, 4, 8)  # 8: a block that is a whole 1/8 stem (Fast-SCNN's learning to downsample)

Args = tuple[tuple[str, Any], ...]


def _args(d: Mapping[str, Any] | Args | None) -> Args:
    if d is None:
        return ()
    items = d.items() if isinstance(d, Mapping) else d
    return tuple(sorted((str(k), _freeze(v)) for k, v in items))


def _freeze(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


@dataclass(frozen=True)
class Module:
    """A registered module with its (resolved) keyword arguments."""

    name: str
    args: Args = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(frozen=True)
class Stage:
    """One encoder stage.

    ``depth`` blocks of type ``block`` and width ``width``.  If ``down`` is given, a separate
    downsampling module (registered block, stride ``stride``, out ``width``) comes first and all
    ``depth`` blocks run at stride 1; otherwise the first block takes the stride.  ``block_args``
    optionally overrides arguments per block (length ``depth``), e.g. RegSeg's dilation list.
    ``inject`` concatenates the input image average-pooled to this stage's resolution (ESPNet's input
    reinforcement) and ``concat_first`` concatenates the first block's output with the last one
    (ESPNet); either adds a BN + PReLU ("BR") after the concatenation.  The order is
    ``[last, first, image]``, or ``[first, last, image]`` with ``first_leads``: ESPNet's level 2 is
    ``cat([output1, output1_0, inp2])`` (last first) and its level 3 ``cat([output2_0, output2])``
    (the strided first block leads; sacmehta/ESPNet ``train/Model.py``).  ``first_leads`` needs
    ``concat_first`` and is left out of the JSON when false (see the module docstring).
    """

    block: str
    depth: int
    width: int
    stride: int = 1
    args: Args = ()
    block_args: tuple[Args, ...] = ()
    down: Module | None = None
    inject: bool = False
    concat_first: bool = False
    first_leads: bool = False


# Fields added to a dataclass after schema 1 was released: written to JSON only when they differ from this
# value, so every genome that does not use them keeps its canonical JSON and genome_id.
_ADDED_FIELDS: dict[type, dict[str, Any]] = {Stage: {"first_leads": False}}


@dataclass(frozen=True)
class Fusion:
    """One level of a ``chain`` decoder: a registered fusion module and its output width."""

    name: str
    width: int
    args: Args = ()


@dataclass(frozen=True)
class Decoder:
    """``kind`` = ``chain`` or a registered decoder; ``taps`` = stage indices, shallow to deep."""

    kind: str
    taps: tuple[int, ...]
    args: Args = ()
    context: Module = field(default_factory=lambda: Module("none"))
    context_width: int = 0
    fusions: tuple[Fusion, ...] = ()


@dataclass(frozen=True)
class HeadTap:
    """A training-time head on a stage output (``source='stage'``) or a chain level (``'level'``)."""

    role: str  # aux | detail | boundary
    source: str  # stage | level
    index: int
    head: Module


@dataclass(frozen=True)
class Heads:
    """``main`` is the segmentation head (``None`` when the decoder emits logits)."""

    main: Module | None
    extra: tuple[HeadTap, ...] = ()
    align_corners: bool = False


@dataclass(frozen=True)
class Genome:
    stages: tuple[Stage, ...]
    decoder: Decoder
    heads: Heads
    schema: int = SCHEMA


# ----------------------------------------------------------------------------------------- resolve
def resolve(genome: Genome) -> Genome:
    """Validate every name and argument against the registry and write all defaults out.

    Raises :class:`GenomeError` naming the key path (``stages.2.args.dilations``) and what is valid.
    """
    if genome.schema != SCHEMA:
        raise GenomeError(f"genome schema {genome.schema!r} is not supported; this nasseg reads schema {SCHEMA}")
    if not genome.stages:
        raise GenomeError("genome.stages: at least one stage is required")
    stages = tuple(_resolve_stage(s, f"stages.{i}") for i, s in enumerate(genome.stages))
    dec = _resolve_decoder(genome.decoder, len(stages))
    heads = _resolve_heads(genome.heads, dec, len(stages))
    return Genome(stages=stages, decoder=dec, heads=heads, schema=SCHEMA)


def _entry(name: str, kind: str, path: str) -> registry.Entry:
    try:
        return registry.get(name, kind)
    except UnknownBlockError as e:
        raise GenomeError(f"{path}: {e}") from None


def _resolve_args(entry: registry.Entry, args: Args | Mapping, path: str) -> Args:
    try:
        return _args(entry.resolve(dict(args)))
    except BlockArgumentError as e:
        raise GenomeError(f"{path}: {e}") from None


def _resolve_module(m: Module, kind: str, path: str) -> Module:
    return Module(m.name, _resolve_args(_entry(m.name, kind, f"{path}.name"), m.args, f"{path}.args"))


MAX_WIDTH = 8192  # channels; far above any real-time network, low enough that a typo cannot exhaust memory
MAX_DEPTH = 128  # blocks per stage


def _check_int(value: Any, path: str, low: int, allowed: tuple[int, ...] | None = None,
               high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (allowed and value not in allowed) \
            or (high is not None and value > high):
        what = f"one of {allowed}" if allowed else f"an integer >= {low}" + (f" and <= {high}" if high else "")
        raise GenomeError(f"{path} = {value!r} is not allowed; allowed: {what}")


def _resolve_stage(s: Stage, path: str) -> Stage:
    _check_int(s.depth, f"{path}.depth", 1 if s.down is None else 0, high=MAX_DEPTH)
    _check_int(s.width, f"{path}.width", 1, high=MAX_WIDTH)
    _check_int(s.stride, f"{path}.stride", 1, STRIDES)
    entry = _entry(s.block, "block", f"{path}.block")
    args = _resolve_args(entry, s.args, f"{path}.args")
    block_args: tuple[Args, ...] = ()
    if s.block_args:
        if len(s.block_args) != s.depth:
            raise GenomeError(
                f"{path}.block_args has {len(s.block_args)} entries; it needs one per block (depth {s.depth})")
        base = dict(args)
        resolved = []
        for j, over in enumerate(s.block_args):
            full = _resolve_args(entry, {**base, **dict(over)}, f"{path}.block_args.{j}")
            resolved.append(tuple((k, v) for k, v in full if k in dict(over)))
        keys = {tuple(k for k, _ in o) for o in resolved}
        if len(keys) != 1:
            raise GenomeError(f"{path}.block_args: every block must override the same arguments, got {sorted(keys)}")
        block_args = tuple(resolved)
    down = _resolve_module(s.down, "block", f"{path}.down") if s.down is not None else None
    for flag in ("inject", "concat_first", "first_leads"):
        if not isinstance(getattr(s, flag), bool):
            raise GenomeError(f"{path}.{flag} = {getattr(s, flag)!r} is not allowed; allowed: true or false")
    if s.concat_first and s.depth + (1 if down else 0) < 2:
        raise GenomeError(f"{path}.concat_first needs at least two blocks in the stage")
    if s.first_leads and not s.concat_first:
        raise GenomeError(f"{path}.first_leads orders the first/last concatenation; it needs concat_first "
                          "(string flags: '!cat!lead')")
    return Stage(s.block, s.depth, s.width, s.stride, args, block_args, down, s.inject, s.concat_first,
                 s.first_leads)


def _resolve_decoder(d: Decoder, n_stages: int) -> Decoder:
    path = "decoder"
    if not d.taps:
        raise GenomeError(f"{path}.taps: at least one stage index is required")
    for t in d.taps:
        _check_int(t, f"{path}.taps", 0, tuple(range(n_stages)))
    if list(d.taps) != sorted(set(d.taps)):
        raise GenomeError(f"{path}.taps = {list(d.taps)} must be increasing stage indices (shallow to deep)")
    context = _resolve_module(d.context, "context", f"{path}.context")
    cw = d.context_width
    if context.name == "none":
        cw = 0
    else:
        _check_int(cw, f"{path}.context_width", 1, high=MAX_WIDTH)
    if d.kind == "chain":
        if d.args:
            raise GenomeError(f"{path}.args: the chain decoder takes no arguments, got {dict(d.args)}")
        if len(d.fusions) != len(d.taps):
            raise GenomeError(
                f"{path}.fusions: the chain needs one fusion per tap ({len(d.taps)}), got {len(d.fusions)}")
        fusions = []
        for i, f in enumerate(d.fusions):
            _check_int(f.width, f"{path}.fusions.{i}.width", 1, high=MAX_WIDTH)
            entry = _entry(f.name, "fusion", f"{path}.fusions.{i}.name")
            fusions.append(Fusion(f.name, f.width, _resolve_args(entry, f.args, f"{path}.fusions.{i}.args")))
        return Decoder("chain", tuple(d.taps), (), context, cw, tuple(fusions))
    entry = _entry(d.kind, "decoder", f"{path}.kind")
    if d.fusions:
        raise GenomeError(f"{path}.fusions: only the chain decoder takes fusions, not {d.kind!r}")
    return Decoder(d.kind, tuple(d.taps), _resolve_args(entry, d.args, f"{path}.args"), context, cw, ())


def _resolve_heads(h: Heads, dec: Decoder, n_stages: int) -> Heads:
    emits = bool(getattr(registry.get(dec.kind, "decoder").cls, "emits_logits", False)) if dec.kind != "chain" \
        else False
    if emits and h.main is not None:
        raise GenomeError(f"heads.main: decoder {dec.kind!r} already emits logits; the main head must be '-' (none)")
    if not emits and h.main is None:
        raise GenomeError(f"heads.main: decoder {dec.kind!r} emits features; a main head (e.g. seg_head) is required")
    main = _resolve_module(h.main, "head", "heads.main") if h.main is not None else None
    if not isinstance(h.align_corners, bool):
        raise GenomeError(f"heads.align_corners = {h.align_corners!r} is not allowed; allowed: true or false")
    extra = []
    for i, t in enumerate(h.extra):
        path = f"heads.extra.{i}"
        if t.role not in ("aux", "detail", "boundary"):
            raise GenomeError(f"{path}.role = {t.role!r}; allowed: aux, detail, boundary")
        if t.role != "aux" and any(o.role == t.role for o in h.extra[:i]):
            raise GenomeError(f"{path}.role = {t.role!r}: a genome has at most one {t.role} head (the network "
                              "returns one tensor per role); only aux heads may repeat")
        if t.source == "stage":
            _check_int(t.index, f"{path}.index", 0, tuple(range(n_stages)))
        elif t.source == "level":
            if dec.kind != "chain":
                raise GenomeError(f"{path}: level taps exist only on the chain decoder, not {dec.kind!r}")
            _check_int(t.index, f"{path}.index", 0, tuple(range(len(dec.taps))))
        else:
            raise GenomeError(f"{path}.source = {t.source!r}; allowed: stage, level")
        extra.append(HeadTap(t.role, t.source, t.index, _resolve_module(t.head, "head", f"{path}.head")))
    return Heads(main, tuple(extra), h.align_corners)


# -------------------------------------------------------------------------------------------- JSON
def to_dict(genome: Genome) -> dict[str, Any]:
    """Plain JSON-able dict (args as objects, tuples as lists)."""
    return _to_plain(genome)


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, (Genome, Stage, Decoder, Heads, HeadTap, Module, Fusion)):
        out = {}
        added = _ADDED_FIELDS.get(type(obj), {})
        for f in fields(obj):
            v = getattr(obj, f.name)
            if f.name in added and v is added[f.name]:
                continue
            if f.name == "args":
                out[f.name] = {k: _to_plain(x) for k, x in v}
            elif f.name == "block_args":
                out[f.name] = [{k: _to_plain(x) for k, x in o} for o in v]
            else:
                out[f.name] = _to_plain(v)
        return out
    if isinstance(obj, tuple):
        return [_to_plain(x) for x in obj]
    return obj


def to_json(genome: Genome) -> str:
    """Canonical JSON: sorted keys, no spaces.  The form stored in study databases and exports.

    The genome is resolved first, so a hand-built genome that leaves defaults out gets the same JSON (and
    :func:`genome_id`) as the resolved one that builds the same network.
    """
    return json.dumps(to_dict(resolve(genome)), sort_keys=True, separators=(",", ":"), allow_nan=False)


def genome_id(genome: Genome) -> str:
    """Short, stable hash of the canonical (resolved) JSON (12 hex digits of SHA-256)."""
    return hashlib.sha256(to_json(genome).encode()).hexdigest()[:12]


def from_dict(d: Mapping[str, Any]) -> Genome:
    """Parse and resolve a genome from its dict form; unknown keys and wrong types raise GenomeError."""
    try:
        g = _from_plain(d)
    except GenomeError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise GenomeError(f"malformed genome: {e}") from None
    return resolve(g)


def from_json(text: str) -> Genome:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenomeError(f"genome JSON is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise GenomeError("genome JSON must be an object")
    return from_dict(d)


def _obj(d: Any, cls: type, path: str, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise GenomeError(f"{path} must be an object, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise GenomeError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise GenomeError(f"{path}: missing key(s) {missing}")
    return dict(d)


def _list(v: Any, path: str) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        raise GenomeError(f"{path} must be a list, got {type(v).__name__} {v!r}")
    return list(v)


def _str(v: Any, path: str) -> str:
    if not isinstance(v, str):
        raise GenomeError(f"{path} must be a name (a string), got {type(v).__name__} {v!r}")
    return v


def _json_args(v: Any, path: str) -> Args:
    if v is None:
        return ()
    if not isinstance(v, Mapping):
        raise GenomeError(f"{path} must be an object of argument names to values, got {type(v).__name__} {v!r}")
    return _args(v)


def _module(d: Any, path: str) -> Module:
    o = _obj(d, Module, path, ("name",))
    return Module(_str(o["name"], f"{path}.name"), _json_args(o.get("args"), f"{path}.args"))


def _from_plain(d: Mapping[str, Any]) -> Genome:
    o = _obj(d, Genome, "genome", ("stages", "decoder", "heads"))
    stages = []
    for i, s in enumerate(_list(o["stages"], "stages")):
        p = f"stages.{i}"
        so = _obj(s, Stage, p, ("block", "depth", "width"))
        stages.append(Stage(
            block=_str(so["block"], f"{p}.block"), depth=so["depth"], width=so["width"], stride=so.get("stride", 1),
            args=_json_args(so.get("args"), f"{p}.args"),
            block_args=tuple(_json_args(b, f"{p}.block_args.{j}")
                             for j, b in enumerate(_list(so.get("block_args", ()), f"{p}.block_args"))),
            down=_module(so["down"], f"{p}.down") if so.get("down") is not None else None,
            inject=so.get("inject", False), concat_first=so.get("concat_first", False),
            first_leads=so.get("first_leads", False)))
    do = _obj(o["decoder"], Decoder, "decoder", ("kind", "taps"))
    fusions = []
    for i, f in enumerate(_list(do.get("fusions", ()), "decoder.fusions")):
        fo = _obj(f, Fusion, f"decoder.fusions.{i}", ("name", "width"))
        fusions.append(Fusion(_str(fo["name"], f"decoder.fusions.{i}.name"), fo["width"],
                              _json_args(fo.get("args"), f"decoder.fusions.{i}.args")))
    dec = Decoder(kind=_str(do["kind"], "decoder.kind"), taps=tuple(_list(do["taps"], "decoder.taps")),
                  args=_json_args(do.get("args"), "decoder.args"),
                  context=_module(do["context"], "decoder.context") if "context" in do else Module("none"),
                  context_width=do.get("context_width", 0), fusions=tuple(fusions))
    ho = _obj(o["heads"], Heads, "heads", ("main",))
    extra = []
    for i, t in enumerate(_list(ho.get("extra", ()), "heads.extra")):
        to = _obj(t, HeadTap, f"heads.extra.{i}", ("role", "source", "index", "head"))
        extra.append(HeadTap(to["role"], to["source"], to["index"], _module(to["head"], f"heads.extra.{i}.head")))
    heads = Heads(main=_module(ho["main"], "heads.main") if ho["main"] is not None else None,
                  extra=tuple(extra), align_corners=ho.get("align_corners", False))
    return Genome(stages=tuple(stages), decoder=dec, heads=heads, schema=o.get("schema", SCHEMA))


# ---------------------------------------------------------------------------------- compact string
def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ",".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    return str(v)


def _non_default(name: str, kind: str, args: Args) -> list[tuple[str, Any]]:
    defaults = registry.get(name, kind).defaults()
    return [(k, v) for k, v in args if _freeze(defaults.get(k)) != v]


def _fmt_args(name: str, kind: str, args: Args) -> str:
    nd = _non_default(name, kind, args)
    return "(" + ",".join(f"{k}={_fmt_value(v)}" for k, v in nd) + ")" if nd else ""


def _fmt_module(m: Module, kind: str) -> str:
    return m.name + _fmt_args(m.name, kind, m.args)


def _runs(values: list[Any]) -> str:
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        n = j - i + 1
        out.append(_fmt_value(values[i]) + (f"*{n}" if n > 1 else ""))
        i = j + 1
    return ",".join(out)


def to_string(genome: Genome) -> str:
    """The compact human form (canonical: defaults omitted, arguments sorted)."""
    g = resolve(genome)
    parts = []
    for s in g.stages:
        t = (_fmt_module(s.down, "block") + ">" if s.down else "") + f"{s.block}{s.depth}x{s.width}s{s.stride}"
        t += _fmt_args(s.block, "block", s.args)
        if s.block_args:
            keys = [k for k, _ in s.block_args[0]]
            t += "{" + ";".join(f"{k}=" + _runs([dict(b)[k] for b in s.block_args]) for k in keys) + "}"
        t += "!inject" if s.inject else ""
        t += "!cat" if s.concat_first else ""
        t += "!lead" if s.first_leads else ""
        parts.append(t)
    d = g.decoder
    dec = f"{d.kind}@" + ",".join(str(t) for t in d.taps)
    if d.kind != "chain":
        dec += _fmt_args(d.kind, "decoder", d.args)
    if d.context.name != "none":
        dec += "~" + _fmt_module(d.context, "context") + f">{d.context_width}"
    if d.fusions:
        dec += ":" + "/".join(f"{f.name}{f.width}" + _fmt_args(f.name, "fusion", f.args) for f in d.fusions)
    h = g.heads
    heads = _fmt_module(h.main, "head") if h.main else "-"
    for t in h.extra:
        heads += f"/{t.role}@{t.source[0]}{t.index}=" + _fmt_module(t.head, "head")
    heads += "!ac" if h.align_corners else ""
    return f"v{SCHEMA}|" + "/".join(parts) + "|" + dec + "|" + heads


_TOKEN = re.compile(
    r"(?P<num>-?\d+(?:\.\d+(?:e[-+]?\d+)?|e[-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[|/>(),=\[\]{};*@~:.!-])")


class _Parser:
    """Strict recursive-descent parser; every error names the token, its position and what was expected."""

    def __init__(self, text: str):
        self.text = text
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise GenomeError(f"genome string: unexpected character {text[pos]!r} at position {pos}")
            kind = m.lastgroup or "punct"
            self.toks.append((kind, m.group(), pos))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "<end>", len(self.text))

    def error(self, expected: str) -> GenomeError:
        _, val, pos = self.peek()
        return GenomeError(f"genome string: unexpected {val!r} at position {pos}; expected {expected}")

    def take(self, value: str | None = None, kind: str | None = None, expected: str = "") -> str:
        k, v, _ = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind):
            raise self.error(expected or repr(value) if value else expected or kind or "")
        self.i += 1
        return v

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value:
            self.i += 1
            return True
        return False

    def int_(self, what: str) -> int:
        k, v, _ = self.peek()
        if k != "num" or not re.fullmatch(r"-?\d+", v):
            raise self.error(what)
        self.i += 1
        return int(v)

    def name(self, kind: str, what: str) -> str:
        _, v, pos = self.peek()
        n = self.take(kind="name", expected=what)
        if kind and n not in registry.names(kind):
            raise GenomeError(f"genome string: unknown {kind} {n!r} at position {pos}; valid codes: "
                              + ", ".join(registry.names(kind)))
        return n

    def value(self) -> Any:
        k, v, _ = self.peek()
        if v == "[":
            self.i += 1
            items: list[Any] = []
            if not self.accept("]"):
                items.append(self.int_("an integer inside [...]"))
                while self.accept(","):
                    items.append(self.int_("an integer inside [...]"))
                self.take("]", expected="',' or ']'")
            return tuple(items)
        if k == "num":
            self.i += 1
            return float(v) if any(c in v for c in ".e") else int(v)
        if k == "name":
            self.i += 1
            return {"true": True, "false": False}.get(v, v)
        raise self.error("a value (number, true/false, name or [list])")

    def args(self, entry: registry.Entry | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.accept("("):
            while True:
                _, _, pos = self.peek()
                key = self.take(kind="name", expected="an argument name")
                if key in out:
                    raise GenomeError(f"genome string: argument {key!r} given twice at position {pos}")
                self.take("=", expected="'='")
                out[key] = self.value()
                self.check_arg(entry, key, out[key], pos)
                if not self.accept(","):
                    break
            self.take(")", expected="',' or ')'")
        return out

    @staticmethod
    def check_arg(entry: registry.Entry | None, key: str, value: Any, pos: int) -> None:
        """Validate one argument against the registry, naming its position in the string."""
        if entry is None:
            return
        try:
            entry.arg(key).validate(entry.name, value)
        except BlockArgumentError as e:
            raise GenomeError(f"genome string: argument {key!r} at position {pos}: {e}") from None

    def module(self, kind: str) -> Module:
        n = self.name(kind, f"a {kind} name")
        return Module(n, _args(self.args(registry.get(n, kind))))


def parse(text: str) -> Genome:
    """Parse a compact genome string (strict) and resolve it against the registry."""
    if not isinstance(text, str) or not text:
        raise GenomeError("genome string is empty")
    p = _Parser(text.strip())
    ver = p.take(kind="name", expected="the version 'v1'")
    if ver != f"v{SCHEMA}":
        raise GenomeError(f"genome string: version {ver!r} at position 0 is not supported; valid: v{SCHEMA}")
    p.take("|", expected="'|' after the version")
    stages = [_parse_stage(p)]
    while p.accept("/"):
        stages.append(_parse_stage(p))
    p.take("|", expected="'/' (next stage) or '|' (decoder)")
    dec = _parse_decoder(p)
    p.take("|", expected="'|' (heads)")
    heads = _parse_heads(p)
    if p.peek()[0] != "end":
        raise p.error("the end of the string")
    return resolve(Genome(stages=tuple(stages), decoder=dec, heads=heads))


_STAGE = re.compile(r"([A-Za-z_]+?[A-Za-z_0-9]*?)(\d+)x(\d+)s(\d+)")
_STAGE_TAIL = re.compile(r"(\d+)x(\d+)s(\d+)")


def _parse_stage(p: _Parser) -> Stage:
    _, first, pos = p.peek()
    if p.peek()[0] != "name":
        raise p.error("a stage such as stdc2x256s2")
    # NAME DEPTH x WIDTH s STRIDE: the tokenizer reads 'stdc2x256s2' as one name token
    tok = p.take(kind="name")
    down = None
    if not _STAGE.fullmatch(tok) and p.peek()[1] in ("(", ">"):
        if tok not in registry.names("block"):
            raise GenomeError(f"genome string: unknown block {tok!r} at position {pos}; valid codes: "
                              + ", ".join(registry.names("block")))
        down = Module(tok, _args(p.args(registry.get(tok, "block"))))
        p.take(">", expected="'>' after the downsampling block")
        _, _, pos = p.peek()
        tok = p.take(kind="name", expected="a stage such as stdc2x256s2")
    m = _STAGE.fullmatch(tok)
    if not m:
        raise GenomeError(f"genome string: stage {tok!r} at position {pos} is malformed; expected "
                          f"BLOCK<depth>x<width>s<stride>, e.g. stdc2x256s2")
    # a block name may end in digits (mbv3, shufflev2: 'mbv31x16s1' is mbv3, depth 1): split at the registered name
    splits = [(b, t) for b in registry.names("block") if tok.startswith(b)
              for t in [_STAGE_TAIL.fullmatch(tok[len(b):])] if t]
    if not splits:
        raise GenomeError(f"genome string: unknown block {m.group(1)!r} at position {pos}; valid codes: "
                          + ", ".join(registry.names("block")))
    if len(splits) > 1:
        raise GenomeError(f"genome string: stage {tok!r} at position {pos} is ambiguous: it reads as "
                          + " or ".join(f"{b} depth {t.group(1)}" for b, t in splits))
    block, t = splits[0]
    depth, width, stride = int(t.group(1)), int(t.group(2)), int(t.group(3))
    entry = registry.get(block, "block")
    args = p.args(entry)
    block_args: tuple[Args, ...] = ()
    if p.accept("{"):
        per: dict[str, list[Any]] = {}
        while True:
            _, _, kpos = p.peek()
            key = p.take(kind="name", expected="an argument name")
            if key in per:
                raise GenomeError(f"genome string: per-block argument {key!r} given twice at position {kpos}")
            try:
                entry.arg(key)
            except BlockArgumentError as e:
                raise GenomeError(f"genome string: argument {key!r} at position {kpos}: {e}") from None
            p.take("=", expected="'='")
            vals: list[Any] = []
            while True:
                _, _, vpos = p.peek()
                v = p.value()
                p.check_arg(entry, key, v, vpos)
                n = 1
                if p.accept("*"):
                    _, _, npos = p.peek()
                    n = p.int_("a repeat count")
                    if n < 1:
                        raise GenomeError(f"genome string: repeat count {n} at position {npos} is not allowed; "
                                          "allowed: an integer >= 1")
                vals.extend([v] * n)
                if not p.accept(","):
                    break
            per[key] = vals
            if not p.accept(";"):
                break
        p.take("}", expected="';' or '}'")
        lens = {len(v) for v in per.values()}
        if lens != {depth}:
            raise GenomeError(f"genome string: per-block values of stage {tok!r} at position {pos} have "
                              f"{sorted(lens)} entries; depth is {depth}")
        block_args = tuple(_args({k: per[k][j] for k in per}) for j in range(depth))
    flags: dict[str, bool] = {"inject": False, "cat": False, "lead": False}
    while p.accept("!"):
        _, flag, fpos = p.peek()
        p.take(kind="name", expected="a stage flag (inject, cat, lead)")
        if flag not in flags:
            raise GenomeError(f"genome string: unknown stage flag {flag!r} at position {fpos}; valid: "
                              "inject, cat, lead")
        flags[flag] = True
    return Stage(block, depth, width, stride, _args(args), block_args, down, flags["inject"], flags["cat"],
                 flags["lead"])


def _parse_decoder(p: _Parser) -> Decoder:
    _, kind, pos = p.peek()
    kind = p.take(kind="name", expected="a decoder name")
    if kind != "chain" and kind not in registry.names("decoder"):
        raise GenomeError(f"genome string: unknown decoder {kind!r} at position {pos}; valid codes: chain, "
                          + ", ".join(registry.names("decoder")))
    p.take("@", expected="'@' and the tapped stage indices")
    taps = [p.int_("a stage index")]
    while p.accept(","):
        taps.append(p.int_("a stage index"))
    args = p.args(registry.get(kind, "decoder")) if kind != "chain" else {}
    context, cw = Module("none"), 0
    if p.accept("~"):
        context = p.module("context")
        p.take(">", expected="'>' and the context width")
        cw = p.int_("the context output width")
    fusions = []
    if p.accept(":"):
        while True:
            _, tok, fpos = p.peek()
            tok = p.take(kind="name", expected="a fusion such as uafm128")
            m = re.fullmatch(r"([A-Za-z_]+?[A-Za-z_0-9]*?)(\d+)", tok)
            if not m or m.group(1) not in registry.names("fusion"):
                raise GenomeError(f"genome string: fusion {tok!r} at position {fpos} is not NAME<width> with a "
                                  f"known fusion; valid codes: " + ", ".join(registry.names("fusion")))
            fusions.append(Fusion(m.group(1), int(m.group(2)), _args(p.args(registry.get(m.group(1), "fusion")))))
            if not p.accept("/"):
                break
    return Decoder(kind, tuple(taps), _args(args), context, cw, tuple(fusions))


def _parse_heads(p: _Parser) -> Heads:
    main = None if p.accept("-") else p.module("head")
    extra = []
    while p.accept("/"):
        _, role, pos = p.peek()
        role = p.take(kind="name", expected="aux, detail or boundary")
        if role not in ("aux", "detail", "boundary"):
            raise GenomeError(f"genome string: unknown head role {role!r} at position {pos}; valid: aux, detail, "
                              "boundary")
        p.take("@", expected="'@'")
        _, src, spos = p.peek()
        src = p.take(kind="name", expected="s<stage> or l<level>")
        m = re.fullmatch(r"([sl])(\d+)", src)
        if not m:
            raise GenomeError(f"genome string: head tap {src!r} at position {spos} is malformed; expected s<stage> "
                              "or l<level>, e.g. s2")
        p.take("=", expected="'='")
        head = p.module("head")
        extra.append(HeadTap(role, "stage" if m.group(1) == "s" else "level", int(m.group(2)), head))
    ac = False
    if p.accept("!"):
        _, flag, fpos = p.peek()
        p.take(kind="name", expected="ac")
        if flag != "ac":
            raise GenomeError(f"genome string: unknown heads flag {flag!r} at position {fpos}; valid: ac")
        ac = True
    return Heads(main, tuple(extra), ac)


def load(text: str) -> Genome:
    """A genome from a compact string (``v1|...``) or JSON (``{...}``)."""
    t = text.strip()
    return from_json(t) if t.startswith("{") else parse(t)


__all__ = [
    "Decoder", "Fusion", "Genome", "HeadTap", "Heads", "Module", "Stage", "from_dict", "from_json", "genome_id",
    "load", "parse", "replace", "resolve", "to_dict", "to_json", "to_string",
]
