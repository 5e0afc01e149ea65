"""Training at scale: an expectation-maximisation pass whose blocks hold too many pairs trains on a
deterministic sample of whole blocks; below the limit it is the plain rule, as always."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from crm_pipelines.identity.model import train_model, training_rule
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.synthetic import synthetic_customers


@pytest.fixture()
def con():
    connection = duckdb.connect(":memory:")
    # 200 blocks of 10 records sharing first and last name: 200 * 45 = 9,000 pairs.
    connection.execute(
        "CREATE TABLE match_records AS SELECT i AS unique_id, 'name' || (i // 10) AS first_name, "
        "'surname' || (i // 10) AS last_name FROM range(2000) AS t(i)"
    )
    yield connection
    connection.close()


def _pairs(con, rule) -> int:
    condition = rule.get_blocking_rule(sql_dialect_str="duckdb").blocking_rule_sql
    return con.execute(
        f"SELECT count(*) FROM match_records AS l JOIN match_records AS r ON {condition} AND l.unique_id < r.unique_id"
    ).fetchall()[0][0]


def test_below_the_limit_the_rule_is_the_plain_one(con):
    rule = training_rule(con, ("first_name", "last_name"), 9_000)
    assert "hash" not in rule.get_blocking_rule(sql_dialect_str="duckdb").blocking_rule_sql
    assert _pairs(con, rule) == 9_000


def test_above_the_limit_whole_blocks_are_sampled_deterministically(con):
    rule = training_rule(con, ("first_name", "last_name"), 3_000)
    pairs = _pairs(con, rule)
    assert 1_000 < pairs < 5_500  # about a third of the blocks
    assert pairs % 45 == 0  # whole blocks only: a sample of records would split them
    assert _pairs(con, training_rule(con, ("first_name", "last_name"), 3_000)) == pairs


def test_a_model_trained_on_sampled_blocks_is_close_to_the_full_one():
    data = synthetic_customers(1200, seed=7)
    full = train_model(data.customers, data.identifiers, IdentitySettings())
    sampled = train_model(data.customers, data.identifiers, IdentitySettings(training_max_pairs=1e4))

    def m_values(model):
        return {
            (c["output_column_name"], level.get("label_for_charts")): level["m_probability"]
            for c in model["splink_settings"]["comparisons"]
            for level in c["comparison_levels"]
            if not level.get("is_null_level")
        }

    full_m, sampled_m = m_values(full), m_values(sampled)
    assert full_m.keys() == sampled_m.keys()
    exact = [k for k in full_m if k[1] == "exact"]
    assert exact and all(abs(full_m[k] - sampled_m[k]) < 0.15 for k in exact)


def test_training_on_a_resolutions_prepared_records_gives_the_same_model():
    """The first run trains on the records resolution has loaded and cleaned: the same model as
    training on the staged rows, stubs (of delivered records and alone) and duplicate rows included,
    and the same resolution as with that model given."""
    from crm_pipelines.identity.model import train_model_on_prepared
    from crm_pipelines.identity.resolve import resolve

    data = synthetic_customers(600, seed=11)
    customers = data.customers
    assert (customers["record_kind"] == "referenced").any()
    # A second, older row of some keys: staging may deliver one; loading keeps the latest per key.
    older = customers[customers["record_kind"] == "record"].head(25).assign(first_name="Zed")
    older["updated_at"] = older["updated_at"] - pd.Timedelta(days=400)
    customers = pd.concat([customers, older], ignore_index=True)
    settings = IdentitySettings()
    trained = {}
    NOW = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)  # noqa: N806

    def trainer(con, delivered, watch):
        trained["model"] = train_model_on_prepared(con, delivered, settings, watch)
        return trained["model"]

    with_trainer = resolve(customers, data.identifiers, settings, trainer, recorded_at=NOW)
    expected = train_model(customers, data.identifiers, settings)
    assert trained["model"] == expected
    given = resolve(customers, data.identifiers, settings, expected, recorded_at=NOW)
    assert with_trainer.identity_map.equals(given.identity_map)
    assert with_trainer.unified_customers.equals(given.unified_customers)
    stages = set(with_trainer.summary["stage_seconds"])
    assert {"prepare", "train_prepare", "train_u_sampling", "model", "score"} <= stages


def test_too_few_delivered_records_to_train_on_prepared_ones():
    from crm_pipelines.identity.model import train_model_on_prepared

    with pytest.raises(ValueError, match="at least two"):
        train_model_on_prepared(duckdb.connect(":memory:"), 1, IdentitySettings())


def _sampled_u(customers: pd.DataFrame, identifiers: pd.DataFrame, settings: IdentitySettings, by_names: bool) -> dict:
    """Each level's u as random sampling estimates it, before training adjusts any."""
    import contextlib

    from splink import DuckDBAPI, Linker

    from crm_pipelines.identity.engine import duckdb_session
    from crm_pipelines.identity.model import splink_settings, within_one_typo_sql
    from crm_pipelines.identity.prepare import build_match_records, clean_records, load_records
    from crm_pipelines.identity.u_sampling import names_counted_by_distinct_values

    counting = (
        names_counted_by_distinct_values({"first_name": "last_name", "last_name": "first_name"}, within_one_typo_sql)
        if by_names
        else contextlib.nullcontext()
    )
    with duckdb_session(settings) as con:
        load_records(con, customers, None)
        clean_records(con, identifiers, settings)
        build_match_records(con, settings)
        linker = Linker(DuckDBAPI(con).register("match_records"), splink_settings(settings), log_level=None)
        with counting:
            linker.training.estimate_u_using_random_sampling(
                max_pairs=settings.u_sample_pairs, seed=settings.random_seed, min_count_per_level=None, num_chunks=1
            )
        return {
            (c["output_column_name"], level.get("label_for_charts")): level.get("u_probability")
            for c in linker.misc.save_model_to_json()["comparisons"]
            for level in c["comparison_levels"]
            if not level.get("is_null_level")
        }


def test_u_counted_by_distinct_names_is_splinks_own():
    """Training counts the name comparisons' u over distinct names (u_sampling): the same u values as
    Splink's own counting over every sampled pair, names swapped (exactly and with a typo) included,
    on a sample of all pairs and on a sample of records."""
    data = synthetic_customers(1200, seed=7)
    delivered = data.customers[data.customers["record_kind"] == "record"]
    originals = delivered.head(40)
    swapped = originals.assign(
        source_record_id="swapped-" + originals["source_record_id"].astype(str),
        first_name=originals["last_name"],
        last_name=originals["first_name"],
    )
    typo = swapped.head(20).assign(
        source_record_id=lambda f: "typo-" + f["source_record_id"].astype(str),
        first_name=lambda f: f["first_name"].str[:-1],
    )
    customers = pd.concat([delivered, swapped, typo], ignore_index=True)
    for settings in (IdentitySettings(), IdentitySettings(u_sample_pairs=2e5)):
        by_names = _sampled_u(customers, data.identifiers, settings, by_names=True)
        assert by_names == _sampled_u(customers, data.identifiers, settings, by_names=False)
    swaps = {key: u for key, u in by_names.items() if key[1].startswith("swapped")}
    assert len(swaps) == 4 and all(isinstance(u, float) for u in swaps.values())
