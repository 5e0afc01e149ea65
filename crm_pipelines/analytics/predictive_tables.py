"""The frames of the predictive marts (lifetime value, its model history, churn risk and metrics).

Pure pandas: each function turns what the models return into one mart's shape (the column tuples in
:mod:`crm_pipelines.analytics.mart_columns`), or picks the model parameters a nightly run predicts
with. The scipy-backed CLV models are imported where they are fitted or rebuilt, not at import time:
the Dagster definitions import this module, and loading them should not pay for scipy.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.clv.summary import day_number, purchase_days, summary_from_orders
from crm_pipelines.analytics.mart_boundary import MART_RENAMES
from crm_pipelines.analytics.mart_columns import (
    CHURN_METRICS_COLUMNS,
    CHURN_RISK_COLUMNS,
    CLV,
    CLV_DIAGNOSTICS_COLUMNS,
    CLV_PARAMS_COLUMNS,
    clv_columns,
)
from crm_pipelines.schema import Column

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
    from crm_pipelines.analytics.clv.value import TransactionFit

# The columns of marts.clv_model_params that :func:`latest_clv_fits` reads.
CLV_PARAMS_HISTORY_COLUMNS = ("run_id", "fitted_at", "model", "parameter", "value", "time_unit_days")

_EMPTY_DTYPES = {
    "string": "str",
    "date": "datetime64[us]",
    "timestamp": "datetime64[us, UTC]",
    "float": "float64",
    "integer": "int64",
    "boolean": "bool",
}


def column_names(columns: Sequence[Column]) -> list[str]:
    """The names of ``columns``, in order."""
    return [c.name for c in columns]


def empty_frame(columns: Sequence[Column]) -> pd.DataFrame:
    """A frame with no rows and ``columns`` typed as the warehouse will store them."""
    import pandas as pd
    return pd.DataFrame({c.name: pd.Series(dtype=_EMPTY_DTYPES[c.dtype]) for c in columns})


def month_dates(frame: pd.DataFrame, *names: str) -> pd.DataFrame:
    """Month columns (UTC midnight timestamps) as naive timestamps, which publish as dates."""
    import pandas as pd
    return frame.assign(**{n: pd.to_datetime(frame[n], utc=True).dt.tz_localize(None) for n in names})


# -- lifetime value ----------------------------------------------------------------------------------
def clv_summary(
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    settings: ClvSettings,
    calibration_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Per-customer frequency, recency, T and monetary value in the settings' time unit, counting
    the settings' purchase statuses (up to ``calibration_end`` when given: the holdout check)."""
    return summary_from_orders(
        orders,
        as_of,
        settings.time_unit_days,
        calibration_end=calibration_end,
        purchase_statuses=settings.purchase_statuses,
    )


def calibration_end_for(as_of: pd.Timestamp, settings: ClvSettings) -> pd.Timestamp:
    """Midnight (UTC) starting the holdout: ``calibration_holdout_days`` before the as-of day."""
    import pandas as pd
    return pd.Timestamp(day_number(as_of) - settings.calibration_holdout_days, unit="D", tz="UTC")


def fit_clv_models(summary: pd.DataFrame, settings: ClvSettings) -> tuple[TransactionFit, GammaGammaFit]:
    """The configured purchase-count model and the Gamma-Gamma spend model (GammaGammaAssumptionError,
    a ValueError, when the spend data break its assumptions)."""
    from crm_pipelines.analytics.clv.gamma_gamma import fit_gamma_gamma
    from crm_pipelines.analytics.clv.workflow import fit_transaction_model

    spend = fit_gamma_gamma(
        summary["frequency"], summary["monetary_value"], max_correlation=settings.gamma_gamma_max_correlation
    )
    return fit_transaction_model(summary, settings), spend


def params_frame(
    fits: Sequence[TransactionFit | GammaGammaFit], run_id: str, fitted_at: pd.Timestamp, as_of: dt.date
) -> pd.DataFrame:
    """One row per parameter of each fit, in the marts.clv_model_params shape."""
    import pandas as pd
    frame = pd.concat([fit.to_frame() for fit in fits], ignore_index=True)
    by_model = {fit.model: fit for fit in fits}
    frame["time_unit_days"] = [by_model[m].time_unit_days for m in frame["model"]]
    frame["converged"] = [bool(by_model[m].converged) for m in frame["model"]]
    frame = frame.assign(run_id=run_id, fitted_at=fitted_at, as_of=pd.Timestamp(as_of))
    return frame[column_names(CLV_PARAMS_COLUMNS)]


def latest_clv_fits(
    history: pd.DataFrame, settings: ClvSettings
) -> tuple[TransactionFit, GammaGammaFit, str] | None:
    """The newest parameters in ``history`` (rows of marts.clv_model_params, at least
    :data:`CLV_PARAMS_HISTORY_COLUMNS`) for the configured model and time unit, as (purchase model,
    spend model, run_id); None when there are none yet. A ValueError when they fit no model."""
    import numpy as np

    from crm_pipelines.analytics.clv.bgnbd import BgNbdFit
    from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
    from crm_pipelines.analytics.clv.pareto_nbd import ParetoNbdFit

    transaction_models = {"bgnbd": BgNbdFit, "pareto_nbd": ParetoNbdFit}
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
    transaction = transaction_models[settings.model].from_params(
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
    import pandas as pd
    columns = column_names(clv_columns(settings))
    scored = scores if scores is not None else summary
    # The models count time in settings.time_unit_days; the mart's names promise weeks.
    to_weeks = settings.time_unit_days / 7
    scored = scored.assign(recency=scored["recency"] * to_weeks, T=scored["T"] * to_weeks)
    frame = pd.DataFrame({"customer_id": customer_ids.astype("str").to_numpy()}).merge(
        scored.astype({"customer_id": "str"}).rename(columns=MART_RENAMES[CLV]), on="customer_id", how="left"
    )
    frame = frame.reindex(columns=columns)
    buyer = frame["repeat_purchases"].notna()
    zero_without_purchases = [
        "repeat_purchases",
        "avg_repeat_purchase_value",
        f"clv_{settings.clv_months}m",
        *(f"expected_purchases_{h}d" for h in settings.horizon_days),
    ]
    for name in zero_without_purchases:
        frame[name] = frame[name].astype(float).where(buyer, 0.0)
    frame["repeat_purchases"] = frame["repeat_purchases"].astype("int64")
    return frame.assign(model=settings.model, model_run_id=model_run_id, as_of=pd.Timestamp(as_of))


def diagnostics_frame(table: pd.DataFrame, correlation: float, mae: float, **run: Any) -> pd.DataFrame:
    """The holdout table with the run's identity; run-level figures on the "all" row only."""
    import numpy as np
    is_total = table["calibration_frequency"] == "all"
    frame = table.assign(**run)
    frame["correlation"] = np.where(is_total, correlation, np.nan)
    frame["mean_absolute_error"] = np.where(is_total, mae, np.nan)
    return frame[column_names(CLV_DIAGNOSTICS_COLUMNS)]


# -- churn -------------------------------------------------------------------------------------------
def service_features_cover_training(
    features: Callable[[pd.Timestamp], pd.DataFrame],
    orders: pd.DataFrame,
    as_of: pd.Timestamp,
    settings: ClvSettings,
) -> bool:
    """Whether every support and survey feature (``churn.service_features``) has a value for some
    buyer at the training cutoff (two churn horizons before ``as_of``).

    A feature no training customer has breaks the gradient boosting's binning, and says nothing:
    a shop without a support desk, or whose surveys started recently, trains on purchases alone.
    """
    import pandas as pd
    train_cutoff = pd.Timestamp(day_number(as_of) - 2 * settings.churn_horizon_days, unit="D", tz="UTC")
    at_train = features(train_cutoff)
    buyers = at_train[ids_in(at_train["customer_id"], orders["customer_id"])]
    return bool(len(buyers) and buyers.drop(columns="customer_id").notna().any().all())


def ids_in(ids: Sequence[Any] | pd.Series | pd.Index, allowed: Sequence[Any] | pd.Series | pd.Index) -> np.ndarray:
    """Whether each of ``ids`` is one of ``allowed``, both compared as strings: ``isin`` of the two as
    ``str``, which pandas answers for ``str`` data by converting every allowed value to a Python string
    first (about a second for 100,000 customer ids); Arrow answers the same question in milliseconds."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    def strings(values) -> pa.Array:
        as_text = pd.Series(values, copy=False).astype("str").to_numpy(dtype=object)
        return pa.array(as_text, type=pa.large_string(), from_pandas=True)

    return np.asarray(pc.is_in(strings(ids), value_set=strings(allowed)).to_numpy(zero_copy_only=False), dtype=bool)


def churn_risk_frame(
    scores: pd.DataFrame,
    customer_ids: pd.Series,
    horizon_days: int,
    model_run_id: str | None,
    model_as_of: dt.date | None,
    as_of: dt.date,
) -> pd.DataFrame:
    """The scores of known customers in the marts.churn_risk shape."""
    import pandas as pd
    known = scores[ids_in(scores["customer_id"], customer_ids)]
    frame = known.reset_index(drop=True).assign(
        horizon_days=int(horizon_days),
        model_run_id=model_run_id,
        model_as_of=pd.Timestamp(model_as_of) if model_as_of else pd.NaT,
        as_of=pd.Timestamp(as_of),
    )
    frame["risk_decile"] = frame["risk_decile"].astype("Int64")
    return frame.reindex(columns=column_names(CHURN_RISK_COLUMNS))


def unscored_buyers(orders: pd.DataFrame, as_of: pd.Timestamp, settings: ClvSettings) -> pd.DataFrame:
    """Every customer with a purchase, with no churn score: when no model can be trained yet."""
    days = purchase_days(orders, purchase_statuses=settings.purchase_statuses)
    return unscored_customers(days.loc[days["day"] <= day_number(as_of), "customer_id"].unique())


def unscored_customers(ids: Sequence[str] | np.ndarray) -> pd.DataFrame:
    """The given customers with no churn score."""
    import numpy as np
    import pandas as pd
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
    import pandas as pd
    row = {**{c.name: metrics.get(c.name) for c in CHURN_METRICS_COLUMNS}, **run}
    for name in ("train_cutoff", "holdout_cutoff"):
        row[name] = pd.Timestamp(metrics[name])
    row["calibration"] = calibration.to_json(orient="records")
    row["feature_importance"] = json.dumps(
        {f: round(float(v), 6) for f, v in zip(importance["feature"], importance["importance"], strict=True)}
    )
    return pd.DataFrame([row])[column_names(CHURN_METRICS_COLUMNS)]
