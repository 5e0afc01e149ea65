"""Blocking reaches nearly every true pair of the demo's noisy records, at a tractable number of candidates.

The demo sources (with their ground truth) go through the bundled raw and staging assets, as in
``benchmarks/identity.py``; blocking is then measured against the truth. A pair blocking misses can
never be linked, so this is the ceiling of recall whatever the model learns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from crm_pipelines.identity.blocking import blocking_report
from crm_pipelines.identity.prepare import name_sound
from crm_pipelines.identity.settings import IdentitySettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from identity import staged_demo_customers  # noqa: E402 (the benchmark's demo staging)

# Pairs of delivered records (CRM contacts, shop accounts): measured 1.0 on 600 people; the floor
# leaves room for another seed, not for a lost rule. Email-only references (a support requester, a
# subscriber) carry nothing but an address, often one no other record of the person has: no blocking
# can reach those pairs, so they are left out (the benchmark reports them).
BLOCKING_RECALL_FLOOR = 0.99
CANDIDATES_PER_RECORD_CEILING = 5


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    return staged_demo_customers(600, tmp_path_factory.mktemp("blocking"))


def test_blocking_reaches_the_true_pairs_of_the_noisy_demo(staged):
    customers, identifiers, truth, config = staged
    delivered = customers.loc[customers["record_kind"] == "record", ["source", "source_record_id"]]
    report = blocking_report(customers, identifiers, config.identity, truth.merge(delivered))
    assert report.true_pairs > 200
    assert report.recall >= BLOCKING_RECALL_FLOOR, report
    assert report.candidate_pairs <= CANDIDATES_PER_RECORD_CEILING * len(customers), report
    # Each of the noise-tolerant rules reaches pairs of its own kind on the noisy demo.
    by_rule = dict(report.pairs_by_rule)
    assert all(by_rule[rule] > 0 for rule in by_rule if "sound" in rule), by_rule


def test_sounds_survive_typos_and_swaps():
    rows = pd.DataFrame(
        {
            "source": ["a", "b", "c", "d"],
            "source_record_id": ["1", "2", "3", "4"],
            "first_name": ["Katharina", "Schulz", "Katahrina", "Jonas"],
            "last_name": ["Schulze", "Katahrina", "Schulz", "Schulze"],
            "postcode": ["50667", "99999", "53111", "50667"],
        }
    )
    truth = pd.DataFrame(
        {"source": list("abcd"), "source_record_id": list("1234"), "person_id": ["p", "p", "p", "q"]}
    )
    report = blocking_report(rows, None, IdentitySettings(), truth)
    # Typos in both names, in another town of the region; the names swapped with a typo: all reached.
    assert report.recall == 1.0
    assert name_sound("schmidt") == name_sound("schmitt") == name_sound("shmidt")
