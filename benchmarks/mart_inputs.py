"""What the campaign, loyalty, audience and cross-sell marts read: the pandas reference on whole core tables
against the same numbers computed in the warehouse, per step, with each side's peak memory.

Writes synthetic core tables for N customers (``facts/synthetic.py``: about 10 orders, 20 campaign
events per customer) to a fresh DuckDB file, then runs every step twice, each in a fresh process so its
peak resident memory is its own: ``pandas`` reads the core tables the step used to read and runs the
reference function; ``warehouse`` runs the query and reads back one row per customer (or day, or pair of
categories). Prints seconds and peak RSS of both, and checks they agree.

    .venv/bin/python benchmarks/mart_inputs.py [--customers 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_pipelines.facts.synthetic import AS_OF, synthetic_core  # noqa: E402

CORE_NAMES = {"customers": "unified_customers", "tickets": "support_tickets", "events": "campaign_events",
              "surveys": "survey_responses"}  # fmt: skip
WINDOW_DAYS, MIN_PURCHASES = 365, 4


def _load(url: str, customers: int) -> None:
    from crm_pipelines.analytics.campaigns import empty_assignments
    from crm_pipelines.facts.build import build_all
    from crm_pipelines.schema import CORE, core_entity_columns
    from crm_pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    frames = synthetic_core(customers, 0)
    for name, frame in frames.items():
        table = CORE_NAMES.get(name, name)
        types = {} if table == "unified_customers" else {c.name: c.dtype for c in core_entity_columns(table)}
        wh.write_table(frame, CORE, table, column_types=types)
    ids = frames["customers"]["customer_id"].astype("str").iloc[::5]
    assignments = pd.DataFrame(
        {"campaign": "winback", "customer_id": ids.to_numpy(), "campaign_group": "treatment",
         "enrolled_at": AS_OF - pd.Timedelta(days=20), "assigned_by": "hash", "loyalty_member": False}
    ).astype(empty_assignments().dtypes.to_dict())  # fmt: skip
    wh.write_table(assignments, "marts", "campaign_assignments")
    build_all(wh, AS_OF, ("completed",), 180)
    wh.dispose()


def _read(wh, *tables: str) -> list[pd.DataFrame]:
    from crm_pipelines.schema import CORE

    return [wh.read_table(CORE, t) for t in tables]


def _pandas(step: str, wh) -> object:
    from crm_pipelines.analytics import audiences, campaign_performance, cross_sell, loyalty, portfolio, suppression
    from crm_pipelines.analytics.cycle_settings import LoyaltySettings

    settings = LoyaltySettings(regular_min_purchases=MIN_PURCHASES, regular_window_days=WINDOW_DAYS)
    if step == "consent":
        customers, subs, events = _read(wh, "unified_customers", "subscriptions", "campaign_events")
        return int(
            audiences.marketing_consent(customers[["customer_id", "email"]], subs, events, AS_OF)["exportable"].sum()
        )
    if step == "suppression list":
        subs, events = _read(wh, "subscriptions", "campaign_events")
        records = pd.DataFrame({c: pd.Series(dtype="str") for c in ("source", "source_record_id", "email", "phone")})
        return len(suppression.suppression_list(subs, events, records, AS_OF))
    if step == "regular customers":
        customers, orders = _read(wh, "unified_customers", "orders")
        return int(loyalty.regular_customers(customers, orders, AS_OF, settings).sum())
    if step == "daily regulars (365 days)":
        customers, orders = _read(wh, "unified_customers", "orders")
        dates = pd.Series(pd.date_range(AS_OF.normalize().tz_localize(None) - pd.Timedelta(days=364), periods=365))
        return int(loyalty.daily_loyalty_kpis(dates, orders, customers, set(), settings)["regular_customers"].sum())
    if step == "campaign window outcomes":
        (orders,) = _read(wh, "orders")
        rows = wh.read_table("marts", "campaign_assignments")
        return int(campaign_performance.window_outcomes(rows, orders, 30, AS_OF)["converted"].sum())
    if step == "month activity":
        customers, orders = _read(wh, "unified_customers", "orders")
        _, bought = portfolio.month_activity(customers, orders, portfolio.month_start(AS_OF), AS_OF)
        return int(bought.sum())
    if step == "cross-sell rules":
        items, orders = _read(wh, "order_items", "orders")
        return len(cross_sell.cross_sell_recommendations(items, orders, as_of=AS_OF))
    raise ValueError(step)


def _warehouse(step: str, wh) -> object:
    from crm_pipelines.analytics import cross_sell, portfolio
    from crm_pipelines.facts import activity, consent, suppression
    from crm_pipelines.facts import cross_sell as pairs
    from crm_pipelines.schema import CORE

    if step == "consent":
        return int(consent.read_consent(wh, AS_OF)["exportable"].sum())
    if step == "suppression list":
        return len(suppression.read_suppression_list(wh, AS_OF))
    if step == "regular customers":
        return len(wh.query(activity.regular_customers_select(wh, AS_OF, WINDOW_DAYS, MIN_PURCHASES)))
    if step == "daily regulars (365 days)":
        dates = pd.Series(pd.date_range(AS_OF.normalize().tz_localize(None) - pd.Timedelta(days=364), periods=365))
        return int(activity.read_daily_regulars(wh, dates, WINDOW_DAYS, MIN_PURCHASES).sum())
    if step == "campaign window outcomes":
        rows = wh.read_table("marts", "campaign_assignments")
        return int(activity.read_window_outcomes(wh, "campaign_assignments", rows, 30, AS_OF)["converted"].sum())
    if step == "month activity":
        customers = wh.read_table(CORE, "unified_customers", columns=["customer_id"])
        _, bought = activity.read_month_activity(wh, customers, portfolio.month_start(AS_OF), AS_OF)
        return int(np.sum(bought))
    if step == "cross-sell rules":
        facts = wh.read_table(CORE, "customer_category_facts", columns=["customer_id", "category"])
        return len(cross_sell.recommendations_from_facts(facts, pair_counts=wh.query(pairs.category_pairs_select(wh))))
    raise ValueError(step)


def _run(url: str, step: str, side: str, out) -> None:
    from crm_pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    # Imports and the first connection are paid before the clock starts: the step alone is timed.
    import crm_pipelines.analytics.cross_sell  # noqa: F401
    import crm_pipelines.analytics.portfolio  # noqa: F401
    import crm_pipelines.facts.cross_sell  # noqa: F401
    import crm_pipelines.facts.suppression  # noqa: F401

    wh.row_count("core", "unified_customers")
    started = time.perf_counter()
    result = (_pandas if side == "pandas" else _warehouse)(step, wh)
    seconds = time.perf_counter() - started
    out.send((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, result))


def _child(url: str, step: str, side: str) -> tuple[float, float, object]:
    # Forked from a parent that imported everything and opened no connection: each step starts from the
    # same resident size, the imports' (printed first), and its peak is its own.
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_run, args=(url, step, side, send))
    process.start()
    result = receive.recv()
    process.join()
    return result


STEPS = (
    "consent", "suppression list", "regular customers", "daily regulars (365 days)", "campaign window outcomes",
    "month activity", "cross-sell rules",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    args = parser.parse_args()
    import crm_pipelines.analytics.audiences  # noqa: F401
    import crm_pipelines.analytics.campaign_performance  # noqa: F401
    import crm_pipelines.analytics.cross_sell  # noqa: F401
    import crm_pipelines.analytics.loyalty  # noqa: F401
    import crm_pipelines.analytics.portfolio  # noqa: F401
    import crm_pipelines.facts.activity  # noqa: F401
    import crm_pipelines.facts.consent  # noqa: F401
    import crm_pipelines.facts.cross_sell  # noqa: F401
    import crm_pipelines.facts.suppression  # noqa: F401
    import crm_pipelines.warehouse  # noqa: F401

    print(f"resident size after the imports (every step starts there): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        url = f"duckdb:///{Path(folder) / 'inputs.duckdb'}"
        started = time.perf_counter()
        loader = multiprocessing.get_context("spawn").Process(target=_load, args=(url, args.customers))
        loader.start()
        loader.join()
        print(f"synthetic core for {args.customers:,} customers written in {time.perf_counter() - started:.1f} s")
        print(f"{'step':<28} {'pandas s':>9} {'peak MB':>8}   {'warehouse s':>11} {'peak MB':>8}   result")
        for step in STEPS:
            p_seconds, p_peak, p_result = _child(url, step, "pandas")
            w_seconds, w_peak, w_result = _child(url, step, "warehouse")
            same = "same" if p_result == w_result else f"DIFFERENT {p_result} vs {w_result}"
            print(
                f"{step:<28} {p_seconds:>9.2f} {p_peak:>8.0f}   {w_seconds:>11.2f} {w_peak:>8.0f}   {same}", flush=True
            )


if __name__ == "__main__":
    main()
