"""The fast text ``isin`` gives pandas' own answer, whatever the values and what is looked for."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_pipelines.analytics.isin import isin

TEXT = st.one_of(st.none(), st.sampled_from(["a", "b", "", "Ä", "C1", "c1 "]), st.text(max_size=3))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(TEXT, max_size=20),
    looked_for=st.lists(st.one_of(TEXT, st.just(float("nan")), st.integers(0, 2)), max_size=8),
    container=st.sampled_from(["set", "list", "series", "str_series"]),
    dtype=st.sampled_from(["str", "string", "object"]),
)
def test_isin_equals_pandas(values, looked_for, container, dtype):
    series = pd.Series(values, dtype=dtype)
    if container == "set":
        wanted = set(x for x in looked_for if not (isinstance(x, float) and np.isnan(x)))
    elif container == "list":
        wanted = looked_for
    elif container == "series":
        wanted = pd.Series(looked_for, dtype="object")
    else:
        wanted = pd.Series([x for x in looked_for if x is None or isinstance(x, str)], dtype="str")
    expected = series.isin(wanted).to_numpy(dtype=bool)
    np.testing.assert_array_equal(isin(series, wanted), expected)


def test_isin_of_many_ids_is_fast():
    import time

    ids = pd.Series([f"C{i:07d}" for i in range(200_000)], dtype="str")
    started = time.perf_counter()
    found = isin(ids, ids.iloc[::2])
    assert time.perf_counter() - started < 2.0  # pandas itself takes several seconds
    assert found.sum() == 100_000 and found[0] and not found[1]
