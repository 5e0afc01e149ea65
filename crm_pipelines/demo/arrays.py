"""Vectorized building blocks: seeded random streams, grouped sampling, Arrow string assembly, timestamps.

Times are int64 seconds since the Unix epoch (UTC) everywhere inside the generator; they become strings
only when a file is written, in the format that source system uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY = 86_400
HOUR = 3_600
NULL_STRING = pa.scalar(None, pa.string())

# Relative shopping activity per hour of the day (UTC).
_SHOPPING_BY_HOUR = np.array(
    "1 .6 .4 .3 .3 .5 1.2 2.5 3.5 4 4.5 5 5.5 5 4.5 4.5 4.8 5.5 6.5 7.5 7.5 6 4 2".split(), dtype=float
)

# Streams keep each part of the data independent: changing how tickets are drawn leaves orders alone.
_STREAMS = ("population", "crm", "shop", "orders", "email", "support", "surveys")


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """The random stream for one part of the data (population, crm, shop, ...) under ``seed``."""
    return np.random.default_rng([seed, _STREAMS.index(stream)])


def weighted_index(rng: np.random.Generator, weights: Sequence[float], size: int) -> np.ndarray:
    """Draw ``size`` indices into ``weights`` (normalized here)."""
    cumulative = np.cumsum(np.asarray(weights, dtype=float))
    return np.searchsorted(cumulative / cumulative[-1], rng.random(size), side="right").astype(np.int32)


def grouped_index(
    rng: np.random.Generator, group: np.ndarray, weights_by_group: Sequence[Sequence[float]]
) -> np.ndarray:
    """For each row, an index into its own group's weights, drawn in one vectorized pass.

    The groups' cumulative distributions are laid end to end, each shifted by its group number, so one
    ``searchsorted`` over ``group + u`` finds every row's choice.
    """
    offsets = np.zeros(len(weights_by_group) + 1, dtype=np.int64)
    flat = []
    for g, weights in enumerate(weights_by_group):
        w = np.asarray(weights, dtype=float)
        cumulative = np.cumsum(w) / w.sum()
        cumulative[-1] = 1.0
        flat.append(g + cumulative)
        offsets[g + 1] = offsets[g] + len(w)
    positions = np.searchsorted(
        np.concatenate(flat), group + rng.random(len(group)) * (1 - 1e-12), side="right"
    )
    return (positions - offsets[group]).astype(np.int32)


def take(values: Sequence[str] | pa.Array, index: np.ndarray) -> pa.Array:
    """``values[index]`` as an Arrow string array."""
    array = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    return array.take(pa.array(index))


def labels(values: Sequence[str], index: np.ndarray) -> pa.DictionaryArray:
    """Values from a short list, dictionary-encoded: no string copied per row, for tables of millions."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(index, dtype=np.int32)), pa.array(list(values), pa.string())
    )


def concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation; a null part makes the result null."""
    return pc.binary_join_element_wise(*parts, "")


def int_strings(values: np.ndarray, width: int = 0) -> pa.Array:
    """Integers as text, zero-padded to ``width`` when given."""
    text = pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())
    return pc.utf8_lpad(text, width, "0") if width else text


def where(mask: np.ndarray, if_true: pa.Array | pa.Scalar, if_false: pa.Array | pa.Scalar) -> pa.Array:
    """Arrow's if_else with a numpy mask."""
    return pc.if_else(pa.array(mask, pa.bool_()), if_true, if_false)


def null_where(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """``values`` with the masked rows missing."""
    return where(mask, NULL_STRING, values)


def replace_rows(values: pa.Array, rows: np.ndarray, replacements: Sequence[str | None]) -> pa.Array:
    """``values`` with the rows at integer positions ``rows`` replaced, in order."""
    if len(rows) == 0:
        return values
    order = np.argsort(rows, kind="stable")
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    ordered = [replacements[i] for i in order]
    return pc.replace_with_mask(values, pa.array(mask), pa.array(ordered, pa.string()))


def map_rows(values: pa.Array, rows: np.ndarray, change: Callable[[str, int], str]) -> pa.Array:
    """Apply ``change(value, i)`` to the i-th of a few ``rows`` (typos, nicknames); the rest stays as is."""
    if len(rows) == 0:
        return values
    current = values.take(pa.array(rows)).to_pylist()
    return replace_rows(values, rows, [None if v is None else change(v, i) for i, v in enumerate(current)])


def pick_rows(rng: np.random.Generator, size: int, rate: float, minimum: int = 0) -> np.ndarray:
    """A random, sorted set of row positions: about ``rate`` of ``size``, at least ``minimum``."""
    count = min(size, max(minimum, int(rng.binomial(size, rate)) if rate > 0 else 0))
    return np.sort(rng.choice(size, count, replace=False)) if count else np.zeros(0, dtype=np.int64)


def diurnal_seconds(rng: np.random.Generator, size: int) -> np.ndarray:
    """Seconds into the day, shaped like online shopping: quiet nights, a lunch bump, busy evenings (UTC)."""
    hourly = _SHOPPING_BY_HOUR
    hours = weighted_index(rng, hourly, size)
    return hours.astype(np.int64) * HOUR + rng.integers(0, HOUR, size)


def at_time_of_day(rng: np.random.Generator, seconds: np.ndarray) -> np.ndarray:
    """Move each timestamp to a plausible time on the same day."""
    return (seconds // DAY) * DAY + diurnal_seconds(rng, len(seconds))


def _as_datetimes(seconds: np.ndarray, missing: np.ndarray | None) -> pa.Array:
    stamps = np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")
    return pa.array(stamps, mask=missing)


def timestamp_strings(seconds: np.ndarray, missing: np.ndarray | None = None, iso: bool = False) -> pa.Array:
    """``2025-03-01 14:02:11`` (naive UTC, as SQL databases and CSV exports write it), or with ``iso``
    ``2025-03-01T14:02:11Z`` (as JSON APIs and SaaS exports write it)."""
    text = _as_datetimes(seconds, missing).cast(pa.string())
    if iso:
        text = concat(pc.replace_substring(text, " ", "T"), "Z")
    return text


def date_strings(days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """``YYYY-MM-DD`` from days since the epoch."""
    stamps = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    return pa.array(stamps, mask=missing).cast(pa.string())


def rank_within_groups(sorted_groups: np.ndarray) -> np.ndarray:
    """Position of each row within its run of equal values (input sorted by group)."""
    if len(sorted_groups) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run_lengths = np.diff(np.r_[starts, len(sorted_groups)])
    return np.arange(len(sorted_groups)) - np.repeat(starts, run_lengths)


def json_lines(table: pa.Table) -> pa.Array:
    """One JSON object per row, assembled column-wise with Arrow string kernels.

    Integer columns stay integers with ``null`` for gaps (pandas would turn them into floats); strings
    are escaped for quotes, backslashes and line breaks, the only special characters the data can hold.
    """
    parts: list[pa.Array | str] = []
    for i, (name, column) in enumerate(zip(table.column_names, table.columns, strict=True)):
        values = column.combine_chunks()
        text = values.cast(pa.string())
        if not pa.types.is_integer(values.type):
            for char, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
                text = pc.replace_substring(text, char, escaped)
            text = concat('"', text, '"')
        parts += ["{" if i == 0 else ",", f'"{name}":', pc.fill_null(text, "null")]
    parts.append("}")
    return concat(*parts)
