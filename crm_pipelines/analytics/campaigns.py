"""Campaigns with randomized control groups: who is in which group, and who must not be mailed.

Assignment rule (docs/marts.md, "Campaigns"):

- An audience campaign enrols, on every run between its ``start`` and ``end`` day, the exportable
  (consented) customers of its audience not enrolled yet, on that run's as-of day. Once enrolled, a
  customer stays in the campaign and in her group, whatever her segment does later: membership is
  decided before the treatment, so the groups stay comparable.
- The group is ``control`` when ``u < control_share``, with ``u`` the first 8 bytes of
  SHA-256("<campaign name>:<customer_id>") read as a big-endian integer and divided by 2**64. The
  hash, not a random draw, so a re-run, a backfill or another machine always puts a customer in the
  same group, and a customer's groups in two campaigns are independent.
- A source campaign (``source_campaign_id``) was run by another tool: its ``sent`` events define the
  treated customers and its ``holdout`` events the control group, enrolled at their first event.
- Control customers of a campaign whose measurement window is still open are held out of every
  audience marketing tools read (marts.marketing_audiences).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from crm_pipelines.analytics.activity import as_of_timestamp, normalized_text
from crm_pipelines.analytics.audiences import AUDIENCE_COLUMNS
from crm_pipelines.analytics.cycle_settings import CampaignSettings
from crm_pipelines.analytics.isin import isin

TREATMENT, CONTROL = "treatment", "control"
GROUPS = (TREATMENT, CONTROL)
HOLDOUT_EVENT = "holdout"
ASSIGNMENT_COLUMNS = ("campaign", "customer_id", "campaign_group", "enrolled_at", "assigned_by", "loyalty_member")
_HASH_SCALE = float(2**64)
# A source campaign's assignment rows, as :func:`source_campaign_assignments` gives them from the events.
SourceAssignments = Callable[[CampaignSettings], pd.DataFrame]


def control_draw(campaign: str, customer_ids: Sequence[str]) -> np.ndarray:
    """The uniform number in [0, 1) the group is decided by (see the module docstring)."""
    prefix = f"{campaign}:".encode()
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha256(prefix + str(cid).encode()).digest()[:8], "big") / _HASH_SCALE
            for cid in customer_ids
        ),
        dtype="float64",
        count=len(customer_ids),
    )


def is_member(customer_ids: np.ndarray, members: set[str]) -> np.ndarray:
    """Per customer id, whether ``members`` holds it: a hashed lookup (``np.isin`` compares object
    arrays pairwise: 20 s at 100,000 people)."""
    return pd.Series(customer_ids, dtype="object").isin(members).to_numpy(dtype=bool)


def assign_groups(campaign: str, customer_ids: Sequence[str], control_share: float) -> np.ndarray:
    """``control`` or ``treatment`` per customer id, stable across runs."""
    return np.where(control_draw(campaign, customer_ids) < control_share, CONTROL, TREATMENT)


def empty_assignments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign": pd.Series(dtype="str"),
            "customer_id": pd.Series(dtype="str"),
            "campaign_group": pd.Series(dtype="str"),
            "enrolled_at": pd.Series(dtype="datetime64[us, UTC]"),
            "assigned_by": pd.Series(dtype="str"),
            "loyalty_member": pd.Series(dtype="bool"),
        }
    )


def audience_members(segments: pd.DataFrame, exportable: pd.Series, audience: Sequence[str]) -> pd.Series:
    """Customer ids of ``segments`` (marts.customer_segments) in any of the ``audience`` segments,
    tiers, relationship types or clusters, among the ``exportable`` customer ids."""
    wanted = set(audience)
    in_audience = np.zeros(len(segments), dtype=bool)
    for column in AUDIENCE_COLUMNS:
        if column in segments:
            in_audience |= isin(segments[column].astype("str"), wanted)
    ids = segments.loc[in_audience, "customer_id"].astype("str")
    return ids[isin(ids, exportable.astype("str"))].drop_duplicates()


def enrol_audience_campaign(
    campaign: CampaignSettings,
    existing: pd.DataFrame,
    segments: pd.DataFrame,
    exportable: pd.Series,
    loyalty_members: set[str],
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """The campaign's assignment rows after this run: the existing ones, plus the audience's new members
    when the as-of day lies within the campaign's dates."""
    mine = existing[existing["campaign"] == campaign.name]
    day = as_of_timestamp(as_of).date()
    if campaign.start is None or campaign.end is None or not campaign.start <= day <= campaign.end:
        return mine
    members = audience_members(segments, exportable, campaign.audience)
    new = members[~isin(members, mine["customer_id"].astype("str"))].to_numpy(dtype=object)
    added = pd.DataFrame(
        {
            "campaign": campaign.name,
            "customer_id": pd.array(new, dtype="str"),
            "campaign_group": pd.array(assign_groups(campaign.name, new, campaign.control_share), dtype="str"),
            "enrolled_at": pd.Timestamp(day, tz="UTC"),
            "assigned_by": "hash",
            "loyalty_member": is_member(new, loyalty_members),
        }
    )
    return pd.concat([mine, added.astype(mine.dtypes.to_dict())], ignore_index=True) if len(added) else mine


def source_campaign_assignments(
    campaign: CampaignSettings, events: pd.DataFrame, loyalty_members: set[str], as_of: pd.Timestamp
) -> pd.DataFrame:
    """Assignment rows of a campaign run outside the project, from core.campaign_events: treated on a
    ``sent`` event, control on a ``holdout`` event (a customer with both counts as treated), enrolled
    at the first such event within the campaign's dates (when given) and up to the as-of instant."""
    kind = normalized_text(events["event_type"])
    at = pd.to_datetime(events["occurred_at"], utc=True)
    keep = (
        (events["campaign_id"].astype("str") == campaign.source_campaign_id)
        & kind.isin(["sent", HOLDOUT_EVENT])
        & events["customer_id"].notna()
        & at.notna()
        & (at <= as_of_timestamp(as_of))
    )
    if campaign.start is not None:
        keep &= at >= pd.Timestamp(campaign.start, tz="UTC")
    if campaign.end is not None:
        keep &= at < pd.Timestamp(campaign.end, tz="UTC") + pd.Timedelta(days=1)
    rows = pd.DataFrame(
        {"customer_id": events.loc[keep, "customer_id"].astype("str"), "sent": kind[keep] == "sent", "at": at[keep]}
    )
    if rows.empty:
        return empty_assignments()
    per_customer = rows.groupby("customer_id", sort=True).agg(sent=("sent", "max"), enrolled_at=("at", "min"))
    ids = per_customer.index.to_numpy(dtype=object)
    frame = pd.DataFrame(
        {
            "campaign": campaign.name,
            "customer_id": pd.array(ids, dtype="str"),
            "campaign_group": pd.array(np.where(per_customer["sent"], TREATMENT, CONTROL), dtype="str"),
            "enrolled_at": per_customer["enrolled_at"].dt.as_unit("us").to_numpy(),
            "assigned_by": "source",
            "loyalty_member": is_member(ids, loyalty_members),
        }
    )
    frame["enrolled_at"] = pd.to_datetime(frame["enrolled_at"], utc=True)
    return frame


def carried_over(existing: pd.DataFrame | None, id_history: pd.DataFrame | None) -> pd.DataFrame:
    """The existing assignments as this run keeps them: typed, with retired ids followed."""
    if existing is None or existing.empty:
        return empty_assignments()
    return follow_merges(_typed(existing), id_history)


def follow_merges(assignments: pd.DataFrame, id_history: pd.DataFrame | None) -> pd.DataFrame:
    """Enrolled customers whose id identity resolution retired (core.customer_id_history) continue
    under the id that took their records; when two enrolled customers became one, her earliest
    enrolment (and its group) stays."""
    if id_history is None or id_history.empty or assignments.empty:
        return assignments
    moves = id_history.dropna(subset=["retired_customer_id", "merged_into_customer_id"])
    successor = dict(
        zip(moves["retired_customer_id"].astype("str"), moves["merged_into_customer_id"].astype("str"), strict=True)
    )
    ids = assignments["customer_id"].astype("str").to_numpy(dtype=object)
    for _ in range(10):  # chains of merges over several runs; ten hops is far more than ever seen
        moved = np.array([successor.get(i, i) for i in ids], dtype=object)
        if (moved == ids).all():
            break
        ids = moved
    followed = assignments.assign(customer_id=pd.array(ids, dtype="str"))
    followed = followed.sort_values(["campaign", "customer_id", "enrolled_at"], kind="stable")
    return followed.drop_duplicates(["campaign", "customer_id"]).reset_index(drop=True)


def campaign_assignments(
    campaigns: Sequence[CampaignSettings],
    existing: pd.DataFrame | None,
    segments: pd.DataFrame,
    exportable: pd.Series,
    events: pd.DataFrame | SourceAssignments,
    loyalty_members: set[str],
    as_of: pd.Timestamp,
    id_history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """marts.campaign_assignments after this run: one row per campaign and enrolled customer.

    ``events`` is core.campaign_events, or a function giving a source campaign's rows without them
    (the nightly asset computes them in the warehouse, :mod:`crm_pipelines.facts.campaigns`).
    Rows of campaigns no longer configured are kept (they are history, not configuration).
    """
    existing = carried_over(existing, id_history)
    configured = {c.name for c in campaigns}
    parts = [existing[~existing["campaign"].isin(configured)]]
    for campaign in campaigns:
        if campaign.source_campaign_id and callable(events):
            parts.append(events(campaign))
        elif campaign.source_campaign_id:
            parts.append(source_campaign_assignments(campaign, events, loyalty_members, as_of))
        else:
            parts.append(enrol_audience_campaign(campaign, existing, segments, exportable, loyalty_members, as_of))
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_assignments()
    frame = pd.concat([_typed(p) for p in parts], ignore_index=True)
    return frame.sort_values(["campaign", "customer_id"], ignore_index=True)[list(ASSIGNMENT_COLUMNS)]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(
        campaign=frame["campaign"].astype("str"),
        customer_id=frame["customer_id"].astype("str"),
        campaign_group=frame["campaign_group"].astype("str"),
        enrolled_at=pd.to_datetime(frame["enrolled_at"], utc=True).dt.as_unit("us"),
        assigned_by=frame["assigned_by"].astype("str"),
        loyalty_member=frame["loyalty_member"].fillna(False).astype(bool),
    )[list(ASSIGNMENT_COLUMNS)]


def measurement_end(campaign: CampaignSettings, assignments: pd.DataFrame) -> pd.Timestamp | None:
    """When the campaign's last measurement window closes: the last enrolment day (the end date for an
    audience campaign) plus the goal's days; None before anyone is enrolled in a source campaign."""
    if campaign.end is not None and not campaign.source_campaign_id:
        last = pd.Timestamp(campaign.end, tz="UTC") + pd.Timedelta(days=1)
    else:
        mine = assignments.loc[assignments["campaign"] == campaign.name, "enrolled_at"]
        if mine.empty:
            return None
        last = pd.to_datetime(mine, utc=True).max()
    return last + pd.Timedelta(days=campaign.goal.within_days)


def open_holdouts(
    campaigns: Sequence[CampaignSettings], assignments: pd.DataFrame, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Control customers (campaign, customer_id) of campaigns still being measured on the as-of day."""
    as_of = as_of_timestamp(as_of)
    open_campaigns = [c.name for c in campaigns if (end := measurement_end(c, assignments)) is not None and as_of < end]
    held = assignments[(assignments["campaign_group"] == CONTROL) & assignments["campaign"].isin(open_campaigns)]
    return held[["campaign", "customer_id"]].reset_index(drop=True)


def with_campaigns(
    audiences: pd.DataFrame,
    assignments: pd.DataFrame,
    holdouts: pd.DataFrame,
    campaigns: Sequence[CampaignSettings],
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """marts.marketing_audiences with campaigns: held-out customers removed from every audience, and one
    audience per running audience campaign (audience_group ``campaign``) holding its treated customers.

    Columns: those of ``audiences`` plus ``campaign`` and ``campaign_group`` (null on segment audiences).
    """
    held = set(holdouts["customer_id"].astype("str"))
    base = audiences[~isin(audiences["customer_id"].astype("str"), held)].assign(
        campaign=pd.Series(pd.NA, index=audiences.index, dtype="str"),
        campaign_group=pd.Series(pd.NA, index=audiences.index, dtype="str"),
    )
    day = as_of_timestamp(as_of).date()
    running = [c.name for c in campaigns if not c.source_campaign_id and c.start <= day <= c.end]
    treated = assignments[(assignments["campaign_group"] == TREATMENT) & assignments["campaign"].isin(running)]
    treated = treated[~isin(treated["customer_id"], held)]
    contact = audiences.drop_duplicates("customer_id")[["customer_id", "email", "consent_at"]]
    rows = treated[["campaign", "customer_id", "campaign_group"]].merge(contact, on="customer_id", how="inner")
    rows = rows.assign(audience_group="campaign", audience=rows["campaign"])
    if rows.empty:
        return base.reset_index(drop=True)
    out = pd.concat([base, rows[base.columns].astype(base.dtypes.to_dict())], ignore_index=True)
    return out.sort_values(["audience_group", "audience", "customer_id"], ignore_index=True)
