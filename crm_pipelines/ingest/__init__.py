"""Source connectors and incremental ingestion into the raw layer.

Each source entity in ``crm.yaml`` lands in ``raw.<source>__<entity>`` with its own column names,
every value as text (nested JSON as JSON text), plus the lineage columns ``_source``,
``_ingested_at``, ``_batch_id`` and ``_partition_date``. Connectors: csv, parquet, jsonl files;
sql (any SQLAlchemy database: a table or a SELECT, read in chunks); http (a paginated JSON API).

``incremental.mode`` decides what a run loads; ``until`` (the run's as-of cutoff) always bounds
timestamp columns, so a run never sees rows from after its as-of time:

- ``full``: read everything, replace the raw table.
- ``cursor``: read rows whose ``incremental.column`` is above the highest value loaded so far
  (kept in ``audit.ingest_state``) and append them; a re-run finds nothing new.
- ``daily``: reload the days from the last loaded day minus ``lookback_days`` through ``until``'s
  date: delete those days' rows (by ``_partition_date``, the row's UTC day), insert them again.
  Re-running a day replaces it, so no run adds duplicates.

A first incremental run (no state yet, or the mode changed) rebuilds the table from everything up
to ``until``. New rows and the new state are committed in one transaction.
Problems a user can fix raise :class:`SourceError`, naming the source, entity, location and fix.
"""
