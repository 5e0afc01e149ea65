"""Standard metadata every published table carries: row count, table name, column schema, a preview."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from crm_pipelines.schema import Column
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

PREVIEW_ROWS = 5


def _column_type(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    if str(dtype).startswith("datetime64"):
        return "timestamp"
    return {"i": "integer", "u": "integer", "f": "float", "b": "boolean"}.get(kind, "string")


def column_schema(frame: pd.DataFrame, columns: Sequence[Column] = ()) -> dg.TableSchema:
    described = {c.name: c for c in columns}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(name),
                type=described[name].dtype if name in described else _column_type(frame[name].dtype),
                description=described[name].description if name in described else None,
            )
            for name in frame.columns
        ]
    )


def markdown_preview(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    head = frame.head(rows)
    if head.empty:
        return "_(no rows)_"
    return head.astype("string").fillna("").to_markdown(index=False)


def table_metadata(
    warehouse: Warehouse,
    schema: str,
    table: str,
    frame: pd.DataFrame,
    columns: Sequence[Column] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata a published table's materialization carries."""
    metadata: dict[str, Any] = {
        "dagster/row_count": len(frame),
        "dagster/table_name": f"{schema}.{table}",
        "dagster/column_schema": column_schema(frame, columns),
        "warehouse": warehouse.display_url,
        "preview": dg.MetadataValue.md(markdown_preview(frame)),
    }
    metadata.update(extra or {})
    return metadata


def counts_markdown(counts: Mapping[str, int], key: str = "value", value: str = "rows") -> dg.MetadataValue:
    import pandas as pd
    frame = pd.DataFrame({key: list(counts), value: list(counts.values())})
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_(none)_")
