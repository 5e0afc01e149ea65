"""The marts' schema as BI tools see it: names, types, column order, and on PostgreSQL keys and comments."""

import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.mart_boundary import (
    CUSTOMER_360_EXTRAS,
    MART_GRAIN,
    MART_KEYS,
    MART_RENAMES,
    all_mart_columns,
    customer_360_columns,
    to_mart_frame,
)
from crm_pipelines.analytics.mart_columns import CUSTOMER_360_COLUMNS, MART_COLUMNS
from crm_pipelines.assets.publishing import table_docs
from crm_pipelines.warehouse import Warehouse, WarehouseError

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (ClvSettings(), ClvSettings(time_unit_days=1, horizon_days=[30], clv_months=24))
TEMPORAL = ("date", "timestamp")

# The column a BI tool should take as each mart's time axis: the first temporal one.
PRIMARY_TIME = {
    "customer_360": "created_at",
    "crm_kpis": "kpi_date",
    "marketing_audiences": "consent_at",
    "customer_lifetime_value": "as_of",
    "churn_risk": "as_of",
    "retention_cohorts": "cohort_month",
    "retention_summary": "period_month",
    "clv_model_params": "fitted_at",
    "clv_model_diagnostics": "as_of",
    "churn_model_metrics": "trained_at",
    "campaign_assignments": "enrolled_at",
    "campaign_performance": "first_enrolled_at",
    "customer_segment_history": "month",
    "customer_portfolio": "month",
    "segment_migrations": "month",
    "crm_goals": "period_start",
}


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "daily"])
def test_a_column_name_has_one_type_in_every_mart(settings):
    seen: dict[str, tuple[str, str]] = {}
    for table, columns in all_mart_columns(settings).items():
        for column in columns:
            first = seen.setdefault(column.name, (column.dtype, table))
            assert first[0] == column.dtype, (
                f"{column.name} is {column.dtype} in {table} but {first[0]} in {first[1]}"
            )


def test_mart_columns_are_lower_snake_case_and_unique_per_table():
    for table, columns in all_mart_columns().items():
        names = [c.name for c in columns]
        assert len(names) == len(set(names)), table
        for name in names:
            assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name), f"{table}.{name}"


def test_the_primary_timestamp_comes_first_among_temporal_columns():
    marts = all_mart_columns()
    for table, columns in marts.items():
        temporal = [c.name for c in columns if c.dtype in TEMPORAL]
        assert (temporal[0] if temporal else None) == PRIMARY_TIME.get(table), table
    own = [c.name for c in CUSTOMER_360_COLUMNS]
    assert own.index("created_at") < own.index("date_of_birth")


def test_every_mart_has_a_documented_key_made_of_its_columns():
    marts = all_mart_columns()
    assert set(MART_KEYS) == set(marts) == set(MART_GRAIN)
    for table, key in MART_KEYS.items():
        names = {c.name for c in marts[table]}
        assert key and set(key) <= names, table
    docs = (ROOT / "docs" / "marts.md").read_text()
    for table, grain in MART_GRAIN.items():
        assert f"| `marts.{table}` | {grain} |" in docs, f"docs/marts.md: one row per {grain} of {table}"


def test_every_rename_is_in_the_readme_changelog_and_no_old_name_survives():
    readme = (ROOT / "README.md").read_text()
    changelog = readme[readme.index("## Changelog") :]
    marts = all_mart_columns()
    for table, renames in MART_RENAMES.items():
        names = {c.name for c in marts[table]}
        for old, new in renames.items():
            assert f"`{table}.{old}` → `{new}`" in changelog, (table, old, new)
            assert new in names and old not in names, (table, old)


def test_customer_360_keeps_the_joined_tables_types():
    columns = {c.name: c for c in customer_360_columns()}
    joined = dict(CUSTOMER_360_EXTRAS)
    assert columns["risk_decile"].dtype == "integer"
    assert columns["cluster_id"].dtype == "integer"
    assert not set(columns) & {name for dropped in joined.values() for name in dropped} - {
        c.name for c in CUSTOMER_360_COLUMNS
    }


def test_to_mart_frame_renames_and_puts_declared_columns_first():
    frame = pd.DataFrame({"extra": [1], "revenue": [2.0], "date": [pd.Timestamp("2024-01-01")], "orders": [3]})
    mart = to_mart_frame("crm_kpis", frame, MART_COLUMNS["crm_kpis"])
    assert list(mart.columns) == ["kpi_date", "purchases", "net_revenue", "extra"]
    assert mart["net_revenue"].tolist() == [2.0]


def _catalog(wh: Warehouse, sql: str, **params) -> pd.DataFrame:
    with wh.connect() as conn:
        return pd.DataFrame(conn.execute(sa.text(sql), params).mappings().all())


@pytest.mark.postgres
def test_postgres_marts_get_key_index_and_comments_that_survive_the_swap(postgres_url):
    wh = Warehouse(postgres_url)
    columns = list(MART_COLUMNS["cross_sell_recommendations"])
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "recommendation_rank": [1, 2, 1],
            "recommendation_level": "category",
            "recommendation": ["x", "y", "x"],
            "recommendation_name": ["X", "Y", "X"],
            "based_on": "z",
            "lift": 1.5,
            "confidence": 0.5,
            "support": 0.1,
        }
    )
    docs = table_docs("cross_sell_recommendations", columns, MART_KEYS["cross_sell_recommendations"])
    types = {c.name: c.dtype for c in columns}
    for _ in range(2):  # the second publish replaces a table that already has its key and indexes
        wh.publish(frame, "marts", "cross_sell_recommendations", column_types=types, docs=docs)
    segments_docs = table_docs("customer_segments", MART_COLUMNS["customer_segments"], ("customer_id",))
    wh.publish(pd.DataFrame({"customer_id": ["a", "b"]}), "marts", "customer_segments", docs=segments_docs)
    wh.publish(pd.DataFrame({"customer_id": ["a", "b"]}), "marts", "customer_segments", docs=segments_docs)
    kpi_docs = table_docs("crm_kpis", MART_COLUMNS["crm_kpis"], ("kpi_date",))
    kpis = pd.DataFrame({"kpi_date": pd.to_datetime(["2024-01-01", "2024-01-02"]), "purchases": [1, 2]})
    wh.publish(kpis, "marts", "crm_kpis", column_types={"kpi_date": "date"}, docs=kpi_docs)

    keys = _catalog(
        wh,
        """
        SELECT tc.table_name, kcu.column_name, kcu.ordinal_position
        FROM information_schema.table_constraints tc
        JOIN information_schema.key_column_usage kcu
          ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
        WHERE tc.table_schema = 'marts' AND tc.constraint_type = 'PRIMARY KEY'
        ORDER BY tc.table_name, kcu.ordinal_position
        """,
    )
    by_table = keys.groupby("table_name")["column_name"].apply(list).to_dict()
    assert by_table == {
        "cross_sell_recommendations": ["customer_id", "recommendation_rank"],
        "customer_segments": ["customer_id"],
        "crm_kpis": ["kpi_date"],
    }
    # crm_kpis has no customer_id; the other two are led by it, so their keys serve customer lookups.
    indexes = _catalog(wh, "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'marts'")
    assert len(indexes) == 3 and not indexes["tablename"].str.endswith("__new").any()

    comments = _catalog(
        wh,
        """
        SELECT c.relname AS table_name, a.attname AS column_name,
               obj_description(c.oid, 'pg_class') AS table_comment, col_description(c.oid, a.attnum) AS comment
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'marts' AND c.relkind = 'r'
        """,
    )
    sell = comments[comments["table_name"] == "cross_sell_recommendations"].set_index("column_name")
    assert sell["table_comment"].iloc[0].startswith("One row per customer and recommendation.")
    for column in columns:
        assert sell.loc[column.name, "comment"] == column.description, column.name
    assert comments["comment"].notna().all()


@pytest.mark.postgres
def test_postgres_customer_id_index_where_the_key_does_not_lead_with_it(postgres_url):
    wh = Warehouse(postgres_url)
    docs = table_docs("marketing_audiences", MART_COLUMNS["marketing_audiences"], ("audience", "customer_id"))
    frame = pd.DataFrame({"customer_id": ["a", "a"], "audience": ["x", "y"], "email": "it's@x.org"})
    wh.publish(frame, "marts", "marketing_audiences", docs=docs)
    wh.publish(frame, "marts", "marketing_audiences", docs=docs)
    indexes = _catalog(wh, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'marts'")["indexdef"].tolist()
    assert len(indexes) == 2
    assert any("UNIQUE" in d and "(audience, customer_id)" in d for d in indexes), indexes
    assert any("UNIQUE" not in d and "(customer_id)" in d for d in indexes), indexes


@pytest.mark.postgres
def test_postgres_a_duplicate_key_fails_the_publish_and_keeps_the_old_table(postgres_url):
    wh = Warehouse(postgres_url)
    docs = table_docs("customer_segments", MART_COLUMNS["customer_segments"], ("customer_id",))
    wh.publish(pd.DataFrame({"customer_id": ["a"]}), "marts", "customer_segments", docs=docs)
    with pytest.raises(WarehouseError, match=r"(?s)marts\.customer_segments.*customer_id.*duplicated"):
        wh.publish(pd.DataFrame({"customer_id": ["b", "b"]}), "marts", "customer_segments", docs=docs)
    assert wh.read_table("marts", "customer_segments")["customer_id"].tolist() == ["a"]


def test_duckdb_publish_ignores_the_docs(duckdb_url):
    wh = Warehouse(duckdb_url)
    docs = table_docs("customer_segments", MART_COLUMNS["customer_segments"], ("customer_id",))
    wh.publish(pd.DataFrame({"customer_id": ["b", "b"]}), "marts", "customer_segments", docs=docs)
    assert wh.row_count("marts", "customer_segments") == 2
