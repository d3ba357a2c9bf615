"""Genomes: small, frozen, serialisable descriptions of a segmentation network.

A genome is a tree of frozen dataclasses holding only primitives and tuples:

* ``stages``: the encoder, a sequence of :class:`Stage` (block type, depth, width, stride, block
  arguments, optional separate downsampling block, optional per-block overrides such as RegSeg's
  dilation list, and ESPNet's input injection / first-block concatenation with its order);
* ``decoder``: a :class:`Decoder`, either ``chain`` (a context module on the deepest tap, then one
  registered fusion module per tap from deep to shallow) or a registered paper decoder
  (``decoder26``, ``apn``, ``erfnet_decoder`` ...) over chosen taps;
* ``heads``: a :class:`Heads` (main segmentation head, auxiliary / detail / boundary heads);
* ``branches``: optional :class:`Branch` paths beside the main one (``stages``), for multi-branch networks:
  DDRNet's high-resolution branch with its bilateral exchanges, PIDNet's P and D branches, BiSeNet's
  spatial / detail path.  Each starts from a main stage's output (or the image), runs its stages beside the
  following main stages, exchanges features with the main path through registered ``link`` modules after
  chosen main stages (:class:`Link`), and is tapped by the chain decoder (``Decoder.branch_taps``), by a
  three-input fusion as its guide (``Fusion.guide``) and by training heads (``HeadTap(source="branch")``).

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

    genome   := "v1" "|" stages "|" decoder "|" heads ["|" branch (";" branch)*]
    stages   := stage ("/" stage)*
    stage    := [module ">"] NAME DEPTH "x" WIDTH "s" STRIDE [args] [perblock] ("!" flag)*
    flag     := "inject" | "cat" | "lead" | "relu"
    module   := NAME [args]
    args     := "(" KEY "=" value ("," KEY "=" value)* ")"
    value    := INT | FLOAT | "true" | "false" | IDENT | "[" [INT ("," INT)*] "]"
    perblock := "{" KEY "=" item ("," item)* (";" KEY "=" item ("," item)*)* "}"   item := value ["*" INT]
    decoder  := NAME "@" ["b" INT ","]* INT ("," INT)* [args] ["~" module ">" WIDTH] [":" fusion ("/" fusion)*]
    fusion   := NAME WIDTH [args] ["<" "b" INT]                   (one per tap, shallow -> deep; "<b1": guide)
    heads    := (module | "-") ("/" extra)* ["!ac"]
    extra    := ("aux" | "detail" | "boundary") "@" (("s" | "l") INT | "b" INT "." INT) "=" module
    branch   := (INT | "img") ">" stage ("/" stage)* ["@" INT "=" module ("," INT "=" module)*]

``s`` taps a stage output, ``l`` a chain level output; ``-`` means the decoder already emits logits;
``!ac`` = final upsampling with ``align_corners=True``; ``!cat`` concatenates a stage's last and first
block outputs in that order, ``!cat!lead`` in the order first, last (see :class:`Stage`); ``!relu`` applies a
ReLU to the stage's input.  A branch names its source (a main stage index, or ``img``), its stages and its
links (``@4=ddr_bilateral``: after main stage 4); ``b<k>`` in the decoder taps branch k's output, in a head tap
``b<k>.<j>`` its stage j.  DDRNet-23-slim-shaped, with the preset's blocks left out::

    v1|...7 main stages...|chain@b0,6~dappm>128:add128/passthrough128|seg_head/aux@b0.0=seg_head
      |3>...2 stages.../...@4=ddr_bilateral,5=ddr_bilateral

Fields added to schema 1 after its release (``Stage.first_leads`` and ``relu_in``, ``Fusion.guide``,
``Decoder.branch_taps``, ``HeadTap.branch``, ``Genome.branches``) are written to the JSON only when set,
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
    ``relu_in`` applies a ReLU to the stage's input first: DDRNet's and PIDNet's ``self.layer4(self.relu(x))``,
    where ``x`` is a fusion sum that other consumers (the next link, a training head) read before the ReLU.
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
    relu_in: bool = False


@dataclass(frozen=True)
class Fusion:
    """One level of a ``chain`` decoder: a registered fusion module and its output width."""

    name: str
    width: int
    args: Args = ()
    guide: int = -1  # a three-input fusion (bag, light_bag): the branch whose output is its guide (PIDNet's D)


@dataclass(frozen=True)
class Decoder:
    """``kind`` = ``chain`` or a registered decoder; ``taps`` = stage indices, shallow to deep.

    ``branch_taps`` (chain only): branches whose final outputs the chain taps too, before (shallower than) the
    stage taps, in that order; the chain then holds one fusion per branch tap and per stage tap, in that order.
    """

    kind: str
    taps: tuple[int, ...]
    args: Args = ()
    context: Module = field(default_factory=lambda: Module("none"))
    context_width: int = 0
    fusions: tuple[Fusion, ...] = ()
    branch_taps: tuple[int, ...] = ()


@dataclass(frozen=True)
class HeadTap:
    """A training-time head on a stage output (``source='stage'``) or a chain level (``'level'``)."""

    role: str  # aux | detail | boundary
    source: str  # stage | level | branch
    index: int  # stage, chain level, or stage of branch ``branch``
    head: Module
    branch: int = -1  # source 'branch': which branch (its stage ``index``, after that stage's links)


@dataclass(frozen=True)
class Heads:
    """``main`` is the segmentation head (``None`` when the decoder emits logits)."""

    main: Module | None
    extra: tuple[HeadTap, ...] = ()
    align_corners: bool = False


@dataclass(frozen=True)
class Link:
    """An exchange between the main path and a branch after main stage ``at`` (a registered ``link``)."""

    at: int
    module: Module


@dataclass(frozen=True)
class Branch:
    """A path parallel to the main one (``Genome.stages``): DDRNet's high-resolution branch, PIDNet's P and D
    branches, BiSeNet's spatial / detail path.

    It starts from the output of main stage ``source`` (``-1``: from the input image) and its stage ``j`` runs
    beside main stage ``source + 1 + j``; after main stage ``at`` and the branch stage beside it, each of its
    ``links`` exchanges features between the two (links at the same main stage run branch by branch, in the
    order of ``Genome.branches``).  Its output is its last stage's value after its links; the chain decoder taps
    it through ``Decoder.branch_taps``, a three-input fusion through ``Fusion.guide``, a training head through
    ``HeadTap(source="branch")``.
    """

    source: int
    stages: tuple[Stage, ...]
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Genome:
    stages: tuple[Stage, ...]
    decoder: Decoder
    heads: Heads
    schema: int = SCHEMA
    branches: tuple[Branch, ...] = ()


# Fields added to a dataclass after schema 1 was released: written to JSON only when they differ from this
# value, so every genome that does not use them keeps its canonical JSON and genome_id.
_ADDED_FIELDS: dict[type, dict[str, Any]] = {
    Stage: {"first_leads": False, "relu_in": False},
    Fusion: {"guide": -1},
    Decoder: {"branch_taps": ()},
    HeadTap: {"branch": -1},
    Genome: {"branches": ()},
}


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
    branches = _resolve_branches(genome.branches, len(stages))
    dec = _resolve_decoder(genome.decoder, len(stages), branches)
    heads = _resolve_heads(genome.heads, dec, len(stages), branches)
    return Genome(stages=stages, decoder=dec, heads=heads, schema=SCHEMA, branches=branches)


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
    for flag in ("inject", "concat_first", "first_leads", "relu_in"):
        if not isinstance(getattr(s, flag), bool):
            raise GenomeError(f"{path}.{flag} = {getattr(s, flag)!r} is not allowed; allowed: true or false")
    if s.concat_first and s.depth + (1 if down else 0) < 2:
        raise GenomeError(f"{path}.concat_first needs at least two blocks in the stage")
    if s.first_leads and not s.concat_first:
        raise GenomeError(f"{path}.first_leads orders the first/last concatenation; it needs concat_first "
                          "(string flags: '!cat!lead')")
    return Stage(s.block, s.depth, s.width, s.stride, args, block_args, down, s.inject, s.concat_first,
                 s.first_leads, s.relu_in)


def _resolve_branches(branches: tuple[Branch, ...], n_stages: int) -> tuple[Branch, ...]:
    out = []
    for b, br in enumerate(branches):
        path = f"branches.{b}"
        if not isinstance(br, Branch):
            raise GenomeError(f"{path} must be a branch (source, stages, links), got {type(br).__name__}")
        _check_int(br.source, f"{path}.source", -1, tuple(range(-1, n_stages - 1)))
        if not br.stages:
            raise GenomeError(f"{path}.stages: at least one stage is required")
        last = br.source + len(br.stages)
        if last > n_stages - 1:
            raise GenomeError(
                f"{path}: {len(br.stages)} stage(s) from {_source_name(br.source)} would run beside main stages "
                f"{br.source + 1}..{last}, but the main path has stages 0..{n_stages - 1}; allowed: at most "
                f"{n_stages - 1 - br.source} branch stage(s) from there")
        stages = tuple(_resolve_stage(s, f"{path}.stages.{j}") for j, s in enumerate(br.stages))
        links: list[Link] = []
        for i, link in enumerate(br.links):
            lp = f"{path}.links.{i}"
            beside = tuple(range(br.source + 1, last + 1))
            if isinstance(link.at, bool) or not isinstance(link.at, int) or link.at not in beside:
                raise GenomeError(f"{lp}.at = {link.at!r}: no stage of this branch runs beside main stage "
                                  f"{link.at!r}; allowed: one of {list(beside)} (the main stages its stages run "
                                  "beside)")
            if links and link.at <= links[-1].at:
                raise GenomeError(f"{lp}.at = {link.at}: a branch's links must be at increasing main stages "
                                  f"(the one before is at {links[-1].at})")
            links.append(Link(link.at, _resolve_module(link.module, "link", f"{lp}.module")))
        out.append(Branch(br.source, stages, tuple(links)))
    return tuple(out)


def takes_guide(fusion: str) -> bool:
    """Whether a registered fusion takes a third input, a guide from a branch (PIDNet's Bag and Light-Bag)."""
    return getattr(registry.get(fusion, "fusion").cls, "num_inputs", 2) == 3


def _source_name(source: int) -> str:
    return "the input image" if source == -1 else f"main stage {source}"


def _resolve_decoder(d: Decoder, n_stages: int, branches: tuple[Branch, ...] = ()) -> Decoder:
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
    branch_ids = tuple(range(len(branches)))
    for t in d.branch_taps:
        if not branch_ids:
            raise GenomeError(f"{path}.branch_taps = {list(d.branch_taps)}: the genome has no branches")
        _check_int(t, f"{path}.branch_taps", 0, branch_ids)
    if len(set(d.branch_taps)) != len(d.branch_taps):
        raise GenomeError(f"{path}.branch_taps = {list(d.branch_taps)}: a branch may be tapped once")
    if d.kind == "chain":
        if d.args:
            raise GenomeError(f"{path}.args: the chain decoder takes no arguments, got {dict(d.args)}")
        n_taps = len(d.branch_taps) + len(d.taps)
        if len(d.fusions) != n_taps:
            what = f"{len(d.branch_taps)} branch tap(s) + {len(d.taps)} stage tap(s)" if d.branch_taps \
                else f"{len(d.taps)}"
            raise GenomeError(f"{path}.fusions: the chain needs one fusion per tap ({what}), got {len(d.fusions)}")
        fusions = []
        for i, f in enumerate(d.fusions):
            fp = f"{path}.fusions.{i}"
            _check_int(f.width, f"{fp}.width", 1, high=MAX_WIDTH)
            entry = _entry(f.name, "fusion", f"{fp}.name")
            if takes_guide(f.name):
                if not branch_ids:
                    raise GenomeError(f"{fp}: {f.name!r} takes a third input (a boundary guide) from a branch, and "
                                      "the genome has no branches")
                _check_int(f.guide, f"{fp}.guide", 0, branch_ids)
            elif f.guide != -1:
                raise GenomeError(f"{fp}.guide = {f.guide!r}: {f.name!r} takes two inputs, no guide; the fusions "
                                  "that take one: " + ", ".join(n for n in registry.names("fusion") if takes_guide(n)))
            fusions.append(Fusion(f.name, f.width, _resolve_args(entry, f.args, f"{fp}.args"), f.guide))
        return Decoder("chain", tuple(d.taps), (), context, cw, tuple(fusions), tuple(d.branch_taps))
    entry = _entry(d.kind, "decoder", f"{path}.kind")
    if d.fusions:
        raise GenomeError(f"{path}.fusions: only the chain decoder takes fusions, not {d.kind!r}")
    if d.branch_taps:
        raise GenomeError(f"{path}.branch_taps: only the chain decoder taps branches, not {d.kind!r}")
    return Decoder(d.kind, tuple(d.taps), _resolve_args(entry, d.args, f"{path}.args"), context, cw, ())


def _resolve_heads(h: Heads, dec: Decoder, n_stages: int, branches: tuple[Branch, ...] = ()) -> Heads:
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
        if t.source == "branch":
            if not branches:
                raise GenomeError(f"{path}.source = 'branch': the genome has no branches")
            _check_int(t.branch, f"{path}.branch", 0, tuple(range(len(branches))))
            _check_int(t.index, f"{path}.index", 0, tuple(range(len(branches[t.branch].stages))))
        elif t.branch != -1:
            raise GenomeError(f"{path}.branch = {t.branch!r} is only for source 'branch', not {t.source!r}")
        if t.source == "stage":
            _check_int(t.index, f"{path}.index", 0, tuple(range(n_stages)))
        elif t.source == "level":
            if dec.kind != "chain":
                raise GenomeError(f"{path}: level taps exist only on the chain decoder, not {dec.kind!r}")
            _check_int(t.index, f"{path}.index", 0, tuple(range(len(dec.branch_taps) + len(dec.taps))))
        elif t.source != "branch":
            raise GenomeError(f"{path}.source = {t.source!r}; allowed: stage, level, branch")
        extra.append(HeadTap(t.role, t.source, t.index, _resolve_module(t.head, "head", f"{path}.head"), t.branch))
    return Heads(main, tuple(extra), h.align_corners)


# -------------------------------------------------------------------------------------------- JSON
def to_dict(genome: Genome) -> dict[str, Any]:
    """Plain JSON-able dict (args as objects, tuples as lists)."""
    return _to_plain(genome)


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, (Genome, Stage, Decoder, Heads, HeadTap, Module, Fusion, Branch, Link)):
        out = {}
        added = _ADDED_FIELDS.get(type(obj), {})
        for f in fields(obj):
            v = getattr(obj, f.name)
            if f.name in added and type(v) is type(added[f.name]) and v == added[f.name]:
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
    stages = [_stage_from_plain(s, f"stages.{i}") for i, s in enumerate(_list(o["stages"], "stages"))]
    branches = []
    for b, br in enumerate(_list(o.get("branches", ()), "branches")):
        p = f"branches.{b}"
        bo = _obj(br, Branch, p, ("source", "stages"))
        links = []
        for i, link in enumerate(_list(bo.get("links", ()), f"{p}.links")):
            lo = _obj(link, Link, f"{p}.links.{i}", ("at", "module"))
            links.append(Link(lo["at"], _module(lo["module"], f"{p}.links.{i}.module")))
        branches.append(Branch(bo["source"], tuple(_stage_from_plain(s, f"{p}.stages.{j}")
                                                   for j, s in enumerate(_list(bo["stages"], f"{p}.stages"))),
                               tuple(links)))
    do = _obj(o["decoder"], Decoder, "decoder", ("kind", "taps"))
    fusions = []
    for i, f in enumerate(_list(do.get("fusions", ()), "decoder.fusions")):
        fo = _obj(f, Fusion, f"decoder.fusions.{i}", ("name", "width"))
        fusions.append(Fusion(_str(fo["name"], f"decoder.fusions.{i}.name"), fo["width"],
                              _json_args(fo.get("args"), f"decoder.fusions.{i}.args"), fo.get("guide", -1)))
    dec = Decoder(kind=_str(do["kind"], "decoder.kind"), taps=tuple(_list(do["taps"], "decoder.taps")),
                  args=_json_args(do.get("args"), "decoder.args"),
                  context=_module(do["context"], "decoder.context") if "context" in do else Module("none"),
                  context_width=do.get("context_width", 0), fusions=tuple(fusions),
                  branch_taps=tuple(_list(do.get("branch_taps", ()), "decoder.branch_taps")))
    ho = _obj(o["heads"], Heads, "heads", ("main",))
    extra = []
    for i, t in enumerate(_list(ho.get("extra", ()), "heads.extra")):
        to = _obj(t, HeadTap, f"heads.extra.{i}", ("role", "source", "index", "head"))
        extra.append(HeadTap(to["role"], to["source"], to["index"], _module(to["head"], f"heads.extra.{i}.head"),
                             to.get("branch", -1)))
    heads = Heads(main=_module(ho["main"], "heads.main") if ho["main"] is not None else None,
                  extra=tuple(extra), align_corners=ho.get("align_corners", False))
    return Genome(stages=tuple(stages), decoder=dec, heads=heads, schema=o.get("schema", SCHEMA),
                  branches=tuple(branches))


def _stage_from_plain(s: Any, p: str) -> Stage:
    so = _obj(s, Stage, p, ("block", "depth", "width"))
    return Stage(
        block=_str(so["block"], f"{p}.block"), depth=so["depth"], width=so["width"], stride=so.get("stride", 1),
        args=_json_args(so.get("args"), f"{p}.args"),
        block_args=tuple(_json_args(b, f"{p}.block_args.{j}")
                         for j, b in enumerate(_list(so.get("block_args", ()), f"{p}.block_args"))),
        down=_module(so["down"], f"{p}.down") if so.get("down") is not None else None,
        inject=so.get("inject", False), concat_first=so.get("concat_first", False),
        first_leads=so.get("first_leads", False), relu_in=so.get("relu_in", False))


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
    parts = [_fmt_stage(s) for s in g.stages]
    d = g.decoder
    dec = f"{d.kind}@" + ",".join([f"b{b}" for b in d.branch_taps] + [str(t) for t in d.taps])
    if d.kind != "chain":
        dec += _fmt_args(d.kind, "decoder", d.args)
    if d.context.name != "none":
        dec += "~" + _fmt_module(d.context, "context") + f">{d.context_width}"
    if d.fusions:
        dec += ":" + "/".join(f"{f.name}{f.width}" + _fmt_args(f.name, "fusion", f.args)
                              + (f"<b{f.guide}" if f.guide >= 0 else "") for f in d.fusions)
    h = g.heads
    heads = _fmt_module(h.main, "head") if h.main else "-"
    for t in h.extra:
        where = f"b{t.branch}.{t.index}" if t.source == "branch" else f"{t.source[0]}{t.index}"
        heads += f"/{t.role}@{where}=" + _fmt_module(t.head, "head")
    heads += "!ac" if h.align_corners else ""
    out = f"v{SCHEMA}|" + "/".join(parts) + "|" + dec + "|" + heads
    if g.branches:
        out += "|" + ";".join(_fmt_branch(b) for b in g.branches)
    return out


def _fmt_stage(s: Stage) -> str:
    t = (_fmt_module(s.down, "block") + ">" if s.down else "") + f"{s.block}{s.depth}x{s.width}s{s.stride}"
    t += _fmt_args(s.block, "block", s.args)
    if s.block_args:
        keys = [k for k, _ in s.block_args[0]]
        t += "{" + ";".join(f"{k}=" + _runs([dict(b)[k] for b in s.block_args]) for k in keys) + "}"
    t += "!inject" if s.inject else ""
    t += "!cat" if s.concat_first else ""
    t += "!lead" if s.first_leads else ""
    t += "!relu" if s.relu_in else ""
    return t


def _fmt_branch(b: Branch) -> str:
    t = ("img" if b.source == -1 else str(b.source)) + ">" + "/".join(_fmt_stage(s) for s in b.stages)
    if b.links:
        t += "@" + ",".join(f"{link.at}=" + _fmt_module(link.module, "link") for link in b.links)
    return t


_TOKEN = re.compile(
    r"(?P<num>-?\d+(?:\.\d+(?:e[-+]?\d+)?|e[-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[|/<>(),=\[\]{};*@~:.!-])")


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
    branches = []
    if p.accept("|"):
        branches.append(_parse_branch(p))
        while p.accept(";"):
            branches.append(_parse_branch(p))
    if p.peek()[0] != "end":
        raise p.error("the end of the string" if branches else "'|' (branches) or the end of the string")
    return resolve(Genome(stages=tuple(stages), decoder=dec, heads=heads, branches=tuple(branches)))


def _parse_branch(p: _Parser) -> Branch:
    k, v, _ = p.peek()
    if k == "name" and v == "img":
        p.i += 1
        source = -1
    else:
        source = p.int_("a branch source: a main stage index, or img (the input image)")
    p.take(">", expected="'>' after the branch source")
    stages = [_parse_stage(p)]
    while p.accept("/"):
        stages.append(_parse_stage(p))
    links = []
    if p.accept("@"):
        while True:
            at = p.int_("the main stage index of a link")
            p.take("=", expected="'=' and a link name")
            links.append(Link(at, p.module("link")))
            if not p.accept(","):
                break
    return Branch(source, tuple(stages), tuple(links))


_BRANCH_REF = re.compile(r"b(\d+)")


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
    flags: dict[str, bool] = {"inject": False, "cat": False, "lead": False, "relu": False}
    while p.accept("!"):
        _, flag, fpos = p.peek()
        p.take(kind="name", expected="a stage flag (inject, cat, lead, relu)")
        if flag not in flags:
            raise GenomeError(f"genome string: unknown stage flag {flag!r} at position {fpos}; valid: "
                              "inject, cat, lead, relu")
        flags[flag] = True
    return Stage(block, depth, width, stride, _args(args), block_args, down, flags["inject"], flags["cat"],
                 flags["lead"], flags["relu"])


def _parse_decoder(p: _Parser) -> Decoder:
    _, kind, pos = p.peek()
    kind = p.take(kind="name", expected="a decoder name")
    if kind != "chain" and kind not in registry.names("decoder"):
        raise GenomeError(f"genome string: unknown decoder {kind!r} at position {pos}; valid codes: chain, "
                          + ", ".join(registry.names("decoder")))
    p.take("@", expected="'@' and the tapped stage indices")
    branch_taps: list[int] = []
    taps: list[int] = []
    while True:
        k, v, tpos = p.peek()
        m = _BRANCH_REF.fullmatch(v) if k == "name" else None
        if m:
            if taps:
                raise GenomeError(f"genome string: branch tap {v!r} at position {tpos} follows a stage tap; "
                                  "branch taps come first (b0,b1,...,then stage indices)")
            p.i += 1
            branch_taps.append(int(m.group(1)))
        else:
            taps.append(p.int_("a stage index (or a branch tap b<k> before the stage indices)"))
        if not p.accept(","):
            break
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
            fargs = _args(p.args(registry.get(m.group(1), "fusion")))
            guide = -1
            if p.accept("<"):
                _, ref, gpos = p.peek()
                gm = _BRANCH_REF.fullmatch(ref)
                if not gm:
                    raise GenomeError(f"genome string: fusion guide {ref!r} at position {gpos} is not a branch; "
                                      "expected b<k>, e.g. <b1")
                p.i += 1
                guide = int(gm.group(1))
            fusions.append(Fusion(m.group(1), int(m.group(2)), fargs, guide))
            if not p.accept("/"):
                break
    return Decoder(kind, tuple(taps), _args(args), context, cw, tuple(fusions), tuple(branch_taps))


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
        src = p.take(kind="name", expected="s<stage>, l<level> or b<branch>.<stage>")
        m = re.fullmatch(r"([slb])(\d+)", src)
        if not m:
            raise GenomeError(f"genome string: head tap {src!r} at position {spos} is malformed; expected s<stage>, "
                              "l<level> or b<branch>.<stage>, e.g. s2 or b0.1")
        if m.group(1) == "b":
            p.take(".", expected="'.' and the branch's stage index, e.g. b0.1")
            index = p.int_("the branch's stage index")
            p.take("=", expected="'='")
            extra.append(HeadTap(role, "branch", index, p.module("head"), int(m.group(2))))
            continue
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
    "Branch", "Decoder", "Fusion", "Genome", "HeadTap", "Heads", "Link", "Module", "Stage", "from_dict", "from_json",
    "genome_id", "load", "parse", "replace", "resolve", "takes_guide", "to_dict", "to_json", "to_string",
]
