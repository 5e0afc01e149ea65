"""Shared by the predictive marts' assets: reading orders, the weekly models, publishing and metadata."""

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.mart_boundary import MART_KEYS
from crm_pipelines.analytics.mart_columns import (
    CHURN_METRICS,
    CLV_PARAMS,
)
from crm_pipelines.analytics.predictive_tables import (
    CLV_PARAMS_HISTORY_COLUMNS,
    latest_clv_fits,
    service_features_cover_training,
)
from crm_pipelines.assets.marts import mart_key
from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.assets.publishing import blocking_failures, publish_checked, table_docs
from crm_pipelines.assets.validation import validated_check_specs
from crm_pipelines.automation import REFIT_TAG
from crm_pipelines.checks.suites import MART_CONTRACT
from crm_pipelines.config import CrmConfig
from crm_pipelines.schema import CORE, MARTS, Column
from crm_pipelines.warehouse import Warehouse, col

if TYPE_CHECKING:
    import pandas as pd

    from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
    from crm_pipelines.analytics.clv.value import TransactionFit

MODELS_DIR = "data/models"
CHURN_INPUTS = ("orders", "support_tickets", "survey_responses")
REFIT_TAGS = {REFIT_TAG[0]: REFIT_TAG[1]}


# -- reading, publishing and metadata ----------------------------------------------------------------
def purchase_customers(wh: Warehouse, through_day: int | None = None) -> "pd.DataFrame":
    """One row per customer with a purchase in core.purchases (up to ``through_day``): ``customer_id``
    and the last ``ordered_at``; for the functions that only ask who bought, without reading orders."""
    import sqlalchemy as sa

    from crm_pipelines.facts.orders import PURCHASES

    if not wh.table_exists(CORE, PURCHASES):
        return core_frame("orders")[["customer_id", "ordered_at"]]
    p = wh.table(CORE, PURCHASES, ["customer_id", "ordered_at", "purchase_day", "amount"])
    stmt = sa.select(p.c.customer_id, sa.func.max(p.c.ordered_at).label("ordered_at"))
    if through_day is not None:
        stmt = stmt.where(p.c.purchase_day <= through_day)
    return wh.query(stmt.group_by(p.c.customer_id)).astype({"customer_id": "str"})


def latest_weekly_clv_fits(wh: Warehouse, settings: ClvSettings) -> "tuple[TransactionFit, GammaGammaFit, str] | None":
    """The newest parameters the weekly refit appended to marts.clv_model_params for these settings
    (see :func:`latest_clv_fits`); None before the first refit."""
    if not wh.table_exists(MARTS, CLV_PARAMS):
        return None
    history = wh.read_table(MARTS, CLV_PARAMS, columns=list(CLV_PARAMS_HISTORY_COLUMNS))
    return latest_clv_fits(history, settings)


def churn_metrics_stored(wh: Warehouse, run_id: str | None) -> bool:
    """Whether the run that trained a saved churn model stored its metrics in this warehouse; the model
    file lives outside the warehouse, so one trained against another warehouse must not be used."""
    return bool(run_id) and wh.table_exists(MARTS, CHURN_METRICS) and bool(
        wh.row_count(MARTS, CHURN_METRICS, col("run_id") == run_id)
    )


def all_service_features(wh: Warehouse) -> "Callable[[pd.Timestamp], pd.DataFrame]":
    """Point-in-time support and survey features of every customer (``churn.service_features``), one
    warehouse query per cutoff."""
    from crm_pipelines.facts.build import ensure_core_inputs
    from crm_pipelines.facts.churn import service_features_from_warehouse

    ensure_core_inputs(wh, "support_tickets", "survey_responses")
    return service_features_from_warehouse(wh)


def service_history(
    wh: Warehouse, orders: "pd.DataFrame", as_of: "pd.Timestamp", settings: ClvSettings
) -> "Callable[[pd.Timestamp], pd.DataFrame] | None":
    """The support and survey features for training the churn model, or None when some of them would
    be empty for every buyer of the training window (:func:`service_features_cover_training`)."""
    features = all_service_features(wh)
    return features if service_features_cover_training(features, orders, as_of, settings) else None


def append_checked(
    context: dg.AssetExecutionContext,
    wh: Warehouse,
    table: str,
    frame: "pd.DataFrame",
    checks: Sequence[dg.AssetCheckResult],
    columns: Sequence[Column],
    extra: Mapping[str, Any] | None = None,
) -> dg.MaterializeResult:
    """Append one run's rows to the history table marts.<table> unless a blocking check failed.

    Idempotent per run: the run's earlier rows are deleted first, so a retried step adds no duplicates.
    Rows that fail their checks go to quarantine exactly as a rejected mart does; the history stays.
    """
    if blocking_failures(checks):
        return publish_checked(context, wh, MARTS, table, frame, checks, columns=columns, extra_metadata=extra,
                               staged=True)  # fmt: skip
    wh.drop_table(MARTS, f"{table}__new")  # the validated copy (validate_mart); the rows are appended below
    wh.delete(MARTS, table, col("run_id") == context.run.run_id)
    wh.write_table(frame, MARTS, table, mode="append", column_types={c.name: c.dtype for c in columns})
    wh.document(MARTS, table, table_docs(table, columns, MART_KEYS.get(table, ())))
    metadata = table_metadata(wh, MARTS, table, frame, columns, extra)
    metadata.update({"dagster/row_count": wh.row_count(MARTS, table), "rows_appended": len(frame), "published": True})
    return dg.MaterializeResult(metadata=metadata, check_results=list(checks))


def record_inline_fit(context: dg.AssetExecutionContext, table: str, stored: dg.MaterializeResult) -> None:
    """Record a model table that a nightly asset stored for a model it fitted inline (no weekly fit yet)
    as a materialization of the weekly asset, with its check results, so the asset graph shows the
    model's table materialized from the first run on, as the warehouse holds it."""
    key = mart_key(table)
    metadata = {**(stored.metadata or {}), "fitted_by": f"{context.asset_key.to_user_string()} (inline, first run)"}
    context.log_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))
    for check in stored.check_results or []:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=check.check_name or "",
                passed=check.passed,
                metadata=check.metadata,
                severity=check.severity,
                description=check.description,
                blocking=check.severity == dg.AssetCheckSeverity.ERROR,
            )
        )


def metadata_number(value: Any) -> float | None:
    """A float for metadata, None for NaN (Dagster shows it as empty rather than as nan)."""
    import pandas as pd
    return None if value is None or pd.isna(value) else float(value)


# reporting imports the segmentation code (scikit-learn) and draws with matplotlib: imported when a
# run renders, not when the code location loads.
def table_md(frame: "pd.DataFrame", **options: Any) -> dg.MetadataValue:
    from crm_pipelines.analytics.reporting import markdown_table

    return dg.MetadataValue.md(markdown_table(frame, **options))


def image_md(png: bytes, alt: str) -> dg.MetadataValue:
    from crm_pipelines.analytics.reporting import png_markdown

    return dg.MetadataValue.md(png_markdown(png, alt))


def mart_spec(
    config: CrmConfig,
    warehouse_kind: str,
    table: str,
    description: str,
    kinds: set[str],
    deps: Sequence[dg.AssetKey],
    weekly: bool,
) -> dict:
    """``@dg.asset`` arguments of a predictive mart; weekly refits carry the refit tag."""
    return {
        "key": mart_key(table),
        "group_name": MARTS,
        "kinds": {*kinds, warehouse_kind},
        "deps": list(deps),
        "description": description,
        "tags": REFIT_TAGS if weekly else None,
        "check_specs": validated_check_specs(mart_key(table), MART_CONTRACT),
    }
