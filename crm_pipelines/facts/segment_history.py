"""The first run's backfill of marts.customer_segment_history: every past month end at once.

The warehouse sums each customer's orders per period (``analytics.segment_backfill.month_bounds``: the
spans between the month ends, their months' first days and the growth windows before them) in **one**
query over the orders, and her purchase days per period in one query over core.purchases
(``facts.clv.purchase_day_periods_select``); every order lands in one row, however many months there
are. :mod:`crm_pipelines.analytics.segment_backfill` then sweeps the periods once, reads each month
end's RFM inputs, month activity and CLV summary off the running totals, and scores each month.

The definitions are those of the month-by-month reference (``portfolio.backfill_segments`` with
:func:`crm_pipelines.facts.activity.read_rfm_scores`, ``read_month_activity`` and
:func:`crm_pipelines.facts.clv.clv_summary_from_purchases` per month), which the tests hold this equal
to: the orders of a month end are those placed up to its last instant, so up to its UTC day.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from crm_pipelines.facts.activity import order_effects
from crm_pipelines.facts.sql import as_bigint, as_float, day_start, period_of
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
    from crm_pipelines.analytics.clv.settings import ClvSettings
    from crm_pipelines.analytics.clv.value import TransactionFit
    from crm_pipelines.analytics.cycle_settings import PortfolioSettings
    from crm_pipelines.analytics.segment_backfill import BackfillCustomers, PeriodRows


BACKFILL_BATCH_ROWS = 2_000_000
"""Customer-months scored and written at once. The per-customer arrays of a group of months and its
snapshot frame are several times the size of the rows they give: over 12 months of a million customers
(9.9M rows, a 1.2 GB frame) one pass rose to a 7.5 GB peak. The months are independent (each is scored
on its own), so they are taken in groups of this many rows: below about 2 months of a million
customers, all months at once below 166,000 customers.
"""


def order_periods_select(wh: Warehouse, cutoff: pd.Timestamp, bounds: Sequence[int]) -> sa.Select:
    """One row per customer and period (of ``bounds``) with orders placed up to ``cutoff`` and the
    period's last day: ``purchases``, net ``revenue`` and ``last_purchase_day`` (null without a purchase),
    as ``facts.activity.rfm_input_columns`` counts them."""
    import sqlalchemy as sa

    orders: sa.FromClause = order_effects(wh, cutoff, name="backfill_orders")
    if wh.dialect == "postgresql":
        # Each order's effects computed once: PostgreSQL inlines the subquery and would evaluate its
        # day, purchase and revenue expressions again wherever the query names them (at 100,000 people,
        # 878,419 orders, the query executed in 1.41-1.57 s against 2.44-2.63 s).
        orders = orders.element.cte("backfill_orders").prefix_with("MATERIALIZED")
    # "Up to the last bound's day" as an instant: the inlined subquery would compute the day once more.
    after_last = day_start(int(bounds[-1]) + 1)
    dated = (
        sa.select(orders.c.customer_id, period_of(wh, orders.c.day, bounds).label("period"),
                  orders.c.day, orders.c.purchase, orders.c.revenue)
        .where(orders.c.ordered_at < after_last)
        .subquery("backfill_order_periods")
    )  # fmt: skip
    return sa.select(
        dated.c.customer_id,
        dated.c.period,
        as_bigint(sa.func.sum(dated.c.purchase)).label("purchases"),
        as_float(sa.func.sum(dated.c.revenue)).label("revenue"),
        as_bigint(sa.func.max(sa.case((dated.c.purchase == 1, dated.c.day)))).label("last_purchase_day"),
    ).group_by(dated.c.customer_id, dated.c.period)


def period_rows(wh: Warehouse, statement: sa.Select, customers: BackfillCustomers, periods: int) -> PeriodRows:
    """A per-customer-and-period query's rows, addressed by the customers' positions."""
    from crm_pipelines.analytics.segment_backfill import PeriodRows

    table = wh.query_arrow(statement)
    return PeriodRows.from_arrow(table, customers.positions(table["customer_id"]), periods)


def backfilled_months(
    wh: Warehouse, customers: pd.DataFrame, month_ends: list[pd.Timestamp], **options: Any
) -> pd.DataFrame:
    """The backfill snapshot rows of every month in ``month_ends`` (columns of ``portfolio.snapshot``)
    for ``customers``, as one frame: :func:`backfill_batches`' groups (same keyword ``options``)
    concatenated. Every month is scored on its own, so the rows do not depend on the grouping."""
    import pandas as pd

    parts = list(backfill_batches(wh, customers, month_ends, **options))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def backfill_batches(
    wh: Warehouse,
    customers: pd.DataFrame,
    month_ends: list[pd.Timestamp],
    *,
    key_share: float,
    growth_window_days: int,
    fits: tuple[TransactionFit, GammaGammaFit] | None,
    clv_settings: ClvSettings,
    portfolio: PortfolioSettings,
    batch_rows: int = BACKFILL_BATCH_ROWS,
) -> Iterator[pd.DataFrame]:
    """The backfill snapshot rows of every month in ``month_ends`` (columns of ``portfolio.snapshot``) for
    ``customers`` (core.unified_customers' customer_id and, if present, created_at), one frame per group of
    about ``batch_rows`` customer-months (see :data:`BACKFILL_BATCH_ROWS`), months ascending (at least one
    frame, empty without months): a caller that writes each group as it comes never holds every month.
    ``fits`` are the CLV models that value each month's customers (None: expected CLV unknown)."""
    from crm_pipelines.analytics.segment_backfill import (
        BackfillCustomers,
        backfill_snapshots,
        month_bounds,
        month_end_inputs,
    )

    book = BackfillCustomers.of(customers)
    ends = sorted(month_ends)
    if not ends:
        yield backfill_snapshots(book, [], [], key_share, None, portfolio)
        return
    n = len(book.ids)
    bounds = month_bounds(ends, growth_window_days)
    orders = period_rows(wh, order_periods_select(wh, ends[-1], bounds), book, len(bounds))
    inputs = month_end_inputs(orders, n, bounds, ends, growth_window_days)
    values = None if fits is None else _expected_clv(wh, book, bounds, ends, fits, clv_settings)
    per_batch = max(1, batch_rows // max(1, n))
    for i in range(0, len(ends), per_batch):
        group = ends[i : i + per_batch]
        expected = None if values is None else list(islice(values, len(group)))
        yield backfill_snapshots(book, list(islice(inputs, len(group))), group, key_share, expected, portfolio)


def _expected_clv(
    wh: Warehouse,
    customers: BackfillCustomers,
    bounds: np.ndarray,
    month_ends: list[pd.Timestamp],
    fits: tuple[TransactionFit, GammaGammaFit],
    settings: ClvSettings,
) -> Iterator[np.ndarray]:
    """Per month end, each customer's expected CLV as the month's CLV summary values her: 0 where the
    summary lacks her (no purchase by then), NaN in a month whose summary is empty."""
    import numpy as np
    import pandas as pd

    from crm_pipelines.analytics.activity import as_of_day
    from crm_pipelines.analytics.clv.value import score_customers
    from crm_pipelines.analytics.segment_backfill import clv_summaries, texts
    from crm_pipelines.facts.clv import purchase_day_periods_select, without_purchases

    n, end_days = len(customers.ids), [as_of_day(end) for end in month_ends]
    if without_purchases(wh):
        yield from (np.full(n, np.nan) for _ in end_days)
        return
    days = period_rows(wh, purchase_day_periods_select(wh, bounds), customers, len(bounds))
    clv_column = f"clv_{settings.clv_months}m"
    for end_day, (customer, summary) in zip(
        end_days, clv_summaries(days, n, bounds, end_days, settings.time_unit_days), strict=True
    ):
        valued = days.first_period <= int(np.searchsorted(bounds, end_day))
        expected = np.full(n, 0.0 if valued else np.nan)
        if len(customer):
            frame = pd.DataFrame({"customer_id": texts(customers.ids, customer), **summary})
            scores = score_customers(frame, fits[0], fits[1], settings)
            expected[customer] = np.nan_to_num(scores[clv_column].to_numpy(dtype="float64"), nan=0.0)
        yield expected
