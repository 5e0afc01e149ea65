"""The demo's consent ground truth: which people's latest consent signal, in any system, is a withdrawal.

Built from the demo files and ``ground_truth.csv`` alone (never from the pipeline's own resolution), so
a test can check that ``marts.marketing_audiences`` exports nobody who withdrew.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pandas as pd

WITHDRAWALS = {"withdrawn", "unsubscribed", "unsubscribe"}
OPT_INS = {"granted", "subscribed"}


def _email(values: pd.Series) -> pd.Series:
    return values.astype("str").str.strip().str.lower()


def _people_by_email(demo: Path, truth: pd.DataFrame) -> pd.DataFrame:
    """(email, person_id) for every address a person's records carry."""
    record_person = truth.set_index(["source", "source_record_id"])["person_id"]
    contacts = pd.read_csv(demo / "crm_contacts.csv", dtype="str")
    with sqlite3.connect(demo / "shop.sqlite") as conn:
        accounts = pd.read_sql("SELECT CAST(id AS TEXT) AS id, email FROM customers", conn)
    parts = [
        pd.DataFrame({"email": _email(contacts["email"]), "person_id": record_person.reindex(
            pd.MultiIndex.from_arrays([["crm"] * len(contacts), contacts["contact_id"]])).to_numpy()}),
        pd.DataFrame({"email": _email(accounts["email"]), "person_id": record_person.reindex(
            pd.MultiIndex.from_arrays([["shop"] * len(accounts), accounts["id"]])).to_numpy()}),
    ]
    keyed = truth[truth["source_record_id"].str.startswith("email:")]
    parts.append(pd.DataFrame({"email": keyed["source_record_id"].str[6:], "person_id": keyed["person_id"]}))
    return pd.concat(parts).dropna().drop_duplicates()


def withdrawn_people(demo: Path, as_of: dt.date) -> tuple[set[str], pd.DataFrame]:
    """People whose latest signal up to the end of ``as_of`` is a withdrawal, and the email -> person map."""
    truth = pd.read_csv(demo / "ground_truth.csv", dtype="str")
    by_email = _people_by_email(demo, truth)
    contact_person = truth[truth["source"] == "crm"].set_index("source_record_id")["person_id"]
    consents = pd.read_csv(demo / "crm_consents.csv", dtype="str")
    subscribers = pd.read_csv(demo / "email_subscribers.csv", dtype="str")
    events = pd.read_csv(demo / "email_events.csv", dtype="str")
    email_owner = (
        truth[truth["source_record_id"].str.startswith("email:")]
        .assign(email=lambda t: t["source_record_id"].str[6:])
        .drop_duplicates("email")  # support, email and surveys key the same address alike
        .set_index("email")["person_id"]
    )
    signals = pd.concat(
        [
            pd.DataFrame({"person_id": consents["contact_id"].map(contact_person), "status": consents["status"],
                          "at": consents["changed_at"]}),
            pd.DataFrame({"person_id": _email(subscribers["email"]).map(email_owner),
                          "status": subscribers["status"], "at": subscribers["status_changed_at"]}),
            pd.DataFrame({"person_id": _email(events["email"]).map(email_owner), "status": events["event"],
                          "at": events["occurred_at"]}),
        ]
    ).dropna(subset=["person_id"])
    signals["status"] = signals["status"].str.strip().str.lower()
    signals["at"] = pd.to_datetime(signals["at"], utc=True, format="mixed", errors="coerce")
    end = pd.Timestamp(as_of + dt.timedelta(days=1), tz="UTC")
    signals = signals[signals["status"].isin(WITHDRAWALS | OPT_INS) & signals["at"].lt(end)]
    latest_out = signals[signals["status"].isin(WITHDRAWALS)].groupby("person_id")["at"].max()
    latest_in = signals[signals["status"].isin(OPT_INS)].groupby("person_id")["at"].max()
    joined = pd.concat([latest_out.rename("out"), latest_in.rename("in")], axis=1)
    withdrawn = joined[joined["out"].notna() & (joined["in"].isna() | (joined["out"] >= joined["in"]))]
    return set(withdrawn.index), by_email


def exported_withdrawn_people(audiences: pd.DataFrame, demo: Path, as_of: dt.date) -> pd.DataFrame:
    """Rows of ``audiences`` whose address belongs only to people whose latest signal is a withdrawal.

    A family address both partners' records carry stays exportable when one partner opted in after
    the other withdrew: that later opt-in by the same address lifts the suppression.
    """
    withdrawn, by_email = withdrawn_people(demo, as_of)
    all_withdrawn = by_email.assign(withdrawn=by_email["person_id"].isin(withdrawn)).groupby("email")["withdrawn"].all()
    return audiences[_email(audiences["email"]).isin(set(all_withdrawn[all_withdrawn].index))]
