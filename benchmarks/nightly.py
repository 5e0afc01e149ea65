"""The whole nightly job at scale: wall time, peak memory, and what validation adds.

Generates demo sources for N people (100,000 by default), runs ``crm_nightly`` in a fresh process on a
fresh DuckDB warehouse (or ``--warehouse-url``), and prints seconds per step, the total, the seconds
contract validation took inside it (summed from the checks' ``validation_seconds``), the
share validation adds to the run (target: at most 15%), and how long loading the Dagster definitions
took (target: at most 2 s; printed beside importing Dagster alone, the floor). With ``--warehouse-url``
it also runs the same sources on a fresh DuckDB file and prints the ratio of the two runs' times
(target for PostgreSQL: at most 1.5) and the steps where the server loses most time. The server
database must be empty, or the run would be incremental.

Then it runs a second nightly on the same warehouse, one day later, after about 1% of every source's
rows were delivered again, changed (``_changes.py``), and prints both nights' wall time and peak
memory per step (peak resident size during the step, and its rise over the step's start), and the
ratio second night / first night (target: at most 25%). By default the file sources are read by their
change time (``incremental: cursor``), as a production export with change stamps would be; with
``--as-shipped`` they stay full deliveries, which staging restages whole every night.

    .venv/bin/python benchmarks/nightly.py [--people 100000] [--warehouse-url URL] [--as-shipped]
    .venv/bin/python benchmarks/nightly.py --definitions-only     # the definitions-load figure alone

``--workdir DIR`` keeps the generated sources in DIR and reuses them on the next run with the same
``--people`` (the warehouse is always fresh); a second night changes them, so they are generated again
after one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _changes import change_sources, incremental_settings
from _harness import END, ROOT, machine_load, prepare_demo, print_steps, run_job

TARGET_VALIDATION_SHARE = 0.15
TARGET_DEFINITIONS_SECONDS = 2.0
TARGET_SERVER_RATIO = 1.5
TARGET_SECOND_NIGHT_RATIO = 0.25


def _fresh_interpreter_seconds(module: str, repeats: int) -> float:
    """Best wall time of ``repeats`` fresh interpreters importing ``module``, start-up included."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return best


def definitions_load_seconds(repeats: int = 5) -> tuple[float, float]:
    """Best of ``repeats`` fresh interpreters importing the definitions module (bundled crm.yaml), and
    the same for ``import dagster`` alone: the floor no change of ours can go below."""
    return (
        _fresh_interpreter_seconds("crm_pipelines.definitions", repeats),
        _fresh_interpreter_seconds("dagster", repeats),
    )


def print_definitions_load(load: float, dagster_floor: float) -> None:
    # Without bytecode caches every start compiles our modules again (a few hundred ms); deployments keep them.
    cached = Path(importlib.util.cache_from_source(str(ROOT / "crm_pipelines" / "definitions.py"))).exists()
    compiled = "" if cached else " (no bytecode cache of crm_pipelines: its sources were compiled at every start)"
    print(
        f"loading the Dagster definitions: {load:.2f} s in a fresh interpreter "
        f"(target <= {TARGET_DEFINITIONS_SECONDS:.0f} s; importing dagster alone: {dagster_floor:.2f} s){compiled}"
    )


def with_duckdb_warehouse(config_path: Path) -> Path:
    """A copy of the benchmark's crm.yaml that writes to a fresh DuckDB file beside it, and saves the identity
    model it trains in a folder of its own: a former run's file, or the model the server's run just trained,
    would spare this run work the server's run did."""
    data = yaml.safe_load(config_path.read_text())
    root = config_path.parent
    for stale in (root / "ratio_warehouse.duckdb", root / "ratio_warehouse.duckdb.wal"):
        stale.unlink(missing_ok=True)
    shutil.rmtree(root / "ratio_models", ignore_errors=True)
    data["warehouse"] = {**data.get("warehouse", {}), "url": f"duckdb:///{root / 'ratio_warehouse.duckdb'}"}
    data["identity"] = {**data.get("identity", {}), "model_path": "ratio_models/identity_model.json"}
    copy = config_path.with_name("crm_duckdb.yaml")
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def set_memory_limit(config_path: Path, limit: str | None) -> str:
    """Write ``limit`` (else the bundled crm.yaml's) into the benchmark's crm.yaml, which a former run
    with another limit may have left; return the limit the runs use."""
    bundled = yaml.safe_load((ROOT / "crm.yaml").read_text()).get("warehouse", {})
    data = yaml.safe_load(config_path.read_text())
    data["warehouse"].pop("duckdb_memory_limit", None)
    limit = limit or bundled.get("duckdb_memory_limit")
    if limit:
        data["warehouse"]["duckdb_memory_limit"] = limit
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return limit or "the warehouse's default"


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
    parser.add_argument("--share", type=float, default=0.01, help="share of rows changed for the second night")
    parser.add_argument("--as-shipped", action="store_true", help="keep the file sources as full deliveries")
    parser.add_argument("--first-night-only", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep the generated sources here and reuse them")
    parser.add_argument("--definitions-only", action="store_true", help="print the definitions-load figure only")
    parser.add_argument(
        "--duckdb-memory-limit", help="warehouse.duckdb_memory_limit for the runs (default: crm.yaml's)"
    )
    args = parser.parse_args()
    print(f"start: {machine_load()}", flush=True)
    if args.definitions_only:
        load, dagster_floor = definitions_load_seconds()
        print_definitions_load(load, dagster_floor)
        raise SystemExit(0 if load <= TARGET_DEFINITIONS_SECONDS else 1)
    if args.warehouse_url:
        require_empty_warehouse(args.warehouse_url)
    second = None
    with tempfile.TemporaryDirectory(prefix="crm_bench_nightly_") as tmp:
        config_path = sources(args.workdir or Path(tmp), args.people, args.warehouse_url, args.as_shipped)
        print(f"warehouse DuckDB memory limit: {set_memory_limit(config_path, args.duckdb_memory_limit)}")
        figures, wall, peak_gb = run_job(config_path, None)
        duckdb_total = None
        if args.warehouse_url:
            duckdb_figures = run_job(with_duckdb_warehouse(config_path), None)[0]
            duckdb_total = duckdb_figures["total_seconds"]
        if not args.first_night_only:
            (config_path.parent / PRISTINE).unlink(missing_ok=True)
            second = second_night(config_path, args.share)
    print_steps(figures["steps"], memory=figures.get("step_memory"))
    if duckdb_total is not None:
        print_step_comparison(figures["steps"], duckdb_figures["steps"])
    print("\nvalidation (seconds, largest first):")
    for check, seconds in sorted(figures["validation_by_check"].items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {check:<52} {seconds:>6.2f}")
    total, validation = figures["total_seconds"], figures["validation_seconds"]
    share = validation / max(total - validation, 1e-9)
    load, dagster_floor = definitions_load_seconds()
    print(
        f"\ncrm_nightly wall time: {total:.1f} s (process incl. start-up {wall:.1f} s), peak memory {peak_gb:.2f} GB"
    )
    print(
        f"validation inside it: {validation:.1f} s, adding {share:.1%} to the run without it "
        f"(target <= {TARGET_VALIDATION_SHARE:.0%})"
    )
    print_definitions_load(load, dagster_floor)
    ok = share <= TARGET_VALIDATION_SHARE and load <= TARGET_DEFINITIONS_SECONDS
    if duckdb_total is not None:
        ratio = total / duckdb_total
        print(
            f"{args.warehouse_url.split(':')[0]} / DuckDB: {total:.1f} s / {duckdb_total:.1f} s = {ratio:.2f}x "
            f"(same sources; target <= {TARGET_SERVER_RATIO}x)"
        )
        ok = ok and ratio <= TARGET_SERVER_RATIO
    if second is not None:
        ok = report_second_night(figures, second) and ok
    print(f"end: {machine_load()}")
    print("within targets" if ok else "OUTSIDE TARGETS")


PRISTINE = "sources_unchanged"


def sources(root: Path, people: int, warehouse_url: str | None, as_shipped: bool) -> Path:
    """The crm.yaml of demo sources for ``people`` under ``root``: the ones a former run left there when
    no second night changed them since, else newly generated. The DuckDB warehouse starts empty."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    config_path, marker = root / "crm.yaml", root / PRISTINE
    key = f"{people} {warehouse_url} {as_shipped}"
    for stale in (root / "warehouse.duckdb", root / "warehouse.duckdb.wal"):
        stale.unlink(missing_ok=True)
    # The identity model a former run trained and saved: kept, it would spare this first night the
    # training a new installation's first night does.
    shutil.rmtree(root / "models", ignore_errors=True)
    if config_path.exists() and marker.exists() and marker.read_text() == key:
        print(f"reusing the demo sources for {people:,} people in {root}")
        return config_path
    marker.unlink(missing_ok=True)
    config_path = prepare_demo(root, people, warehouse_url)
    if not as_shipped:
        data = yaml.safe_load(config_path.read_text())
        switched = incremental_settings(data)
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        print(f"read by change time (cursor): {', '.join(switched)}")
    marker.write_text(key)
    return config_path


def second_night(config_path: Path, share: float) -> dict:
    """Change ``share`` of the sources' rows on the day after the first night, and run again."""
    day = END + dt.timedelta(days=1)
    changed = change_sources(config_path.parent / "data" / "demo", day, share=share)
    print(f"\nsecond night ({day}): rows delivered again, changed: {sum(changed.values()):,}")
    for name, rows in sorted(changed.items()):
        print(f"  {name:<36} {rows:>10,}")
    data = yaml.safe_load(config_path.read_text())
    data["as_of"] = day.isoformat()
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return run_job(config_path, None)[0]


def report_second_night(first: dict, second: dict) -> bool:
    """Both nights per step, and the ratios second / first of wall time and of memory."""
    print("\nper step, first night vs second night (seconds; peak RSS MB; rise over the step's start MB):")
    print(f"  {'step':<40} {'s 1st':>8} {'s 2nd':>8} {'peak 1st':>9} {'peak 2nd':>9} {'rise 1st':>9} {'rise 2nd':>9}")
    mem1, mem2 = first.get("step_memory", {}), second.get("step_memory", {})
    for step, seconds in sorted(first["steps"].items(), key=lambda kv: -kv[1]):
        a, b = mem1.get(step, {}), mem2.get(step, {})
        print(
            f"  {step:<40} {seconds:>8.2f} {second['steps'].get(step, float('nan')):>8.2f} "
            f"{a.get('peak_mb', float('nan')):>9.1f} {b.get('peak_mb', float('nan')):>9.1f} "
            f"{a.get('rise_mb', float('nan')):>+9.1f} {b.get('rise_mb', float('nan')):>+9.1f}"
        )
    time_ratio = second["total_seconds"] / max(first["total_seconds"], 1e-9)
    rise1 = max((m["rise_mb"] for m in mem1.values()), default=0.0)
    rise2 = max((m["rise_mb"] for m in mem2.values()), default=0.0)
    memory_ratio = rise2 / max(rise1, 1e-9)
    print(
        f"\nfirst night {first['total_seconds']:.1f} s, peak {first['peak_mb']:.0f} MB; "
        f"second night {second['total_seconds']:.1f} s, peak {second['peak_mb']:.0f} MB"
    )
    print(f"second / first, wall time: {time_ratio:.1%} (target <= {TARGET_SECOND_NIGHT_RATIO:.0%})")
    print(
        f"second / first, largest per-step memory rise: {rise2:.0f} / {rise1:.0f} MB = {memory_ratio:.1%}; "
        f"process peak: {second['peak_mb'] / max(first['peak_mb'], 1e-9):.1%}"
    )
    slowest = sorted(second["steps"].items(), key=lambda kv: -kv[1])[:8]
    print("second night's slowest steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in slowest))
    return time_ratio <= TARGET_SECOND_NIGHT_RATIO


if __name__ == "__main__":
    main()
