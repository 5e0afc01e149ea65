"""``marts``: did CRM work pay off? Campaign groups and uplift, portfolio value, migrations, goals.

Thin assets over :mod:`crm_pipelines.analytics.campaigns`, ``campaign_performance``, ``portfolio`` and
``goals``; each table is validated against its contract before it is published.
"""

from functools import partial
from typing import TYPE_CHECKING

import dagster as dg

from crm_pipelines.analytics.cycle_columns import (
    CAMPAIGN_ASSIGNMENTS,
    CAMPAIGN_PERFORMANCE,
    CRM_GOALS,
    CUSTOMER_PORTFOLIO,
    CYCLE_MART_COLUMNS,
    SEGMENT_HISTORY,
    SEGMENT_MIGRATIONS,
)
from crm_pipelines.analytics.mart_boundary import MART_KEYS
from crm_pipelines.analytics.mart_columns import CLV, MART_COLUMNS
from crm_pipelines.assets.core import IDENTITY_MAP, core_key
from crm_pipelines.assets.cycle_glue import loyalty_members, segment_audiences
from crm_pipelines.assets.marts import as_of_timestamp, core_deps, mart_key, publish_mart
from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.assets.modeling import image_md, latest_weekly_clv_fits, metadata_number
from crm_pipelines.assets.publishing import blocking_failures, publish_checked, replace_from_staged, table_docs
from crm_pipelines.assets.staging import staging_key
from crm_pipelines.assets.validation import staged_name, validate_in_place, validated_check_specs
from crm_pipelines.checks.suites import MART_CONTRACT, NON_NEGATIVE, PROBABILITY, mart_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, MARTS
from crm_pipelines.warehouse import Warehouse, col

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


def loyalty_deps(config: CrmConfig) -> list[dg.AssetKey]:
    return [core_key(IDENTITY_MAP), *([staging_key("customer_identifiers")] if config.sources_for("customers") else [])]


def _columns(table: str) -> list[str]:
    return [c.name for c in CYCLE_MART_COLUMNS[table]]


def _asset(table: str, description: str, deps: list[dg.AssetKey], kinds: set[str]) -> dict:
    return {
        "key": mart_key(table),
        "group_name": MARTS,
        "kinds": kinds,
        "deps": deps,
        "description": description,
        "check_specs": validated_check_specs(mart_key(table), MART_CONTRACT),
    }


def build_cycle_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    kinds = {"pandas", warehouse_kind}

    @dg.asset(
        **_asset(
            CAMPAIGN_ASSIGNMENTS,
            "One row per campaign and enrolled customer: treatment or control, by a stable hash of campaign "
            "and customer id (or by a source's sent/holdout events). Members never move between runs.",
            [mart_key("customer_segments"), *core_deps(config, "unified_customers", "subscriptions",
                                                        "campaign_events"), *loyalty_deps(config)],
            kinds,
        )
    )  # fmt: skip
    def campaign_assignments_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.campaigns import GROUPS, campaign_assignments, carried_over
        from crm_pipelines.facts.build import ensure_core_inputs
        from crm_pipelines.facts.campaigns import read_source_campaign_assignments
        from crm_pipelines.facts.consent import read_consent

        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        # Consent and the source campaigns' rows are computed in the warehouse: one row per customer
        # reaches Python, never the subscriptions or the events.
        ensure_core_inputs(wh, "subscriptions", "campaign_events")
        exportable = read_consent(wh, as_of, exportable_only=True)["customer_id"]
        members = loyalty_members(wh, config)
        existing = wh.read_table(MARTS, CAMPAIGN_ASSIGNMENTS) if wh.table_exists(MARTS, CAMPAIGN_ASSIGNMENTS) else None
        id_history = (
            wh.read_table(CORE, "customer_id_history", columns=["retired_customer_id", "merged_into_customer_id"])
            if wh.table_exists(CORE, "customer_id_history")
            else None
        )
        frame = campaign_assignments(
            config.campaigns,
            existing,
            segment_audiences(wh),
            exportable,
            lambda campaign: read_source_campaign_assignments(wh, campaign, members, as_of),
            members,
            as_of,
            id_history=id_history,
        )
        suite = mart_suite(
            f"{MARTS}.{CAMPAIGN_ASSIGNMENTS}",
            columns=_columns(CAMPAIGN_ASSIGNMENTS),
            allowed_values={"campaign_group": GROUPS, "assigned_by": ("hash", "source")},
            unique_keys=[["campaign", "customer_id"]],
            not_null_columns=["campaign", "customer_id", "campaign_group", "enrolled_at"],
            # Enrolment is never undone: the table only grows, except where customers merged.
            min_rows=len(carried_over(existing, id_history)),
        )
        sizes = frame.groupby(["campaign", "campaign_group"]).size().rename("customers").reset_index()
        extra = {"group_sizes": dg.MetadataValue.md(sizes.to_markdown(index=False) if len(sizes) else "_(none)_")}
        return publish_mart(context, config, wh, CAMPAIGN_ASSIGNMENTS, frame, suite, extra=extra)

    @dg.asset(
        **_asset(
            CAMPAIGN_PERFORMANCE,
            "One row per campaign, goal metric and subgroup: conversion rate and revenue per customer of "
            "treatment and control, uplift with 95% intervals, p-value, incremental conversions and revenue.",
            [mart_key(CAMPAIGN_ASSIGNMENTS), *core_deps(config, "orders")],
            {"statsmodels", warehouse_kind},
        )
    )
    def campaign_performance_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.campaign_performance import METRICS, SUBGROUPS, campaign_performance
        from crm_pipelines.analytics.cycle_charts import uplift_chart_png
        from crm_pipelines.facts.activity import read_window_outcomes
        from crm_pipelines.facts.build import ensure_core_inputs

        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        ensure_core_inputs(wh, "orders")
        frame = campaign_performance(
            config.campaigns,
            wh.read_table(MARTS, CAMPAIGN_ASSIGNMENTS),
            # Each campaign's outcomes per enrolled customer are computed in the warehouse.
            lambda rows, days: read_window_outcomes(wh, CAMPAIGN_ASSIGNMENTS, rows, days, as_of),
            as_of,
        )
        suite = mart_suite(
            f"{MARTS}.{CAMPAIGN_PERFORMANCE}",
            columns=_columns(CAMPAIGN_PERFORMANCE),
            allowed_values={"metric": METRICS, "subgroup": SUBGROUPS},
            ranges={"p_value": PROBABILITY, "customers_treatment": NON_NEGATIVE, "customers_control": NON_NEGATIVE},
            unique_keys=[["campaign", "metric", "subgroup"]],
            not_null_columns=["campaign", "metric", "subgroup"],
        )
        shown = ["campaign", "metric", "subgroup", "value_treatment", "value_control", "uplift_absolute",
                 "uplift_absolute_low", "uplift_absolute_high", "p_value"]  # fmt: skip
        extra = {
            "uplift": dg.MetadataValue.md(
                frame[shown].to_markdown(index=False, floatfmt=".4f") if len(frame) else "_(none)_"
            ),
            **({"uplift_chart": image_md(uplift_chart_png(frame), "uplift with 95% intervals")} if len(frame) else {}),
        }
        return publish_mart(context, config, wh, CAMPAIGN_PERFORMANCE, frame, suite, extra=extra)

    @dg.asset(
        **_asset(
            SEGMENT_HISTORY,
            "One row per customer and month: RFM segment, value tier, portfolio cell and expected CLV as of "
            "the month's latest run; earlier months rebuilt once from order history.",
            [
                mart_key("customer_segments"),
                mart_key(CLV),
                core_key("purchases"),
                *core_deps(config, "unified_customers", "orders"),
            ],
            {"pandas", "scipy", warehouse_kind},
        )
    )
    def customer_segment_history_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.portfolio import HISTORY_COLUMNS, PORTFOLIO_CELLS, month_index

        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        suite = mart_suite(
            f"{MARTS}.{SEGMENT_HISTORY}",
            columns=list(HISTORY_COLUMNS),
            allowed_values={"portfolio_cell": PORTFOLIO_CELLS, "snapshot_kind": ("nightly", "backfill")},
            ranges={"expected_clv": NON_NEGATIVE},
            unique_keys=[["month_index", "customer_id"]],
            not_null_columns=["month", "customer_id", "rfm_segment", "value_tier"],
        )
        # Staged part by part (a first run's backfill is 13 months of every customer) and validated in
        # place, as validate_mart validates a frame it stages whole.
        current, months, rows = _stage_snapshots(wh, config, as_of)
        # Drift compares this month's snapshot with the previous run's, not a first run's backfill of
        # thirteen months with the one month a later night stages.
        checks = validate_in_place(context, config, wh, mart_key(SEGMENT_HISTORY), MARTS,
                                   staged_name(SEGMENT_HISTORY), suite, f"{MARTS}.{SEGMENT_HISTORY}",
                                   stats_where=col("month_index") == month_index(as_of))  # fmt: skip
        return _replace_months(context, wh, current, checks, months=months, rows=rows)

    @dg.asset(
        **_asset(
            CUSTOMER_PORTFOLIO,
            "One row per month and value tier, RFM segment and portfolio cell (and the total): customers, "
            "active customers, revenue, customer equity and its change since the previous month.",
            [mart_key(SEGMENT_HISTORY)],
            {"sql", warehouse_kind},
        )
    )
    def customer_portfolio_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.cycle_charts import equity_chart_png
        from crm_pipelines.analytics.portfolio import DIMENSIONS, customer_portfolio, portfolio_query

        wh = warehouse.get_warehouse()
        history = _history_table(wh)
        frame = customer_portfolio(wh.query(portfolio_query(history)), as_of_timestamp(run_window))
        suite = mart_suite(
            f"{MARTS}.{CUSTOMER_PORTFOLIO}",
            columns=_columns(CUSTOMER_PORTFOLIO),
            allowed_values={"dimension": DIMENSIONS},
            ranges={"customers": NON_NEGATIVE, "active_customers": NON_NEGATIVE, "equity_share": (0, 1.000001)},
            unique_keys=[["month", "dimension", "segment"]],
            not_null_columns=["month", "dimension", "segment"],
            min_rows=1,
        )
        total = frame[frame["dimension"] == "total"].sort_values("month")
        extra = {
            "equity_by_month": dg.MetadataValue.md(
                total[
                    ["month", "customers", "active_customers", "net_revenue", "customer_equity", "equity_change"]
                ].to_markdown(index=False, floatfmt=",.0f")
            ),
            "latest_customer_equity": metadata_number(total["customer_equity"].iloc[-1]) if len(total) else None,
            "equity_chart": image_md(equity_chart_png(frame), "customer equity over time"),
        }
        return publish_mart(context, config, wh, CUSTOMER_PORTFOLIO, frame, suite, extra=extra)

    @dg.asset(
        **_asset(
            SEGMENT_MIGRATIONS,
            "One row per month and from/to RFM segment and value tier: customers moving between the previous "
            "month's snapshot and this month's (Champions to At Risk), and staying.",
            [mart_key(SEGMENT_HISTORY)],
            {"sql", warehouse_kind},
        )
    )
    def segment_migrations_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.cycle_charts import migration_matrix_markdown
        from crm_pipelines.analytics.portfolio import MIGRATION_DIMENSIONS, migrations_query, segment_migrations

        wh = warehouse.get_warehouse()
        history = _history_table(wh)
        frame = segment_migrations(wh.query(migrations_query(history)))
        suite = mart_suite(
            f"{MARTS}.{SEGMENT_MIGRATIONS}",
            columns=_columns(SEGMENT_MIGRATIONS),
            allowed_values={"dimension": MIGRATION_DIMENSIONS},
            ranges={"customers": (1, None), "share_of_from": PROBABILITY},
            unique_keys=[["month", "dimension", "from_segment", "to_segment"]],
            not_null_columns=["month", "dimension", "from_segment", "to_segment"],
        )
        extra = {
            "rfm_migration_matrix": dg.MetadataValue.md(migration_matrix_markdown(frame, "rfm_segment")),
            "value_tier_migration_matrix": dg.MetadataValue.md(migration_matrix_markdown(frame, "value_tier")),
        }
        return publish_mart(context, config, wh, SEGMENT_MIGRATIONS, frame, suite, extra=extra)

    @dg.asset(
        **_asset(
            CRM_GOALS,
            "One row per goal of crm.yaml and period: target, actual, gap and whether the goal was met.",
            [mart_key("crm_kpis"), mart_key(CUSTOMER_PORTFOLIO)],
            kinds,
        )
    )
    def crm_goals_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.goals import UnknownKpiError, crm_goals

        wh = warehouse.get_warehouse()
        try:
            frame = crm_goals(
                config.goals,
                wh.read_table(MARTS, "crm_kpis"),
                wh.read_table(MARTS, CUSTOMER_PORTFOLIO),
                as_of_timestamp(run_window),
            )
        except UnknownKpiError as e:
            raise dg.Failure(f"{config.config_path or 'crm.yaml'}: goals: {e}") from None
        suite = mart_suite(
            f"{MARTS}.{CRM_GOALS}",
            columns=_columns(CRM_GOALS),
            allowed_values={"direction": ("at_least", "at_most")},
            unique_keys=[["goal", "period"]],
            not_null_columns=["goal", "kpi", "period", "target"],
        )
        latest = frame.sort_values("period_start").groupby("goal").tail(1)
        extra = {
            "latest_periods": dg.MetadataValue.md(latest.to_markdown(index=False) if len(latest) else "_(no goals)_")
        }
        return publish_mart(context, config, wh, CRM_GOALS, frame, suite, extra=extra)

    return [
        campaign_assignments_mart,
        campaign_performance_mart,
        customer_segment_history_mart,
        customer_portfolio_mart,
        segment_migrations_mart,
        crm_goals_mart,
    ]


def _history_table(wh: Warehouse) -> "sa.TableClause":
    from crm_pipelines.analytics.portfolio import HISTORY_COLUMNS

    return wh.table(MARTS, SEGMENT_HISTORY, list(HISTORY_COLUMNS))


def _stage_snapshots(
    wh: Warehouse, config: CrmConfig, as_of: "pd.Timestamp"
) -> tuple["pd.DataFrame", dict[int, str], int]:
    """Write ``marts.<history>__new``: this month's snapshot, plus the backfilled months when there is
    no earlier snapshot, one group of months at a time (never all of them in memory). Returns this
    month's snapshot (the table's first rows), the months written (month_index: YYYY-MM) and the rows."""
    import sqlalchemy as sa

    from crm_pipelines.analytics.portfolio import months_to_backfill, snapshot
    from crm_pipelines.analytics.predictive_tables import fit_clv_models
    from crm_pipelines.facts.activity import read_month_activity
    from crm_pipelines.facts.build import ensure_core_inputs, utc_day
    from crm_pipelines.facts.clv import clv_summary_from_purchases
    from crm_pipelines.facts.segment_history import backfill_batches

    settings = config.clv
    clv_column = f"clv_{settings.clv_months}m"
    ensure_core_inputs(wh, "orders")
    segments = wh.read_table(MARTS, "customer_segments", columns=["customer_id", "rfm_segment", "value_tier",
                                                                  "r_score", "f_score"])  # fmt: skip
    clv = wh.read_table(MARTS, CLV, columns=["customer_id", clv_column]) if wh.table_exists(MARTS, CLV) else None
    # Month activity, RFM inputs and CLV summaries are computed in the warehouse: the orders never reach Python.
    activity = partial(read_month_activity, wh)
    current = snapshot(segments, None if clv is None else clv.set_index("customer_id")[clv_column], activity, as_of,
                       config.portfolio)  # fmt: skip
    existing: set[int] = set()
    if wh.table_exists(MARTS, SEGMENT_HISTORY):
        months = wh.query(sa.select(col("month_index")).select_from(_history_table(wh)).distinct())
        existing = set(months["month_index"].astype("int64"))
    types = {c.name: c.dtype for c in MART_COLUMNS[SEGMENT_HISTORY]}
    staged_months: dict[int, str] = {}

    def stage(part: "pd.DataFrame", mode: str) -> int:
        staged_months.update(_months_of(part))
        return wh.write_table(part, MARTS, staged_name(SEGMENT_HISTORY), mode=mode, column_types=types)

    rows = stage(current, "replace")
    backfill = months_to_backfill(as_of, existing, config.portfolio)
    if backfill:
        present = wh.columns(CORE, "unified_customers")
        customers = wh.read_table(CORE, "unified_customers", columns=[c for c in ("customer_id", "created_at")
                                                                      if c in present])  # fmt: skip
        fits = latest_weekly_clv_fits(wh, settings)
        if fits is None:  # before the first weekly refit: fit once on today's history, as the CLV mart does
            try:
                today = clv_summary_from_purchases(wh, utc_day(as_of), settings.time_unit_days)
                fits = fit_clv_models(today, settings) if len(today) else None
            except ValueError:
                fits = None  # too little history for the models: equity stays unknown for those months
        # Past months in groups: one query per kind of input and one scoring per group of months.
        for part in backfill_batches(
            wh, customers, backfill, key_share=config.segments.key_share,
            growth_window_days=config.segments.growth_window_days,
            fits=None if fits is None else (fits[0], fits[1]), clv_settings=settings, portfolio=config.portfolio,
        ):  # fmt: skip
            rows += stage(part, "append")
            del part  # the next group is computed without this one beside it
    return current, staged_months, rows


def _months_of(frame: "pd.DataFrame") -> dict[int, str]:
    """month_index: YYYY-MM of the months a snapshot frame holds (formatted once per month, not per row)."""
    import pandas as pd

    distinct = frame[["month_index", "month"]].drop_duplicates("month_index")
    indexes, starts = distinct["month_index"], pd.to_datetime(distinct["month"])
    return {int(i): f"{m:%Y-%m}" for i, m in zip(indexes, starts, strict=True)}


def _replace_months(
    context: dg.AssetExecutionContext,
    wh: Warehouse,
    frame: "pd.DataFrame",
    checks: list,
    *,
    months: dict[int, str] | None = None,
    rows: int | None = None,
) -> dg.MaterializeResult:
    """Replace the months staged in ``<history>__new`` in the history (the month's latest run wins),
    unless a blocking check failed: then the history stays and the rows go to quarantine. ``frame`` is
    what was staged, or its first part (for the preview) with ``months`` (month_index: YYYY-MM) and
    ``rows`` describing all of it."""
    from crm_pipelines.analytics.cycle_columns import SEGMENT_HISTORY_COLUMNS

    months = _months_of(frame) if months is None else months
    rows = len(frame) if rows is None else rows
    extra = {"months_written": ", ".join(sorted(set(months.values())))}
    if blocking_failures(checks):
        return publish_checked(context, wh, MARTS, SEGMENT_HISTORY, frame, checks, columns=SEGMENT_HISTORY_COLUMNS,
                               extra_metadata={**extra, "dagster/row_count": rows}, staged=True)  # fmt: skip
    replaced = col("month_index").in_(sorted(months))
    # The validated copy's rows replace the history's months as they are, without writing them again;
    # on the first run (no history yet, thirteen months of every customer) the copy becomes the history.
    if not wh.table_exists(MARTS, SEGMENT_HISTORY):
        wh.swap_in(MARTS, f"{SEGMENT_HISTORY}__new", SEGMENT_HISTORY)
    else:
        # A history whose columns differ from the copy's (an older release's table, or one an operator
        # altered) gains the missing columns in the same transaction.
        replace_from_staged(wh, MARTS, f"{SEGMENT_HISTORY}__new", SEGMENT_HISTORY, replaced, add_columns=True)
    wh.document(
        MARTS, SEGMENT_HISTORY, table_docs(SEGMENT_HISTORY, SEGMENT_HISTORY_COLUMNS, MART_KEYS[SEGMENT_HISTORY])
    )
    metadata = table_metadata(wh, MARTS, SEGMENT_HISTORY, frame, SEGMENT_HISTORY_COLUMNS, extra)
    metadata.update({"dagster/row_count": wh.row_count(MARTS, SEGMENT_HISTORY), "rows_written": rows,
                     "published": True})  # fmt: skip
    return dg.MaterializeResult(metadata=metadata, check_results=list(checks))
