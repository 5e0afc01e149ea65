"""Predictive marts as assets: weekly refits append history and save the churn model, nightly marts
predict with the latest of them (or fit inline before the first refit), and the two jobs split them.

The warehouse holds core tables built from simulated BG/NBD customers who drop out, so the fitted
parameters and the churn model's accuracy can be checked against what the simulation put in.
"""

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import joblib
import numpy as np
import pandas as pd
import pytest

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.churn import service_features, train_churn_model
from crm_pipelines.analytics.clv.bgnbd import BgNbdFit
from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.clv.simulate import simulate_orders
from crm_pipelines.analytics.clv.summary import summary_from_orders
from crm_pipelines.analytics.clv.value import score_customers
from crm_pipelines.analytics.mart_columns import column_line
from crm_pipelines.assets.marts import CUSTOMER_360_EXTRAS, mart_key
from crm_pipelines.assets.predictive import (
    CHURN_METRICS,
    CHURN_MODEL_FILE,
    CHURN_RISK,
    CLV,
    CLV_DIAGNOSTICS,
    CLV_PARAMS,
    MODELS_DIR,
    RETENTION_COHORTS,
    RETENTION_SUMMARY,
    build_predictive_assets,
    predictive_columns,
)
from crm_pipelines.automation import NIGHTLY_JOB, WEEKLY_REFIT_JOB
from crm_pipelines.config import WAREHOUSE_URL_ENV, CrmConfig, config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.facts.build import build_all, build_purchases
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, MARTS
from crm_pipelines.warehouse import Warehouse

AS_OF = "2026-06-30"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "marts.md"
WEEKLY = (CLV_PARAMS, CLV_DIAGNOSTICS, CHURN_METRICS)
NIGHTLY = (CLV, RETENTION_COHORTS, RETENTION_SUMMARY, CHURN_RISK)
NON_BUYERS = ["Z0000001", "Z0000002"]
# Orders from a CSV source; customers from the same source (the jobs test builds every raw asset).
SOURCES = [
    {
        "name": "shop",
        "connector": {"type": "csv"},
        "entities": {
            "customers": {"path": "customers.csv", "columns": {"source_record_id": "id", "email": "email"}},
            "orders": {
                "path": "orders.csv",
                "columns": {
                    "order_id": "id",
                    "source_customer_id": "customer",
                    "ordered_at": "at",
                    "total_amount": "total",
                },
                "defaults": {"status": "completed"},
            },
        },
    }
]


def tiny_config(folder: Path, warehouse_url: str) -> CrmConfig:
    return config_from_dict(
        {"warehouse": {"url": warehouse_url}, "as_of": AS_OF, "sources": SOURCES}, folder / "crm.yaml"
    )


@pytest.fixture(autouse=True)
def _own_warehouse(monkeypatch) -> None:
    # The configs here name their warehouse; an override from the environment must not redirect them.
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)


@pytest.fixture(scope="module")
def simulated_orders() -> pd.DataFrame:
    # BG/NBD purchasing with dropouts, two years up to the as-of day: about one purchase a month while active.
    return simulate_orders(3000, "2024-07-01", "2026-07-01", r=1.5, alpha=6.0, seed=2)


@dataclass
class Project:
    config: CrmConfig
    warehouse: Warehouse
    orders: pd.DataFrame
    assets: dict[str, dg.AssetsDefinition]
    resources: dict[str, dg.ConfigurableResource]

    def run(self, *tables: str) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [self.assets[t] for t in tables], resources=self.resources, raise_on_error=False
        )
        failures = [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert result.success, failures
        return result

    def table(self, name: str) -> pd.DataFrame:
        return self.warehouse.read_table(MARTS, name)

    @property
    def model_path(self) -> Path:
        return self.config.resolve_path(MODELS_DIR) / CHURN_MODEL_FILE


@pytest.fixture
def project(tmp_path, duckdb_url, simulated_orders) -> Project:
    config = tiny_config(tmp_path, duckdb_url)
    wh = Warehouse(duckdb_url)
    orders = simulated_orders.assign(source="shop", order_id=[f"o{i}" for i in range(len(simulated_orders))])
    wh.write_table(orders, CORE, "orders")
    ids = [*sorted(simulated_orders["customer_id"].unique()), *NON_BUYERS]
    wh.write_table(
        core_frame("unified_customers", [{"customer_id": i} for i in ids]), CORE, "unified_customers"
    )
    assets = {a.key.path[-1]: a for a in build_predictive_assets(config, "duckdb")}
    run_window = RunWindowResource(as_of=AS_OF)
    # The facts the predictive marts read, as the nightly job builds them before the marts.
    build_all(wh, run_window.cutoff(), config.clv.purchase_statuses, config.segments.growth_window_days)
    resources = {"warehouse": WarehouseResource(url=duckdb_url), "run_window": run_window}
    return Project(config, wh, simulated_orders, assets, resources)


def metadata(result: dg.ExecuteInProcessResult, table: str) -> dict:
    # A nightly step that fitted models inline also records the model tables it stored.
    [materialization] = [
        m for m in result.asset_materializations_for_node(f"{MARTS}__{table}") if m.asset_key == mart_key(table)
    ]
    return materialization.metadata


def test_weekly_refit_appends_history_and_saves_the_churn_model(project: Project) -> None:
    first, second = project.run(*WEEKLY), project.run(*WEEKLY)
    runs = [first.run_id, second.run_id]

    params = project.table(CLV_PARAMS)
    assert sorted(params["run_id"].unique()) == sorted(runs)  # appended, not replaced
    for run_id in runs:
        mine = params[params["run_id"] == run_id]
        assert sorted(zip(mine["model"], mine["parameter"], strict=True)) == sorted(
            [("bgnbd", p) for p in ("r", "alpha", "a", "b")]
            + [("gamma_gamma", p) for p in ("p", "q", "gamma")]
        )
    assert (params["value"] > 0).all() and params["converged"].all()
    assert set(params["as_of"].astype(str)) == {AS_OF}
    assert set(zip(params["model"], params["time_unit"], strict=True)) == {
        ("bgnbd", "week"),
        ("gamma_gamma", "none"),
    }
    # The simulation's purchase process is recovered (r=1.5, alpha=6 weeks, a=0.8, b=4).
    fitted = params[(params["run_id"] == first.run_id) & (params["model"] == "bgnbd")]
    estimate = dict(zip(fitted["parameter"], fitted["value"], strict=True))
    for name, truth in {"r": 1.5, "alpha": 6.0, "a": 0.8, "b": 4.0}.items():
        assert estimate[name] == pytest.approx(truth, rel=0.25), name

    diagnostics = project.table(CLV_DIAGNOSTICS)
    total = diagnostics[
        (diagnostics["run_id"] == first.run_id) & (diagnostics["calibration_frequency"] == "all")
    ]
    assert len(total) == 1 and total["correlation"].iloc[0] > 0.5
    assert total["predicted_total"].iloc[0] == pytest.approx(total["actual_total"].iloc[0], rel=0.15)
    buckets = diagnostics[
        (diagnostics["run_id"] == first.run_id) & (diagnostics["calibration_frequency"] != "all")
    ]
    assert buckets["calibration_frequency"].tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert buckets["correlation"].isna().all()
    assert metadata(first, CLV_DIAGNOSTICS)["calibration_chart"].value.startswith(
        "![holdout purchases](data:image/png"
    )

    churn = project.table(CHURN_METRICS).set_index("run_id")
    assert sorted(churn.index) == sorted(runs)
    assert (churn["roc_auc"] >= 0.75).all()
    assert metadata(second, CHURN_METRICS)["roc_auc"].value == pytest.approx(
        churn.loc[second.run_id, "roc_auc"]
    )
    deciles = json.loads(churn.loc[first.run_id, "calibration"])
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert "recency_days" in json.loads(churn.loc[first.run_id, "feature_importance"])
    bundle = joblib.load(project.model_path)  # the latest run's model is the one kept
    assert bundle["run_id"] == second.run_id and bundle["as_of"] == AS_OF
    assert churn.loc[second.run_id, "model_path"] == str(project.model_path)


def test_weekly_job_rerun_of_the_same_run_adds_no_duplicates(project: Project) -> None:
    job = build_definitions(project.config).resolve_job_def(WEEKLY_REFIT_JOB)
    run_id = str(uuid.uuid4())
    for _ in range(2):  # a re-execution under the same run id, as a retried step would do
        assert job.execute_in_process(run_id=run_id).success
    params = project.table(CLV_PARAMS)
    assert len(params) == 7 and set(params["run_id"]) == {run_id}
    assert project.table(CHURN_METRICS)["run_id"].tolist() == [run_id]
    assert len(project.table(CLV_DIAGNOSTICS)) == 9  # buckets 0-6, 7+ and all


def _pure_scores(project: Project, params: pd.DataFrame) -> pd.DataFrame:
    """CLV scores computed directly from parameter rows, as the nightly mart should publish them."""
    values = {
        (m, p): v for m, p, v in zip(params["model"], params["parameter"], params["value"], strict=True)
    }
    bgnbd = BgNbdFit.from_params(**{p: values["bgnbd", p] for p in BgNbdFit.PARAMETER_NAMES})
    spend = GammaGammaFit.from_params(**{p: values["gamma_gamma", p] for p in GammaGammaFit.PARAMETER_NAMES})
    summary = summary_from_orders(project.orders, AS_OF)
    return score_customers(summary, bgnbd, spend, ClvSettings()).set_index("customer_id")


def test_nightly_marts_predict_with_the_latest_weekly_models(project: Project) -> None:
    weekly = project.run(*WEEKLY)
    nightly = project.run(*NIGHTLY)
    customers = project.orders["customer_id"].nunique() + len(NON_BUYERS)

    clv = project.table(CLV).set_index("customer_id")
    assert len(clv) == customers and clv.index.is_unique
    assert set(clv["model_run_id"]) == {weekly.run_id} and set(clv["model"]) == {"bgnbd"}
    assert clv["probability_alive"].dropna().between(0, 1).all() and (clv["clv_12m"] >= 0).all()
    non_buyers = clv.loc[NON_BUYERS]
    assert (non_buyers["repeat_purchases"] == 0).all() and (non_buyers["clv_12m"] == 0).all()
    assert non_buyers["probability_alive"].isna().all() and non_buyers["customer_age_weeks"].isna().all()
    params = project.table(CLV_PARAMS)
    expected = _pure_scores(project, params)
    buyers = clv.drop(index=NON_BUYERS).loc[expected.index]
    np.testing.assert_allclose(buyers["clv_12m"], expected["clv_12m"], rtol=1e-9)

    # Newer parameters in the table are the ones the next night predicts with.
    edited = params.assign(run_id="edited", fitted_at=params["fitted_at"] + pd.Timedelta(days=1))
    edited.loc[edited["parameter"] == "alpha", "value"] /= 2  # twice the purchase rate
    project.warehouse.write_table(edited, MARTS, CLV_PARAMS, mode="append")
    project.run(CLV)
    again = project.table(CLV).set_index("customer_id").loc[expected.index]
    assert set(again["model_run_id"]) == {"edited"}
    assert again["expected_purchases_365d"].sum() > buyers["expected_purchases_365d"].sum()
    np.testing.assert_allclose(again["clv_12m"], _pure_scores(project, edited)["clv_12m"], rtol=1e-9)

    risk = project.table(CHURN_RISK).set_index("customer_id")
    assert len(risk) == project.orders["customer_id"].nunique() and risk.index.is_unique
    assert risk["churn_probability"].between(0, 1).all() and set(risk["risk_decile"]) == set(range(1, 11))
    assert set(risk["model_run_id"]) == {weekly.run_id}
    # Scored with the saved model: the same probabilities the weekly training gave for this as-of day.
    trained = train_churn_model(project.orders, AS_OF).scores.set_index("customer_id")
    np.testing.assert_allclose(
        risk["churn_probability"], trained.loc[risk.index, "churn_probability"], rtol=1e-9
    )
    assert (risk["driver_1"].dropna() != "").all() and (risk["driver_1_effect"].dropna() > 0).all()

    cohorts, summary = project.table(RETENTION_COHORTS), project.table(RETENTION_SUMMARY)
    assert cohorts["retention_rate"].between(0, 1).all()
    assert (cohorts.loc[cohorts["months_since_first"] == 0, "retention_rate"] == 1).all()
    assert (
        cohorts["cohort_size"].groupby(cohorts["cohort_month"]).first().sum()
        == project.orders[project.orders["status"] == "completed"]["customer_id"].nunique()
    )
    assert len(summary) == 24 and summary["period_month"].is_unique
    assert summary["retention_rate"].dropna().between(0, 1).all()
    assert "data:image/png" in metadata(nightly, RETENTION_COHORTS)["retention_heatmap"].value


def test_first_nightly_run_fits_inline_without_weekly_models(project: Project) -> None:
    project.model_path.parent.mkdir(parents=True)
    project.model_path.write_bytes(b"not a model")  # unreadable: trained afresh, never fatal
    result = project.run(CLV, CHURN_RISK)
    clv, risk = project.table(CLV), project.table(CHURN_RISK)
    assert set(clv["model_run_id"]) == {result.run_id} and clv["probability_alive"].notna().sum() == 3000
    assert metadata(result, CLV)["parameters"].value.startswith("fitted inline")
    assert set(risk["model_run_id"]) == {result.run_id} and risk["churn_probability"].between(0, 1).all()
    # What it fitted is stored as the weekly job would store it, and recorded as the weekly assets'
    # materializations (with their checks), so no model table is left unmaterialized after a first run.
    assert set(project.table(CLV_PARAMS)["run_id"]) == {result.run_id}
    assert set(project.table(CLV_DIAGNOSTICS)["run_id"]) == {result.run_id}
    assert project.table(CHURN_METRICS)["run_id"].tolist() == [result.run_id]
    assert joblib.load(project.model_path)["run_id"] == result.run_id
    recorded = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert recorded == {CLV, CHURN_RISK, CLV_PARAMS, CLV_DIAGNOSTICS, CHURN_METRICS}
    checked = {(e.asset_key.path[-1], e.check_name, e.passed) for e in result.get_asset_check_evaluations()}
    assert {(CLV_PARAMS, "mart_contract", True), (CHURN_METRICS, "mart_contract", True)} <= checked

    # The next night predicts with the stored models instead of fitting again.
    second = project.run(CLV, CHURN_RISK)
    assert metadata(second, CLV)["parameters"].value == f"parameters fitted by run {result.run_id}"
    assert set(project.table(CHURN_RISK)["model_run_id"]) == {result.run_id}
    assert set(project.table(CLV_PARAMS)["run_id"]) == {result.run_id}


def test_a_saved_churn_model_of_another_warehouse_is_not_used(project: Project) -> None:
    # The model file lives beside crm.yaml, not in the warehouse: one trained while crm.yaml named
    # another warehouse has no metrics here, so this warehouse trains and stores its own.
    project.run(CHURN_METRICS)
    other = project.table(CHURN_METRICS)["run_id"].iloc[0]
    project.warehouse.drop_table(MARTS, CHURN_METRICS)
    result = project.run(CHURN_RISK)
    assert set(project.table(CHURN_RISK)["model_run_id"]) == {result.run_id} != {other}
    assert project.table(CHURN_METRICS)["run_id"].tolist() == [result.run_id]


def test_clv_refit_fails_clearly_when_spend_follows_frequency(tmp_path, duckdb_url) -> None:
    # Frequent buyers spend more per order: Gamma-Gamma's independence assumption is broken.
    rows = [
        {
            "customer_id": f"C{c:04d}",
            "ordered_at": pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=20 * k + c % 7),
            "status": "completed",
            "total_amount_reporting": 10.0 * (1 + c % 6),
            "is_refund": False,
        }
        for c in range(300)
        for k in range(1 + c % 6)
    ]
    wh = Warehouse(duckdb_url)
    wh.write_table(core_frame("orders", rows), CORE, "orders")
    config = tiny_config(tmp_path, duckdb_url)
    build_purchases(wh, RunWindowResource(as_of=AS_OF).cutoff(), config.clv.purchase_statuses)
    [asset] = [a for a in build_predictive_assets(config, "duckdb") if a.key == mart_key(CLV_PARAMS)]
    result = dg.materialize(
        [asset],
        resources={
            "warehouse": WarehouseResource(url=duckdb_url),
            "run_window": RunWindowResource(as_of=AS_OF),
        },
        raise_on_error=False,
    )
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.user_failure_data.description
    assert "Gamma-Gamma assumes spend per purchase is independent of purchase frequency" in message
    assert not Warehouse(duckdb_url).table_exists(MARTS, CLV_PARAMS)


def test_weekly_job_refits_and_nightly_job_predicts(tmp_path) -> None:
    defs = build_definitions(tiny_config(tmp_path, f"duckdb:///{tmp_path / 'wh.duckdb'}"))
    refit = {mart_key(t) for t in WEEKLY}
    weekly, nightly = defs.resolve_job_def(WEEKLY_REFIT_JOB), defs.resolve_job_def(NIGHTLY_JOB)
    assert set(weekly.asset_layer.executable_asset_keys) == refit
    nightly_keys = set(nightly.asset_layer.executable_asset_keys)
    assert not nightly_keys & refit
    assert {mart_key(t) for t in (*NIGHTLY, "customer_360")} <= nightly_keys
    assert not {k.asset_key for k in nightly.asset_layer.asset_graph.asset_check_keys} & refit
    [schedule] = [s for s in defs.schedules if s.name == f"{WEEKLY_REFIT_JOB}_schedule"]
    assert (
        schedule.cron_schedule.endswith("* * 0")
        and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    )


def test_customer_360_joins_only_the_promised_predictive_columns() -> None:
    extras = dict(CUSTOMER_360_EXTRAS)
    columns = predictive_columns()
    kept = {
        t: [c.name for c in columns[t] if c.name != "customer_id" and c.name not in extras[t]]
        for t in (CLV, CHURN_RISK)
    }
    assert kept == {
        CLV: ["probability_alive", "expected_purchases_365d", "clv_12m"],
        CHURN_RISK: ["churn_probability", "risk_decile"],
    }


def test_docs_list_every_predictive_column() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for table, columns in predictive_columns().items():
        assert f"marts.{table}" in docs
        for column in columns:
            assert column_line(column) in docs, f"docs/marts.md lacks: {column_line(column)}"


def test_service_features_see_only_the_past() -> None:
    tickets = core_frame(
        "support_tickets",
        [
            {
                "ticket_id": "t1",
                "customer_id": "a",
                "opened_at": "2026-01-10 09:00",
                "resolved_at": "2026-01-12 09:00",
                "satisfaction_score": 2.0,
            },
            {
                "ticket_id": "t2",
                "customer_id": "a",
                "opened_at": "2026-05-01 09:00",
                "resolved_at": "2026-07-05 09:00",
                "satisfaction_score": 5.0,
            },  # rated after the cutoff: not known yet
            {
                "ticket_id": "t3",
                "customer_id": "b",
                "opened_at": "2026-07-02 09:00",
            },  # opened after the cutoff
        ],
    )
    surveys = core_frame(
        "survey_responses",
        [
            {"response_id": "s1", "customer_id": "a", "nps_score": 3, "responded_at": "2026-02-01 09:00"},
            {"response_id": "s2", "customer_id": "a", "nps_score": 9, "responded_at": "2026-06-30 23:00"},
            {"response_id": "s3", "customer_id": "b", "nps_score": 0, "responded_at": "2026-07-01 00:30"},
        ],
    )
    features = service_features(tickets, surveys)(pd.Timestamp(AS_OF, tz="UTC")).set_index("customer_id")
    assert features.loc["a"].to_dict() == {
        "tickets_total": 2.0,
        "tickets_last_90d": 1.0,
        "satisfaction_mean": 2.0,
        "nps_latest": 9.0,
    }
    assert "b" not in features.index
