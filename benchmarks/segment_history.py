"""The customer_segment_history asset alone, as a first run computes it (every past month backfilled),
on a copy of a warehouse a night left: wall time and peak memory of the process.

    flock /tmp/crm-heavy.lock python benchmarks/segment_history.py --workdir DIR [--copy-to DIR2]

``--workdir`` holds a night's ``crm.yaml`` and ``warehouse.duckdb`` (``nightly.py --workdir``); the
warehouse is copied to ``--copy-to`` (default: a temporary directory) and its history dropped there, so
the asset backfills. The run's process measures itself: its resident size before the asset and its
peak (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from _harness import machine_load
from _memory import RssSampler, rss_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--copy-to", type=Path, default=None)
    parser.add_argument("--duckdb-memory-limit", help="warehouse.duckdb_memory_limit (default: the setting's default)")
    args = parser.parse_args()
    print(f"start: {machine_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="crm_bench_history_") as tmp:
        target = (args.copy_to or Path(tmp)).resolve()
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.workdir / "warehouse.duckdb", target / "warehouse.duckdb")
        wal = args.workdir / "warehouse.duckdb.wal"
        if wal.exists():
            shutil.copy2(wal, target / "warehouse.duckdb.wal")
        data = yaml.safe_load((args.workdir / "crm.yaml").read_text())
        # Only the URL, and the limit if given: an older release's code can run the same script.
        data["warehouse"] = {"url": f"duckdb:///{target / 'warehouse.duckdb'}"}
        if args.duckdb_memory_limit:
            data["warehouse"]["duckdb_memory_limit"] = args.duckdb_memory_limit
        data["bi"] = {**data.get("bi", {}), "export": "never"}
        # Relative source paths stay the workdir's: the asset reads only the warehouse.
        config_path = args.workdir.resolve() / "crm_history_bench.yaml"
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        # definitions.py loads a config when imported: this one, not the crm.yaml of the current folder.
        from crm_pipelines.config import CONFIG_ENV

        os.environ[CONFIG_ENV] = str(config_path)
        run(config_path)


def run(config_path: Path) -> None:
    import dagster as dg

    from crm_pipelines.config import load_config
    from crm_pipelines.definitions import build_definitions
    from crm_pipelines.schema import MARTS
    from crm_pipelines.warehouse import dispose_engines

    defs = build_definitions(load_config(config_path))
    wh = defs.resources["warehouse"].get_warehouse()
    for table in ("customer_segment_history", "customer_segment_history__new"):
        wh.drop_table(MARTS, table)
    wh.execute("CHECKPOINT")
    dispose_engines()  # the asset starts on a cold warehouse, as in a night's fresh step
    asset = defs.get_assets_def(dg.AssetKey([MARTS, "customer_segment_history"]))
    before = rss_bytes()
    started = time.perf_counter()
    with RssSampler() as sampler:
        result = dg.materialize([asset], resources=defs.resources, instance=dg.DagsterInstance.ephemeral())
    seconds = time.perf_counter() - started
    rows = next(m for m in result.get_asset_materialization_events())
    metadata = rows.materialization.metadata
    print(f"rows written: {metadata['rows_written'].value:,}; months: {metadata['months_written'].value}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"customer_segment_history (first run, backfill): {seconds:.1f} s; RSS before {before / 2**30:.2f} GB, "
        f"peak while it ran {sampler.peak / 2**30:.2f} GB (process high-water mark {peak:.2f} GB)"
    )
    print(f"end: {machine_load()}")


if __name__ == "__main__":
    main()
