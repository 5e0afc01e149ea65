"""Score candidate pairs with the trained model and decide which become links.

A candidate pair becomes a link when it shares a strong identifier (email, phone, declared
identifier) or its match probability reaches the threshold, and the household guard
(:mod:`crm_pipelines.identity.guard`) does not keep it apart. A model link whose records have no given
name or birth date to compare (``household_evidence_only``) is refused: surname and address are
what a household shares. Every link carries its evidence: per compared
field, the level of agreement and its match weight.
"""

from __future__ import annotations

import math
from copy import deepcopy
from typing import Any

import duckdb
import pandas as pd
from splink import DuckDBAPI, Linker

from crm_pipelines.identity.block_limits import (
    BlockKey,
    add_block_sizes,
    count_blocks,
    counts_table,
    drop_block_counts,
    oversized_blocks,
    records_in_blocks_sql,
    sized_records_sql,
)
from crm_pipelines.identity.engine import fetch_frame, register_frame
from crm_pipelines.identity.guard import (
    OVERRIDE_FLAG,
    alias_column,
    conflict_reason_sql,
    prediction_column,
    shares_trusted_identifier_sql,
)
from crm_pipelines.identity.model import (
    IDENTIFIER_KEYS,
    RETAINED_COLUMNS,
    blocking_rules_for_run,
    level_labels,
    prediction_block_keys,
    shared_value_rules_for_run,
)
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.splink_cache import columns_used_from_sql  # noqa: F401  (caches Splink's parsing)

HOUSEHOLD_EVIDENCE_ONLY = "household_evidence_only"
"""A model link whose records cannot compare a given name or a birth date: surname and address alone
are what a household shares, so they are no evidence of one person."""

_WEIGHT_MARGIN = 0.01
"""Bits below the threshold's match weight that :meth:`Scorer.score_all` still keeps, so a pair at the
threshold is never lost to rounding between a weight and its probability."""

METHOD_RANK = {"identifier": 0, "email": 1, "phone": 2, "probabilistic": 3}
"""Which method names a link when a pair qualifies several ways: the strongest identifier first."""


def _run_settings(
    model: dict[str, Any], settings: IdentitySettings, rules: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    splink_settings = deepcopy(model["splink_settings"])
    splink_settings["blocking_rules_to_generate_predictions"] = (
        blocking_rules_for_run(settings) if rules is None else rules
    )
    splink_settings["linker_uid"] = "identity"
    # What predictions keep is the code's concern, not the saved model's.
    splink_settings["additional_columns_to_retain"] = list(RETAINED_COLUMNS)
    splink_settings["retain_matching_columns"] = True
    splink_settings["retain_intermediate_calculation_columns"] = True
    return splink_settings


def _linker(
    con: duckdb.DuckDBPyConnection,
    table: str,
    model: dict[str, Any],
    settings: IdentitySettings,
    rules: list[dict[str, Any]] | None = None,
) -> tuple[DuckDBAPI, Linker]:
    db_api = DuckDBAPI(con)
    linker = Linker(
        db_api.register(table), _run_settings(model, settings, rules), log_level=None, validate_settings=False
    )
    return db_api, linker


def _comparisons_with_tf(model: dict[str, Any]) -> list[str]:
    """Comparisons with a term-frequency adjusted level (their predictions carry mw_tf_adj_*)."""
    return [
        c["output_column_name"]
        for c in model["splink_settings"]["comparisons"]
        if any(level.get("tf_adjustment_column") for level in c["comparison_levels"])
    ]


def _tf_columns(model: dict[str, Any]) -> list[str]:
    """Input columns whose term frequencies adjust some level (postcode and city within location)."""
    return sorted(
        {
            level["tf_adjustment_column"]
            for c in model["splink_settings"]["comparisons"]
            for level in c["comparison_levels"]
            if level.get("tf_adjustment_column")
        }
    )


def _evidence_sql(model: dict[str, Any]) -> str:
    """SQL building a pair's evidence JSON: each field's level and match weight, and the prior."""
    tf_columns = set(_comparisons_with_tf(model))
    lambda_ = model["splink_settings"]["probability_two_random_records_match"]
    prior = round(math.log2(lambda_ / (1 - lambda_)), 3)
    parts = [f"'prior', {prior}"]
    for field, labels in level_labels(model).items():
        cases = " ".join(f"WHEN {value} THEN '{label}'" for value, label in sorted(labels.items()))
        weight = f'"mw_{field}"' + (f' + coalesce("mw_tf_adj_{field}", 0)' if field in tf_columns else "")
        parts.append(
            f"'{field}', json_object('level', CASE \"gamma_{field}\" {cases} END, 'match_weight', round({weight}, 3))"
        )
    # No lambdas: DuckDB 2 rejects the arrow syntax DuckDB 1.5 knows, and this reads as plainly.
    shared = (
        "list_concat(list_concat("
        "CASE WHEN shares_identifier THEN ['identifier'] ELSE []::VARCHAR[] END, "
        "CASE WHEN shares_email THEN ['email'] ELSE []::VARCHAR[] END), "
        "CASE WHEN shares_phone THEN ['phone'] ELSE []::VARCHAR[] END)"
    )
    parts.append(f"'shared', {shared}")
    return f"json_object({', '.join(parts)})::VARCHAR"


def _candidates_from_predictions(
    con: duckdb.DuckDBPyConnection,
    predictions: str,
    model: dict[str, Any],
    settings: IdentitySettings,
    below_weight: float | None = None,
) -> None:
    """Add to ``candidates`` from a predictions table: pairs that may become links, with evidence.

    ``conflict`` is the household guard's reason to keep the pair apart; a conflicting pair never
    links, whatever it shares, unless it shares a trusted declared identifier: then it links and
    ``guard_override`` records the conflict it overrode. ``below_weight``: only pairs whose match
    weight is below it (the rest came from another predictions table).
    """
    trusted = shares_trusted_identifier_sql(prediction_column, settings.untrusted_identifiers)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE flagged AS
        SELECT *,
               coalesce(list_has_any({IDENTIFIER_KEYS}_l, {IDENTIFIER_KEYS}_r), false) AS shares_identifier,
               coalesce(email_l = email_r, false) AS shares_email,
               coalesce(phone_l = phone_r, false) AS shares_phone,
               {conflict_reason_sql(prediction_column)} AS guard_reason,
               {trusted} AS shares_trusted_identifier
        FROM {predictions}
        WHERE (coalesce(list_has_any({IDENTIFIER_KEYS}_l, {IDENTIFIER_KEYS}_r), false)
           OR coalesce(email_l = email_r, false) OR coalesce(phone_l = phone_r, false)
           OR match_probability >= $threshold)
          {"" if below_weight is None else f"AND match_weight < {float(below_weight)!r}"}
        """,
        {"threshold": settings.match_threshold},
    )
    con.execute(
        f"""
        INSERT INTO candidates
        SELECT least(unique_id_l, unique_id_r) AS uid_l, greatest(unique_id_l, unique_id_r) AS uid_r,
               match_weight, match_probability,
               CASE WHEN shares_identifier THEN 'identifier' WHEN shares_email THEN 'email'
                    WHEN shares_phone THEN 'phone' ELSE 'probabilistic' END AS method,
               CASE WHEN NOT shares_trusted_identifier THEN coalesce(guard_reason,
                    CASE WHEN NOT (shares_identifier OR shares_email OR shares_phone)
                          AND (first_name_l IS NULL OR first_name_r IS NULL)
                          AND (date_of_birth_l IS NULL OR date_of_birth_r IS NULL)
                    THEN '{HOUSEHOLD_EVIDENCE_ONLY}' END) END AS conflict,
               {_evidence_sql(model)} AS evidence,
               CASE WHEN shares_trusted_identifier AND guard_reason IS NOT NULL
                    THEN '{OVERRIDE_FLAG}' END AS guard_override
        FROM flagged
        """
    )
    con.execute("DROP TABLE flagged")


def prepare_block_limits(
    con: duckdb.DuckDBPyConnection, settings: IdentitySettings, *, add_sizes: bool = True
) -> dict[str, dict[str, int]]:
    """Count the blocks the capped rules read over all of ``match_records`` and, with ``add_sizes``,
    add their sizes to it; the blocks over the cap, by rule."""
    if settings.max_block_size is None:
        return {}
    block_keys = prediction_block_keys(settings)
    count_blocks(con, block_keys)
    oversized = oversized_blocks(con, block_keys, settings.max_block_size)
    if add_sizes:
        add_block_sizes(con, block_keys)
        drop_block_counts(con)  # each as long as a rule has blocks: at a million records, memory
    return oversized


def _counts_of_blocks_in(block: BlockKey, index: int, records: str) -> str:
    """The counts of rule ``index``'s blocks (:func:`count_blocks`) that hold a record of ``records``.

    A swapped rule's block is the records named (x, y) with those named (y, x), so both orders of a
    record's keys name its blocks."""
    if block.swapped:
        first, second = block.keys
        keys = f"SELECT {first} AS x, {second} AS y FROM {records} UNION ALL SELECT {second}, {first} FROM {records}"
        on = "c.x = r.x AND c.y = r.y"
    else:
        keys = f"SELECT {', '.join(f'{key} AS k{j}' for j, key in enumerate(block.keys))} FROM {records}"
        on = " AND ".join(f"c.k{j} = r.k{j}" for j in range(len(block.keys)))
    return f"SELECT c.* FROM {counts_table(index)} AS c SEMI JOIN ({keys}) AS r ON {on}"


def rule_labels(settings: IdentitySettings) -> list[str]:
    """A readable name per prediction rule, in the order Splink numbers them (``match_key``): the
    columns of a keyed rule, the SQL of the others (email, phone, identifiers)."""
    return [
        key.name if key is not None else rule["blocking_rule"]
        for rule, key in zip(blocking_rules_for_run(settings), prediction_block_keys(settings), strict=True)
    ]


def _create_candidates_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE OR REPLACE TABLE candidates (
            uid_l BIGINT, uid_r BIGINT, match_weight DOUBLE, match_probability DOUBLE,
            method VARCHAR, conflict VARCHAR, evidence VARCHAR, guard_override VARCHAR)
        """
    )


class Scorer:
    """Scores pairs of ``match_records`` with the model; every scored candidate lands in ``candidates``."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        model: dict[str, Any],
        settings: IdentitySettings,
        *,
        size_every_record: bool = True,
    ):
        """``size_every_record``: add the capped rules' block sizes to every record of ``match_records``
        (what :meth:`score_all` reads). Without, the blocks are only counted, and the records an
        incremental night scores (:meth:`score_new_against_existing`, :meth:`score_within`) are given
        the sizes of their blocks alone: a night scoring a thousand records rewrote every record with
        its sizes (0.8 s at 215,000 records)."""
        self.con, self.model, self.settings = con, model, settings
        self.oversized_blocks = prepare_block_limits(con, settings, add_sizes=size_every_record)
        self._sized_on_demand = not size_every_record and settings.max_block_size is not None
        self.db_api, self.linker = _linker(con, "match_records", model, settings)
        self.pairs_scored = 0
        self.pairs_by_rule: dict[str, int] = {}
        self._term_frequencies_ready = False
        _create_candidates_table(con)

    def _collect(self, predictions: Any, *, scored: bool = True, below_weight: float | None = None) -> None:
        """Add the candidates among ``predictions`` (counted as scored pairs unless ``scored`` is false)."""
        name = predictions.physical_name
        if scored:
            self.pairs_scored += int(self.con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])
        _candidates_from_predictions(self.con, name, self.model, self.settings, below_weight)
        predictions.drop_table_from_database_and_remove_from_cache()

    def _term_frequencies(self) -> None:
        # predict_between and predict_within take term frequencies from registered tables only:
        # compute them over all records, so scores match a full run's.
        if not self._term_frequencies_ready:
            for column in _tf_columns(self.model):
                self.linker.table_management.compute_tf_table(column)
            self._term_frequencies_ready = True

    def score_all(self) -> None:
        """Every blocked pair of all records.

        Only pairs that can become candidates are kept: those within a hair of the match threshold or
        above, and those sharing an email, a phone or a declared identifier, which a second prediction
        over just the rules that pair them scores (bounded by ``shared_value_limit``). The blocking
        rules make tens of millions of pairs at a million people, nearly all far below the threshold:
        kept whole, with every compared value and weight, they were gigabytes.
        """
        blocked = self.linker.inference.compute_blocked_pairs_for_predict()
        try:
            # Splink numbers the rule that first made each pair (match_key): the pairs per rule show
            # which block grows with the square of the records.
            labels = rule_labels(self.settings)
            counts = self.con.execute(
                f"SELECT match_key, count(*) FROM {blocked.physical_name} GROUP BY match_key ORDER BY match_key"
            ).fetchall()
            for key, count in counts:
                self.pairs_by_rule[labels[int(key)]] = int(count)
            self.pairs_scored += sum(int(count) for _, count in counts)
            likely = self.linker.inference.predict(threshold_match_weight=self._floor_weight, warning_mode="never")
        finally:
            blocked.drop_table_from_database_and_remove_from_cache()
        self._collect(likely, scored=False)
        _, sharing = _linker(self.con, "match_records", self.model, self.settings, shared_value_rules_for_run())
        self._collect(sharing.inference.predict(warning_mode="never"), scored=False, below_weight=self._floor_weight)

    def _sized(self, records: str, blocks_of: str, *, ordered: bool = True) -> str:
        """The ``records`` query's rows (in unique_id order if ``ordered``) with the capped rules' block
        sizes; only the blocks holding a record of ``blocks_of`` are looked up (the records' own, or
        more: a record in none of them gets no size, and pairs with none of them on that rule)."""
        block_keys = prediction_block_keys(self.settings)
        sized = sized_records_sql(
            block_keys, records, lambda index: _counts_of_blocks_in(block_keys[index], index, blocks_of)
        )
        return f"{sized} ORDER BY m.unique_id" if ordered else sized

    @property
    def _floor_weight(self) -> float:
        """The match weight of the threshold probability, less a margin for rounding: the line between
        the two predictions of :meth:`score_all` (a pair is kept by exactly one of them)."""
        threshold = self.settings.match_threshold
        return math.log2(threshold / (1 - threshold)) - _WEIGHT_MARGIN

    def score_new_against_existing(self, first_new_id: int) -> None:
        """Records numbered from ``first_new_id`` on against the others, never existing with existing."""
        self._term_frequencies()
        new_records = f"SELECT * FROM match_records WHERE unique_id >= {int(first_new_id)}"
        existing_records = f"SELECT * FROM match_records WHERE unique_id < {int(first_new_id)}"
        if self._sized_on_demand:
            # An existing record pairs with a new one on a rule only within a block they share: the
            # new records' blocks are all the sizes the existing records need.
            self.con.execute(f"CREATE OR REPLACE TABLE match_new AS {self._sized(new_records, f'({new_records})')}")
            # A table, not a view: Splink reads the existing records several times. Only the records
            # some rule can pair with a new one: in a new record's block of a capped rule (a rule
            # pairs only records whose block sizes are known and within the cap) or sharing an email,
            # a phone or an identifier with one (the uncapped rules). The same pairs, from a few
            # existing records instead of every one, each read once per rule. Those records are
            # found on their keys first, then sized; each way of reaching one is a join of its own
            # (an OR of IN subqueries made DuckDB compare every existing record with a nested loop).
            block_keys = prediction_block_keys(self.settings)
            in_new_blocks = records_in_blocks_sql(
                block_keys,
                existing_records,
                lambda index: _counts_of_blocks_in(block_keys[index], index, "match_new"),
                self.settings.max_block_size,
            )
            sharing = " UNION ".join(
                [
                    *(
                        f"SELECT e.unique_id FROM ({existing_records}) AS e SEMI JOIN match_new AS n "
                        f"ON e.{column} = n.{column}"
                        for column in ("email", "phone")
                    ),
                    f"SELECT e.unique_id FROM (SELECT unique_id, unnest({IDENTIFIER_KEYS}) AS k "
                    f"FROM ({existing_records})) AS e "
                    f"SEMI JOIN (SELECT unnest({IDENTIFIER_KEYS}) AS k FROM match_new) AS n ON e.k = n.k",
                ]
            )
            reachable = f"SELECT * FROM match_records WHERE unique_id IN ({in_new_blocks} UNION {sharing})"
            existing_sized = self._sized(reachable, "match_new", ordered=False)
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE match_existing AS {existing_sized}")
        else:
            self.con.execute(f"CREATE OR REPLACE VIEW match_new AS {new_records}")
            self.con.execute(f"CREATE OR REPLACE VIEW match_existing AS {existing_records}")
        new, existing = self.db_api.register("match_new"), self.db_api.register("match_existing")
        self._collect(self.linker.inference.predict_between(new, existing, warning_mode="never"))

    def score_within(self, scope_table: str) -> None:
        """Every blocked pair among the records whose unique_id is in ``scope_table``."""
        self._term_frequencies()
        scope = f"SELECT m.* FROM match_records AS m WHERE m.unique_id IN (SELECT unique_id FROM {scope_table})"
        if self._sized_on_demand:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE match_scope_unsized AS {scope}")
            scope = self._sized("SELECT * FROM match_scope_unsized", "match_scope_unsized")
        self.con.execute(f"CREATE OR REPLACE TABLE match_scope AS {scope}")
        self.con.execute("DROP TABLE IF EXISTS match_scope_unsized")
        self._collect(self.linker.inference.predict_within(self.db_api.register("match_scope"), warning_mode="never"))


def conflict_pairs(
    con: duckdb.DuckDBPyConnection, component_of: pd.DataFrame, settings: IdentitySettings
) -> pd.DataFrame:
    """Pairs of records in the same component (unique_id, component) that the guard keeps apart."""
    register_frame(con, "component_of", component_of)
    column = alias_column("l", "r")
    pairs = fetch_frame(
        con,
        f"""
        WITH members AS (
            SELECT c.component, m.unique_id, m.first_name, m.last_name, m.date_of_birth, m.gender,
                   m.identifier_keys, m.first_name_roots
            FROM component_of AS c JOIN match_records AS m USING (unique_id)
        )
        SELECT l.unique_id AS uid_l, r.unique_id AS uid_r
        FROM members AS l JOIN members AS r
          ON l.component = r.component AND l.unique_id < r.unique_id
        WHERE ({conflict_reason_sql(column)}) IS NOT NULL
          AND NOT {shares_trusted_identifier_sql(column, settings.untrusted_identifiers)}
        ORDER BY uid_l, uid_r
        """,
    )
    con.execute("DROP TABLE component_of")
    return pairs
