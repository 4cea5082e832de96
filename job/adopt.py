"""Adopt the tracking table another tool left, so switching to migrate-job re-applies nothing.

Recognised (tool: table(columns) — what is kept):
  golang-migrate      schema_migrations(version bigint, dirty bool)       one row = every version <= it applied
  dbmate / rails      schema_migrations(version varchar)                  one row per applied version
  generic             schema_migrations(version, description, applied_at) versions, dates
  named               schema_migrations(migration_name, checksum, ...)    file names, dates; SHA-256/MD5 compared
  batches             _migrations(id, name, batch, executed_at)           batches (rollback undoes the last one)
  flyway              flyway_schema_history(version, script, checksum, success, ...)  baseline/undo/repeatable
                      rows understood; Flyway's CRC32 checksum compared
  postgres-migrations migrations(id, name, hash, executed_at)             ids, dates; its SHA-1 hash compared
  node-pg-migrate     pgmigrations(id, name, run_on)                      names, dates
  knex                knex_migrations(id, name, batch, migration_time)    names, batches, dates
  prisma              _prisma_migrations(migration_name, checksum, finished_at, rolled_back_at, ...)
                      finished, not rolled-back names; SHA-256 of migration.sql compared
  sqitch              sqitch.changes(change_id, change, project, committed_at, ...)  change names, dates

Where: the connection's search_path, the history schema and `public`; Flyway's, Knex's, node-pg-migrate's and
Prisma's tables (distinctive names) in every schema; sqitch's registry in `sqitch`. Two candidates → refused.
A table with one of those names whose columns match no tool is refused too (never re-apply silently) unless
MIGRATE_ADOPT_COLUMN names the column holding the version or file name; MIGRATE_ADOPT_TABLE points at a table.

The legacy table is only read, never changed or dropped, and only on the first run (see
`commands.prepare_history`). `rows_to_adopt` is read-only; the caller writes the rows after validation.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.rows import dict_row

from job.db import Connection
from job.errors import ConfigError, ValidationFailed
from job.plan import Applied
from job.source import Migration, Version, _classify

# Table names other tools use for their tracking table (the shape decides which tool).
_CANDIDATES = (
    "schema_migrations",
    "_migrations",
    "flyway_schema_history",
    "migrations",
    "pgmigrations",
    "knex_migrations",
    "_prisma_migrations",
    "changes",
)
# Names no application uses for its own data: looked for in every schema.
_ANYWHERE = frozenset({"flyway_schema_history", "pgmigrations", "knex_migrations", "_prisma_migrations"})
# A generic name that is only a tracking table when its columns say so (sqitch's registry).
_ONLY_IF_RECOGNISED = frozenset({"changes"})
_SQITCH_SCHEMAS = ("sqitch",)
_TIME_COLUMNS = ("applied_at", "executed_at", "run_on", "migration_time", "installed_on", "created_at", "run_at")
_SCRIPT_SUFFIXES = (".sql", ".js", ".ts", ".cjs", ".mjs", ".coffee")

ADOPT_SETTINGS_HINT = "MIGRATE_ADOPT_COLUMN (the column that holds the version or file name)"


@dataclass(frozen=True)
class Legacy:
    """Another tool's tracking table found in the database: where it is, its columns, which tool it is."""

    schema: str
    table: str
    columns: dict[str, str]  # name -> data type
    tool: str | None  # None: the columns match no known tool
    column: str | None = None  # MIGRATE_ADOPT_COLUMN: adopt by this column

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def label(self) -> str:
        return self.tool or "custom"

    def describe_columns(self) -> str:
        return ", ".join(f"{name} {dtype}" for name, dtype in self.columns.items())


def _tool(table: str, cols: dict[str, str], siblings: frozenset[str] = frozenset()) -> str | None:
    """Which tool wrote a table of this name and these columns; None if none we know."""
    names = set(cols)
    if table == "flyway_schema_history" and {"version", "success", "script"} <= names:
        return "flyway"
    if table == "_migrations" and {"name", "batch"} <= names:
        return "batches"
    if table == "knex_migrations" and {"name", "batch"} <= names:
        return "knex"
    if table == "pgmigrations" and {"name", "run_on"} <= names:
        return "node-pg-migrate"
    if table == "_prisma_migrations" and {"migration_name", "checksum", "finished_at"} <= names:
        return "prisma"
    if table == "migrations" and {"id", "name", "hash"} <= names:
        return "postgres-migrations"
    if table == "changes" and {"change_id", "change", "project"} <= names:
        return "sqitch"
    if table != "schema_migrations":
        return None
    if {"version", "dirty"} <= names:
        return "golang-migrate"
    if "migration_name" in names:
        return "named"
    if "version" in names and ("description" in names or "applied_at" in names):
        return "generic"
    if "version" in names:
        return "rails" if "ar_internal_metadata" in siblings else "dbmate"
    return None


_CATALOG = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relname = ANY(%s)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY n.nspname, c.relname, a.attnum
"""


def _tables(conn: Connection, names: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """Columns of every table with one of `names` in any schema (from the catalog: visible without privileges)."""
    tables: dict[tuple[str, str], dict[str, str]] = {}
    for schema, table, column, dtype in conn.execute(_CATALOG, (names,)).fetchall():
        tables.setdefault((str(schema), str(table)), {})[str(column)] = str(dtype)
    return tables


def search_schemas(conn: Connection, history_schema: str) -> list[str]:
    """The schemas a legacy table with a generic name is looked for in: search_path, history schema, public."""
    row = conn.execute("SELECT current_schemas(false)").fetchone()
    on_path = [str(s) for s in (row[0] if row else [])]
    return list(dict.fromkeys([*on_path, history_schema, "public"]))


def detect(conn: Connection, schemas: list[str], own: tuple[str, str], *, strict: bool = False) -> list[Legacy]:
    """Every candidate legacy table (known name) — recognised or not — except our own tables."""
    found_tables = _tables(conn, [*_CANDIDATES, "ar_internal_metadata"])
    siblings: dict[str, set[str]] = {}
    for schema, table in found_tables:
        siblings.setdefault(schema, set()).add(table)
    ours = {own, (own[0], f"{own[1]}_log")}
    found = []
    for (schema, table), cols in found_tables.items():
        if (schema, table) in ours or table == "ar_internal_metadata":
            continue
        tool = _tool(table, cols, frozenset(siblings.get(schema, set())))
        if strict and schema not in schemas:  # a tenant: only its own schema
            continue
        if table in _ANYWHERE:
            pass
        elif table in _ONLY_IF_RECOGNISED:
            if tool is None or (schema not in schemas and schema not in _SQITCH_SCHEMAS):
                continue
        elif schema not in schemas:
            continue
        found.append(Legacy(schema, table, cols, tool))
    return sorted(found, key=lambda x: (x.schema, x.table))


def find_one(
    conn: Connection,
    schemas: list[str],
    own: tuple[str, str],
    *,
    table: str | None = None,
    column: str | None = None,
    strict: bool = False,
) -> Legacy | None:
    """The one legacy table to adopt, or None. `table` (MIGRATE_ADOPT_TABLE) names it; `column`
    (MIGRATE_ADOPT_COLUMN) is the column holding the version or file name. Several candidates → refused.
    `strict`: only tables in `schemas` (a tenant never adopts another tenant's or the shared schema's table)."""
    legacy: Legacy | None
    if table is not None:
        legacy = _explicit(conn, table)
    else:
        found = detect(conn, schemas, own, strict=strict)
        if len(found) > 1:
            names = ", ".join(f"{x.qualified} ({x.label})" for x in found)
            raise ValidationFailed(
                f"several tracking tables of other tools exist ({names}); migrate-job cannot tell which is "
                "current: set MIGRATE_ADOPT_TABLE=schema.table to the one to adopt (or MIGRATE_ADOPT=false)",
                tables=[x.qualified for x in found],
            )
        legacy = found[0] if found else None
    if legacy is None:
        return None
    if column is not None:
        if column not in legacy.columns:
            raise ConfigError(
                f"MIGRATE_ADOPT_COLUMN={column}: {legacy.qualified} has no such column "
                f"(its columns: {legacy.describe_columns()})",
                setting="MIGRATE_ADOPT_COLUMN",
            )
        return Legacy(legacy.schema, legacy.table, legacy.columns, None, column)
    return legacy


def _explicit(conn: Connection, name: str) -> Legacy:
    row = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s)",
        (name,),
    ).fetchone()
    if row is None:
        raise ConfigError(f"MIGRATE_ADOPT_TABLE={name}: no such table", setting="MIGRATE_ADOPT_TABLE")
    schema, table = str(row[0]), str(row[1])
    cols = _tables(conn, [table]).get((schema, table), {})
    siblings = frozenset(t for (s, t) in _tables(conn, ["ar_internal_metadata"]) if s == schema)
    return Legacy(schema, table, cols, _tool(table, cols, siblings))


# ---------------------------------------------------------------------------- checksums (pure)


def flyway_checksum(data: bytes) -> int:
    """Flyway's checksum of a script: CRC32 over its lines (UTF-8, without line terminators, BOM stripped),
    as a signed 32-bit integer — the value Flyway stores in flyway_schema_history.checksum.

    Mirrors ChecksumCalculator: BufferedReader.readLine() (\\n, \\r or \\r\\n end a line), BomFilter on the
    first line, crc32.update(line.getBytes(UTF_8)) per line, (int) crc32.getValue().
    """
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    crc = 0
    for line in re.split(r"\r\n|\r|\n", text):
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _sha256_variants(data: bytes) -> set[str]:
    """SHA-256 of the bytes, of the bytes with CRLF → LF / LF → CRLF, and without a BOM (as Prisma accepts)."""
    unix = data.replace(b"\r\n", b"\n")
    variants = {data, unix, unix.replace(b"\n", b"\r\n"), data.removeprefix(b"\xef\xbb\xbf")}
    digests = set()
    for v in variants:
        digest = hashlib.sha256(v).digest()
        digests.add(digest.hex())
        digests.add("".join(f"{b:x}" for b in digest))  # Prisma's old, not zero-padded rendering
    return digests


def _matches(tool: str, stored: Any, m: Migration, data: bytes) -> bool:
    """Whether a legacy table's stored checksum matches the file as it is now."""
    value = str(stored).strip().lower()
    if tool == "flyway":
        try:
            return int(value) == flyway_checksum(data)
        except ValueError:
            return False
    if tool == "postgres-migrations":  # sha1 hex of file name + contents (src/migration-file.ts)
        return value == hashlib.sha1(m.path.name.encode("utf-8") + data, usedforsecurity=False).hexdigest()
    if tool == "prisma":
        return value in _sha256_variants(data)
    # `named` (schema_migrations.checksum): SHA-256 of the file, also MD5, and migrate-job's own
    return value in {m.checksum.lower(), hashlib.md5(data, usedforsecurity=False).hexdigest()} | _sha256_variants(data)


def legacy_checksum(tool: str, stored: Any, m: Migration) -> str:
    """The checksum to record for an adopted row: the file's own when the legacy one matches it (or there is
    none); otherwise the legacy value, tagged with the tool, so validation reports the file as edited."""
    if stored is None or str(stored).strip() == "":
        return m.checksum
    if _matches(tool, stored, m, _file_bytes(m)):
        return m.checksum
    return f"{tool}:{str(stored).strip()}"


def _file_bytes(m: Migration) -> bytes:
    return m.path.read_bytes()


# ---------------------------------------------------------------------------- rows


class _Matcher:
    """Finds the migration a legacy entry names: version, file name, stem, the name part, with script suffixes."""

    def __init__(self, migrations: list[Migration]) -> None:
        self.by_version = {m.version: m for m in migrations if m.version is not None}
        self.by_name: dict[str, Migration] = {}
        names: dict[str, list[Migration]] = {}
        for m in migrations:
            names.setdefault(m.name, []).append(m)
        for name, ms in names.items():
            if len(ms) == 1 and name:
                self.by_name[name] = ms[0]
        for m in migrations:
            self.by_name[m.path.name] = m
            self.by_name[m.path.stem] = m

    def __call__(self, name_or_version: str) -> Migration | None:
        text = name_or_version.strip()
        found = self._one(text)
        if found is None:
            for suffix in _SCRIPT_SUFFIXES:
                if text.lower().endswith(suffix) and len(text) > len(suffix):
                    found = self._one(text[: -len(suffix)])
                    break
        return found

    def _one(self, text: str) -> Migration | None:
        if text in self.by_name:
            return self.by_name[text]
        lexical = any(v.is_lexical for v in self.by_version)  # MIGRATE_ORDER=lexical: versions are text
        try:
            found = self.by_version.get(Version.lexical(text) if lexical else Version.parse(text))
            if found is not None or not lexical:
                return found
        except ValueError:
            pass
        classified = _classify(text if text.endswith(".sql") else f"{text}.sql", "lexical" if lexical else "numeric")
        if classified and classified.version is not None:
            return self.by_version.get(classified.version)
        return None


def _all_before_the_folder(labels: list[str], migrations: list[Migration]) -> bool:
    """The unmatched entries are plain version numbers that end right below the folder's first file (1 when
    the folder starts at 002): the schema the database was created with (an `init.sql` that records version
    1), not the same migrations under other names. Then nothing of the folder is applied yet. Anything else
    (names, a gap such as 1-3 before timestamped files, a version inside the folder's range) is still refused."""
    numeric = [m.version for m in migrations if m.version is not None and not m.version.is_lexical]
    if not numeric or not all(label.strip().isdigit() for label in labels):
        return False
    first = min(numeric)
    if len(first.parts) != 1:
        return False
    return max(int(label) for label in labels) == first.parts[0] - 1


def _time_column(legacy: Legacy) -> str | None:
    return next((c for c in _TIME_COLUMNS if c in legacy.columns), None)


def _refuse_unknown(legacy: Legacy, count: int) -> ValidationFailed:
    return ValidationFailed(
        f"{legacy.qualified} ({count} row(s)) looks like another tool's tracking table, but its columns "
        f"({legacy.describe_columns()}) match no tool migrate-job knows; set MIGRATE_ADOPT_COLUMN to the column "
        "that holds the version or file name (e.g. MIGRATE_ADOPT_COLUMN=name), or MIGRATE_ADOPT=false if it is "
        "not a tracking table; nothing was applied",
        table=legacy.qualified,
        columns=list(legacy.columns),
        setting="MIGRATE_ADOPT_COLUMN",
    )


def read_rows(conn: Connection, legacy: Legacy) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    try:
        return cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(legacy.schema, legacy.table))).fetchall()
    except pgerrors.InsufficientPrivilege:
        conn.rollback()
        raise ValidationFailed(
            f"{legacy.qualified}: permission denied reading this tracking table of {legacy.label}; "
            f"GRANT SELECT ON {legacy.qualified} TO the migration role (or MIGRATE_ADOPT=false); nothing was applied",
            table=legacy.qualified,
        ) from None


def rows_to_adopt(conn: Connection, legacy: Legacy, migrations: list[Migration]) -> tuple[list[Applied], list[str]]:
    """Our history rows for what the legacy table says is applied, and legacy entries with no file.

    Raises ValidationFailed (exit 4, before anything is written) for a table whose shape we cannot read,
    failed/dirty entries, or a non-empty table none of whose entries names a migration file.
    """
    records = read_rows(conn, legacy)
    if legacy.tool is None and legacy.column is None:
        if records:
            raise _refuse_unknown(legacy, len(records))
        return [], []
    adopted: dict[str, Applied] = {}
    unmatched: list[str] = []
    source = f"adopted:{legacy.label}"

    def add(
        m: Migration | None,
        label: str,
        *,
        at: Any = None,
        batch: int | None = 0,
        by: Any = None,
        checksum: tuple[str, Any] | None = None,
        undo: bool = False,
    ) -> None:
        if undo:  # Flyway's UNDO/DELETE rows take back an earlier one
            if m is not None:
                adopted.pop(m.key, None)
            return
        if m is None:
            unmatched.append(label)
            return
        adopted[m.key] = Applied(
            version=m.key,
            name=m.name,
            checksum=legacy_checksum(checksum[0], checksum[1], m) if checksum else m.checksum,
            status="applied",
            applied_at=at if isinstance(at, datetime) else None,
            applied_by=str(by) if by else f"{legacy.label} (adopted)",
            batch=batch,
            kind="adopted",
            source=source,
        )

    reader = _READERS.get(legacy.tool or "") if legacy.column is None else _read_by_column
    assert reader is not None
    reader(legacy, records, migrations, _Matcher(migrations), add)
    if records and not adopted and migrations and unmatched and not _all_before_the_folder(unmatched, migrations):
        raise ValidationFailed(
            f"{legacy.qualified} ({legacy.label}) lists {len(unmatched)} applied migration(s), but none of them "
            f"names a file in the migrations folder (e.g. {unmatched[0]!r}); rename the files to match, or set "
            f"{ADOPT_SETTINGS_HINT}; nothing was applied",
            table=legacy.qualified,
            unmatched=unmatched[:20],
        )
    return sorted(adopted.values(), key=lambda a: (a.version.startswith("R__"), a.version)), unmatched


Add = Callable[..., None]
Reader = Callable[[Legacy, list[dict[str, Any]], list[Migration], _Matcher, Add], None]


def _batch(value: Any) -> int:
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _read_golang(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    if not records:
        return
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
    for v, m in match.by_version.items():
        if v <= top:
            add(m, str(v))


def _read_versions(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    for row in records:
        add(match(str(row["version"])), str(row["version"]), at=row.get("applied_at"))


def _read_named(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    for row in records:
        name = str(row["migration_name"])
        add(
            match(name),
            name,
            at=row.get("applied_at") or row.get("executed_at"),
            by=row.get("applied_by"),
            checksum=("named", row.get("checksum")) if "checksum" in row else None,
        )


def _read_batches(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    time_col = "migration_time" if legacy.tool == "knex" else "executed_at"
    for row in records:
        if row.get("name") is None:
            continue
        add(match(str(row["name"])), str(row["name"]), at=row.get(time_col), batch=_batch(row.get("batch")))


def _read_postgres_migrations(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    for row in records:
        if (
            row.get("id") == 0
            and row.get("name") == "create-migrations-table"
            and Version((0,)) not in match.by_version
        ):
            continue  # the library's own first migration, not a file of the project
        m = match.by_version.get(Version((int(row["id"]),))) if row.get("id") is not None else None
        add(
            m or match(str(row["name"])),
            f"{row.get('id')}_{row.get('name')}",
            at=row.get("executed_at"),
            checksum=("postgres-migrations", row.get("hash")),
        )


def _read_node_pg_migrate(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    for row in records:
        add(match(str(row["name"])), str(row["name"]), at=row.get("run_on"))


def _read_prisma(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    for row in sorted(records, key=lambda r: str(r.get("started_at") or "")):
        if row.get("rolled_back_at") is not None:
            continue  # `prisma migrate resolve --rolled-back`: not applied
        name = str(row["migration_name"])
        if row.get("finished_at") is None:
            raise ValidationFailed(
                f"{legacy.qualified}: Prisma recorded migration {name} as started but not finished (failed); "
                "resolve it with `prisma migrate resolve` before switching",
                table=legacy.qualified,
                version=name,
            )
        add(match(name), name, at=row.get("finished_at"), checksum=("prisma", row.get("checksum")))


def _read_sqitch(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    for row in sorted(records, key=lambda r: str(r.get("committed_at") or "")):
        add(match(str(row["change"])), str(row["change"]), at=row.get("committed_at"), by=row.get("committer_name"))


def _read_by_column(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
    assert legacy.column is not None
    time_col = _time_column(legacy)
    has_batch = "batch" in legacy.columns
    for row in records:
        value = row.get(legacy.column)
        if value is None:
            continue
        add(
            match(str(value)),
            str(value),
            at=row.get(time_col) if time_col else None,
            batch=_batch(row.get("batch")) if has_batch else 0,
        )


def _read_flyway(
    legacy: Legacy, records: list[dict[str, Any]], migrations: list[Migration], match: _Matcher, add: Add
) -> None:
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
        at, by = row.get("installed_on"), row.get("installed_by")
        if kind == "BASELINE" and version:
            base = Version.parse(version)
            for v, m in match.by_version.items():
                if v <= base:
                    add(m, str(v), at=at, by=by)
            continue
        if kind in ("SCHEMA", "BASELINE"):
            continue
        if version is None:
            found = next((m for m in migrations if m.repeatable and m.path.name == script), None)
        else:
            found = match(version)
        if kind.startswith("UNDO") or kind == "DELETE":
            add(found, script, undo=True)
            continue
        checksum = ("flyway", row.get("checksum")) if kind in ("SQL", "SQL_BASELINE") else None
        add(found, script or str(version), at=at, by=by, checksum=checksum)


_READERS: dict[str, Reader] = {
    "golang-migrate": _read_golang,
    "dbmate": _read_versions,
    "rails": _read_versions,
    "generic": _read_versions,
    "named": _read_named,
    "batches": _read_batches,
    "knex": _read_batches,
    "flyway": _read_flyway,
    "postgres-migrations": _read_postgres_migrations,
    "node-pg-migrate": _read_node_pg_migrate,
    "prisma": _read_prisma,
    "sqitch": _read_sqitch,
}
