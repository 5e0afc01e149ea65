"""How well blocking reaches the true pairs: the ceiling of recall, whatever the model scores.

A pair that no blocking rule makes a candidate is never scored, so it can never be linked. Given a
ground truth (source, source_record_id, person_id), :func:`blocking_report` counts the true pairs
some rule reaches, and the candidate pairs the rules make, in all and rule by rule: the price of
the recall; and the blocks each rule left out for holding more than ``identity.max_block_size``
records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from crm_pipelines.identity.engine import duckdb_session, register_frame
from crm_pipelines.identity.matching import prepare_block_limits
from crm_pipelines.identity.model import blocking_rules_for_run
from crm_pipelines.identity.prepare import build_match_records, clean_records, load_records
from crm_pipelines.identity.settings import IdentitySettings


@dataclass(frozen=True)
class BlockingReport:
    true_pairs: int
    reached_pairs: int
    candidate_pairs: int
    """Distinct record pairs some rule makes a candidate."""
    pairs_by_rule: tuple[tuple[str, int], ...]
    """Each rule's SQL and the pairs it makes (a pair two rules make counts for both)."""
    oversized_blocks: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per capped rule, the blocks over ``max_block_size`` it left out: blocks, records, pairs skipped."""

    @property
    def recall(self) -> float:
        return self.reached_pairs / self.true_pairs if self.true_pairs else 1.0


def blocking_report(
    customers: pd.DataFrame,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    truth: pd.DataFrame,
) -> BlockingReport:
    """Blocking recall of ``settings``' rules on staged ``customers`` against ``truth``."""
    missing = [c for c in ("source", "source_record_id", "person_id") if c not in truth.columns]
    if missing:
        raise ValueError(f"the ground truth lacks column(s) {missing}")
    with duckdb_session(settings) as con:
        load_records(con, customers, None)
        clean_records(con, identifiers, settings)
        build_match_records(con, settings)
        oversized = prepare_block_limits(con, settings)
        con.execute("CREATE TABLE blocked (a BIGINT, b BIGINT)")
        by_rule: list[tuple[str, int]] = []
        for rule in blocking_rules_for_run(settings):
            source = "match_records"
            if rule.get("arrays_to_explode"):
                (column,) = rule["arrays_to_explode"]
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE exploded AS "
                    f"SELECT unique_id, unnest({column}) AS {column} FROM match_records"
                )
                source = "exploded"
            before = int(con.execute("SELECT count(*) FROM blocked").fetchall()[0][0])
            con.execute(
                f"INSERT INTO blocked SELECT DISTINCT l.unique_id, r.unique_id FROM {source} AS l "
                f"JOIN {source} AS r ON ({rule['blocking_rule']}) AND l.unique_id < r.unique_id"
            )
            after = int(con.execute("SELECT count(*) FROM blocked").fetchall()[0][0])
            by_rule.append((rule["blocking_rule"], after - before))
        register_frame(con, "truth", truth[["source", "source_record_id", "person_id"]].astype("str"))
        candidates, true_pairs, reached = con.execute(
            """
            WITH distinct_blocked AS (SELECT DISTINCT a, b FROM blocked),
            people AS (
                SELECT r.unique_id, t.person_id FROM records AS r
                JOIN truth AS t USING (source, source_record_id)
            ),
            true_pairs AS (
                SELECT l.unique_id AS a, r.unique_id AS b FROM people AS l JOIN people AS r
                ON l.person_id = r.person_id AND l.unique_id < r.unique_id
            )
            SELECT (SELECT count(*) FROM distinct_blocked), count(*),
                   count(*) FILTER (WHERE k.a IS NOT NULL)
            FROM true_pairs AS t LEFT JOIN distinct_blocked AS k ON k.a = t.a AND k.b = t.b
            """
        ).fetchall()[0]
    return BlockingReport(int(true_pairs), int(reached), int(candidates), tuple(by_rule), oversized)
