"""Database failures outside a migration body, mapped to one line and a documented exit code.

A migration's own SQL failing is `MigrationFailed` (raised by `apply`). Anything else psycopg raises — the
job's own queries on the history table, the lock, the catalogs — ends here instead of as `run.crashed`.
Matched by psycopg error class (SQLSTATE), never by message text.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pgerrors

from job.errors import ConfigError, DatabaseUnreachable, JobError, ReadOnlyTarget, UnexpectedDatabaseError

_LOST = (pgerrors.AdminShutdown, pgerrors.CrashShutdown, pgerrors.CannotConnectNow, psycopg.InterfaceError)
_MISSING = (pgerrors.UndefinedTable, pgerrors.UndefinedColumn, pgerrors.UndefinedFunction, pgerrors.InvalidSchemaName)


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or "no message"


def _code(exc: psycopg.Error) -> str:
    return f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""


def as_job_error(exc: psycopg.Error, target: dict[str, Any] | None = None) -> JobError:
    """The JobError (message, exit code) for a database failure outside a migration body."""
    fields: dict[str, Any] = {**(target or {}), "sqlstate": exc.sqlstate}
    text, code = _text(exc), _code(exc)
    user = (target or {}).get("user")
    role = f" (role {user})" if user else ""
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
        return ReadOnlyTarget(
            f"the target database is read-only: {text}{code}; point the job at the writer (primary) endpoint",
            **fields,
        )
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return ConfigError(
            f"permission denied for one of the job's own statements{role}: {text}{code}; GRANT the role the "
            "privilege named, or run the job as the owner of the schema",
            **fields,
        )
    if isinstance(exc, _MISSING):
        return ConfigError(
            f"a database object the job relies on is missing: {text}{code}; check MIGRATE_HISTORY_SCHEMA / "
            "MIGRATE_HISTORY_TABLE, and that nothing drops the history table while the job runs",
            **fields,
        )
    if isinstance(exc, pgerrors.QueryCanceled | pgerrors.LockNotAvailable):
        return DatabaseUnreachable(
            f"the server cancelled one of the job's own statements: {text}{code} (a statement_timeout or "
            "lock_timeout set on the role or database, or an administrator); nothing more was changed",
            **fields,
        )
    if isinstance(exc, _LOST) or (exc.sqlstate or "").startswith("08"):
        return DatabaseUnreachable(f"the connection to the database was lost: {text}{code}", **fields)
    if (exc.sqlstate or "")[:2] in ("53", "58"):
        return DatabaseUnreachable(
            f"the database server is out of resources or failing: {text}{code}; retry once it has disk, memory "
            "or connections to spare",
            **fields,
        )
    if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return DatabaseUnreachable(f"the connection to the database failed: {text}", **fields)
    return UnexpectedDatabaseError(f"database error outside a migration: {text}{code}", **fields)
