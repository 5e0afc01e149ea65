"""The identity asset as the nightly runs it, at scale: first run (with training), then a 1% night.

Used by ``benchmarks/identity.py``. Demo sources (generated once into a directory and reused) are
staged by the bundled raw and staging assets into a fresh DuckDB warehouse; then the
``identity_resolution`` asset runs through a real in-process Dagster job, in a fresh process of its
own, whose wall time and peak resident memory are measured: first with no saved model (so it trains
one), then after 1% of the staged customer records were changed or added. Each run prints its
Dagster step time and the resolution's own seconds per stage (from the materialization metadata).

    .venv/bin/python benchmarks/_identity_pipeline.py CONFIG stage|identity   (one child step)
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()


def prepare(root: Path, demo: Path, people: int) -> Path:
    """A crm.yaml under ``root`` reading the demo sources in ``demo`` (generated there if missing)."""
    from _harness import END

    from crm_pipelines.demo.generator import DemoManifest, generate

    existing = DemoManifest.read(demo)
    if existing is None or not existing.is_complete() or existing.people != people:
        started = time.perf_counter()
        generate(demo, people=people, seed=42, end_date=END)
        print(f"generated demo sources for {people:,} people in {time.perf_counter() - started:.1f} s")
    (root / "data").mkdir(parents=True, exist_ok=True)
    link = root / "data" / "demo"
    if not link.exists():
        link.symlink_to(demo.resolve(), target_is_directory=True)
    data = yaml.safe_load((ROOT / "crm.yaml").read_text())
    data["warehouse"] = {"url": f"duckdb:///{root / 'warehouse.duckdb'}"}
    data["as_of"] = END.isoformat()
    config_path = root / "crm.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_path


def keep_staged(warehouse: Path, snapshot: Path) -> None:
    """Checkpoint the staged warehouse (its write-ahead log folded in) and copy it to ``snapshot``."""
    import duckdb

    con = duckdb.connect(str(warehouse))
    con.execute("CHECKPOINT")
    con.close()
    shutil.copyfile(warehouse, snapshot)


def restore_staged(snapshot: Path, warehouse: Path) -> None:
    """Put a kept staged warehouse back, with no identity tables yet."""
    Path(f"{warehouse}.wal").unlink(missing_ok=True)
    shutil.copyfile(snapshot, warehouse)


def forget_model(config_path: Path) -> None:
    """Remove the saved identity model, so the next identity run trains one (a first run)."""
    from crm_pipelines.config import load_config

    config = load_config(config_path)
    config.resolve_path(config.identity.model_path).unlink(missing_ok=True)


def change_one_percent(config_path: Path) -> dict[str, int]:
    """Change 0.5% of the staged customer records (a new surname, phone and update time) and add
    0.5% new ones (a known person's record arriving under a new id; unique however often it runs)."""
    from crm_pipelines.config import load_config
    from crm_pipelines.warehouse import Warehouse, col, dispose_engines

    wh = Warehouse(load_config(config_path).warehouse_url)
    customers = wh.qualified("staging", "customers")
    before = wh.row_count("staging", "customers")
    wh.execute(
        f"UPDATE {customers} SET last_name = last_name || '-Neu', phone = NULL, "
        "updated_at = updated_at + INTERVAL 1 DAY WHERE hash(source, source_record_id) % 200 = 0 "
        "AND record_kind = 'record'"
    )
    night = wh.row_count("staging", "customers", where=col("source_record_id").like("%-bench%"))
    wh.execute(
        f"INSERT INTO {customers} SELECT * REPLACE (source_record_id || '-bench' || :night AS source_record_id, "
        "lower(coalesce(first_name, 'x')) || '.' || source_record_id || '@bench.example' AS email) "
        f"FROM {customers} WHERE hash(source_record_id, 'new') % 200 = 0 AND record_kind = 'record' "
        "AND source_record_id NOT LIKE '%-bench%'",
        {"night": str(night)},
    )
    after = wh.row_count("staging", "customers")
    dispose_engines()
    return {"records_before": before, "records_after": after, "added": after - before, "changed": before // 200}


def run_step(config_path: Path, step: str) -> dict:
    """Run one child step in a fresh process; its figures, wall time and own peak memory."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(HERE), str(config_path), step], check=False, capture_output=True, text=True, cwd=ROOT
    )
    wall = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"identity pipeline step {step} failed:\n{out.stderr[-4000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures.update(wall_seconds=round(wall, 1), load_average=[round(x, 2) for x in os.getloadavg()])
    return figures


def _child(config_path: str, step: str) -> None:
    import dagster as dg

    from crm_pipelines.assets.core import IDENTITY_TABLES, core_key
    from crm_pipelines.config import load_config
    from crm_pipelines.definitions import build_definitions

    defs = build_definitions(load_config(config_path))
    if step == "stage":
        selection = dg.AssetSelection.groups("raw", "staging")
    else:
        selection = dg.AssetSelection.assets(*(core_key(t) for t in IDENTITY_TABLES))
    job = dg.define_asset_job("bench_identity", selection=selection, executor_def=dg.in_process_executor)
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    started = time.perf_counter()
    result = defs.resolve_job_def("bench_identity").execute_in_process(
        raise_on_error=True, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    )
    total = time.perf_counter() - started
    figures: dict = {"job_seconds": round(total, 1)}
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS" and "identity" in event.step_key:
            figures["identity_step_seconds"] = round(event.event_specific_data.duration_ms / 1000, 1)
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            table = materialization.asset_key.path[-1]
            if "rows_written" in metadata:
                figures.setdefault("rows_written", {})[table] = metadata["rows_written"]
            for name in (
                "seconds",
                "stage_seconds",
                "stage_peak_mb",
                "records",
                "customers",
                "new_or_changed_records",
                "pairs_scored",
                "pairs_by_rule",
                "oversized_blocks_by_rule",
            ):
                if name in metadata:
                    figures[name] = metadata[name]
    figures["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    _child(sys.argv[1], sys.argv[2])
