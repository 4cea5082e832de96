"""Baselines: record migrations as applied without running them.

- `migrate-job baseline --version V`: every migration <= V is recorded as applied (source `baseline`).
- A schema file (`schema.sql` or `init.sql` in the migrations folder, or MIGRATE_SCHEMA_LOAD_FILE) for
  new databases: on an empty database it is loaded, in one transaction together with history rows for the
  migrations it covers (`-- migrate-job: baseline V` header, or MIGRATE_BASELINE_VERSION); on a database that
  already has tables it is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from job import history
from job.db import Connection, run_script
from job.errors import MigrationFailed, SourceError
from job.history import HistoryTable
from job.plan import Applied
from job.source import SCHEMA_FILE_NAMES, Migration, Version
from job.sqlscan import SqlSyntaxError, line_col, split

_BASELINE = re.compile(r"^[ \t]*--[ \t]*migrate-job:[ \t]*baseline[ \t]*[= \t][ \t]*(?P<v>[0-9][0-9._]*)", re.I | re.M)
_META = re.compile(r"^\\.*$", re.M)  # psql meta-commands such as pg_dump's \restrict lines


def baseline_rows(migrations: list[Migration], upto: Version, existing: list[Applied], source: str) -> list[Applied]:
    """History rows for every versioned migration <= upto that is not recorded yet. Pure."""
    have = {a.version for a in existing}
    return [
        Applied(
            version=m.key,
            name=m.name,
            checksum=m.checksum,
            status="applied",
            kind="baseline",
            batch=0,
            source=source,
            applied_by=source,
        )
        for m in migrations
        if m.version is not None and m.version <= upto and m.key not in have
    ]


def find_schema_file(directory: Path, configured: Path | None) -> Path | None:
    if configured is not None:
        if not configured.is_file():
            raise SourceError(f"{configured}: schema file not found (MIGRATE_SCHEMA_LOAD_FILE)", file=str(configured))
        return configured
    for name in SCHEMA_FILE_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def schema_version(path: Path, text: str, configured: str | None) -> Version | None:
    raw = configured
    if raw is None:
        found = _BASELINE.search(text)
        raw = found.group("v") if found else None
    if raw is None:
        return None
    try:
        return Version.parse(raw)
    except ValueError:
        raise SourceError(f"{path}: baseline version {raw!r} is not a version number", file=str(path)) from None


def covered_rows(path: Path, migrations: list[Migration], configured_version: str | None) -> list[Applied]:
    """The rows loading this schema file would record (read-only, for planning before anything is written)."""
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not valid UTF-8", file=str(path)) from None
    version = schema_version(path, text, configured_version)
    return baseline_rows(migrations, version, [], "schema") if version is not None else []


def database_is_empty(conn: Connection, table: HistoryTable) -> bool:
    """No relation of the application's in any schema (migrate-job's own and extensions' do not count)."""
    return not history.user_relations(conn, table, history_schema_only=False, limit=1)


def load_schema(
    conn: Connection,
    table: HistoryTable,
    path: Path,
    migrations: list[Migration],
    configured_version: str | None,
    run_id: str,
    *,
    by: str | None = None,
) -> list[Applied]:
    """Load the schema file and its history rows (and a `schema_loaded` audit event) in one transaction.
    Returns the rows recorded."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not valid UTF-8", file=str(path)) from None
    version = schema_version(path, text, configured_version)
    cleaned = _META.sub("", text)
    try:
        stmts = [s for s in split(cleaned) if s.transaction_control not in ("begin", "start", "commit")]
    except SqlSyntaxError as exc:
        line, col = line_col(cleaned, exc.offset)
        raise SourceError(f"{path}:{line}:{col}: syntax error: {exc.message}", file=str(path), line=line) from None
    rows = baseline_rows(migrations, version, [], "schema") if version is not None else []
    inserts = "".join(history.insert_row_sql(table, a, run_id) + ";\n" for a in rows)
    inserts += (
        history.event_sql(
            table,
            "schema_loaded",
            detail={"file": str(path), "versions": [a.version for a in rows]},
            by=by,
            run_id=run_id,
        )
        + ";\n"
    )
    # One transaction: the schema and the rows of the migrations it covers. RESET ALL afterwards, so a
    # pg_dump header's set_config('search_path', '', false) does not leak into later migrations.
    script = "BEGIN;\n" + "".join(s.terminated + "\n" for s in stmts) + inserts + "COMMIT;\nRESET ALL;"
    result = run_script(conn, script)
    if result.error is not None:
        conn.execute("ROLLBACK")
        err = result.error
        index = max(0, result.completed - 1)
        line = line_col(cleaned, stmts[index].offset)[0] if index < len(stmts) else 1
        raise MigrationFailed(
            f"{path}:{line}: loading the schema file failed: {err.sqlstate} {str(err).splitlines()[0]}",
            file=str(path),
            line=line,
            sqlstate=err.sqlstate,
        )
    return rows
