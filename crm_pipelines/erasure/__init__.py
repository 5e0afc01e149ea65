"""The right to be forgotten: erase a person from every layer, and keep them out (``crm_erasure``).

Pure code, no Dagster: :mod:`.keys` (normalized, hashed keys; recognizing them in raw source rows),
:mod:`.plan` (from a request to customers, records and values), :mod:`.tables` (the rows of each table),
:mod:`.execute` (tombstones, deletion in one transaction, audit, BI file).
"""
