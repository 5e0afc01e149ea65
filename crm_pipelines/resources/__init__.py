"""Dagster resources: the warehouse and the run's as-of window."""
