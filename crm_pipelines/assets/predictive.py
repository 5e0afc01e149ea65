"""``marts``: the predictive tables (lifetime value, retention, churn risk) and the models behind them.

Models are refitted weekly and used nightly. The weekly job (``crm_weekly_refit``: the assets tagged
``crm/refit: weekly``) fits the CLV models and appends their parameters and holdout diagnostics to
history tables, and trains the churn model, appending its metrics and saving it with joblib. The
nightly job predicts with the latest of those; before the first weekly run it fits inline and logs so.

The assets are thin: the tables' columns are in :mod:`crm_pipelines.analytics.mart_columns` (the docs,
``docs/marts.md`` "Predictive marts", are rendered from :func:`predictive_columns`), the frames in
:mod:`crm_pipelines.analytics.predictive_tables`, the saved churn model in
:mod:`crm_pipelines.analytics.churn_model_store` and the charts in :mod:`crm_pipelines.analytics.reporting`.
scipy, scikit-learn, joblib and matplotlib are imported inside the assets, so loading the Dagster
definitions does not pay for them.
"""

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.churn_model_store import (
    CHURN_MODEL_FILE,
    churn_model_bundle,
    load_churn_model,
    save_churn_model,
)
from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.clv.summary import ORDER_COLUMNS
from crm_pipelines.analytics.mart_columns import (
    CHURN_METRICS,
    CHURN_METRICS_COLUMNS,
    CHURN_RISK,
    CHURN_RISK_COLUMNS,
    CLV,
    CLV_DIAGNOSTICS,
    CLV_DIAGNOSTICS_COLUMNS,
    CLV_PARAMS,
    CLV_PARAMS_COLUMNS,
    RETENTION_COHORTS,
    RETENTION_COHORTS_COLUMNS,
    RETENTION_SUMMARY,
    RETENTION_SUMMARY_COLUMNS,
    clv_columns,
    predictive_columns,
)
from crm_pipelines.analytics.predictive_tables import (
    CLV_PARAMS_HISTORY_COLUMNS,
    calibration_end_for,
    churn_metrics_frame,
    churn_risk_frame,
    clv_summary,
    column_names,
    diagnostics_frame,
    empty_frame,
    fit_clv_models,
    latest_clv_fits,
    lifetime_value_frame,
    month_dates,
    params_frame,
    service_features_cover_training,
    unscored_buyers,
)
from crm_pipelines.analytics.retention import retention_cohorts, retention_summary
from crm_pipelines.assets.marts import as_of_timestamp, core_deps, mart_key, read_core
from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.assets.publishing import blocking_failures, publish_checked
from crm_pipelines.assets.validation import validate_table, validated_check_specs
from crm_pipelines.automation import REFIT_TAG
from crm_pipelines.checks import MART_CONTRACT, SuiteSpec, mart_suite
from crm_pipelines.checks.suites import NON_NEGATIVE, PROBABILITY, RATE
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources import RunWindowResource, WarehouseResource
from crm_pipelines.schema import CORE, MARTS, Column
from crm_pipelines.warehouse import Warehouse, col

if TYPE_CHECKING:
    from crm_pipelines.analytics.clv import GammaGammaFit
    from crm_pipelines.analytics.clv.value import TransactionFit

# Table names and column tuples are re-exported: tests and callers import them from here.
__all__ = [
    "CHURN_METRICS",
    "CHURN_MODEL_FILE",
    "CHURN_RISK",
    "CLV",
    "CLV_DIAGNOSTICS",
    "CLV_PARAMS",
    "MODELS_DIR",
    "RETENTION_COHORTS",
    "RETENTION_SUMMARY",
    "build_predictive_assets",
    "predictive_columns",
]

MODELS_DIR = "data/models"
CHURN_INPUTS = ("orders", "support_tickets", "survey_responses")
REFIT_TAGS = {REFIT_TAG[0]: REFIT_TAG[1]}


# -- reading, publishing and metadata ----------------------------------------------------------------
def read_orders(wh: Warehouse) -> pd.DataFrame:
    """The columns of core.orders the models read, or an empty frame where no source delivers orders."""
    if not wh.table_exists(CORE, "orders"):
        return core_frame("orders")
    return wh.read_table(CORE, "orders", columns=list(ORDER_COLUMNS))


def latest_weekly_clv_fits(
    wh: Warehouse, settings: ClvSettings
) -> "tuple[TransactionFit, GammaGammaFit, str] | None":
    """The newest parameters the weekly refit appended to marts.clv_model_params for these settings
    (see :func:`latest_clv_fits`); None before the first refit."""
    if not wh.table_exists(MARTS, CLV_PARAMS):
        return None
    history = wh.read_table(MARTS, CLV_PARAMS, columns=list(CLV_PARAMS_HISTORY_COLUMNS))
    return latest_clv_fits(history, settings)


def all_service_features(wh: Warehouse) -> Callable[[pd.Timestamp], pd.DataFrame]:
    """Point-in-time support and survey features of every customer (``churn.service_features``)."""
    from crm_pipelines.analytics.churn import service_features

    return service_features(read_core(wh, "support_tickets"), read_core(wh, "survey_responses"))


def service_history(
    wh: Warehouse, orders: pd.DataFrame, as_of: pd.Timestamp, settings: ClvSettings
) -> Callable[[pd.Timestamp], pd.DataFrame] | None:
    """The support and survey features for training the churn model, or None when some of them would
    be empty for every buyer of the training window (:func:`service_features_cover_training`)."""
    features = all_service_features(wh)
    return features if service_features_cover_training(features, orders, as_of, settings) else None


def publish_mart(
    context: dg.AssetExecutionContext,
    config: CrmConfig,
    wh: Warehouse,
    table: str,
    frame: pd.DataFrame,
    suite: SuiteSpec,
    columns: Sequence[Column],
    extra: Mapping[str, Any] | None = None,
) -> dg.MaterializeResult:
    """Validate ``frame`` and swap it in as marts.<table> (the nightly marts)."""
    checks = validate_table(context, config, wh, mart_key(table), f"{MARTS}.{table}", frame, suite)
    return publish_checked(context, wh, MARTS, table, frame, checks, columns=columns, extra_metadata=extra)


def append_checked(
    context: dg.AssetExecutionContext,
    wh: Warehouse,
    table: str,
    frame: pd.DataFrame,
    checks: Sequence[dg.AssetCheckResult],
    columns: Sequence[Column],
    extra: Mapping[str, Any] | None = None,
) -> dg.MaterializeResult:
    """Append one run's rows to the history table marts.<table> unless a blocking check failed.

    Idempotent per run: the run's earlier rows are deleted first, so a retried step adds no duplicates.
    Rows that fail their checks go to quarantine exactly as a rejected mart does; the history stays.
    """
    if blocking_failures(checks):
        return publish_checked(
            context, wh, MARTS, table, frame, checks, columns=columns, extra_metadata=extra
        )
    wh.delete(MARTS, table, col("run_id") == context.run.run_id)
    wh.write_table(frame, MARTS, table, mode="append", column_types={c.name: c.dtype for c in columns})
    metadata = table_metadata(wh, MARTS, table, frame, columns, extra)
    metadata.update(
        {"dagster/row_count": wh.row_count(MARTS, table), "rows_appended": len(frame), "published": True}
    )
    return dg.MaterializeResult(metadata=metadata, check_results=list(checks))


def _number(value: Any) -> float | None:
    """A float for metadata, None for NaN (Dagster shows it as empty rather than as nan)."""
    return None if value is None or pd.isna(value) else float(value)


# reporting imports the segmentation code (scikit-learn) and draws with matplotlib: imported when a
# run renders, not when the code location loads.
def _table_md(frame: pd.DataFrame, **options: Any) -> dg.MetadataValue:
    from crm_pipelines.analytics.reporting import markdown_table

    return dg.MetadataValue.md(markdown_table(frame, **options))


def _image_md(png: bytes, alt: str) -> dg.MetadataValue:
    from crm_pipelines.analytics.reporting import png_markdown

    return dg.MetadataValue.md(png_markdown(png, alt))


# -- assets ------------------------------------------------------------------------------------------
def build_predictive_assets(
    config: CrmConfig, warehouse_kind: str, *, models_dir: str | os.PathLike[str] = MODELS_DIR
) -> list[dg.AssetsDefinition]:
    """The weekly model refits (tagged ``crm/refit: weekly``) and the nightly predictive marts.

    ``models_dir`` (relative to crm.yaml) is where the churn model is saved and read.
    """
    settings = config.clv
    model_path = config.resolve_path(models_dir) / CHURN_MODEL_FILE
    clv_col = f"clv_{settings.clv_months}m"
    purchases = {f"expected_purchases_{h}d": NON_NEGATIVE for h in settings.horizon_days}
    service_deps = core_deps(config, *CHURN_INPUTS)

    def spec(
        table: str, description: str, kinds: set[str], deps: Sequence[dg.AssetKey], weekly: bool
    ) -> dict:
        return {
            "key": mart_key(table),
            "group_name": MARTS,
            "kinds": {*kinds, warehouse_kind},
            "deps": list(deps),
            "description": description,
            "tags": REFIT_TAGS if weekly else None,
            "check_specs": validated_check_specs(mart_key(table), MART_CONTRACT),
        }

    def validated(
        context: dg.AssetExecutionContext, wh: Warehouse, table: str, frame: pd.DataFrame, suite: SuiteSpec
    ) -> list[dg.AssetCheckResult]:
        return validate_table(context, config, wh, mart_key(table), f"{MARTS}.{table}", frame, suite)

    @dg.asset(
        **spec(
            CLV_PARAMS,
            "Weekly: the CLV models (BG/NBD or Pareto/NBD, and Gamma-Gamma) fitted on "
            "core.orders; one row per parameter per run, appended.",
            {"scipy"},
            core_deps(config, "orders"),
            weekly=True,
        )
    )
    def clv_model_params(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        summary = clv_summary(read_orders(wh), as_of_timestamp(run_window), settings)
        if summary.empty:
            raise dg.Failure(
                f"{MARTS}.{CLV_PARAMS}: core.orders has no purchases up to "
                f"{run_window.as_of_date()}; nothing to fit the CLV models on"
            )
        try:
            fits = fit_clv_models(summary, settings)
        except ValueError as e:  # GammaGammaAssumptionError among them: its message says what to do
            raise dg.Failure(f"{MARTS}.{CLV_PARAMS}: {e}") from None
        for fit in fits:
            if not fit.converged:
                context.log.warning(f"{fit.model} did not converge: {fit.message}")
        frame = params_frame(fits, context.run.run_id, pd.Timestamp.now(tz="UTC"), run_window.as_of_date())
        suite = mart_suite(
            f"{MARTS}.{CLV_PARAMS}",
            columns=column_names(CLV_PARAMS_COLUMNS),
            ranges={"value": (0, None), "customers_used": NON_NEGATIVE},
            unique_keys=[["run_id", "model", "parameter"]],
            not_null_columns=["run_id", "as_of", "model", "parameter", "value"],
            min_rows=1,
        )
        extra = {
            "model": settings.model,
            "customers": len(summary),
            "parameters": _table_md(frame[["model", "parameter", "value", "std_error"]], float_digits=4),
            "purchase_model_log_likelihood": _number(fits[0].log_likelihood),
        }
        return append_checked(
            context,
            wh,
            CLV_PARAMS,
            frame,
            validated(context, wh, CLV_PARAMS, frame, suite),
            CLV_PARAMS_COLUMNS,
            extra,
        )

    @dg.asset(
        **spec(
            CLV_DIAGNOSTICS,
            "Weekly: the purchase model refitted without the last calibration_holdout_days, and its "
            "forecast of those days against what customers bought; appended.",
            {"scipy"},
            core_deps(config, "orders"),
            weekly=True,
        )
    )
    def clv_model_diagnostics(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.clv import calibration_holdout_diagnostics, fit_transaction_model
        from crm_pipelines.analytics.reporting import calibration_chart_png

        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        calibration_end = calibration_end_for(as_of, settings)
        calibration = clv_summary(read_orders(wh), as_of, settings, calibration_end=calibration_end)
        extra: dict[str, Any] = {"calibration_end": str(calibration_end.date())}
        if not (calibration["frequency"] > 0).any():
            context.log.warning(
                f"no repeat purchase before {calibration_end.date()}: the history is too short "
                f"to hold out {settings.calibration_holdout_days} days; no diagnostics this run"
            )
            frame = empty_frame(CLV_DIAGNOSTICS_COLUMNS)
        else:
            try:
                checked = calibration_holdout_diagnostics(
                    calibration, fit_transaction_model(calibration, settings)
                )
            except ValueError as e:
                raise dg.Failure(f"{MARTS}.{CLV_DIAGNOSTICS}: {e}") from None
            frame = diagnostics_frame(
                checked.table,
                checked.correlation,
                checked.mean_absolute_error,
                run_id=context.run.run_id,
                as_of=pd.Timestamp(run_window.as_of_date()),
                model=settings.model,
                calibration_end=calibration_end.tz_localize(None),
            )
            extra.update(
                {
                    "correlation": _number(checked.correlation),
                    "mean_absolute_error": _number(checked.mean_absolute_error),
                    "actual_total": checked.actual_total,
                    "predicted_total": checked.predicted_total,
                    "holdout": _table_md(checked.table, float_digits=3),
                    "calibration_chart": _image_md(calibration_chart_png(checked.table), "holdout purchases"),
                }
            )
        suite = mart_suite(
            f"{MARTS}.{CLV_DIAGNOSTICS}",
            columns=column_names(CLV_DIAGNOSTICS_COLUMNS),
            ranges={
                "customers": NON_NEGATIVE,
                "actual_total": NON_NEGATIVE,
                "predicted_total": NON_NEGATIVE,
                "correlation": (-1.0, 1.0),
            },
            unique_keys=[["run_id", "calibration_frequency"]],
        )
        checks = validated(context, wh, CLV_DIAGNOSTICS, frame, suite)
        return append_checked(context, wh, CLV_DIAGNOSTICS, frame, checks, CLV_DIAGNOSTICS_COLUMNS, extra)

    @dg.asset(
        **spec(
            CHURN_METRICS,
            f"Weekly: trains the churn model (no purchase within "
            f"{settings.churn_horizon_days} days), appends its holdout metrics and saves it for the "
            "nightly churn_risk.",
            {"scikitlearn"},
            service_deps,
            weekly=True,
        )
    )
    def churn_model_metrics(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.churn import train_churn_model  # scikit-learn: imported when used

        wh = warehouse.get_warehouse()
        orders, cutoff = read_orders(wh), as_of_timestamp(run_window)
        service = service_history(wh, orders, cutoff, settings)
        try:
            result = train_churn_model(
                orders,
                cutoff,
                horizon_days=settings.churn_horizon_days,
                extra_features=service,
                purchase_statuses=settings.purchase_statuses,
            )
        except ValueError as e:
            raise dg.Failure(f"{MARTS}.{CHURN_METRICS}: cannot train the churn model: {e}") from None
        trained_at = pd.Timestamp.now(tz="UTC")
        as_of = run_window.as_of_date()
        frame = churn_metrics_frame(
            result.metrics,
            result.calibration,
            result.feature_importance,
            run_id=context.run.run_id,
            trained_at=trained_at,
            as_of=pd.Timestamp(as_of),
            model_path=str(model_path),
        )
        suite = mart_suite(
            f"{MARTS}.{CHURN_METRICS}",
            columns=column_names(CHURN_METRICS_COLUMNS),
            ranges={
                "roc_auc": PROBABILITY,
                "brier_score": PROBABILITY,
                "churn_rate_train": RATE,
                "churn_rate_holdout": RATE,
            },
            unique_keys=[["run_id"]],
            not_null_columns=["as_of", "brier_score"],
            min_rows=1,
        )
        checks = validated(context, wh, CHURN_METRICS, frame, suite)
        if not blocking_failures(checks):
            bundle = churn_model_bundle(
                result,
                settings,
                service_features=service is not None,
                run_id=context.run.run_id,
                as_of=as_of,
                trained_at=trained_at,
            )
            save_churn_model(model_path, bundle)
        extra = {
            "roc_auc": _number(result.metrics["roc_auc"]),
            "brier_score": _number(result.metrics["brier_score"]),
            "calibration": _table_md(result.calibration, float_digits=3),
            "feature_importance": _table_md(result.feature_importance, max_rows=10, float_digits=4),
            "model_path": dg.MetadataValue.path(str(model_path)),
        }
        return append_checked(context, wh, CHURN_METRICS, frame, checks, CHURN_METRICS_COLUMNS, extra)

    @dg.asset(
        **spec(
            CLV,
            "One row per customer: P(alive), expected purchases, expected order value and "
            f"{settings.clv_months}-month CLV, predicted with the latest weekly model parameters.",
            {"scipy"},
            [mart_key(CLV_PARAMS), *core_deps(config, "unified_customers", "orders")],
            weekly=False,
        )
    )
    def customer_lifetime_value(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.clv import score_customers

        wh = warehouse.get_warehouse()
        customers = read_core(wh, "unified_customers")
        summary = clv_summary(read_orders(wh), as_of_timestamp(run_window), settings)
        try:
            latest = latest_weekly_clv_fits(wh, settings)
        except ValueError as e:  # parameters edited into something no model accepts
            raise dg.Failure(f"{MARTS}.{CLV_PARAMS} holds unusable parameters: {e}") from None
        fits: tuple[TransactionFit, GammaGammaFit] | None = None
        if latest is not None:
            transaction, spend, model_run_id = latest
            fits = (transaction, spend)
            source = f"parameters fitted by run {model_run_id}"
        else:
            model_run_id, source = context.run.run_id, "fitted inline (no weekly parameters yet)"
            context.log.warning(
                f"{MARTS}.{CLV_PARAMS} has no {settings.model} parameters in "
                f"{settings.time_unit_days:g}-day units yet: fitting inline for this run. "
                "The weekly refit job fits them from then on."
            )
            try:
                fits = fit_clv_models(summary, settings) if len(summary) else None
            except ValueError as e:
                context.log.warning(f"CLV models cannot be fitted ({e}); predictions stay empty")
        scores = score_customers(summary, *fits, settings) if fits and len(summary) else None
        frame = lifetime_value_frame(
            customers["customer_id"], summary, scores, settings, model_run_id, run_window.as_of_date()
        )
        columns = clv_columns(settings)
        suite = mart_suite(
            f"{MARTS}.{CLV}",
            columns=column_names(columns),
            ranges={
                "probability_alive": PROBABILITY,
                clv_col: NON_NEGATIVE,
                "expected_order_value": NON_NEGATIVE,
                "frequency": NON_NEGATIVE,
                **purchases,
            },
            unique_keys=[["customer_id"]],
            not_null_columns=["customer_id", "frequency"],
            min_rows=len(customers),
        )
        extra = {
            "parameters": source,
            "customers_with_purchases": len(summary),
            f"total_{clv_col}": _number(frame[clv_col].sum()),
            "mean_probability_alive": _number(frame["probability_alive"].mean()),
        }
        return publish_mart(context, config, wh, CLV, frame, suite, columns, extra)

    @dg.asset(
        **spec(
            RETENTION_COHORTS,
            "Monthly acquisition cohorts: share of each cohort buying in each later month, and its revenue.",
            {"pandas"},
            core_deps(config, "orders"),
            weekly=False,
        )
    )
    def retention_cohorts_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        cohorts = retention_cohorts(
            read_orders(wh), as_of_timestamp(run_window), purchase_statuses=settings.purchase_statuses
        )
        frame = (
            month_dates(cohorts, "cohort_month", "activity_month")
            if len(cohorts)
            else empty_frame(RETENTION_COHORTS_COLUMNS)
        )
        suite = mart_suite(
            f"{MARTS}.{RETENTION_COHORTS}",
            columns=column_names(RETENTION_COHORTS_COLUMNS),
            ranges={"retention_rate": RATE, "cohort_size": NON_NEGATIVE, "customers_active": NON_NEGATIVE},
            unique_keys=[["cohort_month", "months_since_first"]],
        )
        from crm_pipelines.analytics.reporting import retention_heatmap_png

        extra = {"cohorts": int(frame["cohort_month"].nunique())}
        if len(frame):
            extra["retention_heatmap"] = _image_md(retention_heatmap_png(frame), "retention")
        return publish_mart(
            context, config, wh, RETENTION_COHORTS, frame, suite, RETENTION_COHORTS_COLUMNS, extra
        )

    @dg.asset(
        **spec(
            RETENTION_SUMMARY,
            "One row per month: active, new and returning customers, "
            "month-to-month retention and churn, repeat-purchase rate.",
            {"pandas"},
            core_deps(config, "orders"),
            weekly=False,
        )
    )
    def retention_summary_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        summary = retention_summary(
            read_orders(wh), as_of_timestamp(run_window), purchase_statuses=settings.purchase_statuses
        )
        frame = month_dates(summary, "period_month") if len(summary) else empty_frame(RETENTION_SUMMARY_COLUMNS)
        suite = mart_suite(
            f"{MARTS}.{RETENTION_SUMMARY}",
            columns=column_names(RETENTION_SUMMARY_COLUMNS),
            ranges={"retention_rate": RATE, "churn_rate": RATE, "repeat_purchase_rate": RATE},
            unique_keys=[["period_month"]],
        )
        recent = frame.tail(12).iloc[::-1]
        extra = {"last_12_months": _table_md(recent, float_digits=3)}
        return publish_mart(
            context, config, wh, RETENTION_SUMMARY, frame, suite, RETENTION_SUMMARY_COLUMNS, extra
        )

    @dg.asset(
        **spec(
            CHURN_RISK,
            f"One row per customer with a purchase: probability of no purchase in the "
            f"next {settings.churn_horizon_days} days, risk decile and the top three drivers, scored "
            "with the weekly churn model.",
            {"scikitlearn"},
            [mart_key(CHURN_METRICS), *core_deps(config, "unified_customers", *CHURN_INPUTS)],
            weekly=False,
        )
    )
    def churn_risk(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.churn import score_churn, train_churn_model

        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        orders = read_orders(wh)
        scores, model_run_id, model_as_of = None, None, None
        bundle = load_churn_model(model_path, settings, context.log)
        if bundle is not None:
            # Scored with the features the model was trained with, whatever the data hold today.
            extra_features = all_service_features(wh) if bundle.get("service_features") else None
            try:
                scores = score_churn(
                    bundle["model"],
                    orders,
                    as_of,
                    bundle["reference"],
                    bundle["driver_candidates"],
                    extra_features=extra_features,
                    purchase_statuses=settings.purchase_statuses,
                )
                model_run_id, model_as_of = bundle["run_id"], dt.date.fromisoformat(bundle["as_of"])
            except ValueError as e:
                context.log.warning(f"{model_path}: {e}")
        if scores is None:
            context.log.warning(
                f"no usable churn model at {model_path}: training one inline for this run. "
                "The weekly refit job trains and saves it from then on."
            )
            try:
                result = train_churn_model(
                    orders,
                    as_of,
                    horizon_days=settings.churn_horizon_days,
                    extra_features=service_history(wh, orders, as_of, settings),
                    purchase_statuses=settings.purchase_statuses,
                )
                scores, model_run_id, model_as_of = result.scores, context.run.run_id, run_window.as_of_date()
            except ValueError as e:
                context.log.warning(
                    f"churn risk cannot be scored yet ({e}); buyers are listed without scores"
                )
                scores = unscored_buyers(orders, as_of, settings)
        customers = read_core(wh, "unified_customers")
        frame = churn_risk_frame(
            scores,
            customers["customer_id"],
            settings.churn_horizon_days,
            model_run_id,
            model_as_of,
            run_window.as_of_date(),
        )
        suite = mart_suite(
            f"{MARTS}.{CHURN_RISK}",
            columns=column_names(CHURN_RISK_COLUMNS),
            allowed_values={"risk_decile": range(1, 11)},
            ranges={
                "churn_probability": PROBABILITY,
                **{f"driver_{k}_effect": PROBABILITY for k in (1, 2, 3)},
            },
            unique_keys=[["customer_id"]],
            not_null_columns=["customer_id"],
        )
        top_drivers = frame["driver_1"].value_counts().rename_axis("driver_1").reset_index(name="customers")
        extra = {
            "model_run_id": model_run_id or "",
            "model_as_of": str(model_as_of or ""),
            "mean_churn_probability": _number(frame["churn_probability"].mean()),
            "top_drivers": _table_md(top_drivers, max_rows=10),
        }
        return publish_mart(context, config, wh, CHURN_RISK, frame, suite, CHURN_RISK_COLUMNS, extra)

    return [
        clv_model_params,
        clv_model_diagnostics,
        churn_model_metrics,
        customer_lifetime_value,
        retention_cohorts_mart,
        retention_summary_mart,
        churn_risk,
    ]
