"""Per-run report folders: an index page, and files others can read whatever the process umask."""

from __future__ import annotations

import os
import stat

from crm_pipelines.checks.drift import drift_findings
from crm_pipelines.checks.report import INDEX_NAME, render_html_report


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_run_folder_gets_an_index_and_readable_permissions(tmp_path) -> None:
    run = tmp_path / "runs" / "run-7"
    drift = drift_findings({"row_count": 10, "null_rates": {}}, {"row_count": 100, "null_rates": {}}, 50, 0.1)
    old_umask = os.umask(0o077)  # what a hardened service unit often sets
    try:
        clean = render_html_report([], run / "marts.crm_kpis.html", title="Validation of marts.crm_kpis")
        drifted = render_html_report(
            [], run / "staging.orders.html", title="Validation of staging.orders", drift={"staging.orders": drift}
        )
    finally:
        os.umask(old_umask)

    index = run / INDEX_NAME
    html = index.read_text(encoding="utf-8")
    assert "run-7" in html and "2 tables: 0 failed, 1 with warnings, 1 passed" in " ".join(html.split())
    # Tables that need attention come first, each linked by its file name.
    assert html.index('href="staging.orders.html"') < html.index('href="marts.crm_kpis.html"')
    assert "Validation of staging.orders" in html
    for page in (clean, drifted, index):
        assert _mode(page) == 0o644, page
    assert _mode(run) == 0o755 and _mode(run.parent) == 0o755
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "temporary files left behind"
