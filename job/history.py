"""The tracking table: create it, read it, and build/write its rows.

Rows of transactional migrations are written by SQL that `apply` sends in the same message and
transaction as the migration itself (`applied_row_sql`). Non-transactional migrations record
`running` first, progress after each statement, then `applied` or `failed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from job.db import Connection
from job.plan import Applied

COLUMNS = (
    "version",
    "name",
    "checksum",
    "status",
    "kind",
    "applied_at",
    "execution_ms",
    "applied_by",
    "batch",
    "statements_done",
    "error",
    "source",
    "run_id",
)


@dataclass(frozen=True)
class HistoryTable:
    schema: str
    table: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def create_sql(self) -> sql.Composed:
        return sql.SQL(
            """CREATE TABLE IF NOT EXISTS {t} (
    version         text PRIMARY KEY,
    name            text NOT NULL,
    checksum        text,
    status          text NOT NULL DEFAULT 'applied' CHECK (status IN ('applied', 'running', 'failed')),
    kind            text NOT NULL DEFAULT 'transactional',
    applied_at      timestamptz NOT NULL DEFAULT now(),
    execution_ms    integer,
    applied_by      text,
    batch           integer,
    statements_done integer,
    error           text,
    source          text NOT NULL DEFAULT 'migrate-job',
    run_id          text
)"""
        ).format(t=self.ident)


def exists(conn: Connection, table: HistoryTable) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{table.schema}"."{table.table}"',)).fetchone()
    return bool(row and row[0])


def ensure(conn: Connection, table: HistoryTable) -> None:
    """Create the schema (if missing) and the table, idempotently. Call under the advisory lock."""
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (table.schema,)).fetchone()
    if row is None:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    conn.execute(table.create_sql())


def load(conn: Connection, table: HistoryTable) -> list[Applied]:
    """Every row of the history table; [] when the table does not exist yet."""
    if not exists(conn, table):
        return []
    cur = conn.cursor(row_factory=dict_row)
    query = sql.SQL("SELECT {cols} FROM {t}").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS if c != "run_id"), t=table.ident
    )
    rows = cur.execute(query).fetchall()
    return [Applied(**r) for r in rows]


def next_batch(history: list[Applied]) -> int:
    return max((a.batch or 0 for a in history), default=0) + 1


def _values(values: dict[str, Any]) -> tuple[sql.Composable, sql.Composable]:
    cols = sql.SQL(", ").join(sql.Identifier(k) for k in values)
    vals = sql.SQL(", ").join(v if isinstance(v, sql.Composable) else sql.Literal(v) for v in values.values())
    return cols, vals


ELAPSED_MS = sql.SQL("(extract(epoch FROM clock_timestamp() - now()) * 1000)::integer")


def _insert_sql(table: HistoryTable, values: dict[str, Any], *, overwrite: bool) -> str:
    """Literal INSERT of one history row; on an existing version overwrite it, or keep the existing one."""
    cols, vals = _values(values)
    conflict: sql.Composable
    if overwrite:
        conflict = sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(k)) for k in values if k != "version"
        )
    else:
        conflict = sql.SQL("DO NOTHING")
    query = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT (version) {c}").format(
        t=table.ident, cols=cols, vals=vals, c=conflict
    )
    return query.as_string(None)


def applied_row_sql(table: HistoryTable, row: dict[str, Any]) -> str:
    """INSERT (or overwrite a previous row of the same version) as literal SQL for the one-message apply.

    `execution_ms` is measured by the server: from the transaction's start to this statement.
    """
    values = {**row, "status": "applied", "applied_at": sql.SQL("now()"), "execution_ms": ELAPSED_MS}
    return _insert_sql(table, values, overwrite=True)


def delete_row_sql(table: HistoryTable, version: str) -> str:
    return sql.SQL("DELETE FROM {t} WHERE version = {v}").format(t=table.ident, v=sql.Literal(version)).as_string(None)


def record_started(conn: Connection, table: HistoryTable, row: dict[str, Any]) -> None:
    """Non-transactional path: record `running` before the first statement (autocommit)."""
    values = {
        **row,
        "status": "running",
        "applied_at": sql.SQL("now()"),
        "statements_done": row.get("statements_done", 0),
    }
    conn.execute(_insert_sql(table, values, overwrite=True))


def record_progress(conn: Connection, table: HistoryTable, version: str, done: int) -> None:
    conn.execute(
        sql.SQL("UPDATE {t} SET statements_done = %s WHERE version = %s").format(t=table.ident),
        (done, version),
    )


def record_finished(conn: Connection, table: HistoryTable, version: str, done: int, elapsed_ms: int) -> None:
    conn.execute(
        sql.SQL(
            "UPDATE {t} SET status = 'applied', statements_done = %s, execution_ms = %s, error = NULL, "
            "applied_at = now() WHERE version = %s"
        ).format(t=table.ident),
        (done, elapsed_ms, version),
    )


def record_failed(conn: Connection, table: HistoryTable, version: str, done: int, error: str) -> None:
    conn.execute(
        sql.SQL("UPDATE {t} SET status = 'failed', statements_done = %s, error = %s WHERE version = %s").format(
            t=table.ident
        ),
        (done, error[:2000], version),
    )


def delete(conn: Connection, table: HistoryTable, version: str) -> None:
    conn.execute(sql.SQL("DELETE FROM {t} WHERE version = %s").format(t=table.ident), (version,))


def insert_row_sql(table: HistoryTable, a: Applied, run_id: str) -> str:
    """Literal INSERT of an adopted/baselined row (kept if the version is already recorded)."""
    values: dict[str, Any] = {
        "version": a.version,
        "name": a.name,
        "checksum": a.checksum,
        "status": "applied",
        "kind": a.kind,
        "applied_at": a.applied_at if a.applied_at else sql.SQL("now()"),
        "execution_ms": a.execution_ms,
        "applied_by": a.applied_by,
        "batch": a.batch,
        "source": a.source,
        "run_id": run_id,
    }
    return _insert_sql(table, values, overwrite=False)


def insert_rows(conn: Connection, table: HistoryTable, rows: list[Applied], run_id: str) -> None:
    """Write adopted/baselined rows in one transaction and one message."""
    if rows:
        with conn.transaction():
            conn.execute(";\n".join(insert_row_sql(table, a, run_id) for a in rows))


def update_checksums(conn: Connection, table: HistoryTable, upgrades: list[tuple[str, str]]) -> None:
    """Store new-style checksums (same content, normalised line endings) for these versions, in one statement."""
    if upgrades:
        conn.execute(
            sql.SQL(
                "UPDATE {t} AS h SET checksum = u.checksum "
                "FROM unnest(%s::text[], %s::text[]) AS u(version, checksum) WHERE h.version = u.version"
            ).format(t=table.ident),
            ([v for v, _ in upgrades], [c for _, c in upgrades]),
        )
