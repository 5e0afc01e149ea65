"""Erase a person: ``python -m crm_pipelines.erase --email ... --requested-by "..." [--dry-run]``.

Launches the ``crm_erasure`` job of ``crm_pipelines.definitions`` in this process, recorded in the Dagster
instance ``DAGSTER_HOME`` names, and prints what it deleted per table. The keys are normalized and hashed
here, so the run's config (which Dagster stores) holds only their SHA-256 hashes.
"""

from __future__ import annotations

import argparse
import sys

from crm_pipelines.erasure.hashing import ErasureKeyError
from crm_pipelines.erasure.keys import request_hashes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crm_pipelines.erase",
        description="Erase people from every warehouse layer (raw, staging, core, marts, quarantine) and the "
        "BI file, and keep them out of later ingests. Each option may be repeated.",
    )
    parser.add_argument("--email", action="append", default=[], help="an email address of the person")
    parser.add_argument("--phone", action="append", default=[], help="a phone number (crm.yaml default_country "
                        "when it has no country code)")
    parser.add_argument("--source-record", action="append", default=[], metavar="SOURCE:ID",
                        help="a customer record, e.g. shop:1042")
    parser.add_argument("--customer-id", action="append", default=[], help="a unified customer id")
    parser.add_argument("--requested-by", required=True, help="who asked (a name, a ticket number); recorded in "
                        "audit.erasures")
    parser.add_argument("--dry-run", action="store_true", help="report what would be deleted, change nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not (args.email or args.phone or args.source_record or args.customer_id):
        _parser().error("name the person: at least one --email, --phone, --source-record or --customer-id")

    import dagster as dg

    from crm_pipelines.assets.erasure import ERASURE_JOB
    from crm_pipelines.config import load_config
    from crm_pipelines.definitions import defs

    crm_config = load_config()
    try:
        hashes = request_hashes(
            emails=args.email, phones=args.phone, source_records=args.source_record, config=crm_config
        )
    except ErasureKeyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_config = {
        "ops": {
            "erase_people": {
                "config": {
                    "key_hashes": [f"{kind}:{digest}" for kind, digest in hashes.pairs()],
                    "customer_ids": args.customer_id,
                    "requested_by": args.requested_by,
                    "dry_run": args.dry_run,
                }
            }
        }
    }
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(ERASURE_JOB).execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
    if not result.success:
        for event in result.get_step_failure_events():
            data = event.event_specific_data
            message = data.user_failure_data.description if data.user_failure_data else data.error.message
            print(f"error: {message}", file=sys.stderr)
        print(
            f"run {result.run_id} failed. Its deletions are one transaction (all or none); keys already "
            "tombstoned stay so. Rerun the same command to finish the erasure.",
            file=sys.stderr,
        )
        return 1
    summary = result.output_for_node("erase_people")
    verb = "would delete" if summary["dry_run"] else "deleted"
    print(
        f"erasure {summary['erasure_id']} (run {result.run_id})"
        + (" DRY RUN, nothing changed" if summary["dry_run"] else "")
        + f": {summary['customers']} customer(s), {summary['source_records']} source record(s), "
        f"{summary['tombstones']} key hash(es)"
    )
    rows = summary["rows_by_table"]
    width = max([len(t) for t in rows] + [5])
    for table, count in rows.items():
        print(f"  {table:<{width}}  {verb} {count:>7,}")
    print(f"  {'total':<{width}}  {verb} {sum(rows.values()):>7,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
