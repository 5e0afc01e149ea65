"""The warehouse as a Dagster resource."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from crm_pipelines.config import expand_env
from crm_pipelines.warehouse import DEFAULT_DUCKDB_MEMORY_LIMIT, DuckDBSettings, Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The SQLAlchemy warehouse every asset writes through (DuckDB by default, PostgreSQL in production).

    Secrets stay out of crm.yaml: put ``${WAREHOUSE_PASSWORD}`` in the URL, or set ``CRM_WAREHOUSE_URL``.
    Dagster stores resource config in its run storage, so ``url`` keeps those references unexpanded and
    the resource expands them from the environment only when it connects.
    """

    url: str = Field(
        description="SQLAlchemy URL, e.g. duckdb:///data/warehouse.duckdb or postgresql+psycopg://...; "
        "${ENV_VAR} references are expanded at run time and never stored."
    )

    duckdb_memory_limit: str = Field(
        DEFAULT_DUCKDB_MEMORY_LIMIT,
        description="DuckDB only: the most memory the warehouse's buffer pool holds; larger queries spill.",
    )
    duckdb_threads: int | None = Field(None, description="DuckDB only: worker threads; None keeps DuckDB's default.")
    duckdb_checkpoint_threshold: str | None = Field(
        None, description="DuckDB only: write-ahead log size that triggers a checkpoint."
    )

    def get_warehouse(self) -> Warehouse:
        return Warehouse(
            expand_env(self.url, "warehouse.url"),
            DuckDBSettings(
                memory_limit=self.duckdb_memory_limit,
                threads=self.duckdb_threads,
                checkpoint_threshold=self.duckdb_checkpoint_threshold,
            ),
        )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        # The run's (or, with a process per step, the step's) writes go into the file once here, not
        # in whichever step crosses the checkpoint threshold (see warehouse.duckdb_checkpoint_threshold).
        seconds = self.get_warehouse().checkpoint()
        if seconds is not None:
            context.log.info(f"warehouse checkpointed in {seconds:.2f} s")

    @property
    def kind(self) -> str:
        """The Dagster kind tag of this warehouse's engine.

        Read from the expanded URL: with ``CRM_WAREHOUSE_URL`` set, ``url`` is ``${CRM_WAREHOUSE_URL}``.
        Only the scheme is kept, so no secret reaches a tag."""
        scheme = expand_env(self.url, "warehouse.url").split(":", 1)[0].split("+", 1)[0]
        return {"postgresql": "postgres"}.get(scheme, scheme)
