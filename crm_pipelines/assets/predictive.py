"""``marts``: the predictive tables (lifetime value, retention, churn risk) and the models behind them.

Models are refitted weekly and used nightly. The weekly job (``crm_weekly_refit``: the assets tagged
``crm/refit: weekly``) fits the CLV models and appends their parameters and holdout diagnostics to
history tables, and trains the churn model, appending its metrics and saving it with joblib. The
nightly job predicts with the latest of those; when there are none yet it fits inline, logs so, and
stores what it fitted as the weekly job would, so the first run leaves no model table unmaterialized.

The assets are thin: the tables' columns are in :mod:`crm_pipelines.analytics.mart_columns` (the docs,
``docs/marts.md`` "Predictive marts", are rendered from :func:`predictive_columns`), the frames in
:mod:`crm_pipelines.analytics.predictive_tables`, the saved churn model in
:mod:`crm_pipelines.analytics.churn_model_store` and the charts in :mod:`crm_pipelines.analytics.reporting`.
scipy, scikit-learn, joblib and matplotlib are imported inside the assets, so loading the Dagster
definitions does not pay for them.
"""

import os

import dagster as dg

from crm_pipelines.analytics.churn_model_store import CHURN_MODEL_FILE
from crm_pipelines.analytics.mart_columns import (
    CHURN_METRICS,
    CHURN_RISK,
    CLV,
    CLV_DIAGNOSTICS,
    CLV_PARAMS,
    RETENTION_COHORTS,
    RETENTION_SUMMARY,
    predictive_columns,
)
from crm_pipelines.assets.churn import build_churn_assets
from crm_pipelines.assets.clv import build_clv_assets
from crm_pipelines.assets.modeling import MODELS_DIR
from crm_pipelines.assets.retention import build_retention_assets
from crm_pipelines.config import CrmConfig

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


def build_predictive_assets(
    config: CrmConfig, warehouse_kind: str, *, models_dir: str | os.PathLike[str] = MODELS_DIR
) -> list[dg.AssetsDefinition]:
    """The weekly model refits (tagged ``crm/refit: weekly``) and the nightly predictive marts.

    ``models_dir`` (relative to crm.yaml) is where the churn model is saved and read.
    """
    clv_params, clv_diagnostics, lifetime_value = build_clv_assets(config, warehouse_kind)
    churn_metrics, churn_risk = build_churn_assets(config, warehouse_kind, models_dir)
    cohorts, retention = build_retention_assets(config, warehouse_kind)
    return [clv_params, clv_diagnostics, churn_metrics, lifetime_value, cohorts, retention, churn_risk]
