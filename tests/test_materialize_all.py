""""Materialize all" as the UI launches it: every asset, with the Definitions' default executor.

`dagster asset materialize` runs a selection through the same executor the UI's launches use (the
Definitions' default, not a job's). On DuckDB a multiprocess default made the steps fight over the
warehouse file's lock; this runs the whole graph in a subprocess to prove they no longer do.
"""

from __future__ import annotations

import os
import subprocess

import dagster as dg
import pytest
from deployment import BIN, write_demo_project

from crm_pipelines.config import PROJECT_ROOT, load_config
from crm_pipelines.definitions import build_definitions


@pytest.mark.slow
def test_materialize_all_on_duckdb_with_the_default_executor(tmp_path):
    config = write_demo_project(tmp_path, people=300)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k != "CRM_WAREHOUSE_URL"}
    env.update(CRM_CONFIG=str(config), DAGSTER_HOME=str(home))
    done = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "crm_pipelines.definitions", "--select", "*"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "Conflicting lock" not in log
    assert "Executing steps in process" in log and "Executing steps using multiprocess executor" not in log

    defs = build_definitions(load_config(config))
    keys = set(defs.resolve_asset_graph().get_all_asset_keys())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        materialized = {key for key in keys if instance.get_latest_materialization_event(key) is not None}
    assert materialized == keys, sorted(k.to_user_string() for k in keys - materialized)
