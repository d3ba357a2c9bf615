"""The median's order-statistic interval and the stopping rule: exact ranks, coverage, every way to stop."""

import math
import random
import statistics

import pytest

from nasseg.errors import ConfigError
from nasseg.latency import StoppingRule, latency_stats, median_interval, median_ranks, relative_half_width
from nasseg.latency.stats import CHECK_EVERY


@pytest.mark.parametrize("n,ranks", [(6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (30, (10, 21)), (100, (40, 61))])
def test_ranks_match_the_published_tables(n, ranks):
    assert median_ranks(n) == ranks  # Conover, table A3; 30 -> x(10), x(21)


def test_too_few_samples_have_no_interval_and_a_bad_level_is_refused():
    assert median_ranks(5) is None and median_interval([1.0] * 5) is None
    assert relative_half_width([1.0] * 5) == math.inf
    with pytest.raises(ConfigError, match="level = 1.5"):
        median_ranks(30, 1.5)


def test_interval_covers_the_true_median_at_least_at_its_level():
    rng = random.Random(0)
    true_median = math.exp(0.0)  # log-normal(0, 0.5): skewed, like latencies
    hits = 0
    trials = 2000
    for _ in range(trials):
        lo, hi = median_interval([rng.lognormvariate(0.0, 0.5) for _ in range(30)])
        hits += lo <= true_median <= hi
    assert hits / trials >= 0.94  # exact coverage at n = 30 is 1 - 2 P(B <= 9) = 0.957


def test_latency_stats_are_what_records_store():
    samples = [float(v) for v in range(1, 31)]
    st = latency_stats(samples)
    assert st["median_ms"] == 15.5 and st["median_ci_ms"] == (10.0, 21.0) and st["ci_level"] == 0.95
    assert st["min_ms"] == 1.0 and st["p90_ms"] == pytest.approx(27.1)
    assert st["cv"] == pytest.approx(statistics.stdev(samples) / statistics.fmean(samples))


def test_rule_stops_when_the_interval_is_narrow():
    rule = StoppingRule(tolerance=0.02, max_runs=100, max_seconds=60)
    steady = [10.0 + 0.01 * (i % 3) for i in range(30)]
    assert rule.verdict(steady[:29], 0.0, 30) is None  # the minimum is always taken
    assert rule.verdict(steady, 0.0, 30) == "converged"


def test_rule_looks_only_every_few_samples_then_stops_at_its_bounds():
    rule = StoppingRule(tolerance=0.02, max_runs=60, max_seconds=5.0)
    rng = random.Random(1)
    noisy = [rng.uniform(5, 15) for _ in range(60)]
    assert rule.verdict(noisy[:30], 0.0, 30) is None
    assert rule.verdict(noisy[:41], 0.0, 30) is None
    assert rule.verdict(noisy[:41], 5.0, 30) == "max_seconds"
    assert rule.verdict(noisy, 0.0, 30) == "max_runs"
    # a narrow interval between two looks does not stop it before the next look
    steady = noisy[:30] + [10.0] * 200
    stops = [n for n in range(30, 200) if rule.verdict(steady[:n], 0.0, 30) == "converged"]
    assert stops and all((n - 30) % CHECK_EVERY == 0 for n in stops)


@pytest.mark.parametrize("kw,needle", [({"tolerance": 0.0}, "--latency-tolerance"), ({"tolerance": 1.5}, "tolerance"),
                                       ({"max_runs": 10}, "--latency-max-runs = 10"),
                                       ({"max_seconds": 0}, "--latency-max-seconds = 0")])
def test_bad_rules_are_config_errors(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        StoppingRule(**kw).check(30)
