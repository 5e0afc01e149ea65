"""Typed loading of ``crm.yaml``: the warehouse, the nightly schedule and the source systems.

A bad file raises :class:`ConfigError` whose message names the file, the source and the field, so a
user can fix it without reading a traceback.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.cycle_settings import CampaignSettings, GoalSettings, LoyaltySettings, PortfolioSettings
from crm_pipelines.analytics.pii_settings import PiiSettings
from crm_pipelines.analytics.segment_settings import SegmentationSettings
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.schema import ENTITIES
from crm_pipelines.warehouse import DEFAULT_DUCKDB_MEMORY_LIMIT, DUCKDB_SIZE, DuckDBSettings

CONFIG_ENV = "CRM_CONFIG"
# libyaml's parser where PyYAML was built with it: about 8x faster than the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
WAREHOUSE_URL_ENV = "CRM_WAREHOUSE_URL"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = r"^[a-z][a-z0-9_]*$"


class ConfigError(ValueError):
    """crm.yaml (or the file CRM_CONFIG names) is missing, unreadable or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncrementalConfig(_Model):
    """How a source entity is loaded incrementally.

    - ``full``: every run reads everything and replaces the raw table's contents.
    - ``cursor``: every run reads rows whose ``column`` is above the highest value loaded so far.
    - ``daily``: every run reloads the days from the last loaded day (minus ``lookback_days``) up to
      the run's as-of date, deleting those days first, so re-running a day adds no duplicates.
    """

    mode: Literal["full", "cursor", "daily"] = "full"
    column: str | None = Field(None, description="Source column holding the cursor or the event time.")
    cursor_type: Literal["timestamp", "integer"] = "timestamp"
    lookback_days: int = Field(1, ge=0, le=366)

    @model_validator(mode="after")
    def _column_needed(self) -> IncrementalConfig:
        if self.mode != "full" and not self.column:
            raise ValueError(f"incremental mode {self.mode!r} needs 'column' (the source column to track)")
        return self


class DeletedFlagConfig(_Model):
    """A source column whose values mark a deleted record (``status: deleted``)."""

    column: str = Field(description="Source column holding the record's state.")
    values: list[str] = Field(min_length=1, description="Values (case-insensitive) that mean deleted.")


class EntitySourceConfig(_Model):
    """Where one source delivers one canonical entity, and how its columns map onto it."""

    path: str | None = Field(None, description="File path (csv, parquet, jsonl), relative to crm.yaml.")
    table: str | None = Field(None, description="Table name, optionally schema-qualified (sql).")
    query: str | None = Field(None, description="SELECT statement (sql).")
    endpoint: str | None = Field(None, description="Path below the connector's base_url (http).")
    columns: dict[str, str] = Field(description="Canonical column -> source column.")
    identifiers: dict[str, str] = Field(
        default_factory=dict,
        description="customers only: identifier name (loyalty_card) -> source column.",
    )
    customer_source: str | None = Field(
        None,
        description="The source whose customer record ids source_customer_id refers to (default: this one), "
        "e.g. a support desk that stores shop account ids.",
    )
    defaults: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical column -> value for every row, for a column the source does not have "
        "(e.g. status: completed for an export of completed orders only).",
    )
    incremental: IncrementalConfig = IncrementalConfig()
    timestamp_format: str | None = Field(
        None, description="strftime format of the source's timestamps; ISO 8601 when unset."
    )
    optional: bool = Field(
        False, description="An empty delivery is accepted; otherwise it fails the source's volume contract."
    )
    timezone: str = Field("UTC", description="Timezone of naive timestamps in this source.")
    deleted_column: str | None = Field(
        None,
        description="Source column marking deleted records: a true value (true/yes/1) or a time (deleted_at) "
        "removes the record downstream; empty or false keeps it.",
    )
    deleted_flag: DeletedFlagConfig | None = Field(
        None, description="A source column and the values of it that mark a deleted record."
    )

    @model_validator(mode="after")
    def _one_delete_marker(self) -> EntitySourceConfig:
        if self.deleted_column and self.deleted_flag:
            raise ValueError("declare deleted_column or deleted_flag, not both")
        return self

    @field_validator("identifiers")
    @classmethod
    def _identifier_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.match(_NAME, name):
                raise ValueError(f"identifier name {name!r} must match {_NAME}")
        return v


class HttpOptions(_Model):
    page_size: int = Field(100, ge=1, le=10_000)
    page_param: str = "page"
    page_size_param: str = "per_page"
    records_field: str | None = Field("data", description="Field holding the records; null: a bare list.")
    next_field: str | None = Field(
        None, description="Field holding the next page's URL; when unset, pages are numbered until empty."
    )
    cursor_param: str | None = Field(
        None, description="Query parameter that receives the highest cursor value loaded so far."
    )
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)


class ConnectorConfig(_Model):
    type: Literal["csv", "parquet", "jsonl", "sql", "http"]
    url: str | None = Field(None, description="SQLAlchemy URL (sql) or base URL (http).")
    delimiter: str = Field(",", description="csv only.")
    encoding: str = Field("utf-8", description="csv and jsonl.")
    http: HttpOptions = HttpOptions()

    @model_validator(mode="after")
    def _url_needed(self) -> ConnectorConfig:
        if self.type in ("sql", "http") and not self.url:
            raise ValueError(f"connector type {self.type!r} needs 'url'")
        return self


Entities = dict[Literal[tuple(ENTITIES)], EntitySourceConfig]  # type: ignore[valid-type]


class SourceConfig(_Model):
    name: Annotated[str, Field(pattern=_NAME)]
    connector: ConnectorConfig
    entities: Entities
    default_country: str | None = Field(
        None, description="ISO country for phone numbers and addresses without one (overrides the global)."
    )
    priority: int = Field(100, description="Lower wins when records of several sources disagree.")

    @model_validator(mode="after")
    def _locations_fit_connector(self) -> SourceConfig:
        kind = self.connector.type
        for entity_name, e in self.entities.items():
            where = f"entities.{entity_name}"
            if kind in ("csv", "parquet", "jsonl") and not e.path:
                raise ValueError(f"{where}: a {kind} source needs 'path'")
            if kind == "sql" and bool(e.table) == bool(e.query):
                raise ValueError(f"{where}: a sql source needs exactly one of 'table' or 'query'")
            if kind == "http" and not e.endpoint:
                raise ValueError(f"{where}: an http source needs 'endpoint'")
            entity = ENTITIES[entity_name]
            unknown = sorted(set(e.columns) - set(entity.column_names))
            if unknown:
                raise ValueError(
                    f"{where}.columns: {unknown} are not columns of {entity_name}; "
                    f"known: {entity.column_names}"
                )
            missing = [c for c in entity.required_columns if c not in e.columns and c != "item_id"]
            if missing:
                raise ValueError(f"{where}.columns: required column(s) {missing} are not mapped")
            _check_defaults(where, entity_name, e)
            if e.identifiers and entity_name != "customers":
                raise ValueError(f"{where}.identifiers: only customers declare identifiers")
        return self


def _check_defaults(where: str, entity_name: str, e: EntitySourceConfig) -> None:
    entity = ENTITIES[entity_name]
    unknown = sorted(set(e.defaults) - set(entity.column_names))
    if unknown:
        raise ValueError(f"{where}.defaults: {unknown} are not columns of {entity_name}")
    both = sorted(set(e.defaults) & set(e.columns))
    if both:
        raise ValueError(f"{where}: {both} are both mapped (columns) and given a default (defaults); keep one")
    # Only completed orders are purchases: without a status every order would silently count as none,
    # leaving every customer with CLV 0 and no purchase history.
    if entity_name == "orders" and "status" not in e.columns and "status" not in e.defaults:
        raise ValueError(
            f"{where}.columns: 'status' is not mapped, and only orders with status 'completed' count as "
            "purchases; map the source's status column, or declare `defaults: {status: completed}` "
            "if every order this source delivers is a completed purchase"
        )


class WarehouseConfig(_Model):
    url: str = "duckdb:///data/warehouse.duckdb"
    duckdb_memory_limit: str = Field(
        DEFAULT_DUCKDB_MEMORY_LIMIT,
        description="DuckDB warehouse only: the most memory its buffer pool holds (e.g. 2GB, 512MB); "
        "larger queries spill to DuckDB's temp directory. Ignored on PostgreSQL.",
    )
    duckdb_threads: int | None = Field(
        None, ge=1, description="DuckDB warehouse only: worker threads; empty keeps DuckDB's default (one per core)."
    )
    duckdb_checkpoint_threshold: str | None = Field(
        None, description="DuckDB warehouse only: write-ahead log size that triggers a checkpoint."
    )

    @field_validator("duckdb_memory_limit", "duckdb_checkpoint_threshold")
    @classmethod
    def _duckdb_size(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not DUCKDB_SIZE.match(v):
            raise ValueError(f"{v!r} is not a size DuckDB accepts: write a number and a unit, such as 2GB or 512MB")
        return v.strip()

    @property
    def duckdb_settings(self) -> DuckDBSettings:
        return DuckDBSettings(
            memory_limit=self.duckdb_memory_limit,
            threads=self.duckdb_threads,
            checkpoint_threshold=self.duckdb_checkpoint_threshold,
        )


class NightlyConfig(_Model):
    time: str = Field("02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown timezone {v!r} (use an IANA name such as Europe/Berlin)") from e
        return v

    @property
    def cron(self) -> str:
        hour, minute = self.time.split(":")
        return f"{int(minute)} {int(hour)} * * *"


class ChecksConfig(_Model):
    """Validation settings: drift thresholds (warnings) and where the per-run HTML reports go."""

    max_row_change_pct: float = Field(30.0, ge=0, description="Warn when a table's row count moves more.")
    max_null_rate_increase: float = Field(
        0.10, ge=0, le=1, description="Warn when a column's null rate rises more."
    )
    reports_dir: str = Field(
        "data/runs", description="Per-run folders with the validation report, relative to crm.yaml."
    )
    max_row_drop_pct: float = Field(
        50.0, ge=0, le=100,
        description="A full or daily delivery with this many percent fewer rows than the one it replaces, "
        "or more, fails the source's volume contract.",
    )
    max_order_amount: float = Field(
        1_000_000.0, gt=0,
        description="Orders above this total in the reporting currency, and order lines above it, are "
        "quarantined as implausible_amount.",
    )
    on_source_failure: Literal["stop", "skip_source"] = Field(
        "stop",
        description="stop: a failed volume contract fails the run; skip_source: keep the source's last good "
        "data and go on with the others.",
    )


class BiConfig(_Model):
    """The marts as a separate DuckDB file for BI tools (docs/bi.md), replaced atomically after each run."""

    marts_file: str = Field("data/bi.duckdb", description="Path of the BI file, relative to crm.yaml.")
    export: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: written on a DuckDB warehouse only (BI reads a server warehouse directly)."
    )

    @field_validator("marts_file")
    @classmethod
    def _unambiguous_catalog(cls, v: str) -> str:
        catalog = duckdb_catalog_name(v)
        if catalog in RESERVED_DUCKDB_CATALOGS:
            raise ValueError(
                f"{v!r}: DuckDB names the file's database {catalog!r} after the file, which clashes with "
                f"the schema or a built-in catalog of that name; choose another name, e.g. data/bi.duckdb"
            )
        return v


# DuckDB names a file's database after its file name up to the first dot: a file called marts.duckdb
# makes `marts.customer_360` ambiguous between that database and its marts schema.
RESERVED_DUCKDB_CATALOGS = frozenset({"marts", "main", "system", "temp", "memory"})


def duckdb_catalog_name(path: str | os.PathLike[str]) -> str:
    return Path(path).name.lstrip(".").split(".", 1)[0]


def _check_pii_marts(pii: PiiSettings) -> None:
    """``pii.marts`` may name only marts that hold personal data."""
    from crm_pipelines.analytics.mart_columns import MART_COLUMNS, PII_COLUMNS, predictive_columns

    holding = sorted(
        t for t, cols in {**MART_COLUMNS, **predictive_columns()}.items() if any(c.name in PII_COLUMNS for c in cols)
    )
    unknown = sorted(set(pii.marts) - set(holding))
    if unknown:
        raise ValueError(
            f"pii.marts: {unknown} hold no personal data or are no marts; marts with personal data: {holding}"
        )


class CrmConfig(_Model):
    warehouse: WarehouseConfig = WarehouseConfig()
    nightly: NightlyConfig = NightlyConfig()
    as_of: dt.date | None = Field(None, description="Runs see records up to the end of this day.")
    reporting_currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    fx_rates: dict[str, float] = Field(
        default_factory=lambda: {"EUR": 1.0},
        description="Units of the reporting currency per unit of each currency.",
    )
    default_country: str = Field("DE", pattern=r"^[A-Z]{2}$")
    sources: list[SourceConfig]
    checks: ChecksConfig = ChecksConfig()
    identity: IdentitySettings = IdentitySettings()
    segments: SegmentationSettings = SegmentationSettings()
    clv: ClvSettings = ClvSettings()
    bi: BiConfig = BiConfig()
    campaigns: list[CampaignSettings] = Field(default_factory=list)
    goals: list[GoalSettings] = Field(default_factory=list)
    loyalty: LoyaltySettings = LoyaltySettings()
    portfolio: PortfolioSettings = PortfolioSettings()
    pii: PiiSettings = PiiSettings()
    base_dir: Path = Field(PROJECT_ROOT, exclude=True, description="Directory of the config file.")
    warehouse_url_reference: str | None = Field(
        None, exclude=True, description="warehouse.url before ${ENV} expansion: what Dagster may store."
    )
    config_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> CrmConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sources: names must be unique, repeated: {dupes}")
        if not self.sources:
            raise ValueError("sources: at least one source system is needed")
        for s in self.sources:
            for entity_name, e in s.entities.items():
                if e.customer_source and e.customer_source not in names:
                    raise ValueError(
                        f"source {s.name!r} entities.{entity_name}.customer_source: no source named "
                        f"{e.customer_source!r} (known: {names})"
                    )
        bad_rates = {c: r for c, r in self.fx_rates.items() if not r > 0}
        if bad_rates:
            raise ValueError(f"fx_rates: rates must be positive numbers, got {bad_rates}")
        for kind, items in (("campaigns", self.campaigns), ("goals", self.goals)):
            names = [item.name for item in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: names must be unique, repeated: {dupes}")
        if self.reporting_currency not in self.fx_rates:
            raise ValueError(f"fx_rates: has no rate for the reporting currency {self.reporting_currency}")
        _check_pii_marts(self.pii)
        return self

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no source named {name!r}")

    def resolve_path(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def warehouse_url(self) -> str:
        """The warehouse URL with a relative DuckDB path resolved against the config's directory."""
        return resolve_file_url(self.warehouse.url, self.base_dir)

    @property
    def warehouse_url_unexpanded(self) -> str:
        """The warehouse URL with its ``${ENV}`` references left in, for resource config Dagster stores."""
        return resolve_file_url(self.warehouse_url_reference or self.warehouse.url, self.base_dir)

    def source_url(self, source: SourceConfig) -> str | None:
        """The source connector's URL with a relative SQLite or DuckDB path resolved like file paths."""
        url = source.connector.url
        if url is None or source.connector.type != "sql":
            return url
        return resolve_file_url(url, self.base_dir)

    def sources_for(self, entity: str) -> list[SourceConfig]:
        return [s for s in self.sources if entity in s.entities]


def resolve_file_url(url: str, base_dir: Path) -> str:
    """Resolve the relative file path of a ``duckdb:///`` or ``sqlite:///`` URL against ``base_dir``."""
    for prefix in ("duckdb:///", "sqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            if path and not path.startswith("/") and not path.startswith(":"):
                return prefix + str((base_dir / path).resolve())
    return url


def _expand_env(value: Any, where: str, file: Path) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{file}: {where}: environment variable {name} is not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k), file) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]", file) for i, v in enumerate(value)]
    return value


def expand_env(text: str, where: str) -> str:
    """``text`` with its ``${ENV}`` / ``${ENV:-default}`` references replaced from the environment."""
    return _expand_env(text, where, Path(os.environ.get(CONFIG_ENV, "crm.yaml")))


def _describe_location(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            node = node[item]
            name = node.get("name") if isinstance(node, dict) else None
            parts[-1] = f"{parts[-1]}[{item}]" + (f" (source {name!r})" if name else "")
            continue
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def default_config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    cwd = Path.cwd() / "crm.yaml"
    return cwd if cwd.exists() else PROJECT_ROOT / "crm.yaml"


def load_config(path: str | os.PathLike[str] | None = None) -> CrmConfig:
    """Load and validate the configuration; ``CRM_WAREHOUSE_URL`` overrides the warehouse URL."""
    file = Path(path) if path is not None else default_config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: configuration file not found (set {CONFIG_ENV} to the path of your crm.yaml)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{file}: cannot read configuration: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level, got {type(data).__name__}")
    return config_from_dict(data, file)


def config_from_dict(data: dict[str, Any], file: Path | None = None) -> CrmConfig:
    file = file or Path("<config>")
    warehouse_reference = (data.get("warehouse") or {}).get("url")
    data = _expand_env(data, "", file)
    if os.environ.get(WAREHOUSE_URL_ENV):
        data = {**data, "warehouse": {**(data.get("warehouse") or {}), "url": os.environ[WAREHOUSE_URL_ENV]}}
        warehouse_reference = "${" + WAREHOUSE_URL_ENV + "}"
    base_dir = file.resolve().parent if file.name != "<config>" else PROJECT_ROOT
    try:
        return CrmConfig.model_validate(
            {
                **data,
                "base_dir": base_dir,
                "config_path": file,
                "warehouse_url_reference": warehouse_reference if isinstance(warehouse_reference, str) else None,
            }
        )
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = _describe_location(tuple(err["loc"]), data)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"  - {where}: {msg}")
        raise ConfigError(f"{file}: invalid configuration:\n" + "\n".join(problems)) from None
