"""A Great Expectations expectation for the project's canonical column types, on pandas frames.

The built-in type expectations do not fit pandas 3 frames: ``ExpectColumnValuesToBeInTypeList``
fails on ``str`` columns, and ``ExpectColumnTypeToBe`` wants one exact dtype, while one canonical
type arrives in several spellings (an integer column holding nulls is ``Int64`` from staging but
``float64`` after a round trip through Arrow; a date column is ``datetime64`` or Python dates).
This expectation accepts every faithful spelling and checks values where the dtype cannot tell
(``object`` columns, integral floats), so the offending values show up in the sample.

Importing this module imports Great Expectations and registers the expectation; only
:mod:`crm_pipelines.checks.gx` imports it, lazily.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from pandas.api import types as ptypes

CANONICAL_TYPE_METRIC = "column_values.crm_canonical_type"


def _all(column: pd.Series, value: bool) -> pd.Series:
    return pd.Series(value, index=column.index, dtype=bool)


def _each(column: pd.Series, accept) -> pd.Series:
    return column.map(accept, na_action=None).astype(bool)


def _is_number(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, decimal.Decimal, np.number))


def _is_integral(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating, decimal.Decimal)) and float(value).is_integer()


def _is_timestamp(value: object) -> bool:
    return isinstance(value, dt.datetime) and value.tzinfo is not None


def _is_date(value: object) -> bool:
    if isinstance(value, pd.Timestamp):
        return value.tzinfo is None and value == value.normalize()
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


def values_of_canonical_type(column: pd.Series, canonical_type: str) -> pd.Series:
    """Per non-null value: does it faithfully hold ``canonical_type``? (dtype first, values if needed)"""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return values_of_canonical_type(column.astype(dtype.categories.dtype), canonical_type)
    if ptypes.is_object_dtype(dtype):
        check = {
            "string": lambda v: isinstance(v, str),
            "integer": _is_integral,
            "float": _is_number,
            "boolean": lambda v: isinstance(v, (bool, np.bool_)),
            "timestamp": _is_timestamp,
            "date": _is_date,
        }[canonical_type]
        return _each(column, check)
    if canonical_type == "string":
        return _all(column, ptypes.is_string_dtype(dtype))
    if canonical_type == "boolean":
        return _all(column, ptypes.is_bool_dtype(dtype))
    if ptypes.is_bool_dtype(dtype):
        return _all(column, False)
    if canonical_type == "float":
        return _all(column, ptypes.is_float_dtype(dtype) or ptypes.is_integer_dtype(dtype))
    if canonical_type == "integer":
        if ptypes.is_integer_dtype(dtype):
            return _all(column, True)
        if ptypes.is_float_dtype(dtype):
            # An integer column holding nulls comes back from Arrow as float64: accept whole numbers.
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            return pd.Series(np.mod(values, 1) == 0, index=column.index)
        return _all(column, False)
    if canonical_type == "timestamp":
        return _all(column, isinstance(dtype, pd.DatetimeTZDtype))
    if canonical_type == "date":
        if ptypes.is_datetime64_dtype(dtype):
            # Dates arrive as midnight datetimes; a time of day means it is a timestamp.
            return pd.Series(column.dt.normalize() == column, index=column.index)
        return _all(column, False)
    raise ValueError(f"unknown canonical type {canonical_type!r}")


class ColumnValuesCanonicalType(ColumnMapMetricProvider):
    """Map metric: the value is of the column's canonical type (nulls are not evaluated)."""

    condition_metric_name = CANONICAL_TYPE_METRIC
    condition_value_keys = ("canonical_type",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, canonical_type: str, **kwargs) -> pd.Series:
        return values_of_canonical_type(column, canonical_type)


class ExpectColumnValuesToHaveCanonicalType(ColumnMapExpectation):
    """Expect the column's non-null values to hold the canonical type (crm_pipelines.schema)."""

    canonical_type: Literal["string", "timestamp", "date", "float", "integer", "boolean"]

    map_metric = CANONICAL_TYPE_METRIC
    success_keys = ("canonical_type", "mostly")
    args_keys = ("column", "canonical_type")
    library_metadata: ClassVar[dict] = {"maturity": "production", "tags": ["crm_pipelines", "type"]}
