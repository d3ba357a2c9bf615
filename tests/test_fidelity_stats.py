import dataclasses
import math

import numpy as np
import pytest
import scipy.stats as stats  # a dev dependency: the agreement with scipy is the test

from nasseg import fidelity_stats as fs
from nasseg.errors import ConfigError

# Known rankings: perfect, reversed, partial, ties in x, ties in y, ties in both, ties shared by a pair.
RANKINGS = [
    ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
    ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
    ([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]),
    ([1, 1, 2, 3, 3, 4], [1, 2, 3, 4, 5, 6]),
    ([0.1, 0.4, 0.2, 0.9, 0.5], [3, 3, 1, 2, 2]),
    ([1, 1, 2, 2, 3, 3, 4], [2, 2, 1, 3, 3, 5, 4]),
    ([0.3, 0.3, 0.3, 0.7, 0.1, 0.9, 0.2, 0.5], [10, 10, 9, 12, 11, 12, 8, 7]),
]


@pytest.mark.parametrize("x, y", RANKINGS)
def test_tau_b_and_spearman_agree_with_scipy(x, y):
    assert fs.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)
    assert fs.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_random_rankings_with_ties_agree_with_scipy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.integers(0, 6, 25), rng.integers(0, 8, 25) + 0.5 * rng.integers(0, 2, 25)
        assert fs.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
        assert fs.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_constant_input_gives_nan():
    assert math.isnan(fs.kendall_tau_b([2, 2, 2], [1, 2, 3]))
    assert math.isnan(fs.spearman([1, 2, 3], [5, 5, 5]))
    est, low, high = fs.bootstrap_ci([1, 1, 1, 1], [1, 2, 3, 4], fs.kendall_tau_b)
    assert math.isnan(est) and math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("x, y, match", [
    ([1, 2, 3], [1, 2], r"x has 3 items and y has 2"),
    ([1, 2], [1, 2], r"2 items given; valid: at least 3"),
    ([1, float("nan"), 3], [1, 2, 3], r"x\[1\] = nan; valid: finite numbers"),
    ([1, 2, 3], [1, 2, float("inf")], r"y\[2\] = inf"),
    ([[1, 2], [3, 4]], [1, 2], r"x has shape \(2, 2\)"),
    (["a", "b", "c"], [1, 2, 3], r"x = .* is not allowed"),
])
def test_bad_input_raises_config_error(x, y, match):
    for f in (fs.kendall_tau_b, fs.spearman):
        with pytest.raises(ConfigError, match=match) as e:
            f(x, y)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=match):
        fs.bootstrap_ci(x, y, fs.kendall_tau_b)


# ----------------------------------------------------------------------------------------- bootstrap
def _noisy_pair(n=30, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + noise * rng.normal(size=n)


def test_bootstrap_interval_contains_estimate_and_is_deterministic_per_seed():
    x, y = _noisy_pair()
    est, low, high = fs.bootstrap_ci(x, y, fs.kendall_tau_b, n_boot=500, seed=3)
    assert est == pytest.approx(stats.kendalltau(x, y).statistic)
    assert -1 <= low <= est <= high <= 1 and low < high
    assert fs.bootstrap_ci(x, y, fs.kendall_tau_b, n_boot=500, seed=3) == (est, low, high)
    other = fs.bootstrap_ci(x, y, fs.kendall_tau_b, n_boot=500, seed=4)
    assert other[0] == est and other[1:] != (low, high)
    # a wider level gives a wider interval from the same resamples
    _, low99, high99 = fs.bootstrap_ci(x, y, fs.kendall_tau_b, n_boot=500, seed=3, level=0.99)
    assert low99 <= low and high <= high99


def test_bootstrap_percentiles_of_the_resampled_statistic():
    x, y = _noisy_pair(n=12)
    draws = np.random.default_rng(7).integers(0, 12, size=(300, 12))
    values = [stats.spearmanr(x[i], y[i]).statistic for i in draws
              if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0]
    _, low, high = fs.bootstrap_ci(x, y, fs.spearman, n_boot=300, level=0.9, seed=7)
    assert (low, high) == pytest.approx(tuple(np.percentile(values, [5, 95])), abs=1e-12)


def test_bootstrap_skips_degenerate_resamples():
    # three distinct items: many resamples draw one item three times (constant) and are skipped
    est, low, high = fs.bootstrap_ci([1, 2, 3], [1, 2, 3], fs.kendall_tau_b, n_boot=200)
    assert est == low == high == 1.0


@pytest.mark.parametrize("kw, match", [
    ({"n_boot": 0}, r"n_boot = 0 is not allowed; valid: an integer >= 1"),
    ({"level": 1.0}, r"level = 1.0 is not allowed; valid: a number strictly between 0 and 1"),
    ({"seed": -1}, r"seed = -1"),
])
def test_bootstrap_bad_options(kw, match):
    with pytest.raises(ConfigError, match=match):
        fs.bootstrap_ci([1, 2, 3], [3, 2, 1], fs.spearman, **kw)


# ------------------------------------------------------------------------------------- per-seed helpers
def test_rank_agreement_averages_seeds_per_genome():
    low = {"g0": [0.1, 0.3], "g1": [0.5, 0.5], "g2": [0.2, 0.6], "g3": [0.9, 0.7], "g4": [0.0, 0.2]}
    top = {"g4": [10.0], "g3": 40.0, "g0": [25.0, 15.0, 20.0], "g1": [30.0], "g2": [35.0]}
    r = fs.rank_agreement(low, top, n_boot=200, seed=1)
    means_low = [0.2, 0.5, 0.4, 0.8, 0.1]
    means_top = [20.0, 30.0, 35.0, 40.0, 10.0]
    assert r.n == 5 and r.level == 0.95
    assert r.tau == pytest.approx(stats.kendalltau(means_low, means_top).statistic)
    assert r.spearman == pytest.approx(stats.spearmanr(means_low, means_top).statistic)
    assert r.tau_low <= r.tau <= r.tau_high and r.spearman_low <= r.spearman <= r.spearman_high
    assert fs.rank_agreement(low, top, n_boot=200, seed=1) == r
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.tau = 0.0


def test_rank_agreement_bad_input():
    with pytest.raises(ConfigError, match=r"only in low_rung: \['g3'\].*only in top_rung: \[\]"):
        fs.rank_agreement({"g0": [1], "g1": [2], "g2": [3], "g3": [4]}, {"g0": [1], "g1": [2], "g2": [3]})
    with pytest.raises(ConfigError, match=r"low_rung\['g1'\] holds no score"):
        fs.rank_agreement({"g0": [1], "g1": [], "g2": [3]}, {"g0": [1], "g1": [2], "g2": [3]})
    with pytest.raises(ConfigError, match=r"top_rung\['g2'\]\[1\] = nan"):
        fs.rank_agreement({"g0": [1], "g1": [2], "g2": [3]}, {"g0": [1], "g1": [2], "g2": [3, float("nan")]})
    with pytest.raises(ConfigError, match=r"2 items given"):
        fs.rank_agreement({"g0": [1], "g1": [2]}, {"g0": [1], "g1": [2]})


SEEDS = {"a": [1.0, 1.2, 0.9], "b": [2.0, 1.8, 2.1], "c": [3.0, 3.3, 2.7], "d": [2.5, 1.5, 3.1]}


def test_seed_to_seed_tau_is_the_mean_pairwise_tau():
    m = np.array(list(SEEDS.values()))
    expected = np.mean([stats.kendalltau(m[:, s], m[:, t]).statistic for s, t in ((0, 1), (0, 2), (1, 2))])
    assert fs.seed_to_seed_tau(SEEDS) == pytest.approx(expected)
    assert fs.seed_to_seed_tau({"a": [1, 1], "b": [2, 2], "c": [3, 3]}) == 1.0


def test_noise_ratio():
    m = np.array(list(SEEDS.values()))
    r = fs.noise_ratio(SEEDS)
    assert r.within_sd == pytest.approx(np.mean([np.std(row, ddof=1) for row in m]))
    assert r.between_sd == pytest.approx(np.std(m.mean(1), ddof=1))
    assert r.ratio == pytest.approx(r.within_sd / r.between_sd)
    assert (r.n_genomes, r.n_seeds) == (4, 3)
    assert fs.noise_ratio({"a": [1, 2], "b": [2, 1], "c": [0, 3]}).ratio == math.inf


@pytest.mark.parametrize("scores, match", [
    ({"a": [1, 2], "b": [1, 2]}, r"holds 2 genomes; valid: at least 3"),
    ({"a": [1, 2], "b": [1, 2, 3], "c": [1, 2]}, r"scores\['b'\] has 3 seeds and scores\['a'\] has 2"),
    ({"a": [1], "b": [2], "c": [3]}, r"1 seed per genome; valid: at least 2"),
    ({"a": [1, 2], "b": [1, float("nan")], "c": [1, 2]}, r"scores\['b'\]\[1\] = nan"),
])
def test_seed_helpers_bad_input(scores, match):
    for f in (fs.seed_to_seed_tau, fs.noise_ratio):
        with pytest.raises(ConfigError, match=match):
            f(scores)


def _agreement(tau_low):
    return fs.RankAgreement(tau_low + 0.1, tau_low, tau_low + 0.2, 0.0, 0.0, 0.0, n=10, level=0.95)


def test_recommend_rung_takes_the_cheapest_rung_whose_interval_clears_the_target():
    ladder = {"100 steps": _agreement(0.2), "300 steps": _agreement(math.nan), "1k steps": _agreement(0.61),
              "3k steps": _agreement(0.8)}
    assert fs.recommend_rung(ladder, 0.6) == "1k steps"
    assert fs.recommend_rung(ladder, 0.2) == "100 steps"
    assert fs.recommend_rung(ladder, 0.9) is None
    assert fs.recommend_rung({}, 0.5) is None
    with pytest.raises(ConfigError, match=r"target_tau = 1.5 is not allowed; valid: a number in \[-1, 1\]"):
        fs.recommend_rung(ladder, 1.5)
    with pytest.raises(ConfigError, match=r"results\['x'\] = 0.7 is not allowed; valid: a RankAgreement"):
        fs.recommend_rung({"x": 0.7}, 0.5)


# --------------------------------------------------------------------------------------------- power
def test_min_detectable_difference_matches_the_closed_form():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert fs.min_detectable_difference(1.0, 3, 1.0, 3) == pytest.approx(z * math.sqrt(2 / 3))
    # unequal sds and arms
    z = stats.norm.ppf(1 - 0.01 / 2) + stats.norm.ppf(0.9)
    got = fs.min_detectable_difference(0.4, 5, 0.9, 8, alpha=0.01, power=0.9)
    assert got == pytest.approx(z * math.sqrt(0.4**2 / 5 + 0.9**2 / 8))
    assert fs.min_detectable_difference(0.0, 2, 0.0, 2) == 0.0


def test_seeds_needed_is_the_smallest_n_whose_mdd_reaches_the_effect():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    for effect, sd in ((0.5, 0.4), (-1.0, 0.5), (0.3, 0.7), (2.0, 0.1)):
        n = fs.seeds_needed(effect, sd)
        assert n == max(2, math.ceil(2 * (z * sd / effect) ** 2))
        assert fs.min_detectable_difference(sd, n, sd, n) <= abs(effect)
        if n > 2:
            assert fs.min_detectable_difference(sd, n - 1, sd, n - 1) > abs(effect)
    assert fs.seeds_needed(0.0, 1.0) is None
    assert fs.seeds_needed(0.01, 1.0, max_seeds=1000) is None  # needs 156,978 per arm
    assert fs.seeds_needed(0.5, 0.0) == 2


@pytest.mark.parametrize("call, match", [
    (lambda: fs.min_detectable_difference(-1.0, 3, 1.0, 3), r"sd_a = -1.0 is not allowed; valid: a finite number >= 0"),
    (lambda: fs.min_detectable_difference(1.0, 1, 1.0, 3), r"n_a = 1 is not allowed; valid: an integer >= 2"),
    (lambda: fs.min_detectable_difference(1.0, 3, float("nan"), 3), r"sd_b = nan"),
    (lambda: fs.min_detectable_difference(1.0, 3, 1.0, 3, alpha=0), r"alpha = 0 is not allowed"),
    (lambda: fs.min_detectable_difference(1.0, 3, 1.0, 3, power=1.2), r"power = 1.2 is not allowed"),
    (lambda: fs.seeds_needed(float("nan"), 1.0), r"effect = nan is not allowed"),
    (lambda: fs.seeds_needed(1.0, 1.0, max_seeds=1), r"max_seeds = 1 is not allowed"),
])
def test_power_bad_input(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
