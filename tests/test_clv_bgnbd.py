"""BG/NBD: published values, analytic gradient, parameter recovery, weighting, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import betaln, gammaln

from crm_pipelines.analytics.clv._data import deduplicate
from crm_pipelines.analytics.clv.bgnbd import BgNbdFit, _BgNbdLikelihood, bgnbd_log_likelihood, fit_bgnbd
from crm_pipelines.analytics.clv.simulate import simulate_bgnbd

# Fader, Hardie & Lee (2005), "Counting Your Customers" the Easy Way, Marketing Science 24(2):
# maximum likelihood estimates on the CDNOW sample of 2,357 customers (time unit: weeks).
CDNOW_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def central_gradient(function, params: np.ndarray, relative_step: float = 1e-6) -> np.ndarray:
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
    ages = np.random.default_rng(11).integers(26 * 7, 78 * 7, 10_000) / 7  # whole days, in weeks
    return simulate_bgnbd(10_000, T=ages, seed=1, **TRUE)


def test_conditional_expectation_matches_the_paper() -> None:
    # FHL (2005), section 5: a CDNOW customer with x = 2, t_x = 30.43, T = 38.86 (weeks) is expected
    # to make 1.226 transactions in the next 39 weeks.
    model = BgNbdFit.from_params(**CDNOW_BGNBD)
    assert model.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


def test_probability_alive_formula() -> None:
    # FHL (2008) "Computing P(alive) Using the BG/NBD Model":
    # 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), and 1 for customers without repeat purchases.
    model = BgNbdFit.from_params(**CDNOW_BGNBD)
    r, alpha, a, b = CDNOW_BGNBD.values()
    expected = 1 / (1 + a / (b + 1) * ((alpha + 38.86) / (alpha + 30.43)) ** (r + 2))
    assert model.probability_alive([2, 0], [30.43, 0], [38.86, 38.86]) == pytest.approx([expected, 1.0])
    # Long-silent heavy buyers are almost surely gone, without overflow.
    assert 0 <= model.probability_alive(500, 1.0, 200.0)[()] < 1e-100


def test_expectation_of_a_new_customer_is_the_no_history_case() -> None:
    model = BgNbdFit.from_params(**CDNOW_BGNBD)
    t = np.array([1.0, 13.0, 52.0, 78.0])
    assert model.expected_purchases_new_customer(t) == pytest.approx(model.expected_purchases(t, 0, 0, 0))
    assert np.all(np.diff(model.expected_purchases_new_customer(t)) > 0)


def test_log_likelihood_is_equation_6(simulated: pd.DataFrame) -> None:
    params = np.array([0.5, 6.0, 1.2, 3.3])
    x, t_x, T = (simulated[c].to_numpy()[:200] for c in ("frequency", "recency", "T"))
    r, alpha, a, b = params
    # Eq. (6), written out as in the paper.
    first = np.exp(
        betaln(a, b + x)
        - betaln(a, b)
        + gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        - (r + x) * np.log(alpha + T)
    )
    second = np.where(
        x > 0,
        np.exp(
            betaln(a + 1, b + np.maximum(x, 1) - 1)
            - betaln(a, b)
            + gammaln(r + x)
            - gammaln(r)
            + r * np.log(alpha)
            - (r + x) * np.log(alpha + t_x)
        ),
        0.0,
    )
    assert bgnbd_log_likelihood(params, x, t_x, T) == pytest.approx(np.log(first + second), rel=1e-12)
    total, _ = _BgNbdLikelihood(deduplicate(x, t_x, T))(params)
    assert total == pytest.approx(np.log(first + second).sum(), rel=1e-12)


@pytest.mark.parametrize(
    "params", [[0.243, 4.414, 0.793, 2.426], [1.3, 0.7, 2.1, 0.4], [5.0, 40.0, 0.2, 9.0]]
)
def test_gradient_agrees_with_numerical_differentiation(simulated: pd.DataFrame, params: list[float]) -> None:
    likelihood = _BgNbdLikelihood(deduplicate(simulated["frequency"], simulated["recency"], simulated["T"]))
    point = np.array(params)
    analytic = likelihood(point)[1]
    numeric = central_gradient(lambda p: likelihood(p)[0], point)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-3)


def test_parameters_recovered_from_simulation(simulated: pd.DataFrame) -> None:
    fit = fit_bgnbd(simulated["frequency"], simulated["recency"], simulated["T"])
    assert fit.converged, fit.message
    assert fit.customers_used == 10_000
    assert fit.distinct_histories < 10_000  # one-time buyers share histories
    for name, true in TRUE.items():
        assert abs(fit.params[name] - true) < 3 * fit.std_errors[name], (name, fit.params, fit.std_errors)
    # The reported log-likelihood is the paper's total over customers.
    per_customer = fit.log_likelihood_per_customer(
        simulated["frequency"], simulated["recency"], simulated["T"]
    )
    assert fit.log_likelihood == pytest.approx(per_customer.sum(), rel=1e-12)


def test_weighted_fit_equals_fit_on_every_customer(simulated: pd.DataFrame) -> None:
    sample = simulated.iloc[:3000]
    one_row_each = fit_bgnbd(sample["frequency"], sample["recency"], sample["T"], collapse_duplicates=False)
    counts = sample.groupby(["frequency", "recency", "T"]).size().reset_index(name="customers")
    weighted = fit_bgnbd(counts["frequency"], counts["recency"], counts["T"], weights=counts["customers"])
    collapsed = fit_bgnbd(sample["frequency"], sample["recency"], sample["T"])
    assert len(counts) < len(sample)
    for fit in (weighted, collapsed):
        assert fit.customers_used == one_row_each.customers_used == 3000
        assert fit.log_likelihood == pytest.approx(one_row_each.log_likelihood, rel=1e-9)
        for name in TRUE:
            assert fit.params[name] == pytest.approx(one_row_each.params[name], rel=1e-5)


def test_fit_is_deterministic_and_reports_a_frame(simulated: pd.DataFrame) -> None:
    first = fit_bgnbd(simulated["frequency"], simulated["recency"], simulated["T"])
    second = fit_bgnbd(simulated["frequency"], simulated["recency"], simulated["T"])
    assert first.params == second.params
    assert first.std_errors == second.std_errors
    frame = first.to_frame()
    assert list(frame.columns) == [
        "model",
        "parameter",
        "value",
        "std_error",
        "time_unit",
        "log_likelihood",
        "customers_used",
    ]
    assert frame["parameter"].tolist() == ["r", "alpha", "a", "b"]
    assert (frame["model"] == "bgnbd").all() and (frame["time_unit"] == "week").all()


def test_fit_in_days_scales_alpha(simulated: pd.DataFrame) -> None:
    weeks = fit_bgnbd(simulated["frequency"], simulated["recency"], simulated["T"])
    days = fit_bgnbd(simulated["frequency"], simulated["recency"] * 7, simulated["T"] * 7, time_unit_days=1)
    assert days.params["alpha"] == pytest.approx(7 * weeks.params["alpha"], rel=1e-4)
    assert days.params["r"] == pytest.approx(weeks.params["r"], rel=1e-4)
    assert days.log_likelihood == pytest.approx(
        weeks.log_likelihood - (simulated["frequency"].sum()) * np.log(7), rel=1e-8
    )
    assert days.to_frame()["time_unit"].iloc[0] == "day"


def test_rejects_impossible_histories() -> None:
    with pytest.raises(ValueError, match="recency must not exceed T"):
        fit_bgnbd([1, 2], [5.0, 3.0], [4.0, 4.0])
    with pytest.raises(ValueError, match="frequency 0"):
        fit_bgnbd([0], [1.0], [4.0])
    with pytest.raises(ValueError, match="whole numbers"):
        fit_bgnbd([1.5], [1.0], [4.0])
