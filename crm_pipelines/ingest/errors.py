"""The error a source raises when a user can fix the cause, and how its message is built."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.config import EntitySourceConfig

if TYPE_CHECKING:
    import httpx
    import sqlalchemy as sa


class SourceError(RuntimeError):
    """A source cannot be read: the message names the source, the entity, the location and the fix."""

    def __init__(self, message: str, *, source: str, entity: str, location: str):
        super().__init__(message)
        self.source = source
        self.entity = entity
        self.location = location


@dataclass(frozen=True)
class SourceContext:
    """Which source entity is being read, and from where (a path, a table, a URL without password)."""

    source: str
    entity: str
    location: str

    def error(self, problem: str, hint: str = "") -> SourceError:
        message = f"source {self.source!r}, entity {self.entity!r} ({self.location}): {problem}"
        if hint:
            message += f". {hint}"
        return SourceError(message, source=self.source, entity=self.entity, location=self.location)


def display_sql_url(url: str | sa.URL) -> str:
    """A SQLAlchemy URL as users may see it: the password replaced by ***."""
    import sqlalchemy as sa
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


def display_http_url(url: str | httpx.URL) -> str:
    """An HTTP URL with the password of its user info (if any) replaced by ***."""
    import httpx  # costs a third of a second: not paid by loading the definitions

    parsed = httpx.URL(str(url))
    if parsed.password:
        parsed = parsed.copy_with(username=parsed.username, password="***")
    return str(parsed)


def first_line(error: BaseException | str) -> str:
    """The first line of a driver's message: the part a user needs, without SQL or stack noise."""
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


def mapped_source_columns(entity: EntitySourceConfig) -> list[str]:
    """Source columns crm.yaml refers to for an entity: mapped, identifier, incremental and delete marker."""
    names = [*entity.columns.values(), *entity.identifiers.values()]
    if entity.incremental.column:
        names.append(entity.incremental.column)
    if entity.deleted_column:
        names.append(entity.deleted_column)
    if entity.deleted_flag:
        names.append(entity.deleted_flag.column)
    return list(dict.fromkeys(names))


def check_mapped_columns(ctx: SourceContext, entity: EntitySourceConfig, available: Sequence[str]) -> None:
    """Raise a :class:`SourceError` listing the mapped columns the data lacks, and those it has."""
    present = set(available)
    missing = [name for name in mapped_source_columns(entity) if name not in present]
    if not missing:
        return
    lowered = {name.lower(): name for name in available}
    near = {name: lowered[name.lower()] for name in missing if name.lower() in lowered}
    hint = f" (different case: {near})" if near else ""
    raise ctx.error(
        f"column(s) {missing} named in crm.yaml are not in the data{hint}; "
        f"available columns: {list(available)}",
        f"Fix entities.{ctx.entity}.columns, identifiers, incremental.column or the deleted marker in crm.yaml",
    )
