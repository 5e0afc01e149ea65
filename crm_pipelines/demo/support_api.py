"""A local support-desk API serving the demo tickets, to try the HTTP connector without a vendor account.

``GET /api/v1/tickets?page=N&per_page=M[&updated_since=ISO-8601]`` answers
``{"data": [...], "page": N, "per_page": M, "total_pages": K}``: pages count from 1, a page past the
end has no data, records come ordered by ``updated_at`` then ``ticket_id``, and ``updated_since``
keeps tickets updated strictly after that moment (a time without offset is taken as UTC).
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import json
import math
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TICKETS_PATH = "/api/v1/tickets"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000


class _Tickets:
    """Tickets sorted by (updated_at, ticket_id), with their update times for bisecting."""

    def __init__(self, path: Path) -> None:
        records: list[dict[str, Any]] = []
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{number}: not a JSON object: {e.msg}") from None
        keyed = sorted(
            ((_parse_time(r["updated_at"]), r["ticket_id"], r) for r in records), key=lambda k: k[:2]
        )
        self.updated = [k[0] for k in keyed]
        self.records = [k[2] for k in keyed]

    def page(self, page: int, per_page: int, updated_since: dt.datetime | None) -> dict[str, Any]:
        first = bisect.bisect_right(self.updated, updated_since) if updated_since else 0
        matching = len(self.records) - first
        start = first + (page - 1) * per_page
        data = (
            self.records[start : min(start + per_page, len(self.records))]
            if start < len(self.records)
            else []
        )
        return {
            "data": data,
            "page": page,
            "per_page": per_page,
            "total_pages": math.ceil(matching / per_page),
        }


def _parse_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.strip().replace(" ", "T"))
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _handler(tickets: _Tickets) -> type[BaseHTTPRequestHandler]:
    class TicketsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
            url = urlsplit(self.path)
            if url.path.rstrip("/") != TICKETS_PATH:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"unknown path {url.path}; try {TICKETS_PATH}"})
                return
            params = parse_qs(url.query)
            try:
                page = _int_param(params, "page", 1, minimum=1)
                per_page = _int_param(params, "per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
                since = params.get("updated_since", [None])[-1]
                updated_since = _parse_time(since) if since else None
            except ValueError as e:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": str(e)})
                return
            self._reply(HTTPStatus.OK, tickets.page(page, per_page, updated_since))

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
            pass  # keep test and pipeline output quiet

    return TicketsHandler


def _int_param(
    params: dict[str, list[str]], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = params.get(name, [None])[-1]
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


@contextlib.contextmanager
def serve_support_api(tickets_jsonl: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the tickets in ``tickets_jsonl`` over HTTP while the block runs; yields the base URL.

    ``port=0`` picks a free port. The server runs in a background thread and stops on exit.
    """
    server = ThreadingHTTPServer((host, port), _handler(_Tickets(Path(tickets_jsonl))))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="support-api", daemon=True)
    thread.start()
    try:
        bound_host, bound_port = server.server_address[:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
