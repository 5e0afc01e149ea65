"""Scoring at scale gives the answers of the plain formulation.

The one-edit test runs cheap bounds before Damerau-Levenshtein, and a full run keeps only the scored
pairs that can become candidates: both must be invisible in the results.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_pipelines.identity.engine import duckdb_session, within_one_edit_sql
from crm_pipelines.identity.guard import shares_trusted_identifier_sql
from crm_pipelines.identity.matching import Scorer, _candidates_from_predictions, _create_candidates_table
from crm_pipelines.identity.model import NAME_TYPO_JW, load_model, swapped_with_typo_sql
from crm_pipelines.identity.prepare import build_match_records, clean_records, load_records
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.synthetic import synthetic_customers

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "crm_pipelines" / "identity" / "default_model.json"
# Short strings over a small alphabet meet at one edit often; umlauts test that bytes and lengths agree.
NAMES = st.one_of(st.none(), st.text(alphabet="abcdeäß -", max_size=6))


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def _within_one_typo_before(a: str, b: str) -> str:
    return f"coalesce(damerau_levenshtein({a}, {b}) <= 1 OR jaro_winkler_similarity({a}, {b}) >= {NAME_TYPO_JW}, false)"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(NAMES, NAMES, NAMES, NAMES), min_size=1, max_size=40))
def test_one_edit_and_swap_with_typo_levels_answer_as_the_plain_sql(con, pairs):
    columns = ["first_name_l", "first_name_r", "last_name_l", "last_name_r"]
    con.register("name_pairs", pd.DataFrame(pairs, columns=columns))
    swapped_before = " AND ".join(
        _within_one_typo_before(f'"{a}"', f'"{b}"')
        for a, b in (("first_name_l", "last_name_r"), ("first_name_r", "last_name_l"))
    )
    got = con.execute(
        f"""
        SELECT damerau_levenshtein(first_name_l, first_name_r) <= 1 AS plain,
               {within_one_edit_sql("first_name_l", "first_name_r")} AS fast,
               CASE WHEN {swapped_before} THEN 1 ELSE 0 END AS swapped_plain,
               CASE WHEN {swapped_with_typo_sql("first_name", "last_name")} THEN 1 ELSE 0 END AS swapped_fast
        FROM name_pairs
        """
    ).df()
    # NULL where an input is NULL, as Damerau-Levenshtein itself: the household guard tells the two apart.
    assert got["fast"].equals(got["plain"]), got
    assert got["swapped_fast"].equals(got["swapped_plain"]), got


def _all_pairs_candidates(con, scorer: Scorer, model, settings: IdentitySettings) -> pd.DataFrame:
    """The candidates of every scored pair kept whole, as a full run kept them before."""
    _create_candidates_table(con)
    predictions = scorer.linker.inference.predict(warning_mode="never")
    scored = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()[0][0]
    _candidates_from_predictions(con, predictions.physical_name, model, settings)
    predictions.drop_table_from_database_and_remove_from_cache()
    frame = con.execute("SELECT * FROM candidates ORDER BY uid_l, uid_r").df()
    return frame.assign(scored=scored)


def test_a_full_run_keeps_the_candidates_of_all_scored_pairs_and_no_more():
    data = synthetic_customers(1500, seed=11)
    model = load_model(DEFAULT_MODEL)
    settings = IdentitySettings()
    with duckdb_session(settings) as con:
        load_records(con, data.customers, None)
        clean_records(con, data.identifiers, settings)
        build_match_records(con, settings)
        scorer = Scorer(con, model, settings)
        scorer.score_all()
        kept = con.execute("SELECT * FROM candidates ORDER BY uid_l, uid_r").df()
        reference = _all_pairs_candidates(con, scorer, model, settings)
    assert scorer.pairs_scored == reference["scored"].iloc[0] > len(kept)
    pd.testing.assert_frame_equal(kept, reference.drop(columns="scored"))
    # Both halves matter: pairs linked by a shared value below the threshold, and model links.
    below = kept[kept["match_probability"] < settings.match_threshold]
    assert set(below["method"]) >= {"email", "phone"}, below["method"].value_counts()
    assert (kept["method"] == "probabilistic").sum() > 100


KEYS = st.one_of(st.none(), st.lists(st.sampled_from(["loyalty_card:7", "loyalty_card:8", "tax_id:DE1", "vat:X"])))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs=st.lists(st.tuples(KEYS, KEYS), min_size=1, max_size=20),
    untrusted=st.lists(st.sampled_from(["loyalty_card", "tax_id", "VAT"]), unique=True),
)
def test_a_trusted_identifier_is_shared_when_a_key_of_a_trusted_type_is_on_both_records(con, pairs, untrusted):
    con.register("key_pairs", pd.DataFrame({"l": [p[0] for p in pairs], "r": [p[1] for p in pairs]}))
    got = con.execute(
        f"SELECT {shares_trusted_identifier_sql(lambda field, side: side, untrusted)} FROM key_pairs"
    ).fetchall()
    excluded = {t.lower() for t in untrusted}
    expected = [
        any(k in (r or []) and k.split(":")[0] not in excluded for k in (left or [])) for left, r in pairs
    ]
    assert [row[0] for row in got] == expected
