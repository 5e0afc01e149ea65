"""The first run's backfill of marts.customer_segment_history: every past month end at once.

Per month end and customer, the RFM inputs (purchases, net revenue, last purchase day, purchases in the
growth windows before the month end) and the month's activity (net revenue, purchased) are counted by
**one** warehouse query over the orders, one column per input and month end; the CLV models'
(frequency, recency, T, monetary value) summaries likewise by one query over the ranked purchase days
(``facts.clv.clv_summaries_at_days``). The quintile scoring then runs once over all months in
:func:`crm_pipelines.analytics.segment_backfill.backfill_snapshots`.

The definitions are those of the month-by-month reference (``portfolio.backfill_segments`` with
:func:`crm_pipelines.facts.activity.read_rfm_scores`, ``read_month_activity`` and
:func:`crm_pipelines.facts.clv.clv_summary_from_purchases` per month), which the tests hold this equal
to: the orders of a month end are those placed up to its last instant, so up to its UTC day.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from crm_pipelines.facts.activity import order_effects, rfm_input_columns
from crm_pipelines.facts.build import utc_day
from crm_pipelines.facts.clv import clv_summaries_at_days
from crm_pipelines.facts.sql import as_bigint, as_float, at_cutoff
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

    from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
    from crm_pipelines.analytics.clv.settings import ClvSettings
    from crm_pipelines.analytics.clv.value import TransactionFit
    from crm_pipelines.analytics.cycle_settings import PortfolioSettings


BACKFILL_BATCH_ROWS = 2_000_000
"""Customer-months backfilled at once. The month-end inputs, the CLV summaries and their grids are
several times the size of the snapshot rows they give: over 12 months of a million customers (9.9M
rows, a 1.2 GB frame) one pass rose to a 7.5 GB peak. The months are independent (each is scored on
its own), so they are taken in groups of this many rows: below about 2 months of a million customers,
all months at once below 166,000 customers.
"""


def month_end_inputs_select(wh: Warehouse, month_ends: list[pd.Timestamp], growth_window_days: int) -> sa.Select:
    """One row per customer with orders up to the last of ``month_ends`` and, for the i-th month end,
    columns ``<name>_<i>`` of each name of ``segment_backfill.INPUT_COLUMNS``: ``frequency`` (purchases
    by then), ``monetary`` (net revenue), ``last_purchase_day``, ``orders_recent`` / ``orders_previous``
    (purchases in the last ``growth_window_days`` days and in the span before), and the month's
    ``revenue_month`` and ``bought_month`` (0/1) from its first day on. A customer without orders by a
    month end has 0 (``last_purchase_day`` null) there.

    Each order is read once and counted into every month end it precedes by conditional aggregates.
    Joining the orders to a calendar of the month ends instead made a row per order and month end (8.7M
    at 100,000 people) and grouping them by month and customer took 1.5-2 times as long."""
    import sqlalchemy as sa

    from crm_pipelines.analytics.portfolio import month_start

    orders = order_effects(wh, max(month_ends), name="backfill_orders")
    columns = []
    for i, end in enumerate(month_ends):
        end_day, start_day = utc_day(end), utc_day(month_start(end))
        by_then = orders.c.day <= end_day
        in_month = sa.and_(by_then, orders.c.day >= start_day)
        inputs = [
            *rfm_input_columns(orders, end_day - orders.c.day, growth_window_days, within=by_then),
            # Adding 0.0 for the other orders leaves the month's sum exactly as the month's orders alone give it.
            as_float(sa.func.sum(sa.case((in_month, orders.c.revenue), else_=0.0))).label("revenue_month"),
            as_bigint(sa.func.max(sa.case((in_month, orders.c.purchase), else_=0))).label("bought_month"),
        ]
        columns += [at_cutoff(column, i) for column in inputs]
    return sa.select(orders.c.customer_id, *columns).group_by(orders.c.customer_id)


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
    about ``batch_rows`` customer-months (see :data:`BACKFILL_BATCH_ROWS`), in order (at least one frame,
    empty without months): a caller that writes each group as it comes never holds every month. ``fits``
    are the CLV models that value each month's customers (None: expected CLV unknown)."""
    from crm_pipelines.analytics.clv.value import score_customers
    from crm_pipelines.analytics.segment_backfill import backfill_snapshots

    def months_of(ends: list[pd.Timestamp]) -> pd.DataFrame:
        inputs = wh.query(month_end_inputs_select(wh, ends, growth_window_days))
        values = None
        if fits is not None:
            clv_column = f"clv_{clv_settings.clv_months}m"
            summary = clv_summaries_at_days(wh, [utc_day(end) for end in ends], clv_settings.time_unit_days)
            # Scored once for all months: a customer's scores depend on her own (frequency, recency, T) only.
            scores = score_customers(summary.drop(columns="end_day"), fits[0], fits[1], clv_settings)
            values = summary[["end_day", "customer_id"]].assign(expected_clv=scores[clv_column].to_numpy())
        return backfill_snapshots(customers, inputs, ends, key_share, values, portfolio)

    if not month_ends:
        yield backfill_snapshots(customers, None, [], key_share, None, portfolio)
        return
    per_batch = max(1, batch_rows // max(1, len(customers)))
    for i in range(0, len(month_ends), per_batch):
        yield months_of(month_ends[i : i + per_batch])
