"""Speed and accuracy of the lifetime-value models on a million simulated customers.

    python benchmarks/clv.py [--customers 1000000] [--pareto-customers 100000]

Simulates BG/NBD customers (CDNOW estimates, ages spread over two years in whole days, recency
rounded to whole days as real summaries have it), then reports:

- the wall time of fitting BG/NBD (target: 1.5 s for a million customers);
- the fitted log-likelihood against a plain transcription of equation (6) of Fader, Hardie & Lee
  (2005), evaluated customer by customer without deduplication (target: 1e-6 relative);
- the wall time of scoring every customer: P(alive), expected purchases over the configured
  horizons, expected order value and discounted 12-month CLV (target: 1 s);
- the fit of Pareto/NBD and Gamma-Gamma on the same kind of data, for scale;
- if the ``lifetimes`` package can be imported (install it in a throwaway environment, never in
  the project), its BetaGeoFitter on the same customers, for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import gammaln

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_pipelines.analytics.clv.bgnbd import fit_bgnbd  # noqa: E402
from crm_pipelines.analytics.clv.gamma_gamma import fit_gamma_gamma  # noqa: E402
from crm_pipelines.analytics.clv.pareto_nbd import fit_pareto_nbd  # noqa: E402
from crm_pipelines.analytics.clv.settings import ClvSettings  # noqa: E402
from crm_pipelines.analytics.clv.simulate import (  # noqa: E402
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_pareto_nbd,
)
from crm_pipelines.analytics.clv.value import score_customers  # noqa: E402

TRUE_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
TRUE_PNBD = {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669}
TRUE_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def reference_bgnbd_log_likelihood(
    params: dict[str, float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> float:
    """Equation (6) of the paper, term by term, one value per customer, summed."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    log_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    log_a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    log_a3 = -(r + x) * np.log(alpha + T)
    safe_x = np.maximum(x, 1)
    log_a4 = np.log(a) - np.log(b + safe_x - 1) - (r + x) * np.log(alpha + t_x)
    per_customer = log_a1 + log_a2 + np.log(np.exp(log_a3) + np.where(x > 0, np.exp(log_a4), 0.0))
    return float(per_customer.sum())


def simulate_customers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ages = np.random.default_rng(seed).integers(0, 104 * 7 + 1, n) / 7.0
    frame = simulate_bgnbd(n, T=ages, seed=seed + 1, **TRUE_BGNBD)
    # Whole days, as summaries of real orders have them (nearest day: flooring would bias recency).
    recency = np.minimum(np.round(frame["recency"].to_numpy() * 7) / 7, frame["T"].to_numpy())
    return frame["frequency"].to_numpy(), recency, frame["T"].to_numpy()


def timed(label: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{label:<58} {seconds:8.3f} s")
    return result, seconds


def maybe_lifetimes(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    try:
        from lifetimes import BetaGeoFitter  # type: ignore[import-not-found]
    except ImportError:
        print("lifetimes: not importable here (optional; install it in a throwaway environment to compare)")
        return
    import pandas as pd

    n = min(len(x), 100_000)
    model = BetaGeoFitter()
    timed(
        f"lifetimes BetaGeoFitter.fit, {n:,} customers",
        model.fit,
        pd.Series(x[:n]),
        pd.Series(t_x[:n]),
        pd.Series(T[:n]),
    )
    ours, _ = timed(f"fit_bgnbd, same {n:,} customers", fit_bgnbd, x[:n], t_x[:n], T[:n])
    theirs = {name: float(model.params_[name]) for name in TRUE_BGNBD}
    print(f"  lifetimes params {theirs}")
    print(f"  our params       { {k: round(v, 6) for k, v in ours.params.items()} }")
    at_theirs = reference_bgnbd_log_likelihood(theirs, x[:n], t_x[:n], T[:n])
    print(f"  log-likelihood at lifetimes' params {at_theirs:.4f}, at ours {ours.log_likelihood:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--pareto-customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    print(f"Simulating {args.customers:,} BG/NBD customers {TRUE_BGNBD} (weeks)")
    x, t_x, T = simulate_customers(args.customers, args.seed)

    fit_bgnbd(x[:1000], t_x[:1000], T[:1000])  # warm-up: imports and thread pools, not the figure
    fit, fit_seconds = timed(f"BG/NBD fit, {args.customers:,} customers", fit_bgnbd, x, t_x, T)
    print(
        f"  distinct histories {fit.distinct_histories:,}; iterations {fit.iterations}; "
        f"converged {fit.converged}"
    )
    for name, true in TRUE_BGNBD.items():
        print(f"  {name:<6} {fit.params[name]:9.5f} ± {fit.std_errors[name]:.5f}   (true {true})")

    reference, ref_seconds = timed(
        "reference eq. (6) log-likelihood, no deduplication",
        reference_bgnbd_log_likelihood,
        fit.params,
        x,
        t_x,
        T,
    )
    relative = abs(fit.log_likelihood - reference) / abs(reference)
    print(
        f"  fitted LL {fit.log_likelihood:.6f}; reference {reference:.6f}; relative difference {relative:.2e}"
    )

    monetary = simulate_gamma_gamma(x, seed=args.seed + 2, **TRUE_GG)
    spend, _ = timed(f"Gamma-Gamma fit, {(x > 0).sum():,} repeat customers", fit_gamma_gamma, x, monetary)
    print(f"  {', '.join(f'{k} {v:.4f} ± {spend.std_errors[k]:.4f}' for k, v in spend.params.items())}")

    import pandas as pd

    summary = pd.DataFrame(
        {
            "customer_id": pd.array(np.arange(len(x)).astype(str), dtype="str"),
            "frequency": x,
            "recency": t_x,
            "T": T,
            "monetary_value": monetary,
        }
    )
    scores, score_seconds = timed(
        f"score {args.customers:,} customers (P(alive), 90/365 d, AOV, CLV)",
        score_customers,
        summary,
        fit,
        spend,
        ClvSettings(),
    )
    print(
        f"  mean CLV 12m {scores['clv_12m'].mean():.2f}; "
        f"mean P(alive) {scores['probability_alive'].mean():.4f}"
    )

    if args.pareto_customers:
        ages = np.random.default_rng(args.seed + 3).integers(0, 104 * 7 + 1, args.pareto_customers) / 7.0
        frame = simulate_pareto_nbd(args.pareto_customers, T=ages, seed=args.seed + 4, **TRUE_PNBD)
        recency = np.minimum(np.round(frame["recency"].to_numpy() * 7) / 7, frame["T"].to_numpy())
        pnbd, _ = timed(
            f"Pareto/NBD fit, {args.pareto_customers:,} customers",
            fit_pareto_nbd,
            frame["frequency"],
            recency,
            frame["T"],
        )
        print(
            f"  distinct histories {pnbd.distinct_histories:,}; "
            + ", ".join(f"{k} {v:.4f} ± {pnbd.std_errors[k]:.4f}" for k, v in pnbd.params.items())
        )

    maybe_lifetimes(x, t_x, T)

    print()
    print(f"BG/NBD fit:     {fit_seconds:.3f} s   (target 1.5 s)  {'OK' if fit_seconds <= 1.5 else 'SLOW'}")
    print(f"LL vs eq. (6):  {relative:.1e}     (target 1e-6)   {'OK' if relative <= 1e-6 else 'MISMATCH'}")
    print(
        f"scoring:        {score_seconds:.3f} s   (target 1 s)    {'OK' if score_seconds <= 1.0 else 'SLOW'}"
    )
    print(f"(reference LL pass over {args.customers:,} rows took {ref_seconds:.3f} s)")


if __name__ == "__main__":
    main()
