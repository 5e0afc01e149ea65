"""Per-customer facts shared by the marts: purchases, revenue, purchased items, service and survey activity.

Definitions used by every mart (and written down in docs/marts.md):

- A **purchase** is an order whose trimmed, lower-case status is one of the configured purchase statuses
  (``clv.purchase_statuses``, default ``completed``) and that is not a refund. Cancelled and refunded
  orders never are. The warehouse builds ``core.purchases`` with the same rule
  (:mod:`crm_pipelines.facts.orders`); this module is the reference the tests hold it to.
- **Revenue** is net of refunds: the reporting-currency total of purchases, minus the absolute amount of
  refund records carrying a negative total. An order whose status is ``refunded`` with a positive total
  contributes nothing (its money went back), and is not subtracted a second time.
- Everything is bounded by ``as_of`` (the end of the as-of day, UTC): later records do not exist yet.

Customers are addressed by their position in the unified customer index (``customer_index``), so the
heavy lifting runs on integer codes with ``numpy.bincount`` and grouped reductions rather than on strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from crm_pipelines.schema import (
    CORE_ATTRIBUTED_ENTITIES,
    UNIFIED_CUSTOMER_COLUMNS,
    Column,
    core_entity_columns,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

MICROS_PER_DAY = 86_400_000_000
DEFAULT_PURCHASE_STATUSES = ("completed",)
MICROS_PER_HOUR = 3_600_000_000


_PANDAS_DTYPES = {
    "string": "str",
    "timestamp": "datetime64[us, UTC]",
    "date": "datetime64[us]",
    "float": "float64",
    "integer": "Int64",
    "boolean": "boolean",
}


def core_frame(table: str, rows: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """A frame shaped like ``core.<table>`` (unified_customers or an attributed entity), typed per schema.

    Missing columns are null. Useful where a source delivers no such entity (pass an empty frame) and for
    building small inputs by hand.
    """
    import pandas as pd
    if table == "unified_customers":
        columns: list[Column] = list(UNIFIED_CUSTOMER_COLUMNS)
    elif table in CORE_ATTRIBUTED_ENTITIES:
        columns = core_entity_columns(table)
    else:
        raise ValueError(
            f"unknown core table {table!r}; known: unified_customers, {CORE_ATTRIBUTED_ENTITIES}"
        )
    records = list(rows)
    data = {}
    for column in columns:
        values = [r.get(column.name) for r in records]
        dtype = _PANDAS_DTYPES[column.dtype]
        if column.dtype == "timestamp":
            data[column.name] = pd.to_datetime(pd.Series(values, dtype=object), utc=True).astype(dtype)
        elif column.dtype == "date":
            data[column.name] = pd.to_datetime(pd.Series(values, dtype=object)).astype(dtype)
        else:
            data[column.name] = pd.Series(values, dtype=object).astype(dtype)
    return pd.DataFrame(data)


def as_of_timestamp(as_of: pd.Timestamp | str) -> pd.Timestamp:
    """``as_of`` as a UTC timestamp; a naive value is read as UTC."""
    import pandas as pd
    ts = pd.Timestamp(as_of)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def as_of_micros(as_of: pd.Timestamp) -> int:
    return int(as_of_timestamp(as_of).as_unit("us").asm8.view("int64"))


def as_of_day(as_of: pd.Timestamp) -> int:
    """The as-of day as a day number (days since 1970-01-01, UTC)."""
    return as_of_micros(as_of) // MICROS_PER_DAY


def utc_micros(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch (UTC) as int64, and a mask of the values that are present."""
    import pandas as pd
    ts = pd.to_datetime(values, utc=True)
    present = ts.notna().to_numpy()
    micros = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").view("int64")
    return micros, present


def micros_to_timestamps(
    micros: np.ndarray, present: np.ndarray | None = None
) -> pd.api.extensions.ExtensionArray:
    """int64 microseconds to a datetime64[us, UTC] array (absent values become NaT)."""
    import numpy as np
    import pandas as pd
    values = np.asarray(micros, dtype="int64").view("datetime64[us]").copy()
    if present is not None:
        values[~present] = np.datetime64("NaT")
    return pd.DatetimeIndex(values).tz_localize("UTC").array


def customer_index(customers: pd.DataFrame) -> pd.Index:
    """The unified customer ids, in input order; duplicates mean a broken core layer, so they raise."""
    import pandas as pd
    ids = pd.Index(customers["customer_id"].astype("str"), name="customer_id")
    if ids.hasnans:
        raise ValueError("unified customers contain rows without customer_id")
    if not ids.is_unique:
        dupes = ids[ids.duplicated()].unique()[:5].tolist()
        raise ValueError(f"unified customers must have one row per customer_id; repeated: {dupes}")
    return ids


def customer_codes(frame: pd.DataFrame, index: pd.Index) -> np.ndarray:
    """Position of each row's customer in ``index``; -1 for rows of no known customer."""
    import numpy as np
    import pyarrow as pa
    if frame.empty:
        return np.empty(0, dtype="int64")
    return customer_positions(pa.array(frame["customer_id"].astype("str").array), index)


def customer_positions(customer_ids: pa.Array | pa.ChunkedArray, index: pd.Index) -> np.ndarray:
    """Position of each id of an Arrow column in ``index``; -1 for ids not in it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    value_set = pa.array(index.astype("str").array)
    # Arrow's hash lookup is an order of magnitude faster than Index.get_indexer on string ids.
    positions = pc.index_in(customer_ids.cast(value_set.type), value_set=value_set)
    return np.asarray(pc.fill_null(positions, -1), dtype="int64")


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` for integers, by sorting (much faster than its hash path on large arrays)."""
    import numpy as np
    ordered = np.sort(values)
    if len(ordered) == 0:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def normalized_text(values: pd.Series) -> pd.Series:
    """Trimmed, lower-case strings; comparisons on the result stay in Arrow (no Python objects)."""
    return values.astype("str").str.strip().str.lower()


def is_value(normalized: pd.Series, *accepted: str) -> np.ndarray:
    """Boolean mask of the rows of a :func:`normalized_text` series equal to one of ``accepted``."""
    return normalized.isin(accepted).to_numpy(dtype=bool)


def purchase_mask(
    orders: pd.DataFrame, purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES
) -> np.ndarray:
    """Orders that are purchases: a purchase status (trimmed, lower case) and not a refund."""
    is_refund = orders["is_refund"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    statuses = {s.strip().lower() for s in purchase_statuses}
    return is_value(normalized_text(orders["status"]), *statuses) & ~is_refund


def bounded_orders(
    orders: pd.DataFrame,
    index: pd.Index,
    as_of: pd.Timestamp,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
) -> pd.DataFrame:
    """Orders of known customers placed up to ``as_of``, with integer columns the marts compute on.

    Columns: ``code`` (customer position), ``micros`` (ordered_at), ``day``, ``is_purchase``,
    ``amount`` (reporting currency, 0 when missing), ``revenue_effect`` (what the order adds to net
    revenue: the amount of a purchase, minus the absolute amount of a negative refund record, else 0),
    ``is_refund``, ``is_cancelled``.
    """
    import numpy as np
    import pandas as pd
    codes = customer_codes(orders, index)
    micros, present = utc_micros(orders["ordered_at"])
    keep = (codes >= 0) & present & (micros <= as_of_micros(as_of))
    kept = orders.loc[keep]
    amount = pd.to_numeric(kept["total_amount_reporting"], errors="coerce").fillna(0.0).to_numpy(float)
    is_purchase = purchase_mask(kept, purchase_statuses)
    is_refund = kept["is_refund"].fillna(False).astype(bool).to_numpy()
    revenue_effect = np.where(is_purchase, amount, 0.0) - np.where(is_refund & (amount < 0), -amount, 0.0)
    return pd.DataFrame(
        {
            "code": codes[keep],
            "micros": micros[keep],
            "day": micros[keep] // MICROS_PER_DAY,
            "is_purchase": is_purchase,
            "amount": amount,
            "revenue_effect": revenue_effect,
            "is_refund": is_refund,
            "is_cancelled": is_value(normalized_text(kept["status"]), "cancelled"),
        }
    )


def order_summary(facts: pd.DataFrame, n_customers: int) -> pd.DataFrame:
    """Per-customer order facts (one row per customer position) from :func:`bounded_orders` output."""
    import numpy as np
    import pandas as pd
    code = facts["code"].to_numpy()
    purchase = facts["is_purchase"].to_numpy()
    orders = np.bincount(code[purchase], minlength=n_customers)
    gross = np.bincount(code[purchase], weights=facts["amount"].to_numpy()[purchase], minlength=n_customers)
    revenue = np.bincount(code, weights=facts["revenue_effect"].to_numpy(), minlength=n_customers)
    micros = pd.Series(facts["micros"].to_numpy()[purchase])
    grouped = micros.groupby(code[purchase])
    first = np.full(n_customers, np.iinfo("int64").min)
    last = first.copy()
    first[grouped.min().index.to_numpy()] = grouped.min().to_numpy()
    last[grouped.max().index.to_numpy()] = grouped.max().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        aov = np.where(orders > 0, gross / np.maximum(orders, 1), np.nan)
    return pd.DataFrame(
        {
            "first_order_at": micros_to_timestamps(first, orders > 0),
            "last_order_at": micros_to_timestamps(last, orders > 0),
            "orders": orders.astype("int64"),
            "cancelled_orders": np.bincount(code[facts["is_cancelled"].to_numpy()], minlength=n_customers),
            "refunded_orders": np.bincount(code[facts["is_refund"].to_numpy()], minlength=n_customers),
            "gross_revenue": gross,
            "revenue": revenue,
            "average_order_value": aov,
        }
    )


def purchased_items(
    order_items: pd.DataFrame, orders: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Lines of purchases (see module docstring) of known customers up to ``as_of``.

    Lines join their order on ``(source, order_id)`` (order ids are unique within a source only).
    Columns: ``code``, ``category``, ``product_id``, ``product_name``.
    """
    import numpy as np
    import pandas as pd
    empty = pd.DataFrame(
        {
            "code": np.empty(0, "int64"),
            "category": pd.Series(dtype="str"),
            "product_id": pd.Series(dtype="str"),
            "product_name": pd.Series(dtype="str"),
        }
    )
    if order_items.empty or orders.empty:
        return empty
    keys = ["source", "order_id"] if "source" in order_items and "source" in orders else ["order_id"]
    micros, present = utc_micros(orders["ordered_at"])
    codes = customer_codes(orders, index)
    is_purchase = purchase_mask(orders) & present & (micros <= as_of_micros(as_of)) & (codes >= 0)
    # The order says whose purchase a line is; its customer_id is the attribution core made.
    purchase_keys = orders.loc[is_purchase, keys].assign(code=codes[is_purchase]).drop_duplicates(keys)
    wanted = [c for c in ("category", "product_id", "product_name") if c in order_items]
    lines = order_items[[*keys, *wanted]].merge(purchase_keys, on=keys, how="inner", sort=False)
    return pd.DataFrame(
        {
            "code": lines["code"].to_numpy(),
            **{
                c: lines[c].astype("str") if c in lines else pd.Series(None, index=lines.index, dtype="str")
                for c in ("category", "product_id", "product_name")
            },
        }
    ).reset_index(drop=True)


def engagement_summary(
    tickets: pd.DataFrame,
    events: pd.DataFrame,
    surveys: pd.DataFrame,
    index: pd.Index,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """Per-customer service, survey and email activity up to ``as_of`` (one row per customer position).

    A ticket counts as resolved when its ``resolved_at`` is set and not after ``as_of``; a ticket without
    ``resolved_at`` counts as resolved when its status is resolved or closed. Satisfaction is averaged over
    the rated tickets opened up to ``as_of``; the latest NPS is the score of the most recent answer.
    """
    import numpy as np
    import pandas as pd
    n = len(index)
    limit = as_of_micros(as_of)
    out = pd.DataFrame(index=pd.RangeIndex(n))

    t_code = customer_codes(tickets, index)
    opened, opened_ok = utc_micros(tickets["opened_at"])
    resolved, resolved_ok = utc_micros(tickets["resolved_at"])
    closed = is_value(normalized_text(tickets["status"]), "resolved", "closed")
    keep = (t_code >= 0) & opened_ok & (opened <= limit)
    is_resolved = np.where(resolved_ok, resolved <= limit, closed) & keep
    score = pd.to_numeric(tickets["satisfaction_score"], errors="coerce").to_numpy(float)
    rated = keep & ~np.isnan(score)
    out["tickets_opened"] = np.bincount(t_code[keep], minlength=n)
    out["tickets_resolved"] = np.bincount(t_code[is_resolved], minlength=n)
    score_sum = np.bincount(t_code[rated], weights=score[rated], minlength=n)
    score_count = np.bincount(t_code[rated], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["avg_satisfaction"] = np.where(score_count > 0, score_sum / np.maximum(score_count, 1), np.nan)

    s_code = customer_codes(surveys, index)
    answered, answered_ok = utc_micros(surveys["responded_at"])
    keep = (s_code >= 0) & answered_ok & (answered <= limit)
    out["survey_responses"] = np.bincount(s_code[keep], minlength=n)
    nps = pd.to_numeric(surveys["nps_score"], errors="coerce").to_numpy(float)
    scored = keep & ~np.isnan(nps)
    answers = pd.DataFrame(
        {
            "code": s_code[scored],
            "at": answered[scored],
            "nps": nps[scored],
            "id": surveys["response_id"].astype("str").to_numpy()[scored],
        }
    )
    # The latest answer wins; answers at the same moment fall to the response id, for determinism.
    last = answers.sort_values(["code", "at", "id"]).drop_duplicates("code", keep="last")
    latest_nps = np.zeros(n, dtype="int64")
    latest_nps[last["code"].to_numpy()] = last["nps"].round().to_numpy(dtype="int64")
    answered_by = np.zeros(n, dtype=bool)
    answered_by[last["code"].to_numpy()] = True
    out["latest_nps"] = pd.arrays.IntegerArray(latest_nps, mask=~answered_by)

    e_code = customer_codes(events, index)
    occurred, occurred_ok = utc_micros(events["occurred_at"])
    kind = normalized_text(events["event_type"])
    keep = (e_code >= 0) & occurred_ok & (occurred <= limit)
    out["campaign_opens"] = np.bincount(e_code[keep & is_value(kind, "open")], minlength=n)
    out["campaign_clicks"] = np.bincount(e_code[keep & is_value(kind, "click")], minlength=n)
    return out
