"""Loyalty program members and regular customers (docs/marts.md, "Loyalty and regular customers").

- A **loyalty member** holds a declared loyalty identifier (``loyalty.identifiers``, by default the
  ``loyalty_card`` that sources declare under ``identifiers:``) on any of her source records.
- A **regular customer** made at least ``loyalty.regular_min_purchases`` purchases (completed, not
  refunds) in the ``loyalty.regular_window_days`` days up to the as-of day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_pipelines.analytics.activity import MICROS_PER_DAY, as_of_micros, bounded_orders, customer_index
from crm_pipelines.analytics.cycle_settings import LoyaltySettings


def loyalty_members_query(
    identifiers: sa.TableClause, identity_map: sa.TableClause, settings: LoyaltySettings
) -> sa.Select:
    """customer_id of every customer whose records hold one of the loyalty identifiers (set-based, in
    the warehouse: staging.customer_identifiers joined to core.customer_identity_map)."""
    i, m = identifiers.alias("i"), identity_map.alias("m")
    return (
        sa.select(m.c.customer_id)
        .select_from(i.join(m, sa.and_(i.c.source == m.c.source, i.c.source_record_id == m.c.source_record_id)))
        .where(i.c.identifier_type.in_(settings.identifiers))
        .where(i.c.identifier_value.is_not(None))
        .where(m.c.customer_id.is_not(None))
        .distinct()
    )


def regular_customers(
    customers: pd.DataFrame, orders: pd.DataFrame, as_of: pd.Timestamp, settings: LoyaltySettings
) -> np.ndarray:
    """Per row of ``customers``: True for a regular customer."""
    index = customer_index(customers)
    facts = bounded_orders(orders, index, as_of)
    since = as_of_micros(as_of) - settings.regular_window_days * MICROS_PER_DAY
    recent = facts["is_purchase"].to_numpy() & (facts["micros"].to_numpy() > since)
    counts = np.bincount(facts["code"].to_numpy()[recent], minlength=len(index))
    return counts >= settings.regular_min_purchases


def loyalty_columns(
    customers: pd.DataFrame, orders: pd.DataFrame, members: set[str], as_of: pd.Timestamp, settings: LoyaltySettings
) -> pd.DataFrame:
    """customer_id, loyalty_member, regular_customer: one row per customer (joins customer_360)."""
    ids = customers["customer_id"].astype("str")
    return pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "loyalty_member": ids.isin(members).to_numpy(dtype=bool),
            "regular_customer": regular_customers(customers, orders, as_of, settings),
        }
    )


def daily_loyalty_kpis(
    dates: pd.Series, orders: pd.DataFrame, customers: pd.DataFrame, members: set[str], settings: LoyaltySettings
) -> pd.DataFrame:
    """Per day of ``dates``: loyalty members known and regular customers (by that day's window).

    Members are counted as of today's identifiers (the identity tables keep no history of who held a
    card when); regular customers follow each day's own window.
    """
    index = customer_index(customers)
    last = pd.Timestamp(dates.max()).tz_localize("UTC") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    facts = bounded_orders(orders, index, last)
    days = pd.to_datetime(dates).to_numpy(dtype="datetime64[D]").astype("int64")
    purchases = facts.loc[facts["is_purchase"], ["code", "day"]].sort_values(["code", "day"])
    code, day = purchases["code"].to_numpy(), purchases["day"].to_numpy()
    k, window = settings.regular_min_purchases, settings.regular_window_days
    regulars = np.zeros(len(days), dtype="int64")
    if len(day) >= k and len(days):
        # A customer is regular on day d when her k-th latest purchase up to d lies within the window:
        # each purchase j with k-1 earlier purchases of hers makes her regular on the days
        # [day_j, day_(j-k+1) + window), clipped at her next such interval so no day counts twice;
        # a difference array over the days then counts regulars per day without a customer x day grid.
        same = code[k - 1 :] == code[: len(code) - k + 1]
        begin = day[k - 1 :][same]
        stop = day[: len(day) - k + 1][same] + window
        owner = code[k - 1 :][same]
        follows = np.r_[owner[1:] == owner[:-1], False]
        next_begin = np.r_[begin[1:], 0]
        stop = np.where(follows, np.minimum(stop, next_begin), stop)
        valid = stop > begin
        lo, hi = int(days.min()), int(days.max()) + 1
        diff = np.zeros(hi - lo + 1, dtype="int64")
        np.add.at(diff, np.clip(begin[valid], lo, hi) - lo, 1)
        np.add.at(diff, np.clip(stop[valid], lo, hi) - lo, -1)
        regulars = np.cumsum(diff)[days - lo]
    return pd.DataFrame(
        {"loyalty_members": len(members & set(index)), "regular_customers": regulars}, index=dates.index
    )
