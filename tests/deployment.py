"""A real production-style Dagster deployment for tests: deploy/dagster.yaml on a fresh PostgreSQL
database, with `dagster-daemon` and `dagster-webserver` as subprocesses loading workspace.yaml.

Shared by the deployment test and the browser test, which drive the same processes the systemd units
in deploy/ start.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml

from crm_pipelines.config import PROJECT_ROOT
from crm_pipelines.demo.generator import generate

BIN = Path(sys.executable).parent
DEMO_END = dt.date(2026, 6, 30)
RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_demo_project(root: Path, people: int) -> Path:
    """Demo sources for ``people`` people and a crm.yaml reading them into a DuckDB warehouse."""
    generate(root / "data" / "demo", people=people, seed=11, end_date=DEMO_END)
    data = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())
    data["warehouse"] = {"url": "duckdb:///data/warehouse.duckdb"}
    data["as_of"] = DEMO_END.isoformat()
    config = root / "crm.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def deployment_env(storage_url: str, dagster_home: Path, config: Path) -> dict[str, str]:
    """The variables deploy/dagster.env documents, for a storage database given as a SQLAlchemy URL."""
    url = sa.make_url(storage_url)
    env = {k: v for k, v in os.environ.items() if k not in ("CRM_WAREHOUSE_URL", "DAGSTER_HOME")}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        DAGSTER_PG_HOST=url.host or "127.0.0.1",
        DAGSTER_PG_PORT=str(url.port or 5432),
        DAGSTER_PG_USER=url.username or "postgres",
        DAGSTER_PG_PASSWORD=url.password or "",
        DAGSTER_PG_DB=url.database,
        CRM_CONFIG=str(config),
    )
    return env


@dataclass
class Deployment:
    url: str  # the webserver's base URL
    storage_url: str  # Dagster's PostgreSQL storage database
    env: dict[str, str]
    logs: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def runs(self, job: str) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($job: String!) { runsOrError(filter: {pipelineName: $job}) {
                 ... on Runs { results { runId status assetSelection { path } } } } }""",
            {"job": job},
        )
        return data["runsOrError"]["results"]

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }""", {"id": run_id}
        )
        return data["runOrError"]["status"]

    def wait_for_run(self, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        status = self.run_status(run_id)
        while status not in RUN_DONE and time.monotonic() < deadline:
            time.sleep(2)
            status = self.run_status(run_id)
        return status

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)


def _wait_until_serving(url: str, processes: list[subprocess.Popen], logs: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode}; logs in {logs}")
        try:
            if httpx.get(f"{url}/server_info", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the webserver did not answer at {url} within {timeout:.0f} s; logs in {logs}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        # Each server runs in its own process group, so its code-server and run children stop with it.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running_deployment(root: Path, storage_url: str, people: int = 300) -> Iterator[Deployment]:
    """Demo project under ``root``, DAGSTER_HOME with deploy/dagster.yaml, daemon and webserver running."""
    config = write_demo_project(root, people)
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    logs = root / "logs"
    logs.mkdir()
    env = deployment_env(storage_url, home, config)
    port = free_port()
    commands = {
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        "webserver": [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
    }
    processes: list[subprocess.Popen] = []
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url, processes, logs)
        yield Deployment(url=url, storage_url=storage_url, env=env, logs=logs)
    finally:
        for process in reversed(processes):
            _stop(process)
