"""Category co-purchase counts for cross-sell, counted in the warehouse: one row per pair of categories.

A basket is a customer's purchases (``core.customer_category_facts``: one row per customer and category
bought). ``customers`` of a pair (A, B) is the number of customers who bought both; of (A, A), the number
who bought A. The association rules of :mod:`crm_pipelines.analytics.cross_sell` are computed from
these counts (:func:`~crm_pipelines.analytics.cross_sell.rules_from_pair_counts`), never from order lines.
"""

from __future__ import annotations

import sqlalchemy as sa

from crm_pipelines.facts.orders import CUSTOMER_CATEGORY_FACTS
from crm_pipelines.facts.sql import as_bigint
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse


def category_pairs_select(wh: Warehouse) -> sa.Select:
    """antecedent, consequent, customers: every ordered pair of categories bought by one customer."""
    facts = wh.table(CORE, CUSTOMER_CATEGORY_FACTS, ["customer_id", "category"])
    # The facts hold one row per customer and category already (their key): no DISTINCT of their own.
    bought = (
        sa.select(facts.c.customer_id, facts.c.category)
        .where(facts.c.category.is_not(None), facts.c.category != "")
        .cte("bought_categories")
    )
    a, b = bought.alias("a"), bought.alias("b")
    return (
        sa.select(
            a.c.category.label("antecedent"),
            b.c.category.label("consequent"),
            as_bigint(sa.func.count()).label("customers"),
        )
        .select_from(a.join(b, a.c.customer_id == b.c.customer_id))
        .group_by(a.c.category, b.c.category)
    )
