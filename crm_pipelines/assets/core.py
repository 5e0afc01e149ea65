"""``core``: the unified customer view, and every other entity attributed to its customer.

The identity asset resolves staged customer records into customers (incrementally each night; a
full re-resolution is its own job) and publishes the identity map, the links with their evidence,
the golden records with their lineage, and the history of retired ids. The attributed entities
(``core.orders``, ``core.support_tickets``, ...) join staging to the map inside the warehouse.
"""

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from crm_pipelines.assets.identity_publishing import publish_identity_tables
from crm_pipelines.assets.identity_state import (
    changed_records,
    changed_version_view,
    drop_changed_version,
    empty_like,
    fingerprints,
    incremental_changes,
    read_if_exists,
    record_keys,
    replace_affected,
    staged_rows_of,
)
from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.assets.publishing import blocking_failures, copy_to_quarantine, quarantine_staged
from crm_pipelines.assets.staging import record_quarantine, record_reconciliation, staging_key
from crm_pipelines.assets.validation import validate_in_place, validate_table, validated_check_specs
from crm_pipelines.attribution import IDENTITY_MAP, attribute, drop_change, publish_attribution
from crm_pipelines.checks.suites import CORE_CONTRACT, core_entity_suite, identity_map_suite, unified_customers_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import (
    CORE,
    CORE_ATTRIBUTED_ENTITIES,
    ENTITIES,
    IDENTITY_MAP_COLUMNS,
    QUARANTINE,
    STAGING,
    UNIFIED_CUSTOMER_COLUMNS,
    core_entity_columns,
)
from crm_pipelines.table_changes import TableChange
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

    from crm_pipelines.identity.engine import Stopwatch
    from crm_pipelines.identity.resolve import ModelTrainer

IDENTITY_TABLES = (
    IDENTITY_MAP,
    "identity_links",
    "unified_customers",
    "golden_lineage",
    "customer_id_history",
    "customer_record_fingerprints",
    "identity_match_records",
)
NOT_READ = ("identity_links", "golden_lineage")
NIGHTLY_PARTIAL = (*NOT_READ, "customer_record_fingerprints", "identity_match_records")
"""Tables an incremental night holds only the changed rows of: never read whole, never published whole."""


def core_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([CORE, table])


class IdentityRunConfig(dg.Config):
    full_resolution: bool = False
    """Re-resolve every record from scratch (ids stay stable), not only new and changed ones."""


DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "identity" / "default_model.json"


def _bundled_model(context, error: Exception) -> dict:
    """The model shipped with the package (trained on the demo data), for when training failed."""
    from crm_pipelines.identity.model import load_model

    context.log.warning(f"cannot train an identity model on this data ({error}): using the bundled model")
    return load_model(DEFAULT_MODEL)


def identity_model(
    context, config: CrmConfig, records: "Callable[[], tuple[pd.DataFrame, pd.DataFrame | None]]"
) -> dict:
    """The saved model; trained once on the staged records (``records()`` reads them) when none is
    saved yet.

    Where there are too few records to train on (a new installation's first trickle of data), the
    model shipped with the package, trained on the demo data, is used until there are enough.
    """
    from splink.internals.exceptions import EMTrainingException

    from crm_pipelines.identity.model import ensure_model, load_model

    path = config.resolve_path(config.identity.model_path)
    try:
        if path.exists():
            return load_model(path)
        return ensure_model(path, *records(), config.identity)
    except (ValueError, EMTrainingException) as e:  # a handful of records gives EM no pairs to learn from
        return _bundled_model(context, e)


def model_or_trainer(context, config: CrmConfig) -> "dict | ModelTrainer":
    """The saved model, or when none is saved yet, a trainer that :func:`~crm_pipelines.identity.resolve.resolve`
    calls once it has loaded and cleaned the staged records: the model is trained on them (not on a
    second copy prepared for training alone), saved, and used. As :func:`identity_model`, the bundled
    model stands in where there are too few records to train on."""
    from splink.internals.exceptions import EMTrainingException

    from crm_pipelines.identity.model import load_model, save_model, train_model_on_prepared

    path = config.resolve_path(config.identity.model_path)
    if path.exists():
        try:
            return load_model(path)
        except ValueError as e:
            return _bundled_model(context, e)

    def train(con, delivered: int, watch: "Stopwatch") -> dict:
        context.log.info(f"no identity model at {path}: training one")
        try:
            model = train_model_on_prepared(con, delivered, config.identity, watch)
        except (ValueError, EMTrainingException) as e:  # a handful of records gives EM no pairs to learn from
            return _bundled_model(context, e)
        save_model(model, path)
        return model

    return train


def _identifiers(wh: Warehouse) -> "pd.DataFrame | None":
    return wh.read_table(STAGING, "customer_identifiers") if wh.table_exists(STAGING, "customer_identifiers") else None


def run_identity(
    context: dg.AssetExecutionContext, config: CrmConfig, wh: Warehouse, full: bool
) -> "tuple[dict, dict[str, pd.DataFrame], dict[str, TableChange] | None]":
    """Resolve; return the run's summary, the complete tables, and on an incremental night the rows
    that changed in each (None when the tables are to be published whole).

    An incremental night finds the new and changed records in the warehouse and reads only those
    and the records of the customers they touch; the fingerprints and matching state it returns
    are the changed rows only (see NIGHTLY_PARTIAL), as are the links and the lineage."""
    import pandas as pd

    from crm_pipelines.identity.engine import Stopwatch
    from crm_pipelines.identity.incremental import resolve_incremental
    from crm_pipelines.identity.resolve import resolve

    settings = config.identity
    priority = {s.name: s.priority for s in config.sources}
    fresh_fingerprints = None if full else changed_records(wh, IDENTITY_TABLES, context.log.info)
    if fresh_fingerprints is None:
        watch = Stopwatch()
        # The staged records (a gigabyte at a million people) are held here by this list only, and
        # handed over to resolve, which lets go of them once its engine has loaded them: held here,
        # they outlived their use by the whole resolution and set the run's peak memory with it.
        staged, identifiers = [wh.read_table(STAGING, "customers")], _identifiers(wh)
        prev_map, prev_history = read_if_exists(wh, IDENTITY_MAP), read_if_exists(wh, "customer_id_history")
        watch.lap("read_staged")
        model = model_or_trainer(context, config)
        result = resolve(
            staged.pop(),
            identifiers,
            settings,
            model,
            prev_map,
            prev_history,
            context.run.run_id,
            source_priority=priority,
        )
        after = Stopwatch()
        current = fingerprints(wh)
        after.lap("fingerprints")
        for figures, before, later in (
            ("stage_seconds", watch.stages, after.stages),
            ("stage_peak_mb", watch.peak_mb, after.peak_mb),
        ):
            result.summary[figures] = {**before, **result.summary.get(figures, {}), **later}
        tables = {
            IDENTITY_MAP: result.identity_map,
            "identity_links": result.links,
            "unified_customers": result.unified_customers,
            "golden_lineage": result.golden_lineage,
        }
        changes = None
    else:
        previous = {t: read_if_exists(wh, t) for t in (IDENTITY_MAP, "unified_customers", "customer_id_history")}
        prev_map, prev_history = previous[IDENTITY_MAP], previous["customer_id_history"]
        fresh = staged_rows_of(wh, "customers", fresh_fingerprints)
        context.log.info(f"incremental identity run: {len(fresh)} new or changed records")
        if fresh.empty:
            tables = {t: empty_like(wh, t) if previous.get(t) is None else previous[t] for t in IDENTITY_TABLES}
            unchanged = {t: TableChange(tables[t].iloc[:0]) for t in IDENTITY_TABLES}
            return {"new_or_changed_records": 0, "records": len(prev_map)}, tables, unchanged
        # The matching state of every existing record goes to the engine as Arrow, never through pandas.
        previous["identity_match_records"] = read_if_exists(wh, "identity_match_records", arrow=True)
        has_identifiers = wh.table_exists(STAGING, "customer_identifiers")
        identifiers = staged_rows_of(wh, "customer_identifiers", fresh) if has_identifiers else None
        model = identity_model(context, config, lambda: (wh.read_table(STAGING, "customers"), _identifiers(wh)))
        result = resolve_incremental(
            fresh,
            lambda keys: staged_rows_of(wh, "customers", keys),
            prev_map,
            identifiers,
            settings,
            model,
            prev_history,
            context.run.run_id,
            existing_match_records=previous["identity_match_records"],
            source_priority=priority,
            whole_state=False,
        )
        current = fresh_fingerprints
        changes = incremental_changes(result, current, record_keys(fresh))
        affected = set(result.affected_customer_ids or [])
        tables = {
            IDENTITY_MAP: result.identity_map,
            "identity_links": result.links,  # the changed rows only: see NOT_READ
            "unified_customers": replace_affected(
                previous["unified_customers"],
                result.unified_customers,
                previous["unified_customers"]["customer_id"].isin(affected),
            ),
            "golden_lineage": result.golden_lineage,
        }
    history = result.customer_id_history
    if prev_history is not None and len(prev_history):
        history = pd.concat([prev_history, history], ignore_index=True) if len(history) else prev_history
    tables["customer_id_history"] = history
    tables["customer_record_fingerprints"] = current
    tables["identity_match_records"] = result.match_records
    return result.summary, tables, changes


def build_identity_asset(warehouse_kind: str, crm_config: CrmConfig) -> dg.AssetsDefinition:
    map_key, unified_key = core_key(IDENTITY_MAP), core_key("unified_customers")
    descriptions = {
        IDENTITY_MAP: "Every staged customer record and the customer_id it belongs to, how it was matched "
        "and with what probability.",
        "identity_links": "Record pairs joined into one customer, with match weight and per-field evidence.",
        "unified_customers": "One golden record per customer_id: per field, the highest-priority source, "
        "then the most recent non-null value.",
        "golden_lineage": "For each golden-record field, the source record it came from.",
        "customer_id_history": "Customer ids retired by merges (the older id survives) and splits.",
        "customer_record_fingerprints": "A hash per staged customer record, to find changed ones next run.",
        "identity_match_records": "Each record's normalized matching values, reused by incremental runs.",
    }
    # Everything past staging is downstream of the identity map. With checks.on_source_failure: stop,
    # the map also waits for every staged entity, so a refused delivery of one that identity does not
    # read (order items) stops the whole run too, instead of leaving marts rebuilt from the others.
    gate = (
        [staging_key(e) for e in ENTITIES if e != "customers" and crm_config.sources_for(e)]
        if crm_config.checks.on_source_failure == "stop"
        else []
    )
    map_deps = list(dict.fromkeys([staging_key("customers"), staging_key("customer_identifiers"), *gate]))
    specs = [
        dg.AssetSpec(
            core_key(t),
            group_name=CORE,
            kinds={"splink", warehouse_kind},
            description=descriptions[t],
            deps=map_deps if t == IDENTITY_MAP else [map_key],
        )
        for t in IDENTITY_TABLES
    ]
    check_specs = [
        *validated_check_specs(map_key, CORE_CONTRACT),
        *validated_check_specs(unified_key, CORE_CONTRACT),
    ]

    @dg.multi_asset(name="identity_resolution", specs=specs, check_specs=check_specs)
    def _identity(
        context: dg.AssetExecutionContext, config: IdentityRunConfig, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult]:
        wh = warehouse.get_warehouse()
        # Matching holds its frames in Python and its own DuckDB: the warehouse's cached blocks from
        # earlier steps would sit beside them (at 1M people identity peaked at 7.4 GB inside the night
        # against 5.15 GB alone).
        wh.release_memory()
        started = time.perf_counter()
        run_summary, tables, changes = run_identity(context, crm_config, wh, config.full_resolution)
        context.log.info(f"identity resolved in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        partial = NIGHTLY_PARTIAL if changes is not None else ()
        staged_count = wh.row_count(STAGING, "customers")
        summary = {k: v for k, v in run_summary.items() if not isinstance(v, (dict, list))}
        suites = {IDENTITY_MAP: identity_map_suite(staged_count), "unified_customers": unified_customers_suite()}
        column_types = {
            IDENTITY_MAP: {c.name: c.dtype for c in IDENTITY_MAP_COLUMNS},
            "unified_customers": {c.name: c.dtype for c in UNIFIED_CUSTOMER_COLUMNS},
        }
        checks = {}
        for table, suite in suites.items():
            # A night's complete version is built in the warehouse from the published table and the
            # changed rows; a first run's (or one whose change cannot apply) is written from the frame.
            view = changed_version_view(wh, CORE, table, changes[table]) if changes is not None else None
            if view is not None:
                try:
                    checks[table] = validate_in_place(
                        context, crm_config, wh, core_key(table), CORE, view, suite, f"{CORE}.{table}"
                    )
                finally:
                    drop_changed_version(wh, CORE, table)
            else:
                checks[table] = validate_table(
                    context,
                    crm_config,
                    wh,
                    core_key(table),
                    f"{CORE}.{table}",
                    tables[table],
                    suite,
                    column_types=column_types[table],
                )
        columns = {IDENTITY_MAP: IDENTITY_MAP_COLUMNS, "unified_customers": UNIFIED_CUSTOMER_COLUMNS}
        extra = {
            IDENTITY_MAP: {
                **summary,
                "match_weight_histogram": dg.MetadataValue.json(run_summary.get("match_weight_histogram", {})),
                "cluster_size_distribution": dg.MetadataValue.json(
                    {
                        str(size): int(n)
                        for size, n in tables[IDENTITY_MAP]
                        .groupby("customer_id")
                        .size()
                        .value_counts()
                        .sort_index()
                        .items()
                    }
                ),
                "records_by_method": dg.MetadataValue.json(run_summary.get("records_by_method", {})),
                "stage_seconds": dg.MetadataValue.json(run_summary.get("stage_seconds", {})),
                "stage_peak_mb": dg.MetadataValue.json(run_summary.get("stage_peak_mb", {})),
                "oversized_blocks_by_rule": dg.MetadataValue.json(run_summary.get("oversized_blocks_by_rule", {})),
                "pairs_by_rule": dg.MetadataValue.json(run_summary.get("pairs_by_rule", {})),
                "rejected_links_by_reason": dg.MetadataValue.json(run_summary.get("rejected_by_reason", {})),
            }
        }
        context.log.info(f"identity tables validated in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        yield from publish_identity_tables(
            context,
            wh,
            CORE,
            tables,
            {table: core_key(table) for table in IDENTITY_TABLES},
            checks,
            columns,
            extra,
            changes=changes,
            partial=partial,
            validated=checks,  # a first run validated them as <table>__new: swapped in as written, or dropped
        )
        context.log.info(f"identity tables published in {time.perf_counter() - started:.1f} s")

    return _identity


def build_attributed_asset(config: CrmConfig, entity: str, warehouse_kind: str) -> dg.AssetsDefinition:
    key = core_key(entity)
    deps = [staging_key(entity), core_key(IDENTITY_MAP)] + ([core_key("orders")] if entity == "order_items" else [])

    @dg.asset(
        key=key,
        group_name=CORE,
        kinds={"sql", warehouse_kind},
        deps=deps,
        description=f"staging.{entity} attributed to unified customers (customer_id) through the "
        "identity map; "
        "rows no customer is found for are quarantined.",
        check_specs=validated_check_specs(key, CORE_CONTRACT),
    )
    def _attributed(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        import pandas as pd
        import sqlalchemy as sa

        wh = warehouse.get_warehouse()
        # On DuckDB a published table takes only the rows that changed (crm_pipelines.attribution).
        result = attribute(wh, config, entity, f"{entity}__new", published=entity)
        orphans = result.orphans
        quarantined = pd.DataFrame(
            {
                "run_id": context.run.run_id,
                "layer": CORE,
                "entity": entity,
                "source": orphans["source"],
                "record_id": orphans[ENTITIES[entity].record_id],
                "rule": "orphan_row",
                "column_name": "customer_id",
                "reason": "no unified customer found for the customer this row names",
                "raw_values": orphans.drop(columns=["customer_id"])
                .astype("string")
                .to_json(orient="records", lines=True)
                .splitlines()
                if len(orphans)
                else [],
                "rejected_at": pd.Timestamp.now(tz="UTC"),
            }
        )
        record_quarantine(wh, CORE, entity, quarantined)
        recon = result.by_source.copy()
        recon["rows_superseded"] = 0
        recon["rows_deleted"] = 0
        recon["reconciles"] = recon["rows_in"] == recon["rows_out"] + recon["rows_quarantined"]
        recon.insert(0, "table_name", entity)
        recon.insert(0, "layer", CORE)
        recon.insert(0, "recorded_at", pd.Timestamp.now(tz="UTC"))
        recon.insert(0, "run_id", context.run.run_id)
        record_reconciliation(wh, recon)
        # The contract runs on the new version where attribution built it, under its temporary name.
        checks = validate_in_place(
            context, config, wh, key, CORE, result.table, core_entity_suite(entity), f"{CORE}.{entity}"
        )
        preview = wh.query(sa.select(sa.text("*")).select_from(wh.table(CORE, result.table)).limit(5))
        extra = {"rows_orphaned": len(orphans), "reconciles": bool(recon["reconciles"].all())}
        if result.published is not None:
            extra.update(rows_written=result.rows_written, rows_replaced=result.rows_replaced)
        metadata = table_metadata(wh, CORE, entity, preview, core_entity_columns(entity), extra)
        metadata["dagster/row_count"] = result.rows_attributed
        failures = blocking_failures(checks)
        if failures:
            if result.published is None:
                rejected = quarantine_staged(wh, CORE, result.table, entity)
            else:  # the new version is a view of the published table with the night's change
                rejected = copy_to_quarantine(wh, CORE, result.table, entity)
                drop_change(wh, entity)
            names = ", ".join(r.check_name or "?" for r in failures)
            context.log.error(
                f"{CORE}.{entity} NOT published: blocking check(s) failed: {names}. The previous version stays "
                f"in place; the rejected version is in {QUARANTINE}.{rejected}."
            )
            metadata.update({"published": False, "rejected_table": f"{QUARANTINE}.{rejected}"})
        else:
            publish_attribution(wh, result, entity)
            metadata["published"] = True
        return dg.MaterializeResult(metadata=metadata, check_results=list(checks))

    return _attributed


def build_core_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    assets = [build_identity_asset(warehouse_kind, config)]
    assets += [
        build_attributed_asset(config, entity, warehouse_kind)
        for entity in CORE_ATTRIBUTED_ENTITIES
        if config.sources_for(entity)
    ]
    return assets


TRAIN_IDENTITY_MODEL_JOB = "crm_train_identity_model"


def build_identity_training_job(crm_config: CrmConfig) -> dg.JobDefinition:
    """A job that (re)trains the matching model on the staged records and saves it as JSON."""

    @dg.op(description="Train the Splink matching model on staging.customers and save it to identity.model_path.")
    def train_identity_model(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
        from crm_pipelines.identity.model import save_model, train_model

        wh = warehouse.get_warehouse()
        if not wh.table_exists(STAGING, "customers"):
            raise dg.Failure("staging.customers does not exist yet: run crm_nightly once before training.")
        customers = wh.read_table(STAGING, "customers")
        identifiers = (
            wh.read_table(STAGING, "customer_identifiers") if wh.table_exists(STAGING, "customer_identifiers") else None
        )
        model = train_model(customers, identifiers, crm_config.identity)
        path = save_model(model, crm_config.resolve_path(crm_config.identity.model_path))
        context.log.info(f"identity model trained on {len(customers)} records and saved to {path}")

    @dg.job(name=TRAIN_IDENTITY_MODEL_JOB, description="Retrain the identity matching model and save it as JSON.")
    def train_identity_model_job() -> None:
        train_identity_model()

    return train_identity_model_job
