"""Validate a pandas frame against a :class:`SuiteSpec` with Great Expectations.

Great Expectations is imported on first use (it costs about 3 s) with its analytics off, and runs
in one ephemeral context per process: nothing is written to disk. Every expectation of a suite is
evaluated in a single validation run over one batch, so metrics shared by several expectations
are computed once.

Runs do not use it: every contract is validated in the warehouse (:mod:`crm_pipelines.checks.sql`).
This is the reference those SQL results are tested equal to, and a way to check a frame by hand.
The outcome types (:class:`RuleResult`, :class:`SuiteOutcome`) live here and are shared by both.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from crm_pipelines.checks.rules import Rule, SuiteSpec

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.batch_definition import BatchDefinition

__all__ = ["RuleResult", "SuiteOutcome", "build_gx_suite", "validate"]

SAMPLE_SIZE = 10
_CUSTOM_EXPECTATIONS = ("ExpectColumnValuesToHaveCanonicalType",)
# One context per process, shared by threads: set up and validations take turns.
_lock = threading.RLock()
_warm_up_lock = threading.Lock()
_warm_up: threading.Thread | None = None
_batch_definition: BatchDefinition | None = None


@dataclass(frozen=True)
class RuleResult:
    """How one rule fared on one frame."""

    rule: str
    severity: str
    description: str
    expectation: str
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: list[Any] = field(default_factory=list)
    """Up to ten distinct offending values (rows as dicts for multi-column rules), JSON-safe."""
    observed: Any = None
    """What was measured where there are no offending values: a row count, a column's dtype."""
    error: str | None = None
    """Why the rule could not be evaluated (a column it reads is missing, a metric raised)."""

    @property
    def blocking(self) -> bool:
        return not self.success and self.severity == "error"


@dataclass(frozen=True)
class SuiteOutcome:
    """The result of validating one frame against one suite."""

    suite: str
    check_name: str
    description: str
    row_count: int
    results: tuple[RuleResult, ...]
    seconds: float
    table_stats: dict[str, Any] | None = field(default=None, compare=False)
    """The drift statistics (row count, null rate per column) when the validation counted them on the
    way (:func:`crm_pipelines.checks.sql.validate_in_warehouse`), else None."""

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if not r.success]

    @property
    def blocking_failures(self) -> list[RuleResult]:
        """Failed error-severity rules: the table must not be published."""
        return [r for r in self.results if r.blocking]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.results if not r.success and r.severity == "warn"]

    def result(self, rule: str) -> RuleResult:
        for r in self.results:
            if r.rule == rule:
                return r
        raise KeyError(f"{self.suite} has no rule {rule!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for metadata and audit tables)."""
        return {
            "suite": self.suite,
            "check_name": self.check_name,
            "success": self.success,
            "row_count": self.row_count,
            "seconds": round(self.seconds, 3),
            "results": [asdict(r) for r in self.results],
        }

    def to_markdown(self) -> str:
        """A short report: the verdict, then one table row per failed rule."""
        verdict = (
            "passed"
            if self.success
            else f"{len(self.blocking_failures)} blocking and {len(self.warnings)} warning failure(s)"
        )
        lines = [f"**{self.suite}**: {len(self.results)} rules on {self.row_count:,} rows, {verdict}."]
        if self.failures:
            lines += ["", "| rule | severity | unexpected | % | sample / detail |", "|---|---|---|---|---|"]
            for r in self.failures:
                pct = "" if r.unexpected_percent is None else f"{r.unexpected_percent:.2f}"
                count = "" if r.unexpected_count is None else f"{r.unexpected_count:,}"
                detail = r.error or (_short_json(r.sample) if r.sample else _short_json(r.observed))
                lines.append(
                    f"| {_md(r.rule)} | {r.severity} | {count} | {pct} | {_md(detail)} |"
                )
        return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short_json(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- Great Expectations, lazily -----------------------------------------------------------------
def _import_gx() -> Any:
    # Analytics off twice over: the environment variable before the first import (unless the user
    # set it) and the context's config (_new_batch_definition).
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    import crm_pipelines.checks._expectations  # noqa: F401  (registers the custom expectation)

    return gx


def prepare_in_background() -> None:
    """Import Great Expectations and build its context on a background thread, once per process.

    The import costs seconds; a run starts it while it ingests (mostly I/O and native code), so the
    first validation does not wait for it. Idempotent; validation waits on the same lock if needed.
    """
    global _warm_up
    with _warm_up_lock:
        if _warm_up is None:
            _warm_up = threading.Thread(target=_get_batch_definition, name="gx-warm-up", daemon=True)
            _warm_up.start()


def _get_batch_definition() -> BatchDefinition:
    """One ephemeral context per process, with a pandas data source taking any frame."""
    global _batch_definition
    with _lock:
        if _batch_definition is None:
            _batch_definition = _new_batch_definition()
    return _batch_definition


def _new_batch_definition() -> BatchDefinition:
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("crm_pipelines").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


def _run_suite(gx_suite: ExpectationSuite, frame: pd.DataFrame, result_format: dict[str, Any]) -> Any:
    """Run the suite on one batch of ``frame``.

    This is what ``Batch.validate`` does, minus its own ``get_batch``: each batch load fingerprints
    the whole frame (a hash of every value), and ``Batch.validate`` loads the batch a second time.
    """
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(
        batch_definition=_get_batch_definition(),
        batch_parameters={"dataframe": frame},
        result_format=result_format,
    )
    return validator.validate_expectation_suite(gx_suite)


def _expectation_class(name: str) -> type:
    gx = _import_gx()
    if name in _CUSTOM_EXPECTATIONS:
        from crm_pipelines.checks import _expectations

        return getattr(_expectations, name)
    cls = getattr(gx.expectations, name, None)
    if cls is None:
        raise ValueError(f"{name!r} is not a Great Expectations expectation class")
    return cls


def _condition(column: str, operator: str, value: Any) -> Any:
    from great_expectations.expectations.row_conditions import Column, ComparisonCondition, Operator

    return ComparisonCondition(column=Column(column), operator=Operator(operator), parameter=value)


def build_gx_suite(spec: SuiteSpec, rules: Sequence[Rule] | None = None,
                   kwargs_by_rule: Mapping[str, Mapping[str, Any]] | None = None) -> ExpectationSuite:
    """The GX suite of ``spec`` (or of ``rules``); each expectation's meta names its rule."""
    gx = _import_gx()
    _get_batch_definition()  # a suite needs an active context, even one that is never saved
    suite = gx.ExpectationSuite(name=spec.name)
    for rule in spec.rules if rules is None else rules:
        kwargs = dict((kwargs_by_rule or {}).get(rule.name, rule.kwargs))
        if rule.row_condition is not None:
            kwargs["row_condition"] = _condition(*rule.row_condition)
        try:
            expectation = _expectation_class(rule.expectation)(**kwargs, meta={"rule": rule.name})
        except Exception as e:  # pydantic rejects bad arguments: say which rule carries them
            raise ValueError(f"suite {spec.name!r}, rule {rule.name!r}: invalid expectation: {e}") from e
        suite.add_expectation(expectation)
    return suite


# -- frames and bounds --------------------------------------------------------------------------
_BOUND_KEYS = ("min_value", "max_value")


def _is_moment(value: Any) -> bool:
    import numpy as np
    import pandas as pd
    return isinstance(value, (dt.date, pd.Timestamp, np.datetime64))


def _prepare(frame: pd.DataFrame, rules: Sequence[Rule]) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Make datetime bounds comparable with the frame's columns.

    Great Expectations compares each value with the bound, so Python ``date`` objects (how Arrow
    hands over DATE columns) cannot meet a ``Timestamp`` bound, nor a naive column an aware bound.
    Such columns are viewed as datetime64 and bounds take the column's time zone; the caller's
    frame is left untouched.
    """
    import pandas as pd
    converted: dict[str, pd.Series] = {}
    kwargs_by_rule: dict[str, dict[str, Any]] = {}
    for rule in rules:
        column = rule.kwargs.get("column")
        bounds = {k: rule.kwargs[k] for k in _BOUND_KEYS if _is_moment(rule.kwargs.get(k))}
        if not bounds or column not in frame.columns:
            continue
        series = converted.get(column, frame[column])
        if series.dtype == object:
            kind = pd.api.types.infer_dtype(series, skipna=True)
            if kind in ("date", "datetime", "datetime64", "empty"):
                series = pd.to_datetime(series, utc=kind != "date")
                converted[column] = series
        tz = getattr(series.dtype, "tz", None)
        aligned = {}
        for key, bound in bounds.items():
            stamp = pd.Timestamp(bound)
            if tz is not None:
                stamp = stamp.tz_localize(tz) if stamp.tzinfo is None else stamp.tz_convert(tz)
            elif stamp.tzinfo is not None:
                stamp = stamp.tz_convert("UTC").tz_localize(None)
            aligned[key] = stamp
        kwargs_by_rule[rule.name] = {**rule.kwargs, **aligned}
    return (frame.assign(**converted) if converted else frame), kwargs_by_rule


def _jsonable(value: Any) -> Any:
    import numpy as np
    import pandas as pd
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _distinct(values: Sequence[Any], limit: int) -> list[Any]:
    seen: set[str] = set()
    out: list[Any] = []
    for v in values:
        key = json.dumps(v, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(v)
        if len(out) == limit:
            break
    return out


def _exception_message(info: Mapping[str, Any] | None) -> str | None:
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, Mapping)]
    return next((m for m in messages if m), None)


def _rule_result(rule: Rule, gx_result: Any, frame: pd.DataFrame, sample_size: int) -> RuleResult:
    result: dict[str, Any] = dict(gx_result.result or {})
    error = _exception_message(gx_result.exception_info)
    sample: list[Any] = _jsonable(result.get("partial_unexpected_list") or [])
    count = result.get("unexpected_count")
    percent = result.get("unexpected_percent")
    observed = _jsonable(result.get("observed_value"))
    missing = (result.get("details") or {}).get("mismatched", {}).get("missing")
    if missing is not None:
        sample, count = _jsonable(missing), len(missing)
        observed = None
    if rule.expectation == "ExpectColumnValuesToHaveCanonicalType":
        observed = str(frame[rule.kwargs["column"]].dtype)
    return RuleResult(
        rule=rule.name,
        severity=rule.severity,
        description=rule.description,
        expectation=rule.expectation,
        success=bool(gx_result.success) and error is None,
        unexpected_count=None if count is None else int(count),
        unexpected_percent=None if percent is None else float(percent),
        sample=_distinct(sample, sample_size),
        observed=observed,
        error=error,
    )


def validate(frame: pd.DataFrame, suite: SuiteSpec, *, sample_size: int = SAMPLE_SIZE) -> SuiteOutcome:
    """Validate ``frame`` against every rule of ``suite`` in one Great Expectations run.

    A rule reading a column the frame lacks is not sent to Great Expectations; it fails with an
    error naming the column (the ``columns_present`` rule reports the same column once more, as
    the contract break it is).
    """
    started = time.perf_counter()
    missing_by_rule = {
        r.name: [c for c in r.columns if c not in frame.columns] for r in suite.rules
    }
    runnable = [r for r in suite.rules if not missing_by_rule[r.name]]
    prepared, kwargs_by_rule = _prepare(frame, runnable)
    by_rule: dict[str, RuleResult] = {}
    if runnable:
        gx_suite = build_gx_suite(suite, runnable, kwargs_by_rule)
        # Ask for more than the sample: duplicate keys repeat, and the sample keeps distinct ones.
        result_format = {"result_format": "SUMMARY", "partial_unexpected_count": 4 * sample_size}
        with _lock, warnings.catch_warnings():
            # GX samples column pairs through Series.values, which pandas 3.1 warns drops the
            # time zone: the sampled values are UTC either way.
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray that drops")
            run = _run_suite(gx_suite, prepared, result_format)
        rules = {r.name: r for r in runnable}
        for gx_result in run.results:
            rule = rules[gx_result.expectation_config.meta["rule"]]
            by_rule[rule.name] = _rule_result(rule, gx_result, frame, sample_size)
    results = []
    for rule in suite.rules:
        if rule.name in by_rule:
            results.append(by_rule[rule.name])
            continue
        absent = ", ".join(missing_by_rule[rule.name])
        results.append(RuleResult(
            rule=rule.name, severity=rule.severity, description=rule.description,
            expectation=rule.expectation, success=False,
            error=f"not evaluated: column(s) {absent} missing from the frame" if absent
            else "not evaluated: Great Expectations returned no result",
        ))
    return SuiteOutcome(
        suite=suite.name,
        check_name=suite.check_name,
        description=suite.description,
        row_count=len(frame),
        results=tuple(results),
        seconds=time.perf_counter() - started,
    )
