"""Splink's "level not observed" warnings during training, summarised in one line.

Expectation maximisation warns once per comparison level it never saw among the training pairs, in
a multi-line message each (six on the first demo run). They are expected on small or clean data
(e.g. no pair with a one-letter typo in the postcode) and the level keeps its prior, so one line
naming them all tells the operator the same without burying the run log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

SPLINK_EM_LOGGER = "splink.internals.expectation_maximisation"
_NOT_OBSERVED = re.compile(r"Level (.+?) on comparison (\S+) not observed in dataset, unable to train (\w) value")


class _CollectUnobserved(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        match = _NOT_OBSERVED.search(record.getMessage())
        if match is None:
            return True
        level, comparison, parameter = match.groups()
        self.levels.append(f"{comparison}: {level} ({parameter})")
        return False


@contextmanager
def unobserved_levels_summarised(log: logging.Logger) -> Iterator[list[str]]:
    """Inside, Splink's per-level warnings are collected instead of printed; on exit ``log`` gets one
    warning listing them. Yields the list, filled as training goes."""
    splink_logger = logging.getLogger(SPLINK_EM_LOGGER)
    collector = _CollectUnobserved()
    splink_logger.addFilter(collector)
    try:
        yield collector.levels
    finally:
        splink_logger.removeFilter(collector)
        if collector.levels:
            log.warning(
                "identity model training: %d comparison level(s) never seen among the training pairs "
                "keep their prior m/u values: %s",
                len(collector.levels),
                "; ".join(collector.levels),
            )
