"""Execute a plan on the session that holds the advisory lock.

Transactional migrations: each is one transaction with its history row,
    BEGIN; RESET …; SELECT set_config('lock_timeout', …, true), …; <statements>; <lock check>; INSERT history
    row; COMMIT;
and consecutive ones are pipelined: sent together in one message (one network round trip), each
committed and reported as its COMMIT's result arrives (job/script.py builds the text and attributes
results). A file's own BEGIN/COMMIT are dropped (its body joins our transaction). A lock timeout (55P03)
rolls that migration back; it is retried with exponential backoff and full jitter, and the pipeline goes
on from it.

Non-transactional migration (CONCURRENTLY, VACUUM, ...): statement by statement in autocommit,
recording `running` first, progress after each statement, then `applied` — or `failed` with the
statement index and error, which the next run reports and `repair` resolves.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from job import cancel, history
from job.callbacks import Callback, Callbacks
from job.config import Settings, parse_duration
from job.db import Connection, is_connection_lost, stream_script
from job.errors import CallbackFailed, DatabaseUnreachable, Interrupted, MigrationFailed
from job.history import HistoryTable
from job.lock import LOST_LOCK_SQLSTATE
from job.report import Log
from job.script import (
    FLUSH_NOTICE,
    SINCE_MARK_MS,
    Block,
    Script,
    Session,
    Setting,
    build,
    callback_script,
    chunks,
    session_sql,
)
from job.source import Migration, Section
from job.sqlscan import Statement
from job.statements import section_transactional, statements_for


def _ms(directive: str | None, setting_ms: int) -> int:
    return setting_ms if directive is None else round(parse_duration(directive) * 1000)


def timeouts_ms(m: Migration, settings: Settings) -> tuple[int, int]:
    """(lock_timeout, statement_timeout) in ms for this file: directive > setting. 0 = none."""
    return (
        _ms(m.directives.lock_timeout, settings.lock_timeout_ms),
        _ms(m.directives.statement_timeout, settings.statement_timeout_ms),
    )


# ---------------------------------------------------------------------------- running

ORPHAN_CHECK_MS = 2000  # client_connection_check_interval (PG 14+): a killed runner's statement stops this fast
PIPELINE_MAX_BYTES = 8 * 1024 * 1024  # one pipelined message holds at most this much SQL ...
PIPELINE_MAX_COUNT = 1000  # ... and at most this many migrations


def session_for(server_version: int, lock_check: str | None) -> Session:
    """The job's own settings, re-applied before every migration, for a server of this version."""
    if server_version >= 140000:
        return Session((("client_connection_check_interval", str(ORPHAN_CHECK_MS)),), lock_check)
    return Session((), lock_check)


def history_block(
    m: Migration,
    sec: Section,
    settings: Settings,
    table: HistoryTable,
    row: dict[str, Any],
    *,
    down: bool,
    single: bool,
    callbacks: Callbacks | None = None,
    templates: HistoryTemplates | None = None,
) -> Block:
    """The Block of one transactional migration (or down): statements, timeouts, history write with RETURNING,
    and (applying) the beforeEachMigrate / afterEachMigrate callbacks in the same transaction."""
    stmts = statements_for(m, sec, transactional=True)
    lock_ms, stmt_ms = timeouts_ms(m, settings)
    tail = (templates or HistoryTemplates(table, row)).sql(row, down=down)
    around = {"before": (), "after": ()} if down or not callbacks else _around(callbacks)
    return Block(stmts, lock_ms, stmt_ms, tail, (activity_name(settings, m),), **around)


class HistoryTemplates:
    """The history statements of a run, composed once: per migration only its own literals are put in.

    Composing the INSERT (with its audit CTE) with psycopg.sql costs ~0.2 ms; a pipeline of hundreds of
    migrations would spend most of its client CPU there. The template holds sentinel literals for the values
    that differ between migrations (version, name, checksum) and takes the run's constants (who, batch, run)
    from the first row.
    """

    _FIELDS = ("version", "name", "checksum")

    def __init__(self, table: HistoryTable, row: dict[str, Any]) -> None:
        self.table = table
        self.row = row
        self._cache: dict[bool, list[str | int]] = {}

    @staticmethod
    def _sentinel(field: str) -> str:
        return f"migrate_job_sentinel_{field}_7f3a9c"

    def _template(self, down: bool) -> list[str | int]:
        """The statement as text chunks and field numbers (index into _FIELDS), split once per direction."""
        if down not in self._cache:
            row = {**self.row, **{f: self._sentinel(f) for f in self._FIELDS}}
            if down:
                text = history.delete_row_sql(
                    self.table,
                    row["version"],
                    by=row.get("applied_by"),
                    run_id=row.get("run_id"),
                    returning=sql.SQL(SINCE_MARK_MS),
                )
            else:
                text = history.applied_row_sql(
                    self.table, row, elapsed=sql.SQL(SINCE_MARK_MS), returning=sql.SQL("execution_ms")
                )
            quoted = {sql.Literal(self._sentinel(f)).as_string(None): i for i, f in enumerate(self._FIELDS)}
            pattern = re.compile("|".join(re.escape(k) for k in quoted))
            chunks: list[str | int] = []
            last = 0
            for found in pattern.finditer(text):
                chunks += [text[last : found.start()], quoted[found.group(0)]]
                last = found.end()
            chunks.append(text[last:])
            self._cache[down] = chunks
        return self._cache[down]

    def sql(self, row: dict[str, Any], *, down: bool) -> str:
        """The statement for `row`: its literals put between the template's chunks (values are never rescanned)."""
        literals = [sql.Literal(row.get(f)).as_string(None) for f in self._FIELDS]
        return "".join(c if isinstance(c, str) else literals[c] for c in self._template(down))


def _around(callbacks: Callbacks) -> dict[str, Any]:
    return {
        "before": [(cb, cb.statements) for cb in callbacks.of("beforeEachMigrate")],
        "after": [(cb, cb.statements) for cb in callbacks.of("afterEachMigrate")],
    }


def activity_name(settings: Settings, m: Migration) -> Setting:
    """application_name `<prefix>:migrate <version>`: pg_stat_activity shows which migration runs."""
    return ("application_name", f"{settings.application_name}:migrate {m.key}"[:63])


def preview(
    m: Migration, settings: Settings, table: HistoryTable, lock_check: str | None, *, batch: int = 1, run_id: str = ""
) -> str:
    """The SQL `migrate` sends for `m` (dry run): its transaction, or its prelude and statements. The history row
    is the one `migrate` writes, with this `batch` and `run_id` (the dry run's own id; a real run has its own)."""
    session = session_for(140000, lock_check)
    lock_ms, stmt_ms = timeouts_ms(m, settings)
    if not m.transactional:
        stmts = statements_for(m)
        prelude = session_sql(session, lock_ms, stmt_ms, (activity_name(settings, m),))
        return prelude + "\n" + "".join(s.terminated + "\n" for s in stmts)
    row = history_row(m, "transactional", settings, batch, run_id)
    return build([history_block(m, m.up, settings, table, row, down=False, single=False)], session).text + "\n"


def history_row(m: Migration, kind: str, settings: Settings, batch: int, run_id: str) -> dict[str, Any]:
    """The values of `m`'s history row, as migrate writes it."""
    return {
        "version": m.key,
        "name": m.name,
        "checksum": m.checksum,
        "kind": kind,
        "applied_by": settings.applied_by,
        "batch": batch,
        "source": "migrate-job",
        "run_id": run_id,
    }


@dataclass
class Outcome:
    """One migration this run applied (or rolled back): its server-measured duration and attempts."""

    migration: Migration
    elapsed_ms: int
    attempts: int = 1


@dataclass
class Runner:
    """Applies (or rolls back) migrations on the session that holds the advisory lock.

    Consecutive transactional migrations go out as pipelined messages (MIGRATE_PIPELINE, default on), each
    migration still its own transaction with its history row; every COMMIT is reported the moment its result
    arrives. Non-transactional migrations run statement by statement with their progress recorded.
    """

    conn: Connection
    settings: Settings
    table: HistoryTable
    log: Log
    run_id: str
    batch: int
    lock_check_sql: str | None = None
    blockers: Callable[[int], list[dict[str, Any]]] | None = None
    callbacks: Callbacks | None = None
    applied: list[Outcome] = field(default_factory=list)
    session: Session = field(init=False)
    _templates: HistoryTemplates | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.session = session_for(self.conn.info.server_version, self.lock_check_sql)

    def row(self, m: Migration, kind: str) -> dict[str, Any]:
        return history_row(m, kind, self.settings, self.batch, self.run_id)

    def apply_all(self, pending: tuple[Migration, ...] | list[Migration]) -> list[Outcome]:
        self._run(list(pending), down=False)
        return self.applied

    def rollback_all(self, chosen: list[Migration]) -> list[Outcome]:
        """Run the down sections, newest first, each with the removal of its history row."""
        self._run(chosen, down=True)
        return self.applied

    def apply_tx(self, m: Migration, *, down: bool = False) -> Outcome:
        """One transactional migration (or down) in one message with its history write."""
        self._send([m], down=down, single=False)
        return self.applied[-1]

    def apply_single_tx(self, pending: tuple[Migration, ...] | list[Migration]) -> list[Outcome]:
        """Every pending migration in ONE transaction and ONE message: all or nothing (--single-transaction)."""
        if pending:
            self._send(list(pending), down=False, single=True)
        return self.applied

    # -- transactional -----------------------------------------------------------------

    def _run(self, migrations: list[Migration], *, down: bool) -> None:
        """Runs of consecutive transactional migrations are pipelined; the others go statement by statement."""
        group: list[Migration] = []
        for m in migrations:
            sec = _section(m, down)
            if section_transactional(m, sec):
                group.append(m)
                continue
            self._pipeline(group, down=down)
            group = []
            self.apply_nontx(m, down=down)
        self._pipeline(group, down=down)

    def _pipeline(self, group: list[Migration], *, down: bool) -> None:
        if not group:
            return
        if not self.settings.pipeline:
            runs = [(i, i + 1) for i in range(len(group))]
        else:
            sizes = [len(_section(m, down).text) for m in group]
            runs = chunks(sizes, max_bytes=PIPELINE_MAX_BYTES, max_count=PIPELINE_MAX_COUNT)
        for start, end in runs:
            self._send(group[start:end], down=down, single=False)

    def _block(self, m: Migration, *, down: bool, single: bool) -> Block:
        row = self.row(m, "transactional")
        if self._templates is None:
            self._templates = HistoryTemplates(self.table, row)
        return history_block(
            m,
            _section(m, down),
            self.settings,
            self.table,
            row,
            down=down,
            single=single,
            callbacks=self.callbacks,
            templates=self._templates,
        )

    def _send(self, migrations: list[Migration], *, down: bool, single: bool) -> None:
        """Send the migrations as one message (retrying from a migration that hit lock_timeout)."""
        blocks = [self._block(m, down=down, single=single) for m in migrations]
        attempts = [1] * len(migrations)
        first = 0
        while first < len(migrations):
            msg = _Message(self, migrations[first:], build(blocks[first:], self.session, single_transaction=single))
            msg.attempts, msg.down, msg.single = attempts[first:], down, single
            watcher = _BlockerWatcher(self, max(b.lock_ms for b in blocks[first:])) if self.blockers else None
            try:
                result = stream_script(self.conn, msg.script.text, msg.on_result, msg.on_notice)
            except Interrupted:
                self._rollback_quietly()
                self._read_back(msg)
                raise
            except psycopg.OperationalError as exc:
                raise self._lost(msg.first_undone(), exc) from None
            finally:
                if watcher:
                    watcher.stop()
            if result.error is None:
                return
            self._rollback_quietly()
            err = result.error
            position = int(err.diag.statement_position) if err.diag.statement_position else None
            index, stmt, offset, within = msg.script.attribute(result.completed, position)
            k = msg.script.pieces[index].mig
            failing = msg.batch[k]
            retry = first + (0 if single else k)
            if isinstance(err, pgerrors.LockNotAvailable) and attempts[retry] <= self.settings.lock_retries:
                delay = random.uniform(0, min(30.0, 0.5 * 2 ** (attempts[retry] - 1)))
                self.log.warning(
                    "migration.lock_timeout",
                    version=failing.key,
                    file=failing.filename,
                    attempt=attempts[retry],
                    retries=self.settings.lock_retries,
                    lock_timeout_ms=blocks[first + k].lock_ms,
                    retry_in_s=round(delay, 2),
                    blockers=watcher.found if watcher else [],
                )
                cancel.sleep(delay)
                attempts[retry] += 1
                first = retry
                continue
            piece = msg.script.pieces[index]
            if piece.role == "callback" and isinstance(piece.origin, Callback):
                raise _callback_error(piece.origin, stmt, offset, err, migration=failing)
            if err.sqlstate == LOST_LOCK_SQLSTATE and piece.role == "check":
                raise DatabaseUnreachable(
                    f"{failing.path}: lost the advisory lock while applying migration {failing.key} (something in it "
                    "released the session's advisory locks, e.g. pg_advisory_unlock_all()); it was rolled back; "
                    "remove that from the migration",
                    version=failing.key,
                    file=str(failing.path),
                )
            if is_connection_lost(err, self.conn):
                raise self._lost(failing, err) from None
            raise _failure_error(
                failing,
                _section(failing, down),
                stmt,
                within,
                offset,
                err,
                attempts=attempts[retry],
                lock_exhausted=isinstance(err, pgerrors.LockNotAvailable),
                job_step=_JOB_STEPS.get(msg.script.pieces[index].role),
            )

    def _committed(self, m: Migration, elapsed_ms: int, attempts: int, *, down: bool, single: bool) -> None:
        self.applied.append(Outcome(m, elapsed_ms, attempts))
        extra: dict[str, Any] = {"single_transaction": True} if single else {}
        self.log.info(
            "migration.rolled_back" if down else "migration.applied",
            version=m.key,
            name=m.name,
            file=_section(m, down).path.name,
            transactional=True,
            duration_ms=elapsed_ms,
            attempts=attempts,
            **extra,
        )

    def _read_back(self, msg: _Message) -> None:
        """After an interrupt: which migrations of the message committed although their result was not seen."""
        unseen = [(k, m) for k, m in enumerate(msg.batch) if k not in msg.done]
        if not unseen or self.conn.closed:
            return
        try:
            rows = {a.version: a for a in history.load(self.conn, self.table)}
        except psycopg.Error:
            return
        for k, m in unseen:
            row = rows.get(m.key)
            if msg.down:
                committed = row is None
            else:
                committed = row is not None and row.status == "applied" and row.batch == self.batch
            if committed:
                elapsed = row.execution_ms if row is not None and row.execution_ms is not None else 0
                self._committed(m, elapsed, msg.attempts[k], down=msg.down, single=msg.single)

    def _notice(self, m: Migration, diag: Any) -> None:
        """A NOTICE/WARNING/INFO a migration raised, as a log event tagged with its version."""
        if diag.message == FLUSH_NOTICE:
            return
        log = self.log.warning if diag.severity == "WARNING" else self.log.info
        log("migration.notice", version=m.key, file=m.filename, **diag.fields())

    def _rollback_quietly(self) -> None:
        try:
            if not self.conn.closed and self.conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            pass  # keep the original error primary

    def _lost(self, m: Migration, exc: BaseException, *, done: int | None = None) -> DatabaseUnreachable:
        """The connection died mid-migration. `done`: statements committed so far (non-transactional path)."""
        text = " ".join(str(exc).split())
        if done is None:
            outcome = "the migration was rolled back by the server; rerun to continue"
        else:
            outcome = (
                f"the non-transactional migration was interrupted after statement {done} (statements 1..{done} "
                "stay committed); its history entry is left unfinished: run `migrate-job repair` to resume"
            )
        return DatabaseUnreachable(
            f"connection lost while applying {m.filename}: {text}; {outcome}",
            version=m.key,
            file=str(m.path),
            statements_done=done,
        )

    # -- non-transactional -------------------------------------------------------------

    def apply_nontx(self, m: Migration, *, start_at: int = 0, down: bool = False) -> Outcome:
        """Statement by statement in autocommit, recording progress (up) so a failure names its statement."""
        sec = _section(m, down)
        stmts = statements_for(m, sec, transactional=False)
        lock_ms, stmt_ms = timeouts_ms(m, self.settings)
        row = self.row(m, "non_transactional")
        row["statements_done"] = start_at
        started = time.monotonic()
        try:
            prelude = session_sql(self.session, lock_ms, stmt_ms, (activity_name(self.settings, m),))
            self.conn.execute(prelude)
            if not down:
                history.record_started(self.conn, self.table, row)
        except psycopg.OperationalError as exc:
            raise self._lost(m, exc, done=start_at) from None
        done = start_at
        if not down and start_at == 0 and self.callbacks and self.callbacks.of("beforeEachMigrate"):
            self._each_around_nontx("beforeEachMigrate", m)
            self.conn.execute(prelude)  # the callback's transaction reset the session: the job's settings again

        def on_notice(_index: int, diag: Any) -> None:
            self._notice(m, diag)

        for index in range(start_at, len(stmts)):
            stmt = stmts[index]
            self._check_lock(m, done)
            try:
                result = stream_script(self.conn, stmt.text, None, on_notice)
            except Interrupted as exc:
                self._record_failed(m, done, f"interrupted by signal {exc.signum}")
                raise
            except psycopg.OperationalError as exc:
                raise self._lost(m, exc, done=done) from None
            if result.error is not None:
                err = result.error
                if is_connection_lost(err, self.conn):
                    raise self._lost(m, err, done=done) from None
                self._rollback_quietly()
                prefix = "rollback failed, partly rolled back: " if down else ""
                self._record_failed(m, done, f"{prefix}{err.sqlstate}: {_first_line(err)}")
                pos = int(err.diag.statement_position) - 1 if err.diag.statement_position else 0
                raise _failure_error(m, sec, stmt, index, pos, err, attempts=1, nontx=True)
            done = index + 1
            if not down and self.conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                with self._as_job():
                    history.record_progress(self.conn, self.table, m.key, done)
        if not down:
            try:
                self._each_around_nontx("afterEachMigrate", m)
            except CallbackFailed as exc:
                self._record_failed(m, done, exc.message)
                raise
        elapsed = round((time.monotonic() - started) * 1000)
        self._check_lock(m, done)
        with self._as_job():
            if down:
                history.delete(self.conn, self.table, m.key, by=self.settings.applied_by, run_id=self.run_id)
            else:
                history.record_finished(self.conn, self.table, m.key, done, elapsed)
        outcome = Outcome(m, elapsed)
        self.applied.append(outcome)
        self.log.info(
            "migration.rolled_back" if down else "migration.applied",
            version=m.key,
            name=m.name,
            file=sec.path.name,
            transactional=False,
            duration_ms=elapsed,
            attempts=1,
        )
        return outcome

    def _check_lock(self, m: Migration, done: int) -> None:
        """Between statements of a non-transactional migration: stop (exit 5) if the lock is gone."""
        if not self.lock_check_sql:
            return
        try:
            self.conn.execute(self.lock_check_sql)
        except psycopg.Error as exc:
            if exc.sqlstate != LOST_LOCK_SQLSTATE:
                if is_connection_lost(exc, self.conn):
                    raise self._lost(m, exc, done=done) from None
                raise
            self._record_failed(m, done, "lost the advisory lock")
            raise DatabaseUnreachable(
                f"{m.path}: lost the advisory lock while applying migration {m.key} after statement {done}; "
                "stopping (its history entry is left unfinished: run `migrate-job repair` to resume)",
                version=m.key,
                file=str(m.path),
                statements_done=done,
            ) from None

    @contextmanager
    def _as_job(self) -> Iterator[None]:
        """A short transaction for a history write between non-transactional statements: as the job's own role
        and timeouts, whatever the migration SET for its session (reverted at COMMIT: SET LOCAL)."""
        with self.conn.transaction():
            self.conn.execute(
                f"SET LOCAL ROLE NONE; SET LOCAL statement_timeout = 0; "
                f"SET LOCAL lock_timeout = {self.settings.lock_timeout_ms}"
            )
            yield

    # -- callbacks -----------------------------------------------------------------------

    def run_callbacks(self, event: str) -> None:
        """Run the beforeMigrate / afterMigrate / afterMigrateError callbacks, each in its own transaction
        (statement by statement when one of its statements cannot run in a transaction)."""
        for cb in self.callbacks.of(event) if self.callbacks else ():
            self.check_callback_lock(cb)
            started = time.monotonic()
            if cb.transactional:
                self._callback_tx(cb)
            else:
                self._callback_autocommit(cb)
            self.log.info(
                "callback.finished",
                callback=event,
                file=str(cb.path),
                duration_ms=round((time.monotonic() - started) * 1000),
            )

    def check_callback_lock(self, cb: Callback) -> None:
        if not self.lock_check_sql:
            return
        try:
            self.conn.execute(self.lock_check_sql)
        except psycopg.Error as exc:
            if is_connection_lost(exc, self.conn):
                raise DatabaseUnreachable(f"connection lost before the callback {cb.path.name}: {exc}") from None
            raise DatabaseUnreachable(f"lost the advisory lock before the callback {cb.path.name}") from None

    def _each_around_nontx(self, event: str, m: Migration) -> None:
        """beforeEachMigrate / afterEachMigrate around a non-transactional migration: their own transaction."""
        for cb in self.callbacks.of(event) if self.callbacks else ():
            try:
                self._callback_tx(cb, (activity_name(self.settings, m),))
            except CallbackFailed as exc:
                exc.fields["version"] = m.key
                raise

    def _callback_tx(self, cb: Callback, own: tuple[Setting, ...] = ()) -> None:
        script = callback_script(
            cb.statements, cb, self.session, self.settings.lock_timeout_ms, self.settings.statement_timeout_ms, own
        )

        def on_notice(_index: int, diag: Any) -> None:
            self._notice_of(cb.path.name, None, diag)

        try:
            result = stream_script(self.conn, script.text, None, on_notice)
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(f"connection lost in the callback {cb.path.name}: {exc}") from None
        except Interrupted:
            self._rollback_quietly()
            raise
        if result.error is not None:
            self._rollback_quietly()
            position = int(result.error.diag.statement_position) if result.error.diag.statement_position else None
            _index, stmt, offset, _within = script.attribute(result.completed, position)
            raise _callback_error(cb, stmt, offset, result.error)

    def _callback_autocommit(self, cb: Callback) -> None:
        self.conn.execute(session_sql(self.session, self.settings.lock_timeout_ms, self.settings.statement_timeout_ms))

        def on_notice(_index: int, diag: Any) -> None:
            self._notice_of(cb.path.name, None, diag)

        for stmt in cb.statements:
            try:
                result = stream_script(self.conn, stmt.text, None, on_notice)
            except psycopg.OperationalError as exc:
                raise DatabaseUnreachable(f"connection lost in the callback {cb.path.name}: {exc}") from None
            if result.error is not None:
                self._rollback_quietly()
                pos = int(result.error.diag.statement_position) - 1 if result.error.diag.statement_position else 0
                raise _callback_error(cb, stmt, pos, result.error)

    def _notice_of(self, file: str, version: str | None, diag: Any) -> None:
        if diag.message == FLUSH_NOTICE:
            return
        log = self.log.warning if diag.severity == "WARNING" else self.log.info
        log("migration.notice", version=version, file=file, **diag.fields())

    def _record_failed(self, m: Migration, done: int, error: str) -> None:
        try:
            self._rollback_quietly()
            with self._as_job():
                history.record_failed(self.conn, self.table, m.key, done, error)
        except psycopg.Error as exc:  # keep the original error primary
            self.log.error("history.write_failed", version=m.key, error=_first_line(exc))


@dataclass
class _Message:
    """One message in flight: which of its migrations committed so far, with their server-measured durations."""

    runner: Runner
    batch: list[Migration]
    script: Script
    attempts: list[int] = field(default_factory=list)
    down: bool = False
    single: bool = False
    done: set[int] = field(default_factory=set)
    elapsed: dict[int, int] = field(default_factory=dict)

    def on_result(self, index: int, res: Any) -> None:
        piece = self.script.pieces[index]
        if piece.role == "history" and res.ntuples:
            value = res.get_value(0, 0)
            self.elapsed[piece.mig] = int(value.decode()) if value is not None else 0
        for k in self.script.committed_by(index):
            self.done.add(k)
            self.runner._committed(
                self.batch[k], self.elapsed.get(k, 0), self.attempts[k], down=self.down, single=self.single
            )

    def on_notice(self, index: int, diag: Any) -> None:
        self.runner._notice(self.batch[self.script.pieces[index].mig], diag)

    def first_undone(self) -> Migration:
        return next((m for k, m in enumerate(self.batch) if k not in self.done), self.batch[-1])


def _section(m: Migration, down: bool) -> Section:
    if down:
        assert m.down is not None
        return m.down
    return m.up


_JOB_STEPS = {
    "history": "while writing its history row, after its own SQL ran",
    "check": "while checking the advisory lock",
    "job": "in the job's own setup of the migration's transaction",
    "commit": "at COMMIT (a deferred constraint or trigger failed)",
}


def _callback_error(
    cb: Callback, stmt: Statement | None, offset: int, err: pgerrors.Error, *, migration: Migration | None = None
) -> CallbackFailed:
    """A callback's failure with its file:line:column, SQLSTATE and what it means for the migrations."""
    line, col = cb.section.location(stmt.offset + offset) if stmt is not None else (1, 1)
    effect = {
        "beforeMigrate": "nothing was applied",
        "afterMigrate": "the migrations stay applied; the callback was rolled back",
        "afterMigrateError": "after the run had failed",
    }.get(cb.event, f"migration {migration.key} was rolled back" if migration else "")
    return CallbackFailed(
        f"{cb.path}:{line}:{col}: {cb.event} callback failed ({effect}): {err.sqlstate} {_first_line(err)}",
        callback=cb.event,
        file=str(cb.path),
        line=line,
        column=col,
        sqlstate=err.sqlstate,
        version=migration.key if migration else None,
        detail=err.diag.message_detail,
        hint=err.diag.message_hint,
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _failure_error(
    m: Migration,
    sec: Section,
    stmt: Statement | None,
    index: int,
    offset_in_stmt: int,
    err: pgerrors.Error,
    *,
    attempts: int,
    nontx: bool = False,
    lock_exhausted: bool = False,
    job_step: str | None = None,
) -> MigrationFailed:
    diag = err.diag
    if stmt is not None:
        line, col = sec.location(stmt.offset + offset_in_stmt)
    else:
        line, col = 1, 1
    what = (
        f"lock_timeout hit {attempts} time(s); gave up after MIGRATE_LOCK_RETRIES retries "
        "(a long transaction holds a conflicting lock)"
        if lock_exhausted
        else _first_line(err)
    )
    state = "recorded as failed" if nontx else "rolled back"
    if stmt is None and job_step:
        message = f"{sec.path}: migration {m.key} failed ({state}) {job_step}: {err.sqlstate} {what}"
    else:
        message = f"{sec.path}:{line}:{col}: migration {m.key} failed ({state}): {err.sqlstate} {what}"
    return MigrationFailed(
        message,
        version=m.key,
        file=str(sec.path),
        line=line,
        column=col,
        statement=index + 1,
        sqlstate=err.sqlstate,
        pg_message=_first_line(err),
        detail=diag.message_detail,
        hint=diag.message_hint,
        attempts=attempts,
    )


class _BlockerWatcher:
    """While a message runs, ask (on the side connection) who blocks our session, every lock_timeout/2.

    Fast scripts cost nothing (the first look is after half the lock_timeout); the last non-empty answer
    is logged with a lock-timeout retry.
    """

    def __init__(self, runner: Runner, lock_ms: int) -> None:
        self.found: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._runner = runner
        self._pid = runner.conn.info.backend_pid
        self._thread: threading.Thread | None = None
        if lock_ms > 0:
            self._thread = threading.Thread(target=self._run, args=(max(0.2, lock_ms / 2000),), daemon=True)
            self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval) and self._runner.blockers is not None:
            try:
                found = self._runner.blockers(self._pid)
            except Exception:  # best effort: never disturb the migration
                found = []
            if found:
                self.found = found

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
