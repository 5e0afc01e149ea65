"""The household guard: which pairs of records are two people, whatever else they share.

A family shares an address, a landline, often a surname and sometimes an email; so a link through
any of those is only evidence. The guard weighs the two fields a household does not share:

- given names are *compatible* when they are the same name under real-world noise: equal, a typo
  apart (Damerau-Levenshtein 1 or Jaro-Winkler >= 0.92), nickname and full name (Bill/William,
  Kathi/Katharina: a shipped table), an initial (J./Jana), swapped with the surname (a form filled
  in the wrong order: both names, each within a typo, or one exact and the other alike, Jaro-Winkler
  >= 0.8; one name alone is what a household member shares with a swapped record), or missing on
  one side;
- dates of birth are *compatible* when equal, one digit apart, or day and month swapped.

Two records are kept apart when their given names are incompatible and their dates of birth give
no evidence for one person (incompatible, or missing on a side): that is a household, or two
strangers. So are two records whose dates of birth disagree while their given names are only
similar (Maria and Marie, Alex for Alexander or Alexandra): siblings sharing a family email.
Given names incompatible while the dates of birth agree is left to the model's weights
(a nickname the table lacks; twins, who also differ by gender most of the time, see below). Records
of different recorded genders are kept apart unless their given names are the same: different
(Paul and Paula) or missing on a side (the husband, given name dropped, on the family email). A date of
birth that disagrees while the given names are equal is no veto either: the model weighs it.

A missing gender is read from the given name where the data allow
(:func:`crm_pipelines.identity.prepare.build_match_records`), so Klaus is told from the wife whose
record has no given name. A pair that compares neither a given name nor a date of birth has only the
surname left to say who it is: when the surnames plainly differ it is kept apart too (the partner who
kept their name, on the family email).

A trusted declared identifier shared by the pair (a national id, a customer number: see
``identity.untrusted_identifiers``) overrides the guard: the pair links and carries the
``identifier_overrides_guard`` flag, so a steward can look at the conflict.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

from crm_pipelines.identity.engine import within_one_edit_sql

NICKNAMES_FILE = Path(__file__).with_name("nicknames.csv")
OVERRIDE_FLAG = "identifier_overrides_guard"
# Stricter than the model's loosest name level (0.8): Oliver/Olivia, Martin/Maria and Johanna/Jana
# score 0.84-0.91 and are often two people of one family; one typo stays within 0.92 or one edit.
GIVEN_COMPATIBLE_JW = 0.92
# As loose as the model's "similar" name level: only surnames that plainly differ count against a pair.
SURNAME_SIMILAR_JW = 0.80
SURNAME_DISAGREES_WITHOUT_GIVEN_NAME = "surname_disagrees_without_given_name"
# Names swapped, one half exact: the other half may be further off than a typo (Studer misread as
# Stucler, Andi for Andreas). A household member shares only the exact half (the surname).
SWAP_OTHER_HALF_JW = 0.80

Column = Callable[[str, str], str]
"""(field, side) -> a SQL reference to that field of the left ('l') or right ('r') record."""


@cache
def given_name_roots() -> dict[str, frozenset[str]]:
    """Folded given name -> every full name it is short for (and itself, if it is a full name).

    A shipped table, not a library: the maintained nickname packages cover English names only,
    and customers here are as often Kathi, Sepp or Hannes as Bill or Peggy.
    """
    roots: dict[str, set[str]] = defaultdict(set)
    with NICKNAMES_FILE.open(encoding="utf-8") as file:
        for row in csv.DictReader(file):
            roots[row["name"]].add(row["root"])
            roots[row["root"]].add(row["root"])
    return {name: frozenset(r) for name, r in roots.items()}


def _roots(column: Column, side: str) -> str:
    # first_name_roots: the shipped table's full names for the given name (NULL when it lists none),
    # added to match_records by crm_pipelines.identity.prepare.build_match_records.
    name = column("first_name", side)
    return f"coalesce({column('first_name_roots', side)}, [{name}])"


def _false_unless(condition: str) -> str:
    """``coalesce(condition, false)``, written so DuckDB stops at the first term that decides it.

    DuckDB evaluates every term of an AND or OR inside a function argument (coalesce included) on
    every row; as a CASE condition it evaluates each term only on the rows still undecided, so the
    costly name distances run on the few pairs the cheap comparisons leave. Same answer, a fraction
    of the time on the millions of pairs a large run checks.
    """
    return f"CASE WHEN {condition} THEN true ELSE false END"


def _true_unless(condition: str) -> str:
    """``coalesce(condition, true)``, evaluated as :func:`_false_unless` is."""
    return f"CASE WHEN NOT ({condition}) THEN false ELSE true END"


def _within_one_typo(a: str, b: str) -> str:
    return f"({within_one_edit_sql(a, b)} OR jaro_winkler_similarity({a}, {b}) >= {GIVEN_COMPATIBLE_JW})"


def given_names_compatible_sql(column: Column) -> str:
    fl, fr = column("first_name", "l"), column("first_name", "r")
    ll, lr = column("last_name", "l"), column("last_name", "r")
    # False when NULL: a NULL surname in the swap test must not turn the whole answer into NULL.
    return _false_unless(
        f"{fl} IS NULL OR {fr} IS NULL OR {fl} = {fr}"
        f" OR jaro_winkler_similarity({fl}, {fr}) >= {GIVEN_COMPATIBLE_JW}"
        f" OR {within_one_edit_sql(fl, fr)}"
        f" OR ((length({fl}) = 1 OR length({fr}) = 1) AND left({fl}, 1) = left({fr}, 1))"
        f" OR ({_within_one_typo(fl, lr)} AND {_within_one_typo(fr, ll)})"
        f" OR ({fl} = {lr} AND jaro_winkler_similarity({fr}, {ll}) >= {SWAP_OTHER_HALF_JW})"
        f" OR ({fr} = {ll} AND jaro_winkler_similarity({fl}, {lr}) >= {SWAP_OTHER_HALF_JW})"
        f" OR list_has_any({_roots(column, 'l')}, {_roots(column, 'r')})"
    )


def dates_of_birth_compatible_sql(column: Column) -> str:
    """Both present and equal, one character apart, or day and month swapped."""
    dl, dr = column("date_of_birth", "l"), column("date_of_birth", "r")
    return _false_unless(
        f"{dl} = {dr} OR {within_one_edit_sql(dl, dr)}"
        f" OR (left({dl}, 4) = left({dr}, 4) AND substr({dl}, 6, 2) = substr({dr}, 9, 2)"
        f" AND substr({dl}, 9, 2) = substr({dr}, 6, 2))"
    )


def surnames_compatible_sql(column: Column) -> str:
    """Surnames that may be one person's: missing on a side, alike (Jaro-Winkler >= 0.8, a typo or a
    misread letter group), one part of the other's double-barrelled name (Fischer, Fischer-Bauer), or
    alike the other's given name (a record with the names swapped)."""
    ll, lr = column("last_name", "l"), column("last_name", "r")
    fl, fr = column("first_name", "l"), column("first_name", "r")
    # A record with given name and surname the wrong way round carries the surname as its given name.
    return _true_unless(
        f"{ll} IS NULL OR {lr} IS NULL OR jaro_winkler_similarity({ll}, {lr}) >= {SURNAME_SIMILAR_JW}"
        f" OR list_has_any(string_split({ll}, ' '), string_split({lr}, ' '))"
        f" OR jaro_winkler_similarity({ll}, coalesce({fr}, '')) >= {SURNAME_SIMILAR_JW}"
        f" OR jaro_winkler_similarity(coalesce({fl}, ''), {lr}) >= {SURNAME_SIMILAR_JW}"
    )


def shares_trusted_identifier_sql(column: Column, untrusted: Sequence[str]) -> str:
    """True when the pair shares a declared identifier whose type is not configured untrusted."""
    kl, kr = column("identifier_keys", "l"), column("identifier_keys", "r")
    excluded = ", ".join("'" + t.lower().replace("'", "''") + "'" for t in untrusted)
    if not excluded:
        return f"coalesce(list_has_any({kl}, {kr}), false)"
    # A list function, not a subquery over the unnested keys: DuckDB runs a correlated subquery as a
    # join over every pair, whether or not it shares any identifier.
    shared_trusted = f"list_filter(list_intersect({kl}, {kr}), lambda k: split_part(k, ':', 1) NOT IN ({excluded}))"
    return f"coalesce(len({shared_trusted}) > 0, false)"


def conflict_reason_sql(column: Column) -> str:
    """The guard's reason to keep a pair apart (NULL when it has none), before any override."""
    fl, fr = column("first_name", "l"), column("first_name", "r")
    gl, gr = column("gender", "l"), column("gender", "r")
    given = given_names_compatible_sql(column)
    births = dates_of_birth_compatible_sql(column)
    dl, dr = column("date_of_birth", "l"), column("date_of_birth", "r")
    same_given = (
        f"coalesce({fl} = {fr} OR ({fl} = {column('last_name', 'r')} AND {fr} = {column('last_name', 'l')}), false)"
    )
    return (
        f"CASE WHEN NOT {given} AND NOT {births} THEN 'given_name_and_birth_disagree'"
        f" WHEN {dl} IS NOT NULL AND {dr} IS NOT NULL AND NOT {births} AND {fl} IS NOT NULL AND {fr} IS NOT NULL"
        f" AND NOT {same_given} THEN 'similar_given_name_and_birth_disagrees'"
        f" WHEN {gl} <> {gr} AND NOT coalesce({fl} = {fr}, false) AND NOT coalesce({fl} = {column('last_name', 'r')}"
        f" AND {fr} = {column('last_name', 'l')}, false) THEN 'gender_disagrees'"
        f" WHEN ({fl} IS NULL OR {fr} IS NULL) AND ({dl} IS NULL OR {dr} IS NULL)"
        f" AND NOT {surnames_compatible_sql(column)} THEN '{SURNAME_DISAGREES_WITHOUT_GIVEN_NAME}' END"
    )


def prediction_column(field: str, side: str) -> str:
    """Columns of a Splink predictions table: first_name_l, first_name_r, ..."""
    return f'"{field}_{side}"'


def alias_column(left: str, right: str) -> Column:
    """Columns of two aliased rows of match_records."""
    return lambda field, side: f"{left if side == 'l' else right}.{field}"
