"""Pareto/NBD: published value, the death-time integral, analytic gradient, parameter recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.special import hyp2f1

from crm_pipelines.analytics.clv._data import deduplicate
from crm_pipelines.analytics.clv._tail_integrals import tail_integrals
from crm_pipelines.analytics.clv.pareto_nbd import (
    ParetoNbdFit,
    _ParetoNbdLikelihood,
    fit_pareto_nbd,
    pareto_nbd_log_likelihood,
)
from crm_pipelines.analytics.clv.simulate import simulate_pareto_nbd

# Pareto/NBD estimates on the CDNOW sample (weeks) as reported by Fader, Hardie & Lee (2005),
# "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis" (r = 0.55, alpha = 10.58,
# s = 0.61, beta = 11.67), to the three decimals the lifetimes test suite uses.
CDNOW_PNBD = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}


def central_gradient(function, params: np.ndarray, relative_step: float) -> np.ndarray:
    gradient = np.empty(len(params))
    for i in range(len(params)):
        step = relative_step * params[i]
        up, down = params.copy(), params.copy()
        up[i] += step
        down[i] -= step
        gradient[i] = (function(up) - function(down)) / (2 * step)
    return gradient


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    ages = np.random.default_rng(3).integers(26 * 7, 78 * 7, 10_000) / 7
    frame = simulate_pareto_nbd(10_000, T=ages, seed=2, **CDNOW_PNBD)
    frame["recency"] = np.floor(frame["recency"] * 7) / 7  # whole days, as summaries have them
    return frame


def test_conditional_expectation_matches_the_btyd_walkthrough() -> None:
    # BTYD package vignette "Buy 'Til You Die - A Walkthrough" (McCarthy & Wadsworth), CDNOW:
    # a customer with x = 26, t.x = 30.86, T.cal = 31 is expected to buy 25.46 times in the next
    # 52 weeks (pnbd.ConditionalExpectedTransactions with T.star = 52).
    model = ParetoNbdFit.from_params(**CDNOW_PNBD)
    assert model.expected_purchases(52, 26, 30.86, 31) == pytest.approx(25.46, abs=0.01)


def _integrand(tau: float, r: float, alpha: float, s: float, beta: float, x: float) -> float:
    return (alpha + tau) ** -(r + x) * (beta + tau) ** -(s + 1)


@pytest.mark.parametrize(
    ("params", "x", "t"),
    [
        ([0.553, 10.578, 0.606, 11.669], 2.0, 30.43),  # alpha < beta
        ([1.3, 20.0, 0.4, 2.0], 0.0, 0.0),  # alpha > beta, no repeat purchases
        ([2.0, 4.0, 1.5, 4.0], 5.0, 10.0),  # alpha == beta
        # r = s = 1 with whole x: c - a - b is a whole number and z = 0.9995, where
        # scipy.special.hyp2f1 is unreliable; the quadrature is not.
        ([1.0, 1000.0, 1.0, 0.5], 3.0, 0.0),
        ([0.05, 0.3, 0.02, 40.0], 0.0, 1.0),  # a = r + s < 1: singular end of the integral
    ],
)
def test_tail_integral_against_adaptive_quadrature(params: list[float], x: float, t: float) -> None:
    log_j, _ = tail_integrals(np.array(params), np.array([x]), np.array([t]))
    reference = sum(
        quad(_integrand, lo, hi, args=(*params, x), epsabs=0, epsrel=1e-12, limit=500)[0]
        for lo, hi in ((t, t + 1), (t + 1, t + 1e3), (t + 1e3, np.inf))
    )
    assert log_j[0] == pytest.approx(np.log(reference), rel=1e-7)


def test_tail_integral_is_the_hypergeometric_closed_form_where_scipy_is_reliable() -> None:
    # Fader & Hardie (2005) note, alpha >= beta:
    # J(t) = 2F1(a, s+1; a+1; (alpha-beta)/(alpha+t)) / (a (alpha+t)^a).
    r, alpha, s, beta = 0.7, 9.0, 0.8, 6.0
    x, t = np.array([0.0, 1.0, 4.0, 12.0]), np.array([0.0, 3.0, 20.0, 50.0])
    a = r + s + x
    closed = hyp2f1(a, s + 1, a + 1, (alpha - beta) / (alpha + t)) / (a * (alpha + t) ** a)
    log_j, _ = tail_integrals(np.array([r, alpha, s, beta]), x, t)
    assert log_j == pytest.approx(np.log(closed), rel=1e-12)


def test_heavy_buyers_neither_overflow_nor_underflow() -> None:
    params = np.array([10.465, 7.98565181e-03, 3.0516, 2.820])  # extreme rates, as seen mid-optimisation
    ll = pareto_nbd_log_likelihood(params, [400.0, 500.0, 500.0], [5.0, 1.0, 4.0], [6.0, 37.0, 37.0])
    assert np.all(np.isfinite(ll))  # a density of event times: positive logs are fine
    model = ParetoNbdFit.from_params(r=10.465, alpha=7.98565181e-03, s=3.0516, beta=2.820)
    alive = model.probability_alive([400.0, 500.0], [5.0, 1.0], [6.0, 37.0])
    assert np.all((alive >= 0) & (alive <= 1))


def test_probability_alive_and_expectations() -> None:
    model = ParetoNbdFit.from_params(**CDNOW_PNBD)
    assert model.probability_alive(0, 0, 0)[()] == pytest.approx(1.0)
    # More recent purchases mean more likely alive; silence after many purchases means gone.
    alive = model.probability_alive([5, 5, 5], [10.0, 30.0, 38.0], [39.0, 39.0, 39.0])
    assert np.all(np.diff(alive) > 0)
    assert model.expected_purchases_new_customer(0.0)[()] == 0.0
    # E[Y(t)] is continuous through s = 1 (the (s-1) in the formula has a removable singularity).
    near = [
        ParetoNbdFit.from_params(r=0.5, alpha=10, s=s, beta=12).expected_purchases(52, 3, 20, 30)
        for s in (1 - 1e-7, 1.0, 1 + 1e-7)
    ]
    assert near[0] == pytest.approx(near[1], rel=1e-6) and near[2] == pytest.approx(near[1], rel=1e-6)


@pytest.mark.parametrize(
    "params",
    [[0.553, 10.578, 0.606, 11.669], [1.3, 0.7, 2.1, 0.4], [0.5, 20.0, 0.3, 0.05], [2.0, 0.05, 3.0, 30.0]],
)
def test_gradient_agrees_with_numerical_differentiation(simulated: pd.DataFrame, params: list[float]) -> None:
    sample = simulated.iloc[:2000]
    likelihood = _ParetoNbdLikelihood(deduplicate(sample["frequency"], sample["recency"], sample["T"]))
    point = np.array(params)
    analytic = likelihood(point)[1]
    numeric = central_gradient(lambda p: likelihood(p)[0], point, relative_step=1e-5)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-3)


def test_parameters_recovered_from_simulation(simulated: pd.DataFrame) -> None:
    fit = fit_pareto_nbd(simulated["frequency"], simulated["recency"], simulated["T"])
    assert fit.converged, fit.message
    for name, true in CDNOW_PNBD.items():
        assert abs(fit.params[name] - true) < 3 * fit.std_errors[name], (name, fit.params, fit.std_errors)
    per_customer = fit.log_likelihood_per_customer(
        simulated["frequency"], simulated["recency"], simulated["T"]
    )
    assert fit.log_likelihood == pytest.approx(per_customer.sum(), rel=1e-10)
    assert fit.to_frame()["parameter"].tolist() == ["r", "alpha", "s", "beta"]


def test_weighted_fit_equals_fit_on_every_customer(simulated: pd.DataFrame) -> None:
    sample = simulated.iloc[:1500]
    one_row_each = fit_pareto_nbd(
        sample["frequency"], sample["recency"], sample["T"], collapse_duplicates=False
    )
    counts = sample.groupby(["frequency", "recency", "T"]).size().reset_index(name="customers")
    weighted = fit_pareto_nbd(
        counts["frequency"], counts["recency"], counts["T"], weights=counts["customers"]
    )
    assert weighted.log_likelihood == pytest.approx(one_row_each.log_likelihood, rel=1e-9)
    for name in CDNOW_PNBD:
        assert weighted.params[name] == pytest.approx(one_row_each.params[name], rel=1e-4)
