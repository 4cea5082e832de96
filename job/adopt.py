"""Adopt the tracking table another tool left, so switching to migrate-job re-applies nothing.

Recognised (in the history schema, then `public`):
  golang-migrate  schema_migrations(version bigint, dirty bool)    one row = every version <= it applied
  dbmate          schema_migrations(version varchar)               one row per applied version
  generic         schema_migrations(version, description, applied_at)
  named           schema_migrations(migration_name, checksum, ...) rows name files
  batches         _migrations(id, name, batch, executed_at)        batches kept for rollback
  flyway          flyway_schema_history(version, script, success, ...)

The legacy table is only read, never changed or dropped. `rows_to_adopt` is read-only (status uses
it to show what would be adopted); `migrate` writes the result into our history on its first run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from job.db import Connection
from job.errors import ValidationFailed
from job.plan import Applied
from job.source import Migration, Version, _classify

_CANDIDATES = ("schema_migrations", "_migrations", "flyway_schema_history")


@dataclass(frozen=True)
class Legacy:
    schema: str
    table: str
    columns: dict[str, str]  # name -> data type
    tool: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


def _tool(table: str, cols: dict[str, str]) -> str | None:
    names = set(cols)
    if table == "flyway_schema_history" and {"version", "success", "script"} <= names:
        return "flyway"
    if table == "_migrations" and {"name", "batch"} <= names:
        return "batches"
    if table != "schema_migrations":
        return None
    if {"version", "dirty"} <= names:
        return "golang-migrate"
    if "migration_name" in names:
        return "named"
    if "version" in names and ("description" in names or "applied_at" in names):
        return "generic"
    if "version" in names:
        return "dbmate"
    return None


def detect(conn: Connection, schemas: list[str], own: tuple[str, str]) -> list[Legacy]:
    rows = conn.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ANY(%s) AND table_name = ANY(%s) ORDER BY ordinal_position",
        (schemas, list(_CANDIDATES)),
    ).fetchall()
    tables: dict[tuple[str, str], dict[str, str]] = {}
    for schema, table, column, dtype in rows:
        tables.setdefault((schema, table), {})[column] = dtype
    found = []
    for (schema, table), cols in tables.items():
        if (schema, table) == own:
            continue
        tool = _tool(table, cols)
        if tool:
            found.append(Legacy(schema, table, cols, tool))
    return found


def _match(
    name_or_version: str, by_version: dict[Version, Migration], by_name: dict[str, Migration]
) -> Migration | None:
    text = name_or_version.strip()
    if text in by_name:
        return by_name[text]
    lexical = any(v.is_lexical for v in by_version)  # MIGRATE_ORDER=lexical: versions are text
    try:
        found = by_version.get(Version.lexical(text) if lexical else Version.parse(text))
        if found is not None or not lexical:
            return found
    except ValueError:
        pass
    classified = _classify(text if text.endswith(".sql") else f"{text}.sql", "lexical" if lexical else "numeric")
    if classified and classified.version is not None:
        return by_version.get(classified.version)
    return None


def rows_to_adopt(conn: Connection, legacy: Legacy, migrations: list[Migration]) -> tuple[list[Applied], list[str]]:
    """Our history rows for what the legacy table says is applied, and legacy entries with no file."""
    by_version = {m.version: m for m in migrations if m.version is not None}
    by_name: dict[str, Migration] = {}
    for m in migrations:
        by_name[m.path.name] = m
        by_name[m.path.stem] = m
    cur = conn.cursor(row_factory=dict_row)
    records = cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(legacy.schema, legacy.table))).fetchall()
    source = f"adopted:{legacy.tool}"
    adopted: dict[str, Applied] = {}
    unmatched: list[str] = []

    def add(m: Migration | None, label: str, *, at: Any = None, batch: int | None = 0, by: Any = None) -> None:
        if m is None:
            unmatched.append(label)
            return
        adopted[m.key] = Applied(
            version=m.key,
            name=m.name,
            checksum=m.checksum,
            status="applied",
            applied_at=at if isinstance(at, datetime) else None,
            applied_by=str(by) if by else f"{legacy.tool} (adopted)",
            batch=batch,
            kind="adopted",
            source=source,
        )

    if legacy.tool == "golang-migrate":
        if not records:
            return [], []
        row = records[0]
        if row.get("dirty"):
            raise ValidationFailed(
                f"{legacy.qualified}: golang-migrate left version {row['version']} dirty (it failed midway); "
                "check that migration's effects, then set dirty = false in that table (golang-migrate's "
                "`force`) before switching — migrate-job will not guess what was applied",
                table=legacy.qualified,
                version=str(row["version"]),
            )
        top = Version((int(row["version"]),))
        for v, m in by_version.items():
            if v <= top:
                add(m, str(v))
    elif legacy.tool in ("dbmate", "generic"):
        for row in records:
            add(_match(str(row["version"]), by_version, by_name), str(row["version"]), at=row.get("applied_at"))
    elif legacy.tool == "named":
        for row in records:
            add(
                _match(str(row["migration_name"]), by_version, by_name),
                str(row["migration_name"]),
                at=row.get("applied_at") or row.get("executed_at"),
            )
    elif legacy.tool == "batches":
        for row in records:
            add(
                _match(str(row["name"]), by_version, by_name),
                str(row["name"]),
                at=row.get("executed_at"),
                batch=int(row["batch"]) if row.get("batch") is not None else 0,
            )
    elif legacy.tool == "flyway":
        failed = [r for r in records if not r.get("success")]
        if failed:
            r = failed[0]
            raise ValidationFailed(
                f"{legacy.qualified}: Flyway recorded a failed migration ({r.get('script')}, version "
                f"{r.get('version')}); repair it with Flyway (or remove that row) before switching",
                table=legacy.qualified,
            )
        for row in sorted(records, key=lambda r: int(r.get("installed_rank") or 0)):
            script = str(row.get("script") or "")
            kind = str(row.get("type") or "SQL").upper()
            version = None if row.get("version") is None else str(row["version"])
            if kind == "BASELINE" and version:
                base = Version.parse(version)
                for v, m in by_version.items():
                    if v <= base:
                        add(m, str(v), at=row.get("installed_on"), by=row.get("installed_by"))
                continue
            if kind in ("SCHEMA", "BASELINE"):
                continue
            if version is None:
                match = next((m for m in migrations if m.repeatable and m.path.name == script), None)
            else:
                match = _match(version, by_version, by_name)
            if kind.startswith("UNDO") or kind == "DELETE":
                if match is not None:
                    adopted.pop(match.key, None)
                continue
            add(match, script or str(version), at=row.get("installed_on"), by=row.get("installed_by"))
    return sorted(adopted.values(), key=lambda a: (a.version.startswith("R__"), a.version)), unmatched


def find_one(conn: Connection, schemas: list[str], own: tuple[str, str]) -> Legacy | None:
    found = detect(conn, schemas, own)
    if len(found) > 1:
        names = ", ".join(f"{x.qualified} ({x.tool})" for x in found)
        raise ValidationFailed(
            f"several tracking tables of other tools exist ({names}); migrate-job cannot tell which is current",
        )
    return found[0] if found else None
