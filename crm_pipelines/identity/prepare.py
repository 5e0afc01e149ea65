"""Turn staged customer records into the tables matching works on.

``records`` holds one row per (source, source_record_id) with the staged values, typed, and a dense
``unique_id`` assigned in key order, so ids never depend on the order rows arrive in.
``match_records`` holds the normalized values the model compares, with junk and over-shared values
removed: a placeholder email, a repeated-digit phone or a loyalty card printed on a hundred records
is no evidence that two records are one person, so it is blanked before blocking ever sees it.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import jellyfish
import numpy as np
import pandas as pd
import pyarrow as pa

from crm_pipelines.identity.engine import fetch_frame, register_frame
from crm_pipelines.identity.guard import given_name_roots
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.schema import CUSTOMERS

DEFAULT_SOURCE_PRIORITY = 100
_TIMESTAMP_COLUMNS = ("created_at", "updated_at")
_STAGED_COLUMNS = ("source", *CUSTOMERS.column_names, "record_kind")
IDENTIFIER_COLUMNS = ("source", "source_record_id", "identifier_type", "identifier_value")


def _timestamps(values: pd.Series) -> pd.Series:
    """Naive UTC timestamps, whatever staging delivered (naive, zone-aware, text)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values
    return pd.to_datetime(values, errors="coerce", utc=True).dt.tz_localize(None)


def _typed_customers(customers: pd.DataFrame) -> pd.DataFrame:
    """The staged columns, all present, with dates and timestamps typed (staging may deliver text)."""
    missing = [c for c in ("source", "source_record_id") if c not in customers.columns]
    if missing:
        raise ValueError(f"staged customers lack required column(s) {missing}")
    columns: dict[str, pd.Series] = {}
    for column in _STAGED_COLUMNS:
        values = (
            customers[column]
            if column in customers.columns
            else pd.Series(None, index=customers.index, dtype="str")
        )
        if column in _TIMESTAMP_COLUMNS or column == "date_of_birth":
            values = _timestamps(values)
        elif not isinstance(values.dtype, pd.StringDtype):
            values = values.astype("str").where(values.notna(), None)
        columns[column] = values
    if "_is_new" in customers.columns:
        columns["_is_new"] = customers["_is_new"].astype(bool)
    return pd.DataFrame(columns)


def load_records(
    con: duckdb.DuckDBPyConnection,
    customers: pd.DataFrame,
    source_priority: Mapping[str, int] | None,
    *,
    first_unique_id: int = 0,
    unique_ids_from: str | None = None,
) -> int:
    """Add to ``records``: one row per key, 'record' rows over 'referenced' stubs, latest first.

    A stub naming only an id is the same key as the source's own record, so deduplicating by key is
    what links it; a stub whose record does not exist stays alone. Records are numbered in key
    order from ``first_unique_id``, or take their unique_id from the table ``unique_ids_from``
    (source, source_record_id, unique_id). Returns the number of records added (one per key).
    """
    register_frame(con, "input_customers", _typed_customers(customers))
    priorities = pd.DataFrame(
        {"source": list((source_priority or {}).keys()), "priority": list((source_priority or {}).values())}
    ).astype({"source": "str", "priority": "int64"})
    register_frame(con, "source_priorities", priorities)
    if unique_ids_from:
        numbered = (
            f"SELECT u.unique_id, k.* FROM kept AS k "
            f"JOIN {unique_ids_from} AS u USING (source, source_record_id)"
        )
    else:
        numbered = (
            f"SELECT ({first_unique_id} + row_number() OVER (ORDER BY source, source_record_id) - 1)::BIGINT "
            "AS unique_id, * FROM kept"
        )
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS records AS
        SELECT 0::BIGINT AS unique_id, * EXCLUDE (rank_in_key) FROM (
            SELECT *, 0 AS priority, 0 AS rank_in_key FROM input_customers) WHERE false
        """
    )
    before = int(con.execute("SELECT count(*) FROM records").fetchall()[0][0])
    con.execute(
        f"""
        INSERT INTO records BY NAME
        WITH ranked AS (
            SELECT c.* EXCLUDE (email),
                   coalesce(c.email, CASE WHEN c.source_record_id LIKE 'email:%'
                                          THEN lower(substr(c.source_record_id, 7)) END) AS email,
                   coalesce(p.priority, {DEFAULT_SOURCE_PRIORITY}) AS priority,
                   row_number() OVER (
                       PARTITION BY c.source, c.source_record_id
                       ORDER BY coalesce(c.record_kind, 'record') = 'referenced',
                                c.updated_at DESC NULLS LAST, c.created_at DESC NULLS LAST,
                                c.email NULLS LAST, c.first_name NULLS LAST
                   ) AS rank_in_key
            FROM input_customers AS c LEFT JOIN source_priorities AS p USING (source)
            WHERE c.source IS NOT NULL AND c.source_record_id IS NOT NULL
        ),
        kept AS (SELECT * EXCLUDE (rank_in_key) FROM ranked WHERE rank_in_key = 1)
        {numbered}
        """
    )
    con.execute("DROP TABLE input_customers")
    return int(con.execute("SELECT count(*) FROM records").fetchall()[0][0]) - before


MATCH_STATE_COLUMNS = (
    "source",
    "source_record_id",
    "first_name",
    "last_name",
    "date_of_birth",
    "address_line1",
    "postcode",
    "city",
    "gender",
    "email",
    "phone",
    "identifier_keys",
)
"""Columns of the matching state: each record's normalized, junk-free matching values."""


def clean_records(
    con: duckdb.DuckDBPyConnection,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
) -> dict[str, int]:
    """Create ``cleaned`` from ``records``: normalized matching values with junk values removed.

    Returns how many values were blanked as junk, for the run's metadata.
    """
    ident = identifiers if identifiers is not None else pd.DataFrame(columns=list(IDENTIFIER_COLUMNS))
    missing = [c for c in IDENTIFIER_COLUMNS if c not in ident.columns]
    if missing:
        raise ValueError(f"customer identifiers lack column(s) {missing}")
    ident = ident[list(IDENTIFIER_COLUMNS)].astype("str")
    register_frame(con, "input_identifiers", ident)
    email_pattern = "|".join(f"(?:{p})" for p in settings.junk_email_patterns) or "^$"
    # Junk names are compared as folded as the names themselves ("N/A" and "n. a." alike).
    junk_names = con.execute(
        "SELECT coalesce(list(DISTINCT folded), []) FROM (SELECT fold_name(unnest($names)) AS folded) "
        "WHERE folded IS NOT NULL",
        {"names": list(settings.junk_names)},
    ).fetchall()[0][0]
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE identifier_lists AS
        SELECT r.unique_id,
               list(DISTINCT lower(trim(i.identifier_type)) || ':' || upper(trim(i.identifier_value)))
                   FILTER (WHERE NOT list_contains($junk, upper(trim(i.identifier_value))))
                   AS identifier_keys,
               count(*) FILTER (WHERE list_contains($junk, upper(trim(i.identifier_value)))) AS junk
        FROM input_identifiers AS i
        JOIN records AS r ON r.source = i.source AND r.source_record_id = i.source_record_id
        WHERE nullif(trim(i.identifier_value), '') IS NOT NULL AND i.identifier_value <> 'nan'
          AND nullif(trim(i.identifier_type), '') IS NOT NULL
        GROUP BY r.unique_id
        """,
        {"junk": [v.upper() for v in settings.junk_identifiers]},
    )
    # Names, cities and streets are folded once per distinct value (about 2,400 given names, 3,800
    # surnames and 24,000 streets among 215,000 records) and joined back: folding is a chain of
    # replacements and regular expressions, the same for every record holding the value.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE cleaned AS
        WITH folded_names AS (
            SELECT value, fold_name(value) AS folded FROM (
                SELECT first_name AS value FROM records UNION SELECT last_name FROM records
                UNION SELECT city FROM records)
            WHERE value IS NOT NULL
        ),
        folded_addresses AS (
            SELECT value, fold_address(value) AS folded FROM (SELECT DISTINCT address_line1 AS value FROM records)
            WHERE value IS NOT NULL
        ),
        normalized AS (
            SELECT r.unique_id, r.source, r.source_record_id,
                   f.folded AS first_name_raw,
                   l.folded AS last_name_raw,
                   strftime(r.date_of_birth, '%Y-%m-%d') AS date_of_birth_raw,
                   a.folded AS address_line1,
                   nullif(upper(replace(r.postcode, ' ', '')), '') AS postcode,
                   c.folded AS city,
                   nullif(lower(trim(r.email)), '') AS email_raw,
                   nullif(regexp_replace(trim(r.phone), '[^+0-9]', '', 'g'), '') AS phone_raw,
                   CASE WHEN lower(trim(r.gender)) IN ('female', 'male') THEN lower(trim(r.gender)) END AS gender
            FROM records AS r
            LEFT JOIN folded_names AS f ON f.value = r.first_name
            LEFT JOIN folded_names AS l ON l.value = r.last_name
            LEFT JOIN folded_names AS c ON c.value = r.city
            LEFT JOIN folded_addresses AS a ON a.value = r.address_line1
        )
        SELECT n.unique_id, n.source, n.source_record_id,
               CASE WHEN NOT list_contains($junk_names, first_name_raw) THEN first_name_raw END AS first_name,
               CASE WHEN NOT list_contains($junk_names, last_name_raw) THEN last_name_raw END AS last_name,
               CASE WHEN NOT list_contains($junk_dates, date_of_birth_raw)
                         AND date_of_birth_raw BETWEEN '1900-01-01' AND strftime(current_date, '%Y-%m-%d')
                    THEN date_of_birth_raw END AS date_of_birth,
               address_line1, postcode, city, gender,
               CASE WHEN NOT list_contains($junk_emails, email_raw)
                         AND NOT regexp_matches(email_raw, $email_pattern) THEN email_raw END AS email,
               CASE WHEN NOT list_contains($junk_phones, phone_raw)
                         AND NOT regexp_matches(phone_raw, $phone_pattern)
                         AND len(list_distinct(string_split(right(phone_raw, 8), ''))) > 1
                    THEN phone_raw END AS phone,
               CASE WHEN len(i.identifier_keys) > 0 THEN list_sort(i.identifier_keys) END AS identifier_keys,
               (first_name_raw IS NOT NULL AND list_contains($junk_names, first_name_raw))::INT
                 + (last_name_raw IS NOT NULL AND list_contains($junk_names, last_name_raw))::INT
                 AS junk_names,
               coalesce(i.junk, 0) AS junk_identifiers,
               email_raw, phone_raw
        FROM normalized AS n LEFT JOIN identifier_lists AS i USING (unique_id)
        """,
        {
            "junk_names": junk_names,
            "junk_dates": list(settings.junk_dates_of_birth),
            "junk_emails": [e.lower() for e in settings.junk_emails],
            "email_pattern": email_pattern,
            "junk_phones": list(settings.junk_phones),
            "phone_pattern": settings.junk_phone_pattern,
        },
    )
    stats = con.execute(
        """
        SELECT sum(junk_names), count(email_raw) - count(email), count(phone_raw) - count(phone),
               sum(junk_identifiers)
        FROM cleaned
        """
    ).fetchall()[0]
    con.execute("ALTER TABLE cleaned DROP COLUMN junk_names")
    con.execute("ALTER TABLE cleaned DROP COLUMN junk_identifiers")
    con.execute("ALTER TABLE cleaned DROP COLUMN email_raw")
    con.execute("ALTER TABLE cleaned DROP COLUMN phone_raw")
    for table in ("identifier_lists", "input_identifiers"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    keys = ("junk_names", "junk_emails", "junk_phones", "junk_identifiers")
    return {key: int(value or 0) for key, value in zip(keys, stats, strict=True)}


def register_state(con: duckdb.DuckDBPyConnection, state: pd.DataFrame | pa.Table, name: str) -> None:
    """Register a matching state (``MATCH_STATE_COLUMNS``) as table ``name``, numbered by position,
    identifier keys back as lists.

    An Arrow table (as the warehouse hands it over) goes in as it is: through pandas, the state of
    every existing record was converted twice on each night (about 0.4 s at 216,000 records)."""
    names = state.column_names if isinstance(state, pa.Table) else list(state.columns)
    missing = [c for c in MATCH_STATE_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"the matching state lacks column(s) {missing}; pass IdentityResult.match_records")
    if isinstance(state, pa.Table):
        numbered = state.select(list(MATCH_STATE_COLUMNS)).append_column(
            "unique_id", pa.array(np.arange(state.num_rows, dtype=np.int64))
        )
        con.register(f"{name}_input", numbered)
    else:
        frame = state[list(MATCH_STATE_COLUMNS)].assign(unique_id=np.arange(len(state), dtype=np.int64))
        register_frame(con, f"{name}_input", frame)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TABLE {name} AS
            SELECT unique_id, * EXCLUDE (unique_id) REPLACE (
                   CASE WHEN nullif(identifier_keys, '') IS NOT NULL
                        THEN string_split(identifier_keys, '|') END AS identifier_keys)
            FROM {name}_input
            """
        )
    finally:
        if isinstance(state, pa.Table):
            con.unregister(f"{name}_input")
        else:
            con.execute(f"DROP TABLE {name}_input")


def fetch_state(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> pd.DataFrame:
    """The matching state of cleaned tables (one flat row per record) for the next incremental run."""
    columns = ", ".join(c for c in MATCH_STATE_COLUMNS if c != "identifier_keys")
    union = " UNION ALL ".join(
        f"SELECT {columns}, array_to_string(identifier_keys, '|') AS identifier_keys FROM {t}" for t in tables
    )
    return fetch_frame(con, f"{union} ORDER BY source, source_record_id")


def build_match_records(
    con: duckdb.DuckDBPyConnection, settings: IdentitySettings, tables: tuple[str, ...] = ("cleaned",)
) -> dict[str, int]:
    """Create ``match_records`` from cleaned tables, blanking values shared by too many records.

    An email, phone or identifier carried by more than ``shared_value_limit`` records (a shop's
    default address, a call centre's number) is evidence of nothing. Returns how many distinct
    values were blanked as shared.
    """
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM {t}" for t in tables)
    limit = {"limit": settings.shared_value_limit}
    # Sub-addressing: anna+shop@mail.de reaches anna@mail.de's mailbox, so it is the same address.
    con.execute(
        "CREATE OR REPLACE TEMP VIEW all_cleaned AS SELECT * REPLACE ("
        f"regexp_replace(email, '\\+[^@]*@', '@') AS email) FROM ({union})"
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE shared_values AS
        SELECT 'email' AS kind, email AS value FROM all_cleaned WHERE email IS NOT NULL
            GROUP BY email HAVING count(*) > $limit
        UNION ALL SELECT 'phone', phone FROM all_cleaned WHERE phone IS NOT NULL
            GROUP BY phone HAVING count(*) > $limit
        UNION ALL SELECT 'identifier', key FROM (SELECT unnest(identifier_keys) AS key FROM all_cleaned)
            GROUP BY key HAVING count(*) > $limit
        """,
        limit,
    )
    shared = dict(con.execute("SELECT kind, count(*) FROM shared_values GROUP BY kind").fetchall())
    # The blanked values, the name keys and the inferred gender are views and joins of one statement:
    # each written as a table of its own (sorted by unique_id), they rewrote every record three
    # times (about a second at 216,000 records, in a night as in a first run).
    if shared:
        con.execute(
            """
            CREATE OR REPLACE TEMP VIEW match_values AS
            WITH kept_identifiers AS (
                SELECT unique_id, list(key ORDER BY key) AS identifier_keys
                FROM (SELECT unique_id, unnest(identifier_keys) AS key FROM all_cleaned)
                WHERE key NOT IN (SELECT value FROM shared_values WHERE kind = 'identifier')
                GROUP BY unique_id
            )
            SELECT c.* REPLACE (
                CASE WHEN c.email IN (SELECT value FROM shared_values WHERE kind = 'email') THEN NULL
                     ELSE c.email END AS email,
                CASE WHEN c.phone IN (SELECT value FROM shared_values WHERE kind = 'phone') THEN NULL
                     ELSE c.phone END AS phone,
                k.identifier_keys AS identifier_keys)
            FROM all_cleaned AS c LEFT JOIN kept_identifiers AS k USING (unique_id)
            """
        )
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW match_values AS SELECT * FROM all_cleaned")
    con.register("name_keys_input", name_keys(con, "match_values"))
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TABLE match_records AS
            WITH {_NAME_GENDER_SQL}
            SELECT m.* REPLACE (coalesce(m.gender, g.gender) AS gender),
                   f.sound AS first_name_sound, l.sound AS last_name_sound, f.roots AS first_name_roots
            FROM match_values AS m
            LEFT JOIN name_keys_input AS f ON f.name = m.first_name
            LEFT JOIN name_keys_input AS l ON l.name = m.last_name
            LEFT JOIN name_gender AS g ON g.first_name = m.first_name
            ORDER BY m.unique_id
            """,
            {"min_records": GENDER_FROM_NAME_MIN_RECORDS, "min_share": GENDER_FROM_NAME_MIN_SHARE},
        )
    finally:
        con.unregister("name_keys_input")
    con.execute("DROP VIEW match_values")
    con.execute("DROP VIEW all_cleaned")
    return {f"shared_{kind}s": int(shared.get(kind, 0)) for kind in ("email", "phone", "identifier")}


GENDER_FROM_NAME_MIN_RECORDS = 5
GENDER_FROM_NAME_MIN_SHARE = 0.95


_NAME_GENDER_SQL = """
    counted AS (
        SELECT first_name, gender, count(*) AS n FROM match_values
        WHERE length(first_name) > 1 AND gender IS NOT NULL GROUP BY first_name, gender
    ),
    name_gender AS (
        SELECT first_name, arg_max(gender, n) AS gender FROM counted GROUP BY first_name
        HAVING sum(n) >= $min_records AND max(n) >= $min_share * sum(n)
    )
"""
"""A record without a recorded gender takes the gender its given name has in these records.

A shop or an email tool rarely asks for a gender, a CRM often does: the household guard can only
tell Klaus from the wife on the family landline when both records say who they are. A name counts
when at least ``GENDER_FROM_NAME_MIN_RECORDS`` records carrying it record a gender and
``GENDER_FROM_NAME_MIN_SHARE`` of them agree, so a name used for both (Kim, Andrea, Sam) and a name
seen too rarely give nothing. Learned from the data at hand, not a shipped list: the same name can be
a man's in one country and a woman's in another. Only matching uses it; golden records keep what
the sources recorded. (The CTEs :func:`build_match_records` joins ``match_values`` to.)
"""


NAME_KEY_COLUMNS = ("first_name_sound", "last_name_sound", "first_name_roots")
"""Keys derived from the folded names of ``match_records`` on every run (not part of the matching
state): the names' sounds, for blocking, and the full names a given name is short for, which the
model compares (Bill and William agree as a nickname, not as a typo)."""


def name_sound(name: str) -> str | None:
    """The Soundex key of a folded name: Schmidt, Schmitt and Shmidt share S530, Katharina and
    Katahrina K365, so a typo that keeps the sound keeps the pair a candidate. Soundex rather than
    Metaphone: Metaphone tells Schmidt (SXMTT) from Schmitt (SXMT), which is what blocking must not."""
    return jellyfish.soundex(name) or None


def name_keys(con: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
    """:data:`NAME_KEY_COLUMNS` per distinct folded name of ``table`` (name, sound, roots), which
    :func:`build_match_records` joins to ``match_records``.

    Keys are computed once per distinct name (a few ten thousand at a million records) and joined
    back, so the cost does not grow with the records.
    """
    names = sorted(
        {
            row[0]
            for column in ("first_name", "last_name")
            for row in con.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()
        }
    )
    roots = given_name_roots()
    return pa.table(
        {
            "name": pa.array(names, pa.string()),
            "sound": pa.array([name_sound(n) for n in names], pa.string()),
            "roots": pa.array(
                [sorted(roots[n]) if n in roots else None for n in names], pa.list_(pa.string())
            ),
        }
    )
