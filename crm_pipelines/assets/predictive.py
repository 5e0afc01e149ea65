"""``marts``: the predictive tables (lifetime value, retention, churn risk) and the models behind them.

Models are refitted weekly and used nightly. The weekly job (``crm_weekly_refit``: the assets tagged
``crm/refit: weekly``) fits the CLV models and appends their parameters and holdout diagnostics to
history tables, and trains the churn model, appending its metrics and saving it with joblib. The
nightly job predicts with the latest of those; before the first weekly run it fits inline and logs so.
Column meanings are in ``docs/marts.md`` ("Predictive marts"), rendered from :func:`predictive_columns`.

Beside the seven assets, this module holds what only they use: the tables' column contracts (the
docs are rendered from them), the Dagster-free helpers that shape frames and save or load the churn
model, and two small charts. That keeps each table's definition, validation and publication in one
place, at the price of a long module; the helpers move to ``analytics`` as soon as anything else needs
them.
"""

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.clv import (
    BgNbdFit,
    ClvSettings,
    GammaGammaFit,
    ParetoNbdFit,
    calibration_holdout_diagnostics,
    fit_gamma_gamma,
    fit_transaction_model,
    summary_from_orders,
)
from crm_pipelines.analytics.clv.summary import ORDER_COLUMNS, day_number, purchase_days
from crm_pipelines.analytics.clv.value import TransactionFit, score_customers
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
from crm_pipelines.schema import CORE, CUSTOMER_ID, MARTS, Column, ColumnType
from crm_pipelines.warehouse import Warehouse, col

CLV_PARAMS = "clv_model_params"
CLV_DIAGNOSTICS = "clv_model_diagnostics"
CHURN_METRICS = "churn_model_metrics"
CLV = "customer_lifetime_value"
RETENTION_COHORTS = "retention_cohorts"
RETENTION_SUMMARY = "retention_summary"
CHURN_RISK = "churn_risk"
MODELS_DIR = "data/models"
CHURN_MODEL_FILE = "churn_model.joblib"
CHURN_MODEL_FORMAT = 1
CHURN_INPUTS = ("orders", "support_tickets", "survey_responses")
REFIT_TAGS = {REFIT_TAG[0]: REFIT_TAG[1]}
TRANSACTION_MODELS: dict[str, type[BgNbdFit] | type[ParetoNbdFit]] = {
    "bgnbd": BgNbdFit,
    "pareto_nbd": ParetoNbdFit,
}


# -- column contracts --------------------------------------------------------------------------------
def _c(name: str, dtype: ColumnType, description: str) -> Column:
    return Column(name, dtype, description)


RUN_ID = _c("run_id", "string", "The Dagster run that fitted the model.")
AS_OF = _c("as_of", "date", "The as-of day: orders up to its end were used.")

CLV_PARAMS_COLUMNS = (
    RUN_ID,
    _c("fitted_at", "timestamp", "When the model was fitted (UTC)."),
    AS_OF,
    _c("model", "string", "bgnbd or pareto_nbd (purchase counts), gamma_gamma (spend per purchase)."),
    _c("parameter", "string", "r, alpha, a, b (BG/NBD); r, alpha, s, beta (Pareto/NBD); p, q, gamma."),
    _c("value", "float", "Maximum-likelihood estimate."),
    _c("std_error", "float", "Standard error from the Hessian; null when it cannot be computed."),
    _c(
        "time_unit",
        "string",
        "Unit of recency, T and the scale parameters (week by default); none for spend.",
    ),
    _c("time_unit_days", "float", "The same unit in days (clv.time_unit_days, 7); null for gamma_gamma."),
    _c("log_likelihood", "float", "Total log-likelihood of the model's fit over its customers."),
    _c("customers_used", "integer", "Customers fitted on (repeat buyers only for gamma_gamma)."),
    _c("converged", "boolean", "The optimizer reported convergence."),
)
CLV_DIAGNOSTICS_COLUMNS = (
    RUN_ID,
    AS_OF,
    _c("model", "string", "The purchase-count model checked (bgnbd or pareto_nbd)."),
    _c("calibration_end", "date", "Last day of the calibration period; the holdout runs from then to as_of."),
    _c(
        "calibration_frequency",
        "string",
        "Repeat purchase days in the calibration period: 0 to 6, 7+, or all.",
    ),
    _c("customers", "integer", "Customers in the bucket (first purchase up to calibration_end)."),
    _c("actual_mean", "float", "Mean purchase days per customer in the holdout, observed."),
    _c("predicted_mean", "float", "The same, predicted by the model fitted on the calibration period."),
    _c("actual_total", "float", "Purchase days in the holdout, observed."),
    _c("predicted_total", "float", "Purchase days in the holdout, predicted."),
    _c("correlation", "float", "Row all only: Pearson correlation of predicted and actual per customer."),
    _c("mean_absolute_error", "float", "Row all only: mean |predicted - actual| purchases per customer."),
)
CHURN_METRICS_COLUMNS = (
    RUN_ID,
    _c("trained_at", "timestamp", "When the model was trained (UTC)."),
    AS_OF,
    _c("horizon_days", "integer", "A customer has churned when she does not buy within this many days."),
    _c("train_cutoff", "date", "Features as of this day, labels from the following horizon: training."),
    _c("holdout_cutoff", "date", "The same one horizon later: the holdout check, then the refit."),
    _c("customers_train", "integer", "Customers with a purchase by train_cutoff."),
    _c("customers_holdout", "integer", "Customers with a purchase by holdout_cutoff."),
    _c("customers_scored", "integer", "Customers with a purchase by as_of."),
    _c("churn_rate_train", "float", "Share of training customers who churned."),
    _c("churn_rate_holdout", "float", "Share of holdout customers who churned."),
    _c("roc_auc", "float", "Holdout ROC AUC of the model trained one horizon earlier (0.5 = chance)."),
    _c("brier_score", "float", "Holdout mean squared error of the churn probability (lower is better)."),
    _c("mean_predicted_holdout", "float", "Mean predicted churn probability in the holdout."),
    _c(
        "calibration",
        "string",
        "Holdout deciles of predicted risk, JSON: customers, mean_predicted, observed_churn_rate.",
    ),
    _c("feature_importance", "string", "JSON: per feature, the mean drop in holdout ROC AUC when shuffled."),
    _c("model_path", "string", "Where the fitted model was saved (joblib)."),
)
RETENTION_COHORTS_COLUMNS = (
    _c("cohort_month", "date", "Month of the customers' first purchase (first day of the month)."),
    _c("months_since_first", "integer", "Months from the cohort month to the activity month (0, 1, ...)."),
    _c("activity_month", "date", "The month counted."),
    _c("cohort_size", "integer", "Customers whose first purchase fell in the cohort month."),
    _c("customers_active", "integer", "Of those, customers with a purchase in the activity month."),
    _c("retention_rate", "float", "customers_active / cohort_size (1 in month 0)."),
    _c("revenue", "float", "The cohort's purchase value in the activity month."),
    _c("revenue_retention", "float", "revenue / the cohort's revenue in its first month."),
    _c("period_complete", "boolean", "The activity month ended on or before the as-of day."),
)
RETENTION_SUMMARY_COLUMNS = (
    _c("period_month", "date", "The calendar month (first day)."),
    _c("customers_acquired_before", "integer", "Customers whose first purchase came before the month."),
    _c("active_previous_month", "integer", "Customers with a purchase in the previous month."),
    _c("active_customers", "integer", "Customers with a purchase in the month."),
    _c("new_customers", "integer", "Of those, first purchase in the month."),
    _c("returning_customers", "integer", "Of those, first purchase earlier."),
    _c("retained_customers", "integer", "Customers with a purchase in both the previous month and this one."),
    _c("retention_rate", "float", "retained_customers / active_previous_month; null when that is 0."),
    _c("churn_rate", "float", "1 - retention_rate."),
    _c("repeat_customers", "integer", "Customers with purchases on two or more days by the month's end."),
    _c("repeat_purchase_rate", "float", "repeat_customers / customers acquired by the month's end."),
    _c("period_complete", "boolean", "The month ended on or before the as-of day."),
)
DRIVER_COLUMNS = tuple(
    column
    for k in (1, 2, 3)
    for column in (
        _c(f"driver_{k}", "string", f"The feature raising her risk most, rank {k} (null when none does)."),
        _c(
            f"driver_{k}_effect",
            "float",
            "Churn probability it adds over setting it to the population median.",
        ),
    )
)
CHURN_RISK_COLUMNS = (
    CUSTOMER_ID,
    _c("churn_probability", "float", "Probability of no purchase within horizon_days after the as-of day."),
    _c("risk_decile", "integer", "Decile of churn_probability among scored customers, 10 = riskiest."),
    *DRIVER_COLUMNS,
    _c("horizon_days", "integer", "The churn horizon (clv.churn_horizon_days)."),
    _c(
        "model_run_id",
        "string",
        "The run that trained the model used (churn_model_metrics.run_id); this run when trained inline.",
    ),
    _c("model_as_of", "date", "The as-of day the model was trained on."),
    AS_OF,
)


def clv_columns(settings: ClvSettings) -> tuple[Column, ...]:
    """Columns of marts.customer_lifetime_value; the horizon and CLV columns follow the settings."""
    unit = f"in {settings.time_unit_days:g}-day units"
    return (
        CUSTOMER_ID,
        _c("frequency", "integer", "Repeat purchase days (after the first); 0 without purchases."),
        _c("recency", "float", f"First to last purchase day, {unit}; null without purchases."),
        _c(
            "T",
            "float",
            f"First purchase day to the as-of day (the customer's age), {unit}; null without purchases.",
        ),
        _c("monetary_value", "float", "Mean value of the repeat purchase days; 0 without repeat purchases."),
        _c(
            "probability_alive",
            "float",
            "Probability the customer still buys (has not dropped out); null without purchases.",
        ),
        *(
            _c(
                f"expected_purchases_{h}d",
                "float",
                f"Expected purchase days in the next {h} days; 0 without purchases.",
            )
            for h in settings.horizon_days
        ),
        _c(
            "expected_order_value",
            "float",
            "Gamma-Gamma expected value of a next purchase; null without purchases.",
        ),
        _c(
            f"clv_{settings.clv_months}m",
            "float",
            f"Expected revenue of the next {settings.clv_months} months, "
            f"discounted at {settings.discount_rate_annual:.0%} a year; 0 without purchases.",
        ),
        _c("model", "string", "The purchase-count model (bgnbd or pareto_nbd), with gamma_gamma for spend."),
        _c(
            "model_run_id",
            "string",
            "The run that fitted the parameters used (clv_model_params.run_id); this run when fitted inline.",
        ),
        AS_OF,
    )


def predictive_columns(settings: ClvSettings | None = None) -> dict[str, tuple[Column, ...]]:
    """Every predictive mart's columns, as docs/marts.md lists them."""
    return {
        CLV: clv_columns(settings or ClvSettings()),
        CHURN_RISK: CHURN_RISK_COLUMNS,
        RETENTION_COHORTS: RETENTION_COHORTS_COLUMNS,
        RETENTION_SUMMARY: RETENTION_SUMMARY_COLUMNS,
        CLV_PARAMS: CLV_PARAMS_COLUMNS,
        CLV_DIAGNOSTICS: CLV_DIAGNOSTICS_COLUMNS,
        CHURN_METRICS: CHURN_METRICS_COLUMNS,
    }


def _names(columns: Sequence[Column]) -> list[str]:
    return [c.name for c in columns]


_EMPTY_DTYPES = {
    "string": "str",
    "date": "datetime64[us]",
    "timestamp": "datetime64[us, UTC]",
    "float": "float64",
    "integer": "int64",
    "boolean": "bool",
}


def _empty(columns: Sequence[Column]) -> pd.DataFrame:
    return pd.DataFrame({c.name: pd.Series(dtype=_EMPTY_DTYPES[c.dtype]) for c in columns})


def _month_dates(frame: pd.DataFrame, *names: str) -> pd.DataFrame:
    """Month columns (UTC midnight timestamps) as naive timestamps, which publish as dates."""
    return frame.assign(**{n: pd.to_datetime(frame[n], utc=True).dt.tz_localize(None) for n in names})


def _number(value: Any) -> float | None:
    """A float for metadata, None for NaN (Dagster shows it as empty rather than as nan)."""
    return None if value is None or pd.isna(value) else float(value)


# -- reading and writing -----------------------------------------------------------------------------
def read_orders(wh: Warehouse) -> pd.DataFrame:
    """The columns of core.orders the models read, or an empty frame where no source delivers orders."""
    if not wh.table_exists(CORE, "orders"):
        return core_frame("orders")
    return wh.read_table(CORE, "orders", columns=list(ORDER_COLUMNS))


def all_service_features(wh: Warehouse) -> Callable[[pd.Timestamp], pd.DataFrame]:
    from crm_pipelines.analytics.churn import service_features

    return service_features(read_core(wh, "support_tickets"), read_core(wh, "survey_responses"))


def service_history(
    wh: Warehouse, orders: pd.DataFrame, as_of: pd.Timestamp, settings: ClvSettings
) -> Callable[[pd.Timestamp], pd.DataFrame] | None:
    """Point-in-time support and survey features for the churn model (churn.service_features), or
    None when some of them would be empty for every buyer of the training window.

    A feature no training customer has breaks the gradient boosting's binning, and says nothing:
    a shop without a support desk, or whose surveys started recently, trains on purchases alone.
    """
    features = all_service_features(wh)
    train_cutoff = pd.Timestamp(day_number(as_of) - 2 * settings.churn_horizon_days, unit="D", tz="UTC")
    at_train = features(train_cutoff)
    buyers = at_train[at_train["customer_id"].isin(orders["customer_id"].astype("str"))]
    return features if len(buyers) and buyers.drop(columns="customer_id").notna().any().all() else None


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


# -- lifetime value ----------------------------------------------------------------------------------
def clv_summary(orders: pd.DataFrame, as_of: pd.Timestamp, settings: ClvSettings) -> pd.DataFrame:
    return summary_from_orders(
        orders, as_of, settings.time_unit_days, purchase_statuses=settings.purchase_statuses
    )


def fit_clv_models(summary: pd.DataFrame, settings: ClvSettings) -> tuple[TransactionFit, GammaGammaFit]:
    """The configured purchase-count model and the Gamma-Gamma spend model (GammaGammaAssumptionError,
    a ValueError, when the spend data break its assumptions)."""
    spend = fit_gamma_gamma(
        summary["frequency"], summary["monetary_value"], max_correlation=settings.gamma_gamma_max_correlation
    )
    return fit_transaction_model(summary, settings), spend


def params_frame(
    fits: Sequence[TransactionFit | GammaGammaFit], run_id: str, fitted_at: pd.Timestamp, as_of: dt.date
) -> pd.DataFrame:
    """One row per parameter of each fit, in the marts.clv_model_params shape."""
    frame = pd.concat([fit.to_frame() for fit in fits], ignore_index=True)
    by_model = {fit.model: fit for fit in fits}
    frame["time_unit_days"] = [by_model[m].time_unit_days for m in frame["model"]]
    frame["converged"] = [bool(by_model[m].converged) for m in frame["model"]]
    frame = frame.assign(run_id=run_id, fitted_at=fitted_at, as_of=pd.Timestamp(as_of))
    return frame[_names(CLV_PARAMS_COLUMNS)]


def latest_clv_fits(wh: Warehouse, settings: ClvSettings) -> tuple[TransactionFit, GammaGammaFit, str] | None:
    """The newest fitted parameters in marts.clv_model_params for the configured model and time unit,
    as (purchase model, spend model, run_id); None when there are none yet."""
    if not wh.table_exists(MARTS, CLV_PARAMS):
        return None
    history = wh.read_table(
        MARTS, CLV_PARAMS, columns=["run_id", "fitted_at", "model", "parameter", "value", "time_unit_days"]
    )
    spend_runs = set(history.loc[history["model"] == GammaGammaFit.MODEL_NAME, "run_id"])
    usable = history[
        (history["model"] == settings.model)
        & np.isclose(history["time_unit_days"].astype(float), settings.time_unit_days)
        & history["run_id"].isin(spend_runs)
    ]
    if usable.empty:
        return None
    run_id = str(usable.sort_values("fitted_at", kind="stable")["run_id"].iloc[-1])
    rows = history[history["run_id"] == run_id]

    def params(model: str) -> dict[str, float]:
        mine = rows[rows["model"] == model]
        return dict(zip(mine["parameter"].astype(str), mine["value"].astype(float), strict=True))

    unit = settings.time_unit_days
    transaction = TRANSACTION_MODELS[settings.model].from_params(
        time_unit_days=unit, **params(settings.model)
    )
    spend = GammaGammaFit.from_params(time_unit_days=unit, **params(GammaGammaFit.MODEL_NAME))
    return transaction, spend, run_id


def lifetime_value_frame(
    customer_ids: pd.Series,
    summary: pd.DataFrame,
    scores: pd.DataFrame | None,
    settings: ClvSettings,
    model_run_id: str | None,
    as_of: dt.date,
) -> pd.DataFrame:
    """One row per customer of ``customer_ids``: the scores of buyers, zeros and nulls for the others.

    Without ``scores`` (no model could be fitted) buyers keep their history and get null predictions.
    """
    columns = _names(clv_columns(settings))
    scored = scores if scores is not None else summary
    frame = pd.DataFrame({"customer_id": customer_ids.astype("str").to_numpy()}).merge(
        scored.astype({"customer_id": "str"}), on="customer_id", how="left"
    )
    frame = frame.reindex(columns=columns)
    buyer = frame["frequency"].notna()
    zero_without_purchases = [
        "frequency",
        "monetary_value",
        f"clv_{settings.clv_months}m",
        *(f"expected_purchases_{h}d" for h in settings.horizon_days),
    ]
    for name in zero_without_purchases:
        frame[name] = frame[name].astype(float).where(buyer, 0.0)
    frame["frequency"] = frame["frequency"].astype("int64")
    return frame.assign(model=settings.model, model_run_id=model_run_id, as_of=pd.Timestamp(as_of))


def diagnostics_frame(table: pd.DataFrame, correlation: float, mae: float, **run: Any) -> pd.DataFrame:
    """The holdout table with the run's identity; run-level figures on the "all" row only."""
    is_total = table["calibration_frequency"] == "all"
    frame = table.assign(**run)
    frame["correlation"] = np.where(is_total, correlation, np.nan)
    frame["mean_absolute_error"] = np.where(is_total, mae, np.nan)
    return frame[_names(CLV_DIAGNOSTICS_COLUMNS)]


# -- churn -------------------------------------------------------------------------------------------
def save_churn_model(path: Path, bundle: Mapping[str, Any]) -> None:
    """Write the model bundle next to its final name, then rename: readers never see half a file."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    joblib.dump(dict(bundle), partial)
    os.replace(partial, path)


def load_churn_model(path: Path, settings: ClvSettings, log: Any) -> dict[str, Any] | None:
    """The churn model the weekly job saved, or None (logged) when there is none fit for these settings.

    joblib files are pickles: only the file this project writes is ever loaded, from the configured
    models folder, which must not be writable by anyone the pipelines should not trust.
    """
    import joblib

    if not path.exists():
        return None
    try:
        bundle = joblib.load(path)
    except Exception as e:  # any unreadable file means: train afresh
        log.warning(f"{path}: cannot load the churn model ({e.__class__.__name__}: {e})")
        return None
    if not isinstance(bundle, dict):
        log.warning(f"{path}: not a churn model saved by this project; not using it")
        return None
    # A model of another horizon or purchase definition predicts something else; a pickle from
    # another scikit-learn version may load and still predict wrongly.
    expected = {
        "format": CHURN_MODEL_FORMAT,
        "horizon_days": settings.churn_horizon_days,
        "purchase_statuses": list(settings.purchase_statuses),
        "sklearn_version": version("scikit-learn"),
    }
    differs = {k: bundle.get(k) for k, v in expected.items() if bundle.get(k) != v}
    if differs:
        log.warning(f"{path}: the churn model was saved with {differs}, not {expected}; not using it")
        return None
    return bundle


def churn_risk_frame(
    scores: pd.DataFrame,
    customer_ids: pd.Series,
    horizon_days: int,
    model_run_id: str | None,
    model_as_of: dt.date | None,
    as_of: dt.date,
) -> pd.DataFrame:
    """The scores of known customers in the marts.churn_risk shape."""
    known = scores[scores["customer_id"].astype("str").isin(customer_ids.astype("str"))]
    frame = known.reset_index(drop=True).assign(
        horizon_days=int(horizon_days),
        model_run_id=model_run_id,
        model_as_of=pd.Timestamp(model_as_of) if model_as_of else pd.NaT,
        as_of=pd.Timestamp(as_of),
    )
    frame["risk_decile"] = frame["risk_decile"].astype("Int64")
    return frame.reindex(columns=_names(CHURN_RISK_COLUMNS))


def unscored_buyers(orders: pd.DataFrame, as_of: pd.Timestamp, settings: ClvSettings) -> pd.DataFrame:
    """Every customer with a purchase, with no churn score: when no model can be trained yet."""
    days = purchase_days(orders, purchase_statuses=settings.purchase_statuses)
    ids = days.loc[days["day"] <= day_number(as_of), "customer_id"].unique()
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "churn_probability": np.nan,
            "risk_decile": pd.array([pd.NA] * len(ids), dtype="Int64"),
        }
    )


def churn_metrics_frame(
    metrics: Mapping[str, Any], calibration: pd.DataFrame, importance: pd.DataFrame, **run: Any
) -> pd.DataFrame:
    """One row: the run's churn model metrics, with calibration and importance as JSON."""
    row = {**{c.name: metrics.get(c.name) for c in CHURN_METRICS_COLUMNS}, **run}
    for name in ("train_cutoff", "holdout_cutoff"):
        row[name] = pd.Timestamp(metrics[name])
    row["calibration"] = calibration.to_json(orient="records")
    row["feature_importance"] = json.dumps(
        {f: round(float(v), 6) for f, v in zip(importance["feature"], importance["importance"], strict=True)}
    )
    return pd.DataFrame([row])[_names(CHURN_METRICS_COLUMNS)]


# -- metadata renderings ------------------------------------------------------------------------------
# reporting imports the segmentation code (scikit-learn): imported when a run renders, not when the
# code location loads.
def _table_md(frame: pd.DataFrame, **options: Any) -> dg.MetadataValue:
    from crm_pipelines.analytics.reporting import markdown_table

    return dg.MetadataValue.md(markdown_table(frame, **options))


def _image_md(png: bytes, alt: str) -> dg.MetadataValue:
    from crm_pipelines.analytics.reporting import png_markdown

    return dg.MetadataValue.md(png_markdown(png, alt))


def _png(figure: Any) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def calibration_chart_png(table: pd.DataFrame) -> bytes:
    """Bars: mean holdout purchases per customer, actual against predicted, by calibration frequency."""
    from matplotlib.figure import Figure

    buckets = table[table["calibration_frequency"] != "all"]
    figure = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(buckets))
    axes.bar(x - 0.2, buckets["actual_mean"], 0.4, label="actual", color="#4C72B0")
    axes.bar(x + 0.2, buckets["predicted_mean"], 0.4, label="predicted", color="#DD8452")
    axes.set_xticks(x, buckets["calibration_frequency"])
    axes.set_xlabel("repeat purchase days in the calibration period")
    axes.set_ylabel("mean purchase days in the holdout")
    axes.set_title("Holdout purchases: actual vs predicted")
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def retention_heatmap_png(cohorts: pd.DataFrame, max_cohorts: int = 24, max_months: int = 24) -> bytes:
    """Heatmap of retention by cohort (rows, latest ``max_cohorts``) and months since first purchase."""
    from matplotlib.figure import Figure

    grid = cohorts.pivot(index="cohort_month", columns="months_since_first", values="retention_rate")
    grid = grid.iloc[-max_cohorts:, :max_months] * 100
    later = grid.iloc[:, 1:].to_numpy(dtype=float)
    # Month 0 is 100% by construction; scaling to it would wash out the months that tell something.
    top = float(np.nanmax(later)) if np.isfinite(later).any() else 100.0
    figure = Figure(figsize=(10, 0.28 * len(grid) + 1.5), dpi=100, layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="Blues", vmin=0, vmax=max(top, 1.0))
    axes.set_yticks(range(len(grid)), [pd.Timestamp(m).strftime("%Y-%m") for m in grid.index], fontsize=7)
    axes.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], fontsize=7)
    axes.set_xlabel("months since first purchase")
    axes.set_ylabel("cohort (month of first purchase)")
    axes.set_title("Customers active by cohort (%)")
    figure.colorbar(image, ax=axes, label="% of cohort")
    return _png(figure)


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
            columns=_names(CLV_PARAMS_COLUMNS),
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
        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        end_day = day_number(as_of) - settings.calibration_holdout_days
        calibration_end = pd.Timestamp(end_day, unit="D", tz="UTC")
        calibration = summary_from_orders(
            read_orders(wh),
            as_of,
            settings.time_unit_days,
            calibration_end=calibration_end,
            purchase_statuses=settings.purchase_statuses,
        )
        extra: dict[str, Any] = {"calibration_end": str(calibration_end.date())}
        if not (calibration["frequency"] > 0).any():
            context.log.warning(
                f"no repeat purchase before {calibration_end.date()}: the history is too short "
                f"to hold out {settings.calibration_holdout_days} days; no diagnostics this run"
            )
            frame = _empty(CLV_DIAGNOSTICS_COLUMNS)
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
            columns=_names(CLV_DIAGNOSTICS_COLUMNS),
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
            columns=_names(CHURN_METRICS_COLUMNS),
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
            save_churn_model(
                model_path,
                {
                    "format": CHURN_MODEL_FORMAT,
                    "model": result.model,
                    "reference": result.reference,
                    "driver_candidates": list(result.driver_candidates),
                    "service_features": service is not None,
                    "horizon_days": settings.churn_horizon_days,
                    "purchase_statuses": list(settings.purchase_statuses),
                    "run_id": context.run.run_id,
                    "as_of": as_of.isoformat(),
                    "trained_at": trained_at.isoformat(),
                    "sklearn_version": version("scikit-learn"),
                },
            )
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
        wh = warehouse.get_warehouse()
        customers = read_core(wh, "unified_customers")
        summary = clv_summary(read_orders(wh), as_of_timestamp(run_window), settings)
        try:
            latest = latest_clv_fits(wh, settings)
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
            columns=_names(columns),
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
            _month_dates(cohorts, "cohort_month", "activity_month")
            if len(cohorts)
            else _empty(RETENTION_COHORTS_COLUMNS)
        )
        suite = mart_suite(
            f"{MARTS}.{RETENTION_COHORTS}",
            columns=_names(RETENTION_COHORTS_COLUMNS),
            ranges={"retention_rate": RATE, "cohort_size": NON_NEGATIVE, "customers_active": NON_NEGATIVE},
            unique_keys=[["cohort_month", "months_since_first"]],
        )
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
        frame = _month_dates(summary, "period_month") if len(summary) else _empty(RETENTION_SUMMARY_COLUMNS)
        suite = mart_suite(
            f"{MARTS}.{RETENTION_SUMMARY}",
            columns=_names(RETENTION_SUMMARY_COLUMNS),
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
            columns=_names(CHURN_RISK_COLUMNS),
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
