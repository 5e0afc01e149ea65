"""Simulators of the BTYD generative stories, for tests, benchmarks and demo data.

Each draws customers from the model's own assumptions, so a correct fitter must recover the
parameters it was given (within sampling error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipelines.analytics.clv._data import ArrayLike


def _ages(T: ArrayLike, n: int) -> np.ndarray:
    ages = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    if (ages < 0).any():
        raise ValueError("T must be non-negative")
    return ages


def _last_of_first(
    count: np.ndarray, arrivals: np.ndarray, window: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Time of the count-th of ``arrivals`` uniform points on [0, window] (0 where count is 0)."""
    out = np.zeros(len(count))
    some = count > 0
    out[some] = window[some] * rng.beta(count[some], arrivals[some] - count[some] + 1)
    return out


def simulate_bgnbd(
    n_customers: int, r: float, alpha: float, a: float, b: float, T: ArrayLike, seed: int = 0
) -> pd.DataFrame:
    """Customers from the BG/NBD story: frequency, recency, T, plus the hidden ``alive`` flag, ``rate``
    and ``dropout_probability``."""
    rng = np.random.default_rng(seed)
    ages = _ages(T, n_customers)
    rate = rng.gamma(r, 1.0 / alpha, n_customers)
    dropout = rng.beta(a, b, n_customers)
    arrivals = rng.poisson(rate * ages)  # purchases in (0, T] had she never dropped out
    dies_after = rng.geometric(dropout)  # she drops out right after this repeat purchase
    frequency = np.minimum(arrivals, dies_after)
    return pd.DataFrame(
        {
            "frequency": frequency.astype("int64"),
            "recency": _last_of_first(frequency, arrivals, ages, rng),
            "T": ages,
            "alive": arrivals < dies_after,
            "rate": rate,
            "dropout_probability": dropout,
        }
    )


def simulate_pareto_nbd(
    n_customers: int, r: float, alpha: float, s: float, beta: float, T: ArrayLike, seed: int = 0
) -> pd.DataFrame:
    """Customers from the Pareto/NBD story: frequency, recency, T, plus ``alive``, ``rate``, ``lifetime``."""
    rng = np.random.default_rng(seed)
    ages = _ages(T, n_customers)
    rate = rng.gamma(r, 1.0 / alpha, n_customers)
    death_rate = rng.gamma(s, 1.0 / beta, n_customers)
    lifetime = rng.exponential(1.0 / death_rate)
    window = np.minimum(lifetime, ages)
    frequency = rng.poisson(rate * window)
    return pd.DataFrame(
        {
            "frequency": frequency.astype("int64"),
            "recency": _last_of_first(frequency, frequency, window, rng),
            "T": ages,
            "alive": lifetime > ages,
            "rate": rate,
            "lifetime": lifetime,
        }
    )


def simulate_gamma_gamma(frequency: ArrayLike, p: float, q: float, gamma: float, seed: int = 0) -> np.ndarray:
    """Mean value of each customer's ``frequency`` transactions under Gamma-Gamma (0 where frequency is 0)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(frequency, dtype=float)
    scale_rate = rng.gamma(q, 1.0 / gamma, len(x))  # nu: the customer's transaction-value rate
    mean = np.zeros(len(x))
    some = x > 0
    # The mean of x Gamma(p, nu) values is Gamma(p x, nu x).
    mean[some] = rng.gamma(p * x[some], 1.0 / (scale_rate[some] * x[some]))
    return mean


def simulate_orders(
    n_customers: int,
    start: str | pd.Timestamp,
    end: str | pd.Timestamp,
    *,
    r: float = 0.8,
    alpha: float = 8.0,
    a: float = 0.8,
    b: float = 4.0,
    p: float = 6.0,
    q: float = 4.0,
    gamma: float = 15.0,
    time_unit_days: float = 7.0,
    cancelled_share: float = 0.05,
    refund_share: float = 0.03,
    seed: int = 0,
) -> pd.DataFrame:
    """An order log in the core.orders shape from BG/NBD purchasing with Gamma-Gamma spend.

    First purchases are spread uniformly over [start, end); rates are per ``time_unit_days``. Beside
    the purchases (status completed), a share of extra orders are cancelled, and a share of purchases
    are followed by a refund record (status refunded, negative total, is_refund true), so code reading
    the log must tell purchases from the rest. Columns: order_id, customer_id, ordered_at
    (datetime64[us, UTC]), status, total_amount_reporting, is_refund.
    """
    rng = np.random.default_rng(seed)
    start_ts, end_ts = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    span_days = (end_ts - start_ts).total_seconds() / 86_400
    first = rng.uniform(0, span_days, n_customers)
    window = (span_days - first) / time_unit_days
    rate = rng.gamma(r, 1.0 / alpha, n_customers)
    arrivals = rng.poisson(rate * window)
    repeats = np.minimum(arrivals, rng.geometric(rng.beta(a, b, n_customers)))
    value_rate = rng.gamma(q, 1.0 / gamma, n_customers)

    # Repeat purchases are the first `repeats` of `arrivals` uniform times in the window.
    owner = np.repeat(np.arange(n_customers), arrivals)
    offsets = rng.uniform(0, 1, len(owner)) * window[owner]
    order = np.lexsort((offsets, owner))
    owner, offsets = owner[order], offsets[order]
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(arrivals) - arrivals, arrivals)
    kept = rank < repeats[owner]
    customer = np.concatenate([np.arange(n_customers), owner[kept]])
    day = np.concatenate([first, first[owner[kept]] + offsets[kept] * time_unit_days])
    amount = np.round(rng.gamma(p, 1.0 / value_rate[customer]), 2)

    n_purchases = len(customer)
    refunded = rng.random(n_purchases) < refund_share
    cancelled_of = rng.choice(n_purchases, int(round(cancelled_share * n_purchases)), replace=False)
    all_customer = np.concatenate([customer, customer[refunded], customer[cancelled_of]])
    all_day = np.concatenate(
        [day, np.minimum(day[refunded] + rng.uniform(1, 20, refunded.sum()), span_days), day[cancelled_of]]
    )
    all_amount = np.concatenate([amount, -amount[refunded], amount[cancelled_of]])
    status = np.array(
        ["completed"] * n_purchases + ["refunded"] * int(refunded.sum()) + ["cancelled"] * len(cancelled_of)
    )
    micros = (all_day * 86_400e6).astype("int64")
    ordered_at = pd.DatetimeIndex(start_ts.as_unit("us") + pd.to_timedelta(micros, unit="us"))
    frame = pd.DataFrame(
        {
            "customer_id": pd.array([f"C{c:07d}" for c in all_customer], dtype="str"),
            "ordered_at": ordered_at.as_unit("us"),
            "status": pd.array(status, dtype="str"),
            "total_amount_reporting": all_amount,
            "is_refund": status == "refunded",
        }
    )
    frame = frame[frame["ordered_at"] < end_ts].sort_values(["ordered_at", "customer_id"], kind="stable")
    frame.insert(0, "order_id", pd.array([f"O{i:08d}" for i in range(len(frame))], dtype="str"))
    return frame.reset_index(drop=True)
