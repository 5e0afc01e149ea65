"""Dagster resources: the warehouse and the run's as-of window."""

from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource

__all__ = ["RunWindowResource", "WarehouseResource"]
