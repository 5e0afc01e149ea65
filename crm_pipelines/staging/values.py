"""Vectorized typing of raw text columns: cleaning, timestamps, dates, numbers, booleans.

Every parser takes a cleaned text column (``str`` dtype, null for missing) and returns the typed
column; a value that was present but does not parse comes back null, so callers find the rejects as
``typed.isna() & text.notna()``. Nothing here loops over rows in Python: big frames (millions of
order lines) go through pandas' and Arrow's C parsers, and per-value Python work is done once per
distinct value through :func:`apply_unique`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from crm_pipelines.schema import Column, ColumnType

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Values that mean "nothing here" in any text column (compared case-insensitively after trimming).
PLACEHOLDERS = frozenset(
    {"-", "--", "---", ".", "?", "n/a", "n.a.", "#n/a", "null", "<null>", "none", "(none)", "nil", "nan"}
)
# Characters other than an ASCII capital that Arrow's lower case (pandas' ``str.lower`` of text columns)
# turns into a character of a placeholder: it maps code point by code point, U+0130 (dotted capital I)
# to a plain "i" (a test checks every code point).
_OTHER_CAPITALS = {"i": "\u0130"}
# Every spelling whose lower case is a placeholder: looked up as it is, a column is not lowered first
# (0.21 against 0.30 s for the seven text columns of the 1.25 million order lines of 100,000 people).
PLACEHOLDER_SPELLINGS = frozenset(
    "".join(spelling)
    for placeholder in PLACEHOLDERS
    for spelling in itertools.product(*({c, c.upper(), *_OTHER_CAPITALS.get(c, "")} for c in placeholder))
)

PANDAS_DTYPES: dict[ColumnType, str] = {
    "string": "str",
    "timestamp": "datetime64[us, UTC]",
    "date": "object",  # datetime.date values (None when missing), as the warehouse reads DATE back
    "float": "float64",
    "integer": "Int64",
    "boolean": "boolean",
}

# Formats tried, in order, for dates that are not ISO 8601 (only unambiguous ones: no 01/02/2000).
_FALLBACK_DATE_FORMATS = ("%d.%m.%Y", "%Y/%m/%d", "%Y%m%d")
_TIME_DIRECTIVES = re.compile(r"[ T]?%[HIMSfpzZ].*$")

# Every character str.isspace() accepts: what str.strip(), and so clean_text, trims, and what ``\s``
# matches in Python's re (a test checks the list against Python's).
PYTHON_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The same characters for an RE2 character class (Arrow's regular expressions), whose ``\s`` is ASCII only.
RE2_WHITESPACE = "".join(f"\\x{{{ord(c):x}}}" for c in PYTHON_WHITESPACE)
# RE2 spellings of Python's \d (any decimal digit, \p{Nd}), \s and $ (the end, or before a final
# newline): the timestamp patterns below run in Arrow and must match what Python's re would.
_DIGIT = r"\p{Nd}"
# A trailing UTC offset after a time of day: "...T10:00:00Z", "... 10:00+02:00", "...10:00:00.5-0500".
_ZONE_SUFFIX = (
    rf"[T ]{_DIGIT}{{1,2}}:{_DIGIT}{{2}}(?::{_DIGIT}{{2}}(?:[.,]{_DIGIT}+)?)?[{RE2_WHITESPACE}]*"
    rf"(?:[Zz]|[+-]{_DIGIT}{{2}}(?::?{_DIGIT}{{2}})?)\n?$"
)
# Digits past the microseconds (pandas would parse in nanoseconds, whose range ends in 2262).
_SUB_MICROSECONDS = rf"([.,]{_DIGIT}{{6}}){_DIGIT}+"

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "ja", "j", "wahr", "x"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "nein", "falsch"})


def null_text(length: int, index: pd.Index | None = None) -> pd.Series:
    """An all-null text column."""
    import numpy as np
    import pandas as pd
    return pd.Series(np.full(length, np.nan, dtype=object), index=index, dtype="str")


def clean_text(values: pd.Series) -> tuple[pd.Series, int]:
    """Trimmed text with blanks and placeholders (``n/a``, ``-``, ``null``) as null.

    Returns the cleaned column and how many placeholders were turned into null (blanks are not
    counted: an empty cell is simply missing).
    """
    text = values.astype("str").str.strip()
    blank = text.eq("")
    placeholder = text.isin(PLACEHOLDER_SPELLINGS)
    return text.mask(blank | placeholder), int(placeholder.sum())


def collapse_whitespace(text: pd.Series) -> pd.Series:
    """Runs of whitespace inside a value as one space."""
    return replace_regex(text, f"[{RE2_WHITESPACE}]+", " ")


def _matches(text: pd.Series, pattern: str) -> pd.Series:
    """Whether the RE2 ``pattern`` matches somewhere in each value (False for null), in Arrow."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    values = pa.array(text, type=pa.large_string(), from_pandas=True)
    found = pc.match_substring_regex(values, pattern).fill_null(False)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=text.index, dtype=bool)


def replace_regex(text: pd.Series, pattern: str, replacement: str) -> pd.Series:
    """Every match of the RE2 ``pattern`` replaced, in Arrow: pandas runs a regular expression through
    Python's ``re`` value by value (about 4x slower on the customers' address columns)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    values = pa.array(text, type=pa.large_string(), from_pandas=True)
    return pd.Series(pc.replace_substring_regex(values, pattern, replacement), index=text.index, dtype="str")


def apply_unique(values: pd.Series, function: Callable[[str], Any]) -> tuple[np.ndarray, np.ndarray]:
    """``function`` applied once per distinct non-null value.

    Returns the row codes (index into the results) and the results, whose last entry is None for
    null rows. This is the per-value cache of staging: a million orders in three currencies cost
    three calls (:func:`crm_pipelines.staging.contacts.judge` also takes a function of all distinct
    values at once).
    """
    import numpy as np
    import pandas as pd
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    results = np.empty(len(uniques) + 1, dtype=object)
    results[: len(uniques)] = [function(u) for u in uniques]
    results[-1] = None
    return codes, results  # code -1 (null) picks the trailing None


def map_unique(values: pd.Series, function: Callable[[str], Any]) -> np.ndarray:
    """``function`` of each value, computed once per distinct value; an object array (None for null)."""
    codes, results = apply_unique(values, function)
    return results[codes]


def changed(before: pd.Series, after: pd.Series) -> int:
    """How many present values normalization changed (a value nulled as junk is counted elsewhere)."""
    return int((after.notna() & before.ne(after)).sum())


# -- timestamps ---------------------------------------------------------------------------------
def parse_timestamps(text: pd.Series, timestamp_format: str | None, timezone: str) -> pd.Series:
    """Timestamps as ``datetime64[us, UTC]``; naive values are local time in ``timezone``.

    Without a format, ISO 8601 in any of its common shapes (date only, space or ``T``, fractions,
    ``Z`` or an offset). With a format, values that do not match it still get the ISO 8601 parser, as
    exports often mix both. In the hour a daylight-saving change repeats, the standard-time reading
    wins; a time skipped by the change moves forward to the first valid instant.
    """
    import pandas as pd
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    present = text.notna()
    if not present.any():
        return result
    # Sub-microsecond digits would make pandas parse in nanoseconds, whose range ends in 2262.
    values = replace_regex(text[present], _SUB_MICROSECONDS, r"\1")
    if timestamp_format:
        parsed = _parse_with_format(values, timestamp_format, timezone)
        failed = parsed.isna()
        if failed.any():
            parsed[failed] = _parse_iso(values[failed], timezone)
    else:
        parsed = _parse_iso(values, timezone)
    result[present] = parsed
    return result


def _parse_iso(values: pd.Series, timezone: str) -> pd.Series:
    import pandas as pd
    if timezone == "UTC":
        # Naive values are UTC already: one pass of pandas' C parser handles both kinds.
        return _as_us(pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce"))
    zoned = _matches(values, _ZONE_SUFFIX)
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if zoned.any():
        result[zoned] = _as_us(pd.to_datetime(values[zoned], format="ISO8601", utc=True, errors="coerce"))
    naive = values[~zoned]
    if len(naive):
        try:
            local = pd.to_datetime(naive, format="ISO8601", errors="coerce")
        except ValueError:  # an offset the pattern missed: those values cannot be read as local time
            local = pd.to_datetime(naive, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
        result[~zoned] = _localize(local, timezone)
    return result


def _parse_with_format(values: pd.Series, timestamp_format: str, timezone: str) -> pd.Series:
    import pandas as pd
    if "%z" in timestamp_format or "%Z" in timestamp_format:
        return _as_us(pd.to_datetime(values, format=timestamp_format, utc=True, errors="coerce"))
    local = pd.to_datetime(values, format=timestamp_format, errors="coerce")
    return _localize(local, timezone)


def _localize(local: pd.Series, timezone: str) -> pd.Series:
    import numpy as np
    if local.dt.tz is not None:
        return _as_us(local.dt.tz_convert("UTC"))
    standard_time = np.zeros(len(local), dtype=bool)
    zoned = local.dt.tz_localize(timezone, ambiguous=standard_time, nonexistent="shift_forward")
    return _as_us(zoned.dt.tz_convert("UTC"))


def _as_us(values: pd.Series) -> pd.Series:
    return values.dt.as_unit("us")


def as_utc_timestamp(value: dt.datetime | pd.Timestamp) -> pd.Timestamp:
    """A point in time as a UTC timestamp; a naive value is taken to be UTC."""
    import pandas as pd
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# -- dates --------------------------------------------------------------------------------------
def parse_dates(text: pd.Series, timestamp_format: str | None = None) -> pd.Series:
    """Calendar dates as naive ``datetime64[s]`` at midnight (see :func:`to_date_objects`).

    ISO 8601 (``1980-05-17``, also with a time part, which is dropped without any timezone shift),
    then the date part of the source's timestamp format, then ``17.05.1980``, ``1980/05/17`` and
    ``19800517``. Ambiguous forms such as ``05/06/1980`` need the source's ``timestamp_format``.
    """
    import pandas as pd
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[s]")
    remaining = text.notna()
    if not remaining.any():
        return result
    iso = text.str.extract(r"^(\d{4}-\d{1,2}-\d{1,2})(?:$|[T ])", expand=False)
    formats: list[tuple[pd.Series, str]] = [(iso, "%Y-%m-%d")]
    candidates = [*_date_formats(timestamp_format), *_FALLBACK_DATE_FORMATS]
    formats += [(text, f) for f in dict.fromkeys(candidates)]
    for source, date_format in formats:
        todo = remaining & source.notna()
        if not todo.any():
            continue
        parsed = pd.to_datetime(source[todo], format=date_format, errors="coerce")
        parsed = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
        ok = parsed.notna()
        result[ok[ok].index] = parsed[ok].dt.floor("D").astype("datetime64[s]")
        remaining[ok[ok].index] = False
        if not remaining.any():
            break
    return result


def _date_formats(timestamp_format: str | None) -> list[str]:
    if not timestamp_format:
        return []
    date_part = _TIME_DIRECTIVES.sub("", timestamp_format).strip()
    return [f for f in (date_part, timestamp_format) if f and "%" in f]


def to_date_objects(dates: pd.Series) -> pd.Series:
    """``datetime.date`` values (None when missing): the form the warehouse's DATE columns read back as."""
    import numpy as np
    import pandas as pd
    objects = np.full(len(dates), None, dtype=object)
    present = dates.notna().to_numpy()
    if present.any():
        objects[present] = dates[present].dt.date.to_numpy()
    return pd.Series(objects, index=dates.index, dtype=object)


def date_bound(value: dt.date) -> pd.Timestamp:
    """A date as the naive midnight timestamp :func:`parse_dates` compares against."""
    import pandas as pd
    return pd.Timestamp(value)


# -- numbers and booleans -----------------------------------------------------------------------
def parse_numbers(text: pd.Series) -> pd.Series:
    """Finite floats; anything else that was present (``12,50``, ``inf``, ``abc``) becomes NaN."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    try:
        # Arrow's cast is an order of magnitude faster than to_numeric, but all-or-nothing.
        cast = pc.cast(pa.array(text, type=pa.large_string(), from_pandas=True), pa.float64())
        numbers = pd.Series(cast.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    return numbers.where(np.isfinite(numbers))


def whole_numbers(numbers: pd.Series) -> pd.Series:
    """Mask of values that are whole numbers (``3``, ``3.0``); False for fractions and NaN."""
    import numpy as np
    return numbers.notna() & numbers.eq(np.floor(numbers))


def parse_booleans(text: pd.Series) -> pd.Series:
    """``boolean`` from yes/no words (true, yes, 1, ja / false, no, 0, nein); others null."""
    import pandas as pd
    words = text.str.lower()
    result = pd.Series(pd.NA, index=text.index, dtype="boolean")
    result[words.isin(TRUE_WORDS)] = True
    result[words.isin(FALSE_WORDS)] = False
    return result


# -- frames ---------------------------------------------------------------------------------------
def typed_frame(columns: Sequence[Column], data: dict[str, Any], length: int) -> pd.DataFrame:
    """A frame with exactly ``columns`` in order and their pandas dtypes; absent columns are null."""
    import pandas as pd
    out: dict[str, pd.Series] = {}
    index = pd.RangeIndex(length)
    for column in columns:
        values = data.get(column.name)
        dtype = PANDAS_DTYPES[column.dtype]
        if values is None:
            values = pd.Series([None] * length, index=index, dtype=object)
        elif isinstance(values, pd.Series):
            values = values.reset_index(drop=True)
        else:
            values = pd.Series(values, index=index)
        if column.dtype == "date":
            if pd.api.types.is_datetime64_any_dtype(values.dtype):
                values = to_date_objects(values)
            out[column.name] = values.astype(object).where(values.notna(), None)
        else:
            out[column.name] = values.astype(dtype)
    return pd.DataFrame(out, index=index)
