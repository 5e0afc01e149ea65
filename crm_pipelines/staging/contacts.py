"""Normalization of the fields people are matched on: emails, names, countries, genders.

Each normalizer judges one distinct value and is applied through
:func:`~crm_pipelines.staging.values.apply_unique`, so the cost is per distinct address or number, not
per row. A value ends as one of three things (a :class:`Verdict`): a normalized value; junk (a
placeholder such as ``noemail@shop.com`` that never counts as data and is nulled
without rejecting the record); or invalid, with the problem that quarantines the record.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.staging.values import apply_unique, map_unique
from crm_pipelines.staging.vocabularies import (
    COUNTRY_ALIASES,
    COUNTRY_PLACEHOLDERS,
    GENDERS,
    UNKNOWN_GENDER,
    vocabulary_key,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True, slots=True)
class Verdict:
    """What normalization made of one distinct value."""

    value: str | None = None
    problem: str | None = None
    """Why the value is invalid, without the value itself (None when valid or junk)."""
    junk: bool = False


JUNK = Verdict(junk=True)


@dataclass(frozen=True)
class Normalized:
    """A normalized column: values (null where junk or invalid), the junk mask, the problems."""

    values: pd.Series
    problems: pd.Series
    """Why each invalid value was rejected; None elsewhere."""
    junk: pd.Series

    @property
    def invalid(self) -> pd.Series:
        return self.problems.notna()


@dataclass(frozen=True)
class Verdicts:
    """Verdicts on a list of distinct values as columns, one entry per value (no object per value)."""

    values: np.ndarray
    """object: the normalized value, None where junk or invalid."""
    problems: np.ndarray
    """object: why the value is invalid, None elsewhere."""
    junk: np.ndarray
    """bool."""

    def as_list(self) -> list[Verdict]:
        return [Verdict(v, p, bool(j)) for v, p, j in zip(self.values, self.problems, self.junk, strict=True)]


def judge(
    text: pd.Series,
    judge_value: Callable[[str], Verdict] | None = None,
    *,
    bulk: Callable[[Sequence[str]], list[Verdict] | Verdicts] | None = None,
) -> Normalized:
    """Judge each distinct value of ``text`` once and spread the verdicts over its rows; ``bulk`` judges
    all distinct values in one call (in their order), in place of ``judge_value`` one by one, and may
    answer with :class:`Verdicts`."""
    import numpy as np
    import pandas as pd
    if bulk is not None:
        codes, uniques = pd.factorize(text, use_na_sentinel=True)
        judged = bulk(_texts(uniques))
        if not isinstance(judged, Verdicts):
            judged = _columns(judged)
        if len(judged.junk) != len(uniques):
            raise ValueError(f"bulk returned {len(judged.junk)} results for {len(uniques)} values")
    else:
        codes, verdicts = apply_unique(text, judge_value)
        judged = _columns(verdicts[:-1])
    # Code -1 (a null row) picks the trailing entries.
    values = np.append(np.where(pd.isna(judged.values), np.nan, judged.values).astype(object), np.nan)
    problems = np.append(judged.problems.astype(object), None)
    junk = np.append(judged.junk.astype(bool), False)
    return Normalized(
        values=pd.Series(values[codes], index=text.index, dtype="str"),
        problems=pd.Series(problems[codes], index=text.index, dtype=object),
        junk=pd.Series(junk[codes], index=text.index),
    )


def _texts(uniques) -> list[str]:
    """Distinct values as Python strings (through Arrow when they are Arrow-backed: faster than iterating)."""
    import pyarrow as pa
    try:
        return pa.array(uniques, type=pa.large_string(), from_pandas=True).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return [str(u) for u in uniques]


def _columns(verdicts) -> Verdicts:
    import numpy as np
    return Verdicts(
        values=np.array([v.value for v in verdicts], dtype=object),
        problems=np.array([v.problem for v in verdicts], dtype=object),
        junk=np.array([v.junk for v in verdicts], dtype=bool),
    )


# -- email ----------------------------------------------------------------------------------------
JUNK_EMAIL_LOCAL_PARTS = frozenset(
    {
        "noemail", "no-email", "no_email", "no.email", "nomail", "no-mail", "no_mail", "none", "null",
        "nobody", "unknown", "keine", "keinemail", "keine-email", "noreply", "no-reply", "donotreply",
        "do-not-reply", "dummy", "fake", "test", "asdf", "xxx", "na", "n/a", "invalid",
    }
)
JUNK_EMAIL_DOMAINS = frozenset(
    {
        "test.com", "test.de", "noemail.com", "nomail.com", "none.com", "no-email.com", "invalid.com",
        "fake.com",
    }
)
# An address of this plain ASCII shape is valid exactly when its domain is, and email-validator
# returns it unchanged but for case: once its domain has passed full validation, it skips it.
_PLAIN_ADDRESS = re.compile(
    r"[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


class EmailNormalizer:
    """Validates and normalizes email addresses, remembering the domains that passed validation."""

    def __init__(self) -> None:
        self._valid_domains: set[str] = set()

    def __call__(self, raw: str) -> Verdict:
        from email_validator import EmailNotValidError, validate_email
        address = raw.strip()
        lowered = address.lower()
        local, _, domain = lowered.rpartition("@")
        if {lowered, local} & JUNK_EMAIL_LOCAL_PARTS or domain in JUNK_EMAIL_DOMAINS:
            return JUNK
        if (
            domain in self._valid_domains
            and len(lowered) <= 254
            and len(local) <= 64
            and _PLAIN_ADDRESS.fullmatch(lowered)
        ):
            return Verdict(lowered)
        try:
            result = validate_email(address, check_deliverability=False)
        except EmailNotValidError as e:
            return Verdict(problem=f"is not a valid email address: {e}")
        self._valid_domains.add(result.ascii_domain.lower())
        return Verdict(result.normalized.lower())


def email_verdicts(addresses: Sequence[str]) -> Verdicts:
    """:class:`EmailNormalizer`'s verdict on each address, taken in order, with the per-address Python
    left to the addresses that need it (the others are answered as columns, without a verdict object).

    An address of the plain shape whose domain already passed validation (earlier in the order) is
    lower-cased and checked for junk in Arrow, all at once; the others go through the normalizer one
    by one, in order, so the set of domains that passed grows exactly as it would address by address.
    Plain here means plain ASCII (then Python's and Arrow's lower case agree, and there is no white
    space to strip) of the shape and lengths the normalizer's own shortcut takes.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    values = pa.array(addresses, pa.string())
    lowered = pc.ascii_lower(values)
    parts = pc.extract_regex(lowered, r"^(?P<local>[^@]*)@(?P<domain>[^@]*)$")
    local, domain = pc.struct_field(parts, "local"), pc.struct_field(parts, "domain")
    plain = pc.and_kleene(
        pc.and_kleene(pc.string_is_ascii(values), pc.match_substring_regex(lowered, f"^(?:{_PLAIN_ADDRESS.pattern})$")),
        pc.and_kleene(pc.less_equal(pc.utf8_length(lowered), 254), pc.less_equal(pc.utf8_length(local), 64)),
    ).fill_null(False)
    junk = pc.or_kleene(
        pc.or_kleene(pc.is_in(lowered, pa.array(sorted(JUNK_EMAIL_LOCAL_PARTS))),
                     pc.is_in(local, pa.array(sorted(JUNK_EMAIL_LOCAL_PARTS)))),
        pc.is_in(domain, pa.array(sorted(JUNK_EMAIL_DOMAINS))),
    ).fill_null(False)
    normalizer = EmailNormalizer()
    known = normalizer._valid_domains
    is_junk = np.array(junk.to_numpy(zero_copy_only=False), dtype=bool)
    normalized = np.array(lowered.to_pylist(), dtype=object)
    normalized[is_junk] = None
    problems = np.full(len(addresses), None, dtype=object)
    for i, (address, is_plain, domain_name) in enumerate(
        zip(addresses, plain.to_pylist(), domain.to_pylist(), strict=True)
    ):
        if not (is_plain and domain_name in known):
            verdict = normalizer(address)
            normalized[i], problems[i], is_junk[i] = verdict.value, verdict.problem, verdict.junk
    return Verdicts(normalized, problems, is_junk)


def normalize_emails(text: pd.Series) -> Normalized:
    """Emails validated with email-validator (no DNS lookups), lower case; junk addresses nulled."""
    return judge(text, bulk=email_verdicts)


# -- names ----------------------------------------------------------------------------------------
# Lower-case name particles when a name was written all upper or all lower ("VAN DER BERG").
NAME_PARTICLES = frozenset(
    {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "la", "le", "zu", "ten", "ter",
     "dos", "das", "y"}
)


def normalize_name(raw: str) -> str:
    """NFC, trimmed, inner whitespace collapsed; title case only when written all upper or all lower.

    Mixed case is the writer's choice and kept ("McDonald", "van der Berg", "DeShawn").
    """
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not any(c.isalpha() for c in name) or (name != name.upper() and name != name.lower()):
        return name
    words = name.lower().title().split(" ")
    return " ".join(
        w.lower() if i > 0 and w.lower() in NAME_PARTICLES else w for i, w in enumerate(words)
    )


def normalize_names(text: pd.Series) -> pd.Series:
    import pandas as pd
    return pd.Series(map_unique(text, normalize_name), index=text.index, dtype="str")


# -- countries --------------------------------------------------------------------------------------
def _country_verdict(raw: str) -> Verdict:
    import pycountry
    key = vocabulary_key(raw)
    if key in COUNTRY_PLACEHOLDERS:
        return JUNK
    if key in COUNTRY_ALIASES:
        return Verdict(COUNTRY_ALIASES[key])
    try:
        return Verdict(pycountry.countries.lookup(unicodedata.normalize("NFC", raw).strip()).alpha_2)
    except LookupError:
        return Verdict(problem="is not a known country (ISO 3166-1 code or name)")


def normalize_countries(text: pd.Series) -> Normalized:
    """ISO 3166-1 alpha-2 codes from codes, English names and common local names."""
    return judge(text, _country_verdict)


# -- gender -----------------------------------------------------------------------------------------
def normalize_genders(text: pd.Series) -> pd.Series:
    """female, male, other or unknown; a form not recognized is unknown (a customer is kept)."""
    import pandas as pd
    mapped = map_unique(text, lambda v: GENDERS.get(vocabulary_key(v), UNKNOWN_GENDER))
    return pd.Series(mapped, index=text.index, dtype="str")
