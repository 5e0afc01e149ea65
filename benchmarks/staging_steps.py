"""The staging assets alone, on a copy of an ingested warehouse: seconds and memory per step.

Generates demo sources for N people into ``--workdir`` (or reuses them), ingests them once into a
DuckDB warehouse kept there as ``raw_<people>.duckdb``, then, ``--repeats`` times, copies that file
and runs only the ``staging`` group on the copy in a fresh process, printing per step the wall
seconds, the peak resident memory and its rise (MB), and the machine's load. Staging is the first
night's: every raw batch is staged.

    .venv/bin/python benchmarks/staging_steps.py [--people 100000] [--workdir DIR] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from _harness import prepare_demo, print_steps, run_job


def _checkpoint(path: Path) -> None:
    import duckdb

    connection = duckdb.connect(str(path))
    connection.execute("CHECKPOINT")
    connection.close()


def _copy(source: Path, target: Path) -> None:
    Path(f"{target}.wal").unlink(missing_ok=True)
    shutil.copyfile(source, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, help="keep the demo sources and the ingested warehouse here")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crm_bench_staging_") as tmp:
        root = (args.workdir or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        config_path, warehouse = root / "crm.yaml", root / "warehouse.duckdb"
        snapshot = root / f"raw_{args.people}.duckdb"
        if not config_path.exists() or not snapshot.exists():
            Path(f"{warehouse}.wal").unlink(missing_ok=True)
            warehouse.unlink(missing_ok=True)
            prepare_demo(root, args.people)
            figures, _, _ = run_job(config_path, ["raw"])
            print(f"raw ingested in {figures['total_seconds']:.1f} s")
            _checkpoint(warehouse)  # the job's process left part of the load in the write-ahead log
            shutil.copyfile(warehouse, snapshot)
        for repeat in range(1, args.repeats + 1):
            _copy(snapshot, warehouse)
            load_before = os.getloadavg()[0]
            figures, _, _ = run_job(config_path, ["staging"])
            print(f"\nstaging, run {repeat}: {figures['total_seconds']:.1f} s; peak {figures['peak_mb']:.0f} MB; "
                  f"load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
            print_steps(figures["steps"], memory=figures["step_memory"])


if __name__ == "__main__":
    main()
