"""How many timed runs a latency needs: the median's distribution-free interval and a stopping rule.

Pure functions over numbers (no torch, no I/O).

* :func:`median_interval` -- the order-statistic confidence interval of the median (Conover, *Practical
  Nonparametric Statistics*, 3rd ed., section 3.2): for ``n`` samples, ``[x_(k), x_(n-k+1)]`` (1-indexed order
  statistics) with ``k`` the largest rank such that ``P(B <= k - 1) <= (1 - level) / 2`` for ``B ~ Binomial(n,
  1/2)``.  It covers the population median with probability at least ``level`` for independent samples of any
  continuous distribution -- no normality assumption, which latency samples (skewed, with a long tail of
  interrupted passes) never meet.  n = 30 at 95 % gives ranks 10 and 21, as the published tables.
* :class:`StoppingRule` -- keep timing until that interval is narrow: after at least ``min_runs`` samples,
  stop when its relative half-width ``max(median - low, high - median) / median`` is at most ``tolerance``,
  or at ``max_runs`` samples, or after ``max_seconds`` of timing (whichever comes first; ``min_runs`` is always
  taken).  ``torch.utils.benchmark.Timer.adaptive_autorange`` stops on a similar criterion (its IQR relative
  to the median); this one stops on the interval that the record then stores.

Caveats, stated where the record is read: consecutive passes are not independent on a machine whose load
drifts, so the interval is a within-record interval (it says how well this record pins its own median, not how
much another hour on the same machine would move it); and looking at the interval again and again while
sampling makes its coverage a little lower than ``level`` (optional stopping), which the rule limits by
looking only at ``min_runs`` and then every ``CHECK_EVERY`` samples.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nasseg.errors import ConfigError

__all__ = ["CHECK_EVERY", "StoppingRule", "median_interval", "median_ranks", "relative_half_width",
           "latency_stats"]

#: after ``min_runs``, the rule looks at the interval only every this many samples (fewer looks, less
#: optional-stopping bias)
CHECK_EVERY = 10


def median_ranks(n: int, level: float = 0.95) -> tuple[int, int] | None:
    """The 1-indexed ranks ``(k, n - k + 1)`` of the order-statistic interval of the median at ``level``, or
    None when ``n`` samples are too few for any interval at that level (n < 6 at 95 %)."""
    if not 0 < level < 1:
        raise ConfigError(f"level = {level!r} is not allowed; valid: a number in (0, 1), e.g. 0.95")
    alpha_half = (1 - level) / 2
    total, cdf, k = 2 ** n, 0, 0
    for j in range(n // 2 + 1):  # P(B <= j), exactly in integers
        cdf += math.comb(n, j)
        if cdf / total > alpha_half:
            break
        k = j + 1
    return (k, n - k + 1) if k >= 1 else None


def median_interval(samples: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """``(low, high)``: the distribution-free interval of the median of ``samples`` at ``level`` (see the module
    docstring), or None when there are too few samples for one."""
    ranks = median_ranks(len(samples), level)
    if ranks is None:
        return None
    ordered = sorted(samples)
    return float(ordered[ranks[0] - 1]), float(ordered[ranks[1] - 1])


def relative_half_width(samples: Sequence[float], level: float = 0.95) -> float:
    """``max(median - low, high - median) / median`` of the median's interval; inf when there is none."""
    ci = median_interval(samples, level)
    med = statistics.median(samples) if samples else 0.0
    if ci is None or med <= 0:
        return math.inf
    return max(med - ci[0], ci[1] - med) / med


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(samples: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """The statistics a latency record stores, from its samples (milliseconds): ``median_ms``, ``p90_ms``
    (linear interpolation, as numpy's default), ``mean_ms``, ``std_ms`` (sample std), ``cv`` = std / mean,
    ``min_ms``, ``median_ci_ms`` (the median's interval at ``level``, None when too few) and ``ci_level``."""
    if len(samples) < 2:
        raise ConfigError(f"a latency record needs at least 2 samples, got {len(samples)}")
    ordered = sorted(samples)
    mean = statistics.fmean(samples)
    std = statistics.stdev(samples)
    ci = median_interval(samples, level)
    return {"median_ms": statistics.median(samples), "p90_ms": _percentile(ordered, 0.9), "mean_ms": mean,
            "std_ms": std, "cv": std / mean if mean > 0 else 0.0, "min_ms": ordered[0],
            "median_ci_ms": None if ci is None else ci, "ci_level": level}


@dataclass(frozen=True)
class StoppingRule:
    """When to stop timing: the median's ``level`` interval within ``tolerance`` (relative half-width), bounded
    by ``max_runs`` samples and ``max_seconds`` of timing.  The minimum count is the measurement's own ``runs``
    (at least :data:`nasseg.cost.MIN_RUNS`), always taken, even past ``max_seconds``."""

    tolerance: float = 0.02
    max_runs: int = 200
    max_seconds: float = 10.0
    level: float = 0.95

    def check(self, min_runs: int) -> StoppingRule:
        """ConfigError naming the bad value; ``self`` otherwise."""
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) \
                or not 0 < self.tolerance < 1:
            raise ConfigError(f"--latency-tolerance = {self.tolerance!r} is not allowed; valid: a fraction in (0, 1), "
                              "e.g. 0.02 for a median known within +-2 %, or 0 for a fixed count of --latency-runs")
        if isinstance(self.max_runs, bool) or not isinstance(self.max_runs, int) or self.max_runs < min_runs:
            raise ConfigError(f"--latency-max-runs = {self.max_runs!r} is not allowed; valid: an integer >= the "
                              f"minimum count of timed runs ({min_runs})")
        if isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, (int, float)) \
                or not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise ConfigError(f"--latency-max-seconds = {self.max_seconds!r} is not allowed; valid: a positive number "
                              "of seconds")
        median_ranks(min_runs, self.level)  # checks the level
        return self

    def verdict(self, samples: Sequence[float], elapsed_s: float, min_runs: int) -> str | None:
        """Why to stop now -- ``"converged"``, ``"max_runs"`` or ``"max_seconds"`` -- or None to go on.  The
        interval is looked at with ``min_runs`` samples and then every :data:`CHECK_EVERY` samples."""
        n = len(samples)
        if n < min_runs:
            return None
        if (n - min_runs) % CHECK_EVERY == 0 and relative_half_width(samples, self.level) <= self.tolerance:
            return "converged"
        if n >= self.max_runs:
            return "max_runs"
        if elapsed_s >= self.max_seconds:
            return "max_seconds"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "median_ci", "tolerance": self.tolerance, "max_runs": self.max_runs,
                "max_seconds": self.max_seconds, "level": self.level, "check_every": CHECK_EVERY}
