"""Shared by the end-to-end benchmarks: demo sources, a config for them, a job run in a fresh process.

The job runs in a child process so that its peak memory is measured alone, without the generator's:
``RUSAGE_CHILDREN`` for the whole process, and per step a sampler of the child's resident set size
(``_memory.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
END = dt.date(2026, 6, 30)
CHILD = Path(__file__).resolve()


def prepare_demo(root: Path, people: int, warehouse_url: str | None = None) -> Path:
    """Generate demo sources under ``root`` and write a crm.yaml for them; return its path."""
    from crm_pipelines.demo.generator import generate

    started = time.perf_counter()
    manifest = generate(root / "data" / "demo", people=people, seed=42, end_date=END)
    print(f"generated demo sources for {people:,} people in {time.perf_counter() - started:.1f} s")
    for name, count in sorted(manifest.counts.items()):
        print(f"  {name:<36} {count:>12,}")
    data = yaml.safe_load((ROOT / "crm.yaml").read_text())
    # The bundled crm.yaml's warehouse settings (DuckDB's memory limit) stay; only the URL changes.
    data["warehouse"] = {**data.get("warehouse", {}), "url": warehouse_url or f"duckdb:///{root / 'warehouse.duckdb'}"}
    data["as_of"] = END.isoformat()
    config_path = root / "crm.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_path


def run_job(config_path: Path, groups: list[str] | None) -> tuple[dict, float, float]:
    """Run the nightly job (or only ``groups``) in a fresh process: (figures, wall s, peak GB)."""
    args = [sys.executable, str(CHILD), str(config_path), *(groups or [])]
    wall = time.perf_counter()
    out = subprocess.run(args, check=False, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - wall
    if out.returncode:
        raise SystemExit(f"benchmark run failed:\n{out.stderr[-4000:]}")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return json.loads(out.stdout.strip().splitlines()[-1]), wall, peak_gb


def machine_load() -> str:
    """The load averages (1, 5, 15 min) as uptime prints them: figures from a shared machine carry them."""
    with open("/proc/loadavg") as f:
        one, five, fifteen = f.read().split()[:3]
    return f"load average {one}, {five}, {fifteen} ({os.cpu_count()} cores)"


def print_steps(steps: dict[str, float], top: int = 25, memory: dict | None = None) -> None:
    print("\nsteps (seconds; with memory: peak RSS during the step and its rise over the step's start, MB):")
    for step, seconds in sorted(steps.items(), key=lambda kv: -kv[1])[:top]:
        mem = (memory or {}).get(step)
        shown = f"  {mem['peak_mb']:>9.1f} {mem['rise_mb']:>+9.1f}" if mem else ""
        print(f"  {step:<44} {seconds:>8.2f}{shown}")


def _child(config_path: str, groups: list[str]) -> None:
    started = time.perf_counter()
    import dagster as dg
    from _memory import RssSampler, step_memory, step_windows

    from crm_pipelines.config import load_config
    from crm_pipelines.definitions import build_definitions

    defs = build_definitions(load_config(config_path))
    load_seconds = time.perf_counter() - started
    if groups:
        job = dg.define_asset_job(
            "bench", selection=dg.AssetSelection.groups(*groups), executor_def=dg.in_process_executor
        )
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    started = time.perf_counter()
    instance = dg.DagsterInstance.ephemeral()
    with RssSampler() as sampler:
        result = defs.resolve_job_def("bench" if groups else "crm_nightly").execute_in_process(
            raise_on_error=True, instance=instance
        )
    total = time.perf_counter() - started
    memory = step_memory(sampler, step_windows(instance, result.run_id))
    steps, validation, by_check = {}, 0.0, {}
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            steps[event.step_key] = round(event.event_specific_data.duration_ms / 1000, 2)
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            seconds = data.metadata.get("validation_seconds")
            if seconds is not None:
                validation += float(seconds.value)
                by_check[f"{data.asset_key.to_user_string()}:{data.check_name}"] = round(float(seconds.value), 2)
    print(
        json.dumps(
            {
                "definitions_seconds": round(load_seconds, 2),
                "total_seconds": round(total, 2),
                "validation_seconds": round(validation, 2),
                "validation_by_check": by_check,
                "steps": steps,
                "step_memory": memory,
                "peak_mb": round(sampler.peak / 2**20, 1),
            }
        )
    )


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])
