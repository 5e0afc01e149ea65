"""Charts for the verification marts' metadata: uplift with intervals, equity over time, migrations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipelines.analytics.reporting import _figure, _png


def uplift_chart_png(performance: pd.DataFrame) -> bytes:
    """Per campaign, metric and subgroup: absolute uplift with its 95% interval (rates in points)."""
    rows = performance.dropna(subset=["uplift_absolute"]).reset_index(drop=True)
    figure = _figure(8, 1.2 + 0.45 * max(len(rows), 1))
    panels = figure.subplots(1, 2, squeeze=False)[0]
    for axes, revenue in zip(panels, (False, True), strict=True):
        part = rows[(rows["metric"] == "revenue") == revenue]
        scale = 1.0 if revenue else 100.0
        y = np.arange(len(part))
        est = part["uplift_absolute"].to_numpy() * scale
        low = part["uplift_absolute_low"].to_numpy() * scale
        high = part["uplift_absolute_high"].to_numpy() * scale
        axes.errorbar(est, y, xerr=[est - low, high - est], fmt="o", color="#4C72B0", capsize=3)
        axes.axvline(0, color="grey", linewidth=1)
        axes.set_yticks(y, [f"{c} ({s})" for c, s in zip(part["campaign"], part["subgroup"], strict=True)])
        axes.invert_yaxis()
        axes.set_xlabel("revenue per customer" if revenue else "conversion uplift (points)")
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle("Uplift over control with 95% intervals")
    return _png(figure)


def equity_chart_png(portfolio: pd.DataFrame) -> bytes:
    """Customer equity per month, stacked by value tier."""
    tiers = portfolio[portfolio["dimension"] == "value_tier"]
    table = tiers.pivot_table(index="month", columns="segment", values="customer_equity", aggfunc="sum")
    figure = _figure(8, 4, left=0.08, right=0.98, bottom=0.08, top=0.92)
    axes = figure.subplots()
    if not table.empty:
        months = pd.to_datetime(table.index)
        axes.stackplot(months, *[table[c].fillna(0).to_numpy() for c in table.columns], labels=list(table.columns))
        axes.legend(loc="upper left")
    axes.set_title("Customer equity (sum of expected CLV) by value tier")
    axes.grid(alpha=0.3)
    return _png(figure)


def migration_matrix_markdown(migrations: pd.DataFrame, dimension: str = "rfm_segment") -> str:
    """The latest month's from x to matrix of ``dimension``, as a markdown table of customers."""
    part = migrations[migrations["dimension"] == dimension]
    if part.empty:
        return "_(no two consecutive monthly snapshots yet)_"
    latest = part[part["month"] == part["month"].max()]
    matrix = latest.pivot_table(index="from_segment", columns="to_segment", values="customers", aggfunc="sum")
    matrix = matrix.fillna(0).astype("int64")
    header = f"{dimension}, {pd.Timestamp(latest['month'].iloc[0]):%Y-%m} (rows: previous month, columns: now)\n\n"
    return header + matrix.reset_index().rename(columns={"from_segment": "from \\ to"}).to_markdown(index=False)
