"""Helpers shared by the benchmarks: machine description, medians, side-by-side timing, small tables.

The benchmarks run on shared, noisy machines.  Two rules follow: every figure is a median over repeats,
and every ratio is taken between arms run side by side in the same process, in alternating order (so a
drift in the machine's load favours neither arm).  Each arm is timed on two clocks: wall time
(``time.perf_counter``) and the calling thread's CPU time (``time.thread_time``).  With torch set to
one intra-op thread the work runs on the calling thread, so its CPU time is the work itself and barely
moves when other processes compete for the cores; wall time is what a user waits for.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (falls back to platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """1/5/15-minute load averages, or '?' where the platform has none."""
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def machine(device: torch.device | str = "cpu") -> str:
    """One line: date, device, cores, CPU model, torch version, load average."""
    dev = torch.device(device)
    gpu = f"{torch.cuda.get_device_name(dev)}, " if dev.type == "cuda" else ""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{date}; {gpu}nproc {os.cpu_count()}, {cpu_model()}; torch {torch.__version__}, python "
            f"{platform.python_version()}; load average {load_average()}")


class CpuShare:
    """How busy the machine's cores were between ``start()`` and ``report()`` (Linux /proc/stat), and how much of
    that was this process and the children it waited for: the rest is other load (Ray workers count there)."""

    def __init__(self) -> None:
        self._stat: list[int] | None = None
        self._own = 0.0

    @staticmethod
    def _read() -> list[int] | None:
        try:
            fields = Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:9]
            return [int(v) for v in fields]  # user nice system idle iowait irq softirq steal
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _own_seconds() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> CpuShare:
        self._stat, self._own = self._read(), self._own_seconds()
        return self

    def report(self) -> str:
        end = self._read()
        if self._stat is None or end is None:
            return "machine load: /proc/stat not readable"
        d = [b - a for a, b in zip(self._stat, end)]
        total = sum(d)
        if total <= 0:
            return "machine load: no time passed"
        hz = os.sysconf("SC_CLK_TCK")
        busy = (total - d[3] - d[4]) / total
        own = min(busy, (self._own_seconds() - self._own) * hz / total)
        return (f"machine load during the run: cores busy {100 * busy:.0f} % of the time, {100 * own:.0f} % by this "
                f"benchmark, {100 * (busy - own):.0f} % by other processes; hypervisor steal "
                f"{100 * d[7] / total:.0f} %")


def device_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu (default) or cuda")


def check_device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False on this machine")
    return dev


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: Iterable[float]) -> float:
    v = [x for x in values if x == x]  # drop NaN
    return statistics.median(v) if v else float("nan")


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (sample std / mean) of ``values``; NaN for fewer than two."""
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else float("nan")


class Timer:
    """Wall and thread-CPU seconds of a ``with`` block (CUDA synchronised at both ends)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Timer:
        sync(self.device)
        self._w, self._c = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.wall = time.perf_counter() - self._w
        self.cpu = time.thread_time() - self._c


def interleaved(arms: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[object]]:
    """Run every arm ``repeats`` times; the order is reversed on every other repeat."""
    names = list(arms)
    out: dict[str, list[object]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(arms[n]())
    return out


def table(header: Sequence[str], rows: Iterable[Sequence[object]], fmt: str | None = None) -> str:
    """A plain fixed-width text table; floats are formatted with ``fmt`` (default: 3-4 significant digits)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            if v != v:
                return "-"
            if fmt is not None:
                return format(v, fmt)
            a = abs(v)
            return format(v, ".0f" if a >= 100 else ".1f" if a >= 10 else ".2f" if a >= 1 else ".3g")
        return str(v)

    body = [[cell(v) for v in row] + [""] * (len(header) - len(row)) for row in rows]  # short rows: padded
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) if body else len(str(h)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def parse_hw(text: str, what: str = "--size") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        sys.exit(f"{what} = {text!r}: expected HxW, e.g. 128x256")
    return h, w
