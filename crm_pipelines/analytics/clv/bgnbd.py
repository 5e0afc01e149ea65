"""The BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005, "Counting Your Customers" the
Easy Way: An Alternative to the Pareto/NBD Model, Marketing Science 24(2), 275-284).

While active, a customer buys at Poisson rate lambda ~ Gamma(r, alpha); after each repeat purchase
she drops out with probability p ~ Beta(a, b). A customer is summarised by (x, t_x, T): repeat
purchases, time of the last one and age, all measured from her first purchase.

The likelihood is the paper's equation (6); the conditional expectation its equation (10); P(alive)
is from Fader, Hardie & Lee (2008), "Computing P(alive) Using the BG/NBD Model".
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from crm_pipelines.analytics.clv._data import ArrayLike, Histories, as_float_array, deduplicate, inner_product
from crm_pipelines.analytics.clv._optimize import maximize
from crm_pipelines.analytics.clv.results import ModelFit

PARAMETERS = ("r", "alpha", "a", "b")


class _BgNbdLikelihood:
    """Total log-likelihood and its analytic gradient over weighted distinct histories.

    Terms that depend on x alone (gamma and beta functions) are computed once per distinct x, and
    log(alpha + T), log(alpha + t_x) once per distinct time, so an evaluation costs a handful of
    vector operations per distinct history.
    """

    def __init__(self, histories: Histories) -> None:
        self.weight = histories.weight
        self.x_values, self.x_code = np.unique(histories.frequency, return_inverse=True)
        self.T_values, self.T_code = np.unique(histories.age, return_inverse=True)
        self.tx_values, self.tx_code = np.unique(histories.recency, return_inverse=True)
        self.x = histories.frequency
        self.weight_per_x = np.bincount(self.x_code, weights=self.weight, minlength=len(self.x_values))
        self.total_weight = float(self.weight.sum())

    def __call__(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = params
        ux, has_repeat = self.x_values, self.x_values > 0
        ln_ab = betaln(a, b)
        # Per distinct x: the customer-independent factors of eq. (6).
        common = gammaln(r + ux) - gammaln(r) + r * np.log(alpha)
        c_alive = betaln(a, b + ux) - ln_ab
        c_dropped = np.full_like(ux, -np.inf)
        c_dropped[has_repeat] = betaln(a + 1, b + ux[has_repeat] - 1) - ln_ab

        x, xc = self.x, self.x_code
        log_at_T = np.log(alpha + self.T_values)[self.T_code]
        log_at_tx = np.log(alpha + self.tx_values)[self.tx_code]
        u_alive = c_alive[xc] - (r + x) * log_at_T
        u_dropped = c_dropped[xc] - (r + x) * log_at_tx
        log_bracket = np.logaddexp(u_alive, u_dropped)
        w = self.weight
        total = float(inner_product(w, common[xc] + log_bracket))

        # Share of each history's likelihood coming from the "dropped out after t_x" branch.
        share_dropped = expit(u_dropped - u_alive)
        share_alive = 1.0 - share_dropped
        psi_ab, psi_a, psi_b = digamma(a + b), digamma(a), digamma(b)
        psi_abx = digamma(a + b + ux)
        d_alive_da = psi_ab - psi_abx
        d_alive_db = digamma(b + ux) - psi_abx - psi_b + psi_ab
        d_dropped_da = np.zeros_like(ux)
        d_dropped_db = np.zeros_like(ux)
        d_dropped_da[has_repeat] = digamma(a + 1) - psi_abx[has_repeat] - psi_a + psi_ab
        d_dropped_db[has_repeat] = digamma(b + ux[has_repeat] - 1) - psi_abx[has_repeat] - psi_b + psi_ab
        alive_per_x = np.bincount(xc, weights=w * share_alive, minlength=len(ux))
        dropped_per_x = np.bincount(xc, weights=w * share_dropped, minlength=len(ux))

        grad_r = (
            inner_product(self.weight_per_x, digamma(r + ux) - digamma(r) + np.log(alpha))
            - inner_product(w * share_alive, log_at_T)
            - inner_product(w * share_dropped, log_at_tx)
        )
        inv_T = (1.0 / (alpha + self.T_values))[self.T_code]
        inv_tx = (1.0 / (alpha + self.tx_values))[self.tx_code]
        grad_alpha = r / alpha * self.total_weight - inner_product(
            w * (r + x), share_alive * inv_T + share_dropped * inv_tx
        )
        grad_a = inner_product(alive_per_x, d_alive_da) + inner_product(dropped_per_x, d_dropped_da)
        grad_b = inner_product(alive_per_x, d_alive_db) + inner_product(dropped_per_x, d_dropped_db)
        return total, np.array([grad_r, grad_alpha, grad_a, grad_b])


def bgnbd_log_likelihood(
    params: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """Per-customer log-likelihood, eq. (6), for parameters (r, alpha, a, b)."""
    r, alpha, a, b = np.asarray(params, dtype=float)
    x, t_x, age = (
        as_float_array(v, n) for v, n in ((frequency, "frequency"), (recency, "recency"), (T, "T"))
    )
    x, t_x, age = np.broadcast_arrays(x, t_x, age)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    u_alive = betaln(a, b + x) - (r + x) * np.log(alpha + age)
    with np.errstate(invalid="ignore"):
        u_dropped = np.where(x > 0, betaln(a + 1, b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return common + np.logaddexp(u_alive, u_dropped)


def bgnbd_probability_alive(
    params: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)).

    Evaluated as a logistic of the log-odds so that long, old histories neither overflow nor lose
    precision.
    """
    r, alpha, a, b = np.asarray(params, dtype=float)
    x, t_x, age = np.broadcast_arrays(
        np.asarray(frequency, float), np.asarray(recency, float), np.asarray(T, float)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds_dropped = (
            np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + age) - np.log(alpha + t_x))
        )
    return np.where(x > 0, expit(-log_odds_dropped), 1.0)


def _expected_if_alive(r: float, alpha: float, a: float, b: float, t, x, age) -> np.ndarray:
    """E[Y(t) | x, T] for a customer known to be alive: eq. (10) without its P(alive) factor.

    Eq. (10) has ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z); Euler's transformation
    turns that product into (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), which stays finite for any x,
    where the original 2F1 overflows beyond a few hundred purchases. ``scipy.special.hyp2f1`` goes
    wrong when c-a-b = x + r - a + 1 lies within about 1e-6 of an integer and z is near 1, and the
    expression has a removable 0/0 at a = 1; in both cases it is evaluated at a -+ 1e-4 and
    averaged, which is exact to about 1e-8 relative.
    """
    z = t / (alpha + age + t)
    log_one_minus_z = np.log(alpha + age) - np.log(alpha + age + t)

    def at(a_value: float) -> np.ndarray:
        hyper = hyp2f1(a_value + b - 1 - r, a_value - 1, a_value + b + x - 1, z)
        bracket = 1.0 - np.exp((a_value - 1) * log_one_minus_z) * hyper
        return (a_value + b + x - 1) / (a_value - 1) * bracket

    gap = r - a
    if abs(gap - round(gap)) < 1e-6 or abs(a - 1.0) < 1e-6:
        return 0.5 * (at(a - 1e-4) + at(a + 1e-4))
    return at(a)


def bgnbd_expected_purchases(
    params: ArrayLike, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected repeat purchases in the next ``t`` time units, eq. (10)."""
    r, alpha, a, b = np.asarray(params, dtype=float)
    t, x, t_x, age = np.broadcast_arrays(
        np.asarray(t, float), np.asarray(frequency, float), np.asarray(recency, float), np.asarray(T, float)
    )
    return _expected_if_alive(r, alpha, a, b, t, x, age) * bgnbd_probability_alive(params, x, t_x, age)


def bgnbd_expected_purchases_new_customer(params: ArrayLike, t: ArrayLike) -> np.ndarray:
    """E[X(t)]: expected repeat purchases in the first ``t`` time units after a first purchase, eq. (9)."""
    r, alpha, a, b = np.asarray(params, dtype=float)
    t = np.asarray(t, dtype=float)
    return _expected_if_alive(r, alpha, a, b, t, np.zeros_like(t), np.zeros_like(t))


class BgNbdFit(ModelFit):
    """Fitted BG/NBD model; parameters r, alpha (in the fit's time unit), a, b."""

    MODEL_NAME: ClassVar[str] = "bgnbd"
    PARAMETER_NAMES: ClassVar[tuple[str, ...]] = PARAMETERS

    def probability_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> np.ndarray:
        return bgnbd_probability_alive(self.param_array(), frequency, recency, T)

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        return bgnbd_expected_purchases(self.param_array(), t, frequency, recency, T)

    def expected_purchases_new_customer(self, t: ArrayLike) -> np.ndarray:
        return bgnbd_expected_purchases_new_customer(self.param_array(), t)

    def expected_purchases_if_alive(self, t: ArrayLike, frequency: ArrayLike, T: ArrayLike) -> np.ndarray:
        """E[Y(t) | x, T, alive at T]; times P(alive) it is :meth:`expected_purchases`. Depends on x
        and T only, so scoring evaluates it once per distinct (x, T)."""
        r, alpha, a, b = self.param_array()
        t, x, age = np.broadcast_arrays(
            np.asarray(t, float), np.asarray(frequency, float), np.asarray(T, float)
        )
        return _expected_if_alive(r, alpha, a, b, t, x, age)

    def log_likelihood_per_customer(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> np.ndarray:
        return bgnbd_log_likelihood(self.param_array(), frequency, recency, T)


def bgnbd_start(histories: Histories) -> np.ndarray:
    """A fixed, data-scaled starting point: r = a = b = 1 and alpha = 1 / (mean purchase rate)."""
    rate = histories.purchase_rate
    alpha = float(np.clip(1.0 / max(rate, 1e-12), 1e-3, 1e6))
    return np.array([1.0, alpha, 1.0, 1.0])


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    time_unit_days: float = 7.0,
    collapse_duplicates: bool = True,
) -> BgNbdFit:
    """Maximum likelihood BG/NBD on customer summaries (as from :func:`summary_from_orders`).

    ``weights`` counts customers per row (for summaries already collapsed). Rows are collapsed to
    distinct (frequency, recency, T) histories first unless ``collapse_duplicates`` is False.
    """
    histories = deduplicate(frequency, recency, T, weights, collapse=collapse_duplicates)
    if histories.customers <= 0:
        raise ValueError("BG/NBD needs at least one customer")
    optimum = maximize(_BgNbdLikelihood(histories), bgnbd_start(histories), histories.customers)
    return BgNbdFit.from_optimum(
        optimum,
        customers_used=int(round(histories.customers)),
        distinct_histories=len(histories),
        time_unit_days=time_unit_days,
    )
