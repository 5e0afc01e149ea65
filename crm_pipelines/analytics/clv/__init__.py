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

Each name is imported from its module (``crm_pipelines.analytics.clv.bgnbd``, ``.workflow``, ...):
this package exports nothing, so loading the definitions does not import scipy.
"""
