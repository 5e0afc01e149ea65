"""The uplift intervals are checked by simulation: their error rates, not single examples.

With 2,000 simulated campaigns per case, the share of intervals missing the truth has a standard
error of about 0.5 points around 5%, so the bounds below fail a wrong method, not a right one.
"""

import numpy as np
import pytest

from crm_pipelines.analytics.uplift import mean_uplift, proportion_uplift

RUNS = 2000


def _proportion_misses(rng, n_t: int, n_c: int, p_c: float, effect: float) -> tuple[float, float]:
    """Share of 95% intervals excluding the true difference, and the true relative uplift's."""
    miss_abs = miss_rel = 0
    for _ in range(RUNS):
        conv_t, conv_c = rng.binomial(n_t, p_c + effect), rng.binomial(n_c, p_c)
        u = proportion_uplift(int(conv_t), n_t, int(conv_c), n_c)
        miss_abs += not (u.uplift_absolute_low <= effect <= u.uplift_absolute_high)
        truth_rel = (p_c + effect) / p_c - 1
        miss_rel += not (u.uplift_relative_low <= truth_rel <= u.uplift_relative_high)
    return miss_abs / RUNS, miss_rel / RUNS


def test_aa_conversion_intervals_exclude_zero_about_five_percent():
    rng = np.random.default_rng(1)
    excluded, excluded_rel = _proportion_misses(rng, n_t=1800, n_c=200, p_c=0.12, effect=0.0)
    assert 0.03 <= excluded <= 0.07
    assert 0.03 <= excluded_rel <= 0.07


def test_known_conversion_effect_is_covered_about_95_percent():
    rng = np.random.default_rng(2)
    missed, missed_rel = _proportion_misses(rng, n_t=2700, n_c=300, p_c=0.08, effect=0.04)
    assert 0.03 <= missed <= 0.07
    assert 0.03 <= missed_rel <= 0.07


def test_aa_p_values_are_uniform_enough():
    rng = np.random.default_rng(3)
    p = [
        proportion_uplift(int(rng.binomial(900, 0.2)), 900, int(rng.binomial(100, 0.2)), 100).p_value
        for _ in range(RUNS)
    ]
    assert 0.03 <= np.mean(np.array(p) < 0.05) <= 0.07


def _revenue(rng, n: int, buy_rate: float, mean_spend: float) -> np.ndarray:
    """Revenue per customer as campaigns see it: mostly zeros, skewed spend among buyers."""
    spend = rng.lognormal(np.log(mean_spend) - 0.5 * 0.8**2, 0.8, n)
    return np.where(rng.random(n) < buy_rate, spend, 0.0)


@pytest.mark.parametrize(("buy_t", "effect_name"), [(0.15, "A/A"), (0.21, "known effect")])
def test_revenue_intervals_cover_the_true_difference_about_95_percent(buy_t, effect_name):
    rng = np.random.default_rng(4)
    n_t, n_c, buy_c, spend = 1800, 400, 0.15, 60.0
    truth = (buy_t - buy_c) * spend
    missed = 0
    for _ in range(RUNS):
        u = mean_uplift(_revenue(rng, n_t, buy_t, spend), _revenue(rng, n_c, buy_c, spend))
        missed += not (u.uplift_absolute_low <= truth <= u.uplift_absolute_high)
    assert 0.03 <= missed / RUNS <= 0.075, effect_name


def test_edge_cases_are_undefined_not_errors():
    empty = proportion_uplift(0, 0, 3, 10)
    assert np.isnan(empty.uplift_absolute) and empty.value_control == 0.3
    no_control_buyers = proportion_uplift(5, 100, 0, 10)
    assert no_control_buyers.uplift_absolute == pytest.approx(0.05)
    assert np.isnan(no_control_buyers.uplift_relative)
    assert no_control_buyers.uplift_absolute_low < 0.05 < no_control_buyers.uplift_absolute_high
    single = mean_uplift(np.array([1.0]), np.array([1.0, 2.0]))
    assert np.isnan(single.uplift_absolute)
    constant = mean_uplift(np.zeros(5), np.zeros(5))
    assert constant.uplift_absolute == 0 and constant.p_value == 1.0
