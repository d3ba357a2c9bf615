"""One flat registry: name -> module class + its argument table.

Every searchable module (backbone block, fusion, context, head, decoder) registers once with the
table of keyword arguments a user may set in YAML or a genome.  The table is the single source that
validates YAML, fills defaults into genomes and drives the contract tests::

    from nasseg import registry
    registry.names("block")                  # ['dblock', 'dwr', 'eesp', ...]
    entry = registry.get("dblock")
    entry.resolve({"dilations": [1, 4]})     # all arguments, defaults written out, validated
    block = entry.create(128, 128, 1, dilations=(1, 4))

Constructor conventions per kind (what ``create`` passes positionally):

========  =====================================================  ==============================
kind      constructor                                           forward
========  =====================================================  ==============================
block     (in_channels, out_channels, stride=1, *, args)         x -> y (stride applied)
fusion    (low_channels, high_channels, out_channels, *, args)   (low, high[, guide]) -> y at low's size
context   (in_channels, out_channels, *, args)                   x -> y, same spatial size
head      (in_channels, num_classes, *, args)                    x -> logits at x's size (x output_scale)
decoder   (in_channels: tuple (taps, shallow->deep), num_classes, *, args)   list of taps -> y
link      (main_channels, branch_channels, scale, *, args)      (main, branch) -> (main, branch)
========  =====================================================  ==============================

Every created module exposes ``out_channels``; blocks also ``stride``.  A ``link`` is an exchange between
the main path and a parallel branch of a multi-branch genome after one main stage (DDRNet's bilateral
fusion, PIDNet's Pag and derivative additions); ``scale`` is the main path's stride over the branch's
there (1, 2, 4 ...); it returns both tensors with their widths and sizes unchanged and exposes
``main_channels`` and ``branch_channels`` (``out_channels`` = ``branch_channels``).
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nasseg.errors import BlockArgumentError, UnknownBlockError

KINDS: tuple[str, ...] = ("block", "fusion", "context", "head", "decoder", "link")
ARG_TYPES: tuple[str, ...] = ("int", "float", "bool", "str", "ints")
_BUILTIN_PACKAGES = ("nasseg.blocks", "nasseg.context", "nasseg.fusion", "nasseg.heads", "nasseg.links")


@dataclass(frozen=True)
class Arg:
    """One keyword argument of a registered module.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``, ``ints`` (a tuple of ints, e.g. dilations).
    ``low``/``high`` bound numbers (each element for ``ints``); ``low_open`` makes the lower bound
    exclusive, e.g. a partial ratio in (0, 1].  ``choices`` restricts ``str`` (and ``int``) values.
    """

    name: str
    type: str
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    min_len: int = 1
    max_len: int | None = None

    def __post_init__(self) -> None:
        if self.type not in ARG_TYPES:
            raise ValueError(f"Arg {self.name!r}: type {self.type!r} is not one of {ARG_TYPES}")

    def allowed(self) -> str:
        """Human description of the valid values, used in every error message."""
        if self.choices is not None:
            return "allowed: " + ", ".join(repr(c) for c in self.choices)
        what = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                "ints": "a list of integers"}[self.type]
        rng = ""
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            rng = f" in {'(' if self.low_open else '['}{lo}, {hi}]"
            if self.type == "ints":
                rng = f" with every element{rng}"
        length = ""
        if self.type == "ints":
            length = f" of length {self.min_len}" + (f"..{self.max_len}" if self.max_len != self.min_len else "")
            if self.max_len is None:
                length = f" of length >= {self.min_len}"
        return f"allowed: {what}{length}{rng}"

    def validate(self, block: str, value: Any) -> Any:
        """Return the canonical form of ``value`` (tuple for ``ints``, float for ``float``) or raise."""
        def bad() -> BlockArgumentError:
            return BlockArgumentError(block, self.name, value, self.allowed())

        if self.type == "bool":
            if not isinstance(value, bool):
                raise bad()
            return value
        if self.type == "str":
            if not isinstance(value, str):
                raise bad()
            out: Any = value
        elif self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad()
            out = int(value)
            self._check_range(out, bad)
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad()
            out = float(value)
            self._check_range(out, bad)
        else:  # ints
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise bad()
            items = tuple(value)
            if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
                raise bad()
            if len(items) < self.min_len or (self.max_len is not None and len(items) > self.max_len):
                raise bad()
            for v in items:
                self._check_range(v, bad)
            out = tuple(int(v) for v in items)
        if self.choices is not None and out not in self.choices:
            raise bad()
        return out

    def _check_range(self, v: float, bad: Callable[[], BlockArgumentError]) -> None:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            raise bad()
        if self.high is not None and v > self.high:
            raise bad()


@dataclass(frozen=True)
class Entry:
    """A registered module: its name, kind, class and argument table."""

    name: str
    kind: str
    cls: type
    args: tuple[Arg, ...] = field(default=())
    examples: tuple[dict[str, Any], ...] = field(default=())

    @property
    def doc(self) -> str:
        """First line of the class docstring."""
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""

    def arg(self, name: str) -> Arg:
        for a in self.args:
            if a.name == name:
                return a
        raise BlockArgumentError(self.name, name, "<unknown argument>", self._known_args(name))

    def defaults(self) -> dict[str, Any]:
        return {a.name: a.default for a in self.args}

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All arguments with defaults written out, each validated; unknown names raise."""
        given = dict(given or {})
        known = {a.name for a in self.args}
        for key in given:
            if key not in known:
                raise BlockArgumentError(self.name, key, given[key], self._known_args(key))
        return {a.name: a.validate(self.name, given.get(a.name, a.default)) for a in self.args}

    def create(self, *positional: Any, **given: Any) -> Any:
        """Validate ``given`` against the table and instantiate the class."""
        return self.cls(*positional, **self.resolve(given))

    def _known_args(self, wrong: str) -> str:
        names = [a.name for a in self.args]
        close = difflib.get_close_matches(wrong, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return f"{hint}'{self.name}' takes: {', '.join(names) if names else '(no arguments)'}"


_REGISTRY: dict[str, Entry] = {}
_loaded = False


def register(
    name: str, *, kind: str, args: Iterable[Arg] = (), examples: Iterable[Mapping[str, Any]] = ()
) -> Callable[[type], type]:
    """Class decorator: register ``cls`` under ``name``.  A duplicate name raises.

    ``examples`` are constructor keyword sets (positional parameters by name, e.g.
    ``{"in_channels": 64, "out_channels": 64, "stride": 1, "dilations": (1, 4)}``) that the contract
    tests build and run; without them the tests use a default configuration for the kind.
    """
    if kind not in KINDS:
        raise ValueError(f"register({name!r}): kind {kind!r} is not one of {KINDS}")
    table = tuple(args)
    for a in table:  # a default must itself be valid, or every genome written with it breaks
        a.validate(name, a.default)

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"registry name {name!r} is already taken by {_REGISTRY[name].cls.__qualname__}")
        _REGISTRY[name] = Entry(name, kind, cls, table, tuple(dict(e) for e in examples))
        cls.registry_name = name
        return cls

    return deco


def unregister(name: str) -> None:
    """Remove a name (tests that register throw-away modules use this)."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for pkg in _BUILTIN_PACKAGES:
            importlib.import_module(pkg)


def get(name: str, kind: str | None = None) -> Entry:
    """The entry for ``name``; an unknown name (or one of another kind) raises with close matches."""
    _load_builtin()
    entry = _REGISTRY.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        pool = names(kind)
        close = difflib.get_close_matches(str(name), pool, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        what = kind or "module"
        extra = f" (it is a {entry.kind}, not a {kind})" if entry is not None else ""
        raise UnknownBlockError(f"unknown {what} {name!r}{extra}; {hint}known {what}s: {', '.join(pool)}")
    return entry


def names(kind: str | None = None) -> list[str]:
    """Sorted registered names, optionally of one kind."""
    _load_builtin()
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def entries(kind: str | None = None) -> list[Entry]:
    return [_REGISTRY[n] for n in names(kind)]
