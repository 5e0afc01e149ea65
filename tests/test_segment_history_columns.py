"""marts.customer_segment_history when the published history's columns differ from the run's snapshot
(an upgrade added or dropped a column, or an operator altered the table): the run's months are replaced
exactly once, the other months are kept, and a write the table cannot take leaves the history as it was."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from crm_pipelines.analytics.cycle_columns import SEGMENT_HISTORY, SEGMENT_HISTORY_COLUMNS
from crm_pipelines.analytics.portfolio import HISTORY_COLUMNS
from crm_pipelines.assets.cycle import _replace_months
from crm_pipelines.schema import MARTS
from crm_pipelines.warehouse import Warehouse

TYPES = {c.name: c.dtype for c in SEGMENT_HISTORY_COLUMNS}
KEY = ["month_index", "customer_id"]


def _month(month: pd.Timestamp, ids: list[str], seed: int, kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(ids)
    return pd.DataFrame(
        {
            "month": month,
            "month_index": month.year * 12 + month.month - 1,
            "customer_id": ids,
            "rfm_segment": rng.choice(["Champions", "At Risk", "Lost"], n),
            "value_tier": rng.choice(["key", "potential", "ordinary"], n),
            "portfolio_cell": rng.choice(["stars", "develop", "maintain", "reconsider"], n),
            "expected_clv": rng.gamma(2, 50, n),
            "revenue_month": rng.gamma(1, 20, n),
            "active_month": rng.random(n) < 0.4,
            "snapshot_as_of": month + pd.Timedelta(days=9),
            "snapshot_kind": kind,
        }
    )


def _published(wh: Warehouse) -> pd.DataFrame:
    """Jan, Feb and Mar 2026 (Mar from an earlier nightly run), as published."""
    ids = [f"C{i:02d}" for i in range(12)]
    months = [_month(pd.Timestamp(2026, m, 1), ids[: 8 + m], m, "backfill") for m in (1, 2, 3)]
    history = pd.concat(months, ignore_index=True)
    wh.write_table(history, MARTS, SEGMENT_HISTORY, mode="replace", column_types=TYPES)
    return history


def _run(wh: Warehouse) -> pd.DataFrame:
    """Tonight's snapshot of March (other customers and values than the published March), staged as
    the asset's validation stages it, then published by the asset's code."""
    frame = _month(pd.Timestamp(2026, 3, 1), [f"C{i:02d}" for i in range(4, 15)], 99, "nightly")
    wh.write_table(frame, MARTS, f"{SEGMENT_HISTORY}__new", mode="replace", column_types=TYPES)
    _replace_months(dg.build_asset_context(), wh, frame, [])
    return frame


def _sorted(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame[columns].sort_values(KEY, ignore_index=True)
    out["month"] = pd.to_datetime(out["month"])
    out["snapshot_as_of"] = pd.to_datetime(out["snapshot_as_of"])
    return out


def _assert_march_replaced_once(wh: Warehouse, history: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    got = wh.read_table(MARTS, SEGMENT_HISTORY)
    kept = history[history["month_index"] != frame["month_index"].iloc[0]]
    assert not got.duplicated(KEY).any()
    assert len(got) == len(kept) + len(frame)
    assert got.groupby("month_index").size().to_dict() == {24312: 9, 24313: 10, 24314: len(frame)}
    columns = list(HISTORY_COLUMNS)
    march = got[got["month_index"] == 24314]
    pd.testing.assert_frame_equal(_sorted(march, columns), _sorted(frame, columns), check_dtype=False)
    assert (march["snapshot_kind"] == "nightly").all()
    assert not wh.table_exists(MARTS, f"{SEGMENT_HISTORY}__new")
    return got


def test_history_with_an_extra_column_keeps_it(warehouse_url):
    wh = Warehouse(warehouse_url)
    history = _published(wh)
    # An operator's column: kept, with its values on the months the run does not touch.
    wh.execute(f"ALTER TABLE {wh.qualified(MARTS, SEGMENT_HISTORY)} ADD COLUMN reviewed_by INTEGER")
    wh.execute(f"UPDATE {wh.qualified(MARTS, SEGMENT_HISTORY)} SET reviewed_by = month_index")
    frame = _run(wh)

    got = _assert_march_replaced_once(wh, history, frame)
    assert wh.columns(MARTS, SEGMENT_HISTORY) == [*HISTORY_COLUMNS, "reviewed_by"]
    kept = got[got["month_index"] != 24314]
    pd.testing.assert_frame_equal(
        _sorted(kept, list(HISTORY_COLUMNS)), _sorted(history[history["month_index"] != 24314], list(HISTORY_COLUMNS)),
        check_dtype=False,
    )  # fmt: skip
    assert (kept["reviewed_by"] == kept["month_index"]).all()
    assert got.loc[got["month_index"] == 24314, "reviewed_by"].isna().all()


def test_history_missing_a_column_gains_it(warehouse_url):
    wh = Warehouse(warehouse_url)
    # An older release's history, without portfolio_cell.
    history = _published(wh)
    wh.execute(f"ALTER TABLE {wh.qualified(MARTS, SEGMENT_HISTORY)} DROP COLUMN portfolio_cell")
    frame = _run(wh)

    got = _assert_march_replaced_once(wh, history, frame)
    assert sorted(wh.columns(MARTS, SEGMENT_HISTORY)) == sorted(HISTORY_COLUMNS)
    assert wh.column_types(MARTS, SEGMENT_HISTORY)["portfolio_cell"] in ("VARCHAR", "text")
    kept = got[got["month_index"] != 24314]
    assert kept["portfolio_cell"].isna().all()  # unknown for the months written before the column existed
    others = [c for c in HISTORY_COLUMNS if c != "portfolio_cell"]
    pd.testing.assert_frame_equal(
        _sorted(kept, others), _sorted(history[history["month_index"] != 24314], others), check_dtype=False
    )


def test_a_write_the_history_cannot_take_leaves_it_as_it_was(warehouse_url):
    wh = Warehouse(warehouse_url)
    history = _published(wh)
    # A column the run's rows cannot fill (required, no default), and one the run adds back.
    table = wh.qualified(MARTS, SEGMENT_HISTORY)
    wh.execute(f"ALTER TABLE {table} DROP COLUMN portfolio_cell")
    wh.execute(f"ALTER TABLE {table} ADD COLUMN reviewed_by INTEGER DEFAULT 1")
    wh.execute(f"ALTER TABLE {table} ALTER COLUMN reviewed_by SET NOT NULL")
    wh.execute(f"ALTER TABLE {table} ALTER COLUMN reviewed_by DROP DEFAULT")
    before = wh.read_table(MARTS, SEGMENT_HISTORY)
    columns = wh.columns(MARTS, SEGMENT_HISTORY)

    with pytest.raises(Exception, match="(?i)null"):
        _run(wh)

    assert wh.columns(MARTS, SEGMENT_HISTORY) == columns
    after = wh.read_table(MARTS, SEGMENT_HISTORY)
    pd.testing.assert_frame_equal(after.sort_values(KEY, ignore_index=True), before.sort_values(KEY, ignore_index=True))
    assert len(after) == len(history)
