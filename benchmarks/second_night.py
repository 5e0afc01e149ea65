"""Where a second night spends its time: each step split into the project's own calls.

Generates demo sources for N people into ``--workdir`` (reused by later runs), runs a first night there
once and keeps a copy of its warehouse and sources, then, on every invocation, restores that copy,
changes about 1% of the sources' rows (as ``nightly.py`` does) and runs the second night in this
process with the warehouse calls, metadata, validation and publishing functions timed. It prints the
steps with the seconds each spent in those calls, the seconds left to Dagster itself (event writes,
step set-up, the time between steps) and the totals per call across the run.

    .venv/bin/python benchmarks/second_night.py --people 5000 --workdir /tmp/crm_second_night
    .venv/bin/python benchmarks/second_night.py ... --first-night    # profile the first night instead

Calls nest (``validate_table`` writes the table, then validates it): the per-call totals are inclusive.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import duckdb
import yaml
from _changes import change_sources, incremental_settings
from _harness import END, prepare_demo, run_job
from _memory import step_windows

# (module, attribute): functions and methods timed wherever the project calls them.
TIMED = (
    ("crm_pipelines.assets.metadata", "table_metadata"),
    ("crm_pipelines.assets.metadata", "markdown_preview"),
    ("crm_pipelines.assets.validation", "validate_table"),
    ("crm_pipelines.assets.validation", "validate_in_place"),
    ("crm_pipelines.assets.validation", "previous_stats"),
    ("crm_pipelines.assets.validation", "record_stats"),
    ("crm_pipelines.checks.sql", "validate_in_warehouse"),
    ("crm_pipelines.checks.sql", "table_stats_in_warehouse"),
    ("crm_pipelines.checks.report", "render_html_report"),
    ("crm_pipelines.assets.staging", "record_quarantine"),
    ("crm_pipelines.assets.staging", "record_reconciliation"),
    ("crm_pipelines.attribution", "attribute"),
    ("crm_pipelines.bi_file", "export_marts_file"),
    ("crm_pipelines.warehouse", "Warehouse.write_table"),
    ("crm_pipelines.warehouse", "Warehouse.publish_staged"),
    ("crm_pipelines.warehouse", "Warehouse.publish_together"),
    ("crm_pipelines.warehouse", "Warehouse.swap_in"),
    ("crm_pipelines.warehouse", "Warehouse.query_arrow"),
    ("crm_pipelines.warehouse", "Warehouse.execute"),
    ("crm_pipelines.warehouse", "Warehouse.table_exists"),
    ("crm_pipelines.warehouse", "Warehouse.columns"),
    ("crm_pipelines.warehouse", "Warehouse.row_count"),
    ("crm_pipelines.warehouse", "Warehouse.create_table"),
    ("crm_pipelines.warehouse", "Warehouse.ensure_schemas"),
)


class CallTimer:
    """Wraps functions so that every call's (name, start, end) is recorded, wherever it is imported."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls.append((name, start, time.time()))

        return timed

    def install(self) -> None:
        import importlib

        for module_name, attr in TIMED:
            module = importlib.import_module(module_name)
            if "." in attr:
                cls_name, method = attr.split(".")
                cls = getattr(module, cls_name)
                setattr(cls, method, self.wrap(attr, getattr(cls, method)))
                continue
            original = getattr(module, attr)
            wrapped = self.wrap(attr, original)
            # Every module that imported the function by name gets the wrapper too.
            for loaded in list(sys.modules.values()):
                ours = getattr(loaded, "__name__", "").startswith("crm_pipelines")
                if ours and getattr(loaded, attr, None) is original:
                    setattr(loaded, attr, wrapped)


def _restore(workdir: Path) -> Path:
    """The first night's warehouse and sources, fresh; returns the config path."""
    snapshot = workdir / "after_first_night"
    (workdir / "warehouse.duckdb.wal").unlink(missing_ok=True)  # the last profiled night's
    for name in ("warehouse.duckdb", "data", "crm.yaml"):
        target = workdir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        source = snapshot / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    # The kept crm.yaml names the warehouse by its absolute path: a workdir copied elsewhere must run
    # on its own warehouse, not on the one it was copied from.
    config_path = workdir / "crm.yaml"
    data = yaml.safe_load(config_path.read_text())
    if str(data.get("warehouse", {}).get("url", "")).startswith("duckdb:///"):
        data["warehouse"]["url"] = f"duckdb:///{workdir.resolve() / 'warehouse.duckdb'}"
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_path


def first_night(people: int, workdir: Path) -> None:
    snapshot = workdir / "after_first_night"
    if snapshot.exists():
        return
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = prepare_demo(workdir, people)
    data = yaml.safe_load(config_path.read_text())
    incremental_settings(data)
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    figures, _, _ = run_job(config_path, None)
    print(f"first night: {figures['total_seconds']:.1f} s")
    # The job's process leaves its last transactions in the write-ahead log, which the copy below would
    # lose (the second night would then rebuild, say, the segment history's backfill): fold it in first.
    with contextlib.closing(duckdb.connect(str(workdir / "warehouse.duckdb"))) as connection:
        connection.execute("CHECKPOINT")
    snapshot.mkdir()
    for name in ("warehouse.duckdb", "data", "crm.yaml"):
        source = workdir / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, snapshot / name)


def profile_night(config_path: Path, cprofile: Path | None = None, timed: bool = True) -> None:
    import dagster as dg

    from crm_pipelines.config import load_config
    from crm_pipelines.definitions import build_definitions

    timer = CallTimer()
    defs = build_definitions(load_config(config_path))
    if timed:
        timer.install()
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("crm_nightly")
    started, cpu = time.time(), time.process_time()
    if cprofile is None:
        result = job.execute_in_process(raise_on_error=True, instance=instance)
    else:
        import cProfile

        with cProfile.Profile() as profiler:
            result = job.execute_in_process(raise_on_error=True, instance=instance)
        profiler.dump_stats(cprofile)
    total, cpu = time.time() - started, time.process_time() - cpu
    windows = step_windows(instance, result.run_id)
    per_step: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for name, start, end in timer.calls:
        totals[name][0] += end - start
        totals[name][1] += 1
        for step, (s, e) in windows.items():
            if s <= start <= e:
                per_step[step][name] += end - start
                break
    in_steps = sum(e - s for s, e in windows.values())
    print(
        f"\nnight: {total:.1f} s (CPU {cpu:.1f} s), of which in steps {in_steps:.1f} s, "
        f"between steps {total - in_steps:.1f} s"
    )
    print("\nsteps (seconds), with the largest timed calls inside (inclusive, nested calls counted in each):")
    for step, (s, e) in sorted(windows.items(), key=lambda kv: -(kv[1][1] - kv[1][0])):
        calls = sorted(per_step[step].items(), key=lambda kv: -kv[1])[:5]
        shown = ", ".join(f"{n} {v:.2f}" for n, v in calls if v >= 0.01)
        print(f"  {step:<44} {e - s:>6.2f}  {shown}")
    print("\ntimed calls over the whole night (seconds, calls):")
    for name, (seconds, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:<40} {seconds:>7.2f} {calls:>6}")
    print(json.dumps({"total_seconds": round(total, 2), "cpu_seconds": round(cpu, 2), "in_steps": round(in_steps, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--first-night", action="store_true", help="profile the first night, not the second")
    parser.add_argument("--cprofile", type=Path, default=None, help="also write cProfile statistics of the night here")
    parser.add_argument("--untimed", action="store_true", help="steps' seconds only, without the call timers' cost")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if args.first_night:
        if (workdir / "after_first_night").exists():
            raise SystemExit(f"{workdir} already holds a first night: give a fresh --workdir")
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = prepare_demo(workdir, args.people)
        data = yaml.safe_load(config_path.read_text())
        incremental_settings(data)
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        profile_night(config_path, args.cprofile, not args.untimed)
        return
    first_night(args.people, workdir)
    config_path = _restore(workdir)
    day = END + dt.timedelta(days=1)
    changed = change_sources(workdir / "data" / "demo", day, share=args.share)
    print(f"second night ({day}): rows delivered again, changed: {sum(changed.values()):,}")
    data = yaml.safe_load(config_path.read_text())
    data["as_of"] = day.isoformat()
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    profile_night(config_path, args.cprofile, not args.untimed)


if __name__ == "__main__":
    main()
