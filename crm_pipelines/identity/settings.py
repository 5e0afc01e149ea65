"""Settings of identity resolution: the ``identity:`` section of ``crm.yaml``.

Every default here is meant to work on typical B2C customer data; the thresholds were tuned on the
demo data and the synthetic benchmark (see ``benchmarks/identity.py``).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SOURCE_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
# Columns the probabilistic model compares; blocking rules may use these and the strong identifiers.
MATCHING_COLUMNS = ("first_name", "last_name", "date_of_birth", "address_line1", "postcode", "city")
STRONG_IDENTIFIER_COLUMNS = ("email", "phone")
BLOCKABLE_COLUMNS = MATCHING_COLUMNS + STRONG_IDENTIFIER_COLUMNS
# Link methods whose shared value makes the link certain: the identity map records probability 1.
DETERMINISTIC_METHODS = ("identifier", "email", "phone")

# Fields of the golden record that survivorship chooses (see crm_pipelines.identity.golden).
GOLDEN_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "date_of_birth",
    "gender",
    "address_line1",
    "address_line2",
    "city",
    "postcode",
    "region",
    "country",
    "company",
)


class IdentitySettings(BaseModel):
    """How records are matched, how clusters are guarded, and how golden records are chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match_threshold: float = Field(
        0.995,
        gt=0,
        lt=1,
        description="Match probability at or above which a probabilistic link joins two records.",
    )
    split_threshold: float = Field(
        0.9999,
        gt=0,
        lt=1,
        description="An oversize cluster is broken up keeping only links at or above this probability.",
    )
    max_cluster_size: int = Field(
        20, ge=2, description="A cluster with more records is flagged and broken up, never kept silently."
    )
    shared_value_limit: int = Field(
        12,
        ge=2,
        description="An email, phone or identifier value carried by more records than this is treated "
        "as shared (a shop's default, a call centre's number) and links nobody.",
    )
    junk_emails: tuple[str, ...] = Field(
        (
            "test@test.com",
            "test@test.de",
            "test@example.com",
            "noreply@example.com",
            "none@none.com",
            "no@email.com",
            "na@na.com",
            "email@email.com",
            "info@info.com",
            "a@a.com",
            "x@x.com",
        ),
        description="Email addresses that never link anyone.",
    )
    junk_email_patterns: tuple[str, ...] = Field(
        (
            r"^(test|dummy|none|null|noemail|no-?reply|donotreply|do-not-reply|unknown|invalid|n/?a|x+)@",
            r"@(example|test|invalid|localhost|mailinator|none)\.[a-z.]+$",
            r"@.*\.(invalid|test|example|local)$",
        ),
        description="Regular expressions (searched in the lower-case email) of placeholder addresses.",
    )
    junk_phones: tuple[str, ...] = Field(
        ("+490000000000", "+491111111111", "+491234567890", "+4912345678", "+10000000000"),
        description="Phone numbers (E.164) that never link anyone.",
    )
    junk_phone_pattern: str = Field(
        r"^\+\d{0,6}$|01234567|12345678|23456789|98765432|87654321|76543210",
        description="A phone matching this (too short, a run of digits) is a placeholder; so is one "
        "whose last eight digits are a single repeated digit.",
    )
    junk_names: tuple[str, ...] = Field(
        (
            "n/a",
            "na",
            "n.a.",
            "none",
            "null",
            "unknown",
            "unbekannt",
            "test",
            "xxx",
            "x",
            "-",
            "?",
            "mr",
            "mrs",
            "ms",
            "customer",
            "kunde",
            "guest",
            "gast",
            "dummy",
        ),
        description="First or last names (lower case) that are placeholders, not names.",
    )
    junk_identifiers: tuple[str, ...] = Field(
        ("0", "00", "000", "0000", "N/A", "NA", "NONE", "NULL", "UNKNOWN", "-", "TEST", "X", "XXX"),
        description="Declared identifier values (upper case) that never link anyone.",
    )
    junk_dates_of_birth: tuple[str, ...] = Field(
        ("1900-01-01", "1901-01-01", "1899-12-31", "1800-01-01", "9999-12-31"),
        description="Dates of birth (ISO) that are placeholders.",
    )
    untrusted_identifiers: tuple[str, ...] = Field(
        (),
        description="Declared identifier names (the keys under a source's identifiers:, e.g. "
        "loyalty_card) that are only evidence: records sharing one link unless the household guard "
        "keeps them apart. Every other declared identifier is trusted: records sharing it join, and a "
        "disagreement with names or dates of birth is flagged (identifier_overrides_guard), not vetoed. "
        "A value shared by more than shared_value_limit records links nobody either way.",
    )
    field_priority: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Golden record: per field, the sources in order of trust, e.g. "
        "{'email': ['email', 'crm', 'shop'], 'address_line1': ['shop', 'crm']}. Sources not listed "
        "follow by their default priority, then the most recently updated value wins.",
    )
    model_path: str = Field(
        "models/identity_model.json", description="Where the trained matching model is saved (JSON)."
    )
    blocking_rules: tuple[tuple[str, ...], ...] = Field(
        (
            ("last_name", "date_of_birth"),
            ("first_name", "date_of_birth"),
            ("postcode", "last_name"),
            ("postcode", "first_name"),
            ("postcode", "date_of_birth"),
            ("postcode", "address_line1"),
            ("first_name", "last_name", "city"),
        ),
        description="Candidate pairs for the probabilistic model: records agreeing exactly on all "
        "columns of one rule are compared. Email, phone and declared identifiers always block, and so "
        "do the rules that survive typos (name sounds, name prefixes with parts of the birth date: "
        "crm_pipelines.identity.model.noise_tolerant_rules).",
    )
    max_block_size: int | None = Field(
        50,
        ge=2,
        description="Largest block a name, birth-date or address blocking rule expands: a block of n "
        "records makes n(n-1)/2 candidate pairs, so the few largest blocks grow with the square of the "
        "records. Larger blocks are left to the other rules, counted in the asset metadata "
        "(oversized_blocks). None expands every block. Email, phone and identifiers are bounded by "
        "shared_value_limit instead. Each record then meets at most max_block_size - 1 others per rule, "
        "so scoring grows about linearly with the records (see README, Identity resolution).",
    )
    training_blocking_rules: tuple[tuple[str, ...], ...] = Field(
        (("date_of_birth",), ("first_name", "last_name")),
        description="Blocking rules of the expectation-maximisation passes that estimate m.",
    )
    training_max_pairs: float = Field(
        4e6,
        ge=1e4,
        description="Most record pairs one expectation-maximisation pass trains on: a rule whose blocks "
        "hold more pairs trains on a deterministic sample of whole blocks (at a million people, pairs "
        "sharing first and last name number hundreds of millions).",
    )
    random_seed: int = Field(42, description="Seed of the random sample that estimates u.")
    u_sample_pairs: float = Field(
        3e6, ge=1e4, description="Record pairs sampled at random to estimate u probabilities."
    )
    duckdb_memory_limit: str = Field("4GB", description="Memory limit of the in-process DuckDB engine.")
    duckdb_threads: int | None = Field(None, ge=1, description="DuckDB threads (default: all cores).")

    @field_validator("blocking_rules", "training_blocking_rules")
    @classmethod
    def _known_columns(cls, rules: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        for rule in rules:
            if not rule:
                raise ValueError("a blocking rule needs at least one column")
            unknown = sorted(set(rule) - set(BLOCKABLE_COLUMNS))
            if unknown:
                raise ValueError(
                    f"blocking rule {list(rule)}: unknown column(s) {unknown}; "
                    f"known: {list(BLOCKABLE_COLUMNS)}"
                )
        return rules

    @field_validator("field_priority")
    @classmethod
    def _known_fields(cls, priority: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(priority) - set(GOLDEN_FIELDS))
        if unknown:
            raise ValueError(f"field_priority: unknown field(s) {unknown}; known: {list(GOLDEN_FIELDS)}")
        for field, sources in priority.items():
            bad = [s for s in sources if not re.match(SOURCE_NAME_PATTERN, s)]
            if bad:
                raise ValueError(
                    f"field_priority.{field}: {bad} are not source names ({SOURCE_NAME_PATTERN})"
                )
        return priority

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> IdentitySettings:
        if self.split_threshold < self.match_threshold:
            raise ValueError("split_threshold must be at least match_threshold")
        return self
