"""The demo support desk served as a paginated HTTP API, ingested by the http connector, incrementally."""

from __future__ import annotations

import datetime as dt

import yaml

from crm_pipelines.config import PROJECT_ROOT, config_from_dict
from crm_pipelines.demo.generator import generate
from crm_pipelines.demo.support_api import serve_support_api
from crm_pipelines.ingest.loading import ingest_entity
from crm_pipelines.schema import RAW
from crm_pipelines.staging.stage import stage_entity
from crm_pipelines.warehouse import Warehouse

END = dt.date(2026, 6, 30)
CUTOFF = dt.datetime(2026, 6, 30, 23, 59, 59, tzinfo=dt.UTC)


def test_support_api_ingests_every_ticket_once(tmp_path, warehouse_url):
    demo = tmp_path / "data" / "demo"
    generate(demo, people=300, seed=3, end_date=END)
    tickets_file = demo / "support_tickets.jsonl"
    expected = sum(1 for line in tickets_file.read_text().splitlines() if line.strip())

    bundled = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())
    support = next(s for s in bundled["sources"] if s["name"] == "support")
    entity = support["entities"]["support_tickets"]
    with serve_support_api(tickets_file) as base_url:
        entity.pop("path")
        entity["endpoint"] = "/api/v1/tickets"
        entity["incremental"] = {"mode": "cursor", "column": "updated_at"}
        support["connector"] = {
            "type": "http",
            "url": base_url,
            "http": {"page_size": 50, "cursor_param": "updated_since"},
        }
        config = config_from_dict(
            {**bundled, "warehouse": {"url": warehouse_url}, "sources": [support, _shop_stub(bundled)]},
            tmp_path / "crm.yaml",
        )
        wh = Warehouse(config.warehouse_url)
        source = config.source("support")
        first = ingest_entity(wh, config, source, "support_tickets", until=CUTOFF, batch_id="run-1")
        again = ingest_entity(wh, config, source, "support_tickets", until=CUTOFF, batch_id="run-2")

    assert first.rows_loaded == expected > 50  # several pages
    assert again.rows_loaded == 0
    raw = wh.read_table(RAW, "support__support_tickets")
    assert len(raw) == expected and raw["ticket_id"].is_unique
    staged = stage_entity(config, "support_tickets", [(source, raw)], run_id="run-2", as_of_end=CUTOFF)
    assert staged.reconciliation["reconciles"].all()
    assert len(staged.staged) + len(staged.quarantined) == expected


def _shop_stub(bundled: dict) -> dict:
    """The shop source, which the tickets' customer_source names (it is not read here)."""
    return next(s for s in bundled["sources"] if s["name"] == "shop")
