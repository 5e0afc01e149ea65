"""Maximum likelihood on log-parameters with L-BFGS-B, and standard errors from the Hessian.

Every model here hands in one function: parameters (natural scale) -> (total log-likelihood, its
gradient with respect to the parameters). This module optimises on log-parameters, so positivity
needs no constraint, from a fixed starting point, so the same data always gives the same estimates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

LogLikelihood = Callable[[np.ndarray], tuple[float, np.ndarray]]

# Log-parameters stay in [-LOG_BOUND, LOG_BOUND]: exp(±25) covers every sensible time unit and
# keeps the special functions finite while the optimiser explores.
LOG_BOUND = 25.0
# Converged when the largest gradient of the per-customer log-likelihood (w.r.t. log-parameters) is
# this small, whatever L-BFGS-B says: at an optimum reached to machine precision its line search can
# find no further decrease and stops with "ABNORMAL", which says nothing about the fit (Gamma-Gamma on
# CDNOW-like data stopped so with a gradient of 2e-9 per customer and the published estimates).
GRADIENT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Optimum:
    params: np.ndarray
    std_errors: np.ndarray
    log_likelihood: float
    converged: bool
    message: str
    iterations: int
    function_evaluations: int
    gradient_norm: float
    """Largest absolute gradient of the total log-likelihood w.r.t. the log-parameters at the optimum."""


def maximize(log_likelihood: LogLikelihood, start: np.ndarray, total_weight: float) -> Optimum:
    """Maximise ``log_likelihood`` from ``start`` (natural scale); standard errors by the delta method.

    The objective handed to L-BFGS-B is the negative log-likelihood divided by the number of customers,
    only so that its tolerances mean the same for 2,000 or 2,000,000 customers; the reported
    log-likelihood is the true total.
    """
    scale = 1.0 / max(float(total_weight), 1.0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(theta)
        value, gradient = log_likelihood(params)
        if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
            # A step into numerically impossible territory: make it unattractive, never fatal.
            return 1e300, np.zeros_like(theta)
        return -value * scale, -(gradient * params) * scale

    theta0 = np.log(np.asarray(start, dtype=float))
    # L-BFGS-B calls BLAS on tiny matrices; OpenBLAS worker threads then spin against each other and
    # against other processes (measured 6 ms instead of 0.05 ms per iteration on two busy cores).
    with threadpool_limits(limits=1, user_api="blas"):
        return _maximize(objective, log_likelihood, theta0, scale)


def _maximize(objective, log_likelihood: LogLikelihood, theta0: np.ndarray, scale: float) -> Optimum:
    result = minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(theta0),
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 20},
    )
    params = np.exp(result.x)
    value, gradient = log_likelihood(params)
    hessian_log = _hessian_of_negative_ll(log_likelihood, result.x)
    std_errors = _delta_method_std_errors(hessian_log, params)
    gradient_norm = float(np.max(np.abs(gradient * params)))
    converged, message = judge_convergence(bool(result.success), str(result.message), gradient_norm * scale)
    return Optimum(
        params=params,
        std_errors=std_errors,
        log_likelihood=float(value),
        converged=converged,
        message=message,
        iterations=int(result.nit),
        function_evaluations=int(result.nfev),
        gradient_norm=gradient_norm,
    )


def judge_convergence(success: bool, message: str, gradient_per_customer: float) -> tuple[bool, str]:
    """Converged when L-BFGS-B says so or the gradient per customer is flat (``GRADIENT_TOLERANCE``),
    whatever its line search said; the message then says which."""
    flat = bool(np.isfinite(gradient_per_customer) and gradient_per_customer <= GRADIENT_TOLERANCE)
    if flat and not success:
        message = (f"converged: gradient {gradient_per_customer:.1e} per customer <= {GRADIENT_TOLERANCE:g} "
                   f"(L-BFGS-B: {message})")
    return success or flat, message


def _hessian_of_negative_ll(log_likelihood: LogLikelihood, theta: np.ndarray) -> np.ndarray:
    """Central differences of the analytic gradient on log-parameters, symmetrised."""
    k = len(theta)
    hessian = np.empty((k, k))
    for j in range(k):
        step = 1e-5 * max(1.0, abs(theta[j]))
        columns = []
        for sign in (1.0, -1.0):
            shifted = theta.copy()
            shifted[j] += sign * step
            params = np.exp(shifted)
            _, gradient = log_likelihood(params)
            columns.append(-(gradient * params))
        hessian[:, j] = (columns[0] - columns[1]) / (2 * step)
    return 0.5 * (hessian + hessian.T)


def _delta_method_std_errors(hessian_log: np.ndarray, params: np.ndarray) -> np.ndarray:
    """SE(param) = param * SE(log param); NaN where the Hessian is not positive definite."""
    try:
        np.linalg.cholesky(hessian_log)
        covariance_log = np.linalg.inv(hessian_log)
    except np.linalg.LinAlgError:
        return np.full(len(params), np.nan)
    return params * np.sqrt(np.clip(np.diag(covariance_log), 0.0, None))
