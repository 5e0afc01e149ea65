"""Why the identity map is wrong where it is: false-positive and false-negative pairs, by cause.

Used by ``benchmarks/identity.py --show-errors N`` and ``benchmarks/febrl_like.py --show-errors N``.

Every blocked pair is scored again with the same model (no threshold), so each missed true pair
gets its cause: never a candidate (no blocking rule reaches it), kept apart by the household guard
(its reason), a model link refused for household evidence only, scored below the match threshold,
or linked and then split by clustering (a conflict in the cluster, an ambiguous stub). A wrongly
joined pair is traced to the held links that bridge two people in its customer: the method and the
evidence of each such edge, and how many wrong pairs it makes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

SHOWN = ("first_name", "last_name", "date_of_birth", "gender", "address_line1", "postcode", "city", "email", "phone")


def _all_scored_pairs(customers, identifiers, settings, model) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every blocked pair with its probability and the guard's conflict; and the match records."""
    from crm_pipelines.identity.engine import duckdb_session, fetch_frame
    from crm_pipelines.identity.matching import Scorer
    from crm_pipelines.identity.prepare import build_match_records, clean_records, load_records

    everything = settings.model_copy(update={"match_threshold": 0.0})
    with duckdb_session(settings) as con:
        load_records(con, customers, None)
        clean_records(con, identifiers, settings)
        build_match_records(con, settings)
        Scorer(con, model, everything).score_all()
        pairs = fetch_frame(
            con,
            "SELECT l.source || '/' || l.source_record_id AS key_l, r.source || '/' || r.source_record_id AS key_r, "
            "c.match_weight, c.match_probability, c.method, c.conflict, c.evidence "
            "FROM candidates AS c JOIN records AS l ON l.unique_id = c.uid_l "
            "JOIN records AS r ON r.unique_id = c.uid_r",
        )
        records = fetch_frame(
            con,
            f"SELECT source || '/' || source_record_id AS key, {', '.join(SHOWN)} FROM match_records",
        )
    pairs = pairs.drop_duplicates(["key_l", "key_r"])
    swap = pairs["key_l"] > pairs["key_r"]
    pairs.loc[swap, ["key_l", "key_r"]] = pairs.loc[swap, ["key_r", "key_l"]].to_numpy()
    return pairs.set_index(["key_l", "key_r"]), records.set_index("key")


def _levels(evidence: Any) -> str:
    if not isinstance(evidence, str):
        return ""
    data = json.loads(evidence)
    parts = [
        f"{field}={value['level']}({value['match_weight']:+.1f})"
        for field, value in data.items()
        if isinstance(value, dict)
    ]
    if data.get("shared"):
        parts.append(f"shared={','.join(data['shared'])}")
    return " ".join(parts)


def _record(records: pd.DataFrame, key: str) -> str:
    if key not in records.index:
        return f"{key} (not matched)"
    row = records.loc[key]
    values = [str(row[c]) if pd.notna(row[c]) else "-" for c in SHOWN]
    return f"{key:<28} " + " | ".join(values)


def diagnose(
    result, customers, identifiers, settings, model, truth: pd.DataFrame, show: int, unplaceable=frozenset()
) -> None:
    """Print false positives and false negatives against ``truth``, grouped by cause. Missed pairs
    with a record of ``unplaceable`` ("source/source_record_id": references no resolver can place)
    are counted apart."""
    scored, records = _all_scored_pairs(customers, identifiers, settings, model)
    joined = truth.merge(result.identity_map, on=["source", "source_record_id"])
    joined["key"] = joined["source"] + "/" + joined["source_record_id"]
    person = dict(zip(joined["key"], joined["person_id"], strict=True))
    customer = dict(zip(joined["key"], joined["customer_id"], strict=True))
    rejected = result.rejected_links.assign(
        key_l=lambda f: f["source_l"] + "/" + f["source_record_id_l"],
        key_r=lambda f: f["source_r"] + "/" + f["source_record_id_r"],
    )
    refused = {(min(a, b), max(a, b)): reason for a, b, reason in rejected[["key_l", "key_r", "reason"]].to_numpy()}

    # False negatives: one person, two customers.
    missed: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for _, members in joined.groupby("person_id")["key"]:
        keys = sorted(members)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                if customer[a] == customer[b]:
                    continue
                if a in unplaceable or b in unplaceable:
                    missed["unplaceable_reference"].append((a, b, ""))
                    continue
                if (a, b) not in scored.index:
                    missed["not_blocked"].append((a, b, ""))
                    continue
                row = scored.loc[(a, b)]
                detail = f"p={row['match_probability']:.4f} {row['method']} {_levels(row['evidence'])}"
                if (a, b) in refused and refused[(a, b)] != row["conflict"]:
                    cause = f"cluster:{refused[(a, b)]}"
                elif isinstance(row["conflict"], str):
                    cause = f"guard:{row['conflict']}"
                elif row["method"] == "probabilistic" and row["match_probability"] < settings.match_threshold:
                    cause = "below_threshold"
                else:
                    cause = "linked_elsewhere_split"
                missed[cause].append((a, b, detail))

    # False positives: the held links that bridge two people, and the wrong pairs each customer holds.
    links = result.links.assign(
        key_l=lambda f: f["source_l"] + "/" + f["source_record_id_l"],
        key_r=lambda f: f["source_r"] + "/" + f["source_record_id_r"],
    )
    bridges = links[[person.get(a) != person.get(b) for a, b in zip(links["key_l"], links["key_r"], strict=True)]]
    wrong_pairs = Counter()
    for cid, members in joined.groupby("customer_id"):
        counts = Counter(members["person_id"])
        if len(counts) > 1:
            total = sum(counts.values())
            wrong_pairs[cid] = (total * (total - 1) - sum(n * (n - 1) for n in counts.values())) // 2
    print(f"\nfalse positives: {sum(wrong_pairs.values()):,} pairs in {len(wrong_pairs)} customers; bridging links:")
    by_method = Counter(bridges["match_method"])
    print(f"  by method: {dict(by_method)}")
    for row in bridges.head(show).itertuples(index=False):
        print(f"  [{row.match_method} p={row.match_probability:.4f} w={row.match_weight:.1f}] {_levels(row.evidence)}")
        print(f"     {_record(records, row.key_l)}  person {person.get(row.key_l)}")
        print(f"     {_record(records, row.key_r)}  person {person.get(row.key_r)}")

    total = sum(len(v) for v in missed.values())
    causes = ", ".join(f"{k} {len(v)}" for k, v in sorted(missed.items()))
    print(f"\nfalse negatives: {total:,} pairs; by cause: {causes}")
    for cause, pairs in sorted(missed.items(), key=lambda kv: -len(kv[1])):
        print(f"  {cause} ({len(pairs)}):")
        for a, b, detail in pairs[:show]:
            print(f"    {detail}")
            print(f"       {_record(records, a)}")
            print(f"       {_record(records, b)}")
