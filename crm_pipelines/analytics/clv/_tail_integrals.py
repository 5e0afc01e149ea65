"""The Pareto/NBD death-time integral and its weighted means, by tanh-sinh quadrature.

For a customer with x repeat purchases the Pareto/NBD likelihood needs

    J(t) = integral from t to infinity of (alpha+tau)^-(r+x) (beta+tau)^-(s+1) dtau

at t = t_x and t = T, and its gradient needs the means of log(alpha+tau), log(beta+tau),
1/(alpha+tau) and 1/(beta+tau) under the density proportional to that integrand.

Closed form: with m = max(alpha, beta) carrying exponent p_m, n = min(alpha, beta) carrying p_n,
a = r + s + x and Y = (m-n)/(m+t),

    J(t) = (m+t)^-a / a * 2F1(a, p_n; a+1; Y)        (Fader & Hardie 2005, eq. 22 and 23).

``scipy.special.hyp2f1`` is not reliable here: for Y close to 1 it returns nan, inf or plainly
wrong values when c-a-b is within about 1e-9 of an integer (r = 1 and whole x at the usual starting
point) or when a parameter exceeds about 170 (customers with hundreds of purchases); for example
hyp2f1(1, 1.3, 3.3, 0.9983) is inf. So J is computed from Euler's integral
2F1(a, p_n; a+1; Y) = a * int_0^1 u^(a-1) (1 - Y u)^(-p_n) du, substituting 1 - Y u = exp(zeta - L)
with L = log((m+t)/(n+t)):

    J(t) = exp(-a log(m - n) + (p_n - 1) L) * G,
    G = int_0^L exp((1-p_n) zeta) (1 - exp(zeta-L))^(a-1) dzeta.

zeta = 0 is tau = t; zeta = L is tau = infinity. The integrand of G is smooth inside (0, L); near
zeta = 0 it may fall steeply (p_n large), which is why this variable is used: where it falls, the
range is cut at 50 / (p_n - 1) e-folds, beyond which the rest is below 1e-21 of the total. Near
zeta = L it behaves like (L - zeta)^(a-1), singular when a < 1; there the upper half of the range
is integrated in w with L - zeta = (L/2) w^(1/a), which removes the singularity exactly. Each piece
uses the same 87-node tanh-sinh rule, whose nodes crowd doubly exponentially into both ends.
Checked against 40-digit references over r, s in [0.02, 20], alpha, beta in [3e-4, 3e3], x up to
800 and t up to 300: log J agrees to 1e-10 relative at worst (1e-16 typically), the weighted means
to 1e-8 at worst.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_expit

_STEP = 1.0 / 12.0
_HALF_WIDTH = 3.6
_CUT_EFOLDS = 50.0
_MIN_L = 1e-12
_CHUNK_ROWS = 8_192


def _tanh_sinh_rule() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nodes s on (0, 1) as (s, log s, 1 - s) and log-weights, for s = expit(pi sinh u)."""
    u = np.arange(-_HALF_WIDTH, _HALF_WIDTH + _STEP / 2, _STEP)
    stretched = np.pi * np.sinh(u)
    log_s = log_expit(stretched)
    log_one_minus_s = log_expit(-stretched)
    # ds/du = pi cosh(u) s (1 - s), in logs so that it stays exact where s (1 - s) underflows.
    log_weights = np.log(_STEP * np.pi * np.cosh(u)) + log_s + log_one_minus_s
    return np.exp(log_s), log_s, np.exp(log_one_minus_s), log_weights


_S, _LOG_S, _ONE_MINUS_S, _LOG_W = _tanh_sinh_rule()
MEAN_KEYS = ("log_alpha_tau", "log_beta_tau", "inv_alpha_tau", "inv_beta_tau")


def tail_integrals(
    params: np.ndarray, x: np.ndarray, t: np.ndarray, *, with_means: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """log J(t) per row and, with ``with_means``, the four weighted means (see module docstring)."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(t, dtype=float)
    log_j = np.empty(len(x))
    means = {key: np.empty(len(x)) for key in MEAN_KEYS} if with_means else None
    for start in range(0, len(x), _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        chunk_log_j, chunk_means = _chunk(params, x[rows], t[rows], with_means)
        log_j[rows] = chunk_log_j
        if means is not None and chunk_means is not None:
            for key in MEAN_KEYS:
                means[key][rows] = chunk_means[key]
    return log_j, means


def _log_one_minus_exp_minus(gap: np.ndarray) -> np.ndarray:
    """log(1 - exp(-gap)), accurate for tiny and large gaps."""
    with np.errstate(divide="ignore"):
        return np.log(-np.expm1(-gap))


def _log_one_minus_exp_minus_from_log(log_gap: np.ndarray) -> np.ndarray:
    """log(1 - exp(-gap)) given log(gap), finite even where gap itself underflows to 0."""
    gap = np.exp(log_gap)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap < 1e-8, log_gap - gap / 2, np.log(-np.expm1(-gap)))


def _piece(
    log_f: np.ndarray, gap: np.ndarray, log_one_minus: np.ndarray, with_means: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """log of the integral over one piece and the density-weighted sums the means are made of.

    With u = (m+t)/(m+tau) and 1 - Y u = exp(-gap): log(m+tau) = log(m+t) + log Y - log(1-exp(-gap)),
    log(n+tau) = log(m+tau) - gap, 1/(m+tau) = (1-exp(-gap)) / ((m+t) Y) and
    1/(n+tau) = expm1(gap) / ((m+t) Y). So four sums per row carry all four means.
    """
    peak = log_f.max(axis=1, keepdims=True)
    weight = np.exp(log_f - peak)
    total = weight.sum(axis=1)
    log_integral = peak[:, 0] + np.log(total)
    if not with_means:
        return log_integral, None
    weight /= total[:, None]
    one_minus = np.exp(log_one_minus)
    sums = np.stack(
        [
            (weight * log_one_minus).sum(axis=1),
            (weight * gap).sum(axis=1),
            (weight * one_minus).sum(axis=1),
            # expm1(gap) = (1 - exp(-gap)) exp(gap); gap beyond 700 only where the weight is nil.
            (weight * (one_minus * np.exp(np.minimum(gap, 700.0)))).sum(axis=1),
        ]
    )
    return log_integral, sums


def _chunk(
    params: np.ndarray, x: np.ndarray, t: np.ndarray, with_means: bool
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    r, alpha, s, beta = params
    alpha_is_larger = alpha >= beta
    m, n = (alpha, beta) if alpha_is_larger else (beta, alpha)
    p_n = np.full_like(x, s + 1.0) if alpha_is_larger else r + x
    a = r + s + x
    log_m_t = np.log(m + t)
    # alpha == beta makes L = 0 exactly; a vanishing L changes J by a relative 1e-12 at most.
    big_l = np.maximum(log_m_t - np.log(n + t), _MIN_L)
    log_y = _log_one_minus_exp_minus(big_l)  # log((m-n)/(m+t)), also when m == n

    cut = np.where(p_n > 1.0, _CUT_EFOLDS / np.maximum(p_n - 1.0, 1e-300), np.inf)
    singular_end = a < 1.0
    span = np.minimum(np.where(singular_end, big_l / 2, big_l), cut)
    # Piece A: zeta = span * s on the plain rule.
    gap_a = (big_l - span)[:, None] + span[:, None] * _ONE_MINUS_S[None, :]
    log_one_minus_a = _log_one_minus_exp_minus(gap_a)
    log_f_a = (np.log(span)[:, None] + _LOG_W[None, :]) + (
        (1.0 - p_n)[:, None] * (span[:, None] * _S[None, :]) + (a - 1.0)[:, None] * log_one_minus_a
    )
    log_g, sums = _piece(log_f_a, gap_a, log_one_minus_a, with_means)

    # Piece B (a < 1 and not cut away): L - zeta = (L/2) w^(1/a), w = s. Only those rows pay for it.
    use_b = singular_end & (cut > big_l / 2)
    if use_b.any():
        a_b, half_b, l_b = a[use_b], big_l[use_b] / 2, big_l[use_b]
        log_gap_b = np.log(half_b)[:, None] + _LOG_S[None, :] / a_b[:, None]
        gap_b = np.exp(log_gap_b)
        log_one_minus_b = _log_one_minus_exp_minus_from_log(log_gap_b)
        log_f_b = (
            (a_b * np.log(half_b) - np.log(a_b))[:, None]
            + _LOG_W[None, :]
            + (1.0 - p_n[use_b])[:, None] * (l_b[:, None] - gap_b)
            + (a_b - 1.0)[:, None] * (log_one_minus_b - log_gap_b)
        )
        log_g_b, sums_b = _piece(log_f_b, gap_b, log_one_minus_b, with_means)
        combined = np.logaddexp(log_g[use_b], log_g_b)
        if sums is not None and sums_b is not None:
            share_a = np.exp(log_g[use_b] - combined)
            sums[:, use_b] = share_a * sums[:, use_b] + (1.0 - share_a) * sums_b
        log_g = log_g.copy()
        log_g[use_b] = combined

    log_j = -a * (log_m_t + log_y) + (p_n - 1.0) * big_l + log_g
    if sums is None:
        return log_j, None
    mean_log_one_minus, mean_gap, mean_one_minus, mean_expm1_gap = sums
    scale = np.exp(-(log_m_t + log_y))  # 1 / ((m+t) Y)
    log_larger = log_m_t + log_y - mean_log_one_minus
    larger = {"log": log_larger, "inv": scale * mean_one_minus}
    smaller = {"log": log_larger - mean_gap, "inv": scale * mean_expm1_gap}
    of_alpha, of_beta = (larger, smaller) if alpha_is_larger else (smaller, larger)
    return log_j, {
        "log_alpha_tau": of_alpha["log"],
        "log_beta_tau": of_beta["log"],
        "inv_alpha_tau": of_alpha["inv"],
        "inv_beta_tau": of_beta["inv"],
    }
