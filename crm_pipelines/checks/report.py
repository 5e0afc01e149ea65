"""A self-contained HTML validation report: one page per run listing suites, rules and failures.

Great Expectations' Data Docs need stores and a checkpoint per validation and render one page per
suite without our severities or drift; a single page per run with both is what a person opening
the link from a failed asset check needs. The page has no external assets, so it can be mailed
or attached as it is.
"""

from __future__ import annotations

import datetime as dt
import functools
import html as html_lib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

    from crm_pipelines.checks.drift import DriftFinding
    from crm_pipelines.checks.gx import SuiteOutcome

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="crm-status" content="{{ status }}">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:1200px}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} code{font-size:.85rem;word-break:break-all}
.pass{color:#1a7f37;font-weight:600} .fail{color:#cf222e;font-weight:600} .warn{color:#9a6700;font-weight:600}
.summary td{border:none;padding:.1rem 1rem .1rem 0} .muted{color:#656d76}
</style></head><body>
<h1>{{ title }}</h1>
<table class="summary">
<tr><td>Generated</td><td>{{ generated }}</td></tr>
{% if run_id %}<tr><td>Run</td><td><code>{{ run_id }}</code></td></tr>{% endif %}
<tr><td>Suites</td><td>{{ outcomes|length }}: {{ passed }} passed, {{ blocked }} blocked by errors,
 {{ warned }} with warnings only</td></tr>
</table>
{% for o in outcomes %}
<h2 id="{{ o.suite }}">{{ o.suite }}
 {% if o.blocking_failures %}<span class="fail">FAILED</span>
 {% elif not o.success %}<span class="warn">WARNINGS</span>
 {% else %}<span class="pass">PASSED</span>{% endif %}</h2>
<p class="muted">{{ o.description }} Check <code>{{ o.check_name }}</code>;
 {{ "{:,}".format(o.row_count) }} rows;
 {{ o.results|length }} rules; {{ "%.2f"|format(o.seconds) }} s.</p>
<table><tr><th>Status</th><th>Rule</th><th>Severity</th><th>Expectation</th><th>Unexpected</th><th>%</th>
<th>Sample of offending values / detail</th></tr>
{% for r in o.results|sort(attribute="success") %}
<tr><td>{% if r.success %}<span class="pass">pass</span>
{% elif r.severity == "error" %}<span class="fail">FAIL</span>
{% else %}<span class="warn">warn</span>{% endif %}</td>
<td><strong>{{ r.rule }}</strong><br><span class="muted">{{ r.description }}</span></td>
<td>{{ r.severity }}</td><td><code>{{ r.expectation }}</code></td>
<td>{{ "" if r.unexpected_count is none else "{:,}".format(r.unexpected_count) }}</td>
<td>{{ "" if r.unexpected_percent is none else "%.2f"|format(r.unexpected_percent) }}</td>
<td>{% if r.error %}{{ r.error }}{% elif r.sample %}<code>{{ r.sample|tojson_text }}</code>
{% elif r.observed is not none %}observed: <code>{{ r.observed|tojson_text }}</code>{% endif %}</td></tr>
{% endfor %}</table>
{% endfor %}
{% if drift %}<h2>Drift against the previous run</h2>
<table><tr><th>Table</th><th>Kind</th><th>Column</th><th>Previous</th><th>Current</th><th>Finding</th></tr>
{% for table, findings in drift.items() %}{% for f in findings %}
<tr><td>{{ table }}</td><td>{{ f.kind }}</td><td>{{ f.column or "" }}</td><td>{{ f.previous }}</td>
<td>{{ f.current }}</td><td class="warn">{{ f.message }}</td></tr>
{% endfor %}{% endfor %}</table>{% endif %}
</body></html>
"""


def _tojson_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@functools.cache
def _env() -> jinja2.Environment:
    """Built on the first report, so loading the definitions does not import jinja2."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["tojson_text"] = _tojson_text
    return env


@functools.cache
def _template(source: str) -> jinja2.Template:
    """Each template compiled once per process: compiling costs about 15 ms, and a night writes a report
    and the run's index after every table it validates (dozens)."""
    return _env().from_string(source)


def render_html_report(
    outcomes: Sequence[SuiteOutcome],
    path: str | os.PathLike[str],
    *,
    title: str = "Data validation report",
    run_id: str | None = None,
    drift: Mapping[str, Sequence[DriftFinding]] | None = None,
) -> Path:
    """Write the report to ``path`` (replacing it atomically) and return the path.

    ``drift`` maps a table name to its findings; tables without findings can be left out.
    """
    target = Path(path)
    _make_readable_dirs(target.parent)
    blocked = sum(bool(o.blocking_failures) for o in outcomes)
    warned = sum(not o.success and not o.blocking_failures for o in outcomes)
    findings = {table: list(f) for table, f in (drift or {}).items() if f}
    html = _template(_TEMPLATE).render(
        status="FAILED" if blocked else "WARNINGS" if warned or findings else "PASSED",
        title=title,
        run_id=run_id,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        outcomes=list(outcomes),
        passed=sum(o.success for o in outcomes),
        blocked=blocked,
        warned=warned,
        drift=findings,
    )
    _write_readable(target, html)
    if target.name != INDEX_NAME:
        write_run_index(target.parent)
    return target


INDEX_NAME = "index.html"
_STATUS = re.compile(r'<meta name="crm-status" content="([A-Z]+)">')
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)

_INDEX_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Validation reports of {{ folder }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:1000px}
table{border-collapse:collapse;width:100%;font-size:.95rem} th,td{border:1px solid #d0d7de;padding:.35rem .5rem}
th{background:#f6f8fa;text-align:left} .PASSED{color:#1a7f37} .FAILED{color:#cf222e} .WARNINGS{color:#9a6700}
</style></head><body>
<h1>Validation reports of run <code>{{ folder }}</code></h1>
<p>{{ pages|length }} tables: {{ counts.FAILED }} failed, {{ counts.WARNINGS }} with warnings,
 {{ counts.PASSED }} passed.</p>
<table><tr><th>Report</th><th>Status</th></tr>
{% for p in pages %}<tr><td><a href="{{ p.file }}">{{ p.title }}</a></td>
<td class="{{ p.status }}">{{ p.status }}</td></tr>
{% endfor %}</table></body></html>
"""


def write_run_index(folder: str | os.PathLike[str]) -> Path:
    """(Re)write ``index.html`` in a run's report folder: every report page, failures first."""
    folder = Path(folder)
    pages = []
    for page in sorted(folder.glob("*.html")):
        if page.name == INDEX_NAME:
            continue
        with page.open("rb") as f:  # the status and title are in the head: not every page whole, every time
            head = f.read(2000).decode("utf-8", errors="replace")
        status, title = _STATUS.search(head), _TITLE.search(head)
        pages.append({
            "file": page.name,
            "title": html_lib.unescape(title.group(1)) if title else page.stem,
            "status": status.group(1) if status else "PASSED",
        })
    order = {"FAILED": 0, "WARNINGS": 1, "PASSED": 2}
    pages.sort(key=lambda p: (order.get(p["status"], 3), p["file"]))
    counts = {s: sum(p["status"] == s for p in pages) for s in order}
    html = _template(_INDEX_TEMPLATE).render(folder=folder.name, pages=pages, counts=counts)
    target = folder / INDEX_NAME
    _write_readable(target, html)
    return target


def _make_readable_dirs(folder: Path) -> None:
    # The reports are for people (and a web server) other than the service user: 0755 whatever
    # the process umask, which services often set to 077.
    missing = []
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        missing.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, 0o755)


def _write_readable(target: Path, text: str) -> None:
    # Written beside the target and renamed, so a reader never opens a half-written page; mkstemp
    # creates the file 0600, so it is opened up to 0644 before the rename.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
