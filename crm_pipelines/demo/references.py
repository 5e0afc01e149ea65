"""Which address people give where a system knows them by email only: support requesters, newsletter
subscribers, survey respondents.

People write from the address they use everywhere, so nearly every such reference carries an address
that one of their CRM contacts or shop accounts also carries (the main one mostly, the work address or
second mailbox when a record has that one). Two kinds of reference stay hard on purpose, each at a
small, configurable share of the references (:class:`~crm_pipelines.demo.settings.Messiness`):

- ``unknown_reference_email``: a mailbox no other system knows (a second mailbox no record carries, or
  a fresh one at a provider the population does not otherwise use). People none of whose records carry
  an address at all (CRM contacts without email) write from an unknown address too, and count towards
  that share.
- ``family_reference_email``: the shared family address of a couple, where records of both partners
  carry it. Its sender cannot be told apart from the partner, so the ground truth gives it to the
  address's owner (the household's first member). Where only one partner's records carry the family
  address, it names that partner, who uses it like a personal address.

A member of a family-email couple whose records carry no address but the ambiguous shared one, and
whom the family draw passes by, is *unplaced*: the caller identifies them another way (a customer number) or
leaves the reference out, so the family share stays at its configured rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.demo.arrays import concat, int_strings, take, where
from crm_pipelines.demo.population import People
from crm_pipelines.demo.settings import Messiness

# Providers no generated address uses, so a fresh mailbox there can collide with none of them.
UNKNOWN_MAILBOX_DOMAINS = ("proton.me", "mailbox.org", "fastmail.com", "posteo.net")
OTHER_ADDRESS_SHARE = 0.1
"""Of the people whose records carry both their main and their second address: who writes from the second."""


@dataclass(frozen=True)
class KnownEmails:
    """Per person: whether any of their CRM contacts or shop accounts carries each of their addresses."""

    main: np.ndarray
    """``People.email`` (their own address, or the shared family one) is on one of their records."""
    other: np.ndarray
    """``People.other_email`` (work address or second mailbox) is on one of their records."""


@dataclass(frozen=True)
class ReferenceEmails:
    """The address of each reference (clean: lower case, no spaces) and whom the ground truth gives it."""

    email: pa.Array
    owner: np.ndarray
    """Person position owning ``email``: the sender, or the owner of a shared family address."""
    unplaced: np.ndarray
    """The sender's records carry only an ambiguous family address and the family draw passed them by."""


def known_emails(people: People, records: Sequence[tuple[np.ndarray, pa.Array]]) -> KnownEmails:
    """Which of each person's addresses their records carry.

    ``records`` holds, per source, the person position of each record and the clean address the record
    carries (null where it has none, or only a placeholder or broken value).
    """
    main = np.zeros(len(people), dtype=bool)
    other = np.zeros(len(people), dtype=bool)
    for person, email in records:
        if len(person) == 0:
            continue
        rows = pa.array(person)
        main[person[np.asarray(pc.equal(email, people.email.take(rows)).fill_null(False))]] = True
        other[person[np.asarray(pc.equal(email, people.other_email.take(rows)).fill_null(False))]] = True
    return KnownEmails(main=main, other=other)


def reference_emails(
    rng: np.random.Generator,
    people: People,
    known: KnownEmails,
    sender: np.ndarray,
    messiness: Messiness,
    family_owner_only: bool = False,
) -> ReferenceEmails:
    """The address each reference by ``sender`` (person positions) comes from.

    With ``family_owner_only`` only the owner of a family address uses it (a mailing list holds each
    address once); the partner's references through it are unplaced instead.
    """
    count = len(sender)
    rows = pa.array(sender)
    # A family address is ambiguous only where records of both its users carry it; where one user's
    # records alone do, it names that user as plainly as a personal address.
    carriers = np.bincount(people.email_owner, weights=known.main, minlength=len(people))
    ambiguous = carriers[people.email_owner[sender]] >= 2
    can_main = known.main[sender] & ~ambiguous
    can_other = known.other[sender]
    can_family = known.main[sender] & ambiguous
    if family_owner_only:
        can_family &= people.email_owner[sender] == sender

    # Senders without any address on record write from an unknown one anyway; the draw tops them up to
    # the configured share instead of adding to it.
    unrecorded = ~(known.main[sender] | can_other)
    recorded = max(count - int(unrecorded.sum()), 1)
    unknown_chance = (messiness.unknown_reference_email * count - unrecorded.sum()) / recorded
    unknown = unrecorded | (rng.random(count) < unknown_chance)
    eligible = can_family & ~unknown
    # One acceptance chance for every eligible reference, so the family ones make up the configured share.
    accept = min(1.0, messiness.family_reference_email * count / max(int(eligible.sum()), 1))
    family = eligible & (rng.random(count) < accept)
    placed = ~unknown & ~family
    use_other = placed & can_other & (~can_main | (rng.random(count) < OTHER_ADDRESS_SHARE))
    unplaced = placed & ~can_main & ~can_other

    main_email = people.email.take(rows)
    other_email = people.other_email.take(rows)
    email = where(use_other, other_email, main_email)
    email = where(unknown, _unknown_mailboxes(people, sender, known), email)
    owner = np.where(family | unplaced, people.email_owner[sender], sender)
    return ReferenceEmails(email=email, owner=owner, unplaced=unplaced)


def _unknown_mailboxes(people: People, sender: np.ndarray, known: KnownEmails) -> pa.Array:
    """Each sender's second mailbox if no record carries it, else a fresh one only they use.

    The fresh one's local part ends in ``.`` and a fixed-width person number, which no generated local
    part does, so it names one person only; its provider follows the person too, so every unknown
    reference by one person comes from one mailbox.
    """
    rows = pa.array(sender)
    main_local = pc.list_element(pc.split_pattern(people.email.take(rows), "@", max_splits=1), 0)
    number = int_strings(sender, width=len(str(len(people))))
    domain = take(list(UNKNOWN_MAILBOX_DOMAINS), sender % len(UNKNOWN_MAILBOX_DOMAINS))
    fresh = concat(main_local, ".", number, "@", domain)
    other = people.other_email.take(rows)
    unused_other = np.asarray(other.is_valid()) & ~known.other[sender]
    return where(unused_other, other, fresh)
