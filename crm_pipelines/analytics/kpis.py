"""marts.crm_kpis: one row per day of CRM KPIs, computed with whole-array arithmetic over day numbers.

Definitions (docs/marts.md, "KPI definitions", is the reference; windows are the keyword defaults):

- active_customers: customers with a purchase in the 30 days ending that day.
- purchasing_customers / new_customers / repeat_customers: customers with a purchase that day; of them,
  those whose first purchase ever is that day, and those who had purchased on an earlier day.
- retention_rate: of the customers active in the previous 90-day window (days d-179..d-90), the share
  also active in the current one (d-89..d); churn_rate = 1 - retention_rate.
- revenue: net revenue of the day (purchases minus negative refund records, by order date).
- avg_satisfaction, median_first_response_hours, resolved_share: over tickets of the trailing 30 days.
- nps: % promoters (9-10) - % detractors (0-6) of survey answers in the trailing 90 days, -100..100.
- email_conversion_rate: of (customer, day) email clicks in the 30 days ending 7 days before that day,
  the share followed by a purchase within 7 days of the click.

"Distinct customers active in a trailing window" is computed without a customer x day matrix: each
purchase day covers the days until the window passes it or the customer's next purchase day begins, so
coverage pieces never overlap and a running sum of +1/-1 marks counts each customer once per day.
The retained count uses |prev ∩ cur| = |prev| + |cur| - |prev ∪ cur|, and prev ∪ cur is one 180-day window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipelines.analytics.activity import (
    MICROS_PER_DAY,
    MICROS_PER_HOUR,
    as_of_day,
    as_of_micros,
    as_of_timestamp,
    bounded_orders,
    customer_codes,
    customer_index,
    is_value,
    normalized_text,
    sorted_unique,
    utc_micros,
)

PROMOTER_MIN = 9
DETRACTOR_MAX = 6


def _trailing_sum(daily: np.ndarray, window: int) -> np.ndarray:
    """Sum over the ``window`` days ending at each day."""
    running = np.concatenate([[0.0], np.cumsum(daily, dtype="float64")])
    ends = np.arange(1, len(daily) + 1)
    return running[ends] - running[np.maximum(ends - window, 0)]


def _lagged(values: np.ndarray, lag: int) -> np.ndarray:
    out = np.zeros_like(values)
    if lag < len(values):
        out[lag:] = values[: len(values) - lag]
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _distinct_active(code: np.ndarray, day: np.ndarray, window: int, length: int) -> np.ndarray:
    """Per day 0..length-1: customers with an event in the ``window`` days ending that day.

    ``code`` and ``day`` are sorted by (code, day) and hold distinct pairs with 0 <= day < length.
    """
    same_next = np.zeros(len(code), dtype=bool)
    same_next[:-1] = code[1:] == code[:-1]
    next_day = np.where(same_next, np.roll(day, -1), np.iinfo("int64").max)
    end = np.minimum(np.minimum(day + window, next_day), length)
    marks = np.bincount(day, minlength=length + 1) - np.bincount(end, minlength=length + 1)
    return np.cumsum(marks)[:length]


def crm_kpis(
    customers: pd.DataFrame,
    orders: pd.DataFrame,
    tickets: pd.DataFrame,
    events: pd.DataFrame,
    surveys: pd.DataFrame,
    as_of: pd.Timestamp,
    days: int = 365,
    active_window_days: int = 30,
    retention_window_days: int = 90,
    service_window_days: int = 30,
    nps_window_days: int = 90,
    conversion_days: int = 7,
    conversion_window_days: int = 30,
) -> pd.DataFrame:
    """One row per day for the ``days`` days ending on the as-of day (columns in docs/marts.md)."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    as_of = as_of_timestamp(as_of)
    index = customer_index(customers)
    today = as_of_day(as_of)
    first_output = today - days + 1
    lookback = max(
        2 * retention_window_days,
        active_window_days,
        service_window_days,
        nps_window_days,
        conversion_window_days + conversion_days,
    )
    base = first_output - lookback
    length = today - base + 1

    facts = bounded_orders(orders, index, as_of)
    purchases = facts.loc[facts["is_purchase"]]
    p_code = purchases["code"].to_numpy()
    p_day = purchases["day"].to_numpy() - base
    in_range = p_day >= 0

    pair_key = sorted_unique(p_code[in_range] * length + p_day[in_range])
    pair_code, pair_day = pair_key // length, pair_key % length
    purchasing = np.bincount(pair_day, minlength=length)
    active = _distinct_active(pair_code, pair_day, active_window_days, length)
    # Retained = |previous ∩ current| = |previous| + |current| - |previous ∪ current|, and the union of
    # two adjacent windows is one window twice as long.
    current = _distinct_active(pair_code, pair_day, retention_window_days, length)
    either = _distinct_active(pair_code, pair_day, 2 * retention_window_days, length)
    previous = _lagged(current, retention_window_days)
    retained = previous + current - either

    first_day = pd.Series(p_day).groupby(p_code).min()  # over all history, not just the range
    first_days = first_day.to_numpy()
    new = np.bincount(first_days[first_days >= 0], minlength=length)

    f_day = facts["day"].to_numpy() - base
    f_ok = f_day >= 0
    revenue = np.bincount(f_day[f_ok], weights=facts["revenue_effect"].to_numpy()[f_ok], minlength=length)
    order_count = np.bincount(p_day[in_range], minlength=length)

    customers_total = _customers_known(customers, first_day, base, length)
    service = _service_kpis(tickets, index, as_of, base, length, service_window_days)
    nps, responses = _nps(surveys, index, as_of, base, length, nps_window_days)
    conversion = _email_conversion(
        events, index, purchases, as_of, base, length, conversion_days, conversion_window_days
    )

    retention_rate = _ratio(retained, previous)
    out = slice(lookback, length)
    kpis = pd.DataFrame(
        {
            "date": np.arange(first_output, today + 1).astype("datetime64[D]").astype("datetime64[us]"),
            "customers_total": customers_total[out],
            "active_customers": active[out],
            "purchasing_customers": purchasing[out],
            "new_customers": new[out],
            "repeat_customers": (purchasing - new)[out],
            "orders": order_count[out],
            "revenue": revenue[out],
            "retention_rate": retention_rate[out],
            "churn_rate": 1.0 - retention_rate[out],
            **{name: values[out] for name, values in service.items()},
            "nps": nps[out],
            "nps_responses": responses[out],
            "email_conversion_rate": conversion[out],
        }
    )
    counts = [c for c in kpis.columns if c not in ("date", "revenue") and kpis[c].dtype.kind in "iu"]
    return kpis.astype({c: "int64" for c in counts})


def _customers_known(
    customers: pd.DataFrame, first_purchase: pd.Series, base: int, length: int
) -> np.ndarray:
    """Customers known by each day: created, or first purchased if earlier, on or before it.

    A customer with neither date counts from the start.
    """
    unknown = np.iinfo("int64").max // 4
    since = np.full(len(customers), unknown, dtype="int64")
    if "created_at" in customers:
        created, known = utc_micros(customers["created_at"])
        since = np.where(known, created // MICROS_PER_DAY - base, unknown)
    bought = first_purchase.index.to_numpy()
    since[bought] = np.minimum(since[bought], first_purchase.to_numpy())
    since = np.where(since == unknown, -1, since)
    before = int((since < 0).sum())
    return before + np.cumsum(np.bincount(since[(since >= 0) & (since < length)], minlength=length))


def _service_kpis(
    tickets: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, base: int, length: int, window: int
) -> dict[str, np.ndarray]:
    """tickets_opened, avg_satisfaction, median_first_response_hours, resolved_share per day."""
    limit = as_of_micros(as_of)
    code = customer_codes(tickets, index)
    opened, opened_ok = utc_micros(tickets["opened_at"])
    keep = opened_ok & (opened <= limit) & (code >= 0)
    opened = opened[keep]
    o_day = opened // MICROS_PER_DAY - base
    resolved, resolved_ok = utc_micros(tickets["resolved_at"])
    resolved, resolved_ok = resolved[keep], resolved_ok[keep] & (resolved[keep] <= limit)
    closed = is_value(normalized_text(tickets["status"]), "resolved", "closed")[keep]
    responded, responded_ok = utc_micros(tickets["first_response_at"])
    responded = responded[keep]
    responded_ok = responded_ok[keep] & (responded <= limit) & (responded >= opened)
    score = pd.to_numeric(tickets["satisfaction_score"], errors="coerce").to_numpy(float)[keep]

    in_range = o_day >= 0
    opened_daily = np.bincount(o_day[in_range], minlength=length)
    opened_window = _trailing_sum(opened_daily, window)

    # Satisfaction is given when a ticket is resolved (or, without a resolution time, when opened).
    r_day = np.where(resolved_ok, resolved // MICROS_PER_DAY - base, o_day)
    rated = ~np.isnan(score) & (r_day >= 0)
    score_sum = np.bincount(r_day[rated], weights=score[rated], minlength=length)
    score_count = np.bincount(r_day[rated], minlength=length)
    satisfaction = _ratio(_trailing_sum(score_sum, window), _trailing_sum(score_count, window))

    # A ticket opened on day o and resolved on day r counts as "resolved" for days max(o, r)..o+window-1.
    # Without a resolution time, a resolved/closed status counts from the day it was opened.
    is_resolved = resolved_ok | closed
    start = np.maximum(o_day, np.where(resolved_ok, resolved // MICROS_PER_DAY - base, o_day))
    end = np.minimum(o_day + window, length)
    counted = is_resolved & in_range & (start < end)
    marks = np.bincount(start[counted], minlength=length + 1) - np.bincount(
        end[counted], minlength=length + 1
    )
    resolved_share = _ratio(np.cumsum(marks)[:length], opened_window)

    # Median response time: a moving median has no running-sum trick; tickets sorted by opening day make
    # each window a contiguous slice, so one small median per day stays cheap.
    order = np.argsort(o_day, kind="stable")
    o_sorted = o_day[order]
    hours = ((responded - opened) / MICROS_PER_HOUR)[order]
    fr_day = np.where(responded_ok, responded // MICROS_PER_DAY - base, np.iinfo("int64").max)[order]
    median_hours = np.full(length, np.nan)
    lo = np.searchsorted(o_sorted, np.arange(length) - window + 1, side="left")
    hi = np.searchsorted(o_sorted, np.arange(length), side="right")
    for d in range(length - 1, -1, -1):
        if hi[d] == lo[d]:
            continue
        answered = fr_day[lo[d] : hi[d]] <= d
        if answered.any():
            median_hours[d] = float(np.median(hours[lo[d] : hi[d]][answered]))
    return {
        "tickets_opened": opened_daily,
        "avg_satisfaction": satisfaction,
        "median_first_response_hours": median_hours,
        "resolved_share": resolved_share,
    }


def _nps(
    surveys: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, base: int, length: int, window: int
) -> tuple[np.ndarray, np.ndarray]:
    code = customer_codes(surveys, index)
    answered, answered_ok = utc_micros(surveys["responded_at"])
    score = pd.to_numeric(surveys["nps_score"], errors="coerce").to_numpy(float)
    day = answered // MICROS_PER_DAY - base
    keep = answered_ok & (answered <= as_of_micros(as_of)) & (code >= 0) & ~np.isnan(score) & (day >= 0)
    day, score = day[keep], score[keep]
    responses = _trailing_sum(np.bincount(day, minlength=length), window)
    promoters = _trailing_sum(np.bincount(day[score >= PROMOTER_MIN], minlength=length), window)
    detractors = _trailing_sum(np.bincount(day[score <= DETRACTOR_MAX], minlength=length), window)
    return 100.0 * _ratio(promoters - detractors, responses), responses.astype("int64")


def _email_conversion(
    events: pd.DataFrame,
    index: pd.Index,
    purchases: pd.DataFrame,
    as_of: pd.Timestamp,
    base: int,
    length: int,
    conversion_days: int,
    window: int,
) -> np.ndarray:
    code = customer_codes(events, index)
    occurred, occurred_ok = utc_micros(events["occurred_at"])
    is_click = is_value(normalized_text(events["event_type"]), "click")
    keep = is_click & occurred_ok & (occurred <= as_of_micros(as_of)) & (code >= 0)
    clicks = pd.DataFrame({"code": code[keep], "micros": occurred[keep]})
    clicks["day"] = clicks["micros"] // MICROS_PER_DAY - base
    # One click per customer and day: the first, which gives the purchase the longest chance to follow.
    clicks = clicks.loc[clicks["day"] >= 0].sort_values(["code", "micros"]).drop_duplicates(["code", "day"])
    bought = pd.DataFrame(
        {"code": purchases["code"].to_numpy(), "micros": purchases["micros"].to_numpy()}
    ).assign(purchase=True)
    matched = pd.merge_asof(
        clicks.sort_values("micros"),
        bought.sort_values("micros"),
        on="micros",
        by="code",
        direction="forward",
        tolerance=conversion_days * MICROS_PER_DAY,
    )
    day = matched["day"].to_numpy()
    converted = matched["purchase"].fillna(False).to_numpy(dtype=bool)
    click_window = _lagged(_trailing_sum(np.bincount(day, minlength=length), window), conversion_days)
    converted_window = _lagged(
        _trailing_sum(np.bincount(day[converted], minlength=length), window), conversion_days
    )
    return _ratio(converted_window, click_window)
