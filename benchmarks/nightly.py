"""The whole nightly job at scale: wall time, peak memory, and what validation adds.

Generates demo sources for N people (100,000 by default), runs ``crm_nightly`` in a fresh process on a
fresh DuckDB warehouse (or ``--warehouse-url``), and prints seconds per step, the total, the seconds
Great Expectations validation took inside it (summed from the checks' ``validation_seconds``), the
share validation adds to the run (target: at most 15%), and how long loading the Dagster definitions
took (target: at most 3 s). With ``--warehouse-url`` it also runs the same sources on a fresh DuckDB
file and prints the ratio of the two runs' times (target for PostgreSQL: at most 1.5).

    .venv/bin/python benchmarks/nightly.py [--people 100000] [--warehouse-url URL]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _harness import ROOT, prepare_demo, print_steps, run_job

TARGET_VALIDATION_SHARE = 0.15
TARGET_DEFINITIONS_SECONDS = 3.0
TARGET_SERVER_RATIO = 1.5


def definitions_load_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` fresh interpreters importing the definitions module (bundled crm.yaml)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import crm_pipelines.definitions"], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def with_duckdb_warehouse(config_path: Path) -> Path:
    """A copy of the benchmark's crm.yaml that writes to a fresh DuckDB file beside it."""
    data = yaml.safe_load(config_path.read_text())
    data["warehouse"] = {"url": f"duckdb:///{config_path.parent / 'ratio_warehouse.duckdb'}"}
    copy = config_path.with_name("crm_duckdb.yaml")
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--warehouse-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm_bench_nightly_") as tmp:
        config_path = prepare_demo(Path(tmp), args.people, args.warehouse_url)
        figures, wall, peak_gb = run_job(config_path, None)
        duckdb_total = None
        if args.warehouse_url:
            duckdb_total = run_job(with_duckdb_warehouse(config_path), None)[0]["total_seconds"]
    print_steps(figures["steps"])
    print("\nvalidation (seconds, largest first):")
    for check, seconds in sorted(figures["validation_by_check"].items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {check:<52} {seconds:>6.2f}")
    total, validation = figures["total_seconds"], figures["validation_seconds"]
    share = validation / max(total - validation, 1e-9)
    load = definitions_load_seconds()
    print(
        f"\ncrm_nightly wall time: {total:.1f} s (process incl. start-up {wall:.1f} s), peak memory {peak_gb:.2f} GB"
    )
    print(
        f"validation inside it: {validation:.1f} s, adding {share:.1%} to the run without it "
        f"(target <= {TARGET_VALIDATION_SHARE:.0%})"
    )
    print(
        f"loading the Dagster definitions: {load:.2f} s in a fresh interpreter "
        f"(target <= {TARGET_DEFINITIONS_SECONDS:.0f} s)"
    )
    ok = share <= TARGET_VALIDATION_SHARE and load <= TARGET_DEFINITIONS_SECONDS
    if duckdb_total is not None:
        ratio = total / duckdb_total
        print(
            f"{args.warehouse_url.split(':')[0]} / DuckDB: {total:.1f} s / {duckdb_total:.1f} s = {ratio:.2f}x "
            f"(same sources; target <= {TARGET_SERVER_RATIO}x)"
        )
        ok = ok and ratio <= TARGET_SERVER_RATIO
    print("within targets" if ok else "OUTSIDE TARGETS")


if __name__ == "__main__":
    main()
