"""``marts``: churn risk per customer, and the churn model behind it (trained weekly, used nightly)."""

import datetime as dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from crm_pipelines.analytics.churn_model_store import (
    CHURN_MODEL_FILE,
    churn_model_bundle,
    load_churn_model,
    save_churn_model,
)
from crm_pipelines.analytics.mart_columns import (
    CHURN_METRICS,
    CHURN_METRICS_COLUMNS,
    CHURN_RISK,
    CHURN_RISK_COLUMNS,
)
from crm_pipelines.analytics.predictive_tables import (
    churn_metrics_frame,
    churn_risk_frame,
    column_names,
    unscored_customers,
)
from crm_pipelines.assets.core import core_key
from crm_pipelines.assets.marts import as_of_timestamp, core_deps, mart_key, publish_mart, validate_mart
from crm_pipelines.assets.modeling import (
    CHURN_INPUTS,
    MODELS_DIR,
    all_service_features,
    append_checked,
    churn_metrics_stored,
    mart_spec,
    metadata_number,
    purchase_customers,
    record_inline_fit,
    service_history,
    table_md,
)
from crm_pipelines.assets.publishing import blocking_failures
from crm_pipelines.checks.rules import SuiteSpec
from crm_pipelines.checks.suites import PROBABILITY, RATE, mart_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.facts.build import utc_day
from crm_pipelines.facts.churn import WarehouseOrderHistory
from crm_pipelines.facts.orders import PURCHASES
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, MARTS
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd


def build_churn_assets(
    config: CrmConfig, warehouse_kind: str, models_dir: str | os.PathLike[str] = MODELS_DIR
) -> list[dg.AssetsDefinition]:
    """The churn model and its metrics (weekly), and per-customer churn risk (nightly)."""
    settings = config.clv
    model_path = config.resolve_path(models_dir) / CHURN_MODEL_FILE
    service_deps = [core_key(PURCHASES), *core_deps(config, *CHURN_INPUTS)]

    def spec(table: str, description: str, kinds: set[str], deps: Sequence[dg.AssetKey], weekly: bool) -> dict:
        return mart_spec(config, warehouse_kind, table, description, kinds, deps, weekly)

    def validated(context, wh: Warehouse, table: str, frame: "pd.DataFrame", suite: SuiteSpec) -> list:
        return validate_mart(context, config, wh, table, frame, suite)

    def fit_churn(wh: Warehouse, history, cutoff: "pd.Timestamp"):
        """The churn model trained as of ``cutoff``, and whether service features went into it."""
        from crm_pipelines.analytics.churn import train_churn_model  # scikit-learn: imported when used

        service = service_history(wh, purchase_customers(wh), cutoff, settings)
        result = train_churn_model(
            history,
            cutoff,
            horizon_days=settings.churn_horizon_days,
            extra_features=service,
            purchase_statuses=settings.purchase_statuses,
        )
        return result, service is not None

    def store_trained_model(
        context: dg.AssetExecutionContext, wh: Warehouse, result, service_features: bool, as_of: dt.date
    ) -> dg.MaterializeResult:
        """Append the model's holdout metrics to marts.churn_model_metrics and, if they pass, save it."""
        import pandas as pd
        trained_at = pd.Timestamp.now(tz="UTC")
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
                service_features=service_features,
                run_id=context.run.run_id,
                as_of=as_of,
                trained_at=trained_at,
            )
            save_churn_model(model_path, bundle)
        extra = {
            "roc_auc": metadata_number(result.metrics["roc_auc"]),
            "brier_score": metadata_number(result.metrics["brier_score"]),
            "calibration": table_md(result.calibration, float_digits=3),
            "feature_importance": table_md(result.feature_importance, max_rows=10, float_digits=4),
            "model_path": dg.MetadataValue.path(str(model_path)),
        }
        return append_checked(context, wh, CHURN_METRICS, frame, checks, CHURN_METRICS_COLUMNS, extra)

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
        wh = warehouse.get_warehouse()
        try:
            result, with_service = fit_churn(wh, WarehouseOrderHistory(wh), as_of_timestamp(run_window))
        except ValueError as e:
            raise dg.Failure(f"{MARTS}.{CHURN_METRICS}: cannot train the churn model: {e}") from None
        return store_trained_model(context, wh, result, with_service, run_window.as_of_date())

    @dg.asset(
        **spec(
            CHURN_RISK,
            f"One row per customer with a purchase: probability of no purchase in the "
            f"next {settings.churn_horizon_days} days, risk decile and the top three drivers, scored "
            "with the weekly churn model.",
            {"scikitlearn"},
            [mart_key(CHURN_METRICS), core_key(PURCHASES), *core_deps(config, "unified_customers", *CHURN_INPUTS)],
            weekly=False,
        )
    )
    def churn_risk(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.churn import score_churn  # scikit-learn: imported when used

        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        history = WarehouseOrderHistory(wh)
        scores, model_run_id, model_as_of = None, None, None
        bundle = load_churn_model(model_path, settings, context.log)
        if bundle is not None and not churn_metrics_stored(wh, bundle.get("run_id")):
            context.log.warning(
                f"{model_path} was trained by run {bundle.get('run_id')}, which stored no metrics in this "
                f"warehouse's {MARTS}.{CHURN_METRICS} (another warehouse's model?): not used"
            )
            bundle = None
        if bundle is not None:
            # Scored with the features the model was trained with, whatever the data hold today.
            extra_features = all_service_features(wh) if bundle.get("service_features") else None
            try:
                scores = score_churn(
                    bundle["model"],
                    history,
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
                f"no usable churn model at {model_path}: training one inline and saving it with its metrics. "
                "The weekly refit job retrains it from then on."
            )
            try:
                result, with_service = fit_churn(wh, history, as_of)
                scores, model_run_id, model_as_of = result.scores, context.run.run_id, run_window.as_of_date()
            except ValueError as e:
                context.log.warning(f"churn risk cannot be scored yet ({e}); buyers are listed without scores")
                scores = unscored_customers(purchase_customers(wh, utc_day(as_of))["customer_id"].to_numpy())
            else:
                # Stored as the weekly job would, so the first run leaves no model table unmaterialized.
                stored = store_trained_model(context, wh, result, with_service, run_window.as_of_date())
                record_inline_fit(context, CHURN_METRICS, stored)
        customers = wh.read_table(CORE, "unified_customers", columns=["customer_id"])
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
            "mean_churn_probability": metadata_number(frame["churn_probability"].mean()),
            "top_drivers": table_md(top_drivers, max_rows=10),
        }
        return publish_mart(context, config, wh, CHURN_RISK, frame, suite, CHURN_RISK_COLUMNS, extra)

    return [churn_model_metrics, churn_risk]
