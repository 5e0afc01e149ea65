"""Why is a customer made of the records it is made of? Read from the warehouse's core tables.

    python -m crm_pipelines.explain C1a2b3c4d5e6f      # markdown: records, links with per-field evidence,
                                                       # golden-record sources, id history

Uses the warehouse of the configuration ``CRM_CONFIG`` names (crm.yaml by default).
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

import pandas as pd
import sqlalchemy as sa

from crm_pipelines.config import ConfigError, load_config
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse, WarehouseError, col

IDENTITY_TABLES = (
    "customer_identity_map",
    "identity_links",
    "unified_customers",
    "golden_lineage",
    "customer_id_history",
)


def explain_from_warehouse(warehouse: Warehouse, customer_id: str) -> str:
    """Markdown explanation of one customer from the published core tables."""
    from crm_pipelines.identity.explain import explain_customer
    from crm_pipelines.identity.resolve import REJECTED_LINK_COLUMNS

    missing = [t for t in IDENTITY_TABLES if not warehouse.table_exists(CORE, t)]
    if missing:
        raise LookupError(f"the warehouse has no core.{missing[0]}: run crm_nightly first")
    identity_map = warehouse.read_table(CORE, "customer_identity_map")
    keys = identity_map.loc[identity_map["customer_id"] == customer_id, ["source", "source_record_id"]]
    links = warehouse.read_table(
        CORE, "identity_links", where=col("source_record_id_l").in_(keys["source_record_id"].tolist())
    )
    result = SimpleNamespace(
        identity_map=identity_map,
        links=links,
        rejected_links=pd.DataFrame(columns=list(REJECTED_LINK_COLUMNS)),
        unified_customers=warehouse.read_table(CORE, "unified_customers", where=col("customer_id") == customer_id),
        golden_lineage=warehouse.read_table(CORE, "golden_lineage", where=col("customer_id") == customer_id),
        customer_id_history=warehouse.read_table(
            CORE,
            "customer_id_history",
            where=sa.or_(col("retired_customer_id") == customer_id, col("merged_into_customer_id") == customer_id),
        ),
    )
    return explain_customer(customer_id, result, format="markdown")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Explain which records make up a customer, and why.")
    parser.add_argument("customer_id")
    args = parser.parse_args(argv)
    try:
        config = load_config()
        warehouse = Warehouse(config.warehouse_url, config.warehouse.duckdb_settings)
        print(explain_from_warehouse(warehouse, args.customer_id))
    except (ConfigError, WarehouseError, LookupError, KeyError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
