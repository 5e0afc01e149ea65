"""Pure analytics on core-layer frames: customer 360, segments, KPIs, CLV, retention and churn.

No Dagster import and no warehouse I/O here: assets read the inputs, call these functions and
publish what they return.
"""
