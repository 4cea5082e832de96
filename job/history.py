"""The tracking table: create it, read it, and build/write its rows; and its audit trail.

Rows of transactional migrations are written by SQL that `apply` sends in the same message and
transaction as the migration itself (`applied_row_sql`). Non-transactional migrations record
`running` first, progress after each statement, then `applied` or `failed`.

Next to the history table lives an append-only audit table, `<history table>_log` (id, at, event, version,
name, detail jsonb, applied_by, run_id): every change of the history writes one event in the same
transaction as the change (`applied`, `rolled_back`, `failed`, `adopted`, `baselined`, `schema_loaded`,
`repaired`, `checksum_accepted`, `forgotten`). migrate-job only ever inserts into it.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from job.db import Connection
from job.errors import ConfigError
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
    """The schema and name of the history table (its audit table is `<table>_log`)."""

    schema: str
    table: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def log_table(self) -> str:
        return f"{self.table}_log"

    @property
    def log_ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.log_table)

    @property
    def log_qualified(self) -> str:
        return f"{self.schema}.{self.log_table}"

    def log_create_sql(self) -> sql.Composed:
        return sql.SQL(
            """CREATE TABLE IF NOT EXISTS {t} (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    event      text NOT NULL,
    version    text,
    name       text,
    detail     jsonb NOT NULL DEFAULT '{{}}',
    applied_by text,
    run_id     text
)"""
        ).format(t=self.log_ident)

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


def _regclass(schema: str, name: str) -> str:
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'


def exists(conn: Connection, table: HistoryTable) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_regclass(table.schema, table.table),)).fetchone()
    return bool(row and row[0])


# One round trip, from the catalogs only (readable by every role, also on a hot standby): to_regclass would
# raise "permission denied for schema" where the role lacks USAGE.
_INSPECT = """
SELECT current_user, current_database(), n.oid IS NOT NULL, c.relkind,
       coalesce(has_schema_privilege(n.oid, 'USAGE'), false),
       coalesce(has_schema_privilege(n.oid, 'CREATE'), false),
       has_database_privilege(current_database(), 'CREATE'),
       array(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p
             WHERE c.oid IS NOT NULL AND has_table_privilege(c.oid, p)),
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
FROM (SELECT 1) AS one
LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = %(table)s
"""
READ_PRIVILEGES = ("SELECT",)
WRITE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class TableState:
    """What the catalogs say about the history table and what the connected role may do with it."""

    role: str
    database: str
    schema_exists: bool
    relkind: str | None  # None: no relation of that name
    schema_usage: bool
    schema_create: bool
    database_create: bool
    privileges: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def exists(self) -> bool:
        return self.relkind is not None


# What `inspect` found, per connection and table: an existing history table is inspected once per session (each
# look is a round trip, which a far database or a fleet of hundreds feels). A missing one is looked for again
# every time: another runner (or `migrate` beside `wait-for-version`) may create it meanwhile.
_INSPECTED: weakref.WeakKeyDictionary[Connection, dict[tuple[str, str], TableState]] = weakref.WeakKeyDictionary()


def inspect(conn: Connection, table: HistoryTable) -> TableState:
    known = _INSPECTED.setdefault(conn, {})
    key = (table.schema, table.table)
    if key in known:
        return known[key]
    state = _inspect(conn, table)
    if state.exists:
        known[key] = state
    return state


def _forget(conn: Connection) -> None:
    _INSPECTED.pop(conn, None)


def _inspect(conn: Connection, table: HistoryTable) -> TableState:
    row = conn.execute(_INSPECT, {"schema": table.schema, "table": table.table}).fetchone()
    assert row is not None
    role, database, schema_exists, relkind, usage, create, db_create, privileges, columns = row
    return TableState(
        str(role),
        str(database),
        bool(schema_exists),
        str(relkind) if relkind is not None else None,
        bool(usage),
        bool(create),
        bool(db_create),
        tuple(privileges),
        tuple(columns),
    )


def preflight(conn: Connection, table: HistoryTable, *, write: bool = False) -> TableState:
    """Check the history table before using it: its shape, and that the role may read (and `write`) it.

    Raises ConfigError (exit 2) with one line naming the table, the role and the GRANT it needs.
    """
    state = inspect(conn, table)
    check_shape(state, table)
    check_access(state, table, conn, write=write)
    return state


def check_shape(state: TableState, table: HistoryTable) -> None:
    """A relation with the history table's name that is not one (another tool's, a view...): refuse to touch it.

    Extra columns are tolerated (a later version may add some); every column the job reads and writes must exist.
    """
    if not state.exists:
        return
    missing = [c for c in COLUMNS if c not in state.columns]
    if state.relkind in ("r", "p") and not missing:
        return
    kind = "" if state.relkind in ("r", "p") else f"; it is a {_RELKINDS.get(state.relkind or '', 'relation')}"
    partial = state.relkind in ("r", "p") and len(missing) < len(COLUMNS)
    lacking = f"; missing: {', '.join(missing)}" if partial else ""
    raise ConfigError(
        f"{table.qualified} exists but is not a migrate-job history table (columns: "
        f"{', '.join(state.columns) or 'none'}{lacking}{kind}); set MIGRATE_HISTORY_TABLE "
        "(or MIGRATE_HISTORY_SCHEMA) to another name",
        setting="MIGRATE_HISTORY_TABLE",
        table=table.qualified,
        columns=list(state.columns),
    )


_RELKINDS = {"v": "view", "m": "materialized view", "S": "sequence", "f": "foreign table", "i": "index"}


def check_access(state: TableState, table: HistoryTable, conn: Connection, *, write: bool) -> None:
    """The privileges the job needs on the history table (and to create it), as a GRANT the role lacks."""
    role, schema = _ident(state.role, conn), _ident(table.schema, conn)
    qualified = f"{schema}.{_ident(table.table, conn)}"

    def refuse(problem: str, grant: str) -> ConfigError:
        return ConfigError(
            f"role {state.role} {problem}; {grant}",
            setting="MIGRATE_HISTORY_TABLE",
            table=table.qualified,
            role=state.role,
        )

    if state.exists:
        if not state.schema_usage:
            raise refuse(
                f"may not use schema {table.schema} of the history table {table.qualified} (permission denied)",
                f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            )
        needed = WRITE_PRIVILEGES if write else READ_PRIVILEGES
        lacking = [p for p in needed if p not in state.privileges]
        if lacking:
            raise refuse(
                f"lacks {', '.join(lacking)} on the history table {table.qualified} (permission denied)",
                f"GRANT {', '.join(needed)} ON {qualified} TO {role}",
            )
        return
    if not write:
        return  # nothing to read yet; a read-only command shows every migration pending
    if not state.schema_exists:
        if not state.database_create:
            raise refuse(
                f"may not create the schema {table.schema} of the history table (permission denied for database "
                f"{state.database})",
                f"GRANT CREATE ON DATABASE {_ident(state.database, conn)} TO {role}, "
                "or create the schema, or set MIGRATE_HISTORY_SCHEMA",
            )
        return
    if not (state.schema_usage and state.schema_create):
        raise refuse(
            f"may not create the history table {table.qualified} (permission denied for schema {table.schema})",
            f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}, or set MIGRATE_HISTORY_SCHEMA to a schema it may "
            "create tables in",
        )


_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


def _ident(name: str, conn: Connection) -> str:
    """`name` as it would be typed in a GRANT: bare when it is a plain lower-case identifier."""
    return name if _PLAIN.match(name) else sql.Identifier(name).as_string(conn)


def ensure(conn: Connection, table: HistoryTable) -> None:
    """Create the schema, the history table and its audit table where missing. Call under the advisory lock.

    Nothing is created when they exist: CREATE TABLE IF NOT EXISTS would still need CREATE on the schema,
    which a role with only the tables' privileges does not have. The audit table needs INSERT and SELECT.
    """
    state = preflight(conn, table, write=True)
    log = inspect(conn, HistoryTable(table.schema, table.log_table))
    if state.exists and log.exists:
        lacking = [p for p in ("SELECT", "INSERT") if p not in log.privileges]
        if lacking:
            role = _ident(log.role, conn)
            raise ConfigError(
                f"role {log.role} lacks {', '.join(lacking)} on the audit table {table.log_qualified} (permission "
                f"denied); GRANT SELECT, INSERT ON {_ident(table.schema, conn)}.{_ident(table.log_table, conn)} "
                f"TO {role}",
                setting="MIGRATE_HISTORY_TABLE",
                table=table.log_qualified,
                role=log.role,
            )
        return
    if state.exists:  # an older migrate-job made the history table: the audit table is new
        check_access(log, HistoryTable(table.schema, table.log_table), conn, write=True)
    _forget(conn)  # what is created below changes what the next look sees
    if not state.schema_exists:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    if not state.exists:
        conn.execute(table.create_sql())
    if not log.exists:
        conn.execute(table.log_create_sql())


def log_exists(conn: Connection, table: HistoryTable) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_regclass(table.schema, table.log_table),)).fetchone()
    return bool(row and row[0])


def taken_back(conn: Connection, table: HistoryTable, versions: list[str]) -> frozenset[str]:
    """Of `versions` (pending now), those whose last audit event is `rolled_back`: applied, then taken back."""
    if not versions or not log_exists(conn, table):
        return frozenset()
    rows = conn.execute(
        sql.SQL(
            "SELECT DISTINCT ON (version) version, event FROM {t} WHERE version = ANY(%s) ORDER BY version, id DESC"
        ).format(t=table.log_ident),
        (versions,),
    ).fetchall()
    return frozenset(str(version) for version, event in rows if event == "rolled_back")


_USER_RELATIONS = sql.SQL(
    "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {where} "
    "AND NOT (n.nspname = {schema} AND c.relname IN ({table}, {log})) "
    # an extension's objects, and what belongs to a table (its owned sequences, its partitions) count as the
    # extension or the table
    "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass "
    "AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i')) "
    # another migrate-job history or audit table (another tenant's or migration set's): not the app's schema
    "AND (SELECT count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped "
    "AND a.attname IN ('version', 'checksum', 'status', 'source', 'run_id')) < 5 "
    "AND (SELECT count(*) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped "
    "AND a.attname IN ('event', 'detail', 'run_id', 'at')) < 4 "
    "ORDER BY n.nspname, c.relname LIMIT {limit}"
)
_ANY_USER_SCHEMA = sql.SQL(
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
    "AND n.nspname NOT LIKE 'pg\\_temp%'"
)


def user_relations(conn: Connection, table: HistoryTable, *, history_schema_only: bool, limit: int) -> list[str]:
    """Up to `limit` names of the application's own relations (tables, views, sequences...): none of
    migrate-job's history and audit tables, no extension's. In the history schema only, or in any schema."""
    where = sql.SQL("n.nspname = {}").format(sql.Literal(table.schema)) if history_schema_only else _ANY_USER_SCHEMA
    query = _USER_RELATIONS.format(
        where=where,
        schema=sql.Literal(table.schema),
        table=sql.Literal(table.table),
        log=sql.Literal(table.log_table),
        limit=sql.Literal(limit),
    )
    return [str(r[0]) for r in conn.execute(query).fetchall()]


def ever_written(conn: Connection, table: HistoryTable) -> bool:
    """Whether migrate-job has recorded anything in this database: a history row or an audit event.

    A database where this is false is a first run: the only time another tool's table is adopted.
    """
    if not exists(conn, table):
        return False
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {t})").format(t=table.ident)).fetchone()
    if row and row[0]:
        return True
    if not log_exists(conn, table):
        return False
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {t})").format(t=table.log_ident)).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Event:
    """One row of the audit table."""

    id: int
    at: datetime
    event: str
    version: str | None
    name: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    applied_by: str | None = None
    run_id: str | None = None


def load_log(conn: Connection, table: HistoryTable) -> list[Event]:
    """Every audit event, oldest first; [] when the audit table does not exist yet."""
    if not log_exists(conn, table):
        return []
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        sql.SQL("SELECT id, at, event, version, name, detail, applied_by, run_id FROM {t} ORDER BY id").format(
            t=table.log_ident
        )
    ).fetchall()
    return [Event(**r) for r in rows]


def event_sql(
    table: HistoryTable,
    event: str,
    *,
    version: str | None = None,
    name: str | None = None,
    detail: dict[str, Any] | None = None,
    by: str | None = None,
    run_id: str | None = None,
) -> str:
    """Literal INSERT of one audit event (to send in the same transaction as the change it records)."""
    values = {
        "event": event,
        "version": version,
        "name": name,
        "detail": sql.SQL("{}::jsonb").format(sql.Literal(json.dumps(detail or {}, default=str, sort_keys=True))),
        "applied_by": by,
        "run_id": run_id,
    }
    cols, vals = _values(values)
    return (
        sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals})")
        .format(t=table.log_ident, cols=cols, vals=vals)
        .as_string(None)
    )


def record_event(conn: Connection, table: HistoryTable, event: str, **fields: Any) -> None:
    """Write one audit event now (autocommit, or inside the caller's transaction)."""
    conn.execute(event_sql(table, event, **fields))


_ROW_DETAIL = sql.SQL(
    "jsonb_strip_nulls(jsonb_build_object('checksum', r.checksum, 'kind', r.kind, 'batch', r.batch,"
    " 'execution_ms', r.execution_ms, 'source', r.source, 'applied_at', r.applied_at, 'applied_by', r.applied_by,"
    " 'statements_done', r.statements_done, 'error', r.error))"
)


def _log_from_rows(
    table: HistoryTable, event: str, by: sql.Composable, run_id: sql.Composable, extra: dict[str, Any] | None = None
) -> sql.Composed:
    """`INSERT INTO log SELECT … FROM r`: one event per row of the CTE `r` (a history row just written/deleted)."""
    detail: sql.Composable = _ROW_DETAIL
    if extra:
        detail = sql.SQL("{} || {}::jsonb").format(_ROW_DETAIL, sql.Literal(json.dumps(extra, default=str)))
    return sql.SQL(
        "INSERT INTO {log} (event, version, name, detail, applied_by, run_id) SELECT {e}, r.version, r.name, {d}, {by},"
        " {run} FROM r"
    ).format(log=table.log_ident, e=sql.Literal(event), d=detail, by=by, run=run_id)


def load(conn: Connection, table: HistoryTable) -> list[Applied]:
    """Every row of the history table; [] when the table does not exist yet.

    Raises ConfigError when a relation of that name is not a history table or the role may not read it.
    """
    if not preflight(conn, table).exists:
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


def _with_event(write: sql.Composable, log: sql.Composable, returning: sql.Composable | None) -> str:
    """`write` (an INSERT/DELETE of history rows) and the audit `log` insert over its rows, as one statement."""
    if returning is None:
        return sql.SQL("WITH r AS ({w} RETURNING *) {log}").format(w=write, log=log).as_string(None)
    query = sql.SQL("WITH r AS ({w} RETURNING *), e AS ({log}) SELECT {ret} FROM r")
    return query.format(w=write, log=log, ret=returning).as_string(None)


def applied_row_sql(
    table: HistoryTable,
    row: dict[str, Any],
    *,
    elapsed: sql.Composable = ELAPSED_MS,
    returning: sql.Composable | None = None,
) -> str:
    """INSERT (or overwrite a previous row of the same version) as literal SQL for the one-message apply.

    `execution_ms` is measured by the server: by default from the transaction's start to this statement.
    One statement that also writes the `applied` audit event (a CTE), so the script's result count is unchanged;
    with `returning`, that statement's one result row is that expression of the written row.
    """
    # clock_timestamp(), not now(): pipelined migrations share one message, whose start now() would be for all
    values = {**row, "status": "applied", "applied_at": sql.SQL("clock_timestamp()"), "execution_ms": elapsed}
    insert = sql.SQL(_insert_sql(table, values, overwrite=True))
    log = _log_from_rows(table, "applied", sql.Literal(row.get("applied_by")), sql.Literal(row.get("run_id")))
    return _with_event(insert, log, returning)


def delete_row_sql(
    table: HistoryTable,
    version: str,
    *,
    event: str | None = "rolled_back",
    by: str | None = None,
    run_id: str | None = None,
    detail: dict[str, Any] | None = None,
    returning: sql.Composable | None = None,
) -> str:
    """DELETE of one history row; with `event`, the same statement writes that audit event (who, the old row).

    With `returning`, the statement's result row is that expression (for the deleted row).
    """
    delete = sql.SQL("DELETE FROM {t} WHERE version = {v}").format(t=table.ident, v=sql.Literal(version))
    if event is None:
        if returning is None:
            return delete.as_string(None)
        return sql.SQL("{d} RETURNING {ret}").format(d=delete, ret=returning).as_string(None)
    log = _log_from_rows(table, event, sql.Literal(by), sql.Literal(run_id), detail)
    return _with_event(delete, log, returning)


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


def _logged_update(table: HistoryTable, event: str, assignments: sql.Composable) -> sql.Composed:
    """UPDATE of one row (parameters: the assignments', then the version) that also logs `event` for it."""
    update = sql.SQL("UPDATE {t} SET {a} WHERE version = %s RETURNING *").format(t=table.ident, a=assignments)
    log = _log_from_rows(table, event, sql.SQL("r.applied_by"), sql.SQL("r.run_id"))
    return sql.SQL("WITH r AS ({u}) {log}").format(u=update, log=log)


def record_finished(conn: Connection, table: HistoryTable, version: str, done: int, elapsed_ms: int) -> None:
    conn.execute(
        _logged_update(
            table,
            "applied",
            sql.SQL("status = 'applied', statements_done = %s, execution_ms = %s, error = NULL, applied_at = now()"),
        ),
        (done, elapsed_ms, version),
    )


def record_failed(conn: Connection, table: HistoryTable, version: str, done: int, error: str) -> None:
    conn.execute(
        _logged_update(table, "failed", sql.SQL("status = 'failed', statements_done = %s, error = %s")),
        (done, error[:2000], version),
    )


def delete(
    conn: Connection,
    table: HistoryTable,
    version: str,
    *,
    event: str | None = "rolled_back",
    by: str | None = None,
    run_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Delete one row; with `event` (default `rolled_back`) log it with who did it (see delete_row_sql)."""
    conn.execute(delete_row_sql(table, version, event=event, by=by, run_id=run_id, detail=detail))


def set_checksum(
    conn: Connection, table: HistoryTable, version: str, checksum: str, *, by: str, run_id: str, old: str | None
) -> None:
    """Store a new checksum for an applied version and log `checksum_accepted` (who, when, old and new)."""
    update = sql.SQL("UPDATE {t} SET checksum = {c} WHERE version = {v} RETURNING *").format(
        t=table.ident, c=sql.Literal(checksum), v=sql.Literal(version)
    )
    log = _log_from_rows(table, "checksum_accepted", sql.Literal(by), sql.Literal(run_id), {"old_checksum": old})
    with conn.transaction():
        conn.execute(sql.SQL("WITH r AS ({u}) {log}").format(u=update, log=log))


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


def insert_rows(
    conn: Connection, table: HistoryTable, rows: list[Applied], run_id: str, events: list[str] | None = None
) -> None:
    """Write adopted/baselined rows, and the audit events that record them (`event_sql`), in one transaction
    and one message."""
    statements = [insert_row_sql(table, a, run_id) for a in rows] + list(events or [])
    if statements:
        with conn.transaction():
            conn.execute(";\n".join(statements))


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
