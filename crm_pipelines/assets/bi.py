"""``bi/marts_file``: the marts copied to a separate DuckDB file that BI tools read (docs/bi.md).

It depends on every mart, so every job that republishes marts (``crm_nightly``, ``crm_full_reresolution``,
"Materialize all") rewrites it last, and a run whose marts failed their checks leaves yesterday's file.
"""

import time
from collections.abc import Sequence

import dagster as dg

from crm_pipelines.assets.metadata import counts_markdown
from crm_pipelines.bi_file import BiFileError, export_enabled, export_marts_file
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources.warehouse import WarehouseResource

BI_GROUP = "bi"
BI_FILE_KEY = dg.AssetKey([BI_GROUP, "marts_file"])


def build_bi_assets(
    config: CrmConfig, warehouse: WarehouseResource, mart_keys: Sequence[dg.AssetKey]
) -> list[dg.AssetsDefinition]:
    """The BI file asset, when crm.yaml's ``bi.export`` asks for it on this warehouse."""
    if not export_enabled(config.bi.export, warehouse.kind):
        return []
    target = config.resolve_path(config.bi.marts_file)

    @dg.asset(
        key=BI_FILE_KEY,
        # Shown in the marts group, beside the marts it copies (as audit/run_summary is): the global
        # lineage then keeps its four layers, which the UI draws expanded.
        group_name="marts",
        kinds={"duckdb"},
        deps=list(mart_keys),
        description=f"Every marts table copied to {config.bi.marts_file} (as marts.<table> and main.<table>) "
        "and swapped in atomically, so BI tools read it while the nightly run writes the warehouse.",
    )
    def marts_file(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        try:
            export = export_marts_file(warehouse.get_warehouse(), target, carry_over=True)
        except BiFileError as e:
            raise dg.Failure(str(e)) from None
        kept = "".join(f", {table}: {months} unchanged months kept" for table, months in export.carried_over.items())
        context.log.info(
            f"BI file {export.path}: {len(export.rows)} marts, {sum(export.rows.values())} rows, "
            f"{export.size_bytes / 1e6:.1f} MB in {export.seconds:.1f} s{kept}"
        )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(export.path)),
                "dagster/row_count": sum(export.rows.values()),
                "tables": counts_markdown(export.rows, key="table"),
                "size_mb": round(export.size_bytes / 1e6, 2),
                "seconds": round(export.seconds, 2),
                # Months of a monthly mart kept from the last export instead of copied again.
                "months_carried_over": dg.MetadataValue.json(export.carried_over),
                "written_at": dg.MetadataValue.timestamp(time.time()),
            }
        )

    return [marts_file]
