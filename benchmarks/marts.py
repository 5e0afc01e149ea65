"""Speed and memory of the marts on synthetic core tables: in the warehouse (default), or the pandas reference.

Builds core-shaped tables for 100,000 customers (about 1M orders, 2.5M order lines, 300k tickets, 2M
campaign events, 50k survey answers).

Warehouse mode (default): a child process writes them to the warehouse (a fresh DuckDB file, or
``--warehouse URL``), then this process, holding no inputs, builds the facts (core.purchases, customer
order and engagement facts) and computes customer_360, crm_kpis, the retention tables, the CLV
summary, the churn features (one and three cutoffs) and the 12-month segment history backfill in the
warehouse, reading back only the results. Prints wall and CPU time per step and this
process's peak resident memory (DuckDB's included: it runs in-process).

``--reference``: the pandas implementations on the frames in memory, as before (segments, customer 360,
three years of daily KPIs, cross-sell, audiences, charts).

    .venv/bin/python benchmarks/marts.py [--customers 100000] [--seed 0] [--warehouse URL] [--reference]

Targets: all marts within 30 s wall and 2 GB peak RSS at 100,000 customers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crm_pipelines.analytics.audiences import marketing_audiences
from crm_pipelines.analytics.cross_sell import cross_sell_recommendations
from crm_pipelines.analytics.customer360 import customer_360
from crm_pipelines.analytics.kpis import crm_kpis
from crm_pipelines.analytics.reporting import (
    cluster_profiles_markdown,
    kpi_chart_png,
    kpi_trend_markdown,
    segment_chart_png,
    segment_sizes_markdown,
)
from crm_pipelines.analytics.segments import customer_segments
from crm_pipelines.facts.synthetic import AS_OF, HISTORY_DAYS, synthetic_core


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(name: str, timings: dict[str, tuple[float, float]], fn: Callable[[], Any]) -> Any:
    """Run ``fn``, record (wall, CPU) seconds; CPU time tells a busy machine from slow code."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    timings[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    print(
        f"  {name:<32} {timings[name][0]:7.2f} s wall {timings[name][1]:7.2f} s CPU"
        f"   peak RSS {_peak_rss_mb():7.0f} MB",
        flush=True,
    )
    return result


def _load(url: str, customers: int, seed: int) -> None:
    """Child process: write the synthetic core tables to the warehouse."""
    from crm_pipelines.schema import CORE, core_entity_columns
    from crm_pipelines.warehouse import Warehouse

    started = time.perf_counter()
    wh = Warehouse(url)
    for name, frame in synthetic_core(customers, seed).items():
        table = {"customers": "unified_customers", "tickets": "support_tickets", "events": "campaign_events",
                 "surveys": "survey_responses"}.get(name, name)  # fmt: skip
        types = {} if table == "unified_customers" else {c.name: c.dtype for c in core_entity_columns(table)}
        wh.write_table(frame, CORE, table, column_types=types)
        print(f"  loaded core.{table:<20} {len(frame):>12,} rows", flush=True)
    wh.dispose()
    print(f"synthetic core tables written in {time.perf_counter() - started:.1f} s "
          f"(loader peak RSS {_peak_rss_mb():.0f} MB)")  # fmt: skip


def warehouse_marts(url: str) -> None:
    from crm_pipelines.analytics.clv.settings import ClvSettings
    from crm_pipelines.analytics.cross_sell import recommendations_from_facts
    from crm_pipelines.analytics.cycle_settings import PortfolioSettings
    from crm_pipelines.analytics.portfolio import months_to_backfill
    from crm_pipelines.analytics.predictive_tables import fit_clv_models
    from crm_pipelines.analytics.segments import segments_from_facts
    from crm_pipelines.facts import build
    from crm_pipelines.facts.churn import WarehouseOrderHistory
    from crm_pipelines.facts.clv import clv_summary_from_facts
    from crm_pipelines.facts.customer360 import customer_360_select
    from crm_pipelines.facts.marts import read_crm_kpis, read_retention_cohorts, read_retention_summary
    from crm_pipelines.facts.segment_history import backfilled_months
    from crm_pipelines.schema import CORE
    from crm_pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    statuses = ("completed",)
    timings: dict[str, tuple[float, float]] = {}
    print(f"peak RSS before the marts: {_peak_rss_mb():.0f} MB")
    rows = {
        "core.purchases": _timed("core.purchases", timings, lambda: build.build_purchases(wh, AS_OF, statuses)),
        "core.customer_order_facts": _timed(
            "customer_order_facts", timings, lambda: build.build_customer_order_facts(wh, AS_OF, 180)
        ),
        "core.customer_category_facts": _timed(
            "customer_category_facts", timings, lambda: build.build_customer_category_facts(wh)
        ),
        "core.customer_engagement_facts": _timed(
            "customer_engagement_facts", timings, lambda: build.build_customer_engagement_facts(wh, AS_OF)
        ),
    }
    frames = {
        "customer_360": _timed("customer_360", timings, lambda: wh.query(customer_360_select(wh, AS_OF))),
        "crm_kpis": _timed("crm_kpis (365 days)", timings, lambda: read_crm_kpis(wh, AS_OF, statuses)),
        "retention_cohorts": _timed("retention_cohorts", timings, lambda: read_retention_cohorts(wh, AS_OF)),
        "retention_summary": _timed("retention_summary", timings, lambda: read_retention_summary(wh, AS_OF)),
        "clv summary": _timed(
            "clv summary (from facts)", timings, lambda: clv_summary_from_facts(wh, build.utc_day(AS_OF), 7)
        ),
        "churn features": _timed(
            "churn features (1 cutoff)", timings, lambda: WarehouseOrderHistory(wh).features(build.utc_day(AS_OF))
        ),
    }
    day = build.utc_day(AS_OF)
    _timed("churn features (training's 3 cutoffs)", timings,
           lambda: WarehouseOrderHistory(wh).features_at([day - 180, day - 90, day]))  # fmt: skip
    customers = wh.read_table(CORE, "unified_customers", columns=["customer_id", "created_at"])
    clv = ClvSettings()
    try:
        fits = fit_clv_models(clv_summary_from_facts(wh, day, clv.time_unit_days), clv)[:2]
    except ValueError:
        fits = None  # the backfill's CLV part is left out
    frames["segment history backfill"] = _timed(
        "segment history backfill (12 months)",
        timings,
        lambda: backfilled_months(
            wh, customers, months_to_backfill(AS_OF, set(), PortfolioSettings()), key_share=0.2,
            growth_window_days=180, fits=fits, clv_settings=clv, portfolio=PortfolioSettings(),
        ),
    )  # fmt: skip
    # The Python models, on the per-customer rows the warehouse returns.
    segmentation = _timed(
        "segments (read facts + k-means)",
        timings,
        lambda: segments_from_facts(
            wh.read_table(CORE, "customer_order_facts"),
            wh.read_table(CORE, "customer_engagement_facts"),
            wh.read_table(CORE, "customer_category_facts"),
        ),
    )
    frames["customer_segments"] = segmentation.segments
    frames["cross_sell"] = _timed(
        "cross_sell (read facts)",
        timings,
        lambda: recommendations_from_facts(wh.read_table(CORE, "customer_category_facts")),
    )
    wall = sum(w for w, _ in timings.values())
    cpu = sum(c for _, c in timings.values())
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    print("read back: " + ", ".join(f"{k} {len(v):,} x {v.shape[1]}" for k, v in frames.items()))
    print(f"TOTAL facts, warehouse marts and models ({wh.dialect}): {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"peak RSS: {_peak_rss_mb():.0f} MB (no inputs held; the warehouse's memory included when in-process)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warehouse", help="SQLAlchemy URL of an empty warehouse (default: a temporary DuckDB file)")
    parser.add_argument("--reference", action="store_true", help="time the pandas reference instead")
    args = parser.parse_args()
    if not args.reference:
        with tempfile.TemporaryDirectory() as folder:
            url = args.warehouse or f"duckdb:///{Path(folder) / 'marts.duckdb'}"
            # Loaded by a child process, so this process's peak memory is the marts' alone.
            loader = multiprocessing.get_context("spawn").Process(
                target=_load, args=(url, args.customers, args.seed)
            )
            loader.start()
            loader.join()
            if loader.exitcode:
                raise SystemExit("loading the synthetic core tables failed")
            warehouse_marts(url)
        return

    started = time.perf_counter()
    core = synthetic_core(args.customers, args.seed)
    sizes = ", ".join(f"{name} {len(frame):,}" for name, frame in core.items())
    print(f"synthetic core frames in {time.perf_counter() - started:.1f} s: {sizes}")
    print(f"peak RSS after building the inputs: {_peak_rss_mb():.0f} MB")

    c = core
    timings: dict[str, tuple[float, float]] = {}
    segmentation = _timed(
        "customer_segments",
        timings,
        lambda: customer_segments(
            c["customers"], c["orders"], c["order_items"], c["tickets"], c["events"], c["surveys"], AS_OF
        ),
    )
    view = _timed(
        "customer_360 (+segments)",
        timings,
        lambda: customer_360(
            c["customers"], c["orders"], c["order_items"], c["tickets"], c["subscriptions"], c["events"],
            c["surveys"], AS_OF, extra=[segmentation.segments],
        ),
    )  # fmt: skip
    kpis = _timed(
        "crm_kpis (3 years daily)",
        timings,
        lambda: crm_kpis(
            c["customers"], c["orders"], c["tickets"], c["events"], c["surveys"], AS_OF, days=HISTORY_DAYS
        ),
    )
    recommendations = _timed(
        "cross_sell (category)",
        timings,
        lambda: cross_sell_recommendations(c["order_items"], c["orders"], as_of=AS_OF),
    )
    audiences = _timed(
        "marketing_audiences",
        timings,
        lambda: marketing_audiences(
            segmentation.segments, c["subscriptions"], c["events"], AS_OF, customers=c["customers"]
        ),
    )
    _timed(
        "metadata tables and charts",
        timings,
        lambda: (
            segment_sizes_markdown(segmentation.segments),
            cluster_profiles_markdown(segmentation.clusters.profiles),
            kpi_trend_markdown(kpis),
            segment_chart_png(segmentation.segments),
            kpi_chart_png(kpis),
        ),
    )
    wall = sum(w for w, _ in timings.values())
    cpu = sum(c for _, c in timings.values())
    print(
        f"rows: customer_360 {len(view):,} x {view.shape[1]}, segments {len(segmentation.segments):,}, "
        f"kpis {len(kpis):,}, cross-sell {len(recommendations):,}, audiences {len(audiences):,}; "
        f"k = {segmentation.clusters.k}"
    )
    print(f"TOTAL marts: {wall:.2f} s wall, {cpu:.2f} s CPU (target <= 30 s wall)")
    print(f"peak RSS: {_peak_rss_mb():.0f} MB, inputs included (target <= 2048 MB)")


if __name__ == "__main__":
    main()
