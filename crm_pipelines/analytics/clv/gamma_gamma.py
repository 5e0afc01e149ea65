"""The Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV: Using
Iso-Value Curves for Customer Base Analysis", Journal of Marketing Research 42(4), 415-430; and
Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value").

A customer's transaction values are Gamma(p, nu) around her own mean p / nu, and nu ~ Gamma(q, gamma)
across customers. With x transactions of mean value m, the density of m is

    f(m | p, q, gamma; x) = Gamma(px+q) / (Gamma(px) Gamma(q))
                            * gamma^q x^(px) m^(px-1) / (gamma + x m)^(px+q)

and the expected value of her next transaction is E(M | x, m) = p (gamma + x m) / (p x + q - 1),
a weighted mean of the population mean p gamma / (q - 1) and her own mean.

The model assumes spend per transaction is independent of how often a customer buys; it is fitted
on repeat customers only (their mean is of repeat purchases, see :func:`summary_from_orders`), and
:func:`fit_gamma_gamma` refuses data that visibly break the assumption.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln

from crm_pipelines.analytics.clv._data import ArrayLike, as_float_array, inner_product
from crm_pipelines.analytics.clv._optimize import maximize
from crm_pipelines.analytics.clv.results import ModelFit

PARAMETERS = ("p", "q", "gamma")


class GammaGammaAssumptionError(ValueError):
    """The spend data break an assumption of the Gamma-Gamma model; the message says which."""


def _log_density(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    p, q, gamma = params
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + x * m)
    )


class _GammaGammaLikelihood:
    def __init__(self, x: np.ndarray, m: np.ndarray, weight: np.ndarray) -> None:
        self.x, self.m, self.weight = x, m, weight
        self.log_x, self.log_m = np.log(x), np.log(m)

    def __call__(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, gamma = params
        x, m, w = self.x, self.m, self.weight
        px = p * x
        log_total = np.log(gamma + x * m)
        psi_sum = digamma(px + q)
        grad = np.array(
            [
                inner_product(w, x * (psi_sum - digamma(px) + self.log_m + self.log_x - log_total)),
                inner_product(w, psi_sum - digamma(q) + np.log(gamma) - log_total),
                inner_product(w, q / gamma - (px + q) / (gamma + x * m)),
            ]
        )
        return float(inner_product(w, _log_density(params, x, m))), grad


def gamma_gamma_log_likelihood(
    params: ArrayLike, frequency: ArrayLike, monetary_value: ArrayLike
) -> np.ndarray:
    """Per-customer log-likelihood of the mean spend of x >= 1 transactions."""
    x = as_float_array(frequency, "frequency")
    m = as_float_array(monetary_value, "monetary_value")
    return _log_density(np.asarray(params, dtype=float), x, m)


def gamma_gamma_expected_order_value(
    params: ArrayLike, frequency: ArrayLike, monetary_value: ArrayLike
) -> np.ndarray:
    """E(M | x, m) = p (gamma + x m) / (p x + q - 1); for x = 0 the population mean p gamma / (q - 1).

    Customers without repeat purchases (x = 0) get the population mean whatever their ``monetary_value``
    (by the usual convention it is 0 for them). With q <= 1 the population mean is infinite: NaN.
    """
    p, q, gamma = np.asarray(params, dtype=float)
    x, m = np.broadcast_arrays(np.asarray(frequency, float), np.asarray(monetary_value, float))
    m = np.where(x > 0, m, 0.0)
    denominator = p * x + q - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, p * (gamma + x * m) / denominator, np.nan)


class GammaGammaFit(ModelFit):
    """Fitted Gamma-Gamma spend model; parameters p, q, gamma (gamma in currency units)."""

    MODEL_NAME: ClassVar[str] = "gamma_gamma"
    PARAMETER_NAMES: ClassVar[tuple[str, ...]] = PARAMETERS

    @property
    def time_unit(self) -> str:
        return "none"

    @property
    def frequency_spend_correlation(self) -> float:
        return float(self.extras.get("frequency_spend_correlation", np.nan))

    def expected_order_value(self, frequency: ArrayLike, monetary_value: ArrayLike) -> np.ndarray:
        return gamma_gamma_expected_order_value(self.param_array(), frequency, monetary_value)

    def population_mean_order_value(self) -> float:
        p, q, gamma = self.param_array()
        return float(p * gamma / (q - 1)) if q > 1 else float("inf")


def frequency_spend_correlation(frequency: ArrayLike, monetary_value: ArrayLike) -> float:
    """Pearson correlation of frequency and mean spend over repeat customers (NaN without variation)."""
    x = as_float_array(frequency, "frequency")
    m = as_float_array(monetary_value, "monetary_value")
    repeat = x > 0
    x, m = x[repeat], m[repeat]
    if len(x) < 3 or np.std(x) == 0 or np.std(m) == 0:
        return float("nan")
    return float(np.corrcoef(x, m)[0, 1])


def check_gamma_gamma_assumptions(
    frequency: ArrayLike, monetary_value: ArrayLike, *, max_correlation: float = 0.3
) -> float:
    """Raise :class:`GammaGammaAssumptionError` when the data break the model; return the correlation.

    Refused: no repeat customers; a repeat customer with mean spend <= 0 (the model is for positive
    amounts: zero-value or net-negative purchase days must be cleaned first); and |Pearson r| between
    frequency and mean spend above ``max_correlation`` (spend would depend on frequency, which the
    model rules out, and CLV built on it would be biased).
    """
    x = as_float_array(frequency, "frequency")
    m = as_float_array(monetary_value, "monetary_value")
    if len(x) != len(m):
        raise ValueError("frequency and monetary_value must have the same length")
    repeat = x > 0
    if not repeat.any():
        raise GammaGammaAssumptionError(
            "Gamma-Gamma needs repeat customers (frequency > 0) and there are none; "
            "use the mean spend per order instead"
        )
    non_positive = int((m[repeat] <= 0).sum())
    if non_positive:
        raise GammaGammaAssumptionError(
            f"Gamma-Gamma needs positive spend: {non_positive} of {int(repeat.sum())} repeat customers "
            "have a mean repeat-purchase value <= 0 (free or net-refunded purchase days); "
            "exclude them or fix the amounts"
        )
    correlation = frequency_spend_correlation(x, m)
    if np.isfinite(correlation) and abs(correlation) > max_correlation:
        raise GammaGammaAssumptionError(
            f"Gamma-Gamma assumes spend per purchase is independent of purchase frequency, but their Pearson "
            f"correlation over {int(repeat.sum())} repeat customers is {correlation:+.3f} "
            f"(limit ±{max_correlation}); use a spend model that depends on frequency, or raise "
            "clv.gamma_gamma_max_correlation if you accept the bias"
        )
    return correlation


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    max_correlation: float = 0.3,
    collapse_duplicates: bool = True,
) -> GammaGammaFit:
    """Maximum likelihood Gamma-Gamma on repeat customers (frequency > 0), after the assumption checks."""
    x = as_float_array(frequency, "frequency")
    m = as_float_array(monetary_value, "monetary_value")
    correlation = check_gamma_gamma_assumptions(x, m, max_correlation=max_correlation)
    w = np.ones(len(x)) if weights is None else np.broadcast_to(as_float_array(weights, "weights"), x.shape)
    repeat = (x > 0) & (w > 0)
    x, m, w = x[repeat], m[repeat], np.asarray(w[repeat], dtype=float)
    if collapse_duplicates:
        grouped = pd.DataFrame({"x": x, "m": m, "w": w}).groupby(["x", "m"], sort=True)["w"].sum()
        x = grouped.index.get_level_values("x").to_numpy(float)
        m = grouped.index.get_level_values("m").to_numpy(float)
        w = grouped.to_numpy(float)
    mean_spend = float(inner_product(w, m) / w.sum())
    optimum = maximize(_GammaGammaLikelihood(x, m, w), np.array([1.0, 2.0, mean_spend]), float(w.sum()))
    return GammaGammaFit.from_optimum(
        optimum,
        customers_used=int(round(w.sum())),
        distinct_histories=len(x),
        time_unit_days=float("nan"),
        extras={"frequency_spend_correlation": correlation},
    )
