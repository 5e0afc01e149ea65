"""Which rows fail which rule: the first failing rule of a row is its verdict.

Rules run in a fixed order; a row rejected by one rule is never re-judged by a later one, so each
rejected record lands in quarantine exactly once, with the rule, the column and a reason that names
the offending value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import pandas as pd

FIELD_NULLED = "the field was nulled and the record staged"
"""Ends the reason of a quarantined field (as opposed to a quarantined row)."""
ReasonBuilder: TypeAlias = "Callable[[pd.Index], list[str]]"
"""Builds the reasons for the newly rejected rows (by index label); only rejected rows pay for it."""


class Rejections:
    """The verdicts on one frame's rows, keyed by the frame's index."""

    def __init__(self, index: pd.Index):
        import numpy as np
        self.index = index
        length = len(index)
        self._rejected = np.zeros(length, dtype=bool)
        self._rule = np.full(length, None, dtype=object)
        self._column = np.full(length, None, dtype=object)
        self._reason = np.full(length, None, dtype=object)
        self.by_rule: Counter[str] = Counter()
        self._field_problems: list[pd.DataFrame] = []

    @property
    def rejected(self) -> pd.Series:
        import pandas as pd
        return pd.Series(self._rejected, index=self.index)

    @property
    def accepted(self) -> pd.Series:
        import pandas as pd
        return pd.Series(~self._rejected, index=self.index)

    def reject(self, failing: pd.Series, rule: str, column: str | None, reasons: ReasonBuilder) -> int:
        """Reject the rows where ``failing`` is true and no earlier rule rejected; returns how many."""
        mask = failing.reindex(self.index, fill_value=False).fillna(False).to_numpy(dtype=bool)
        new = mask & ~self._rejected
        count = int(new.sum())
        if not count:
            return 0
        labels = self.index[new]
        self._rejected[new] = True
        self._rule[new] = rule
        self._column[new] = column
        self._reason[new] = reasons(labels)
        self.by_rule[rule] += count
        return count

    def reject_values(
        self, failing: pd.Series, rule: str, column: str, values: pd.Series, problem: str | pd.Series
    ) -> int:
        """Reject with the reason ``"<column> '<value>' <problem>"``; ``problem`` may vary per row."""

        def reasons(labels: pd.Index) -> list[str]:
            import pandas as pd
            shown = values.reindex(labels)
            problems = problem.reindex(labels) if isinstance(problem, pd.Series) else [problem] * len(labels)
            return [f"{column} {_show(v)} {p}" for v, p in zip(shown, problems, strict=True)]

        return self.reject(failing, rule, column, reasons)

    def null_field(
        self, failing: pd.Series, rule: str, column: str, values: pd.Series, problem: str | pd.Series
    ) -> pd.Series:
        """Quarantine one field, not its row: the caller nulls it and the record is still staged.

        Returns the mask of fields to null. Entries of rows that a rule rejects later are dropped, as the
        whole row is quarantined then.
        """
        import pandas as pd
        mask = failing.reindex(self.index, fill_value=False).fillna(False).to_numpy(dtype=bool) & ~self._rejected
        labels = self.index[mask]
        if len(labels):
            shown = values.reindex(labels)
            problems = problem.reindex(labels) if isinstance(problem, pd.Series) else [problem] * len(labels)
            reasons = [
                f"{column} {_show(v)} {p}; {FIELD_NULLED}"
                for v, p in zip(shown, problems, strict=True)
            ]
            self._field_problems.append(
                pd.DataFrame({"rule": rule, "column_name": column, "reason": reasons}, index=labels)
            )
        return pd.Series(mask, index=self.index)

    def field_frame(self) -> pd.DataFrame:
        """The quarantined fields of rows that were staged: index label, rule, column_name, reason."""
        import pandas as pd
        if not self._field_problems:
            return pd.DataFrame({"rule": [], "column_name": [], "reason": []}, dtype=object)
        fields = pd.concat(self._field_problems)
        return fields[~pd.Series(self._rejected, index=self.index).reindex(fields.index).to_numpy()]

    def frame(self) -> pd.DataFrame:
        """The rejected rows: index label, rule, column_name, reason."""
        import pandas as pd
        rows = self._rejected
        return pd.DataFrame(
            {"rule": self._rule[rows], "column_name": self._column[rows], "reason": self._reason[rows]},
            index=self.index[rows],
        )


def _show(value: object) -> str:
    """A raw value as the reason shows it: quoted text, or the value itself for numbers and times."""
    import numpy as np
    import pandas as pd
    if isinstance(value, str):
        return repr(value if len(value) <= 200 else value[:200] + "...")
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return "(empty)"
    return repr(str(value))
