"""The ``nasseg`` command line.

Every user error (a :class:`~nasseg.errors.NassegError`) is printed as one line on stderr with exit
code 2, never as a traceback.  Commands:

* ``nasseg presets``: the paper presets with params and GMACs at their paper resolution;
* ``nasseg show GENOME_OR_PRESET``: a genome's stages, params and MACs;
* ``nasseg search ...``: a latency-constrained search (see ``nasseg search --help``);
* ``nasseg status --storage URL --study NAME``: a study's trials, without running anything;
* ``nasseg export --storage URL --study NAME --out DIR``: the Pareto front as deployable bundles;
* ``nasseg ablate STUDY.yaml``: replay a paper's ablation table under one recipe.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from nasseg.errors import NassegError

# name -> (add its arguments, run it, one-line help); search/ablation/export add theirs on import
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2 (as argparse does)
        self.exit(2, f"nasseg: error: {message} (see '{self.prog} --help')\n")


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def resolve_genome(text: str):
    """A preset name, a compact genome string (``v1|...``), a JSON genome, or a path to a JSON/text file."""
    from nasseg import genome as G
    from nasseg import presets

    t = text.strip()
    if (t.startswith("v") and "|" in t) or t.startswith("{"):
        return G.load(t), None
    if os.path.sep in t or t.endswith((".json", ".txt")):
        try:
            with open(t, encoding="utf-8") as f:
                return G.load(f.read()), None
        except OSError as e:
            raise NassegError(f"{t}: cannot read genome file ({e.strerror})") from None
        except UnicodeDecodeError as e:
            raise NassegError(f"{t}: not a genome file (not UTF-8 text: {e.reason} at byte {e.start})") from None
    p = presets.get(t)
    return p.genome, p


# ------------------------------------------------------------------------------------------ presets
def _add_presets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-macs", action="store_true", help="skip the MAC count (faster)")


def _run_presets(a: argparse.Namespace) -> int:
    from nasseg import presets
    from nasseg.build import build
    from nasseg.cost import count_macs, count_params

    t = Table(title="nasseg presets (inference params; MACs = conv+linear multiply-adds at the paper resolution)")
    for col in ("preset", "network", "resolution", "params", "official params", "GMACs", "official GMACs"):
        t.add_column(col, justify="right" if col not in ("preset", "network") else "left")
    con = _console()
    for name in presets.names():
        pr = presets.get(name)
        net = build(pr.genome, pr.num_classes)
        h, w = pr.resolution
        with con.status(f"counting {name} at {h}x{w} (fvcore runs one forward pass)"):
            macs = None if a.no_macs else count_macs(net, (1, 3, h, w)).macs
        t.add_row(name, pr.title, f"{h}x{w}", f"{count_params(net) / 1e6:.3f} M",
                  f"{pr.official_params / 1e6:.3f} M" if pr.official_params else "-",
                  "-" if macs is None else f"{macs / 1e9:.2f}",
                  f"{pr.official_macs / 1e9:.2f}" if pr.official_macs else "-")
    con.print(t)
    return 0


# --------------------------------------------------------------------------------------------- show
def _add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("genome", help="a preset name, a genome string (v1|...), genome JSON or a file holding one")
    p.add_argument("--resolution", default=None, help="HxW for the MAC count (default: the preset's, or 512x1024)")
    p.add_argument("--num-classes", type=int, default=None, help="classes (default: the preset's, or 19)")


def parse_resolution(text: str, option: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h < 1 or w < 1:
            raise ValueError
    except ValueError:
        raise NassegError(f"{option} = {text!r} is not a resolution; expected HxW with positive integers, "
                          "e.g. 512x1024") from None
    return h, w


def _run_show(a: argparse.Namespace) -> int:
    from nasseg import genome as G
    from nasseg.build import build
    from nasseg.cost import count_macs, count_params

    g, preset = resolve_genome(a.genome)
    n = a.num_classes if a.num_classes is not None else (preset.num_classes if preset else 19)
    if n < 1:
        raise NassegError(f"--num-classes = {n} must be a positive integer")
    h, w = parse_resolution(a.resolution, "--resolution") if a.resolution else (
        preset.resolution if preset else (512, 1024))
    net = build(g, n)
    con = _console()
    if preset:
        con.print(f"[bold]{preset.title}[/bold] — {preset.paper}")
    con.print(f"genome  {G.to_string(g)}")
    con.print(f"id      {G.genome_id(g)}")
    t = Table(title="stages")
    for col in ("#", "block", "depth", "width", "stride", "out ch", "output stride", "args"):
        t.add_column(col)
    for i, (s, st) in enumerate(zip(g.stages, net.stages)):
        args = ", ".join(f"{k}={v}" for k, v in s.args)
        if s.block_args:
            args += f" (+ per-block {', '.join(k for k, _ in s.block_args[0])})"
        t.add_row(str(i), (f"{s.down.name} > " if s.down else "") + s.block, str(s.depth), str(s.width),
                  str(s.stride), str(st.out_channels), f"1/{net.stage_strides[i]}", args)
    con.print(t)
    d = g.decoder
    con.print(f"decoder {d.kind} over stages {list(d.taps)}"
              + (f", context {d.context.name} ({d.context_width})" if d.context.name != "none" else "")
              + (", fusions " + " / ".join(f"{f.name}:{f.width}" for f in d.fusions) if d.fusions else ""))
    mc = count_macs(net, (1, 3, h, w))
    con.print(f"params  {count_params(net):,} (inference; {sum(p.numel() for p in net.parameters()):,} with "
              "training-only heads)")
    con.print(f"MACs    {mc.macs / 1e9:.3f} G at {h}x{w} (conv+linear; fvcore-all {mc.macs_all / 1e9:.3f} G)")
    if mc.skipped_ops:
        con.print("skipped by fvcore: " + ", ".join(f"{k} x{v}" for k, v in mc.skipped_ops.items()))
    if preset and preset.official_params:
        con.print(f"official {preset.official_params:,} params"
                  + (f", {preset.official_macs / 1e9:.3f} GMACs" if preset.official_macs else "")
                  + f"  ({preset.source})")
    return 0


COMMANDS["presets"] = (_add_presets, _run_presets, "paper presets with params and GMACs")
COMMANDS["show"] = (_add_show, _run_show, "a genome's stages, params and MACs")


def _load_plugins() -> None:
    """Sub-commands that live beside their stage of the pipeline (search, ablate, export)."""
    import importlib

    for mod in ("nasseg.search", "nasseg.ablation", "nasseg.export"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def main(argv: Sequence[str] | None = None) -> int:
    _load_plugins()
    parser = _Parser(prog="nasseg", description="Neural-architecture search and ablation replay for real-time "
                     "semantic segmentation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (add, _run, help_) in COMMANDS.items():
        add(sub.add_parser(name, help=help_, description=help_))
    a = parser.parse_args(argv)
    try:
        return COMMANDS[a.command][1](a) or 0
    except NassegError as e:
        print(f"nasseg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # run through the importable module, so that sub-commands registered on import land in its COMMANDS
    from nasseg.cli import main as _main

    sys.exit(_main())
