"""Held-out style check: a FEBRL-like two-source linkage task, fed through crm.yaml as two CSV sources.

The generator here shares no code with the demo generator (``crm_pipelines.demo``): its own name
lists, its own noise, its own seed. Source A holds ``--people`` clean-ish records; source B holds one
record of each same person, distorted the way real exports are (rates in ``NOISE``): OCR and
keyboard typos in names, given name and surname swapped, a nickname for the given name, the given
name left out, a date of birth with a digit wrong or day and month swapped, the street or suburb
missing, a postcode digit off. Every B record has exactly one true match in A.

Both CSVs go through the bundled raw and staging assets (as any user's sources would), the model
is trained on the staged records, and the identity map is scored pairwise, once without and once
with a national id column declared under ``identifiers:``. Target: pairwise F1 >= 0.995 both ways.

    .venv/bin/python benchmarks/febrl_like.py [--people 5000] [--seed 2024] [--show-errors N]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from identity import score  # noqa: E402 (the demo benchmark's pairwise scoring)

GIVEN = (
    "james john robert michael william david richard joseph thomas charles christopher daniel matthew "
    "anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward "
    "jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin "
    "samuel gregory alexander patrick frank raymond jack dennis jerry tyler aaron henry douglas peter "
    "mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty margaret "
    "sandra ashley kimberly emily donna michelle carol amanda dorothy melissa deborah stephanie rebecca "
    "sharon laura cynthia kathleen amy angela shirley anna brenda pamela emma nicole helen samantha "
    "katherine christine debra rachel carolyn janet catherine maria heather diane ruth julie olivia joyce"
).split()
SURNAMES = (
    "smith jones williams brown wilson taylor johnson white martin anderson thompson nguyen thomas "
    "walker harris lee ryan robinson kelly king davis wright evans roberts green hall wood jackson "
    "clarke patel khan lewis james phillips mitchell turner campbell cook hughes edwards morris "
    "murphy ward baker young allen scott stewart morgan bell cooper richardson cox howard graham "
    "ross palmer hunt reid grant murray fraser kennedy mcdonald russell barnes fisher henderson "
    "spencer hayes mills gibson marshall ellis stone ford hudson lawrence dixon chapman burke reynolds "
    "sullivan obrien duncan moore collins mason webb rogers gray carter bailey foster shaw powell"
).split()
STREETS = "main high church park station victoria george king queen mill school bridge river hill".split()
STREET_TYPES = ("street", "road", "avenue", "lane", "place", "drive", "crescent")
SUBURBS = "ashfield belmont carlton dalby elwood fairfield glenroy hawthorn ivanhoe kew lalor malvern".split()
NICKNAMES = {
    "william": "bill",
    "robert": "bob",
    "richard": "dick",
    "james": "jim",
    "michael": "mike",
    "thomas": "tom",
    "charles": "charlie",
    "christopher": "chris",
    "daniel": "dan",
    "matthew": "matt",
    "anthony": "tony",
    "joseph": "joe",
    "elizabeth": "liz",
    "margaret": "maggie",
    "patricia": "pat",
    "jennifer": "jenny",
    "katherine": "kate",
    "deborah": "debbie",
    "samantha": "sam",
    "rebecca": "becky",
    "kimberly": "kim",
    "pamela": "pam",
    "jessica": "jess",
    "stephen": "steve",
    "nicholas": "nick",
    "benjamin": "ben",
    "samuel": "sam",
    "gregory": "greg",
    "alexander": "alex",
    "raymond": "ray",
}
OCR = {"o": "0", "l": "1", "i": "1", "s": "5", "b": "8", "g": "9", "m": "rn", "e": "c", "h": "b"}
KEYBOARD = dict(zip("qwertyuiopasdfghjklzxcvbnm", "wertyuiopqsdfghjklaxcvbnmz", strict=True))
NOISE = {  # share of B records carrying each distortion (several may apply to one record)
    "typo_given": 0.15,
    "typo_surname": 0.15,
    "ocr": 0.05,
    "swap_names": 0.05,
    "nickname": 0.07,
    "drop_given": 0.04,
    "dob_digit": 0.08,
    "dob_day_month": 0.04,
    "drop_street": 0.08,
    "drop_suburb": 0.05,
    "postcode_off": 0.06,
    "id_typo": 0.0,
}


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 3:
        return word
    at = rng.randrange(1, len(word))
    kind = rng.randrange(4)
    if kind == 0:
        return word[:at] + word[at + 1 :]
    if kind == 1 and at < len(word) - 1:
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    if kind == 2:
        return word[:at] + KEYBOARD.get(word[at], word[at]) + word[at + 1 :]
    return word[:at] + word[at] + word[at:]


def _ocr(rng: random.Random, word: str) -> str:
    spots = [i for i, ch in enumerate(word) if ch in OCR]
    if not spots:
        return word
    at = rng.choice(spots)
    return word[:at] + OCR[word[at]] + word[at + 1 :]


def people(rng: random.Random, count: int) -> list[dict[str, str]]:
    out = []
    for i in range(count):
        born = dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(365 * 65))
        out.append(
            {
                "rec_id": f"rec-{i}",
                "given_name": rng.choice(GIVEN),
                "surname": rng.choice(SURNAMES),
                "street_number": str(rng.randrange(1, 300)),
                "address_1": f"{rng.choice(STREETS)} {rng.choice(STREET_TYPES)}",
                "suburb": rng.choice(SUBURBS),
                "postcode": str(rng.randrange(2000, 7999)),
                "state": rng.choice(("nsw", "vic", "qld", "wa", "sa", "tas")),
                "date_of_birth": born.isoformat(),
                "soc_sec_id": str(rng.randrange(1_000_000, 9_999_999)),
            }
        )
    return out


def distorted(rng: random.Random, person: dict[str, str]) -> dict[str, str]:
    r = dict(person)
    hit = {name for name, rate in NOISE.items() if rng.random() < rate}
    if "nickname" in hit and r["given_name"] in NICKNAMES:
        r["given_name"] = NICKNAMES[r["given_name"]]
    if "typo_given" in hit:
        r["given_name"] = _typo(rng, r["given_name"])
    if "typo_surname" in hit:
        r["surname"] = _typo(rng, r["surname"])
    if "ocr" in hit:
        r["surname"] = _ocr(rng, r["surname"])
    if "swap_names" in hit:
        r["given_name"], r["surname"] = r["surname"], r["given_name"]
    if "drop_given" in hit:
        r["given_name"] = ""
    born = dt.date.fromisoformat(r["date_of_birth"])
    if "dob_day_month" in hit and born.day <= 12 and born.day != born.month:
        r["date_of_birth"] = born.replace(month=born.day, day=born.month).isoformat()
    elif "dob_digit" in hit:
        for _ in range(10):
            text = list(r["date_of_birth"])
            at = rng.choice((2, 3, 6, 8, 9))
            text[at] = str(rng.randrange(10))
            try:
                r["date_of_birth"] = dt.date.fromisoformat("".join(text)).isoformat()
                break
            except ValueError:
                continue
    if "drop_street" in hit:
        r["address_1"] = ""
    if "drop_suburb" in hit:
        r["suburb"] = ""
    if "postcode_off" in hit:
        digits = list(r["postcode"])
        at = rng.randrange(1, 4)
        digits[at] = str((int(digits[at]) + rng.choice((1, -1))) % 10)
        r["postcode"] = "".join(digits)
    return r


def write_sources(root: Path, count: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    originals = people(rng, count)
    copies = [distorted(rng, p) | {"rec_id": f"{p['rec_id']}-dup"} for p in originals]
    truth = []
    for name, rows in (("febrl_a", originals), ("febrl_b", copies)):
        with (root / f"{name}.csv").open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        truth += [(name, r["rec_id"], r["rec_id"].removesuffix("-dup")) for r in rows]
    return pd.DataFrame(truth, columns=["source", "source_record_id", "person_id"])


def config_dict(root: Path, with_id: bool) -> dict:
    def source(name: str) -> dict:
        customers = {
            "path": f"{name}.csv",
            "columns": {
                "source_record_id": "rec_id",
                "first_name": "given_name",
                "last_name": "surname",
                "address_line1": "address_1",
                "city": "suburb",
                "postcode": "postcode",
                "region": "state",
                "date_of_birth": "date_of_birth",
            },
        }
        if with_id:
            customers["identifiers"] = {"national_id": "soc_sec_id"}
        return {"name": name, "connector": {"type": "csv"}, "entities": {"customers": customers}}

    return {
        "warehouse": {"url": f"duckdb:///{root / 'warehouse.duckdb'}"},
        "default_country": "AU",
        "checks": {"reports_dir": str(root / "runs")},
        "identity": {"model_path": str(root / "model.json")},
        "sources": [source("febrl_a"), source("febrl_b")],
    }


def run(root: Path, truth: pd.DataFrame, with_id: bool, show_errors: int = 0) -> dict[str, float]:
    import dagster as dg

    from crm_pipelines.config import load_config
    from crm_pipelines.definitions import build_definitions
    from crm_pipelines.identity.model import train_model
    from crm_pipelines.identity.resolve import resolve
    from crm_pipelines.schema import STAGING
    from crm_pipelines.warehouse import Warehouse, dispose_engines

    (root / "warehouse.duckdb").unlink(missing_ok=True)
    path = root / "crm.yaml"
    path.write_text(yaml.safe_dump(config_dict(root, with_id), sort_keys=False))
    config = load_config(path)
    job = dg.define_asset_job(
        "febrl_staging", selection=dg.AssetSelection.groups("raw", "staging"), executor_def=dg.in_process_executor
    )
    defs = dg.Definitions.merge(build_definitions(config), dg.Definitions(jobs=[job]))
    defs.resolve_job_def("febrl_staging").execute_in_process(
        raise_on_error=True, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    )
    wh = Warehouse(config.warehouse_url)
    customers = wh.read_table(STAGING, "customers")
    identifiers = (
        wh.read_table(STAGING, "customer_identifiers") if wh.table_exists(STAGING, "customer_identifiers") else None
    )
    dispose_engines()
    model = train_model(customers, identifiers, config.identity)
    result = resolve(customers, identifiers, config.identity, model)
    if show_errors:
        from _identity_errors import diagnose

        diagnose(result, customers, identifiers, config.identity, model, truth, show_errors)
    figures = score(result.identity_map, truth)
    print(
        f"  staged {len(customers):,} records; links {result.summary['links_by_method']}; "
        f"refused {result.summary['rejected_by_reason']}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--show-errors", type=int, default=0, metavar="N", help="list wrong and missed pairs by cause")
    args = parser.parse_args()
    verdict = []
    with tempfile.TemporaryDirectory(prefix="crm_febrl_like_") as tmp:
        root = Path(tmp)
        truth = write_sources(root, args.people, args.seed)
        for with_id in (False, True):
            started = time.perf_counter()
            label = "with national id" if with_id else "names, address, date of birth"
            print(f"{label}:")
            figures = run(root, truth, with_id, args.show_errors)
            print(
                f"  precision {figures['pairwise_precision']:.4f}  recall {figures['pairwise_recall']:.4f}  "
                f"F1 {figures['pairwise_f1']:.4f}  ({time.perf_counter() - started:.0f} s)"
            )
            verdict.append(figures["pairwise_f1"] >= 0.995)
    print("verdict:", "target met (F1 >= 0.995 both ways)" if all(verdict) else "target NOT met")


if __name__ == "__main__":
    main()
