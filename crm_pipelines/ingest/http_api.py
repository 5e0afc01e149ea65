"""HTTP connector: a paginated JSON API, read page by page into one text-only Arrow table.

Pages are numbered (``page_param`` and ``page_size_param``, until an empty or short page) or linked
(each response names the next page's URL in ``next_field``). Connection errors, timeouts, 429 and
5xx responses are retried with exponential backoff, waiting as long as ``Retry-After`` asks.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pyarrow as pa

from crm_pipelines.config import ConnectorConfig, EntitySourceConfig, HttpOptions
from crm_pipelines.ingest.errors import SourceContext, display_http_url, first_line
from crm_pipelines.ingest.json_records import json_lines_to_table

log = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 300.0
_MISSING = object()


def endpoint_url(base_url: str, endpoint: str) -> str:
    """The endpoint below the connector's base URL (an absolute endpoint URL is taken as it is)."""
    if endpoint.startswith(("http://", "https://")):
        return endpoint
    return base_url.rstrip("/") + "/" + endpoint.lstrip("/")


def http_location(connector: ConnectorConfig, entity: EntitySourceConfig) -> str:
    return f"GET {display_http_url(endpoint_url(connector.url or '', entity.endpoint or ''))}"


def read_http(
    connector: ConnectorConfig,
    entity: EntitySourceConfig,
    cursor_value: str | None,
    ctx: SourceContext,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> pa.Table:
    """Every record of every page, as an all-string table (columns: the union of the records' keys).

    ``cursor_value`` is sent as ``http.cursor_param`` (when configured) so the API can skip what
    was loaded before.
    """
    options = connector.http
    url = endpoint_url(connector.url or "", entity.endpoint or "")
    params: dict[str, Any] = {options.page_size_param: options.page_size}
    if options.cursor_param and cursor_value is not None:
        params[options.cursor_param] = cursor_value
    documents: list[str] = []
    with httpx.Client(
        headers=options.headers, timeout=options.timeout_seconds, follow_redirects=True
    ) as client:
        fetcher = _Fetcher(client, options, ctx, sleep)
        pages = _linked_pages if options.next_field else _numbered_pages
        for records in pages(fetcher, url, params, options, ctx):
            documents.extend(json.dumps(record, ensure_ascii=False) for record in records)
    return json_lines_to_table(documents, ctx, unit="record")


def _numbered_pages(
    fetcher: _Fetcher, url: str, params: dict[str, Any], options: HttpOptions, ctx: SourceContext
) -> Iterator[list[dict[str, Any]]]:
    page = 1
    previous: list[dict[str, Any]] | None = None
    while True:
        body, shown = fetcher.get_json(url, {**params, options.page_param: page})
        records = _records(body, options, shown, ctx)
        if not records:
            return
        if records == previous:
            raise ctx.error(
                f"page {page} repeats page {page - 1} ({shown}): "
                f"the API seems to ignore {options.page_param!r}",
                "Set http.page_param to the API's page parameter, or http.next_field if it links pages",
            )
        yield records
        if len(records) < options.page_size:
            return
        previous = records
        page += 1


def _linked_pages(
    fetcher: _Fetcher, url: str, params: dict[str, Any], options: HttpOptions, ctx: SourceContext
) -> Iterator[list[dict[str, Any]]]:
    next_url: str | None = url
    request_params: dict[str, Any] | None = params
    seen: set[str] = set()
    while next_url:
        body, shown = fetcher.get_json(next_url, request_params)
        records = _records(body, options, shown, ctx)
        if not records:
            return
        yield records
        link = _field(body, options.next_field or "")
        if link in (_MISSING, None, ""):
            return
        if not isinstance(link, str):
            raise ctx.error(f"{shown}: the field {options.next_field!r} holds {link!r}, not a URL")
        # The next link carries its own query; a relative link is resolved against the page's URL.
        next_url = urljoin(str(fetcher.last_url), link)
        request_params = None
        if next_url in seen:
            raise ctx.error(
                f"{shown}: the next-page link {display_http_url(next_url)} was already read (a loop)"
            )
        seen.add(next_url)


class _Fetcher:
    """GET with retries; returns the decoded JSON body and the URL as it may be shown to users."""

    def __init__(
        self, client: httpx.Client, options: HttpOptions, ctx: SourceContext, sleep: Callable[[float], None]
    ):
        self.client = client
        self.options = options
        self.ctx = ctx
        self.sleep = sleep
        self.last_url: httpx.URL | None = None

    def get_json(self, url: str, params: dict[str, Any] | None) -> tuple[Any, str]:
        request = self.client.build_request("GET", url, params=params)
        shown = display_http_url(request.url)
        attempts = self.options.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            try:
                response = self.client.send(request)
            except httpx.TimeoutException:
                problem, delay = f"no response within {self.options.timeout_seconds:g} s", _backoff(attempt)
            except httpx.TransportError as e:
                problem, delay = f"connection failed: {first_line(e)}", _backoff(attempt)
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    problem = f"HTTP {status} {response.reason_phrase}".rstrip()
                    waited = _retry_after(response)
                    delay = waited if waited is not None else _backoff(attempt)
                elif status >= 300:
                    raise self.ctx.error(
                        f"HTTP {status} {response.reason_phrase} from {shown}: {_snippet(response.text)}",
                        _status_hint(status),
                    )
                else:
                    self.last_url = response.url
                    return _decode(response, shown, self.ctx), shown
            if attempt + 1 < attempts:
                log.warning(
                    "GET %s: %s; retry %d of %d in %.1f s", shown, problem, attempt + 1, attempts - 1, delay
                )
                self.sleep(delay)
        raise self.ctx.error(
            f"GET {shown} failed after {attempts} attempt(s): {problem}",
            "Check that the API is up and connector.url is right; http.max_retries sets how often to retry",
        )


def _backoff(attempt: int) -> float:
    return min(RETRY_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (``Retry-After`` as seconds or an HTTP date), capped."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "Check the credentials in http.headers (an Authorization header, from an environment variable)"
    if status == 404:
        return "Check connector.url and the entity's endpoint in crm.yaml"
    return "Check the endpoint and its parameters in crm.yaml"


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return (flat[:limit] + "...") if len(flat) > limit else (flat or "(empty body)")


def _decode(response: httpx.Response, shown: str, ctx: SourceContext) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        kind = response.headers.get("Content-Type", "no content type")
        raise ctx.error(
            f"the response from {shown} is not JSON ({kind}): {_snippet(response.text, 120)}",
            "Check the endpoint in crm.yaml: it must return JSON",
        ) from None


def _field(body: Any, path: str) -> Any:
    """A field of a JSON object by name, or by a dotted path into nested objects ("meta.next")."""
    if isinstance(body, dict) and path in body:
        return body[path]
    node = body
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _records(body: Any, options: HttpOptions, shown: str, ctx: SourceContext) -> list[dict[str, Any]]:
    field = options.records_field
    if field is None:
        if not isinstance(body, list):
            raise ctx.error(
                f"{shown} returned a JSON {type(body).__name__}, not a list of records",
                "Set http.records_field to the field that holds the records",
            )
        records = body
    else:
        if not isinstance(body, dict):
            raise ctx.error(
                f"{shown} returned a JSON {type(body).__name__}, not an object with the field {field!r}",
                "Set http.records_field: null when the response is a bare list of records",
            )
        records = _field(body, field)
        if records is _MISSING:
            raise ctx.error(
                f"the response from {shown} has no field {field!r}; its fields: {sorted(body)}",
                "Set http.records_field to the field that holds the records",
            )
    if records is None:
        return []
    if not isinstance(records, list):
        raise ctx.error(f"{shown}: {field!r} holds a JSON {type(records).__name__}, not a list of records")
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ctx.error(f"{shown}: record {position} is a JSON {type(record).__name__}, not an object")
    return records
