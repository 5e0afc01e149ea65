"""``crm_erasure``: erase people from every layer on request (the logic is in crm_pipelines.erasure).

An op job, not an asset: it materializes nothing new, it removes rows from tables other assets own.
Launch it with ``python -m crm_pipelines.erase`` (which hashes the keys before they become run config)
or from the launchpad.
"""


import dagster as dg
from pydantic import Field

from crm_pipelines.bi_file import BiFileError, export_enabled
from crm_pipelines.config import CrmConfig
from crm_pipelines.erasure.hashing import ErasureKeyError, KeyHashes
from crm_pipelines.resources.warehouse import WarehouseResource

ERASURE_JOB = "crm_erasure"


class ErasureConfig(dg.Config):
    """Who to erase. Dagster stores run config: the CLI passes only ``key_hashes``, never plain keys."""

    key_hashes: list[str] = Field(
        default_factory=list,
        description="<kind>:<sha256 of the normalized key>, kind email, phone or source_record "
        "(what python -m crm_pipelines.erase passes).",
    )
    emails: list[str] = Field(default_factory=list, description="Plain emails (stored in the run's config).")
    phones: list[str] = Field(default_factory=list, description="Plain phones (stored in the run's config).")
    source_records: list[str] = Field(
        default_factory=list, description="SOURCE:ID of customer records (stored in the run's config)."
    )
    customer_ids: list[str] = Field(default_factory=list, description="Unified customer ids.")
    requested_by: str = Field(description="Who asked for the erasure (a name, a ticket number).")
    dry_run: bool = Field(False, description="Count what would be deleted; change nothing.")


def _requested(config: ErasureConfig, crm_config: CrmConfig) -> KeyHashes:
    from crm_pipelines.erasure.keys import request_hashes

    pairs = []
    for item in config.key_hashes:
        kind, _, digest = item.partition(":")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ErasureKeyError(f"key_hashes entry {item!r}: write it as <kind>:<64 hex digits of SHA-256>")
        pairs.append((kind, digest))
    typed = request_hashes(
        emails=config.emails, phones=config.phones, source_records=config.source_records, config=crm_config
    )
    return KeyHashes.of(pairs).union(typed)


def build_erasure_job(crm_config: CrmConfig, warehouse_kind: str) -> dg.JobDefinition:
    bi_file = (
        crm_config.resolve_path(crm_config.bi.marts_file)
        if export_enabled(crm_config.bi.export, warehouse_kind)
        else None
    )

    @dg.op(
        name="erase_people",
        description="Tombstone the keys, delete the people from raw, staging, core, marts and quarantine in one "
        "transaction, record audit.erasures, rewrite the BI file.",
    )
    def erase_people(
        context: dg.OpExecutionContext, config: ErasureConfig, warehouse: WarehouseResource
    ) -> dg.Output[dict]:
        # Imported by a run, not by loading the definitions.
        from crm_pipelines.erasure.execute import erase

        try:
            result = erase(
                warehouse.get_warehouse(),
                crm_config,
                _requested(config, crm_config),
                config.customer_ids,
                requested_by=config.requested_by,
                dry_run=config.dry_run,
                run_id=context.run.run_id,
                bi_file=bi_file,
            )
        except (ErasureKeyError, ValueError, BiFileError) as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        for line in result.summary_lines():
            context.log.info(line)
        summary = {
            "erasure_id": result.erasure_id,
            "dry_run": result.dry_run,
            "customers": len(result.plan.customer_ids),
            "source_records": len(result.plan.records),
            "tombstones": len(result.tombstones),
            "rows_by_table": {t: n for t, n in result.rows_by_table.items() if n},
        }
        rows = [f"| {t} | {n} |" for t, n in summary["rows_by_table"].items()]
        table = "\n".join(["| table | rows |", "|---|---:|", *rows])
        return dg.Output(
            summary,
            metadata={
                "erasure_id": result.erasure_id,
                "dry_run": result.dry_run,
                "customers": summary["customers"],
                "rows_deleted": result.rows_deleted,
                "rows_by_table": dg.MetadataValue.md(table),
            },
        )

    @dg.job(
        name=ERASURE_JOB,
        description="Erase people (by email, phone, source record or customer id) from every layer and keep "
        "them out of later ingests. Launch with python -m crm_pipelines.erase.",
        executor_def=dg.in_process_executor,
    )
    def crm_erasure() -> None:
        erase_people()

    return crm_erasure
