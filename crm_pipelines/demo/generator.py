"""Generate the whole demo data set: every source system's files, ground truth and a manifest."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from crm_pipelines.demo.arrays import DAY, concat, int_strings, json_lines, rng_for
from crm_pipelines.demo.campaigns import CAMPAIGN_TRUTH_FILE, append_events, run_campaign, true_uplift, write_truth
from crm_pipelines.demo.catalogue import build_catalogue
from crm_pipelines.demo.crm import crm_export
from crm_pipelines.demo.email_tool import email_tool
from crm_pipelines.demo.orders import shop_orders
from crm_pipelines.demo.population import draw_people
from crm_pipelines.demo.references import known_emails
from crm_pipelines.demo.settings import (
    CRM,
    CRM_CONSENTS_FILE,
    CRM_CONTACTS_FILE,
    EMAIL,
    EMAIL_EVENTS_FILE,
    EMAIL_SUBSCRIBERS_FILE,
    GROUND_TRUTH_FILE,
    MANIFEST_FILE,
    SHOP,
    SHOP_DATABASE_FILE,
    SUPPORT,
    SUPPORT_TICKETS_FILE,
    SURVEY_RESPONSES_FILE,
    SURVEYS,
    Coverage,
    Messiness,
)
from crm_pipelines.demo.shop import (
    account_for_purchases,
    first_purchase_times,
    purchase_history,
    shop_accounts,
)
from crm_pipelines.demo.shop_db import write_shop_database
from crm_pipelines.demo.support import support_desk
from crm_pipelines.demo.surveys import survey_responses

log = logging.getLogger(__name__)
FILES = (
    CRM_CONTACTS_FILE,
    CRM_CONSENTS_FILE,
    SHOP_DATABASE_FILE,
    SUPPORT_TICKETS_FILE,
    EMAIL_SUBSCRIBERS_FILE,
    EMAIL_EVENTS_FILE,
    SURVEY_RESPONSES_FILE,
    GROUND_TRUTH_FILE,
    CAMPAIGN_TRUTH_FILE,
)


@dataclass(frozen=True)
class DemoManifest:
    """What a generation run wrote: its parameters, the files and the rows in each."""

    out_dir: Path
    people: int
    seed: int
    end_date: dt.date
    years: int
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """Rows per file; the shop database per table, as ``shop.sqlite:orders``."""

    def to_json(self) -> str:
        data = asdict(self)
        del data["out_dir"]  # the manifest lives in it; a copied directory stays valid
        data["end_date"] = self.end_date.isoformat()
        data["files"] = {name: path.name for name, path in self.files.items()}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, out_dir: Path) -> DemoManifest | None:
        """The manifest of a complete earlier run in ``out_dir``, or None."""
        path = Path(out_dir) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                out_dir=Path(out_dir),
                people=int(data["people"]),
                seed=int(data["seed"]),
                end_date=dt.date.fromisoformat(data["end_date"]),
                years=int(data["years"]),
                files={name: Path(out_dir) / file for name, file in data["files"].items()},
                counts={k: int(v) for k, v in data["counts"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_complete(self) -> bool:
        return set(self.files) == set(FILES) and all(p.is_file() for p in self.files.values())


def generate(
    out_dir: Path,
    people: int = 5000,
    seed: int = 42,
    end_date: dt.date | None = None,
    years: int = 3,
    messiness: Messiness | None = None,
    coverage: Coverage | None = None,
) -> DemoManifest:
    """Write the demo sources for ``people`` people into ``out_dir``; same arguments, same files.

    Every timestamp lies on or before ``end_date`` (default: today), most within the last ``years``
    years, except the few deliberately broken future timestamps.
    """
    if people < 10:
        raise ValueError(f"people must be at least 10, got {people}")
    if years < 1:
        raise ValueError(f"years must be at least 1, got {years}")
    messiness = messiness or Messiness()
    coverage = coverage or Coverage()
    end_date = end_date or dt.date.today()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)  # an interrupted run must not look complete
    end_day = (end_date - dt.date(1970, 1, 1)).days
    end_ts = (end_day + 1) * DAY - 1
    started = time.perf_counter()

    population = draw_people(rng_for(seed, "population"), people, end_day, messiness.family_email)
    person_id = population.person_id
    rng = rng_for(seed, "shop")
    first_contact = first_purchase_times(rng, people, end_ts, years, coverage)
    in_shop = rng.random(people) < coverage.shop
    in_crm = ~in_shop | (rng.random(people) < coverage.crm_of_shop_customers)
    is_buyer = in_shop & (rng.random(people) >= coverage.shop_accounts_without_orders)
    accounts = shop_accounts(
        rng, population, np.flatnonzero(in_shop), first_contact, end_ts, messiness, coverage
    )

    # Each source is written as soon as it exists, so its big tables can be freed before the next.
    counts: dict[str, int] = {}
    truth: list[pa.Table] = [_truth(SHOP, int_strings(accounts.account_id), person_id, accounts.person)]
    crm = crm_export(rng_for(seed, "crm"), population, in_crm, first_contact, end_ts, messiness, coverage)
    counts[CRM_CONTACTS_FILE] = _write_csv(out_dir / CRM_CONTACTS_FILE, crm.contacts)
    counts[CRM_CONSENTS_FILE] = _write_csv(out_dir / CRM_CONSENTS_FILE, crm.consents)
    truth.append(_truth(CRM, crm.contacts["contact_id"].combine_chunks(), person_id, crm.contact_person))
    consent_granted = crm.consent_granted
    # Email-only references mostly come from an address the CRM or the shop already has for the person.
    known = known_emails(
        population, [(crm.contact_person, crm.contact_email), (accounts.person, accounts.email)]
    )
    del crm

    rng = rng_for(seed, "orders")
    purchases = purchase_history(rng, population, np.flatnonzero(is_buyer), first_contact, end_ts)
    emails = email_tool(
        rng_for(seed, "email"),
        population,
        first_contact,
        consent_granted,
        is_buyer,
        first_contact,
        purchases.alive_until,
        end_ts,
        years,
        known,
        messiness,
        coverage,
    )
    counts[EMAIL_SUBSCRIBERS_FILE] = _write_csv(out_dir / EMAIL_SUBSCRIBERS_FILE, emails.subscribers)
    counts[EMAIL_EVENTS_FILE] = _write_csv(out_dir / EMAIL_EVENTS_FILE, emails.events)
    campaign = run_campaign(seed, emails, is_buyer, first_contact, end_ts)
    counts[EMAIL_EVENTS_FILE] += append_events(out_dir / EMAIL_EVENTS_FILE, campaign)
    truth.append(_email_truth(EMAIL, emails.subscribers, "email", person_id, emails.subscriber_person))
    buyer = np.concatenate([purchases.person, emails.click_purchases[0], campaign.purchases[0]])
    bought_at = np.concatenate([purchases.time, emails.click_purchases[1], campaign.purchases[1]])
    del emails, purchases

    account = account_for_purchases(rng, accounts, buyer, bought_at)
    shop_tables, orders = shop_orders(
        rng, build_catalogue(), population, accounts, account, bought_at, end_ts, messiness
    )
    del buyer, bought_at, account
    counts[CAMPAIGN_TRUTH_FILE] = write_truth(out_dir / CAMPAIGN_TRUTH_FILE, true_uplift(campaign, orders))
    shop_tables["customers"] = accounts.customers
    for table, rows in write_shop_database(out_dir / SHOP_DATABASE_FILE, shop_tables).items():
        counts[f"{SHOP_DATABASE_FILE}:{table}"] = rows
    counts[SHOP_DATABASE_FILE] = sum(t.num_rows for t in shop_tables.values())
    del shop_tables

    support = support_desk(
        rng_for(seed, "support"), population, accounts, orders, end_ts, known, messiness
    )
    counts[SUPPORT_TICKETS_FILE] = _write_jsonl(out_dir / SUPPORT_TICKETS_FILE, support.tickets)
    truth.append(_email_truth(SUPPORT, support.tickets, "requester_email", person_id, support.email_owner))
    del support
    surveys = survey_responses(
        rng_for(seed, "surveys"), population, orders, accounts.account_id, end_ts, known, messiness, coverage
    )
    counts[SURVEY_RESPONSES_FILE] = _write_csv(out_dir / SURVEY_RESPONSES_FILE, surveys.responses)
    truth.append(_email_truth(SURVEYS, surveys.responses, "email", person_id, surveys.email_owner))
    counts[GROUND_TRUTH_FILE] = _write_csv(out_dir / GROUND_TRUTH_FILE, pa.concat_tables(truth))

    manifest = DemoManifest(
        out_dir=out_dir,
        people=people,
        seed=seed,
        end_date=end_date,
        years=years,
        files={name: out_dir / name for name in FILES},
        counts=dict(sorted(counts.items())),
    )
    (out_dir / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    log.info("wrote %d people's demo data to %s in %.1f s", people, out_dir, time.perf_counter() - started)
    return manifest


def _truth(source: str, record_id: pa.Array, person_id: pa.Array, person: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "source": pa.array([source] * len(record_id), pa.string()),
            "entity": pa.array(["customers"] * len(record_id), pa.string()),
            "source_record_id": record_id,
            "person_id": person_id.take(pa.array(person)),
        }
    )


def _email_truth(
    source: str, table: pa.Table, email_column: str, person_id: pa.Array, owner: np.ndarray
) -> pa.Table:
    """Records that name a person only by email become ``email:<address trimmed, lower case>``.

    Rows carrying ``customer_ref`` point at a shop account instead and add no record of their own.
    """
    email_only = np.ones(table.num_rows, dtype=bool)
    if "customer_ref" in table.column_names:
        email_only = np.asarray(table["customer_ref"].is_null())
    emails = table[email_column].combine_chunks()
    key = concat("email:", pc.utf8_lower(pc.utf8_trim_whitespace(emails)))
    rows = np.flatnonzero(email_only & np.asarray(emails.is_valid()))
    keys = key.take(pa.array(rows))
    _, first = np.unique(np.asarray(keys.dictionary_encode().indices), return_index=True)
    rows = rows[np.sort(first)]
    return _truth(source, key.take(pa.array(rows)), person_id, owner[rows])


def _write_csv(path: Path, table: pa.Table) -> int:
    pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="needed"))
    return table.num_rows


def _write_jsonl(path: Path, table: pa.Table) -> int:
    lines = json_lines(table).to_pylist()
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return table.num_rows
