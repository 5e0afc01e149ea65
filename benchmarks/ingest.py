"""Ingest + staging benchmark: wall time and peak memory of the raw and staging layers.

Generates demo sources for N people (100,000 by default: about a million orders), then runs the
raw and staging assets of the bundled configuration in a fresh process against a fresh DuckDB
warehouse (or the one ``--warehouse-url`` names), and prints wall seconds per step and in total,
and that process's peak resident memory. Targets at 100,000 people: at most 60 s and 2 GB.

    .venv/bin/python benchmarks/ingest.py [--people 100000] [--warehouse-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _harness import prepare_demo, print_steps, run_job

TARGET_SECONDS = 60.0
TARGET_MEMORY_GB = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--warehouse-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm_bench_ingest_") as tmp:
        config_path = prepare_demo(Path(tmp), args.people, args.warehouse_url)
        figures, wall, peak_gb = run_job(config_path, ["raw", "staging"])
    print_steps(figures["steps"])
    print(
        f"\ningest + staging, job wall time: {figures['total_seconds']:.1f} s (target <= {TARGET_SECONDS:.0f} s)"
    )
    print(f"process wall time incl. start-up: {wall:.1f} s")
    print(f"peak memory: {peak_gb:.2f} GB (target <= {TARGET_MEMORY_GB:.0f} GB)")
    ok = figures["total_seconds"] <= TARGET_SECONDS and peak_gb <= TARGET_MEMORY_GB
    print("within targets" if ok else "OUTSIDE TARGETS")


if __name__ == "__main__":
    main()
