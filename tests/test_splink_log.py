"""Splink's per-level "not observed" training warnings become one line."""

from __future__ import annotations

import logging

from crm_pipelines.identity.splink_log import SPLINK_EM_LOGGER, unobserved_levels_summarised


def _splink_warns(level: str, comparison: str, parameter: str) -> None:
    # The message exactly as splink 5.0.0 logs it (internals/expectation_maximisation.py).
    logging.getLogger(SPLINK_EM_LOGGER).warning(
        "WARNING:\n"
        f"Level {level} on comparison {comparison} not observed in dataset, "
        f"unable to train {parameter} value\n"
    )


def test_not_observed_warnings_are_summarised_in_one_line(caplog) -> None:
    caplog.set_level(logging.WARNING)
    ours = logging.getLogger("crm_pipelines.identity.model")
    with unobserved_levels_summarised(ours) as levels:
        _splink_warns("Exact match on postcode", "postcode", "m")
        _splink_warns("Jaro-Winkler >0.92", "first_name", "u")
        logging.getLogger(SPLINK_EM_LOGGER).warning("EM converged after 7 iterations")  # other news passes
    assert levels == ["postcode: Exact match on postcode (m)", "first_name: Jaro-Winkler >0.92 (u)"]
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert messages == [
        (SPLINK_EM_LOGGER, "EM converged after 7 iterations"),
        ("crm_pipelines.identity.model", messages[1][1]),
    ]
    assert "2 comparison level(s)" in messages[1][1] and "\n" not in messages[1][1]
    # Outside the block Splink speaks for itself again.
    _splink_warns("Exact match on city", "city", "m")
    assert len(caplog.records) == 3
