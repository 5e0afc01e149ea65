"""The backfill of marts.customer_segment_history scored once over all months, not month by month.

Per month end, the rules are those of ``portfolio.backfill_segments`` and ``portfolio.snapshot``: the
customers known by then (created or bought by then) get RFM scores as quintiles among that month's
buyers (:func:`crm_pipelines.analytics.segments.quintile_scores`: ties fall to the other dimensions,
then customer_id), the segment of the R-by-FM grid, and a value tier without predicted value (key =
the top ``key_share`` of the month's buyers by net revenue, potential = buying faster). Here every month
is one group of a single sort, so twelve months cost about one month's numpy work.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipelines.analytics.activity import customer_codes, customer_index
from crm_pipelines.analytics.cycle_settings import PortfolioSettings
from crm_pipelines.analytics.portfolio import PORTFOLIO_CELLS, month_index, month_start, portfolio_cell_codes
from crm_pipelines.analytics.segments import NO_PURCHASES, VALUE_TIERS, rfm_segment

INPUT_COLUMNS = ("frequency", "monetary", "last_purchase_day", "orders_recent", "orders_previous", "revenue_month",
                 "bought_month")  # fmt: skip


def grouped_quintile_scores(group: np.ndarray, order_keys: list[np.ndarray]) -> np.ndarray:
    """:func:`crm_pipelines.analytics.segments.quintile_scores` within each value of ``group`` (integers)."""
    n = len(group)
    scores = np.empty(n, dtype="int64")
    if n == 0:
        return scores
    order = np.lexsort([*order_keys[::-1], group])
    size, rank = _sizes_and_ranks(group[order])
    # ceil(5 * rank / (size - 1)), at least 1; a group of one scores 3.
    scores[order] = np.where(size == 1, 3, np.maximum(1, -(-5 * rank // np.maximum(size - 1, 1))))
    return scores


def _sizes_and_ranks(sorted_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a sorted group column: the size of its group and its position in it."""
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_group)])
    return np.repeat(sizes, sizes), np.arange(len(sorted_group)) - np.repeat(starts, sizes)


def grouped_key_customers(
    group: np.ndarray, monetary: np.ndarray, frequency: np.ndarray, recency: np.ndarray, ids: np.ndarray,
    key_share: float,
) -> np.ndarray:
    """``segments.value_tier``'s key customers within each group of buyers (every row is a buyer): the
    top ceil(``key_share`` * buyers) by net revenue (ties: more purchases, more recent, customer_id), if
    their net revenue is positive."""
    key = np.zeros(len(group), dtype=bool)
    if not len(group):
        return key
    order = np.lexsort((ids, recency, -frequency, -monetary, group))
    size, rank = _sizes_and_ranks(group[order])
    n_key = np.ceil(key_share * size)
    top = order[rank < n_key]
    key[top[monetary[top] > 0]] = True
    return key


def backfill_snapshots(
    customers: pd.DataFrame,
    inputs: pd.DataFrame | None,
    month_ends: list[pd.Timestamp],
    key_share: float,
    clv: pd.DataFrame | None,
    settings: PortfolioSettings,
) -> pd.DataFrame:
    """The snapshot rows (``portfolio.snapshot``'s columns, kind ``backfill``) of every month end.

    ``inputs`` has one row per customer with orders by the last month end and, for the i-th month end,
    columns ``<name>_<i>`` of :data:`INPUT_COLUMNS` (``facts.segment_history.month_end_inputs_select``;
    0 and a null last purchase day where she had no orders by then, as if absent); ``clv`` has
    ``end_day``, ``customer_id`` and ``expected_clv`` of the customers the CLV summary holds as of each
    month end (None: unknown for every month). Rows come month by month in ``customers``' order.
    """
    ids = customer_index(customers)
    n, months = len(ids), len(month_ends)
    end_days = np.array([_utc_day(end) for end in month_ends], dtype="int64")
    grid = {name: np.zeros(n * months, dtype="float64") for name in INPUT_COLUMNS}
    grid["last_purchase_day"][:] = np.nan
    if inputs is not None and len(inputs) and months:
        customer = customer_codes(inputs, ids)
        found = customer >= 0
        for month in range(months):
            for name in INPUT_COLUMNS:
                values = pd.to_numeric(inputs[f"{name}_{month}"]).to_numpy(dtype="float64", na_value=np.nan)
                grid[name][month * n + customer[found]] = values[found]
    month_of_row = np.repeat(np.arange(months), n)
    frequency = grid["frequency"].astype("int64")
    known = frequency > 0
    if "created_at" not in customers:
        known[:] = True
    elif months:
        created = pd.to_datetime(customers["created_at"], utc=True)
        known |= np.concatenate([(created <= end).to_numpy(dtype=bool) for end in month_ends])
    rows = np.flatnonzero(known)
    month_of, customer_of = month_of_row[rows], rows % n if n else rows
    frequency = frequency[rows]
    buyer = frequency > 0
    monetary = grid["monetary"][rows]
    last = grid["last_purchase_day"][rows]
    recency = np.where(buyer, end_days[month_of] - np.nan_to_num(last, nan=0).astype("int64"), -1)
    id_rank = pd.factorize(ids, sort=True)[0][customer_of]

    r_score, f_score, m_score = (np.ones(len(rows), dtype="int64") for _ in range(3))
    b = np.flatnonzero(buyer)
    group, rec, freq, mon, rank = month_of[b], recency[b], frequency[b], monetary[b], id_rank[b]
    # Worst first: long ago, rarely, little. Ties fall to the other dimensions, then to customer_id.
    r_score[b] = grouped_quintile_scores(group, [-rec, freq, mon, rank])
    f_score[b] = grouped_quintile_scores(group, [freq, -rec, mon, rank])
    m_score[b] = grouped_quintile_scores(group, [mon, freq, -rec, rank])
    key = np.zeros(len(rows), dtype=bool)
    key[b] = grouped_key_customers(group, mon, freq, rec, rank, key_share)
    recent, previous = grid["orders_recent"][rows], grid["orders_previous"][rows]
    tier = np.where(key, 0, np.where((recent >= 2) & (recent > previous), 1, 2))  # positions in VALUE_TIERS
    cell = portfolio_cell_codes(tier < 2, r_score, f_score, settings.strength_cut)
    if clv is not None and len(clv):
        clv_days = clv["end_day"].to_numpy(dtype="int64")
        clv_slot = _slots(clv_days, end_days, customer_codes(clv, ids), n)
        valued = np.isin(end_days, clv_days)  # months whose CLV summary holds anybody
        expected = _expected_clv(clv_slot, clv["expected_clv"].to_numpy(dtype="float64"), valued, n)[rows]
    else:
        expected = np.full(len(rows), np.nan)

    # Text columns are taken from small tables by position: no million Python strings to convert.
    month_starts = [month_start(end) for end in month_ends]
    return pd.DataFrame(
        {
            "month": pd.DatetimeIndex([m.tz_localize(None) for m in month_starts], dtype="datetime64[us]")[month_of],
            "month_index": np.array([month_index(m) for m in month_starts], dtype="int64")[month_of],
            "customer_id": _texts(ids, customer_of),
            "rfm_segment": _texts(_SEGMENT_NAMES, np.where(buyer, ((f_score + m_score) // 2 - 1) * 5 + r_score - 1,
                                                           len(_SEGMENT_NAMES) - 1)),
            "value_tier": _texts(VALUE_TIERS, tier),
            "portfolio_cell": _texts(PORTFOLIO_CELLS, cell),
            "expected_clv": expected,
            "revenue_month": grid["revenue_month"][rows],
            "active_month": grid["bought_month"][rows] > 0,
            "snapshot_as_of": pd.DatetimeIndex([e.tz_localize(None).normalize() for e in month_ends],
                                               dtype="datetime64[us]")[month_of],
            "snapshot_kind": _texts(["backfill"], np.zeros(len(rows), dtype="int64")),
        }
    )  # fmt: skip


# The segment of each (FM, R) cell at position (FM - 1) * 5 + R - 1, then the one of customers without purchases.
_FM, _R = (np.arange(25) // 5 + 1, np.arange(25) % 5 + 1)
_SEGMENT_NAMES = (*rfm_segment(_R, _FM, _FM), NO_PURCHASES)


def _texts(names: pd.Index | tuple[str, ...] | list[str], positions: np.ndarray) -> pd.Series:
    table = pd.array(names if isinstance(names, pd.Index) else list(names), dtype="str")
    return pd.Series(table.take(positions.astype("int64")), dtype="str")


def _utc_day(ts: pd.Timestamp) -> int:
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 86_400_000_000_000)


def _slots(end_day: np.ndarray, end_days: np.ndarray, customer: np.ndarray, n: int) -> np.ndarray:
    """Row position in the (month, customer) grid of each (end day, customer position); -1 if unknown."""
    month = pd.Index(end_days).get_indexer(end_day)
    return np.where((month >= 0) & (customer >= 0), month * n + customer, -1)


def _expected_clv(slot: np.ndarray, values: np.ndarray, valued: np.ndarray, n: int) -> np.ndarray:
    """Expected CLV per (month, customer) grid row: as the month's CLV summary values her, 0 where the
    summary lacks her (no purchase by then), NaN in a month whose summary is empty (not ``valued``)."""
    expected = np.where(np.repeat(valued, n), 0.0, np.nan)
    found = slot >= 0
    expected[slot[found]] = np.nan_to_num(values[found], nan=0.0)
    return expected
