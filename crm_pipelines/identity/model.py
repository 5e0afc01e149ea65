"""The matching model: a Fellegi-Sunter model in Splink 5, declared field by field.

Evidence comes in two strengths.

Strong identifiers (email, E.164 phone, declared identifiers such as a loyalty card) link records
deterministically when they are equal, but email and phone only as evidence, never as proof: the
household guard (:mod:`crm_pipelines.identity.guard`) keeps apart records whose given names and dates
of birth both disagree, because a family email, a landline or an address is shared by several
people. A trusted declared identifier overrides the guard, and the conflict is flagged.

Everything else is weighed probabilistically. Each field has levels from strong agreement to
disagreement; the model learns how often each level occurs among true matches (m, by expectation
maximisation on the training blocking rules) and among random pairs (u, by a seeded random sample),
and a pair's match weight is the sum over fields of log2(m/u). Exact agreement on a common value
(Schmidt, Berlin) is worth less than on a rare one (term-frequency adjustment on names, postcode
and city).

The trained model is plain Splink JSON, wrapped with a format marker: it can be read, diffed and
reviewed, and the nightly run predicts with it without training again.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink.blocking_rule_library import CustomRule

from crm_pipelines.identity.block_limits import BlockKey, capped_rule_sql
from crm_pipelines.identity.engine import Stopwatch, duckdb_session, within_one_edit_sql
from crm_pipelines.identity.prepare import build_match_records, clean_records, load_records
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.splink_log import unobserved_levels_summarised
from crm_pipelines.identity.u_sampling import names_counted_by_distinct_values

MODEL_FORMAT = "crm_pipelines.identity.model/1"
IDENTIFIER_KEYS = "identifier_keys"

# Thresholds shared by the comparison levels and the household guard, so the guard vetoes exactly
# the pairs whose first name or date of birth falls in the model's "disagree" level.
FIRST_NAME_SIMILAR_JW = 0.80
DOB_SWAPPED_SQL = (
    'substr("date_of_birth_l", 1, 4) = substr("date_of_birth_r", 1, 4) '
    'AND substr("date_of_birth_l", 6, 2) = substr("date_of_birth_r", 9, 2) '
    'AND substr("date_of_birth_l", 9, 2) = substr("date_of_birth_r", 6, 2)'
)
M_PROBABILITY_FLOOR = 0.01
RETAINED_COLUMNS = ("email", "phone", "gender", IDENTIFIER_KEYS)
"""Columns predictions keep beside the compared ones: the strong identifiers and the guard's gender."""
LOCATION_NULL_SQL = '("postcode_l" IS NULL AND "city_l" IS NULL) OR ("postcode_r" IS NULL AND "city_r" IS NULL)'
SAME_ADDRESS_SQL = (
    '"address_line1_l" = "address_line1_r" AND coalesce("postcode_l" = "postcode_r", "city_l" = "city_r", false)'
)
SIMILAR_ADDRESS_SQL = (
    'jaro_winkler_similarity("address_line1_l", "address_line1_r") >= 0.9 AND "postcode_l" = "postcode_r"'
)
# A postcode one keystroke off (50667/50668, 50667/56067): a typo, or the neighbouring district.
POSTCODE_ONE_OFF_SQL = 'length("postcode_l") = length("postcode_r") AND ' + within_one_edit_sql(
    '"postcode_l"', '"postcode_r"'
)
SAME_STREET_POSTCODE_ONE_OFF_SQL = f'"address_line1_l" = "address_line1_r" AND {POSTCODE_ONE_OFF_SQL}'
# Names within one typo: the thresholds of the model's "one typo" levels and of the household guard.
NAME_TYPO_JW = 0.92


def within_one_typo_sql(a: str, b: str) -> str:
    """SQL true when names ``a`` and ``b`` (SQL expressions) are within one typo of each other."""
    return f"({within_one_edit_sql(a, b)} OR jaro_winkler_similarity({a}, {b}) >= {NAME_TYPO_JW})"


def swapped_with_typo_sql(column: str, other: str) -> str:
    """Given name and surname the wrong way round, with a typo in either (Schulze Katahrina for
    Katharina Schulze): both halves are within one typo."""
    halves = ((f"{column}_l", f"{other}_r"), (f"{column}_r", f"{other}_l"))
    # No coalesce(..., false): a level's condition is a CASE WHEN, where NULL is not a match anyway,
    # and DuckDB evaluates a coalesce's argument in full, where it stops a bare AND at the first
    # false half (seven times faster over the random pairs that train u).
    return " AND ".join(within_one_typo_sql(f'"{a}"', f'"{b}"') for a, b in halves)


def _level(level: cll.ComparisonLevelCreator, label: str, m: float | None = None) -> cll.ComparisonLevelCreator:
    """A level with a short label (it appears in link evidence) and an m prior used until trained."""
    options: dict[str, Any] = {"label_for_charts": label}
    if m is not None:
        options["m_probability"] = m
    return level.configure(**options)


def _one_edit_level(column: str) -> cll.ComparisonLevelCreator:
    """Damerau-Levenshtein <= 1, as Splink's ``DamerauLevenshteinLevel(column, 1)`` but with the cheap
    bounds first (:func:`~crm_pipelines.identity.engine.within_one_edit_sql`): the same levels, and
    u sampling compares three million random pairs in a fraction of the time."""
    return cll.CustomLevel(within_one_edit_sql(f'"{column}_l"', f'"{column}_r"'))


NICKNAME_SQL = 'list_has_any("first_name_roots_l", "first_name_roots_r")'
INITIAL_SQL = (
    '(length("first_name_l") = 1 OR length("first_name_r") = 1) AND left("first_name_l", 1) = left("first_name_r", 1)'
)


def _name(column: str, other: str, given: bool = False) -> cl.CustomComparison:
    # Names: exact agreement weighted by how rare the name is; then one typo (a swapped, dropped or
    # wrong letter: Katharina/Katarina, Jan/Jna), then names sharing most of their start
    # (Katharina/Katrin: often two people of one family, so the model learns a lower weight), then
    # loosely similar ones (Alex/Alexander). Below Jaro-Winkler 0.8 the names disagree (for first
    # names the household guard then asks the date of birth). A form filled in the wrong order puts
    # the given name where the surname belongs: that is agreement too, learned as its own level, and
    # so is such a swap with a typo besides (weaker, and below the field's one-typo levels).
    # Both halves: one record's given name where the other has its surname, and the other way round.
    # One half alone is what any household member shares with a swapped record (its surname).
    swapped = f'"{column}_l" = "{other}_r" AND "{column}_r" = "{other}_l"'
    return cl.CustomComparison(
        output_column_name=column,
        comparison_levels=[
            cll.NullLevel(column),
            _level(cll.ExactMatchLevel(column, term_frequency_adjustments=True), "exact", 0.86),
            _level(cll.CustomLevel(swapped), f"swapped_with_{other}", 0.01),
            _level(_one_edit_level(column), "damerau_levenshtein<=1", 0.07),
            _level(cll.JaroWinklerLevel(column, NAME_TYPO_JW), f"jaro_winkler>={NAME_TYPO_JW}", 0.03),
            # Given names only: a nickname and its full name (Bill/William, Kathi/Katharina: the
            # table the household guard reads), or an initial for the name (W./William).
            *(
                [
                    _level(cll.CustomLevel(NICKNAME_SQL), "nickname", 0.03),
                    _level(cll.CustomLevel(INITIAL_SQL), "initial", 0.01),
                ]
                if given
                else []
            ),
            _level(cll.CustomLevel(swapped_with_typo_sql(column, other)), f"swapped_with_{other}_and_typo", 0.005),
            _level(
                cll.JaroWinklerLevel(column, FIRST_NAME_SIMILAR_JW),
                f"jaro_winkler>={FIRST_NAME_SIMILAR_JW}",
                0.02,
            ),
            _level(cll.ElseLevel(), "disagree", 0.02),
        ],
    )


def comparisons() -> list[cl.CustomComparison]:
    """The fields the probabilistic model weighs, each with its levels of agreement."""
    return [
        _name("first_name", "last_name", given=True),
        # A married name changes; a last-name disagreement lowers the weight but is no veto.
        _name("last_name", "first_name"),
        # Date of birth: exact, one mistyped digit, or day and month swapped (04/07 vs 07/04) still
        # agree; any other difference disagrees, which the guard treats as two people.
        cl.CustomComparison(
            output_column_name="date_of_birth",
            comparison_levels=[
                cll.NullLevel("date_of_birth"),
                _level(cll.ExactMatchLevel("date_of_birth"), "exact", 0.9),
                _level(_one_edit_level("date_of_birth"), "one_character_differs", 0.05),
                _level(cll.CustomLevel(DOB_SWAPPED_SQL), "day_month_swapped", 0.02),
                _level(cll.ElseLevel(), "disagree", 0.03),
            ],
        ),
        # Where they live: street and number (normalized: Hauptstraße 5 = Hauptstr. 5), postcode and
        # city, as one comparison. They are not independent (the same street and number almost
        # always means the same postcode and city), and weighing them separately would count one
        # fact three times, enough for two people of one household or one postcode to outweigh
        # their different names. Agreement on postcode or city alone is weighted by how common
        # the value is: a village's postcode says more than a city centre's. A postcode one
        # keystroke off is a level of its own, with the same street and without.
        cl.CustomComparison(
            output_column_name="location",
            comparison_levels=[
                cll.CustomLevel(LOCATION_NULL_SQL, "location is NULL").configure(is_null_level=True),
                _level(cll.CustomLevel(SAME_ADDRESS_SQL), "same_address", 0.75),
                _level(cll.CustomLevel(SAME_STREET_POSTCODE_ONE_OFF_SQL), "same_street_postcode_one_off", 0.02),
                _level(cll.CustomLevel(SIMILAR_ADDRESS_SQL), "similar_address_same_postcode", 0.05),
                _level(cll.ExactMatchLevel("postcode", term_frequency_adjustments=True), "same_postcode", 0.08),
                _level(cll.CustomLevel(POSTCODE_ONE_OFF_SQL), "postcode_one_off", 0.02),
                _level(cll.ExactMatchLevel("city", term_frequency_adjustments=True), "same_city", 0.04),
                _level(cll.ElseLevel(), "different_place", 0.08),
            ],
        ),
    ]


def strong_identifier_rules() -> list[Any]:
    """Pairs sharing a strong identifier are always candidates (and link unless the guard vetoes).

    So are records whose given name and surname are swapped: no column-equality rule finds them.
    """
    return [rule for rule, _ in _strong_identifier_rules_and_keys()]


def _shared_value_rules() -> list[Any]:
    return [block_on("email"), block_on("phone"), block_on(IDENTIFIER_KEYS, arrays_to_explode=[IDENTIFIER_KEYS])]


def shared_value_rules_for_run() -> list[dict[str, Any]]:
    """The rules pairing records that share an email, a phone or a declared identifier, as Splink JSON:
    every pair that shares one, whatever its match probability, is a candidate."""
    return SettingsCreator(
        link_type="dedupe_only", blocking_rules_to_generate_predictions=_shared_value_rules()
    ).create_settings_dict("duckdb")["blocking_rules_to_generate_predictions"]


def _strong_identifier_rules_and_keys() -> list[tuple[Any, BlockKey | None]]:
    # Shared emails, phones and identifiers are bounded by shared_value_limit, not by block size.
    return [
        *((rule, None) for rule in _shared_value_rules()),
        (
            CustomRule("l.first_name = r.last_name AND l.last_name = r.first_name"),
            BlockKey(("first_name", "last_name"), "names swapped", swapped=True),
        ),
    ]


def noise_tolerant_rules() -> list[Any]:
    """Rules that reach pairs a typo hides from every exact two-column rule.

    The start of the surname with the birth year (a typo late in the surname, a wrong day), the
    start of the given name with the birth day and month (a wrong year digit and a typo in the
    surname); the sound of both names in the same postal region (a typo in each, another street
    or town), also the wrong way round; the sound of the surname with the postcode (a typo in the
    surname, the given name left out). Each rule joins on at least two values, so blocks stay small
    at millions of records: no rule on a birth year or a name sound alone. The sound of both names
    without the region made 6.3 times the pairs on the synthetic benchmark's data (1.24M at 189,000
    records, about 35M at a million) for pairs that, with both names mistyped and no place in
    common, could not reach the match threshold anyway.
    """
    return [rule for rule, _ in _noise_tolerant_rules_and_keys()]


def _noise_tolerant_rules_and_keys() -> list[tuple[Any, BlockKey | None]]:
    def keyed(*columns: str) -> tuple[Any, BlockKey]:
        return block_on(*columns), BlockKey(columns)

    return [
        keyed("substr(last_name, 1, 3)", "substr(date_of_birth, 1, 4)"),
        keyed("substr(first_name, 1, 3)", "substr(date_of_birth, 6, 5)"),
        keyed("first_name_sound", "last_name_sound", "substr(postcode, 1, 1)"),
        (
            CustomRule("l.first_name_sound = r.last_name_sound AND l.last_name_sound = r.first_name_sound"),
            BlockKey(("first_name_sound", "last_name_sound"), "name sounds swapped", swapped=True),
        ),
        keyed("last_name_sound", "postcode"),
    ]


def _prediction_rules_and_keys(settings: IdentitySettings) -> list[tuple[Any, BlockKey | None]]:
    return (
        _strong_identifier_rules_and_keys()
        + [(block_on(*rule), BlockKey(rule)) for rule in settings.blocking_rules]
        + _noise_tolerant_rules_and_keys()
    )


def prediction_rules(settings: IdentitySettings) -> list[Any]:
    return [rule for rule, _ in _prediction_rules_and_keys(settings)]


def prediction_block_keys(settings: IdentitySettings) -> list[BlockKey | None]:
    """Each prediction rule's block key, aligned with :func:`blocking_rules_for_run`; ``None`` for the
    strong identifiers, which are never capped (:mod:`crm_pipelines.identity.block_limits`)."""
    return [key for _, key in _prediction_rules_and_keys(settings)]


def splink_settings(settings: IdentitySettings) -> SettingsCreator:
    """The untrained model: comparisons, blocking rules and the columns predictions keep."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons(),
        blocking_rules_to_generate_predictions=prediction_rules(settings),
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        additional_columns_to_retain=list(RETAINED_COLUMNS),
        linker_uid="identity",
    )


def blocking_rules_for_run(settings: IdentitySettings) -> list[dict[str, Any]]:
    """The settings' blocking rules as Splink JSON, so a saved model follows the current config.

    With ``max_block_size`` set, each keyed rule skips its blocks larger than that: the rules read
    the ``block_size_<n>`` columns :func:`~crm_pipelines.identity.block_limits.add_block_sizes` adds.
    """
    rules = SettingsCreator(
        link_type="dedupe_only", blocking_rules_to_generate_predictions=prediction_rules(settings)
    ).create_settings_dict("duckdb")["blocking_rules_to_generate_predictions"]
    if settings.max_block_size is not None:
        for index, (rule, key) in enumerate(zip(rules, prediction_block_keys(settings), strict=True)):
            if key is not None:
                rule["blocking_rule"] = capped_rule_sql(rule["blocking_rule"], index, key, settings.max_block_size)
    return rules


def _with_m_floor(splink_model: dict[str, Any]) -> dict[str, Any]:
    """Raise every trained m probability to at least ``M_PROBABILITY_FLOOR``, then renormalize.

    Fields move together (a person who moves changes street, postcode and city at once), which
    breaks the model's independence assumption: EM then learns that matches almost never disagree
    on an address, and one disagreement would weigh -20 or worse. The floor caps any level's penalty
    near log2(floor) so no single field can veto a match; only the guard vetoes.
    """
    for comparison in splink_model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        if not all("m_probability" in lv for lv in levels):
            continue
        floored = [max(lv["m_probability"], M_PROBABILITY_FLOOR) for lv in levels]
        total = sum(floored)
        for level, m in zip(levels, floored, strict=True):
            level["m_probability"] = m / total
    return splink_model


def _with_u_upper_bound(splink_model: dict[str, Any], sampled_pairs: float) -> dict[str, Any]:
    """Give a level no random pair reached the u probability ``3 / sampled_pairs``.

    Not one of the sampled pairs agreeing at a level (names swapped with a typo, a postcode one digit
    off on the same street) says its u is below 3/n with 95% confidence (the rule of three), so its
    weight is at least log2(m / (3/n)). Splink would otherwise weigh it with a default spread between
    -5 and +3 that knows nothing of the data.
    """
    bound = 3.0 / max(sampled_pairs, 1.0)
    for comparison in splink_model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level") and not isinstance(level.get("u_probability"), float):
                level["u_probability"] = bound
    return splink_model


def _untrained_levels(linker: Linker) -> set[tuple[str, str]]:
    """(comparison, level label) of the levels whose m no training pass could estimate (no training
    pair reached them): they keep their prior m. Read from Splink's level objects (splink 5.0)."""
    return {
        (comparison.output_column_name, level.label_for_charts)
        for comparison in linker._settings_obj.comparisons
        for level in comparison._comparison_levels_excluding_null
        if not any(isinstance(r["probability"], float) for r in level._trained_m_probabilities)
    }


def _no_stronger_than_the_level_above(splink_model: dict[str, Any], untrained: set[tuple[str, str]]) -> dict[str, Any]:
    """Cap the match weight of each untrained level at the lowest weight of the trained levels above it.

    Levels run from the strongest agreement down; a level whose m is only a prior must not outweigh
    what the data taught about stronger agreement (an initial for the given name weighing more than
    the same name, a postcode one digit off more than the same address). Learned levels keep what the
    data says, and only they set the cap: an untrained level above says nothing about one below.
    """
    for comparison in splink_model["comparisons"]:
        above = math.inf
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level["m_probability"], level["u_probability"]
            weight = math.log2(m / u)
            if (comparison["output_column_name"], level.get("label_for_charts")) not in untrained:
                above = min(above, weight)
            elif weight > above:
                level["u_probability"] = m / 2**above
    return splink_model


def _rounded(value: Any) -> Any:
    # Training sums floats in parallel; rounding to 12 significant digits makes the saved model
    # byte-identical from run to run on the same data.
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


_SAMPLE_BUCKETS = 10_000


def training_rule(con: duckdb.DuckDBPyConnection, columns: tuple[str, ...], max_pairs: float) -> Any:
    """The expectation-maximisation blocking rule on ``columns`` of ``match_records``.

    Its pairs grow with the square of the records: at a million people, records sharing first and
    last name make hundreds of millions of pairs, and EM would compare every one. When the blocks
    hold more than ``max_pairs`` pairs, the rule keeps a deterministic share of whole blocks, chosen
    by a hash of the block's key, so the pairs it trains on are a sample of blocks independent of
    how the records in them compare (a sample of records would split true pairs). Below the limit
    (every demo and test size up to 100,000 people) it is the plain rule, and training is as before.
    """
    quoted = [f'"{c}"' for c in columns]
    present = " AND ".join(f"{c} IS NOT NULL" for c in quoted)
    pairs = con.execute(
        f"SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*) AS n FROM match_records "
        f"WHERE {present} GROUP BY {', '.join(quoted)})"
    ).fetchall()[0][0]
    if pairs <= max_pairs:
        return block_on(*columns)
    kept = max(1, int(_SAMPLE_BUCKETS * max_pairs / pairs))
    logging.getLogger(__name__).info(
        "training on %s: %d pairs, sampling %d of %d blocks' buckets", columns, pairs, kept, _SAMPLE_BUCKETS
    )
    equal = " AND ".join(f"l.{c} = r.{c}" for c in quoted)
    key = ", ".join(f"l.{c}" for c in quoted)
    return CustomRule(f"{equal} AND hash({key}) % {_SAMPLE_BUCKETS} < {kept}")


def _delivered(customers: pd.DataFrame) -> pd.Series | None:
    """Which staged rows are delivered records, not reference stubs (None: all are)."""
    if "record_kind" not in customers.columns:
        return None
    return customers["record_kind"].fillna("record") != "referenced"


def delivered_count(customers: pd.DataFrame) -> int:
    """How many staged rows are delivered records (not reference stubs): what trains the model."""
    delivered = _delivered(customers)
    return len(customers) if delivered is None else int(delivered.sum())


def train_model(
    customers: pd.DataFrame,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    watch: Stopwatch | None = None,
) -> dict[str, Any]:
    """Estimate the model's parameters from staged customers; deterministic for the same input.

    u: from ``settings.u_sample_pairs`` random pairs drawn with ``settings.random_seed``.
    m: expectation maximisation on each of ``settings.training_blocking_rules`` (a field in the
    rule is not estimated by that pass; the passes together cover every field).
    The prior (probability two random records match) is estimated from pairs that agree on
    email or on full name and date of birth, assumed to find 60% of true matches.
    Only delivered records train the model: reference stubs carry nothing to learn from.
    """
    delivered = _delivered(customers)
    records = customers if delivered is None else customers[delivered]
    if len(records) < 2:
        raise ValueError("training the identity model needs at least two customer records")
    watch = watch or Stopwatch("training")
    with duckdb_session(settings) as con:
        load_records(con, records, None)
        clean_records(con, identifiers, settings)
        return _train_on_cleaned(con, len(records), settings, watch)


def train_model_on_prepared(
    prepared: duckdb.DuckDBPyConnection, delivered: int, settings: IdentitySettings, watch: Stopwatch | None = None
) -> dict[str, Any]:
    """:func:`train_model` on records a resolution has already loaded and cleaned (``records`` and
    ``cleaned`` in ``prepared``); ``delivered``: :func:`delivered_count` of the staged rows.

    The same model as :func:`train_model` on those staged rows, without loading and normalizing them
    a second time (a third of training at 100,000 people): a delivered record's cleaned values do not
    depend on the other records, so training's are resolution's less the reference stubs, numbered
    again in key order as training's own loading numbers them.
    """
    if delivered < 2:
        raise ValueError("training the identity model needs at least two customer records")
    watch = watch or Stopwatch("training")
    training_records = prepared.execute(
        """
        SELECT (row_number() OVER (ORDER BY c.source, c.source_record_id) - 1)::BIGINT AS unique_id,
               c.* EXCLUDE (unique_id)
        FROM cleaned AS c JOIN records AS r USING (unique_id)
        WHERE coalesce(r.record_kind, 'record') <> 'referenced'
        ORDER BY unique_id
        """
    ).to_arrow_table()
    with duckdb_session(settings) as con:
        con.register("training_records", training_records)
        con.execute("CREATE TABLE cleaned AS SELECT * FROM training_records")
        con.unregister("training_records")
        del training_records
        return _train_on_cleaned(con, delivered, settings, watch)


def _train_on_cleaned(
    con: duckdb.DuckDBPyConnection, delivered: int, settings: IdentitySettings, watch: Stopwatch
) -> dict[str, Any]:
    """Train on the ``cleaned`` delivered records in ``con`` (``delivered``: their staged rows)."""
    build_match_records(con, settings)
    watch.lap("train_prepare")
    db_api = DuckDBAPI(con)
    linker = Linker(db_api.register("match_records"), splink_settings(settings), log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("first_name", "last_name", "date_of_birth")], recall=0.6
    )
    watch.lap("train_prior")
    # One pass per comparison over all sampled pairs. Splink's default probes 1% of them, then
    # restarts in ten chunks, stopping early once every level counts 100 pairs; the rarest levels
    # (names swapped, a birth date a digit off) never reach that among random pairs, so every
    # chunk ran anyway and the probe was wasted: the same counts, about twice the time.
    # The name comparisons' swap levels read the other name field (swapped_with_typo_sql, _name).
    swap_partners = {"first_name": "last_name", "last_name": "first_name"}
    with names_counted_by_distinct_values(swap_partners, within_one_typo_sql):
        linker.training.estimate_u_using_random_sampling(
            max_pairs=settings.u_sample_pairs, seed=settings.random_seed, min_count_per_level=None, num_chunks=1
        )
    watch.lap("train_u_sampling")
    with unobserved_levels_summarised(logging.getLogger(__name__)):
        for rule in settings.training_blocking_rules:
            linker.training.estimate_parameters_using_expectation_maximisation(
                training_rule(con, rule, settings.training_max_pairs), estimate_without_term_frequencies=True
            )
            watch.lap(f"train_em_{'_'.join(rule)}")
    trained = linker.misc.save_model_to_json()
    untrained = _untrained_levels(linker)
    trained["linker_uid"] = "identity"
    sampled_pairs = min(settings.u_sample_pairs, delivered * (delivered - 1) / 2)
    # A swap with a typo besides is weaker agreement than the swap or the typo alone, however rarely
    # random pairs reach it: capped like an untrained level (else Sophie Schmidt and Schmid Sophie, two
    # common names, outweigh the same name and join strangers across the country).
    untrained |= {("first_name", "swapped_with_last_name_and_typo"), ("last_name", "swapped_with_first_name_and_typo")}
    trained = _with_u_upper_bound(_with_m_floor(trained), sampled_pairs)
    return {
        "format": MODEL_FORMAT,
        "trained_on_records": int(delivered),
        "splink_settings": _rounded(_no_stronger_than_the_level_above(trained, untrained)),
    }


def save_model(model: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the model as indented JSON, atomically (a reader never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    temporary.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, target)
    return target


def load_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model saved by :func:`save_model`; the error names the file and what is wrong."""
    file = Path(path)
    try:
        model = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{file}: no identity model here (train one with ensure_model)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: the identity model is not valid JSON: {e}") from None
    if not isinstance(model, dict) or model.get("format") != MODEL_FORMAT:
        raise ValueError(f"{file}: not an identity model of format {MODEL_FORMAT!r}; retrain it")
    if not isinstance(model.get("splink_settings"), dict) or not model["splink_settings"].get("comparisons"):
        raise ValueError(f"{file}: the identity model has no comparisons; retrain it")
    return model


def ensure_model(
    path: str | os.PathLike[str],
    customers: pd.DataFrame,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    watch: Stopwatch | None = None,
) -> dict[str, Any]:
    """Load the saved model, or train one on these records and save it when there is none yet
    (``watch`` times the training's stages)."""
    if Path(path).exists():
        return load_model(path)
    logging.getLogger(__name__).info("no identity model at %s: training one", path)
    model = train_model(customers, identifiers, settings, watch)
    save_model(model, path)
    return model


def level_labels(model: dict[str, Any]) -> dict[str, dict[int, str]]:
    """Per compared field, the label of each comparison vector value (gamma) of the model.

    Splink numbers the non-null levels from the top down to 0 and gives the null level -1.
    """
    labels: dict[str, dict[int, str]] = {}
    for comparison in model["splink_settings"]["comparisons"]:
        levels = comparison["comparison_levels"]
        counter = sum(1 for level in levels if not level.get("is_null_level")) - 1
        by_value: dict[int, str] = {}
        for level in levels:
            if level.get("is_null_level"):
                by_value[-1] = "null"
            else:
                by_value[counter] = level.get("label_for_charts", str(counter))
                counter -= 1
        labels[comparison["output_column_name"]] = by_value
    return labels
