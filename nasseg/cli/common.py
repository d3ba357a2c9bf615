"""What every verb of the command line shares: the argument parser that errors in one line, consoles, and
the parsing of values people type (resolutions, genomes or preset names)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from nasseg.errors import NassegError


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) \
                or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse's own errors: one line, exit 2 (as argparse does)
        self.exit(2, f"nasseg: error: {message} (see '{self.prog} --help')\n")


def console(**kwargs: Any) -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, **kwargs)


def wide_console() -> Any:
    """stdout; 180 columns when it is not a terminal (a log or a pipe), so tables are not cut to 80."""
    from rich.console import Console

    con = Console(highlight=False)
    return con if con.is_terminal else Console(highlight=False, width=180)


def check_output_path(value: str, option: str, *, folder: bool = False) -> Path:
    """An output path a verb will write: its parent folder must exist and be writable (a missing or read-only
    parent is one clear line, exit 2, before any work starts); a folder option may name an existing folder,
    a file option may not."""
    from nasseg.errors import ConfigError

    path = Path(value).expanduser()
    parent = path.resolve().parent
    what = "a folder in an existing, writable folder" if folder else "a file in an existing, writable folder"
    if not parent.exists():
        raise ConfigError(f"{option} {value}: the folder {parent} does not exist; valid: {what}")
    if not parent.is_dir():
        raise ConfigError(f"{option} {value}: {parent} is not a folder; valid: {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {value}: the folder {parent} is not writable; valid: {what}")
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise ConfigError(f"{option} {value}: is {kind}; valid: {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {value}: is not writable; valid: {what}")
    return path


def parse_resolution(text: str, option: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h < 1 or w < 1:
            raise ValueError
    except ValueError:
        raise NassegError(f"{option} = {text!r} is not a resolution; expected HxW with positive integers, "
                          "e.g. 512x1024") from None
    return h, w


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
