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

# Imported on first use: scipy costs about a second, and loading the Dagster definitions
# (which reads ClvSettings through the configuration) should not pay it.
from crm_pipelines._lazy import lazy_exports

_EXPORTS = {
    "BgNbdFit": "crm_pipelines.analytics.clv.bgnbd",
    "ClvRun": "crm_pipelines.analytics.clv.workflow",
    "ClvSettings": "crm_pipelines.analytics.clv.settings",
    "GammaGammaAssumptionError": "crm_pipelines.analytics.clv.gamma_gamma",
    "GammaGammaFit": "crm_pipelines.analytics.clv.gamma_gamma",
    "HoldoutDiagnostics": "crm_pipelines.analytics.clv.diagnostics",
    "ModelFit": "crm_pipelines.analytics.clv.results",
    "ParetoNbdFit": "crm_pipelines.analytics.clv.pareto_nbd",
    "calibration_holdout_diagnostics": "crm_pipelines.analytics.clv.diagnostics",
    "check_gamma_gamma_assumptions": "crm_pipelines.analytics.clv.gamma_gamma",
    "customer_lifetime_value": "crm_pipelines.analytics.clv.value",
    "discounted_expected_purchases": "crm_pipelines.analytics.clv.value",
    "fit_bgnbd": "crm_pipelines.analytics.clv.bgnbd",
    "fit_gamma_gamma": "crm_pipelines.analytics.clv.gamma_gamma",
    "fit_pareto_nbd": "crm_pipelines.analytics.clv.pareto_nbd",
    "fit_transaction_model": "crm_pipelines.analytics.clv.workflow",
    "monthly_discount_rate": "crm_pipelines.analytics.clv.value",
    "purchase_days": "crm_pipelines.analytics.clv.summary",
    "run_clv": "crm_pipelines.analytics.clv.workflow",
    "score_customers": "crm_pipelines.analytics.clv.value",
    "summary_from_orders": "crm_pipelines.analytics.clv.summary",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
