"""Declarative, conditional search spaces (``search_spaces/*.yaml``).

``load_space(path)`` is the only place a space's YAML is validated: the structure by pydantic (unknown
keys are errors), every module name and argument by the registry, and every block choice by actually
constructing it at every width it can get.  Errors name the file, the key path, the bad value and what
is allowed.

A space describes a list of stages, a decoder and heads.  Any field may be a fixed value or a set of
choices; a block's arguments are searched only when that block is chosen (conditional space)::

    stages:
      - {block: conv, width: 32, depth: 1, stride: 2}            # fixed stem
      - stride: 2
        width: [128, 256]                                         # categorical
        depth: {low: 1, high: 4}                                  # integer range
        block:
          stdc: {num_blocks: [2, 3, 4, 5]}                        # args searched only if stdc is chosen
          ssnbt: {dilation: [1, 2], down: downsampler}            # ``down``: separate downsampling block
          dblock:
            group_width: 16
            schedule:                                             # per-block overrides; fixes the depth
              exp48: {dilations: [[1], [1, 2], [1, 4], [1, 4], [1, 14]]}

``space.sample(trial)`` uses only ``trial.suggest_*`` with stable parameter names
(``stages.2.block``, ``stages.2.block.stdc.num_blocks``, ``decoder.fusions.0`` ...), so any Optuna sampler
works.  ``space.random(rng)`` samples without Optuna, ``space.encode(genome)`` returns the parameters
that reproduce a genome (or ``None`` if it is not a member).
"""

from __future__ import annotations

import itertools
import json
import math
import random as _random
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nasseg import registry
from nasseg.errors import BlockArgumentError, ConfigError, GenomeError, UnknownBlockError
from nasseg.genome import (
    Branch,
    Decoder,
    Fusion,
    Genome,
    Heads,
    HeadTap,
    Link,
    Module,
    Stage,
    _args,
    resolve,
    takes_guide,
)

RESERVED_BLOCK_KEYS = ("down", "schedule")


# ------------------------------------------------------------------------------------ YAML schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class IntRange(_Strict):
    low: int
    high: int
    step: int = 1


class FloatRange(_Strict):
    low: float
    high: float
    log: bool = False


ChoiceMap = dict[str, dict[str, Any] | None]  # module name -> {arg: value | [choices] | range}


class WidthOf(_Strict):
    """A width tied to a main stage's: ``times`` x the width drawn for main stage ``stage`` (an earlier one)."""

    stage: int
    times: int = 1


class StageSpace(_Strict):
    block: str | ChoiceMap
    width: int | list[int] | WidthOf
    depth: int | list[int] | IntRange = 1
    stride: Literal[1, 2, 4, 8] = 1
    inject: bool = False
    concat_first: bool = False
    first_leads: bool = False  # with concat_first: [first, last] instead of [last, first] (ESPNet level 3)
    relu_in: bool = False  # ReLU on the stage's input (DDRNet / PIDNet after a fusion sum)


class LinkSpace(_Strict):
    at: int  # the main stage after which the exchange happens
    link: str | ChoiceMap
    optional: bool = False  # searched: the link is there or not


class BranchSpace(_Strict):
    source: int  # main stage index whose output feeds the branch; -1 = the input image
    stages: list[StageSpace]
    links: list[LinkSpace] = Field(default_factory=list)
    optional: bool = False  # searched: the branch is there or not (its links, taps, guides and heads with it)


class ExtraHeadSpace(_Strict):
    role: Literal["aux", "detail", "boundary"]
    source: Literal["stage", "level", "branch"] = "stage"
    index: int
    branch: int = -1  # source 'branch': which branch (index = its stage)
    head: str | ChoiceMap
    optional: bool = False


class HeadsSpace(_Strict):
    main: str | ChoiceMap | None = "seg_head"
    extra: list[ExtraHeadSpace] = Field(default_factory=list)
    align_corners: bool | list[bool] = False


class ChainSpace(_Strict):
    context: str | ChoiceMap = "none"
    context_width: int | list[int] | WidthOf = 128
    fusion: str | ChoiceMap | None = None
    fusions: list[str | ChoiceMap] | None = None
    widths: list[list[int]] | list[int]
    # per tap (branch taps first): the branch whose output guides a three-input fusion there (Bag), or null
    guides: list[int | None] | None = None


class DecoderSpace(_Strict):
    taps: list[int] | list[list[int]] = Field(default_factory=list)
    branch_taps: list[int] = Field(default_factory=list)  # branches the chain taps, before the stage taps
    kind: str | dict[str, dict[str, Any] | None]


class SpaceFile(_Strict):
    name: str
    description: str = ""
    stages: list[StageSpace]
    branches: list[BranchSpace] = Field(default_factory=list)
    decoder: DecoderSpace
    heads: HeadsSpace = Field(default_factory=HeadsSpace)


# -------------------------------------------------------------------------------- choosing values
class Chooser(Protocol):
    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


class RandomChooser:
    """A ``trial``-like object drawing uniformly at random (no Optuna needed)."""

    def __init__(self, rng: _random.Random):
        self.rng, self.params = rng, {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        v = self.rng.choice(list(choices))
        self.params[name] = v
        return v

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        v = self.rng.randrange(low, high + 1, step)
        self.params[name] = v
        return v

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        v = math.exp(self.rng.uniform(math.log(low), math.log(high))) if log else self.rng.uniform(low, high)
        self.params[name] = v
        return v


def _key(v: Any) -> Any:
    """Optuna categorical choices must be primitives: lists are written as compact JSON strings."""
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, tuple)) else v


def _unkey(v: Any) -> Any:
    if isinstance(v, str) and v.startswith("["):
        return _freeze(json.loads(v))
    return v


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


@dataclass(frozen=True)
class Dim:
    """One searchable (or fixed) value.  ``choices`` for categorical, ``rng`` for int/float ranges."""

    name: str
    choices: tuple[Any, ...] | None = None
    rng: IntRange | FloatRange | None = None
    ref: tuple[int, int] | None = None  # (main stage, times): a width tied to that stage's; choices = its range

    @property
    def fixed(self) -> bool:
        return self.rng is None and self.choices is not None and len(self.choices) == 1

    def draw(self, t: Chooser, refs: list[int] | tuple[int, ...] = ()) -> Any:
        if self.ref is not None:
            return refs[self.ref[0]] * self.ref[1]
        if self.rng is not None:
            if isinstance(self.rng, IntRange):
                return t.suggest_int(self.name, self.rng.low, self.rng.high, step=self.rng.step)
            return t.suggest_float(self.name, self.rng.low, self.rng.high, log=self.rng.log)
        assert self.choices is not None
        if len(self.choices) == 1:
            return self.choices[0]
        return _unkey(t.suggest_categorical(self.name, [_key(c) for c in self.choices]))

    def encode(self, value: Any, params: dict[str, Any], refs: list[int] | tuple[int, ...] = ()) -> bool:
        if self.ref is not None:
            return value == refs[self.ref[0]] * self.ref[1]
        if self.rng is not None:
            ok = self.rng.low <= value <= self.rng.high
            if ok and isinstance(self.rng, IntRange):
                ok = (value - self.rng.low) % self.rng.step == 0
            if ok:
                params[self.name] = value
            return ok
        assert self.choices is not None
        if value not in self.choices:
            return False
        if len(self.choices) > 1:
            params[self.name] = _key(value)
        return True

    def values(self) -> list[Any]:
        if self.choices is not None:
            return list(self.choices)
        assert isinstance(self.rng, IntRange)
        return list(range(self.rng.low, self.rng.high + 1, self.rng.step))


@dataclass(frozen=True)
class ModuleChoice:
    """A registered module with its argument dims (and, for blocks, ``down`` and ``schedule``)."""

    name: str
    args: tuple[tuple[str, Dim], ...]
    down: Module | None = None
    schedule: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # option name -> per-block overrides
    taps: tuple[int, ...] | None = None  # decoders only: the stages this decoder taps (else decoder.taps)

    def draw(self, t: Chooser) -> dict[str, Any]:
        return {k: d.draw(t) for k, d in self.args}

    def encode(self, args: Mapping[str, Any], params: dict[str, Any]) -> bool:
        return all(d.encode(args[k], params) for k, d in self.args)

    def combos(self, limit: int = 256) -> list[dict[str, Any]]:
        keys = [k for k, _ in self.args]
        pools = [d.values() if d.rng is None or isinstance(d.rng, IntRange) else [d.rng.low, d.rng.high]
                 for _, d in self.args]
        out = [dict(zip(keys, vals)) for vals in itertools.islice(itertools.product(*pools), limit)]
        return out or [{}]


@dataclass(frozen=True)
class ModuleDim:
    """A choice among modules of one kind, each with conditional argument dims."""

    name: str
    options: tuple[ModuleChoice, ...]

    def draw(self, t: Chooser) -> ModuleChoice:
        names = [o.name for o in self.options]
        pick = names[0] if len(names) == 1 else t.suggest_categorical(self.name, names)
        return self.options[names.index(pick)]

    def option(self, name: str) -> ModuleChoice | None:
        return next((o for o in self.options if o.name == name), None)

    def encode_name(self, name: str, params: dict[str, Any]) -> ModuleChoice | None:
        o = self.option(name)
        if o is not None and len(self.options) > 1:
            params[self.name] = name
        return o


# ------------------------------------------------------------------------------------ the space
@dataclass(frozen=True)
class StageDims:
    block: ModuleDim
    width: Dim
    depth: Dim
    stride: int
    inject: bool
    concat_first: bool
    first_leads: bool = False
    relu_in: bool = False

    def sample(self, trial: Chooser, refs: list[int] | tuple[int, ...] = ()) -> Stage:
        opt = self.block.draw(trial)
        args = opt.draw(trial)
        block_args: tuple = ()
        if opt.schedule:
            names = [n for n, _ in opt.schedule]
            pre = f"{self.block.name}.{opt.name}.schedule"
            pick = names[0] if len(names) == 1 else trial.suggest_categorical(pre, names)
            block_args = dict(opt.schedule)[pick]
            depth = len(block_args)
        else:
            depth = self.depth.draw(trial)
        return Stage(opt.name, depth, self.width.draw(trial, refs), self.stride, _args(args), block_args, opt.down,
                     self.inject, self.concat_first, self.first_leads, self.relu_in)

    def encode(self, s: Stage, p: dict[str, Any], refs: list[int] | tuple[int, ...] = ()) -> bool:
        opt = self.block.encode_name(s.block, p)
        if opt is None or (s.stride, s.inject, s.concat_first, s.first_leads, s.relu_in) != \
                (self.stride, self.inject, self.concat_first, self.first_leads, self.relu_in):
            return False
        if s.down != opt.down or not opt.encode(dict(s.args), p) or not self.width.encode(s.width, p, refs):
            return False
        if opt.schedule:
            names = [n for n, v in opt.schedule if v == s.block_args]
            if not names:
                return False
            if len(opt.schedule) > 1:
                p[f"{self.block.name}.{opt.name}.schedule"] = names[0]
            return True
        return not s.block_args and self.depth.encode(s.depth, p)


@dataclass(frozen=True)
class LinkDims:
    at: int
    link: ModuleDim
    optional: Dim | None


@dataclass(frozen=True)
class BranchDims:
    source: int
    stages: tuple[StageDims, ...]
    links: tuple[LinkDims, ...]
    optional: Dim | None  # None: always there


@dataclass(frozen=True)
class ExtraDims:
    role: str
    source: str
    index: int
    head: ModuleDim
    optional: Dim | None
    branch: int = -1


class SearchSpace:
    """A validated search space; see the module docstring."""

    def __init__(self, name: str, description: str, stages: list[StageDims], taps: Dim, decoder: ModuleDim,
                 context: ModuleDim | None, context_width: Dim | None, fusions: list[ModuleDim] | None,
                 widths: Dim | None, main: ModuleDim | None, extra: list[ExtraDims], align_corners: Dim,
                 source: str = "<memory>", branches: list[BranchDims] | None = None,
                 branch_taps: tuple[int, ...] = (), guides: tuple[int, ...] = ()):
        self.name, self.description, self.source = name, description, source
        self.stages, self.taps, self.decoder = stages, taps, decoder
        self.context, self.context_width, self.fusions, self.widths = context, context_width, fusions, widths
        self.main, self.extra, self.align_corners = main, extra, align_corners
        self.branches, self.branch_taps = list(branches or ()), tuple(branch_taps)
        self.guides = tuple(guides)  # per chain level: the guiding branch, or -1 (empty without a chain)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.stages)} stages, from {self.source})"

    # ------------------------------------------------------------------------------ sampling
    def sample(self, trial: Chooser) -> Genome:
        """Draw a genome using only ``trial.suggest_*`` (an Optuna trial or any look-alike)."""
        stages: list[Stage] = []
        for sd in self.stages:
            stages.append(sd.sample(trial, [st.width for st in stages]))
        refs = [st.width for st in stages]
        present = [bd.optional is None or bool(bd.optional.draw(trial)) for bd in self.branches]
        renumber = {b: sum(present[:b]) for b in range(len(present)) if present[b]}  # space index -> genome index
        branches = []
        for bd, here in zip(self.branches, present):
            if not here:
                continue
            links = []
            for ld in bd.links:
                if ld.optional is not None and not ld.optional.draw(trial):
                    continue
                o = ld.link.draw(trial)
                links.append(Link(ld.at, Module(o.name, _args(o.draw(trial)))))
            branches.append(Branch(bd.source, tuple(sd.sample(trial, refs) for sd in bd.stages), tuple(links)))
        kind = self.decoder.draw(trial)
        taps = kind.taps if kind.taps is not None else tuple(self.taps.draw(trial))
        kargs = kind.draw(trial)
        if kind.name == "chain":
            ctx = self.context.draw(trial)
            context = Module(ctx.name, _args(ctx.draw(trial)))
            cw = self.context_width.draw(trial, refs) if ctx.name != "none" else 0
            widths = self.widths.draw(trial)
            btaps = tuple(renumber[b] for b in self.branch_taps)  # tapped branches are never optional (load checks)
            n_taps = len(btaps) + len(taps)
            fdims = self.fusions if len(self.fusions) > 1 else self.fusions * n_taps
            picked: dict[int, tuple[ModuleChoice, dict]] = {}
            fusions = []
            for level, fd in enumerate(fdims):
                guide = renumber.get(self.guides[level], -1)  # -1: no guide here, or its branch was left out
                if len(self.fusions) == 1 and picked:
                    o, a = picked[0]
                else:
                    fd = fd if guide >= 0 or self.guides[level] < 0 else _two_input(fd)
                    o = fd.draw(trial)
                    a = o.draw(trial)
                    picked[level] = (o, a)
                fusions.append(Fusion(o.name, widths[level], _args(a), guide if takes_guide(o.name) else -1))
            dec = Decoder("chain", taps, (), context, cw, tuple(fusions), btaps)
        else:
            dec = Decoder(kind.name, taps, _args(kargs))
        main = None
        if self.main is not None:
            m = self.main.draw(trial)
            main = Module(m.name, _args(m.draw(trial)))
        extra = []
        for ed in self.extra:
            if ed.source == "branch" and ed.branch not in renumber:
                continue  # a head on a branch this sample left out
            if ed.optional is not None and not ed.optional.draw(trial):
                continue
            h = ed.head.draw(trial)
            extra.append(HeadTap(ed.role, ed.source, ed.index, Module(h.name, _args(h.draw(trial))),
                                 renumber[ed.branch] if ed.source == "branch" else -1))
        ac = self.align_corners.draw(trial)
        return resolve(Genome(tuple(stages), dec, Heads(main, tuple(extra), ac), branches=tuple(branches)))

    def random(self, rng: _random.Random | int = 0) -> Genome:
        """A uniformly random member, without Optuna."""
        return self.sample(RandomChooser(rng if isinstance(rng, _random.Random) else _random.Random(rng)))

    # ------------------------------------------------------------------------------ membership
    def encode(self, genome: Genome) -> dict[str, Any] | None:
        """Parameters that make :meth:`sample` return ``genome``, or ``None`` if it is not a member."""
        g = resolve(genome)
        p: dict[str, Any] = {}
        if len(g.stages) != len(self.stages):
            return None
        refs = [s.width for s in g.stages]
        if not all(sd.encode(s, p, refs) for sd, s in zip(self.stages, g.stages)):
            return None
        renumber = self._encode_branches(g.branches, p, refs)
        if renumber is None:
            return None
        d = g.decoder
        kind = self.decoder.encode_name(d.kind, p)
        if kind is None:
            return None
        if kind.taps is not None:
            if tuple(d.taps) != kind.taps:
                return None
        elif not self.taps.encode(tuple(d.taps), p):
            return None
        if tuple(d.branch_taps) != tuple(renumber.get(b, -1) for b in self.branch_taps):
            return None
        if d.kind == "chain":
            ctx = self.context.encode_name(d.context.name, p)
            if ctx is None or not ctx.encode(dict(d.context.args), p):
                return None
            if d.context.name != "none" and not self.context_width.encode(d.context_width, p, refs):
                return None
            if not self.widths.encode(tuple(f.width for f in d.fusions), p):
                return None
            if len(self.fusions) == 1:
                if len({(f.name, f.args) for f in d.fusions}) != 1:
                    return None
                o = self.fusions[0].encode_name(d.fusions[0].name, p)
                if o is None or not o.encode(dict(d.fusions[0].args), p):
                    return None
            else:
                if len(self.fusions) != len(d.fusions):
                    return None
                for fd, f in zip(self.fusions, d.fusions):
                    o = fd.encode_name(f.name, p)
                    if o is None or not o.encode(dict(f.args), p):
                        return None
            for level, f in enumerate(d.fusions):  # guides: the (renumbered) guide branch, or none
                g_space = self.guides[level]
                want = renumber.get(g_space, -1) if takes_guide(f.name) else -1
                if f.guide != want:
                    return None
                if g_space >= 0 and g_space not in renumber:
                    fd = self.fusions[level]  # drawn among the two-input options, under another name
                    value = p.pop(fd.name, None)
                    if value is not None and len(_two_input(fd).options) > 1:
                        p[f"{fd.name}.unguided"] = value
        elif not kind.encode(dict(d.args), p):
            return None
        h = g.heads
        if (self.main is None) != (h.main is None) or not self.align_corners.encode(h.align_corners, p):
            return None
        if h.main is not None:
            o = self.main.encode_name(h.main.name, p)
            if o is None or not o.encode(dict(h.main.args), p):
                return None
        it = iter(h.extra)
        cur = next(it, None)
        for ed in self.extra:
            if ed.source == "branch" and ed.branch not in renumber:
                continue
            here = (ed.role, ed.source, ed.index, renumber[ed.branch] if ed.source == "branch" else -1)
            match = cur is not None and (cur.role, cur.source, cur.index, cur.branch) == here
            if ed.optional is not None:
                p[ed.optional.name] = match
            elif not match:
                return None
            if match:
                o = ed.head.encode_name(cur.head.name, p)
                if o is None or not o.encode(dict(cur.head.args), p):
                    return None
                cur = next(it, None)
        if cur is not None:
            return None
        return p

    def contains(self, genome: Genome) -> bool:
        return self.encode(genome) is not None

    def _encode_branches(self, branches: tuple[Branch, ...], p: dict[str, Any], refs: list[int]
                         ) -> dict[int, int] | None:
        """Match the genome's branches to the space's in order (an optional one may be absent); the renumbering
        space index -> genome index, or None."""
        renumber: dict[int, int] = {}
        rest = list(branches)
        for b, bd in enumerate(self.branches):
            trial: dict[str, Any] = {}
            br = rest[0] if rest else None
            ok = br is not None and br.source == bd.source and len(br.stages) == len(bd.stages) \
                and all(sd.encode(st, trial, refs) for sd, st in zip(bd.stages, br.stages)) \
                and self._encode_links(bd, br.links, trial)
            if bd.optional is not None:
                p[bd.optional.name] = ok
            elif not ok:
                return None
            if ok:
                p.update(trial)
                renumber[b] = len(renumber)
                rest.pop(0)
        return None if rest else renumber

    @staticmethod
    def _encode_links(bd: BranchDims, links: tuple[Link, ...], p: dict[str, Any]) -> bool:
        rest = list(links)
        for ld in bd.links:
            cur = rest[0] if rest else None
            match = cur is not None and cur.at == ld.at and ld.link.option(cur.module.name) is not None
            if ld.optional is not None:
                p[ld.optional.name] = match
            elif not match:
                return False
            if match:
                o = ld.link.encode_name(cur.module.name, p)
                if o is None or not o.encode(dict(cur.module.args), p):
                    return False
                rest.pop(0)
        return not rest


def _two_input(fd: ModuleDim) -> ModuleDim:
    """The two-input options of a fusion choice, under their own parameter name (the guide branch is absent)."""
    return ModuleDim(f"{fd.name}.unguided", tuple(o for o in fd.options if not takes_guide(o.name)))


# --------------------------------------------------------------------------------------- loading
def load_space(path: str | Path) -> SearchSpace:
    """Read, validate and compile a search-space YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read search space ({e.strerror or e})") from None
    return parse_space(text, str(path))


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (PyYAML keeps the last silently).

    Keys brought in by a merge (``<<: *anchor``) may be overridden, as YAML intends.
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: SafeLoader reports it below
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                    f"key {key!r} is given twice", key_node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _safe_load(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _user_path(raw: Any, err: Mapping[str, Any]) -> list[str]:
    """Pydantic's error location in the user's own keys: union-member tags (``int``, ``list[int]``,
    ``IntRange`` ...) are dropped; a missing key is kept."""
    loc, out, node = list(err["loc"]), [], raw
    for i, part in enumerate(loc):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (i == len(loc) - 1 and err.get("type") == "missing"):
            continue
        out.append(str(part))
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through lists, dicts, unions and optionals)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _valid_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model at pydantic location ``loc`` (up to its last part) accepts; [] when ambiguous."""
    model = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # a list index: the list's item model is what the field gave
        if part in model.model_fields:
            models = _models_in(model.model_fields[part].annotation)
            if len(models) != 1:
                return []
            model = models[0]
        elif part != model.__name__:  # pydantic names a union member in the location
            return []
    return list(model.model_fields)


def _validation_error(source: str, e: ValidationError, raw: Any, prefix: str = "",
                      root: type[BaseModel] | None = None) -> ConfigError:
    """One ConfigError for a pydantic error: the most specific location (a union reports one error per
    member; the deepest is the one the user meant), the message and the offending value; for an unknown
    key, the keys that are valid there (``root``: the model that was validated)."""
    errors = e.errors()
    paths = [_user_path(raw, err) for err in errors]
    best = max(range(len(errors)), key=lambda i: len(paths[i]))
    err, loc = errors[best], ".".join(([prefix] if prefix else []) + paths[best])
    got = ""
    if err.get("type") != "missing":
        got = repr(err.get("input"))
        got = f" (got {got[:97] + '...' if len(got) > 100 else got})"
    valid = _valid_keys(root, tuple(err["loc"])) if root is not None and err.get("type") == "extra_forbidden" else []
    hint = f"; valid keys: {', '.join(valid)}" if valid else ""
    return ConfigError(f"{source}: key '{loc}': {err['msg']}{got}{hint}")


def read_yaml_mapping(text: str, source: str, what: str) -> dict:
    """Strict safe YAML (duplicate keys are errors) that must hold a mapping; ``what`` describes it in the error.

    A syntax error becomes one ConfigError naming the file, line and column.
    """
    try:
        raw = _safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}:{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {what}")
    return raw


def parse_space(text: str, source: str = "<string>") -> SearchSpace:
    raw = read_yaml_mapping(text, source, "a search space must be a YAML mapping with keys name, stages, decoder, "
                                          "heads")
    try:
        spec = SpaceFile.model_validate(raw)
    except ValidationError as e:
        raise _validation_error(source, e, raw, root=SpaceFile) from None
    return _compile(spec, source)


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


def _dim(name: str, value: Any, source: str, list_is_value: bool = False, where: str | None = None) -> Dim:
    """``name`` is the Optuna parameter name; ``where`` the YAML key path errors name (default ``name``)."""
    where = where or name
    if isinstance(value, (IntRange, FloatRange)):
        if value.low > value.high or (isinstance(value, IntRange) and value.step < 1):
            raise ConfigError(f"{source}: key '{where}': range low {value.low} > high {value.high}"
                              if value.low > value.high else f"{source}: key '{where}': range step {value.step} < 1")
        return Dim(name, rng=value)
    if isinstance(value, dict) and set(value) >= {"low", "high"}:
        try:
            rng = IntRange(**value) if all(isinstance(value[k], int) for k in ("low", "high")) else FloatRange(**value)
        except ValidationError as e:
            raise ConfigError(f"{source}: key '{where}': bad range {value!r}: {e.errors()[0]['msg']}") from None
        if rng.low > rng.high:
            raise ConfigError(f"{source}: key '{where}': range low {rng.low} > high {rng.high}")
        return Dim(name, rng=rng)
    if list_is_value:  # value itself is a list (e.g. dilations): a list of lists means choices
        choices = value if (isinstance(value, list) and value and isinstance(value[0], list)) else [value]
    else:
        choices = _as_list(value)
    if not choices:
        raise ConfigError(f"{source}: key '{where}': an empty list of choices")
    return Dim(name, choices=tuple(_freeze(c) for c in choices))


def _module_dim(name: str, kind: str, value: Any, source: str, where: str | None = None) -> ModuleDim:
    """``name`` prefixes the Optuna parameter names; ``where`` is the YAML key path errors name (default ``name``)."""
    where = where or name
    if isinstance(value, str):
        value = {value: None}
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{source}: key '{where}': expected a {kind} name or a mapping of {kind} names to "
                          f"arguments, got {value!r}")
    options = []
    for mname, margs in value.items():
        path = f"{where}.{mname}"
        if kind == "decoder" and mname == "chain":
            if margs:
                raise ConfigError(f"{source}: key '{path}': the chain decoder is configured under decoder.chain")
            options.append(ModuleChoice("chain", ()))
            continue
        try:
            entry = registry.get(mname, kind)
        except UnknownBlockError as e:
            raise ConfigError(f"{source}: key '{path}': {e}") from None
        margs = dict(margs or {})
        down = schedule = taps = None
        if kind == "block":
            down = margs.pop("down", None)
            schedule = margs.pop("schedule", None)
        if kind == "decoder" and "taps" in margs:
            taps = margs.pop("taps")
            if not isinstance(taps, list) or not taps or not all(isinstance(t, int) for t in taps):
                raise ConfigError(f"{source}: key '{path}.taps': expected a list of stage indices, got {taps!r}")
            taps = tuple(taps)
        dims = []
        for aname, aval in sorted(margs.items()):
            try:
                arg = entry.arg(aname)
            except BlockArgumentError as e:
                raise ConfigError(f"{source}: key '{path}.{aname}': {e}") from None
            d = _dim(f"{name}.{mname}.{aname}", aval, source, list_is_value=arg.type == "ints",
                     where=f"{path}.{aname}")
            if d.choices is not None:
                for c in d.choices:
                    try:
                        arg.validate(mname, c)
                    except BlockArgumentError as e:
                        raise ConfigError(f"{source}: key '{path}.{aname}': {e}") from None
            dims.append((aname, d))
        down_mod = _down_module(f"{path}.down", down, source) if down is not None else None
        sched = _schedule(f"{path}.schedule", entry, schedule, source) if schedule is not None else ()
        options.append(ModuleChoice(mname, tuple(dims), down_mod, sched, taps))
    return ModuleDim(name, tuple(options))


def _down_module(path: str, value: Any, source: str) -> Module:
    if isinstance(value, str):
        value = {value: {}}
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(f"{source}: key '{path}': expected one block name or {{name: {{args}}}}, got {value!r}")
    (name, args), = value.items()
    try:
        entry = registry.get(name, "block")
        return Module(name, _args(entry.resolve(args or {})))
    except (UnknownBlockError, BlockArgumentError) as e:
        raise ConfigError(f"{source}: key '{path}': {e}") from None


def _schedule(path: str, entry: registry.Entry, value: Any, source: str) -> tuple:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{source}: key '{path}': expected a mapping of option names to "
                          "{argument: [one value per block]}")
    out = []
    for opt, per in value.items():
        if not isinstance(per, dict) or not per:
            raise ConfigError(f"{source}: key '{path}.{opt}': expected {{argument: [one value per block]}}")
        lens = {len(v) if isinstance(v, list) else -1 for v in per.values()}
        if len(lens) != 1 or -1 in lens or 0 in lens:
            raise ConfigError(f"{source}: key '{path}.{opt}': every argument needs a non-empty list with one "
                              "value per block, all of the same length")
        n = lens.pop()
        blocks = []
        for j in range(n):
            over = {}
            for aname, vals in per.items():
                try:
                    over[aname] = entry.arg(aname).validate(entry.name, vals[j])
                except BlockArgumentError as e:
                    raise ConfigError(f"{source}: key '{path}.{opt}.{aname}[{j}]': {e}") from None
            blocks.append(_args(over))
        out.append((str(opt), tuple(blocks)))
    return tuple(out)


def _width_dim(name: str, value: Any, main: list[StageDims], source: str, where: str | None = None) -> Dim:
    """A width dim; ``{stage: k, times: n}`` ties it to main stage k's width (k among ``main``, the stages drawn
    before it)."""
    if not isinstance(value, WidthOf):
        return _dim(name, value, source, where=where)
    where = where or name
    if not 0 <= value.stage < len(main):
        raise ConfigError(f"{source}: key '{where}.stage': {value.stage} is not allowed; allowed: a main stage drawn "
                          f"before this one, 0..{len(main) - 1}" if main else
                          f"{source}: key '{where}': the first stage's width cannot refer to another stage")
    if value.times < 1:
        raise ConfigError(f"{source}: key '{where}.times': {value.times} is not allowed; allowed: an integer >= 1")
    return Dim(name, choices=tuple(w * value.times for w in main[value.stage].width.values()),
               ref=(value.stage, value.times))


def _compile_stage(s: StageSpace, p: str, source: str, main: list[StageDims]) -> StageDims:
    block = _module_dim(f"{p}.block", "block", s.block, source)
    width = _width_dim(f"{p}.width", s.width, main, source)
    depth = _dim(f"{p}.depth", s.depth, source)
    for v in width.values():
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{source}: key '{p}.width': {v!r} is not a positive integer")
    for v in depth.values():
        if not isinstance(v, int) or v < 0:
            raise ConfigError(f"{source}: key '{p}.depth': {v!r} is not a non-negative integer")
    if s.first_leads and not s.concat_first:
        raise ConfigError(f"{source}: key '{p}.first_leads': true needs concat_first: true (it orders the "
                          "concatenation of the first and last block outputs)")
    return StageDims(block, width, depth, s.stride, s.inject, s.concat_first, s.first_leads, s.relu_in)


def _compile_branches(spec: SpaceFile, main: list[StageDims], source: str) -> list[BranchDims]:
    n_stages = len(main)
    out = []
    for b, br in enumerate(spec.branches):
        p = f"branches.{b}"
        if not -1 <= br.source < n_stages - 1:
            raise ConfigError(f"{source}: key '{p}.source': {br.source} is not allowed; allowed: -1 (the input "
                              f"image) or a main stage index 0..{n_stages - 2}")
        if not br.stages:
            raise ConfigError(f"{source}: key '{p}.stages': a branch needs at least one stage")
        last = br.source + len(br.stages)
        if last > n_stages - 1:
            raise ConfigError(f"{source}: key '{p}.stages': {len(br.stages)} stages from main stage {br.source} would "
                              f"run beside main stages {br.source + 1}..{last}, but the main path ends at stage "
                              f"{n_stages - 1}; allowed: at most {n_stages - 1 - br.source}")
        stages = tuple(_compile_stage(st, f"{p}.stages.{j}", source, main) for j, st in enumerate(br.stages))
        links, prev = [], None
        for i, ln in enumerate(br.links):
            lp = f"{p}.links.{i}"
            if not br.source < ln.at <= last:
                raise ConfigError(f"{source}: key '{lp}.at': {ln.at} is not allowed; allowed: one of "
                                  f"{list(range(br.source + 1, last + 1))} (the main stages this branch runs beside)")
            if prev is not None and ln.at <= prev:
                raise ConfigError(f"{source}: key '{lp}.at': {ln.at}: a branch's links must be at increasing main "
                                  f"stages (the one before is at {prev})")
            prev = ln.at
            links.append(LinkDims(ln.at, _module_dim(f"{lp}.link", "link", ln.link, source),
                                  Dim(lp, choices=(True, False)) if ln.optional else None))
        out.append(BranchDims(br.source, stages, tuple(links),
                              Dim(p, choices=(True, False)) if br.optional else None))
    return out


def _compile(spec: SpaceFile, source: str) -> SearchSpace:
    stages: list[StageDims] = []
    for i, s in enumerate(spec.stages):
        stages.append(_compile_stage(s, f"stages.{i}", source, stages))
    branches = _compile_branches(spec, stages, source)
    d = spec.decoder
    for i, b in enumerate(d.branch_taps):
        if not 0 <= b < len(branches):
            raise ConfigError(f"{source}: key 'decoder.branch_taps.{i}': {b} is not a branch; allowed: "
                              + (f"0..{len(branches) - 1}" if branches else "none (the space has no branches)"))
        if branches[b].optional is not None:
            raise ConfigError(f"{source}: key 'decoder.branch_taps.{i}': branch {b} is optional; the chain can tap "
                              "only a branch that is always there (an optional one may guide a fusion instead)")
    if len(set(d.branch_taps)) != len(d.branch_taps):
        raise ConfigError(f"{source}: key 'decoder.branch_taps': {d.branch_taps} taps a branch twice")
    taps_dim = _dim("decoder.taps", d.taps or [0], source, list_is_value=True)
    for t in taps_dim.values():
        if not all(isinstance(x, int) and 0 <= x < len(stages) for x in t) or list(t) != sorted(set(t)):
            raise ConfigError(f"{source}: key 'decoder.taps': {list(t)} must be increasing stage indices in "
                              f"0..{len(stages) - 1}")
    kinds = d.kind if isinstance(d.kind, dict) else {d.kind: None}
    for kname, kargs in kinds.items():
        own = (kargs or {}).get("taps") if isinstance(kargs, dict) else None
        if own is None and not d.taps:
            raise ConfigError(f"{source}: key 'decoder.taps': decoder {kname!r} has no taps of its own; give "
                              "decoder.taps or decoder.kind.<name>.taps")
        if isinstance(own, list) and (not all(isinstance(x, int) and 0 <= x < len(stages) for x in own)
                                      or own != sorted(set(own))):
            raise ConfigError(f"{source}: key 'decoder.kind.{kname}.taps': {own} must be increasing stage indices "
                              f"in 0..{len(stages) - 1}")
    chain_cfg = kinds.get("chain")
    dec_dim = _module_dim("decoder.kind", "decoder", {k: (None if k == "chain" else v) for k, v in kinds.items()},
                          source)
    context = cw = fusions = widths = None
    guides: tuple[int, ...] = ()
    if "chain" in kinds:
        try:
            chain = ChainSpace.model_validate(chain_cfg or {})
        except ValidationError as e:
            raise _validation_error(source, e, chain_cfg or {}, "decoder.kind.chain", root=ChainSpace) from None
        context = _module_dim("decoder.context", "context", chain.context, source, "decoder.kind.chain.context")
        cw = _width_dim("decoder.context_width", chain.context_width, stages, source,
                        where="decoder.kind.chain.context_width")
        if (chain.fusion is None) == (chain.fusions is None):
            raise ConfigError(f"{source}: key 'decoder.kind.chain': give either 'fusion' (one choice for every "
                              "level) or 'fusions' (one choice per tap), not both or neither")
        if chain.fusion is not None:
            fusions = [_module_dim("decoder.fusion", "fusion", chain.fusion, source, "decoder.kind.chain.fusion")]
        else:
            fusions = [_module_dim(f"decoder.fusions.{i}", "fusion", f, source, f"decoder.kind.chain.fusions.{i}")
                       for i, f in enumerate(chain.fusions)]
        for v in cw.values():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{source}: key 'decoder.kind.chain.context_width': {v!r} is not a positive integer")
        widths = _dim("decoder.widths", chain.widths, source, list_is_value=True, where="decoder.kind.chain.widths")
        for w in widths.values():
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in w):
                raise ConfigError(f"{source}: key 'decoder.kind.chain.widths': {list(w)} must hold positive integers")
        ntaps = {len(t) + len(d.branch_taps) for t in taps_dim.values()}
        for w in widths.values():
            if len(w) not in ntaps or len(ntaps) != 1:
                raise ConfigError(f"{source}: key 'decoder.kind.chain.widths': {list(w)} needs one width per tap "
                                  f"({sorted(ntaps)}" + (", branch taps included)" if d.branch_taps else ")"))
        if chain.fusions is not None and len(chain.fusions) not in ntaps:
            raise ConfigError(f"{source}: key 'decoder.kind.chain.fusions': {len(chain.fusions)} entries for "
                              f"{sorted(ntaps)} taps")
        guides = _chain_guides(chain, fusions, branches, ntaps, source)
    elif d.branch_taps:
        raise ConfigError(f"{source}: key 'decoder.branch_taps': only the chain decoder taps branches")
    h = spec.heads
    main = _module_dim("heads.main", "head", h.main, source) if h.main is not None else None
    for kname in kinds:
        emits = kname != "chain" and bool(getattr(registry.get(kname, "decoder").cls, "emits_logits", False))
        if emits and main is not None:
            raise ConfigError(f"{source}: key 'heads.main': decoder {kname!r} already emits logits; set heads.main "
                              "to null")
        if not emits and main is None:
            raise ConfigError(f"{source}: key 'heads.main': decoder {kname!r} emits features; a main head "
                              "(e.g. seg_head) is required")
    extra = []
    for j, e in enumerate(h.extra):
        if not 0 <= e.index < len(stages) and e.source == "stage":
            raise ConfigError(f"{source}: key 'heads.extra.{j}.index': {e.index} is not a stage index "
                              f"0..{len(stages) - 1}")
        if e.source == "branch":
            if not 0 <= e.branch < len(branches):
                raise ConfigError(f"{source}: key 'heads.extra.{j}.branch': {e.branch} is not a branch; allowed: "
                                  + (f"0..{len(branches) - 1}" if branches else "none (the space has no branches)"))
            if not 0 <= e.index < len(branches[e.branch].stages):
                raise ConfigError(f"{source}: key 'heads.extra.{j}.index': {e.index} is not a stage of branch "
                                  f"{e.branch}; allowed: 0..{len(branches[e.branch].stages) - 1}")
        elif e.branch != -1:
            raise ConfigError(f"{source}: key 'heads.extra.{j}.branch': only for source: branch")
        if e.source == "level":
            levels = len(d.branch_taps) + min(len(t) for t in taps_dim.values())  # branch taps are levels too
            if set(kinds) != {"chain"}:
                raise ConfigError(f"{source}: key 'heads.extra.{j}.source': level taps exist only when every decoder "
                                  f"choice is the chain, not {sorted(kinds)}")
            if not 0 <= e.index < levels:
                raise ConfigError(f"{source}: key 'heads.extra.{j}.index': {e.index} is not a chain level "
                                  f"0..{levels - 1}")
        if e.role != "aux" and any(o.role == e.role for o in h.extra[:j]):
            raise ConfigError(f"{source}: key 'heads.extra.{j}.role': a genome has at most one {e.role} head")
        extra.append(ExtraDims(e.role, e.source, e.index, _module_dim(f"heads.extra.{j}.head", "head", e.head, source),
                               Dim(f"heads.extra.{j}", choices=(True, False)) if e.optional else None, e.branch))
    space = SearchSpace(spec.name, spec.description, stages, taps_dim, dec_dim, context, cw, fusions, widths, main,
                        extra, _dim("heads.align_corners", h.align_corners, source), source, branches,
                        tuple(d.branch_taps), guides)
    _check_buildable(space, source)
    return space


def _chain_guides(chain: ChainSpace, fusions: list[ModuleDim], branches: list[BranchDims], ntaps: set[int],
                  source: str) -> tuple[int, ...]:
    """Per chain level, the branch guiding its three-input fusion (-1: none); checks that every level can draw a
    fusion it can build: a three-input one only where a guide is given, a two-input one where the guide branch
    is optional."""
    n = max(ntaps)
    where = "decoder.kind.chain.guides"
    if chain.guides is not None and len(chain.guides) != n:
        raise ConfigError(f"{source}: key '{where}': {len(chain.guides)} entries for {n} taps (one per tap, branch "
                          "taps first; null where no fusion takes a guide)")
    guides = tuple(-1 if g is None else g for g in (chain.guides or [None] * n))
    if any(g >= 0 for g in guides) and chain.fusions is None:
        raise ConfigError(f"{source}: key '{where}': guides need one fusion choice per tap ('fusions', not 'fusion')")
    for level in range(n):
        fd = fusions[level] if len(fusions) > 1 else fusions[0]
        three = [o.name for o in fd.options if takes_guide(o.name)]
        g = guides[level]
        if g >= 0 and not 0 <= g < len(branches):
            raise ConfigError(f"{source}: key '{where}.{level}': {g} is not a branch; allowed: "
                              + (f"0..{len(branches) - 1} or null" if branches else "null (the space has no branches)"))
        if g < 0 and three:
            raise ConfigError(f"{source}: key 'decoder.kind.chain.fusions.{level}': {three} take a third input (a "
                              f"boundary guide); give the guiding branch in {where}.{level}")
        if g >= 0 and branches[g].optional is not None and len(three) == len(fd.options):
            raise ConfigError(f"{source}: key 'decoder.kind.chain.fusions.{level}': branch {g} (the guide) is "
                              "optional, so this level needs a two-input fusion choice too (e.g. add) for when it is "
                              "left out")
    return guides


def _check_buildable(space: SearchSpace, source: str) -> None:
    """Construct every block option at every width (and input width it can see) once.

    Modules are constructed on the ``meta`` device: the constructors' argument checks run, but no
    weights are allocated, so checking a space costs milliseconds.
    """
    import torch

    with torch.device("meta"):
        _check_blocks(space, source)


def _check_blocks(space: SearchSpace, source: str) -> None:
    main_widths = _check_stages(space.stages, {3}, "stages", source)
    for b, bd in enumerate(space.branches):
        start = {3} if bd.source == -1 else main_widths[bd.source]
        widths = _check_stages(list(bd.stages), start, f"branches.{b}.stages", source)
        for i, ld in enumerate(bd.links):
            j = ld.at - bd.source - 1
            strides = [sd.stride for sd in bd.stages[:j + 1]]
            main_s = math.prod(sd.stride for sd in space.stages[:ld.at + 1])
            branch_s = math.prod(strides) * math.prod(sd.stride for sd in space.stages[:bd.source + 1])  # source -1: []
            scale = main_s // branch_s if main_s % branch_s == 0 else 0
            for opt in ld.link.options:
                for mc, bc, args in itertools.product(sorted(main_widths[ld.at])[:4], sorted(widths[j])[:4],
                                                      opt.combos()[:16]):
                    try:
                        registry.get(opt.name, "link").create(mc, bc, scale, **args)
                    except (BlockArgumentError, GenomeError, ValueError) as e:
                        raise ConfigError(f"{source}: key 'branches.{b}.links.{i}.link.{opt.name}' cannot join main "
                                          f"stage {ld.at} ({mc} channels, stride {main_s}) and branch stage {j} "
                                          f"({bc} channels, stride {branch_s}): {e}") from None


def _check_stages(stages: list[StageDims], in_widths: set[int], prefix: str, source: str) -> list[set[int]]:
    """Build-check every block option of a run of stages; the set of output widths of each stage."""
    outs = []
    for i, sd in enumerate(stages):
        out_widths = sorted(set(sd.width.values()))
        for opt in sd.block.options:
            sched = [dict(b) for _, blocks in opt.schedule for b in blocks] or [{}]
            repeats = max(sd.depth.values()) > 1 or any(len(b) > 1 for _, b in opt.schedule)
            cases = itertools.product(sorted(in_widths)[:4], out_widths, opt.combos()[:32], sched[:16])
            for c_in, w, args, over in cases:
                try:
                    _build_stage_blocks(opt, c_in, w, sd.stride, {**args, **over}, repeats)
                except (BlockArgumentError, GenomeError, ValueError) as e:
                    raise ConfigError(f"{source}: key '{prefix}.{i}.block.{opt.name}' cannot be built from {c_in} "
                                      f"to {w} channels with {args or 'defaults'}: {e}") from None
        in_widths = {w * (2 if sd.concat_first else 1) + (3 if sd.inject else 0) for w in out_widths}
        outs.append(in_widths)
    return outs


def _build_stage_blocks(opt: ModuleChoice, c_in: int, width: int, stride: int, args: dict, repeats: bool) -> None:
    entry = registry.get(opt.name, "block")
    if opt.down is not None:
        registry.get(opt.down.name, "block").create(c_in, width, stride, **opt.down.kwargs)
        entry.create(width, width, 1, **args)
        return
    entry.create(c_in, width, stride, **args)
    if repeats:
        entry.create(width, width, 1, **args)


def space_files(root: str | Path | None = None) -> list[Path]:
    """The shipped ``search_spaces/*.yaml`` files."""
    base = Path(root) if root else Path(__file__).resolve().parent.parent / "search_spaces"
    return sorted(base.glob("*.yaml"))
