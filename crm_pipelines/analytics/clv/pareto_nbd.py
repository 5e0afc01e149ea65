"""The Pareto/NBD model (Schmittlein, Morrison & Colombo 1987, "Counting Your Customers: Who Are They
and What Will They Do Next?", Management Science 33(1), 1-24).

While alive a customer buys at Poisson rate lambda ~ Gamma(r, alpha); her lifetime is exponential
with rate mu ~ Gamma(s, beta). The likelihood of (x, t_x, T) is (Fader & Hardie 2005, "A Note on
Deriving the Pareto/NBD Model and Related Expressions", eq. 19-23)

    L = Gamma(r+x) alpha^r beta^s / Gamma(r) * [ E + s * I ],
    E = (alpha+T)^-(r+x) (beta+T)^-s                               (alive throughout (0, T]),
    I = int_{t_x}^{T} (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau     (died at tau, after t_x),

and I = J(t_x) - J(T) with J(t) the same integral from t to infinity. The note writes J with the
Gauss hypergeometric function, taking 2F1(r+s+x, s+1; r+s+x+1; (alpha-beta)/(alpha+t)) when
alpha >= beta and 2F1(r+s+x, r+x; r+s+x+1; (beta-alpha)/(beta+t)) otherwise, so that the argument
lies in [0, 1). :mod:`._tail_integrals` evaluates exactly that function through its Euler integral
(``scipy.special.hyp2f1`` returns nan or inf in parts of this domain) together with the integrals
of log(alpha+tau), log(beta+tau), 1/(alpha+tau) and 1/(beta+tau) that the analytic gradient needs.
Everything is kept in logs, so histories with hundreds of purchases neither overflow nor underflow.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import digamma, gammaln

from crm_pipelines.analytics.clv._data import ArrayLike, Histories, deduplicate, inner_product
from crm_pipelines.analytics.clv._optimize import maximize
from crm_pipelines.analytics.clv._tail_integrals import tail_integrals
from crm_pipelines.analytics.clv.results import ModelFit

PARAMETERS = ("r", "alpha", "s", "beta")


def log_tail_integral(params: ArrayLike, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """log J(t) = log of the integral from t to infinity of (alpha+tau)^-(r+x) (beta+tau)^-(s+1)."""
    x, t = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(t, dtype=float))
    log_j, _ = tail_integrals(np.asarray(params, dtype=float), x.ravel(), t.ravel())
    return log_j.reshape(x.shape)


def _log_difference(log_big: np.ndarray, log_small: np.ndarray) -> np.ndarray:
    """log(exp(log_big) - exp(log_small)) for log_big >= log_small; -inf where they are equal."""
    with np.errstate(divide="ignore"):
        return log_big + np.log(-np.expm1(np.minimum(log_small - log_big, 0.0)))


def _log_terms(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, ...]:
    """log E, log(s I), log J(t_x), log J(T) per customer."""
    r, alpha, s, beta = params
    log_e = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    log_j_tx = log_tail_integral(params, x, t_x)
    log_j_T = log_tail_integral(params, x, age)
    log_s_i = np.log(s) + _log_difference(log_j_tx, log_j_T)
    return log_e, log_s_i, log_j_tx, log_j_T


def pareto_nbd_log_likelihood(
    params: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """Per-customer log-likelihood for parameters (r, alpha, s, beta)."""
    params = np.asarray(params, dtype=float)
    r, alpha, s, beta = params
    x, t_x, age = np.broadcast_arrays(
        np.asarray(frequency, float), np.asarray(recency, float), np.asarray(T, float)
    )
    log_e, log_s_i, _, _ = _log_terms(params, x, t_x, age)
    return gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta) + np.logaddexp(log_e, log_s_i)


class _ParetoNbdLikelihood:
    """Total log-likelihood with its gradient over weighted distinct histories."""

    def __init__(self, histories: Histories) -> None:
        self.x, self.t_x, self.age, self.weight = (
            histories.frequency,
            histories.recency,
            histories.age,
            histories.weight,
        )
        self.total_weight = float(self.weight.sum())
        # J(t) depends on (x, t) only: evaluate it once per distinct pair, for t = t_x and t = T alike.
        pairs = np.concatenate([np.stack([self.x, self.t_x], 1), np.stack([self.x, self.age], 1)])
        unique_pairs, inverse = np.unique(pairs, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        self.pair_x, self.pair_t = unique_pairs[:, 0], unique_pairs[:, 1]
        self.tx_pair, self.T_pair = inverse[: len(self.x)], inverse[len(self.x) :]

    def __call__(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, s, beta = params
        x, age, w = self.x, self.age, self.weight
        log_j, means = tail_integrals(params, self.pair_x, self.pair_t, with_means=True)
        log_j_tx, log_j_T = log_j[self.tx_pair], log_j[self.T_pair]
        log_e = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
        log_s_i = np.log(s) + _log_difference(log_j_tx, log_j_T)
        log_bracket = np.logaddexp(log_e, log_s_i)
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        total = float(inner_product(w, common + log_bracket))

        # d log(E + sI) = (dE + d(sI)) / (E + sI); every term is scaled by exp(-log_bracket).
        share_e = np.exp(log_e - log_bracket)
        j_tx = np.exp(log_j_tx - log_bracket)  # s*J(t_x)/(E+sI) up to the factor s
        j_T = np.exp(log_j_T - log_bracket)
        diff = {
            name: j_tx * values[self.tx_pair] - j_T * values[self.T_pair] for name, values in means.items()
        }
        share_i = j_tx - j_T  # I / (E + sI)

        d_r = -np.log(alpha + age) * share_e - s * diff["log_alpha_tau"]
        d_alpha = -(r + x) / (alpha + age) * share_e - s * (r + x) * diff["inv_alpha_tau"]
        d_s = -np.log(beta + age) * share_e + share_i - s * diff["log_beta_tau"]
        d_beta = -s / (beta + age) * share_e - s * (s + 1) * diff["inv_beta_tau"]

        grad = np.array(
            [
                inner_product(w, digamma(r + x) - digamma(r) + np.log(alpha) + d_r),
                inner_product(w, r / alpha + d_alpha),
                inner_product(w, np.log(beta) + d_s),
                inner_product(w, s / beta + d_beta),
            ]
        )
        return total, grad


def pareto_nbd_probability_alive(
    params: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """P(alive | x, t_x, T) = E / (E + s I)."""
    params = np.asarray(params, dtype=float)
    x, t_x, age = np.broadcast_arrays(
        np.asarray(frequency, float), np.asarray(recency, float), np.asarray(T, float)
    )
    log_e, log_s_i, _, _ = _log_terms(params, x, t_x, age)
    return np.exp(log_e - np.logaddexp(log_e, log_s_i))


def _survival_integral(s: float, log_growth: np.ndarray) -> np.ndarray:
    """(1 - exp(-(s-1) L)) / (s-1), continuous through s = 1 (where it equals L)."""
    if abs(s - 1.0) < 1e-10:
        return log_growth
    return -np.expm1(-(s - 1.0) * log_growth) / (s - 1.0)


def pareto_nbd_expected_purchases(
    params: ArrayLike, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """E[Y(t) | x, t_x, T] = (r+x)(beta+T) / ((alpha+T)(s-1)) [1 - ((beta+T)/(beta+T+t))^(s-1)] P(alive)."""
    params = np.asarray(params, dtype=float)
    t, x, t_x, age = np.broadcast_arrays(
        np.asarray(t, float), np.asarray(frequency, float), np.asarray(recency, float), np.asarray(T, float)
    )
    return _expected_if_alive(params, t, x, age) * pareto_nbd_probability_alive(params, x, t_x, age)


def _expected_if_alive(params: np.ndarray, t: np.ndarray, x: np.ndarray, age: np.ndarray) -> np.ndarray:
    r, alpha, s, beta = params
    rate_if_alive = (r + x) * (beta + age) / (alpha + age)
    return rate_if_alive * _survival_integral(s, np.log1p(t / (beta + age)))


def pareto_nbd_expected_purchases_new_customer(params: ArrayLike, t: ArrayLike) -> np.ndarray:
    """E[X(t)] = r beta / (alpha (s-1)) [1 - (beta / (beta + t))^(s-1)]."""
    r, alpha, s, beta = np.asarray(params, dtype=float)
    t = np.asarray(t, dtype=float)
    return r * beta / alpha * _survival_integral(s, np.log1p(t / beta))


class ParetoNbdFit(ModelFit):
    """Fitted Pareto/NBD model; parameters r, alpha, s, beta (alpha, beta in the fit's time unit)."""

    MODEL_NAME: ClassVar[str] = "pareto_nbd"
    PARAMETER_NAMES: ClassVar[tuple[str, ...]] = PARAMETERS

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> np.ndarray:
        return pareto_nbd_probability_alive(self.param_array(), frequency, recency, T)

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        return pareto_nbd_expected_purchases(self.param_array(), t, frequency, recency, T)

    def expected_purchases_new_customer(self, t: ArrayLike) -> np.ndarray:
        return pareto_nbd_expected_purchases_new_customer(self.param_array(), t)

    def expected_purchases_if_alive(self, t: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> np.ndarray:
        """E[Y(t) | x, T, alive at T]; times P(alive) it is :meth:`expected_purchases`."""
        t, x, age = np.broadcast_arrays(
            np.asarray(t, float), np.asarray(frequency, float), np.asarray(T, float)
        )
        return _expected_if_alive(self.param_array(), t, x, age)

    def log_likelihood_per_customer(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        return pareto_nbd_log_likelihood(self.param_array(), frequency, recency, T)


def pareto_nbd_start(histories: Histories) -> np.ndarray:
    """Fixed, data-scaled start: r = s = 1, alpha = beta = 1 / (mean purchase rate)."""
    rate = histories.purchase_rate
    scale = float(np.clip(1.0 / max(rate, 1e-12), 1e-3, 1e6))
    return np.array([1.0, scale, 1.0, scale])


def fit_pareto_nbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    time_unit_days: float = 7.0,
    collapse_duplicates: bool = True,
) -> ParetoNbdFit:
    """Maximum likelihood Pareto/NBD on customer summaries; see :func:`fit_bgnbd` for the arguments."""
    histories = deduplicate(frequency, recency, T, weights, collapse=collapse_duplicates)
    if histories.customers <= 0:
        raise ValueError("Pareto/NBD needs at least one customer")
    optimum = maximize(_ParetoNbdLikelihood(histories), pareto_nbd_start(histories), histories.customers)
    return ParetoNbdFit.from_optimum(
        optimum,
        customers_used=int(round(histories.customers)),
        distinct_histories=len(histories),
        time_unit_days=time_unit_days,
    )
