"""The set-based backfill of marts.customer_segment_history (one query per input, one scoring over all
months) equals the month-by-month implementation it replaced, on DuckDB and PostgreSQL."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
from facts_support import AS_OF, core_frames_with_edges, load_core

from crm_pipelines.analytics.clv.bgnbd import BgNbdFit
from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.clv.value import score_customers
from crm_pipelines.analytics.cycle_settings import PortfolioSettings
from crm_pipelines.analytics.portfolio import backfill_segments, months_to_backfill, snapshot
from crm_pipelines.analytics.segment_backfill import BackfillCustomers, grouped_key_customers, grouped_quintile_scores
from crm_pipelines.analytics.segments import quintile_scores
from crm_pipelines.facts.activity import read_month_activity, read_rfm_scores
from crm_pipelines.facts.build import build_purchases, utc_day
from crm_pipelines.facts.clv import clv_summaries_at_days, clv_summary_from_purchases
from crm_pipelines.facts.segment_history import backfill_batches, backfilled_months

SETTINGS = ClvSettings()
PORTFOLIO = PortfolioSettings()
# The twelve months before AS_OF's, one before any order (nobody bought yet), and the as-of month itself.
MONTH_ENDS = [
    pd.Timestamp("2021-01-31 23:59:59.999999", tz="UTC"),
    *months_to_backfill(AS_OF, set(), PORTFOLIO),
    AS_OF,
]


def reference_backfill(wh, customers, month_ends, key_share, fits, settings, portfolio) -> pd.DataFrame:
    """The backfill as it was computed before: month by month, two RFM queries, a CLV summary and its
    scoring, and a month-activity query per month."""
    clv_column = f"clv_{settings.clv_months}m"
    parts = []
    for month_end in month_ends:
        past = backfill_segments(customers, partial(read_rfm_scores, wh), month_end, key_share)
        values = None
        if fits is not None:
            summary = clv_summary_from_purchases(wh, utc_day(month_end), settings.time_unit_days)
            if len(summary):
                scores = score_customers(summary, fits[0], fits[1], settings)
                values = scores.set_index("customer_id")[clv_column].reindex(past["customer_id"]).fillna(0.0)
        parts.append(snapshot(past, values, partial(read_month_activity, wh), month_end, portfolio, kind="backfill"))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    frames = core_frames_with_edges()
    # A customer known long before anyone bought: alone in the first month, without CLV summary.
    early = (
        frames["customers"]
        .iloc[:1]
        .assign(customer_id="cust-early", created_at=pd.Timestamp("2020-06-01", tz="UTC").as_unit("us"))
    )
    return {**frames, "customers": pd.concat([frames["customers"], early], ignore_index=True)}


@pytest.fixture(scope="module")
def loaded(module_warehouse, frames):
    load_core(module_warehouse, frames)
    build_purchases(module_warehouse, AS_OF, ("completed",))
    return module_warehouse


# Published CDNOW parameters (weekly): the synthetic orders' own fit is degenerate (every CLV 0).
FITS = (
    BgNbdFit.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426),
    GammaGammaFit.from_params(p=6.25, q=3.74, gamma=15.44, time_unit_days=float("nan")),
)


def _assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    key = ["month_index", "customer_id"]
    actual = actual.sort_values(key, ignore_index=True)
    expected = expected.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("with_created_at", [True, False])
def test_backfill_equals_the_month_by_month_reference(loaded, frames, with_created_at):
    columns = ["customer_id", "created_at"] if with_created_at else ["customer_id"]
    customers = frames["customers"][columns]
    expected = reference_backfill(loaded, customers, MONTH_ENDS, 0.2, FITS, SETTINGS, PORTFOLIO)
    actual = backfilled_months(loaded, customers, MONTH_ENDS, key_share=0.2, growth_window_days=180, fits=FITS,
                               clv_settings=SETTINGS, portfolio=PORTFOLIO)  # fmt: skip
    _assert_same_rows(actual, expected)
    # The data exercise what the rules distinguish: several segments, tiers and cells, known and unknown CLV.
    assert actual["rfm_segment"].nunique() > 5 and set(actual["value_tier"]) == {"key", "potential", "ordinary"}
    assert actual["portfolio_cell"].nunique() == 4 and actual["active_month"].any()
    assert actual["expected_clv"].isna().any() and (actual["expected_clv"] > 0).any()
    assert actual.groupby("month_index").size().nunique() > (1 if with_created_at else 0)


def test_backfill_in_batches_of_months_equals_one_pass(loaded, frames):
    """Months taken a few at a time (to bound memory at scale) give exactly the rows of one pass, in
    the same order: every month is scored on its own."""
    customers = frames["customers"][["customer_id", "created_at"]]
    kwargs = dict(key_share=0.2, growth_window_days=180, fits=FITS, clv_settings=SETTINGS, portfolio=PORTFOLIO)
    one_pass = backfilled_months(loaded, customers, MONTH_ENDS, batch_rows=len(customers) * len(MONTH_ENDS), **kwargs)
    assert one_pass["month_index"].nunique() == len(MONTH_ENDS) > 2
    for months_per_batch in (1, 2):
        batched = backfilled_months(
            loaded, customers, MONTH_ENDS, batch_rows=len(customers) * months_per_batch, **kwargs
        )
        pd.testing.assert_frame_equal(batched, one_pass)


def test_backfill_staged_group_by_group_equals_the_backfill_written_whole(loaded, frames):
    """The history asset appends each group of months to its staged table as the group comes, never
    holding all months: the table holds what writing the whole backfill at once held, row for row."""
    from crm_pipelines.analytics.cycle_columns import SEGMENT_HISTORY
    from crm_pipelines.analytics.mart_columns import MART_COLUMNS

    customers = frames["customers"][["customer_id", "created_at"]]
    kwargs = dict(key_share=0.2, growth_window_days=180, fits=FITS, clv_settings=SETTINGS, portfolio=PORTFOLIO)
    types = {c.name: c.dtype for c in MART_COLUMNS[SEGMENT_HISTORY]}
    whole = backfilled_months(loaded, customers, MONTH_ENDS, batch_rows=len(customers) * len(MONTH_ENDS), **kwargs)
    loaded.write_table(whole, "marts", "history_whole", mode="replace", column_types=types)
    parts = backfill_batches(loaded, customers, MONTH_ENDS, batch_rows=len(customers) * 2, **kwargs)
    written = [
        loaded.write_table(part, "marts", "history_parts", mode="append" if i else "replace", column_types=types)
        for i, part in enumerate(parts)
    ]
    assert len(written) == -(-len(MONTH_ENDS) // 2) and sum(written) == len(whole)
    try:
        key = ["month_index", "customer_id"]
        expected = loaded.read_table("marts", "history_whole").sort_values(key, ignore_index=True)
        actual = loaded.read_table("marts", "history_parts").sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(actual, expected)
    finally:
        loaded.drop_table("marts", "history_whole")
        loaded.drop_table("marts", "history_parts")


def test_backfill_without_clv_models_or_months(loaded, frames):
    customers = frames["customers"][["customer_id", "created_at"]]
    expected = reference_backfill(loaded, customers, MONTH_ENDS[1:4], 0.3, None, SETTINGS, PORTFOLIO)
    actual = backfilled_months(loaded, customers, MONTH_ENDS[1:4], key_share=0.3, growth_window_days=180, fits=None,
                               clv_settings=SETTINGS, portfolio=PORTFOLIO)  # fmt: skip
    _assert_same_rows(actual, expected)
    assert actual["expected_clv"].isna().all()
    empty = backfilled_months(loaded, customers, [], key_share=0.2, growth_window_days=180, fits=None,
                              clv_settings=SETTINGS, portfolio=PORTFOLIO)  # fmt: skip
    assert empty.empty and list(empty.columns) == list(actual.columns)


def test_clv_summaries_at_days_equal_one_summary_per_day(loaded):
    days = [utc_day(end) for end in MONTH_ENDS]
    together = clv_summaries_at_days(loaded, days, SETTINGS.time_unit_days)
    for day in days:
        alone = clv_summary_from_purchases(loaded, day, SETTINGS.time_unit_days)
        part = together[together["end_day"] == day].drop(columns="end_day").reset_index(drop=True)
        pd.testing.assert_frame_equal(part, alone, check_exact=False, rtol=1e-12, atol=1e-12)
    assert together.loc[together["end_day"] == days[0]].empty and len(together)
    # Days in any order, or named twice, give the same rows (each day once, in day order).
    shuffled = clv_summaries_at_days(loaded, [*days[::-1], days[1]], SETTINGS.time_unit_days)
    pd.testing.assert_frame_equal(shuffled, together)


@pytest.mark.parametrize("seed", range(5))
def test_grouped_scores_equal_the_scores_of_each_group(seed):
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 7, int(rng.integers(20, 200))]
    group = np.repeat(rng.permutation(len(sizes)) * 3, sizes)
    order = rng.permutation(len(group))
    group = group[order]
    keys = [rng.integers(0, 4, len(group)), rng.normal(size=len(group)).round(1), rng.permutation(len(group))]
    monetary, frequency, recency = rng.normal(10, 20, len(group)).round(0), keys[0], rng.integers(0, 9, len(group))
    scores = grouped_quintile_scores(group, keys)
    key = grouped_key_customers(group, monetary, frequency, recency, keys[2], 0.2)
    for g in np.unique(group):
        inside = group == g
        np.testing.assert_array_equal(scores[inside], quintile_scores([k[inside] for k in keys]))
        positions = np.flatnonzero(inside)
        n_key = int(np.ceil(0.2 * len(positions)))
        ranked = positions[np.lexsort((keys[2][inside], recency[inside], -frequency[inside], -monetary[inside]))]
        top = ranked[:n_key]
        np.testing.assert_array_equal(np.flatnonzero(key & inside), np.sort(top[monetary[top] > 0]))
    assert len(grouped_quintile_scores(np.empty(0, dtype="int64"), [np.empty(0)])) == 0


@pytest.mark.parametrize("created_at", [[None, None], ["2026-01-15T10:00:00+01:00", None]])
def test_customers_known_by_month_end_whatever_creation_times_hold(created_at):
    # A creation-time column of nulls alone must not come back time-zone naive (nothing compares then).
    customers = pd.DataFrame({"customer_id": ["b", "a"], "created_at": created_at}, index=[7, 3])
    known = BackfillCustomers.of(customers).known(
        [pd.Timestamp("2025-12-31 23:59:59", tz="UTC"), pd.Timestamp("2026-01-31 23:59:59", tz="UTC")]
    )
    assert known.tolist() == [False, False, created_at[0] is not None, False]
