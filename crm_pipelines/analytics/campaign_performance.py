"""marts.campaign_performance: did the campaign work? Treatment against control, per goal metric.

Each enrolled customer is measured over her own window: from the start of her enrolment day (UTC)
for ``goal.within_days`` days, cut at the as-of instant while it is still open. She converts when she
makes a purchase (completed, not a refund) in the window; her revenue is the net revenue of the window
(purchases minus negative refund records). Rows per campaign: the purchase (or retention) rate and
revenue per customer, for all customers and, with ``loyalty_comparison``, for loyalty members and
non-members separately.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from crm_pipelines.analytics.activity import MICROS_PER_DAY, as_of_micros, bounded_orders, customer_index, utc_micros
from crm_pipelines.analytics.campaigns import CONTROL, TREATMENT, measurement_end
from crm_pipelines.analytics.cycle_settings import CampaignSettings
from crm_pipelines.analytics.uplift import Uplift, mean_uplift, proportion_uplift

SUBGROUPS = ("all", "loyalty_member", "non_member")
METRICS = ("purchase", "retention", "revenue")
PERFORMANCE_COLUMNS = (
    "campaign", "metric", "subgroup", "is_goal_metric", "window_days", "first_enrolled_at", "measured_until",
    "window_complete", "customers_treatment", "customers_control", "converted_treatment", "converted_control",
    "value_treatment", "value_control", "uplift_absolute", "uplift_absolute_low", "uplift_absolute_high",
    "uplift_relative", "uplift_relative_low", "uplift_relative_high", "p_value", "incremental",
    "target_uplift", "target_reached",
)  # fmt: skip


def window_outcomes(
    assignments: pd.DataFrame, orders: pd.DataFrame, within_days: int, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Per assignment row: ``converted`` (a purchase in the window) and ``revenue`` (net, in it)."""
    index = customer_index(assignments.drop_duplicates("customer_id"))
    facts = bounded_orders(orders, index, as_of)
    enrolled, _ = utc_micros(assignments["enrolled_at"])
    start = enrolled - enrolled % MICROS_PER_DAY
    end = np.minimum(start + within_days * MICROS_PER_DAY, as_of_micros(as_of) + 1)
    code = index.get_indexer(assignments["customer_id"].astype("str"))
    per_code_start = pd.Series(start, index=code)
    # One enrolment per customer and campaign: the caller passes one campaign's rows.
    order_start = per_code_start.reindex(facts["code"].to_numpy()).to_numpy()
    order_end = pd.Series(end, index=code).reindex(facts["code"].to_numpy()).to_numpy()
    micros = facts["micros"].to_numpy()
    inside = (micros >= order_start) & (micros < order_end)
    n = len(index)
    purchases = np.bincount(facts["code"].to_numpy()[inside & facts["is_purchase"].to_numpy()], minlength=n)
    revenue = np.bincount(
        facts["code"].to_numpy()[inside], weights=facts["revenue_effect"].to_numpy()[inside], minlength=n
    )
    return assignments.assign(converted=purchases[code] > 0, revenue=revenue[code])


def _row(
    campaign: CampaignSettings,
    metric: str,
    subgroup: str,
    outcomes: pd.DataFrame,
    window: dict,
) -> dict:
    treated = outcomes[outcomes["campaign_group"] == TREATMENT]
    control = outcomes[outcomes["campaign_group"] == CONTROL]
    conv_t, conv_c = int(treated["converted"].sum()), int(control["converted"].sum())
    if metric == "revenue":
        uplift: Uplift = mean_uplift(treated["revenue"].to_numpy(), control["revenue"].to_numpy())
    else:
        uplift = proportion_uplift(conv_t, len(treated), conv_c, len(control))
    goal_metric = "purchase" if campaign.goal.metric == "purchase" else campaign.goal.metric
    is_goal = metric == goal_metric
    target = campaign.target_uplift if is_goal else None
    reached = None
    if target is not None and not np.isnan(uplift.uplift_absolute):
        reached = bool(uplift.uplift_absolute >= target and uplift.p_value < 0.05)
    incremental = uplift.uplift_absolute * len(treated) if len(treated) else np.nan
    return {
        "campaign": campaign.name,
        "metric": metric,
        "subgroup": subgroup,
        "is_goal_metric": is_goal,
        "window_days": campaign.goal.within_days,
        **window,
        "customers_treatment": len(treated),
        "customers_control": len(control),
        "converted_treatment": conv_t,
        "converted_control": conv_c,
        **uplift.as_dict(),
        "incremental": incremental,
        "target_uplift": target,
        "target_reached": reached,
    }


def campaign_performance(
    campaigns: Sequence[CampaignSettings],
    assignments: pd.DataFrame,
    orders: pd.DataFrame | Callable[[pd.DataFrame, int], pd.DataFrame],
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """One row per configured campaign with enrolled customers, metric and subgroup (columns in
    docs/marts.md).

    ``orders`` is core.orders, or a function giving :func:`window_outcomes` of one campaign's rows and
    goal days without them (the nightly asset computes them in the warehouse,
    :mod:`crm_pipelines.facts.activity`)."""
    as_of = pd.Timestamp(as_of)
    rows = []
    for campaign in campaigns:
        mine = assignments[assignments["campaign"] == campaign.name]
        if mine.empty:
            continue
        if callable(orders):
            outcomes = orders(mine, campaign.goal.within_days)
        else:
            outcomes = window_outcomes(mine, orders, campaign.goal.within_days, as_of)
        closes = measurement_end(campaign, assignments)
        window = {
            "first_enrolled_at": pd.to_datetime(mine["enrolled_at"], utc=True).min(),
            "measured_until": min(closes, as_of) if closes is not None else as_of,
            "window_complete": bool(closes is not None and closes <= as_of),
        }
        conversion = "retention" if campaign.goal.metric == "retention" else "purchase"
        subgroups = {"all": outcomes}
        if campaign.loyalty_comparison:
            member = outcomes["loyalty_member"].astype(bool)
            subgroups.update({"loyalty_member": outcomes[member], "non_member": outcomes[~member]})
        for subgroup, part in subgroups.items():
            for metric in (conversion, "revenue"):
                rows.append(_row(campaign, metric, subgroup, part, window))
    frame = pd.DataFrame(rows, columns=list(PERFORMANCE_COLUMNS))
    for name in ("first_enrolled_at", "measured_until"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    for name in ("campaign", "metric", "subgroup"):
        frame[name] = frame[name].astype("str")
    frame["target_reached"] = frame["target_reached"].astype("boolean")
    frame["is_goal_metric"] = frame["is_goal_metric"].astype(bool)
    frame["window_complete"] = frame["window_complete"].astype(bool)
    for name in ("customers_treatment", "customers_control", "converted_treatment", "converted_control", "window_days"):
        frame[name] = frame[name].astype("int64")
    floats = [
        c
        for c in PERFORMANCE_COLUMNS
        if c.startswith(("value_", "uplift_")) or c in ("p_value", "incremental", "target_uplift")
    ]
    frame[floats] = frame[floats].astype("float64")
    return frame
