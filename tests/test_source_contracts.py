"""Damaged exports: a header-only or half-size delivery never replaces the last good one.

The end-to-end test also checks the consent ground truth on its good run (it already pays for one).

A failed volume contract stops the run (or skips the source, when so configured), the refused rows
are quarantined with the reason, and the marts BI reads stay exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from consent_truth import exported_withdrawn_people
from test_nightly import demo_config

from crm_pipelines.config import PROJECT_ROOT, ConfigError, config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.demo.generator import generate
from crm_pipelines.ingest.contracts import judge_volume
from crm_pipelines.schema import MARTS, QUARANTINE, RAW, STAGING
from crm_pipelines.warehouse import Warehouse

END = dt.date(2026, 6, 30)
WATCHED_MARTS = ("marketing_audiences", "customer_360")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("contract_demo")
    generate(root / "data" / "demo", people=400, seed=7, end_date=END)
    return root / "data"


def _project(demo_data: Path, tmp_path: Path) -> Path:
    shutil.copytree(demo_data, tmp_path / "data")
    return tmp_path


def _snapshot(wh: Warehouse, table: str) -> pd.DataFrame:
    frame = wh.read_table(MARTS, table)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _run(config):
    return build_definitions(config).resolve_job_def("crm_nightly").execute_in_process(raise_on_error=False)


def _failure_text(event) -> str:
    data = event.event_specific_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def _header_only(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")


def _half(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[: 1 + (len(lines) - 1) // 2]) + "\n", encoding="utf-8")


def test_judge_volume():
    assert not judge_volume(0, None, optional=False, max_drop_pct=50).passed
    assert judge_volume(0, None, optional=True, max_drop_pct=50).passed
    assert judge_volume(0, 10, optional=True, max_drop_pct=50).passed
    assert not judge_volume(1, 10, optional=True, max_drop_pct=50).passed
    assert judge_volume(51, 100, optional=False, max_drop_pct=50).passed
    half = judge_volume(50, 100, optional=False, max_drop_pct=50)
    assert not half.passed and "50 rows" in half.problem and "100" in half.problem
    assert judge_volume(1, 100, optional=False, max_drop_pct=100).passed
    assert judge_volume(1000, 10, optional=False, max_drop_pct=0).passed
    assert not judge_volume(99, 100, optional=False, max_drop_pct=0).passed


def test_a_refused_delivery_of_any_entity_stops_everything_past_staging():
    """With on_source_failure: stop, every core table, mart and the BI file wait for every raw delivery."""
    import dagster as dg

    config = config_from_dict(yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text()), PROJECT_ROOT / "crm.yaml")
    assert config.checks.on_source_failure == "stop"
    graph = build_definitions(config).resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    past_staging = {k for k in keys if k.path[0] not in (RAW, STAGING)}
    for raw in (k for k in keys if k.path[0] == RAW):
        downstream = dg.AssetSelection.assets(raw).downstream().resolve(graph)
        missing = sorted(k.to_user_string() for k in past_staging - downstream)
        assert not missing, (raw.to_user_string(), missing)


@pytest.mark.parametrize("rate", [-0.92, 0, float("nan")])
def test_fx_rates_must_be_positive(rate):
    data = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())
    data["fx_rates"] = {"EUR": 1.0, "USD": rate}
    with pytest.raises(ConfigError, match=r"fx_rates: rates must be positive numbers.*USD"):
        config_from_dict(data)


@pytest.mark.slow
def test_damaged_exports_leave_marts_as_they_were(demo_data, tmp_path, warehouse_url):
    """Header-only and half-size exports of full-mode sources stop the run, or skip the source."""
    root = _project(demo_data, tmp_path)
    demo = root / "data" / "demo"
    config = demo_config(root, warehouse_url)
    assert _run(config).success
    wh = Warehouse(config.warehouse_url)
    marts_before = {t: _snapshot(wh, t) for t in WATCHED_MARTS}
    # The consent ground truth, checked on the good run: nobody whose latest signal is a withdrawal.
    exported = exported_withdrawn_people(marts_before["marketing_audiences"], demo, END)
    assert exported.empty, exported
    good = {f: (demo / f).read_bytes() for f in ("crm_contacts.csv", "crm_consents.csv")}
    cases = [
        (_header_only, "crm_contacts.csv", "crm__customers", "stop"),
        (_half, "crm_consents.csv", "crm__subscriptions", "skip_source"),
    ]
    for refused, (damage, file, raw_table, mode) in enumerate(cases, start=1):
        config = config.model_copy(update={"checks": config.checks.model_copy(update={"on_source_failure": mode})})
        raw_before = wh.row_count(RAW, raw_table)
        damage(demo / file)
        result = _run(config)
        (demo / file).write_bytes(good[file])

        failures = [_failure_text(e) for e in result.get_step_failure_events()]
        if mode == "stop":
            assert not result.success, file
            assert any("source 'crm'" in m and file in m and str(raw_before) in m for m in failures), failures
            # The run stops at identity: it reads every source's customers, so nothing in core, no mart
            # and not the BI file is rebuilt from the other sources' new deliveries either.
            rebuilt = {e.asset_key.path[0] for e in result.get_asset_materialization_events()}
            assert rebuilt <= {RAW, STAGING}, sorted(rebuilt)
        else:
            assert result.success, failures
            evaluations = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
            checks = [e.event_specific_data for e in evaluations]
            assert any(c.check_name == "raw_contract" and not c.passed for c in checks)
        assert wh.row_count(RAW, raw_table) == raw_before, file
        for table, before in marts_before.items():
            pd.testing.assert_frame_equal(_snapshot(wh, table), before, obj=f"{table} after damaged {file}")
        log = wh.read_table(QUARANTINE, "rejected_deliveries").sort_values("refused_at")
        assert len(log) == refused
        last = log.iloc[-1]
        assert (last["source"], last["entity"], last["rows_replaced"]) == ("crm", raw_table[5:], raw_before)
        assert wh.row_count(QUARANTINE, f"{raw_table}__delivery") == last["rows_delivered"]
