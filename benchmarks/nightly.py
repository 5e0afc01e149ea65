"""The whole nightly job at scale: wall time, peak memory, and what validation adds.

Generates demo sources for N people (100,000 by default), runs ``crm_nightly`` in a fresh process on a
fresh DuckDB warehouse (or ``--warehouse-url``), and prints seconds per step, the total, the seconds
Great Expectations validation took inside it (summed from the checks' ``validation_seconds``), the
share validation adds to the run (target: at most 15%), and how long loading the Dagster definitions
took (target: at most 3 s).

    .venv/bin/python benchmarks/nightly.py [--people 100000] [--warehouse-url URL]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, prepare_demo, print_steps, run_job

TARGET_VALIDATION_SHARE = 0.15
TARGET_DEFINITIONS_SECONDS = 3.0


def definitions_load_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` fresh interpreters importing the definitions module (bundled crm.yaml)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import crm_pipelines.definitions"], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


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
    print("within targets" if ok else "OUTSIDE TARGETS")


if __name__ == "__main__":
    main()
