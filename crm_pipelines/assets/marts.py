"""``marts``: the tables BI reads and CRM teams act on, computed from the core layer.

Each mart is validated against its contract before it is swapped in; its column docs live in
``docs/marts.md`` (generated from :mod:`crm_pipelines.analytics.mart_columns`).
"""

from typing import TYPE_CHECKING

import dagster as dg

from crm_pipelines.analytics.mart_boundary import (
    CUSTOMER_360_EXTRAS,
    MART_KEYS,
    customer_360_columns,
    to_published_mart,
)
from crm_pipelines.analytics.mart_columns import MART_COLUMNS
from crm_pipelines.assets.core import core_key
from crm_pipelines.assets.cycle_glue import campaign_audiences, loyalty_frame, segment_audiences, with_loyalty_kpis
from crm_pipelines.assets.privacy import address_suppression
from crm_pipelines.assets.publishing import publish_checked
from crm_pipelines.assets.validation import validate_in_place, validate_table, validated_check_specs
from crm_pipelines.checks.suites import MART_CONTRACT, PROBABILITY, RATE, mart_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, CORE_ATTRIBUTED_ENTITIES, MARTS
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

CORE_INPUTS = ("unified_customers", *CORE_ATTRIBUTED_ENTITIES)


def mart_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([MARTS, table])


def core_deps(config: CrmConfig, *tables: str) -> list[dg.AssetKey]:
    return [core_key(t) for t in tables if t == "unified_customers" or config.sources_for(t)]


def as_of_timestamp(run_window: RunWindowResource) -> "pd.Timestamp":
    import pandas as pd
    return pd.Timestamp(run_window.cutoff())


def validate_mart(
    context, config: CrmConfig, wh: Warehouse, table: str, frame: "pd.DataFrame", suite, columns=None
) -> list:
    """Contract and drift results for a new version of marts.<table>, written as ``marts.<table>__new``
    (with ``columns``' types, default its documented ones) and validated there; publish it with
    ``publish_checked(..., staged=True)``, or drop it."""
    columns = MART_COLUMNS.get(table, ()) if columns is None else columns
    types = {c.name: c.dtype for c in columns if c.name in frame.columns}
    return validate_table(context, config, wh, mart_key(table), f"{MARTS}.{table}", frame, suite, column_types=types)


def publish_mart(
    context, config: CrmConfig, wh: Warehouse, table: str, frame: "pd.DataFrame", suite, columns=None, extra=None
) -> dg.MaterializeResult:
    """Validate ``frame`` and swap it in as marts.<table>; ``columns`` default to its documented ones.

    The model code's column names become the mart's here, and crm.yaml's ``pii`` policy applies
    (:func:`to_published_mart`), so ``suite`` names the mart's columns as declared before the policy."""
    columns = MART_COLUMNS.get(table, ()) if columns is None else columns
    frame, columns, suite = to_published_mart(table, frame, columns, suite, config.pii)
    checks = validate_mart(context, config, wh, table, frame, suite, columns)
    return publish_checked(
        context, wh, MARTS, table, frame, checks, columns=columns, key=MART_KEYS.get(table, ()), extra_metadata=extra,
        staged=True,
    )


def publish_query_mart(
    context, config: CrmConfig, wh: Warehouse, table: str, statement: "sa.Select", suite, columns, extra=None
) -> dg.MaterializeResult:
    """Run ``statement`` (the mart as published: its names, its types, the ``pii`` policy applied) into
    ``marts.<table>__new`` inside the warehouse, validate it there and swap it in: only counts and a
    five-row preview reach Python, whatever the mart's size."""
    import sqlalchemy as sa

    from crm_pipelines.assets.metadata import PREVIEW_ROWS
    from crm_pipelines.facts.sql import create_staged

    staged, rows = create_staged(wh, statement, MARTS, table)
    checks = validate_in_place(context, config, wh, mart_key(table), MARTS, staged, suite, f"{MARTS}.{table}")
    preview = wh.query(sa.select(sa.text("*")).select_from(wh.table(MARTS, staged)).limit(PREVIEW_ROWS))
    extra = {**(extra or {}), "dagster/row_count": rows}
    return publish_checked(
        context, wh, MARTS, table, preview, checks, columns=columns, key=MART_KEYS.get(table, ()), extra_metadata=extra,
        staged=True,
    )


def build_marts_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    kinds = {"pandas", warehouse_kind}
    settings = config.segments

    @dg.asset(
        key=mart_key("customer_segments"),
        group_name=MARTS,
        kinds={"scikitlearn", warehouse_kind},
        deps=[core_key(t) for t in ("customer_order_facts", "customer_engagement_facts", "customer_category_facts")],
        description="One row per customer: RFM scores and segment, value tier, relationship type and "
        "behavioral cluster (k-means, k by silhouette), from the customer facts built in the warehouse.",
        check_specs=validated_check_specs(mart_key("customer_segments"), MART_CONTRACT),
    )
    def customer_segments_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.reporting import (
            cluster_profiles_markdown,
            png_markdown,
            segment_chart_png,
            segment_sizes_markdown,
        )
        from crm_pipelines.analytics.segments import (
            NO_PURCHASES,
            RELATIONSHIP_TYPES,
            RFM_SEGMENTS,
            SEGMENT_ORDER_FACTS,
            VALUE_TIERS,
            segments_from_facts,
        )

        wh = warehouse.get_warehouse()
        # One row per customer (or customer and category), never the order lines; of the order facts only
        # the columns the scores read.
        order_facts = wh.read_table(CORE, "customer_order_facts", columns=list(SEGMENT_ORDER_FACTS))
        result = segments_from_facts(
            order_facts,
            wh.read_table(CORE, "customer_engagement_facts"),
            wh.read_table(CORE, "customer_category_facts"),
            settings,
        )
        segments = result.segments
        suite = mart_suite(
            f"{MARTS}.customer_segments",
            columns=[c.name for c in MART_COLUMNS["customer_segments"]],
            allowed_values={
                "rfm_segment": [*RFM_SEGMENTS, NO_PURCHASES],
                "value_tier": VALUE_TIERS,
                "relationship_type": RELATIONSHIP_TYPES,
                "r_score": range(1, 6),
                "f_score": range(1, 6),
                "m_score": range(1, 6),
            },
            unique_keys=[["customer_id"]],
            not_null_columns=["customer_id", "rfm_segment", "value_tier", "relationship_type"],
            min_rows=len(order_facts),
        )
        extra = {
            "segment_sizes": dg.MetadataValue.md(segment_sizes_markdown(segments)),
            "segment_chart": dg.MetadataValue.md(png_markdown(segment_chart_png(segments), "RFM segments")),
            "clusters_k": int(result.clusters.k),
            "silhouette_by_k": dg.MetadataValue.json(
                {str(k): round(float(v), 4) for k, v in result.clusters.silhouette_by_k.items()}
            ),
            "cluster_profiles": dg.MetadataValue.md(cluster_profiles_markdown(result.clusters.profiles)),
            "core_categories": ", ".join(result.core_categories),
        }
        return publish_mart(context, config, wh, "customer_segments", segments, suite, extra=extra)

    @dg.asset(
        key=mart_key("crm_kpis"),
        group_name=MARTS,
        kinds={"sql", warehouse_kind},
        deps=[
            core_key("purchases"),
            core_key("customer_order_facts"),
            *core_deps(config, "unified_customers", "orders", "support_tickets", "campaign_events", "survey_responses"),
        ],
        description="One row per day: active, new and repeat customers, retention and churn rate, revenue, "
        "satisfaction, NPS, service response time, resolved inquiries, email-to-purchase conversion; "
        "computed in the warehouse.",
        check_specs=validated_check_specs(mart_key("crm_kpis"), MART_CONTRACT),
    )
    def crm_kpis_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.reporting import kpi_chart_png, kpi_trend_markdown, png_markdown
        from crm_pipelines.facts.build import ensure_core_inputs
        from crm_pipelines.facts.marts import read_crm_kpis

        wh = warehouse.get_warehouse()
        ensure_core_inputs(wh, "orders", "support_tickets", "campaign_events", "survey_responses")
        kpis = read_crm_kpis(wh, run_window.cutoff(), config.clv.purchase_statuses)
        kpis = with_loyalty_kpis(wh, config, kpis)
        rate_columns = [
            c for c in ("retention_rate", "churn_rate", "resolved_share", "email_conversion_rate") if c in kpis.columns
        ]
        suite = mart_suite(
            f"{MARTS}.crm_kpis",
            columns=[c.name for c in MART_COLUMNS["crm_kpis"]],
            ranges={**{c: RATE for c in rate_columns}, "nps": (-100, 100)},
            unique_keys=[list(MART_KEYS["crm_kpis"])],
            not_null_columns=["kpi_date"],
            min_rows=1,
        )
        extra = {
            "kpi_trend": dg.MetadataValue.md(kpi_trend_markdown(kpis)),
            "kpi_chart": dg.MetadataValue.md(png_markdown(kpi_chart_png(kpis), "CRM KPIs")),
        }
        return publish_mart(context, config, wh, "crm_kpis", kpis, suite, extra=extra)

    @dg.asset(
        key=mart_key("cross_sell_recommendations"),
        group_name=MARTS,
        kinds=kinds,
        deps=[core_key("customer_category_facts")],
        description="Per customer, the top 3 complementary categories not yet bought, ranked by co-purchase lift; "
        "rules from category co-purchase counts and baskets from the customer-by-category facts, both in the "
        "warehouse.",
        check_specs=validated_check_specs(mart_key("cross_sell_recommendations"), MART_CONTRACT),
    )
    def cross_sell_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.cross_sell import recommendations_from_facts
        from crm_pipelines.facts.cross_sell import category_pairs_select

        wh = warehouse.get_warehouse()
        # The rules come from co-purchase counts per pair of categories, counted in the warehouse.
        recs = recommendations_from_facts(
            wh.read_table(CORE, "customer_category_facts", columns=["customer_id", "category"]),
            pair_counts=wh.query(category_pairs_select(wh)),
        )
        suite = mart_suite(
            f"{MARTS}.cross_sell_recommendations",
            columns=[c.name for c in MART_COLUMNS["cross_sell_recommendations"]],
            ranges={
                "recommendation_rank": (1, 3),
                "confidence": PROBABILITY,
                "support": PROBABILITY,
                "lift": (0, None),
            },
            unique_keys=[list(MART_KEYS["cross_sell_recommendations"])],
            not_null_columns=["customer_id", "recommendation"],
        )
        extra = {"customers_with_recommendations": int(recs["customer_id"].nunique()) if len(recs) else 0}
        return publish_mart(context, config, wh, "cross_sell_recommendations", recs, suite, extra=extra)

    @dg.asset(
        key=mart_key("marketing_audiences"),
        group_name=MARTS,
        kinds=kinds,
        deps=[
            mart_key("customer_segments"),
            mart_key("campaign_assignments"),
            *core_deps(config, "unified_customers", "subscriptions", "campaign_events"),
        ],
        description="Segment audiences for campaigns, with only customers whose latest consent is an "
        "opt-in and "
        "who did not unsubscribe or withdraw afterwards in any source; running campaigns' treated "
        "customers, and no control customer of a campaign still measured.",
        check_specs=validated_check_specs(mart_key("marketing_audiences"), MART_CONTRACT),
    )
    def marketing_audiences_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.audiences import audiences_from_consent, consent_summary
        from crm_pipelines.analytics.isin import isin
        from crm_pipelines.facts.build import ensure_core_inputs
        from crm_pipelines.facts.consent import read_consent

        wh = warehouse.get_warehouse()
        as_of = as_of_timestamp(run_window)
        # Consent and suppression are computed in the warehouse: one row per customer or address reaches
        # Python, never the subscriptions or the events.
        ensure_core_inputs(wh, "subscriptions", "campaign_events")
        segments = segment_audiences(wh)
        consent = read_consent(wh, as_of)
        suppressed = address_suppression(config, wh, as_of)
        audiences = audiences_from_consent(segments, consent, suppressed=suppressed)
        audiences, held_out = campaign_audiences(wh, config, audiences, as_of)
        consent = consent[isin(consent["customer_id"], segments["customer_id"].astype("str"))]
        suite = mart_suite(
            f"{MARTS}.marketing_audiences",
            columns=[c.name for c in MART_COLUMNS["marketing_audiences"]],
            unique_keys=[["customer_id", "audience"]],
            not_null_columns=["customer_id", "audience", "email"],
            allowed_values={"campaign_group": ["treatment"]},
        )
        extra = {
            "consent_summary": dg.MetadataValue.md(consent_summary(consent).to_markdown(index=False)),
            "customers_exportable": int(audiences["customer_id"].nunique()) if len(audiences) else 0,
            "addresses_suppressed": len(suppressed),
            "customers_held_out": held_out,
        }
        return publish_mart(context, config, wh, "marketing_audiences", audiences, suite, extra=extra)

    @dg.asset(
        key=mart_key("customer_360"),
        group_name=MARTS,
        kinds={"sql", warehouse_kind},
        deps=[
            mart_key("customer_segments"),
            mart_key("customer_lifetime_value"),
            mart_key("churn_risk"),
            core_key("customer_order_facts"),
            core_key("customer_engagement_facts"),
            core_key("customer_category_facts"),
            *core_deps(config, "unified_customers", "subscriptions", "campaign_events"),
        ],
        description="One row per customer: golden profile, orders and revenue, categories, service, "
        "NPS, consent, "
        "and the segment, value tier, CLV and churn-risk columns; computed in the warehouse from the facts.",
        check_specs=validated_check_specs(mart_key("customer_360"), MART_CONTRACT),
    )
    def customer_360_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        from crm_pipelines.analytics.mart_boundary import MART_RENAMES
        from crm_pipelines.analytics.mart_columns import PII_COLUMNS
        from crm_pipelines.analytics.pii import column_modes
        from crm_pipelines.facts.build import ensure_core_inputs
        from crm_pipelines.facts.customer360 import customer_360_mart_select, customer_360_select

        wh = warehouse.get_warehouse()
        ensure_core_inputs(wh, "subscriptions", "campaign_events", "orders")
        extras = [(t, drop) for t, drop in CUSTOMER_360_EXTRAS if wh.table_exists(MARTS, t)]
        columns = customer_360_columns(config.clv)
        suite = mart_suite(
            f"{MARTS}.customer_360",
            columns=[c.name for c in MART_COLUMNS["customer_360"]],
            unique_keys=[["customer_id"]],
            not_null_columns=["customer_id"],
            min_rows=wh.row_count(CORE, "unified_customers"),
        )
        if not column_modes("customer_360", [c.name for c in columns], config.pii, PII_COLUMNS):
            # Every column kept as it is: the mart is one query, written, validated and swapped in inside
            # the warehouse. At 100,000 people the round trip through pandas (read the joined rows, join
            # the loyalty flags, write them back) was most of the step.
            statement = customer_360_mart_select(
                wh, run_window.cutoff(), extras, config.loyalty, columns, MART_RENAMES["customer_360"]
            )
            return publish_query_mart(context, config, wh, "customer_360", statement, suite, columns)
        # Hashing and masking normalize Unicode (NFC), which the two engines' SQL does not share: with a
        # personal-data policy the mart is protected in Python (crm_pipelines.analytics.pii).
        view = wh.query(customer_360_select(wh, run_window.cutoff(), extras))
        view = view.merge(
            loyalty_frame(wh, config, view[["customer_id"]], as_of_timestamp(run_window)), on="customer_id", how="left"
        )
        # Declaring the joined columns keeps their own tables' types (an integer with nulls stays one).
        return publish_mart(context, config, wh, "customer_360", view, suite, columns)

    return [
        customer_segments_mart,
        crm_kpis_mart,
        cross_sell_mart,
        marketing_audiences_mart,
        customer_360_mart,
    ]
