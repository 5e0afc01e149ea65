"""Drift between two runs of a table: row count and per-column null rates.

Drift is a warning, never a contract break: a shop that sold half as much yesterday is news, not
bad data. The stats are small JSON-safe dicts, so the caller can keep one per table and run
(``audit.table_stats``) and compare today's with the previous run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

DriftKind = Literal["row_count", "null_rate", "column_added", "column_removed"]

DEFAULT_MAX_ROW_CHANGE_PCT = 30.0
DEFAULT_MAX_NULL_RATE_INCREASE = 0.10


def table_stats(frame: pd.DataFrame) -> dict[str, Any]:
    """``{"row_count": n, "null_rates": {column: share of null values, 0..1}}`` of ``frame``."""
    import pandas as pd
    rows = len(frame)
    null_counts = frame.isna().sum() if rows else pd.Series(0, index=frame.columns)
    rates = {str(c): round(float(null_counts[c]) / rows, 6) if rows else 0.0 for c in frame.columns}
    return {"row_count": int(rows), "null_rates": rates}


@dataclass(frozen=True)
class DriftFinding:
    """One change against the previous run larger than its threshold."""

    kind: DriftKind
    column: str | None
    previous: float | None
    current: float | None
    threshold: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_findings(
    current_stats: Mapping[str, Any],
    previous_stats: Mapping[str, Any] | None,
    max_row_change_pct: float = DEFAULT_MAX_ROW_CHANGE_PCT,
    max_null_rate_increase: float = DEFAULT_MAX_NULL_RATE_INCREASE,
) -> list[DriftFinding]:
    """Findings where today's stats moved further from the previous run's than allowed.

    ``max_row_change_pct`` bounds the row count's change either way, in percent of the previous
    count (50 flags a drop from 1,000 to 499 rows, or a rise to 1,501). ``max_null_rate_increase``
    bounds the rise of a column's null rate in absolute terms (0.1: from 2% to more than 12%).
    With no previous stats (a table's first run) there is nothing to compare: no findings.
    """
    if not previous_stats:
        return []
    findings: list[DriftFinding] = []
    before, now = int(previous_stats.get("row_count", 0)), int(current_stats.get("row_count", 0))
    if before > 0:
        change_pct = (now - before) / before * 100.0
        if abs(change_pct) > max_row_change_pct:
            direction = "dropped" if change_pct < 0 else "grew"
            findings.append(DriftFinding(
                "row_count", None, float(before), float(now), max_row_change_pct,
                f"row count {direction} by {abs(change_pct):.1f}% ({before:,} -> {now:,}); "
                f"allowed: {max_row_change_pct:g}%",
            ))
    old_rates: Mapping[str, float] = previous_stats.get("null_rates", {})
    new_rates: Mapping[str, float] = current_stats.get("null_rates", {})
    for column, rate in new_rates.items():
        if column not in old_rates:
            findings.append(DriftFinding(
                "column_added", column, None, float(rate), None,
                f"column {column} is new since the previous run",
            ))
            continue
        increase = float(rate) - float(old_rates[column])
        if increase > max_null_rate_increase:
            findings.append(DriftFinding(
                "null_rate", column, float(old_rates[column]), float(rate), max_null_rate_increase,
                f"{column}: null rate rose from {old_rates[column]:.1%} to {rate:.1%} "
                f"(+{increase * 100:.1f} points; allowed: +{max_null_rate_increase * 100:g})",
            ))
    for column in old_rates:
        if column not in new_rates:
            findings.append(DriftFinding(
                "column_removed", column, float(old_rates[column]), None, None,
                f"column {column} existed in the previous run and is gone",
            ))
    return findings
