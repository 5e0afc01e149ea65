"""Saving and loading the churn model the weekly refit trains and the nightly churn_risk scores with.

The model travels as a joblib bundle (a dict) holding what scoring needs besides the estimator: the
reference medians and driver candidates, whether support and survey features were used, and the
settings and library version it was trained under, so a stale bundle is recognised and not used.
joblib is imported when a bundle is written or read, not when the Dagster definitions load.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crm_pipelines.analytics.clv.settings import ClvSettings

if TYPE_CHECKING:
    import pandas as pd

    from crm_pipelines.analytics.churn import ChurnResult

CHURN_MODEL_FILE = "churn_model.joblib"
CHURN_MODEL_FORMAT = 1
"""Raised when the bundle's layout changes, so older files are retrained rather than misread."""


def churn_model_bundle(
    result: ChurnResult,
    settings: ClvSettings,
    *,
    service_features: bool,
    run_id: str,
    as_of: dt.date,
    trained_at: pd.Timestamp,
) -> dict[str, Any]:
    """The bundle :func:`save_churn_model` writes for a trained model (``train_churn_model``)."""
    return {
        "format": CHURN_MODEL_FORMAT,
        "model": result.model,
        "reference": result.reference,
        "driver_candidates": list(result.driver_candidates),
        "service_features": service_features,
        "horizon_days": settings.churn_horizon_days,
        "purchase_statuses": list(settings.purchase_statuses),
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "trained_at": trained_at.isoformat(),
        "sklearn_version": version("scikit-learn"),
    }


def save_churn_model(path: Path, bundle: dict[str, Any]) -> None:
    """Write the model bundle next to its final name, then rename: readers never see half a file."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    joblib.dump(dict(bundle), partial)
    os.replace(partial, path)


def load_churn_model(
    path: Path, settings: ClvSettings, log: logging.Logger | logging.LoggerAdapter[Any]
) -> dict[str, Any] | None:
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
