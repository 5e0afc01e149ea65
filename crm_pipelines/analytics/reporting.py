"""Small renderings for asset metadata: markdown tables and PNG charts of segments, clusters, KPIs,
CLV holdout checks and retention cohorts.

Charts are drawn with matplotlib's Agg canvas on a ``Figure`` object (no pyplot state, safe in threads)
and returned as PNG bytes; :func:`png_markdown` turns them into a markdown image the Dagster UI shows.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from crm_pipelines.analytics.segments import RFM_SEGMENTS

SEGMENT_GROUPS = ("rfm_segment", "value_tier", "relationship_type", "cluster_label")


def _cell(value: object, float_digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:,.{float_digits}f}"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.isoformat()
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, max_rows: int = 30, float_digits: int = 2) -> str:
    """A GitHub-flavoured markdown table of the first ``max_rows`` rows."""
    shown = frame.head(max_rows)
    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "| " + " | ".join("---:" if shown[c].dtype.kind in "iuf" else "---" for c in shown.columns) + " |"
    rows = [
        "| " + " | ".join(_cell(v, float_digits) for v in row) + " |" for row in shown.itertuples(index=False)
    ]
    more = [f"\n_{len(frame) - max_rows:,} more rows_"] if len(frame) > max_rows else []
    return "\n".join([header, rule, *rows, *more])


def segment_sizes(segments: pd.DataFrame, group: str) -> pd.DataFrame:
    """Customers and net revenue per value of ``group`` (a column of marts.customer_segments)."""
    grouped = segments.groupby(group, dropna=False, observed=True)
    sizes = pd.DataFrame({"customers": grouped.size(), "revenue": grouped["monetary"].sum()})
    sizes["customer_share"] = sizes["customers"] / max(len(segments), 1)
    total_revenue = sizes["revenue"].sum()
    sizes["revenue_share"] = sizes["revenue"] / total_revenue if total_revenue else np.nan
    if group == "rfm_segment":
        sizes = sizes.reindex([s for s in RFM_SEGMENTS if s in sizes.index])
    else:
        sizes = sizes.sort_values("customers", ascending=False, kind="stable")
    return sizes.rename_axis(group).reset_index()


def segment_sizes_markdown(segments: pd.DataFrame, groups: Sequence[str] = SEGMENT_GROUPS) -> str:
    """One markdown table per segmentation present in ``segments``."""
    parts = []
    for group in groups:
        if group in segments:
            parts.append(f"**{group}**\n\n" + markdown_table(segment_sizes(segments, group), float_digits=3))
    return "\n\n".join(parts)


def cluster_profiles_markdown(profiles: pd.DataFrame) -> str:
    """The cluster profiles (ClusterResult.profiles) as a markdown table."""
    return markdown_table(profiles, float_digits=2)


def kpi_trend_markdown(kpis: pd.DataFrame, days: int = 30) -> str:
    """The last ``days`` rows of marts.crm_kpis, newest first."""
    recent = kpis.tail(days).iloc[::-1].copy()
    recent["date"] = pd.to_datetime(recent["date"]).dt.strftime("%Y-%m-%d")
    return markdown_table(recent, max_rows=days, float_digits=3)


def png_markdown(png: bytes, alt: str = "chart") -> str:
    """A markdown image embedding the PNG (for ``MetadataValue.md``)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _figure(width: float, height: float, **margins: float):  # noqa: ANN202 (matplotlib imported lazily)
    """A ``width`` x ``height`` inch figure. Without ``margins``, constrained layout places the axes,
    measuring every label before the figure is drawn; with them (``Figure.subplots_adjust``'s ``left``,
    ``right``, ``bottom``, ``top``, ``wspace``, ``hspace``), the axes sit there. Charts whose labels
    have a known size pass margins: the measuring was 40% of the KPI chart (0.28 CPU s against 0.15 s
    at 100,000 people) and a fifth of the cohort heatmap (0.19 s against 0.15 s)."""
    from matplotlib.figure import Figure

    if not margins:
        return Figure(figsize=(width, height), dpi=100, layout="constrained")
    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(**margins)
    return figure


def _png(figure) -> bytes:  # noqa: ANN001
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def segment_chart_png(segments: pd.DataFrame) -> bytes:
    """Bar chart: share of customers and share of net revenue per RFM segment."""
    sizes = segment_sizes(segments, "rfm_segment")
    figure = _figure(8, 4.5, left=0.18, right=0.98, bottom=0.11, top=0.93)  # room for the segment names
    axes = figure.subplots()
    positions = np.arange(len(sizes))
    axes.barh(positions + 0.2, sizes["customer_share"] * 100, height=0.4, label="customers", color="#4C72B0")
    axes.barh(
        positions - 0.2, sizes["revenue_share"].fillna(0) * 100, height=0.4, label="revenue", color="#DD8452"
    )
    axes.set_yticks(positions, sizes["rfm_segment"])
    axes.invert_yaxis()
    axes.set_xlabel("% of total")
    axes.set_title("RFM segments: customers and net revenue")
    axes.legend(loc="lower right")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def kpi_chart_png(kpis: pd.DataFrame, days: int = 365) -> bytes:
    """Four small panels over the last ``days`` days: active customers, revenue, retention, NPS."""
    recent = kpis.tail(days)
    dates = pd.to_datetime(recent["date"])
    # Fixed titles, rotated dates below, and y labels of at most six digits (matplotlib writes larger
    # values with an offset such as 1e6 above the axis).
    figure = _figure(10, 6, left=0.08, right=0.98, bottom=0.1, top=0.95, wspace=0.2, hspace=0.2)
    panels = figure.subplots(2, 2, sharex=True)
    series = [
        ("active customers (30 days)", recent["active_customers"], None),
        ("net revenue per day (7-day mean)", recent["revenue"].rolling(7, min_periods=1).mean(), None),
        ("retention rate (90-day windows)", recent["retention_rate"] * 100, "%"),
        ("NPS (90 days)", recent["nps"], None),
    ]
    for axes, (title, values, unit) in zip(panels.ravel(), series, strict=True):
        axes.plot(dates, values, color="#4C72B0", linewidth=1.4)
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        if unit:
            axes.set_ylabel(unit)
    for axes in panels[-1]:
        axes.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _png(figure)


def calibration_chart_png(table: pd.DataFrame) -> bytes:
    """Bars: mean holdout purchases per customer, actual against predicted, by calibration frequency
    (the ``HoldoutDiagnostics.table`` of the CLV purchase model)."""
    buckets = table[table["calibration_frequency"] != "all"]
    figure = _figure(7, 4)
    axes = figure.subplots()
    x = np.arange(len(buckets))
    axes.bar(x - 0.2, buckets["actual_mean"], 0.4, label="actual", color="#4C72B0")
    axes.bar(x + 0.2, buckets["predicted_mean"], 0.4, label="predicted", color="#DD8452")
    axes.set_xticks(x, buckets["calibration_frequency"])
    axes.set_xlabel("repeat purchase days in the calibration period")
    axes.set_ylabel("mean purchase days in the holdout")
    axes.set_title("Holdout purchases: actual vs predicted")
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def retention_heatmap_png(cohorts: pd.DataFrame, max_cohorts: int = 24, max_months: int = 24) -> bytes:
    """Heatmap of retention by cohort (rows, latest ``max_cohorts``) and months since first purchase
    (the rows of marts.retention_cohorts)."""
    grid = cohorts.pivot(index="cohort_month", columns="months_since_first", values="retention_rate")
    grid = grid.iloc[-max_cohorts:, :max_months] * 100
    later = grid.iloc[:, 1:].to_numpy(dtype=float)
    # Month 0 is 100% by construction; scaling to it would wash out the months that tell something.
    top = float(np.nanmax(later)) if np.isfinite(later).any() else 100.0
    height = 0.28 * len(grid) + 1.5
    # Month labels (YYYY-MM) on the left and month numbers below: margins in inches, whatever the height.
    figure = _figure(10, height, left=0.11, right=0.99, bottom=0.6 / height, top=1 - 0.4 / height)
    axes = figure.subplots()
    image = axes.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="Blues", vmin=0, vmax=max(top, 1.0))
    axes.set_yticks(range(len(grid)), [pd.Timestamp(m).strftime("%Y-%m") for m in grid.index], fontsize=7)
    axes.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], fontsize=7)
    axes.set_xlabel("months since first purchase")
    axes.set_ylabel("cohort (month of first purchase)")
    axes.set_title("Customers active by cohort (%)")
    figure.colorbar(image, ax=axes, label="% of cohort")
    return _png(figure)
