"""The personal-data policy on the published marts and the BI file, after a nightly run on demo data.

One nightly (everything kept) builds the warehouse; then the marts holding personal data and the BI file
are rebuilt under each mode, and what BI can read is compared with the full values in ``core``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from test_nightly import demo_config

from crm_pipelines.analytics.mart_boundary import pii_marts
from crm_pipelines.analytics.mart_columns import PII_COLUMNS
from crm_pipelines.analytics.pii import sha256
from crm_pipelines.analytics.pii_settings import PII_CLASSES, PiiSettings
from crm_pipelines.assets.bi import BI_FILE_KEY
from crm_pipelines.bi_file import mart_tables
from crm_pipelines.definitions import build_definitions
from crm_pipelines.demo.generator import generate
from crm_pipelines.schema import CORE, MARTS
from crm_pipelines.warehouse import Warehouse

END = dt.date(2026, 6, 30)
PROTECTED = tuple(pii_marts())


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pii_demo")
    generate(root / "data" / "demo", people=300, seed=11, end_date=END)
    return root


def _with_policy(config, **modes):
    return config.model_copy(
        update={"pii": PiiSettings(**modes), "bi": config.bi.model_copy(update={"export": "always"})}
    )


def _rebuild_protected_marts(config) -> None:
    keys = [*(dg.AssetKey([MARTS, t]) for t in PROTECTED), BI_FILE_KEY]
    result = (
        build_definitions(config)
        .resolve_job_def("crm_nightly")
        .execute_in_process(asset_selection=keys, raise_on_error=False)
    )
    failures = [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures


def _bi_tables(config) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(config.resolve_path(config.bi.marts_file)), read_only=True) as bi:
        names = [
            r[0]
            for r in bi.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'"
            ).fetchall()
        ]
        return {n: bi.execute(f'SELECT * FROM marts."{n}"').df() for n in names}


def _texts(frame: pd.DataFrame) -> set[str]:
    """The text and date values of ``frame`` (numbers left out: a count may equal a postcode)."""
    values: set[str] = set()
    for column in frame.columns:
        series = frame[column].dropna()
        if pd.api.types.is_datetime64_any_dtype(series):
            series = series.dt.strftime("%Y-%m-%d")
        elif pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        values.update(str(v).strip().lower() for v in series)
    return values


def _personal_values(customers: pd.DataFrame) -> set[str]:
    """Every personal value of the golden records, as text (birth dates as ISO dates)."""
    values: set[str] = set()
    for column in PII_COLUMNS:
        series = customers[column].dropna()
        if column == "date_of_birth":
            series = pd.to_datetime(series).dt.strftime("%Y-%m-%d")
        values.update(str(v).strip().lower() for v in series if len(str(v).strip()) > 2)
    return values


@pytest.fixture
def nightly(demo_dir, warehouse_url):
    config = _with_policy(demo_config(demo_dir, warehouse_url))
    result = build_definitions(config).resolve_job_def("crm_nightly").execute_in_process(raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return config


@pytest.mark.slow
def test_each_mode_on_the_marts_and_the_bi_file(nightly):
    config = nightly
    wh = Warehouse(config.warehouse_url)
    customers = wh.read_table(CORE, "unified_customers").set_index("customer_id")
    kept = wh.read_table(MARTS, "customer_360").set_index("customer_id")
    assert kept["email"].notna().any() and kept["phone"].notna().any()
    everything = {c: "hash" for c in PII_CLASSES}

    _rebuild_protected_marts(_with_policy(config, **everything))
    c360 = wh.read_table(MARTS, "customer_360").set_index("customer_id")
    audiences = wh.read_table(MARTS, "marketing_audiences")
    for column in PII_COLUMNS:
        assert column not in c360.columns and f"{column}_sha256" in c360.columns
        expected = customers[column].map(lambda v, c=column: None if pd.isna(v) else sha256(c, v))
        got = c360[f"{column}_sha256"].reindex(expected.index)
        assert (got.fillna("") == expected.fillna("")).all(), column
    assert "email" not in audiences.columns and audiences["email_sha256"].notna().all()
    assert audiences["email_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    bi = _bi_tables(config)
    assert "email" not in bi["customer_360"].columns and "email_sha256" in bi["marketing_audiences"].columns

    _rebuild_protected_marts(_with_policy(config, **{c: "mask" for c in PII_CLASSES}))
    c360 = wh.read_table(MARTS, "customer_360").set_index("customer_id")
    emails = c360["email"].dropna()
    assert len(emails) and emails.str.fullmatch(r"[^@]?\*\*\*@[^@]+").all()
    assert c360["date_of_birth"].dropna().str.fullmatch(r"\d{4}").all()
    assert c360["first_name"].dropna().str.fullmatch(r".\.").all()
    assert c360["phone"].dropna().str.fullmatch(r"\+\d{1,3} \*\*\* \*\* \d{2}").all()
    assert (c360["city"].fillna("") == kept["city"].reindex(c360.index).fillna("")).all()

    # Drop everything, except the audiences' email kept for the email tool: no personal value of any
    # golden record is left in any mart of the warehouse or of the BI file, but that one column.
    _rebuild_protected_marts(_with_policy(config, **{c: "drop" for c in PII_CLASSES}))
    personal = _personal_values(customers.reset_index())
    for table in mart_tables(wh):
        frame = wh.read_table(MARTS, table)
        assert not set(frame.columns) & set(PII_COLUMNS), table
        leaked = _texts(frame) & personal
        assert not leaked, (table, sorted(leaked)[:5])
    for table, frame in _bi_tables(config).items():
        assert not _texts(frame) & personal, table

    _rebuild_protected_marts(
        _with_policy(config, **{c: "drop" for c in PII_CLASSES}, marts={"marketing_audiences": {"email": "keep"}})
    )
    assert wh.read_table(MARTS, "marketing_audiences")["email"].notna().all()
    assert "email" not in wh.read_table(MARTS, "customer_360").columns
