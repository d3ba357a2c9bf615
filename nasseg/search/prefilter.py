"""``--prefilter NAME:FRACTION``: train only the candidates a zero-cost proxy ranks in its top FRACTION.

A zero-cost proxy (:mod:`nasseg.zero_cost`) scores a candidate in well under a second, before its latency is
measured and long before a proxy would train.  A search may use one to skip the candidates it ranks low, but only
when that proxy's rank agreement with longer training has been *measured* on the same space, dataset and recipe
(``nasseg fidelity``) and its 95 % interval lies above zero; otherwise the search refuses to start.

The rule: every candidate is scored; the first :data:`WARMUP` scored candidates are all kept; after that a
candidate is kept when its score (times the sign of the proxy's tau) is at least the (1 - FRACTION) quantile of
the scores of every candidate scored so far in the study, itself included.  A candidate below it is told PRUNED
with status ``prefiltered`` and the reason; it is neither measured nor trained and does not take a slot of
``--trials`` (like a duplicate), and its score stays in the study (``zero_cost`` attribute) for the quantile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nasseg.errors import ConfigError

WARMUP = 5


def proxy_names() -> tuple[str, ...]:
    from nasseg.zero_cost import PROXIES

    return tuple(PROXIES)


def parse_spec(text: str) -> tuple[str, float]:
    """``NAME:FRACTION`` (e.g. ``synflow:0.5``) -> (name, fraction); errors name the value and what is valid."""
    name, sep, frac = str(text).partition(":")
    try:
        fraction = float(frac) if sep else float("nan")
    except ValueError:
        fraction = float("nan")
    spec = (name.strip(), fraction)
    check_spec(spec, shown=text)
    return spec


def check_spec(spec: tuple[str, float], shown: str | None = None) -> None:
    name, fraction = spec
    shown = shown if shown is not None else f"{name}:{fraction:g}"
    names = proxy_names()
    if name not in names:
        raise ConfigError(f"--prefilter {shown}: unknown zero-cost proxy {name!r}; valid: {', '.join(names)}")
    if not (0.0 < fraction < 1.0):
        raise ConfigError(f"--prefilter {shown}: the fraction kept must be a number between 0 and 1 (exclusive), "
                          "e.g. synflow:0.5")


def require_measured(spec: tuple[str, float], record: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """The proxy's stored rank agreement, or a ConfigError pointing to ``nasseg fidelity``."""
    from nasseg.fidelity import proxy_tau

    name, fraction = spec
    entry = proxy_tau(record, name)
    if entry is None:
        raise ConfigError(f"--prefilter {name}:{fraction:g}: no rank agreement of {name!r} with longer training is "
                          f"stored for this space, dataset and recipe in {where}; measure it first with nasseg "
                          "fidelity --space ... --storage ... (same dataset and recipe), or drop --prefilter")
    low, high = entry.get("tau_low"), entry.get("tau_high")
    if low is None or high is None or (low <= 0.0 <= high):
        raise ConfigError(f"--prefilter {name}:{fraction:g}: {name!r} ranks no better than chance on this space "
                          f"(tau {entry['tau']:.2f} [{low}, {high}]); valid: a proxy whose interval excludes 0")
    return entry


class Prefilter:
    """Keeps the candidates whose signed score reaches the running (1 - fraction) quantile."""

    def __init__(self, name: str, fraction: float, entry: Mapping[str, Any], *, num_classes: int,
                 resolution: tuple[int, int], seed: int, scores: Iterable[float] = ()):
        self.name, self.fraction, self.entry = name, float(fraction), dict(entry)
        self.sign = 1.0 if float(entry["tau"]) >= 0 else -1.0
        self.num_classes, self.resolution, self.seed = num_classes, tuple(resolution), seed
        self.scores = [float(s) for s in scores]

    def score(self, genome: Any) -> float:
        from nasseg.zero_cost import score

        return float(score(self.name, genome, num_classes=self.num_classes, resolution=self.resolution,
                           seed=self.seed))

    def threshold(self) -> float | None:
        """The signed score a candidate must reach now (None while warming up)."""
        import numpy as np

        if len(self.scores) < WARMUP:
            return None
        return float(np.quantile([self.sign * s for s in self.scores], 1.0 - self.fraction))

    def judge(self, value: float) -> tuple[bool, float | None]:
        """Record ``value`` and say whether its candidate is kept (and the threshold it met or missed)."""
        self.scores.append(float(value))
        t = self.threshold()
        return (t is None or self.sign * value >= t), t
