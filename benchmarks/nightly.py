"""The whole nightly job at scale: wall time, peak memory, and what validation adds.

Generates demo sources for N people (100,000 by default), runs ``crm_nightly`` in a fresh process on a
fresh DuckDB warehouse (or ``--warehouse-url``), and prints seconds per step, the total, the seconds
Great Expectations validation took inside it (summed from the checks' ``validation_seconds``), the
share validation adds to the run (target: at most 15%), and how long loading the Dagster definitions
took (target: at most 3 s). With ``--warehouse-url`` it also runs the same sources on a fresh DuckDB
file and prints the ratio of the two runs' times (target for PostgreSQL: at most 1.5) and the steps where
the server loses most time. The server database must be empty, or the run would be incremental.

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


def require_empty_warehouse(url: str) -> None:
    """A warehouse that already holds the layers would make this an incremental run, not comparable."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            present = sorted(set(sa.inspect(conn).get_schema_names()) & {"raw", "staging", "core", "marts"})
    finally:
        engine.dispose()
    if present:
        raise SystemExit(f"{engine.url.render_as_string()} already holds {', '.join(present)}: give an empty database")


def print_step_comparison(server: dict[str, float], duckdb: dict[str, float], top: int = 15) -> None:
    """The steps where the server warehouse loses most time to DuckDB, largest difference first."""
    print("\nsteps where the server warehouse loses most to DuckDB (seconds):")
    print(f"  {'step':<44} {'server':>8} {'duckdb':>8} {'diff':>8}")
    diffs = {step: seconds - duckdb.get(step, 0.0) for step, seconds in server.items()}
    for step, diff in sorted(diffs.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {step:<44} {server[step]:>8.2f} {duckdb.get(step, 0.0):>8.2f} {diff:>+8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--warehouse-url", default=None)
    args = parser.parse_args()
    if args.warehouse_url:
        require_empty_warehouse(args.warehouse_url)
    with tempfile.TemporaryDirectory(prefix="crm_bench_nightly_") as tmp:
        config_path = prepare_demo(Path(tmp), args.people, args.warehouse_url)
        figures, wall, peak_gb = run_job(config_path, None)
        duckdb_total = None
        if args.warehouse_url:
            duckdb_figures = run_job(with_duckdb_warehouse(config_path), None)[0]
            duckdb_total = duckdb_figures["total_seconds"]
    print_steps(figures["steps"])
    if duckdb_total is not None:
        print_step_comparison(figures["steps"], duckdb_figures["steps"])
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
