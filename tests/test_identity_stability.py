"""Stable customer ids from run to run: same input, more records, merges, splits, incremental runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from crm_pipelines.identity.ids import mint_id
from crm_pipelines.identity.incremental import resolve_incremental
from crm_pipelines.identity.model import train_model
from crm_pipelines.identity.resolve import resolve
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.synthetic import synthetic_customers

SETTINGS = IdentitySettings()
PRIORITY = {"crm": 10, "shop": 20}
RUN_1, RUN_2, RUN_3 = (dt.datetime(2024, 1, d) for d in (1, 2, 3))


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    data = synthetic_customers(1200, seed=7)
    return train_model(data.customers, data.identifiers, SETTINGS)


def customers(*rows: dict[str, Any]) -> pd.DataFrame:
    defaults = {"updated_at": "2024-01-01", "record_kind": "record"}
    return pd.DataFrame([{**defaults, **row} for row in rows])


def ids_by_key(result) -> dict[tuple[str, str], str]:
    m = result.identity_map
    return dict(zip(zip(m["source"], m["source_record_id"], strict=True), m["customer_id"], strict=True))


def person(source: str, record_id: str, created: str, **fields: Any) -> dict[str, Any]:
    return {"source": source, "source_record_id": record_id, "created_at": created, **fields}


ANNA = {"first_name": "Anna", "last_name": "Berg", "date_of_birth": "1980-01-01"}
BEN = {"first_name": "Ben", "last_name": "Adler", "date_of_birth": "1990-02-02"}


def test_same_input_gives_the_same_ids_whatever_the_row_order(model):
    data = synthetic_customers(400, seed=3)
    first = resolve(data.customers, data.identifiers, SETTINGS, model, source_priority=PRIORITY)
    shuffled = data.customers.sample(frac=1.0, random_state=1).reset_index(drop=True)
    second = resolve(shuffled, data.identifiers.iloc[::-1], SETTINGS, model, source_priority=PRIORITY)
    assert ids_by_key(first) == ids_by_key(second)
    # New ids derive from the cluster's anchor record (its earliest), the one the map calls the seed.
    for customer_id, members in first.identity_map.groupby("customer_id"):
        (seed,) = members[members["match_method"].isin(["seed", "singleton"])].itertuples()
        assert customer_id == mint_id(seed.source, seed.source_record_id)


def test_added_records_keep_the_old_ids(model):
    run_1 = customers(
        person("crm", "1", "2020-01-01", **ANNA, email="anna@mail.de"),
        person("crm", "2", "2020-02-01", **BEN, email="ben@mail.de"),
    )
    first = resolve(run_1, None, SETTINGS, model, recorded_at=RUN_1)
    run_2 = pd.concat(
        [run_1, customers(person("shop", "9", "2019-01-01", **ANNA, email="anna@mail.de"))], ignore_index=True
    )
    # As read back from a warehouse that stores zone-aware timestamps.
    previous = first.identity_map.assign(
        id_first_seen_at=first.identity_map["id_first_seen_at"].dt.tz_localize("UTC")
    )
    second = resolve(run_2, None, SETTINGS, model, previous, first.customer_id_history, recorded_at=RUN_2)
    before, after = ids_by_key(first), ids_by_key(second)
    assert after[("crm", "1")] == after[("shop", "9")] == before[("crm", "1")]
    assert after[("crm", "2")] == before[("crm", "2")]
    assert second.customer_id_history.empty
    kept = second.identity_map.set_index("customer_id")["id_first_seen_at"]
    assert (kept == pd.Timestamp(RUN_1)).all()


def test_a_merge_keeps_the_id_first_seen_and_records_the_other(model):
    run_1 = customers(person("crm", "1", "2021-01-01", **ANNA, email="anna@mail.de"))
    first = resolve(run_1, None, SETTINGS, model, recorded_at=RUN_1)
    # Run 2 brings a record created earlier, with another email: at first a customer of its own.
    run_2 = pd.concat(
        [run_1, customers(person("shop", "5", "2015-01-01", first_name="Anna", email="a.berg@mail.de"))],
        ignore_index=True,
    )
    second = resolve(
        run_2, None, SETTINGS, model, first.identity_map, first.customer_id_history, recorded_at=RUN_2
    )
    old, young = ids_by_key(second)[("crm", "1")], ids_by_key(second)[("shop", "5")]
    assert old != young
    # Run 3: a record carrying both emails' owner joins them.
    run_3 = pd.concat(
        [
            run_2,
            customers(
                person("shop", "6", "2022-01-01", **ANNA, email="a.berg@mail.de", phone="+4917012345"),
                person("crm", "7", "2022-01-01", **ANNA, email="anna@mail.de", phone="+4917012345"),
            ),
        ],
        ignore_index=True,
    )
    third = resolve(
        run_3, None, SETTINGS, model, second.identity_map, second.customer_id_history, recorded_at=RUN_3
    )
    assert set(third.identity_map["customer_id"]) == {old}
    history = third.customer_id_history
    assert history[["retired_customer_id", "merged_into_customer_id", "change"]].values.tolist() == [
        [young, old, "merge"]
    ]
    assert (history["recorded_at"] == pd.Timestamp(RUN_3)).all()


def test_a_split_keeps_the_id_with_its_anchor_record_and_is_recorded(model):
    run_1 = customers(
        person("crm", "1", "2020-01-01", **ANNA, email="anna@mail.de"),
        person("shop", "2", "2021-01-01", first_name="Anna", email="anna@mail.de"),
        person("shop", "3", "2021-06-01", first_name="Anna", email="anna@mail.de"),
    )
    first = resolve(run_1, None, SETTINGS, model, recorded_at=RUN_1)
    (customer,) = set(first.identity_map["customer_id"])
    assert customer == mint_id("crm", "1")
    # The shop learns these accounts belong to Berta: the shared email no longer holds them together.
    run_2 = run_1.copy()
    run_2.loc[run_2["source"] == "shop", ["first_name", "date_of_birth"]] = ["Berta", "1955-05-05"]
    results = [
        resolve(
            run_2, None, SETTINGS, model, first.identity_map, first.customer_id_history, recorded_at=RUN_2
        )
        for _ in range(2)
    ]
    pd.testing.assert_frame_equal(results[0].identity_map, results[1].identity_map)
    second = results[0]
    ids = ids_by_key(second)
    assert ids[("crm", "1")] == customer
    assert ids[("shop", "2")] == ids[("shop", "3")] == mint_id("shop", "2")
    history = second.customer_id_history
    assert history[["retired_customer_id", "merged_into_customer_id", "change"]].values.tolist() == [
        [customer, mint_id("shop", "2"), "split"]
    ]


def test_a_retired_id_is_never_minted_again(model):
    run_1 = customers(person("crm", "1", "2020-01-01", **ANNA, email="anna@mail.de"))
    first = resolve(run_1, None, SETTINGS, model, recorded_at=RUN_1)
    history = pd.DataFrame(
        {
            "retired_customer_id": [mint_id("shop", "2")],
            "merged_into_customer_id": ["Cx"],
            "change": ["merge"],
            "run_id": ["old"],
            "recorded_at": [pd.Timestamp(RUN_1)],
        }
    )
    run_2 = pd.concat([run_1, customers(person("shop", "2", "2020-01-01", **BEN))], ignore_index=True)
    second = resolve(run_2, None, SETTINGS, model, first.identity_map, history, recorded_at=RUN_2)
    assert ids_by_key(second)[("shop", "2")] == mint_id("shop", "2", salt=1)


def _night(first, new, base, data, model, state):
    """The night after ``first`` that adds the ``new`` records, given the matching state ``state`` (or none)."""
    return resolve_incremental(
        new,
        base,
        first.identity_map,
        data.identifiers,
        SETTINGS,
        model,
        first.customer_id_history,
        existing_match_records=state,
        source_priority=PRIORITY,
        recorded_at=RUN_2,
    )


def test_incremental_run_matches_a_full_run(model):
    data = synthetic_customers(500, seed=21)
    is_new = data.customers.index % 10 == 3
    base, new = data.customers[~is_new], data.customers[is_new]
    first = resolve(base, data.identifiers, SETTINGS, model, source_priority=PRIORITY, recorded_at=RUN_1)
    incremental = _night(first, new, base, data, model, first.match_records)
    without_state = _night(first, new, base, data, model, None)
    full = resolve(
        data.customers,
        data.identifiers,
        SETTINGS,
        model,
        first.identity_map,
        first.customer_id_history,
        source_priority=PRIORITY,
        recorded_at=RUN_2,
    )
    assert ids_by_key(incremental) == ids_by_key(without_state)
    incremental_ids, full_ids = ids_by_key(incremental), ids_by_key(full)
    assert incremental_ids.keys() == full_ids.keys()
    agreeing = sum(incremental_ids[k] == full_ids[k] for k in full_ids) / len(full_ids)
    assert agreeing > 0.99
    # Customers no new record touched keep their ids and rows.
    untouched = first.identity_map[~first.identity_map["customer_id"].isin(incremental.affected_customer_ids)]
    assert all(
        incremental_ids[k] == c
        for k, c in zip(
            zip(untouched["source"], untouched["source_record_id"], strict=True),
            untouched["customer_id"],
            strict=True,
        )
    )
    assert set(incremental.unified_customers["customer_id"]) <= set(incremental.affected_customer_ids)
    assert len(incremental.match_records) == len(full.match_records)
    assert incremental.summary["records_reclustered"] < len(data.customers) / 2


def test_matching_state_as_arrow_gives_the_same_night(model):
    """A night hands the warehouse's matching state over as Arrow: the same night as from a frame."""
    import pyarrow as pa

    data = synthetic_customers(300, seed=5)
    is_new = data.customers.index % 10 == 4
    base, new = data.customers[~is_new], data.customers[is_new]
    first = resolve(base, data.identifiers, SETTINGS, model, source_priority=PRIORITY, recorded_at=RUN_1)
    assert first.match_records["identifier_keys"].notna().any()  # lists cross as '|'-joined text

    from_frame = _night(first, new, base, data, model, first.match_records)
    from_arrow = _night(first, new, base, data, model, pa.Table.from_pandas(first.match_records, preserve_index=False))
    pd.testing.assert_frame_equal(from_arrow.identity_map, from_frame.identity_map)
    pd.testing.assert_frame_equal(from_arrow.links, from_frame.links)
    pd.testing.assert_frame_equal(from_arrow.match_records, from_frame.match_records)
    with pytest.raises(ValueError, match="lacks column"):
        without_phone = first.match_records.drop(columns=["phone"])
        _night(first, new, base, data, model, pa.Table.from_pandas(without_phone, preserve_index=False))
