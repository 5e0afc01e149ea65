"""``marts``: customer lifetime value, and the BTYD models behind it (refitted weekly, used nightly)."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from crm_pipelines.analytics.mart_columns import (
    CLV,
    CLV_DIAGNOSTICS,
    CLV_DIAGNOSTICS_COLUMNS,
    CLV_PARAMS,
    CLV_PARAMS_COLUMNS,
    clv_columns,
)
from crm_pipelines.analytics.predictive_tables import (
    calibration_end_for,
    column_names,
    diagnostics_frame,
    empty_frame,
    fit_clv_models,
    lifetime_value_frame,
    params_frame,
)
from crm_pipelines.assets.core import core_key
from crm_pipelines.assets.marts import as_of_timestamp, mart_key, publish_mart, validate_mart
from crm_pipelines.assets.modeling import (
    append_checked,
    image_md,
    latest_weekly_clv_fits,
    mart_spec,
    metadata_number,
    record_inline_fit,
    table_md,
)
from crm_pipelines.checks.rules import SuiteSpec
from crm_pipelines.checks.suites import NON_NEGATIVE, PROBABILITY, mart_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.facts.build import utc_day
from crm_pipelines.facts.clv import clv_calibration_summary, clv_summary_from_facts, clv_summary_from_purchases
from crm_pipelines.facts.orders import CUSTOMER_ORDER_FACTS, PURCHASES
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, MARTS
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

    from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
    from crm_pipelines.analytics.clv.value import TransactionFit


def build_clv_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    """CLV parameters and holdout diagnostics (weekly), and per-customer lifetime value (nightly)."""
    settings = config.clv
    clv_col = f"clv_{settings.clv_months}m"
    purchases = {f"expected_purchases_{h}d": NON_NEGATIVE for h in settings.horizon_days}

    def spec(table: str, description: str, kinds: set[str], deps: Sequence[dg.AssetKey], weekly: bool) -> dict:
        return mart_spec(config, warehouse_kind, table, description, kinds, deps, weekly)

    def validated(context, wh: Warehouse, table: str, frame: "pd.DataFrame", suite: SuiteSpec) -> list:
        return validate_mart(context, config, wh, table, frame, suite)

    def store_params(
        context: dg.AssetExecutionContext, wh: Warehouse, fits, customers: int, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        """Append the fitted parameters to marts.clv_model_params (one row per parameter)."""
        import pandas as pd
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
            "customers": customers,
            "parameters": table_md(frame[["model", "parameter", "value", "std_error"]], float_digits=4),
            "purchase_model_log_likelihood": metadata_number(fits[0].log_likelihood),
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

    def store_diagnostics(
        context: dg.AssetExecutionContext, wh: Warehouse, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        """Refit the purchase model without the holdout days and append how it forecast them."""
        import pandas as pd

        from crm_pipelines.analytics.clv.diagnostics import calibration_holdout_diagnostics
        from crm_pipelines.analytics.clv.workflow import fit_transaction_model
        from crm_pipelines.analytics.reporting import calibration_chart_png

        as_of = as_of_timestamp(run_window)
        calibration_end = calibration_end_for(as_of, settings)
        calibration = clv_calibration_summary(
            wh, utc_day(as_of), utc_day(calibration_end), settings.time_unit_days
        )
        extra: dict[str, Any] = {"calibration_end": str(calibration_end.date())}
        if not (calibration["frequency"] > 0).any():
            context.log.warning(
                f"no repeat purchase before {calibration_end.date()}: the history is too short "
                f"to hold out {settings.calibration_holdout_days} days; no diagnostics this run"
            )
            frame = empty_frame(CLV_DIAGNOSTICS_COLUMNS)
        else:
            try:
                checked = calibration_holdout_diagnostics(calibration, fit_transaction_model(calibration, settings))
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
                    "correlation": metadata_number(checked.correlation),
                    "mean_absolute_error": metadata_number(checked.mean_absolute_error),
                    "actual_total": checked.actual_total,
                    "predicted_total": checked.predicted_total,
                    "holdout": table_md(checked.table, float_digits=3),
                    "calibration_chart": image_md(calibration_chart_png(checked.table), "holdout purchases"),
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
            CLV_PARAMS,
            "Weekly: the CLV models (BG/NBD or Pareto/NBD, and Gamma-Gamma) fitted on "
            "core.purchases; one row per parameter per run, appended.",
            {"scipy"},
            [core_key(PURCHASES)],
            weekly=True,
        )
    )
    def clv_model_params(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        summary = clv_summary_from_purchases(wh, utc_day(run_window.cutoff()), settings.time_unit_days)
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
        return store_params(context, wh, fits, len(summary), run_window)

    @dg.asset(
        **spec(
            CLV_DIAGNOSTICS,
            "Weekly: the purchase model refitted without the last calibration_holdout_days, and its "
            "forecast of those days against what customers bought; appended.",
            {"scipy"},
            [core_key(PURCHASES)],
            weekly=True,
        )
    )
    def clv_model_diagnostics(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        return store_diagnostics(context, warehouse.get_warehouse(), run_window)

    @dg.asset(
        **spec(
            CLV,
            "One row per customer: P(alive), expected purchases, expected order value and "
            f"{settings.clv_months}-month CLV, predicted with the latest weekly model parameters.",
            {"scipy"},
            [mart_key(CLV_PARAMS), core_key(CUSTOMER_ORDER_FACTS)],
            weekly=False,
        )
    )
    def customer_lifetime_value(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.clv.value import score_customers

        wh = warehouse.get_warehouse()
        customers = wh.read_table(CORE, CUSTOMER_ORDER_FACTS, columns=["customer_id"])
        summary = clv_summary_from_facts(wh, utc_day(run_window.cutoff()), settings.time_unit_days)
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
                f"{settings.time_unit_days:g}-day units yet: fitting them inline and storing them with "
                "their holdout diagnostics. The weekly refit job refits them from then on."
            )
            try:
                fits = fit_clv_models(summary, settings) if len(summary) else None
            except ValueError as e:
                context.log.warning(f"CLV models cannot be fitted ({e}); predictions stay empty")
            if fits:
                # Stored as the weekly job would, so the first run leaves no model table unmaterialized.
                record_inline_fit(context, CLV_PARAMS, store_params(context, wh, fits, len(summary), run_window))
                try:
                    record_inline_fit(context, CLV_DIAGNOSTICS, store_diagnostics(context, wh, run_window))
                except dg.Failure as e:
                    context.log.warning(f"no CLV holdout diagnostics this run: {e.description}")
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
                "repeat_purchases": NON_NEGATIVE,
                **purchases,
            },
            unique_keys=[["customer_id"]],
            not_null_columns=["customer_id", "repeat_purchases"],
            min_rows=len(customers),
        )
        extra = {
            "parameters": source,
            "customers_with_purchases": len(summary),
            f"total_{clv_col}": metadata_number(frame[clv_col].sum()),
            "mean_probability_alive": metadata_number(frame["probability_alive"].mean()),
        }
        return publish_mart(context, config, wh, CLV, frame, suite, columns, extra)

    return [clv_model_params, clv_model_diagnostics, customer_lifetime_value]
