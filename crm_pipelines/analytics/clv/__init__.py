"""Customer lifetime value with "buy till you die" models, on scipy maximum likelihood.

- :func:`summary_from_orders`: orders -> per-customer frequency, recency, T, monetary value.
- :func:`fit_bgnbd`, :func:`fit_pareto_nbd`: purchase-count models (analytic gradients, L-BFGS-B on
  log-parameters, fitted on distinct histories weighted by their counts, standard errors from the
  Hessian, the papers' total log-likelihood).
- :func:`fit_gamma_gamma`: spend per purchase, refusing data that break its assumptions.
- :func:`score_customers`, :func:`customer_lifetime_value`: P(alive), expected purchases, expected
  order value and discounted CLV per customer.
- :func:`calibration_holdout_diagnostics`: predicted against actual purchases in a holdout.
- :func:`run_clv`: all of it in one call, driven by :class:`ClvSettings`.
"""

from crm_pipelines.analytics.clv.bgnbd import BgNbdFit, fit_bgnbd
from crm_pipelines.analytics.clv.diagnostics import HoldoutDiagnostics, calibration_holdout_diagnostics
from crm_pipelines.analytics.clv.gamma_gamma import (
    GammaGammaAssumptionError,
    GammaGammaFit,
    check_gamma_gamma_assumptions,
    fit_gamma_gamma,
)
from crm_pipelines.analytics.clv.pareto_nbd import ParetoNbdFit, fit_pareto_nbd
from crm_pipelines.analytics.clv.results import ModelFit
from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.clv.summary import purchase_days, summary_from_orders
from crm_pipelines.analytics.clv.value import (
    customer_lifetime_value,
    discounted_expected_purchases,
    monthly_discount_rate,
    score_customers,
)
from crm_pipelines.analytics.clv.workflow import ClvRun, fit_transaction_model, run_clv

__all__ = [
    "BgNbdFit",
    "ClvRun",
    "ClvSettings",
    "GammaGammaAssumptionError",
    "GammaGammaFit",
    "HoldoutDiagnostics",
    "ModelFit",
    "ParetoNbdFit",
    "calibration_holdout_diagnostics",
    "check_gamma_gamma_assumptions",
    "customer_lifetime_value",
    "discounted_expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_pareto_nbd",
    "fit_transaction_model",
    "monthly_discount_rate",
    "purchase_days",
    "run_clv",
    "score_customers",
    "summary_from_orders",
]
