"""The production deployment as deploy/ describes it, for real: deploy/dagster.yaml on PostgreSQL,
`dagster-daemon` and `dagster-webserver` loading workspace.yaml, a run launched through the queued
run coordinator as a schedule tick would, and the UI in a real browser (Debian's Chromium).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from conftest import DEFAULT_POSTGRES_URL, IN_CI, POSTGRES_URL_ENV, _drop_database, _fresh_database, _server_or_skip
from deployment import BIN, Deployment, running_deployment

from crm_pipelines.config import PROJECT_ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.deploy]

CHROMIUM = Path(os.environ.get("CRM_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAYERS = ("raw", "staging", "core", "marts")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    admin_url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    _server_or_skip(admin_url, "PostgreSQL")
    storage_url, admin = _fresh_database(admin_url, "postgresql")
    try:
        with running_deployment(tmp_path_factory.mktemp("deployment"), storage_url) as deployed:
            yield deployed
    finally:
        _drop_database(admin, storage_url)


@pytest.fixture(scope="module")
def nightly_run_id(deployment) -> str:
    """crm_nightly launched as a schedule tick launches it: queued, then started by the daemon."""
    launched = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "crm_nightly"],
        cwd=PROJECT_ROOT, env=deployment.env, capture_output=True, text=True, timeout=300,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    runs = deployment.runs("crm_nightly")
    assert len(runs) == 1, runs
    return runs[0]["runId"]


def test_daemon_runs_the_nightly_queued_and_records_it_in_postgres(deployment, nightly_run_id):
    status = deployment.wait_for_run(nightly_run_id)
    assert status == "SUCCESS", deployment.log_tail()

    engine = sa.create_engine(sa.make_url(deployment.storage_url))
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT pipeline_name, status FROM runs WHERE run_id = :id"), {"id": nightly_run_id}
            ).one()
            event_types = set(
                conn.execute(
                    sa.text("SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = :id"),
                    {"id": nightly_run_id},
                ).scalars()
            )
    finally:
        engine.dispose()
    assert tuple(stored) == ("crm_nightly", "SUCCESS")
    assert dg.DagsterEventType.RUN_SUCCESS.value in event_types
    assert dg.DagsterEventType.ASSET_MATERIALIZATION.value in event_types
    assert dg.DagsterEventType.RUN_ENQUEUED.value in event_types, "the run skipped the queued run coordinator"


def test_webserver_serves_the_asset_graph_and_running_schedules(deployment):
    nodes = deployment.graphql("{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }")["assetNodes"]
    groups = {n["groupName"] for n in nodes}
    assert set(LAYERS) <= groups, groups
    by_key = {tuple(n["assetKey"]["path"]): n for n in nodes}
    assert ("marts", "customer_360") in by_key
    assert by_key[("marts", "customer_360")]["dependencyKeys"], "the marts have no upstream edges"

    repos = deployment.graphql(
        """{ repositoriesOrError { ... on RepositoryConnection { nodes {
             schedules { name scheduleState { status } } } } } }"""
    )["repositoriesOrError"]["nodes"]
    schedules = {s["name"]: s["scheduleState"]["status"] for repo in repos for s in repo["schedules"]}
    assert schedules == {"crm_nightly_schedule": "RUNNING", "crm_weekly_refit_schedule": "RUNNING"}


def _boxes(locator) -> list[dict[str, float]]:
    return [box for box in (element.bounding_box() for element in locator.all()) if box]


@pytest.mark.browser
def test_ui_in_a_browser_shows_the_layers_and_runs_the_marts(deployment, nightly_run_id, tmp_path):
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    # The marts' upstream tables must exist, so the UI launches without asking about missing inputs.
    assert deployment.wait_for_run(nightly_run_id) == "SUCCESS", deployment.log_tail()
    before = {r["runId"] for r in deployment.runs("__ASSET_JOB")}
    shots = Path(os.environ.get("CRM_TEST_SCREENSHOTS") or tmp_path)
    # Dismiss the first-visit "Join the Dagster community" dialog on the server, as its Skip button
    # does: under load the dialog can open over the page after the handler below has already run.
    deployment.graphql("mutation { setNuxSeen }")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            # A fresh browser gets the "Join the Dagster community" dialog over whatever page it opens.
            page.add_locator_handler(
                page.get_by_text("Join the Dagster community"), lambda: page.get_by_role("button", name="Skip").click()
            )
            page.goto(f"{deployment.url}/asset-groups")
            expect(page.get_by_text(re.compile(r"^\d+ assets")).first).to_be_visible(timeout=60_000)
            # The global lineage draws one box per layer, left to right in data-flow order.
            lefts = [max(box["x"] for box in _boxes(page.get_by_text(layer, exact=True))) for layer in LAYERS]
            assert lefts == sorted(lefts) and len(set(lefts)) == len(LAYERS), dict(zip(LAYERS, lefts, strict=True))
            page.screenshot(path=shots / "lineage.png")

            page.goto(f"{deployment.url}/locations/crm_pipelines/asset-groups/marts")
            page.get_by_role("button", name="Materialize all").click()
            expect(page.get_by_text(re.compile("Launched run"))).to_be_visible(timeout=60_000)
            page.get_by_role("link", name="View", exact=True).click()
            page.wait_for_url(re.compile("/runs/"))
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=600_000)
            page.screenshot(path=shots / "marts_run.png")
        finally:
            browser.close()

    launched = [r for r in deployment.runs("__ASSET_JOB") if r["runId"] not in before]
    assert len(launched) == 1, launched
    run = launched[0]
    # The marts group: every mart, the run summary that ends it and the BI file copied from them.
    others = {"/".join(k["path"]) for k in run["assetSelection"] if k["path"][0] != "marts"}
    assert "audit/run_summary" in others and others <= {"audit/run_summary", "bi/marts_file"}, others
    assert deployment.wait_for_run(run["runId"]) == "SUCCESS", deployment.log_tail()
