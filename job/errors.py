"""Errors the job understands, each carrying its exit code and structured fields.

An error is raised once, where it is understood; `job.cli` is the only place that turns it into a
log line and an exit code.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes; documented in README.md and `migrate-job --help`."""

    OK = 0
    MIGRATION_FAILED = 1
    CONFIG = 2
    LOCK_TIMEOUT = 3
    VALIDATION = 4
    DB_UNREACHABLE = 5
    BACKUP_FAILED = 6
    PRODUCTION_REFUSED = 7
    TARGETS_FAILED = 8
    READ_ONLY = 9
    CALLBACK_FAILED = 10
    SIGINT = 130
    SIGTERM = 143


EXIT_CODE_HELP = """\
exit codes:
  0    success, or nothing to do
  1    a migration failed (its transaction was rolled back; earlier ones stay applied);
       also an unexpected database error outside a migration
  2    usage or configuration error (also: the history table has another shape, or the role
       lacks a privilege on it: the message names the GRANT; diff/dump: no pg_dump as new as the server)
  3    the advisory lock was not acquired in time (another runner holds it)
  4    validation failed (bad migration files, a created migration still empty, edited/removed
       applied files, failed entries, out-of-order versions); nothing was applied.
       rollback --name: no or several migrations match. wait-for-version: version not reached
       in time. lint: an error-level finding. diff: the live schema differs from MIGRATE_SCHEMA_FILE.
       validate --offline (and migrate on production): files differ from migrate-job.sum
  5    database unreachable (retried for MIGRATE_CONNECT_TIMEOUT), a connection that can never
       succeed (password, pg_hba.conf, role, a bad option, TLS the server lacks: not retried),
       the connection was lost, or the server failed the job's own statement (resources, timeout)
  6    backup/snapshot failed
  7    production guard refused
  8    fleet: some targets failed (the report names each one and why); the others succeeded
  9    the target is read-only (a hot standby / replica, or default_transaction_read_only=on):
       point the job at the writer (primary) endpoint
  10   a callback failed (beforeMigrate, afterMigrate, ...; see the message for what was applied)
  130  interrupted by SIGINT      143  terminated by SIGTERM"""


class JobError(Exception):
    """Base class: a message for humans plus fields for structured logs."""

    exit_code: ExitCode = ExitCode.MIGRATION_FAILED
    event: str = "run.failed"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class ConfigError(JobError):
    """A setting is missing or invalid (exit 2)."""

    exit_code = ExitCode.CONFIG
    event = "config.invalid"


class LockTimeout(JobError):
    """Another runner held the advisory lock for longer than the wait timeout (exit 3)."""

    exit_code = ExitCode.LOCK_TIMEOUT
    event = "lock.timeout"


class ValidationFailed(JobError):
    """Files or history are inconsistent; nothing was applied (exit 4)."""

    exit_code = ExitCode.VALIDATION
    event = "validate.failed"

    def __init__(self, message: str, problems: list[str] | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.problems = problems or []


class SourceError(ValidationFailed):
    """A migration file cannot be read or understood (exit 4)."""

    event = "source.invalid"


class NotReady(JobError):
    """`wait-for-version`: the history did not reach the version in time (exit 4)."""

    exit_code = ExitCode.VALIDATION
    event = "schema.not_ready"


class DatabaseUnreachable(JobError):
    """Could not connect, or the connection was lost mid-run (exit 5)."""

    exit_code = ExitCode.DB_UNREACHABLE
    event = "db.unreachable"


class BackupFailed(JobError):
    """The pre-migration backup or snapshot failed (exit 6)."""

    exit_code = ExitCode.BACKUP_FAILED
    event = "backup.failed"


class ProductionRefused(JobError):
    """The production guard refused to change a production database (exit 7)."""

    exit_code = ExitCode.PRODUCTION_REFUSED
    event = "guard.refused"


class ReadOnlyTarget(JobError):
    """The target database only accepts reads: a hot standby, a reader endpoint, a failover in progress (exit 9)."""

    exit_code = ExitCode.READ_ONLY
    event = "db.read_only"


class UnexpectedDatabaseError(JobError):
    """A database error outside a migration body that no other class describes (exit 1)."""

    exit_code = ExitCode.MIGRATION_FAILED
    event = "db.error"


class TargetsFailed(JobError):
    """A fleet run where some targets failed and the others succeeded (exit 8)."""

    exit_code = ExitCode.TARGETS_FAILED
    event = "fleet.failed"


class CallbackFailed(JobError):
    """A callback's SQL failed (exit 10). beforeMigrate: nothing applied; each-migrate: that migration rolled
    back, earlier ones applied; afterMigrate: every migration applied, the callback's work rolled back."""

    exit_code = ExitCode.CALLBACK_FAILED
    event = "callback.failed"


class MigrationFailed(JobError):
    """A migration's SQL failed; its transaction was rolled back (exit 1).

    Fields: version, file, line, column, sqlstate, detail, hint, statement index.
    """

    exit_code = ExitCode.MIGRATION_FAILED
    event = "migration.failed"


class Interrupted(KeyboardInterrupt):
    """Raised from the signal handler on SIGTERM/SIGINT.

    A KeyboardInterrupt subclass on purpose: psycopg cancels the running query on the server
    when its wait is interrupted by a KeyboardInterrupt.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> ExitCode:
        import signal

        return ExitCode.SIGTERM if self.signum == signal.SIGTERM else ExitCode.SIGINT
