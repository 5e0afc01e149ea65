"""The whole lifetime-value estimate in one call: summarise, check on a holdout, fit, score."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from crm_pipelines.analytics.clv.bgnbd import fit_bgnbd
from crm_pipelines.analytics.clv.diagnostics import HoldoutDiagnostics, calibration_holdout_diagnostics
from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit, fit_gamma_gamma
from crm_pipelines.analytics.clv.pareto_nbd import fit_pareto_nbd
from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.clv.summary import DateLike, day_number, summary_from_orders
from crm_pipelines.analytics.clv.value import TransactionFit, score_customers


@dataclass(frozen=True)
class ClvRun:
    """Everything one estimate produces; frames are ready to publish."""

    summary: pd.DataFrame
    transaction_fit: TransactionFit
    spend_fit: GammaGammaFit
    scores: pd.DataFrame
    diagnostics: HoldoutDiagnostics | None
    """Forecast check of a model fitted without the last ``calibration_holdout_days``; None when
    the history is too short to hold anything out."""

    @property
    def parameters(self) -> pd.DataFrame:
        """Both models' parameters, one row each (see ``ModelFit.to_frame``)."""
        return pd.concat([self.transaction_fit.to_frame(), self.spend_fit.to_frame()], ignore_index=True)


def fit_transaction_model(summary: pd.DataFrame, settings: ClvSettings | None = None) -> TransactionFit:
    """Fit the purchase-count model chosen in ``settings`` on a :func:`summary_from_orders` frame."""
    settings = settings or ClvSettings()
    fit = fit_bgnbd if settings.model == "bgnbd" else fit_pareto_nbd
    return fit(summary["frequency"], summary["recency"], summary["T"], time_unit_days=settings.time_unit_days)


def run_clv(orders: pd.DataFrame, as_of: DateLike, settings: ClvSettings | None = None) -> ClvRun:
    """Summarise ``orders`` as of ``as_of``, check the model on a holdout, fit, and score every customer.

    Raises :class:`~crm_pipelines.analytics.clv.gamma_gamma.GammaGammaAssumptionError` (a ValueError)
    when the spend data break the Gamma-Gamma assumptions, and ValueError when there are no purchases.
    """
    settings = settings or ClvSettings()
    summary = summary_from_orders(
        orders, as_of, settings.time_unit_days, purchase_statuses=settings.purchase_statuses
    )
    if summary.empty:
        raise ValueError(f"no purchases up to {as_of}: nothing to estimate lifetime value from")

    diagnostics = None
    calibration_end = pd.Timestamp(day_number(as_of) - settings.calibration_holdout_days, unit="D", tz="UTC")
    calibration = summary_from_orders(
        orders,
        as_of,
        settings.time_unit_days,
        calibration_end=calibration_end,
        purchase_statuses=settings.purchase_statuses,
    )
    if (calibration["frequency"] > 0).any():
        diagnostics = calibration_holdout_diagnostics(
            calibration, fit_transaction_model(calibration, settings)
        )

    transaction_fit = fit_transaction_model(summary, settings)
    spend_fit = fit_gamma_gamma(
        summary["frequency"], summary["monetary_value"], max_correlation=settings.gamma_gamma_max_correlation
    )
    scores = score_customers(summary, transaction_fit, spend_fit, settings)
    return ClvRun(summary, transaction_fit, spend_fit, scores, diagnostics)
