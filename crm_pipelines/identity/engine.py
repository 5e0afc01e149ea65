"""The in-process DuckDB engine identity resolution computes in.

Resolution is set-based work over every customer record, so it runs as SQL in an in-memory DuckDB
(Splink's backend too), with a memory limit so a large run spills instead of exhausting the host.
Nothing here reads or writes the warehouse: frames come in, frames go out.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pandas as pd
import pyarrow as pa

from crm_pipelines.identity.settings import IdentitySettings

_MEMORY_LIMIT = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)

# Text folding shared by every normalized matching column: lower case, German umlauts spelled out
# (so Müller and Mueller agree), other accents stripped, punctuation and runs of blanks collapsed.
_MACROS = (
    r"""
    CREATE OR REPLACE MACRO fold_text(s) AS nullif(trim(regexp_replace(strip_accents(
        replace(replace(replace(replace(lower(s), 'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss')),
        '[^a-z0-9]+', ' ', 'g')), '')
    """,
    r"""
    CREATE OR REPLACE MACRO fold_name(s) AS
        nullif(trim(regexp_replace(fold_text(s), '[^a-z ]+', ' ', 'g')), '')
    """,
    # Street spellings: Hauptstraße, Hauptstrasse, Hauptstr. all become "hauptstr".
    r"""
    CREATE OR REPLACE MACRO fold_address(s) AS
        regexp_replace(fold_text(s), 'strasse\b', 'str', 'g')
    """,
)


def within_one_edit_sql(a: str, b: str) -> str:
    """SQL true when ``a`` and ``b`` are at most one edit apart (Damerau-Levenshtein <= 1: one
    letter wrong, added, dropped, or two neighbours swapped), NULL when either is NULL.

    The same answer as ``damerau_levenshtein(a, b) <= 1``, several times faster on pairs that
    differ: DuckDB's Damerau-Levenshtein costs about six times its Levenshtein, and one edit apart
    implies byte lengths at most one apart and a Levenshtein distance of at most two (a swap of
    neighbours is two Levenshtein edits). DuckDB evaluates the conjunction left to right on the rows
    still true, so the costly distance runs only on the few near pairs. Random record pairs, which
    train the model's u probabilities, are almost all far apart.
    """
    return (
        f"(abs(strlen({a}) - strlen({b})) <= 1 AND levenshtein({a}, {b}) <= 2 AND damerau_levenshtein({a}, {b}) <= 1)"
    )


@contextmanager
def duckdb_session(settings: IdentitySettings) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with the settings' limits and the folding macros."""
    if not _MEMORY_LIMIT.match(settings.duckdb_memory_limit.strip()):
        raise ValueError(f"identity.duckdb_memory_limit: {settings.duckdb_memory_limit!r} is not a size such as '4GB'")
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{settings.duckdb_memory_limit.strip()}'")
        if settings.duckdb_threads:
            con.execute(f"SET threads = {int(settings.duckdb_threads)}")
        for macro in _MACROS:
            con.execute(macro)
        yield con
    finally:
        con.close()


def register_frame(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    """Materialize a pandas frame as a DuckDB table (a copy, so later frame changes do not leak in).

    The frame goes through Arrow: pandas' Arrow-backed strings then cross without a Python object
    per value, about three times faster than scanning the frame itself.
    """
    view = f"__frame_{name}"
    try:
        source: pa.Table | pd.DataFrame = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        source = frame  # mixed-type object columns: let DuckDB infer
    con.register(view, source)
    try:
        con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM "{view}"')
    finally:
        con.unregister(view)


def fetch_frame(con: duckdb.DuckDBPyConnection, sql: str, parameters: object = None) -> pd.DataFrame:
    """Run a query and return a pandas frame, through Arrow (several times faster than ``.df()``)."""
    relation = con.execute(sql, parameters) if parameters is not None else con.execute(sql)
    return relation.to_arrow_table().to_pandas()


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports ``ru_maxrss`` in KB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Stopwatch:
    """Seconds per stage of a run, and the process's peak memory when each stage ended, for its
    metadata; each stage is logged as it ends, so an operator watching a long run sees where it is
    (the first stage whose peak reaches the run's peak is the one that set it)."""

    def __init__(self, run: str = "identity") -> None:
        self.run = run
        self.started = self._last = time.perf_counter()
        self.stages: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + now - self._last, 2)
        self.peak_mb[stage] = peak_rss_mb()
        self._last = now
        logging.getLogger(__name__).info(
            "%s stage %s: %.2f s, peak memory %.0f MB", self.run, stage, self.stages[stage], self.peak_mb[stage]
        )

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.started, 2)
