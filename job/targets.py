"""Fleet targets: what one is, and where a fleet's come from.

A `Target` is a frozen value (id, how to connect, optional tenant schema); `Target.settings(base)` is the
single-target `Settings` the existing commands run with, so a fleet never re-implements a command. Sources:

- a targets file (`.toml`, `.yaml`/`.yml`, `.json`): `targets` entries and `discover` entries;
- discovery: Secrets Manager secrets by name prefix or tag, a catalog query returning (id, dsn | secret_id,
  schema), tenant schemas listed or found by a query in one database.

Parsing (`parse`, `from_rows`, `shard_of`, `select_shard`) is pure; `discover` does the I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from job.config import Settings, env_value
from job.errors import ConfigError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$")
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_TARGET_KEYS = {"id", "url_env", "secret_id", "parameter", "iam", "host", "port", "dbname", "user", "schema"}
_DISCOVER_KEYS = {
    "secrets_prefix",
    "secrets_tag",
    "catalog_query",
    "catalog_url_env",
    "schemas",
    "schemas_query",
    "url_env",
}


@dataclass(frozen=True)
class Target:
    """One database (or one tenant schema in a database) of a fleet. Never holds a password in its repr."""

    id: str
    url: SecretStr | None = None  # from `url_env` or a catalog's dsn
    secret_id: str | None = None
    parameter: str | None = None
    iam: bool = False
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    schema: str | None = None
    origin: str = field(default="", compare=False)  # where it was declared, for error messages

    def settings(self, base: Settings) -> Settings:
        """The settings of a single-target run against this target (connection and tenant replaced)."""
        update: dict[str, Any] = {}
        if self.url is not None or self.secret_id or self.parameter or self.iam:
            update.update(
                database_url=self.url,
                libpq_env=False,
                database_secret_id=self.secret_id,
                database_url_parameter=self.parameter,
                iam_auth=self.iam,
            )
        for name, value in (("db_host", self.host), ("db_port", self.port), ("db_name", self.dbname)):
            if value is not None:
                update[name] = value
        if self.user is not None:
            update["db_user"] = self.user
        if self.schema is not None:
            update.update(tenant_schema=self.schema, history_schema=self.schema)
        return base.model_copy(update=update)


@dataclass(frozen=True)
class Discover:
    """A `discover` entry: where to find more targets at run time."""

    secrets_prefix: str | None = None
    secrets_tag: str | None = None
    catalog_query: str | None = None
    catalog_url_env: str | None = None
    schemas: tuple[str, ...] = ()
    schemas_query: str | None = None
    url_env: str | None = None  # the database holding `schemas` (default: the job's own connection)
    origin: str = field(default="", compare=False)


# ---------------------------------------------------------------------------- pure: files


def _load(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}", file=str(path)) from None
    except Exception as exc:  # yaml.YAMLError: its message names line and column
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}", file=str(path)) from None
    raise ConfigError(f"{path}: unknown targets file type (use .toml, .yaml, .yml or .json)", file=str(path))


def _entries(data: Any, key: str, path: Path) -> list[Mapping[str, Any]]:
    value = data.get(key, []) if isinstance(data, Mapping) else None
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{path}: `{key}` must be a list of tables/objects", file=str(path), key=key)
    return value


def _str(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: `{key}` must be a non-empty string", key=key)
    return value.strip()


def _schema(value: str | None, where: str) -> str | None:
    if value is not None and not _SCHEMA.match(value):
        raise ConfigError(f"{where}: schema {value!r} is not a plain SQL identifier", key="schema")
    return value


def target_of(entry: Mapping[str, Any], where: str) -> Target:
    """A Target from a file entry; ConfigError (exit 2) naming `where` and the key for anything wrong."""
    unknown = sorted(set(entry) - _TARGET_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {sorted(_TARGET_KEYS)})", key=unknown[0])
    ident = _str(entry, "id", where)
    if ident is None or not _ID.match(ident):
        raise ConfigError(f"{where}: every target needs an `id` (letters, digits, _ . : @ / -)", key="id")
    sources = [k for k in ("url_env", "secret_id", "parameter") if entry.get(k) is not None]
    if entry.get("iam"):
        sources.append("iam")
    if len(sources) > 1:
        raise ConfigError(f"{where}: target {ident}: give one of url_env, secret_id, parameter, iam", key=sources[1])
    url: SecretStr | None = None
    url_env = _str(entry, "url_env", where)
    if url_env is not None:
        value = env_value(url_env)
        if value is None:
            raise ConfigError(f"{where}: target {ident}: ${url_env} is not set", key="url_env", setting=url_env)
        url = SecretStr(value)
    port = entry.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"{where}: target {ident}: `port` must be a TCP port number", key="port")
    if not isinstance(entry.get("iam", False), bool):
        raise ConfigError(f"{where}: target {ident}: `iam` must be true or false", key="iam")
    return Target(
        id=ident,
        url=url,
        secret_id=_str(entry, "secret_id", where),
        parameter=_str(entry, "parameter", where),
        iam=bool(entry.get("iam", False)),
        host=_str(entry, "host", where),
        port=port,
        dbname=_str(entry, "dbname", where),
        user=_str(entry, "user", where),
        schema=_schema(_str(entry, "schema", where), f"{where}: target {ident}"),
        origin=where,
    )


def discover_of(entry: Mapping[str, Any], where: str) -> Discover:
    unknown = sorted(set(entry) - _DISCOVER_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {sorted(_DISCOVER_KEYS)})", key=unknown[0])
    schemas = entry.get("schemas", [])
    if isinstance(schemas, str):
        schemas = [s.strip() for s in schemas.split(",") if s.strip()]
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise ConfigError(f"{where}: `schemas` must be a list of schema names", key="schemas")
    found = Discover(
        secrets_prefix=_str(entry, "secrets_prefix", where),
        secrets_tag=_str(entry, "secrets_tag", where),
        catalog_query=_str(entry, "catalog_query", where),
        catalog_url_env=_str(entry, "catalog_url_env", where),
        schemas=tuple(str(_schema(s, where)) for s in schemas),
        schemas_query=_str(entry, "schemas_query", where),
        url_env=_str(entry, "url_env", where),
        origin=where,
    )
    kinds = [bool(found.secrets_prefix or found.secrets_tag), bool(found.catalog_query), bool(found.schemas)]
    kinds.append(bool(found.schemas_query))
    if sum(kinds) != 1:
        raise ConfigError(
            f"{where}: a discover entry needs exactly one of secrets_prefix/secrets_tag, catalog_query, schemas, "
            "schemas_query"
        )
    if found.secrets_tag is not None and "=" not in found.secrets_tag:
        raise ConfigError(f"{where}: `secrets_tag` must be KEY=VALUE", key="secrets_tag")
    return found


def parse(path: Path, text: str) -> tuple[list[Target], list[Discover]]:
    """The targets and discover entries of a targets file."""
    data = _load(path, text)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected `targets` and/or `discover` at the top level", file=str(path))
    unknown = sorted(set(data) - {"targets", "discover"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r} (expected targets, discover)", file=str(path))
    targets = [target_of(e, f"{path}: targets[{i}]") for i, e in enumerate(_entries(data, "targets", path))]
    discover = [discover_of(e, f"{path}: discover[{i}]") for i, e in enumerate(_entries(data, "discover", path))]
    return targets, discover


def from_settings(settings: Settings) -> list[Discover]:
    """Discovery given directly by settings (--schemas, --schemas-query, --secrets-prefix/tag, --catalog-query)."""
    found: list[Discover] = []
    if settings.fleet_schemas:
        names = tuple(s.strip() for s in settings.fleet_schemas.split(",") if s.strip())
        found.append(Discover(schemas=tuple(str(_schema(s, "MIGRATE_FLEET_SCHEMAS")) for s in names)))
    if settings.fleet_schemas_query:
        found.append(Discover(schemas_query=settings.fleet_schemas_query, origin="MIGRATE_FLEET_SCHEMAS_QUERY"))
    if settings.fleet_secrets_prefix or settings.fleet_secrets_tag:
        found.append(
            Discover(
                secrets_prefix=settings.fleet_secrets_prefix,
                secrets_tag=settings.fleet_secrets_tag,
                origin="MIGRATE_FLEET_SECRETS_PREFIX/TAG",
            )
        )
    if settings.fleet_catalog_query:
        found.append(Discover(catalog_query=settings.fleet_catalog_query, origin="MIGRATE_FLEET_CATALOG_QUERY"))
    return found


def from_rows(rows: Iterable[Mapping[str, Any]], where: str) -> list[Target]:
    """Targets from catalog query rows: columns `id`, and `dsn` or `secret_id`, and optionally `schema`."""
    found = []
    for n, row in enumerate(rows, 1):
        if "id" not in row or ("dsn" not in row and "secret_id" not in row and "schema" not in row):
            raise ConfigError(f"{where}: the query must return columns id, and dsn or secret_id (and schema)")
        ident = str(row["id"])
        if not _ID.match(ident):
            raise ConfigError(f"{where}: row {n}: id {ident!r} is not a usable target id")
        dsn = row.get("dsn")
        found.append(
            Target(
                id=ident,
                url=SecretStr(str(dsn)) if dsn else None,
                secret_id=str(row["secret_id"]) if row.get("secret_id") else None,
                schema=_schema(str(row["schema"]) if row.get("schema") else None, f"{where}: row {n}"),
                origin=f"{where}: row {n}",
            )
        )
    return found


def unique(targets: Iterable[Target]) -> list[Target]:
    """Targets sorted by id; the same id twice is an error naming both places."""
    by_id: dict[str, Target] = {}
    for t in targets:
        if t.id in by_id:
            raise ConfigError(f"target id {t.id!r} appears twice ({by_id[t.id].origin or '?'}; {t.origin or '?'})")
        by_id[t.id] = t
    return [by_id[k] for k in sorted(by_id)]


def shard_of(target_id: str, shards: int) -> int:
    """The shard (0..shards-1) of a target: a hash of its id, so adding a target never moves the others."""
    digest = hashlib.sha256(target_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_spec(settings: Settings) -> tuple[int, int] | None:
    """(index, count) from --shard I/N, or JOB_COMPLETION_INDEX with --shards N; None: every target."""
    if settings.fleet_shard:
        index, _, count = settings.fleet_shard.partition("/")
        return int(index), int(count)
    if settings.fleet_shards:
        if settings.job_completion_index is None:
            raise ConfigError(
                "MIGRATE_FLEET_SHARDS is set but JOB_COMPLETION_INDEX is not (Kubernetes sets it in an Indexed "
                "Job); elsewhere pass --shard I/N",
                setting="MIGRATE_FLEET_SHARDS",
            )
        if settings.job_completion_index >= settings.fleet_shards:
            raise ConfigError(
                f"JOB_COMPLETION_INDEX={settings.job_completion_index} is not below MIGRATE_FLEET_SHARDS="
                f"{settings.fleet_shards}",
                setting="JOB_COMPLETION_INDEX",
            )
        return settings.job_completion_index, settings.fleet_shards
    return None


def select_shard(targets: list[Target], spec: tuple[int, int] | None) -> list[Target]:
    if spec is None:
        return targets
    index, count = spec
    return [t for t in targets if shard_of(t.id, count) == index]


# ---------------------------------------------------------------------------- I/O: discovery


def load(settings: Settings, log: Any) -> list[Target]:
    """Every target of the fleet (file + discovery), sorted by id, restricted to this run's shard."""
    declared: list[Target] = []
    discover: list[Discover] = []
    if settings.fleet_targets is not None:
        path = settings.fleet_targets
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: cannot read the targets file ({type(exc).__name__})", setting="MIGRATE_FLEET_TARGETS"
            ) from None
        declared, discover = parse(path, text)
    discover += from_settings(settings)
    if not declared and not discover:
        raise ConfigError(
            "a fleet needs targets: --targets FILE (MIGRATE_FLEET_TARGETS), or --schemas, --schemas-query, "
            "--secrets-prefix, --secrets-tag, --catalog-query",
            setting="MIGRATE_FLEET_TARGETS",
        )
    found = list(declared)
    for entry in discover:
        more = _discover(settings, entry)
        log.info("fleet.discovered", source=entry.origin or "settings", count=len(more))
        found += more
    everything = unique(found)
    spec = shard_spec(settings)
    mine = select_shard(everything, spec)
    if spec is not None:
        log.info("fleet.shard", shard=spec[0], shards=spec[1], targets=len(mine), of=len(everything))
    return mine


def _discover(settings: Settings, entry: Discover) -> list[Target]:
    if entry.secrets_prefix or entry.secrets_tag:
        from job import aws

        names = aws.list_secret_names(prefix=entry.secrets_prefix, tag=entry.secrets_tag, region=settings.aws_region)
        prefix = entry.secrets_prefix or ""
        return [Target(id=name.removeprefix(prefix) or name, secret_id=name, origin=entry.origin) for name in names]
    source = settings
    if entry.catalog_query is not None:
        source = _with_url(settings, entry.catalog_url_env, settings.fleet_catalog_url, entry.origin)
        return from_rows(_query(source, entry.catalog_query, entry.origin), entry.origin or "catalog query")
    base_url = _url_of(entry.url_env, entry.origin)
    source = _with_url(settings, entry.url_env, None, entry.origin)
    if entry.schemas_query is not None:
        rows = _query(source, entry.schemas_query, entry.origin)
        names = [str(next(iter(r.values()))) for r in rows]
    else:
        names = list(entry.schemas)
    return [
        Target(id=str(_schema(n, entry.origin or "schemas")), url=base_url, schema=n, origin=entry.origin)
        for n in names
    ]


def _url_of(url_env: str | None, where: str) -> SecretStr | None:
    if url_env is None:
        return None
    value = env_value(url_env)
    if value is None:
        raise ConfigError(f"{where}: ${url_env} is not set", setting=url_env)
    return SecretStr(value)


def _with_url(settings: Settings, url_env: str | None, url: SecretStr | None, where: str) -> Settings:
    chosen = _url_of(url_env, where) or url
    if chosen is None:
        return settings
    return settings.model_copy(update={"database_url": chosen, "libpq_env": False, "database_secret_id": None})


def _query(settings: Settings, statement: str, where: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    from job import db
    from job.report import add_secret

    try:
        with db.connect_once(settings, purpose="discover") as conn:
            rows = conn.cursor(row_factory=dict_row).execute(statement.encode()).fetchall()
    except psycopg.OperationalError as exc:
        raise ConfigError(f"{where or 'discovery'}: cannot reach the database: {db.one_line(exc)}") from None
    except psycopg.Error as exc:
        raise ConfigError(f"{where or 'discovery'}: the query failed: {exc.sqlstate} {db.one_line(exc)}") from None
    from job.config import password_of

    for row in rows:
        if row.get("dsn"):
            secret = password_of(SecretStr(str(row["dsn"])))
            if secret:
                add_secret(secret)
    return rows
