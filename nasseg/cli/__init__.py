"""The ``nasseg`` command line: the top of the import order.  Each verb is one module of this package that
parses its arguments, calls the library and renders what the library returns; nothing below imports it.

Every user error (a :class:`~nasseg.errors.NassegError`) is printed as one line on stderr with exit
code 2, never as a traceback.  Verbs (each module has ``HELP``, ``add_arguments(parser)`` and ``run(args)``):

* ``nasseg presets``: the paper presets with params and GMACs at their paper resolution;
* ``nasseg show GENOME_OR_PRESET``: a genome's stages, params and MACs;
* ``nasseg search ...``: a latency-constrained search (see ``nasseg search --help``);
* ``nasseg status --storage URL --study NAME``: a study's trials, without running anything;
* ``nasseg export --storage URL --study NAME --out DIR``: the Pareto front as deployable bundles;
* ``nasseg ablate STUDY.yaml``: replay a paper's ablation table under one recipe;
* ``nasseg fidelity --space SPACE --storage URL --study NAME --out DIR``: how well short proxies and zero-cost
  proxies rank genomes like longer training (a rung to recommend).
* ``nasseg weights import PRESET CHECKPOINT --out FILE``: an official checkpoint as the preset's state dict.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from nasseg.cli.common import Parser, parse_resolution, resolve_genome
from nasseg.errors import NassegError

__all__ = ["COMMANDS", "VERBS", "main", "parse_resolution", "resolve_genome"]

#: the verbs, in the order ``nasseg --help`` lists them: module ``nasseg.cli.<name>`` each
VERBS = ("search", "status", "export", "ablate", "fidelity", "presets", "show", "weights")

#: name -> (add its arguments, run it, one-line help)
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}
for _name in VERBS:
    _mod = importlib.import_module(f"nasseg.cli.{_name}")
    COMMANDS[_name] = (_mod.add_arguments, _mod.run, _mod.HELP)


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="nasseg", description="Neural-architecture search and ablation replay for real-time "
                    "semantic segmentation.")
    from nasseg import __version__

    parser.add_argument("--version", action="version", version=f"nasseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
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
