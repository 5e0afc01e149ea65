"""Speed and memory of the marts' analytics on synthetic core frames.

Builds core-shaped frames for 100,000 customers (about 1M orders, 2.5M order lines, 300k tickets, 2M
campaign events, 50k survey answers), then times every mart: customer segments, customer 360 (with
the segments joined in), three years of daily KPIs, cross-sell recommendations, consented audiences and
the metadata charts. Prints wall time per step and the process's peak resident memory.

    .venv/bin/python benchmarks/marts.py [--customers 100000] [--seed 0]

Targets: all marts within 30 s wall and 2 GB peak RSS (inputs included).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
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
        f"  {name:<28} {timings[name][0]:7.2f} s wall {timings[name][1]:7.2f} s CPU"
        f"   peak RSS {_peak_rss_mb():7.0f} MB",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

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
