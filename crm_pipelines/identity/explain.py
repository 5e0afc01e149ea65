"""Explain a customer: which records were joined, by which links, on what evidence.

A data steward asking "why are these two people one customer?" (or "why not?") gets the records,
every link between them with each field's level of agreement and match weight, the links that were
refused and why, where each golden field came from, and the id's merge and split history.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from crm_pipelines.identity.settings import DETERMINISTIC_METHODS

if TYPE_CHECKING:
    from crm_pipelines.identity.resolve import IdentityResult


def _records_of(frame: pd.DataFrame, keys: set[tuple[str, str]], side: str) -> pd.Series:
    pairs = zip(frame[f"source_{side}"], frame[f"source_record_id_{side}"], strict=True)
    return pd.Series([key in keys for key in pairs], index=frame.index, dtype=bool)


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _link(row: pd.Series) -> dict[str, Any]:
    # A shared identifier makes the link certain, and the identity map says so (probability 1); the
    # model's own probability from the other fields is shown beside it, not instead of it.
    certain = row["match_method"] in DETERMINISTIC_METHODS
    out = {
        "left": f"{row['source_l']}/{row['source_record_id_l']}",
        "right": f"{row['source_r']}/{row['source_record_id_r']}",
        "match_method": row["match_method"],
        "match_weight": _plain(row["match_weight"]),
        "match_probability": 1.0 if certain else _plain(row["match_probability"]),
        "model_probability": _plain(row["match_probability"]),
        "evidence": json.loads(row["evidence"]) if isinstance(row["evidence"], str) else None,
    }
    if "reason" in row:
        out["reason"] = row["reason"]
    return out


def explain_customer(
    customer_id: str, result: IdentityResult, format: Literal["dict", "markdown"] = "dict"
) -> dict[str, Any] | str:
    """Why ``customer_id`` is made of the records it is made of, as a dict or as markdown."""
    records = result.identity_map[result.identity_map["customer_id"] == customer_id]
    if records.empty:
        raise KeyError(f"customer {customer_id!r} is not in this identity map")
    keys = set(zip(records["source"], records["source_record_id"], strict=True))
    links = result.links[_records_of(result.links, keys, "l") & _records_of(result.links, keys, "r")]
    rejected = result.rejected_links[
        _records_of(result.rejected_links, keys, "l") | _records_of(result.rejected_links, keys, "r")
    ]
    golden = result.unified_customers[result.unified_customers["customer_id"] == customer_id]
    lineage = result.golden_lineage[result.golden_lineage["customer_id"] == customer_id]
    history = result.customer_id_history
    history = history[
        (history["retired_customer_id"] == customer_id) | (history["merged_into_customer_id"] == customer_id)
    ]
    explanation = {
        "customer_id": customer_id,
        "records": [{k: _plain(v) for k, v in row.items()} for row in records.to_dict("records")],
        "links": [_link(row) for _, row in links.iterrows()],
        "rejected_links": [_link(row) for _, row in rejected.iterrows()],
        "golden_record": {k: _plain(v) for k, v in golden.iloc[0].items()} if len(golden) else None,
        "golden_sources": {
            row["field"]: f"{row['source']}/{row['source_record_id']}" for _, row in lineage.iterrows()
        },
        "history": [{k: _plain(v) for k, v in row.items()} for row in history.to_dict("records")],
    }
    return explanation if format == "dict" else to_markdown(explanation)


def _evidence_table(evidence: dict[str, Any] | None) -> list[str]:
    if not evidence:
        return []
    lines = ["", "| field | level | match weight |", "| --- | --- | ---: |"]
    for field, detail in evidence.items():
        if isinstance(detail, dict):
            lines.append(f"| {field} | {detail.get('level')} | {detail.get('match_weight')} |")
    lines.append(f"| prior | | {evidence.get('prior')} |")
    if evidence.get("shared"):
        lines.append(f"\nShared identifiers: {', '.join(evidence['shared'])}.")
    return lines


def to_markdown(explanation: dict[str, Any]) -> str:
    """Render an explanation from :func:`explain_customer` as markdown."""
    lines = [
        f"# Customer {explanation['customer_id']}",
        "",
        "## Records",
        "",
        "| source | record | joined by | probability | flag |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for r in explanation["records"]:
        probability = "" if r["match_probability"] is None else f"{r['match_probability']:.4f}"
        lines.append(
            f"| {r['source']} | {r['source_record_id']} | {r['match_method']} | {probability} | "
            f"{r.get('cluster_flag') or ''} |"
        )
    lines += ["", "## Links"]
    if not explanation["links"]:
        lines.append("\nNo links: a single record.")
    for link in explanation["links"]:
        lines += [
            "",
            f"### {link['left']} = {link['right']}",
            f"{link['match_method']}, match weight {link['match_weight']:.2f}, "
            f"probability {link['match_probability']:.4f}"
            + (
                f" (shared {link['match_method']}; the other fields alone: {link['model_probability']:.4f})"
                if link["match_method"] in DETERMINISTIC_METHODS
                else ""
            ),
        ]
        lines += _evidence_table(link["evidence"])
    if explanation["rejected_links"]:
        lines += ["", "## Refused links"]
        for link in explanation["rejected_links"]:
            lines += [
                "",
                f"### {link['left']} ≠ {link['right']}: {link['reason']}",
                f"{link['match_method']}, match weight {link['match_weight']:.2f}",
            ]
            lines += _evidence_table(link["evidence"])
    if explanation["golden_sources"]:
        lines += ["", "## Golden record", "", "| field | value | from |", "| --- | --- | --- |"]
        golden = explanation["golden_record"] or {}
        for field, origin in explanation["golden_sources"].items():
            lines.append(f"| {field} | {golden.get(field)} | {origin} |")
    if explanation["history"]:
        lines += ["", "## History", ""]
        for h in explanation["history"]:
            lines.append(
                f"- {h['change']}: {h['retired_customer_id']} → {h['merged_into_customer_id']} "
                f"(run {h['run_id']})"
            )
    return "\n".join(lines) + "\n"
