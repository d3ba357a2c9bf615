"""Statistics of proxy fidelity: how well a cheap score ranks architectures the way an expensive one does.

Pure functions over numbers (numpy only; no torch, no study, no I/O).  The questions they answer:

* Do two scores rank the same genomes alike?  :func:`kendall_tau_b`, :func:`spearman`, with a paired
  bootstrap interval (:func:`bootstrap_ci`), and both at once over per-seed results (:func:`rank_agreement`).
* How noisy is a rung on its own?  :func:`seed_to_seed_tau` (do two seeds agree on the ranking?) and
  :func:`noise_ratio` (seed noise against the spread between genomes).
* Which rung of a fidelity ladder is good enough?  :func:`recommend_rung`.
* How many seeds does an ablation need?  :func:`min_detectable_difference`, :func:`seeds_needed`.

Conventions
-----------
* A *score* is a finite number per item (genome); pairs ``(x, y)`` are aligned item by item.
* Bad input -- lengths that differ, fewer than 3 items, a NaN or infinite value, a bad option -- raises
  :class:`nasseg.errors.ConfigError` with a one-line message naming the value and what is valid.
* A rank correlation of a constant input (every item tied) is undefined and returned as NaN, as
  ``scipy.stats.kendalltau`` / ``spearmanr`` do; it is not an error, since a coarse rung can tie everything.
* Ties: tau-b (Kendall 1945) corrects for ties in either input, and Spearman's rho is Pearson's correlation
  of average ranks; both agree with scipy (``kendalltau(variant="b")``, ``spearmanr``) to rounding.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TypeVar

import numpy as np

from nasseg.errors import ConfigError

__all__ = [
    "MIN_ITEMS",
    "RankAgreement",
    "NoiseRatio",
    "kendall_tau_b",
    "spearman",
    "bootstrap_ci",
    "rank_agreement",
    "seed_to_seed_tau",
    "noise_ratio",
    "recommend_rung",
    "min_detectable_difference",
    "seeds_needed",
]

#: Fewest items (genomes) a rank statistic is computed over: with two, tau is +-1 whatever the scores.
MIN_ITEMS = 3

Stat = Callable[[np.ndarray, np.ndarray], float]
R = TypeVar("R", bound=Hashable)


# ---------------------------------------------------------------------------------------------- checks
def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _scores(values: object, name: str) -> np.ndarray:
    """``values`` as a 1-d float64 array of finite numbers, or ConfigError."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} = {values!r} is not allowed; valid: a sequence of finite numbers") from None
    if a.ndim != 1:
        raise ConfigError(f"{name} has shape {a.shape}; valid: a flat sequence of finite numbers")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ConfigError(f"{name}[{bad[0]}] = {a[bad[0]]}; valid: finite numbers (no NaN or infinity)")
    return a


def _paired(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    a, b = _scores(x, "x"), _scores(y, "y")
    if a.size != b.size:
        raise ConfigError(f"x has {a.size} items and y has {b.size}; valid: the same items, paired, in both")
    if a.size < MIN_ITEMS:
        raise ConfigError(f"{a.size} items given; valid: at least {MIN_ITEMS} (paired scores of distinct genomes)")
    return a, b


def _check_unit_interval(name: str, value: object) -> float:
    if not _is_number(value) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} = {value!r} is not allowed; valid: a number strictly between 0 and 1")
    return float(value)


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} = {value!r} is not allowed; valid: an integer >= {low}")
    return int(value)


def _check_sd(name: str, value: object) -> float:
    if not _is_number(value) or not math.isfinite(float(value)) or float(value) < 0:
        raise ConfigError(f"{name} = {value!r} is not allowed; valid: a finite number >= 0")
    return float(value)


# ------------------------------------------------------------------------------------ rank correlations
def _tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b without checks: sum sign(dx) sign(dy) / sqrt(sum sign(dx)^2 * sum sign(dy)^2).

    Over all ordered pairs, so every unordered pair counts twice in numerator and denominator alike:
    (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)), n0 = n (n - 1) / 2.  O(n^2) memory.
    """
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    denominator = math.sqrt(float(np.sum(sx * sx)) * float(np.sum(sy * sy)))
    return float(np.sum(sx * sy)) / denominator if denominator > 0 else math.nan


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span (scipy's ``rankdata(method="average")``)."""
    order = np.argsort(a, kind="mergesort")
    _, first, counts = np.unique(a[order], return_index=True, return_counts=True)
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho without checks: Pearson's correlation of average ranks."""
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(np.dot(rx, rx)) * float(np.dot(ry, ry)))
    return float(np.dot(rx, ry)) / denominator if denominator > 0 else math.nan


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between paired scores ``x`` and ``y`` (ties in either corrected for).

    Equals ``scipy.stats.kendalltau(x, y, variant="b").statistic``.  NaN when ``x`` or ``y`` is constant
    (no untied pair: the ranking is undefined).  ConfigError for unequal lengths, fewer than 3 items or a
    non-finite value.
    """
    return _tau_b(*_paired(x, y))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation between paired scores (average ranks for ties).

    Equals ``scipy.stats.spearmanr(x, y).statistic``.  NaN when ``x`` or ``y`` is constant.  ConfigError
    for unequal lengths, fewer than 3 items or a non-finite value.
    """
    return _spearman(*_paired(x, y))


# ------------------------------------------------------------------------------------------- bootstrap
def bootstrap_ci(
    x: Sequence[float],
    y: Sequence[float],
    stat: Stat,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): ``stat(x, y)`` and its paired-bootstrap percentile interval.

    Paired bootstrap over items: each of ``n_boot`` resamples draws n item indices with replacement
    (``numpy.random.default_rng(seed)``, so the interval is a pure function of the inputs and ``seed``)
    and evaluates ``stat`` on the resampled pairs, which stay paired.  ``low`` and ``high`` are the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles (numpy's linear interpolation) of the
    resampled statistics.  ``stat`` gets two float64 arrays and returns a float, e.g. :func:`kendall_tau_b`.

    Degenerate resamples are skipped: one where ``x`` or ``y`` came out constant (a rank statistic is
    undefined there) or where ``stat`` returned NaN.  Skipping them conditions the interval on
    non-degenerate resamples; they are rare unless the scores are mostly tied.  When the estimate itself is
    NaN (constant input) or every resample is degenerate, ``low`` and ``high`` are NaN.

    Items are exchangeable here: the interval is for genomes drawn like these ones, not for this fixed set.
    """
    a, b = _paired(x, y)
    n_boot = _check_int("n_boot", n_boot, 1)
    level = _check_unit_interval("level", level)
    seed = _check_int("seed", seed, 0)
    estimate = float(stat(a, b))
    if math.isnan(estimate):
        return estimate, math.nan, math.nan
    draws = np.random.default_rng(seed).integers(0, a.size, size=(n_boot, a.size))
    values = []
    for idx in draws:
        xs, ys = a[idx], b[idx]
        if xs.min() == xs.max() or ys.min() == ys.max():
            continue
        v = float(stat(xs, ys))
        if not math.isnan(v):
            values.append(v)
    if not values:
        return estimate, math.nan, math.nan
    low, high = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return estimate, float(low), float(high)


# ---------------------------------------------------------------------------------- per-seed results
def _seed_means(scores: Mapping[R, object], name: str) -> dict[R, float]:
    """Mean over seeds per genome; a bare number counts as one seed."""
    means: dict[R, float] = {}
    for key, value in scores.items():
        per_seed = _scores([value] if _is_number(value) else value, f"{name}[{key!r}]")
        if per_seed.size == 0:
            raise ConfigError(f"{name}[{key!r}] holds no score; valid: one finite score per seed (at least one)")
        means[key] = float(per_seed.mean())
    return means


def _same_keys(a: Mapping, b: Mapping, names: tuple[str, str]) -> None:
    only_a, only_b = [k for k in a if k not in b], [k for k in b if k not in a]
    if only_a or only_b:
        raise ConfigError(
            f"{names[0]} and {names[1]} must score the same genomes; only in {names[0]}: {only_a[:3]!r}"
            f"{' ...' if len(only_a) > 3 else ''}, only in {names[1]}: {only_b[:3]!r}"
            f"{' ...' if len(only_b) > 3 else ''}"
        )


@dataclass(frozen=True)
class RankAgreement:
    """Rank agreement of a cheap score with a reference score over ``n`` genomes.

    ``tau`` (Kendall tau-b) and ``spearman`` with their paired-bootstrap percentile intervals
    ``[tau_low, tau_high]`` and ``[spearman_low, spearman_high]`` at confidence ``level``
    (see :func:`bootstrap_ci`); NaN where undefined (a constant score).
    """

    tau: float
    tau_low: float
    tau_high: float
    spearman: float
    spearman_low: float
    spearman_high: float
    n: int
    level: float


def rank_agreement(
    low_rung: Mapping[R, Sequence[float] | float],
    top_rung: Mapping[R, Sequence[float] | float],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> RankAgreement:
    """How well ``low_rung`` ranks genomes the way ``top_rung`` does.

    Both map a genome (any hashable key: a ``genome_id``, a Genome) to its scores, one per seed (a bare
    number is one seed); seeds are averaged per genome first, so seed noise shrinks before ranking and the
    bootstrap resamples genomes, not seeds.  The two must hold the same genomes (ConfigError naming a few
    that are not); their seed counts may differ.  Both intervals come from the same resamples (same
    ``seed``).  A zero-cost proxy is a ``low_rung`` with one seed per genome.
    """
    _same_keys(low_rung, top_rung, ("low_rung", "top_rung"))
    low, top = _seed_means(low_rung, "low_rung"), _seed_means(top_rung, "top_rung")
    keys = list(low)
    x, y = [low[k] for k in keys], [top[k] for k in keys]
    tau = bootstrap_ci(x, y, _tau_b, n_boot=n_boot, level=level, seed=seed)
    rho = bootstrap_ci(x, y, _spearman, n_boot=n_boot, level=level, seed=seed)
    return RankAgreement(*tau, *rho, n=len(keys), level=float(level))


def _seed_matrix(scores: Mapping[R, Sequence[float]], name: str = "scores") -> np.ndarray:
    """(genomes, seeds) array; every genome must have the same number (>= 2) of seeds, >= 3 genomes."""
    if len(scores) < MIN_ITEMS:
        raise ConfigError(f"{name} holds {len(scores)} genomes; valid: at least {MIN_ITEMS}")
    rows = [_scores([v] if _is_number(v) else v, f"{name}[{k!r}]") for k, v in scores.items()]
    keys = list(scores)
    for key, row in zip(keys, rows):
        if row.size != rows[0].size:
            raise ConfigError(
                f"{name}[{key!r}] has {row.size} seeds and {name}[{keys[0]!r}] has {rows[0].size}; "
                "valid: the same seeds, in the same order, for every genome"
            )
    if rows[0].size < 2:
        raise ConfigError(f"{name} holds {rows[0].size} seed per genome; valid: at least 2 seeds per genome")
    return np.stack(rows)


def seed_to_seed_tau(scores: Mapping[R, Sequence[float]]) -> float:
    """Mean Kendall tau-b between the rankings of every pair of seeds.

    ``scores`` maps each genome to its scores by seed, in the same seed order for every genome (same
    number of seeds, >= 2; >= 3 genomes).  For S seeds the S (S - 1) / 2 pairwise taus are averaged; a pair
    whose tau is NaN (one seed scored every genome alike) is left out, and the result is NaN if all are.
    This is the ceiling a rung's agreement with anything else can reach: a rung that disagrees with
    itself across seeds cannot rank well against the top rung.
    """
    m = _seed_matrix(scores)
    taus = [_tau_b(m[:, s], m[:, t]) for s, t in combinations(range(m.shape[1]), 2)]
    finite = [t for t in taus if not math.isnan(t)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass(frozen=True)
class NoiseRatio:
    """Seed noise against the spread between genomes (see :func:`noise_ratio`)."""

    within_sd: float
    between_sd: float
    ratio: float
    n_genomes: int
    n_seeds: int


def noise_ratio(scores: Mapping[R, Sequence[float]]) -> NoiseRatio:
    """Mean within-genome seed standard deviation, between-genome sd of the seed means, and their ratio.

    ``within_sd`` is the mean over genomes of each genome's sample sd across seeds (ddof 1);
    ``between_sd`` the sample sd (ddof 1) of the per-genome means; ``ratio = within_sd / between_sd``
    (infinite when the means are all equal and the seeds are not; NaN when both are 0).  A ratio near or
    above 1 means seed noise is as large as the differences a search should rank.  Same input rules as
    :func:`seed_to_seed_tau`.
    """
    m = _seed_matrix(scores)
    within = float(np.mean(np.std(m, axis=1, ddof=1)))
    between = float(np.std(m.mean(axis=1), ddof=1))
    if between > 0:
        ratio = within / between
    else:
        ratio = math.inf if within > 0 else math.nan
    return NoiseRatio(within, between, ratio, n_genomes=m.shape[0], n_seeds=m.shape[1])


def recommend_rung(results: Mapping[R, RankAgreement], target_tau: float) -> R | None:
    """The cheapest rung whose tau interval lies at or above ``target_tau``, or None if none does.

    ``results`` maps each rung (its name, or its budget) to its :class:`RankAgreement` with the top rung,
    **in order of increasing cost** (as a fidelity ladder lists its rungs; dicts keep insertion order).
    A rung qualifies when ``tau_low >= target_tau``: the whole interval, not only the estimate, clears the
    target.  A rung with a NaN interval never qualifies.
    """
    if not _is_number(target_tau) or not -1.0 <= float(target_tau) <= 1.0:
        raise ConfigError(f"target_tau = {target_tau!r} is not allowed; valid: a number in [-1, 1]")
    for rung, agreement in results.items():
        if not isinstance(agreement, RankAgreement):
            raise ConfigError(
                f"results[{rung!r}] = {agreement!r} is not allowed; valid: a RankAgreement (from rank_agreement)"
            )
        if agreement.tau_low >= target_tau:  # False for NaN
            return rung
    return None


# ------------------------------------------------------------------------------------- ablation power
def _z(alpha: float, power: float) -> float:
    normal = statistics.NormalDist()
    return normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)


def min_detectable_difference(
    sd_a: float, n_a: int, sd_b: float, n_b: int, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest true difference of means a two-sided two-sample (Welch) comparison detects.

    Closed form, normal approximation::

        MDD = (z_{1 - alpha/2} + z_{power}) * sqrt(sd_a^2 / n_a + sd_b^2 / n_b)

    with z_q the standard normal quantile (``statistics.NormalDist().inv_cdf``): with ``n_a`` and ``n_b``
    seeds per arm and per-seed standard deviations ``sd_a`` and ``sd_b``, a true difference of MDD is
    found significant at level ``alpha`` with probability ``power``.  It treats the standard deviations as
    known.  With the few seeds an ablation runs the t distribution of Welch's test is wider, so this
    *understates* the MDD: with 3 seeds per arm and equal sds (Welch df 4) the t-based value
    ``(t_{0.975,4} + t_{0.8,4}) * se`` is 1.33x this one at alpha 0.05 / power 0.8, with 5 seeds (df 8)
    1.14x, with 10 (df 18) 1.06x.  Read it as a lower bound for small n.

    ``n_a``, ``n_b``: integers >= 2 (a standard deviation needs two seeds); ``sd_a``, ``sd_b``: finite, >= 0;
    ``alpha``, ``power``: strictly between 0 and 1.  The result is in the unit of the sds (e.g. mIoU).
    """
    sd_a, sd_b = _check_sd("sd_a", sd_a), _check_sd("sd_b", sd_b)
    n_a, n_b = _check_int("n_a", n_a, 2), _check_int("n_b", n_b, 2)
    z = _z(_check_unit_interval("alpha", alpha), _check_unit_interval("power", power))
    return z * math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)


def seeds_needed(
    effect: float, sd: float, *, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 1000
) -> int | None:
    """Seeds per arm (equal in both arms, same ``sd``) for :func:`min_detectable_difference` <= ``|effect|``.

    The smallest integer n >= 2 with ``(z_{1-alpha/2} + z_{power}) * sd * sqrt(2 / n) <= |effect|``, i.e.
    ``max(2, ceil(2 * (z_{1-alpha/2} + z_{power})^2 * sd^2 / effect^2))``, checked against
    :func:`min_detectable_difference` itself so that rounding cannot make the two disagree.  None when
    ``effect`` is 0 (no number of seeds detects no difference) or when more than ``max_seeds`` are
    needed.  Same normal approximation, so the same caveat: for small n it is optimistic by a seed or two.
    """
    if not _is_number(effect) or not math.isfinite(float(effect)):
        raise ConfigError(f"effect = {effect!r} is not allowed; valid: a finite number (a difference of means)")
    sd = _check_sd("sd", sd)
    max_seeds = _check_int("max_seeds", max_seeds, 2)
    z = _z(_check_unit_interval("alpha", alpha), _check_unit_interval("power", power))
    effect = abs(float(effect))
    if effect == 0:
        return None

    def detects(n: int) -> bool:
        return min_detectable_difference(sd, n, sd, n, alpha=alpha, power=power) <= effect

    n = max(2, math.ceil(2 * (z * sd / effect) ** 2))
    while n > 2 and detects(n - 1):
        n -= 1
    while not detects(n):
        n += 1
        if n > max_seeds:
            return None
    return n if n <= max_seeds else None
