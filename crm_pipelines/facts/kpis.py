"""``marts.crm_kpis`` as one warehouse query: one row per day, the definitions of
:func:`crm_pipelines.analytics.kpis.crm_kpis` (the pandas reference the tests hold this query equal to).

"Distinct customers active in a trailing window" uses the reference's trick in SQL: each purchase day
covers the days until the window passes it or the customer's next purchase day begins, so the
coverage pieces never overlap and a running sum of +1/-1 marks over a calendar counts each customer
once per day. Trailing sums are window functions over that calendar (one row per day, so ROWS = days).

Reads core.purchases and core.customer_order_facts (its ``first_purchase_day``), built with the same
cutoff, and the attributed core tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from crm_pipelines.facts.orders import CUSTOMER_ORDER_FACTS, PURCHASES, core_orders
from crm_pipelines.facts.sql import as_bigint, as_float, bytewise, day_of, instant, ratio, text_value, truthy
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse

PROMOTER_MIN = 9
DETRACTOR_MAX = 6
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class KpiWindows:
    """The keyword defaults of the reference ``crm_kpis``."""

    days: int = 365
    active: int = 30
    retention: int = 90
    service: int = 30
    nps: int = 90
    conversion_days: int = 7
    conversion_window: int = 30

    @property
    def lookback(self) -> int:
        conversion = self.conversion_window + self.conversion_days
        return max(2 * self.retention, self.active, self.service, self.nps, conversion)


def _trailing(value: sa.ColumnElement, day: sa.ColumnElement, window: int) -> sa.ColumnElement:
    return sa.func.sum(value).over(order_by=day, rows=(-(window - 1), 0))


def _lagged(value: sa.ColumnElement, day: sa.ColumnElement, lag: int) -> sa.ColumnElement:
    return sa.func.coalesce(sa.func.lag(value, lag).over(order_by=day), 0)


def _known(wh: Warehouse, table: sa.TableClause) -> sa.ColumnElement[bool]:
    customers = wh.table(CORE, "unified_customers", ["customer_id"])
    return table.c.customer_id.in_(sa.select(customers.c.customer_id))


class _Query:
    def __init__(
        self,
        wh: Warehouse,
        cutoff: dt.datetime | pd.Timestamp,
        today: int,
        windows: KpiWindows,
        purchase_statuses: tuple[str, ...],
    ):
        self.wh, self.w, self.today, self.limit = wh, windows, today, instant(cutoff)
        self.purchase_statuses = purchase_statuses
        self.base = today - windows.days + 1 - windows.lookback
        self.calendar = sa.func.generate_series(self.base, today).table_valued("day").render_derived(name="calendar")

    def per_day(self, name: str, day: sa.ColumnElement, *values: sa.ColumnElement, where=(), source=None) -> sa.CTE:
        stmt = sa.select(day.label("day"), *values)
        if source is not None:
            stmt = stmt.select_from(source)
        return stmt.where(day >= self.base, *where).group_by(day).cte(name)

    def coverages(self, spans: sa.CTE, windows: dict[str, int]) -> sa.CTE:
        """Per day and for each named window: customers with a purchase day in the ``window`` days ending
        that day, as +1/-1 marks in a column of that name.

        ``spans``: each customer's purchase days with her next one (:meth:`next_purchase`). The windows
        share one pass: a purchase day's start mark counts in every window whose piece reaches the
        calendar, and each window adds its stop marks; one union and one aggregate for all, where a
        pass per window read the spans six times and aggregated three unions (at 100,000 people
        PostgreSQL took about 0.55 s per window)."""
        base, names = self.base, list(windows)
        nxt = sa.func.coalesce(spans.c.next_day, self.today + 1)
        pieces = sa.select(
            spans.c.day.label("start"), *(sa.func.least(spans.c.day + w, nxt).label(n) for n, w in windows.items())
        ).subquery("coverage_pieces")
        # A piece's stop grows with its window: the widest window keeps every piece another one keeps.
        widest = max(names, key=windows.__getitem__)
        kept = sa.select(pieces).where(pieces.c[widest] > base).subquery("coverage_kept")
        starts = sa.select(
            sa.func.greatest(kept.c.start, base).label("day"),
            *(sa.case((kept.c[n] > base, 1), else_=0).label(n) for n in names),
        )
        stops = [
            sa.select(kept.c[n].label("day"), *(sa.literal(-1 if m == n else 0).label(m) for m in names))
            .where(kept.c[n] > base)
            for n in names
        ]
        marks = sa.union_all(starts, *stops).subquery("coverage_marks")
        return (
            sa.select(marks.c.day, *(sa.func.sum(marks.c[n]).label(n) for n in names))
            .group_by(marks.c.day)
            .cte("coverage_marks_daily")
        )

    def build(self) -> sa.Select:
        wh, w, cal = self.wh, self.w, self.calendar
        p = wh.table(CORE, PURCHASES, ["customer_id", "ordered_at", "purchase_day", "amount"])
        # Every use of the purchases (purchase days and their next, clicks followed by a purchase) starts
        # at the calendar's first day; the first purchases come from the order facts.
        known_purchases = sa.select(p).where(p.c.purchase_day >= self.base, _known(wh, p)).cte("known_purchases")
        kp = known_purchases.c
        # The calendar starts a lookback (at least the longest coverage window, plus the retention lag)
        # before the first day shown, so a purchase day before it covers no day that is shown or lagged
        # into one, and a later day's next purchase day is later still: the window pass skips them.
        facts = wh.table(CORE, CUSTOMER_ORDER_FACTS, ["customer_id", "first_purchase_day"])
        first = (
            sa.select(facts.c.customer_id, facts.c.first_purchase_day.label("day"))
            .where(facts.c.first_purchase_day.is_not(None))
            .cte("first_purchase")
        )
        new = self.per_day("new_buyers", first.c.day, sa.func.count().label("n"))
        # One window pass over the purchases gives each its customer's next purchase day; the last
        # purchase of a (customer, day) pair is the one whose next day is another day, so the pairs need
        # no GROUP BY of their own (which cost as much as the window on DuckDB). The three coverages share
        # this pass: as a subquery of each, DuckDB ran it six times (each coverage reads its pieces twice).
        following = sa.func.lead(kp.purchase_day).over(partition_by=bytewise(kp.customer_id), order_by=kp.purchase_day)
        rows = (
            sa.select(kp.customer_id, kp.purchase_day.label("day"), following.label("next_day"), kp.amount)
            .cte("purchase_rows")
            .prefix_with("MATERIALIZED")
        )
        last_of_day = rows.c.next_day.is_distinct_from(rows.c.day)
        # A day's purchasing customers are its pairs (known purchases have a customer id): no
        # COUNT(DISTINCT) over the purchases, which took a third of the query on DuckDB.
        daily = self.per_day(
            "daily_purchases", rows.c.day, sa.func.count().label("orders"),
            sa.func.sum(sa.case((last_of_day, 1), else_=0)).label("purchasing"),
            sa.func.sum(rows.c.amount).label("purchased"),
        )  # fmt: skip
        spans = sa.select(rows.c.customer_id, rows.c.day, rows.c.next_day).where(last_of_day).cte("purchase_spans")
        coverage = self.coverages(spans, {"active": w.active, "current": w.retention, "either": 2 * w.retention})

        revenue = self.revenue(daily)

        u = wh.table(CORE, "unified_customers", ["customer_id", "created_at"])
        since = (
            sa.select(sa.func.least(day_of(u.c.created_at), first.c.day).label("day"))
            .select_from(u.outerjoin(first, first.c.customer_id == u.c.customer_id))
            .subquery("known_since")
        )
        # Customers known before the calendar (or with neither date) count from its first day.
        since_day = sa.func.coalesce(sa.func.greatest(since.c.day, self.base), self.base)
        known_since = sa.select(since_day.label("day"), sa.func.count().label("n")).group_by(since_day).cte(
            "known_since_days"
        )

        tickets = self.tickets()
        nps = self.nps()
        clicks = self.clicks(known_purchases)

        steps = [daily, new, coverage, revenue, known_since, *tickets[:3], nps, clicks]
        joined = cal
        for cte in steps:
            joined = joined.outerjoin(cte, cte.c.day == cal.c.day)

        def n(column: sa.ColumnElement) -> sa.ColumnElement:
            return sa.func.coalesce(column, 0)

        day = cal.c.day
        running = sa.select(
            day,
            as_bigint(sa.func.sum(n(known_since.c.n)).over(order_by=day)).label("customers_total"),
            as_bigint(sa.func.sum(n(coverage.c.active)).over(order_by=day)).label("active_customers"),
            as_bigint(n(daily.c.purchasing)).label("purchasing_customers"),
            as_bigint(n(new.c.n)).label("new_customers"),
            as_bigint(n(daily.c.orders)).label("orders"),
            as_float(n(revenue.c.revenue)).label("revenue"),
            as_bigint(sa.func.sum(n(coverage.c.current)).over(order_by=day)).label("current"),
            as_bigint(sa.func.sum(n(coverage.c.either)).over(order_by=day)).label("either"),
            as_bigint(n(tickets[0].c.opened)).label("tickets_opened"),
            as_bigint(_trailing(n(tickets[0].c.opened), day, w.service)).label("opened_window"),
            as_float(_trailing(n(tickets[1].c.score_sum), day, w.service)).label("score_sum"),
            as_bigint(_trailing(n(tickets[1].c.score_count), day, w.service)).label("score_count"),
            as_bigint(sa.func.sum(n(tickets[2].c.n)).over(order_by=day)).label("resolved_open"),
            as_bigint(_trailing(n(nps.c.responses), day, w.nps)).label("nps_responses"),
            as_bigint(_trailing(n(nps.c.promoters), day, w.nps)).label("promoters"),
            as_bigint(_trailing(n(nps.c.detractors), day, w.nps)).label("detractors"),
            as_bigint(_trailing(n(clicks.c.clicks), day, w.conversion_window)).label("clicks"),
            as_bigint(_trailing(n(clicks.c.converted), day, w.conversion_window)).label("converted"),
        ).select_from(joined).cte("running")  # fmt: skip
        r = running.c
        previous = _lagged(r.current, r.day, w.retention)
        lagged = sa.select(
            r,
            as_bigint(previous).label("previous"),
            as_bigint(previous + r.current - r.either).label("retained"),
            as_bigint(_lagged(r.clicks, r.day, w.conversion_days)).label("click_window"),
            as_bigint(_lagged(r.converted, r.day, w.conversion_days)).label("converted_window"),
        ).cte("lagged")
        x = lagged.c
        median = tickets[3]
        retention = ratio(x.retained, x.previous)
        first_output = self.today - w.days + 1
        return (
            sa.select(
                (sa.cast(sa.literal("1970-01-01"), sa.Date) + sa.cast(x.day, sa.Integer)).label("date"),
                x.customers_total,
                x.active_customers,
                x.purchasing_customers,
                x.new_customers,
                as_bigint(x.purchasing_customers - x.new_customers).label("repeat_customers"),
                x.orders,
                x.revenue,
                retention.label("retention_rate"),
                (1.0 - retention).label("churn_rate"),
                x.tickets_opened,
                ratio(x.score_sum, x.score_count).label("avg_satisfaction"),
                as_float(median.c.hours).label("median_first_response_hours"),
                ratio(x.resolved_open, x.opened_window).label("resolved_share"),
                (100.0 * ratio(x.promoters - x.detractors, x.nps_responses)).label("nps"),
                x.nps_responses,
                ratio(x.converted_window, x.click_window).label("email_conversion_rate"),
            )
            .select_from(lagged.outerjoin(median, median.c.day == x.day))
            .where(x.day >= first_output)
            .order_by(x.day)
        )

    def revenue(self, daily: sa.CTE) -> sa.CTE:
        """Per day: the known customers' purchases (``daily.purchased``, summed with the other per-day
        purchase figures instead of in a pass of their own over the purchases: at 100,000 people that
        aggregate took 0.4-0.5 s of PostgreSQL), minus the absolute value of their refund records with a
        negative total. Only the refund records come from core.orders, instead of every order there with
        a semi-join of each on the customers: at 100,000 people the query took 0.63-0.77 CPU s against
        0.76-0.78 s (best of seven, load 2-3), the same wall-clock time on two cores."""
        o = core_orders(self.wh)
        amount = as_float(sa.func.coalesce(o.c.total_amount_reporting, 0.0))
        refunds = sa.select(day_of(o.c.ordered_at).label("day"), amount.label("amount")).where(
            truthy(o.c.is_refund), amount < 0, o.c.ordered_at.is_not(None), o.c.ordered_at <= self.limit,
            _known(self.wh, o),
        )  # fmt: skip
        effects = sa.union_all(sa.select(daily.c.day, daily.c.purchased.label("amount")), refunds).subquery(
            "revenue_effects"
        )
        return self.per_day("daily_revenue", effects.c.day, sa.func.sum(effects.c.amount).label("revenue"))

    def tickets(self) -> tuple[sa.CTE, sa.CTE, sa.CTE, sa.CTE]:
        """Per day: tickets opened; rated score sums and counts; resolved marks; median response hours."""
        wh, w = self.wh, self.w
        t = wh.table(
            CORE, "support_tickets", ["customer_id", "opened_at", "first_response_at", "resolved_at", "status",
                                      "satisfaction_score"],
        )  # fmt: skip
        resolved_ok = sa.and_(t.c.resolved_at.is_not(None), t.c.resolved_at <= self.limit)
        responded_ok = sa.and_(
            t.c.first_response_at.is_not(None), t.c.first_response_at <= self.limit,
            t.c.first_response_at >= t.c.opened_at,
        )  # fmt: skip
        o_day = day_of(t.c.opened_at)
        base = (
            sa.select(
                o_day.label("o_day"),
                sa.case((resolved_ok, day_of(t.c.resolved_at)), else_=o_day).label("r_day"),
                sa.or_(resolved_ok, text_value(t.c.status).in_(["resolved", "closed"])).label("is_resolved"),
                as_float(t.c.satisfaction_score).label("score"),
                sa.case((responded_ok, day_of(t.c.first_response_at))).label("fr_day"),
                ((sa.extract("epoch", t.c.first_response_at) - sa.extract("epoch", t.c.opened_at)) / SECONDS_PER_HOUR)
                .label("hours"),
            )
            .where(t.c.opened_at.is_not(None), t.c.opened_at <= self.limit, _known(wh, t))
            .cte("kept_tickets")
        )  # fmt: skip
        b = base.c
        opened = self.per_day("tickets_daily", b.o_day, sa.func.count().label("opened"))
        rated = self.per_day(
            "ratings_daily", b.r_day, sa.func.sum(b.score).label("score_sum"),
            sa.func.count(b.score).label("score_count"), where=(b.score.is_not(None),),
        )  # fmt: skip
        # A ticket counts as resolved for days max(opened, resolved) .. opened + window - 1.
        start = sa.func.greatest(b.o_day, b.r_day)
        stop = b.o_day + w.service
        counted = sa.and_(b.is_resolved, b.o_day >= self.base, start < stop)
        marks = sa.union_all(
            sa.select(start.label("day"), sa.literal(1).label("mark")).where(counted),
            sa.select(stop.label("day"), sa.literal(-1).label("mark")).where(counted),
        ).subquery("resolved_marks")
        resolved = sa.select(marks.c.day, sa.func.sum(marks.c.mark).label("n")).group_by(marks.c.day).cte(
            "resolved_daily"
        )
        # Each ticket stands for the days its opening day is in the window of: one row per (ticket, day)
        # from an offset series, an equi-join, where "opened in the window ending on a calendar day" was a
        # range join that PostgreSQL ran as a nested loop over every ticket ever opened, once per day
        # (3 s of the query at 100,000 people).
        offsets = sa.func.generate_series(0, w.service - 1).table_valued("offset").render_derived(name="window_days")
        day = (b.o_day + offsets.c.offset).label("day")
        covered = (
            sa.select(day, b.hours)
            .select_from(base.join(offsets, sa.true()))
            .where(b.o_day > self.today - w.days + 1 - w.service, b.o_day <= self.today, b.fr_day <= day)
            .subquery("response_days")
        )
        median = (
            sa.select(covered.c.day, sa.func.percentile_cont(0.5).within_group(covered.c.hours).label("hours"))
            .where(covered.c.day > self.today - w.days, covered.c.day <= self.today)
            .group_by(covered.c.day)
            .cte("median_response")
        )
        return opened, rated, resolved, median

    def nps(self) -> sa.CTE:
        s = self.wh.table(CORE, "survey_responses", ["customer_id", "responded_at", "nps_score"])
        day = day_of(s.c.responded_at)
        return self.per_day(
            "nps_daily", day, sa.func.count().label("responses"),
            sa.func.sum(sa.case((s.c.nps_score >= PROMOTER_MIN, 1), else_=0)).label("promoters"),
            sa.func.sum(sa.case((s.c.nps_score <= DETRACTOR_MAX, 1), else_=0)).label("detractors"),
            where=(s.c.responded_at.is_not(None), s.c.responded_at <= self.limit, s.c.nps_score.is_not(None),
                   _known(self.wh, s)),
        )  # fmt: skip

    def clicks(self, purchases: sa.CTE) -> sa.CTE:
        """Per day: first clicks of a customer that day, and those followed by a purchase within the days."""
        e = self.wh.table(CORE, "campaign_events", ["customer_id", "event_type", "occurred_at"])
        day = day_of(e.c.occurred_at)
        first_clicks = (
            sa.select(e.c.customer_id, day.label("day"), sa.func.min(e.c.occurred_at).label("at"))
            .where(
                text_value(e.c.event_type) == "click", e.c.occurred_at.is_not(None), e.c.occurred_at <= self.limit,
                _known(self.wh, e), day >= self.base,
            )
            .group_by(e.c.customer_id, day)
            .cte("first_clicks")
        )  # fmt: skip
        c, p = first_clicks.c, purchases.c
        gap = sa.extract("epoch", p.ordered_at) - sa.extract("epoch", c.at)
        # A purchase at or after a click is on or after the click's day, so on or after the calendar's first:
        # the bound on the purchase day changes no answer and spares the join the older purchases. A join,
        # not an EXISTS per click: inside the CASE of an aggregate, PostgreSQL ran the EXISTS as a subplan
        # scanning every purchase once per click (three minutes at 100,000 people).
        converted = (
            sa.select(c.customer_id, c.day)
            .select_from(first_clicks.join(purchases, p.customer_id == c.customer_id))
            .where(p.purchase_day >= self.base, gap >= 0, gap <= self.w.conversion_days * 86_400)
            .group_by(c.customer_id, c.day)
            .subquery("converted_clicks")
        )
        clicks = first_clicks.outerjoin(
            converted, sa.and_(converted.c.customer_id == c.customer_id, converted.c.day == c.day)
        )
        return self.per_day(
            "clicks_daily", c.day, sa.func.count().label("clicks"),
            sa.func.count(converted.c.customer_id).label("converted"), source=clicks,
        )  # fmt: skip


def crm_kpis_select(
    wh: Warehouse,
    cutoff: dt.datetime | pd.Timestamp,
    today: int,
    purchase_statuses: tuple[str, ...] = ("completed",),
    windows: KpiWindows | None = None,
) -> sa.Select:
    """One row per day for the ``windows.days`` days ending on ``today`` (the cutoff's UTC day)."""
    return _Query(wh, cutoff, today, windows or KpiWindows(), tuple(purchase_statuses)).build()
