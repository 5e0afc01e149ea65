"""Ingest + staging benchmark: wall time and peak memory of the raw and staging layers.

Generates demo sources for N people (100,000 by default: about a million orders), then runs the
raw and staging assets of the bundled configuration in a fresh process against a fresh DuckDB
warehouse (or the one ``--warehouse-url`` names), and prints wall seconds per step and in total,
and that process's peak resident memory. Targets at 100,000 people: at most 60 s and 2 GB.

    .venv/bin/python benchmarks/ingest.py [--people 100000] [--warehouse-url URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
END = dt.date(2026, 6, 30)
TARGET_SECONDS = 60.0
TARGET_MEMORY_GB = 2.0


def child(config_path: str) -> None:
    """Run raw + staging once and print per-step seconds as JSON (runs in its own process)."""
    import dagster as dg

    from crm_pipelines.config import load_config
    from crm_pipelines.definitions import build_definitions

    config = load_config(config_path)
    defs = build_definitions(config)
    selection = dg.AssetSelection.groups("raw", "staging")
    job = dg.define_asset_job("bench_ingest", selection=selection, executor_def=dg.in_process_executor)
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    started = time.perf_counter()
    result = defs.resolve_job_def("bench_ingest").execute_in_process(raise_on_error=True)
    total = time.perf_counter() - started
    steps = {
        e.step_key: round(e.event_specific_data.duration_ms / 1000, 2)
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    print(json.dumps({"total_seconds": round(total, 2), "steps": steps}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--warehouse-url", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from crm_pipelines.demo import generate

    with tempfile.TemporaryDirectory(prefix="crm_bench_ingest_") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        manifest = generate(root / "data" / "demo", people=args.people, seed=42, end_date=END)
        print(f"generated demo sources for {args.people:,} people in {time.perf_counter() - started:.1f} s")
        for name, count in sorted(manifest.counts.items()):
            print(f"  {name:<36} {count:>12,}")
        data = yaml.safe_load((ROOT / "crm.yaml").read_text())
        data["warehouse"] = {"url": args.warehouse_url or f"duckdb:///{root / 'warehouse.duckdb'}"}
        data["as_of"] = END.isoformat()
        config_path = root / "crm.yaml"
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))

        wall = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(config_path)],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )
        wall = time.perf_counter() - wall
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        figures = json.loads(out.stdout.strip().splitlines()[-1])

    print("\nsteps (seconds):")
    for step, seconds in sorted(figures["steps"].items(), key=lambda kv: -kv[1]):
        print(f"  {step:<40} {seconds:>8.2f}")
    print(f"\ningest + staging, job wall time: {figures['total_seconds']:.1f} s (target <= {TARGET_SECONDS:.0f} s)")
    print(f"process wall time incl. start-up: {wall:.1f} s")
    print(f"peak memory: {peak_gb:.2f} GB (target <= {TARGET_MEMORY_GB:.0f} GB)")
    ok = figures["total_seconds"] <= TARGET_SECONDS and peak_gb <= TARGET_MEMORY_GB
    print("within targets" if ok else "OUTSIDE TARGETS")


if __name__ == "__main__":
    main()
