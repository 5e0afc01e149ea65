"""Does the purchase model forecast? Predicted against actual repeat purchases in a holdout period."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_pipelines.analytics.clv._data import history_index
from crm_pipelines.analytics.clv.bgnbd import BgNbdFit
from crm_pipelines.analytics.clv.pareto_nbd import ParetoNbdFit

DIAGNOSTIC_COLUMNS = (
    "calibration_frequency",
    "customers",
    "actual_mean",
    "predicted_mean",
    "actual_total",
    "predicted_total",
)


@dataclass(frozen=True)
class HoldoutDiagnostics:
    """Forecast quality over the holdout period.

    ``table`` has one row per calibration-frequency bucket ("0", "1", ..., "7+") and a final "all"
    row. ``correlation`` is the Pearson correlation of predicted and actual holdout purchases across
    customers; ``mean_absolute_error`` their mean absolute difference per customer.
    """

    table: pd.DataFrame
    customers: int
    holdout_duration: float
    actual_total: float
    predicted_total: float
    correlation: float
    mean_absolute_error: float

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()


def calibration_holdout_diagnostics(
    summary: pd.DataFrame, transaction_fit: BgNbdFit | ParetoNbdFit, *, max_bucket: int = 7
) -> HoldoutDiagnostics:
    """Compare ``transaction_fit`` (fitted on the calibration columns of ``summary``) with the holdout.

    ``summary`` comes from ``summary_from_orders(..., calibration_end=...)`` in the fit's time unit.
    """
    needed = ("frequency", "recency", "T", "frequency_holdout", "duration_holdout")
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(
            f"summary lacks {missing}; build it with summary_from_orders(..., calibration_end=...)"
        )
    x, t_x, age, inverse = history_index(summary["frequency"], summary["recency"], summary["T"])
    duration = summary["duration_holdout"].to_numpy(dtype=float)
    if len(duration) and not np.allclose(duration, duration[0]):
        raise ValueError("duration_holdout must be the same for every customer")
    horizon = float(duration[0]) if len(duration) else 0.0
    predicted = transaction_fit.expected_purchases(horizon, x, t_x, age)[inverse]
    actual = summary["frequency_holdout"].to_numpy(dtype=float)
    frequency = summary["frequency"].to_numpy(dtype="int64")

    bucket = np.minimum(frequency, max_bucket)
    labels = [str(b) for b in range(max_bucket)] + [f"{max_bucket}+"]
    customers = np.bincount(bucket, minlength=max_bucket + 1)
    actual_total = np.bincount(bucket, weights=actual, minlength=max_bucket + 1)
    predicted_total = np.bincount(bucket, weights=predicted, minlength=max_bucket + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "calibration_frequency": labels + ["all"],
                "customers": np.append(customers, customers.sum()).astype("int64"),
                "actual_mean": np.append(actual_total / customers, actual.sum() / max(len(actual), 1)),
                "predicted_mean": np.append(
                    predicted_total / customers, predicted.sum() / max(len(actual), 1)
                ),
                "actual_total": np.append(actual_total, actual.sum()),
                "predicted_total": np.append(predicted_total, predicted.sum()),
            }
        )
    table["calibration_frequency"] = table["calibration_frequency"].astype("str")
    correlation = (
        float(np.corrcoef(predicted, actual)[0, 1])
        if len(actual) > 2 and np.std(actual) > 0 and np.std(predicted) > 0
        else float("nan")
    )
    return HoldoutDiagnostics(
        table=table,
        customers=len(actual),
        holdout_duration=horizon,
        actual_total=float(actual.sum()),
        predicted_total=float(predicted.sum()),
        correlation=correlation,
        mean_absolute_error=float(np.mean(np.abs(predicted - actual))) if len(actual) else float("nan"),
    )
