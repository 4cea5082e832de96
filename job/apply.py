"""Execute a plan.

Transactional migration: one message = one network round trip:
    BEGIN; SET LOCAL lock_timeout …; <statements>; INSERT history row; COMMIT;
The history row commits atomically with the migration. A file's own BEGIN/COMMIT are dropped
(its body joins our transaction). A lock timeout (55P03) rolls back and is retried with
exponential backoff and full jitter.

Non-transactional migration (CONCURRENTLY, VACUUM, ...): statement by statement in autocommit,
recording `running` first, progress after each statement, then `applied` — or `failed` with the
statement index and error, which the next run reports and `repair` resolves.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from job import history
from job.config import Settings, parse_duration
from job.db import Connection, ScriptResult, is_connection_lost, run_script
from job.errors import DatabaseUnreachable, Interrupted, MigrationFailed, SourceError
from job.history import HistoryTable
from job.report import Log
from job.source import Migration, Section, transaction_reason
from job.sqlscan import Statement

_DROPPED_TX = {"begin", "start", "commit"}
_FORBIDDEN_TX = {"rollback", "prepare", "commit_prepared", "rollback_prepared"}


# ---------------------------------------------------------------------------- pure: scripts


def statements_for(
    m: Migration, section: Section | None = None, *, transactional: bool | None = None
) -> list[Statement]:
    """The statements to run for a section, checked for what the chosen mode cannot do.

    Raises SourceError (exit 4, before anything runs) for a syntax error, COPY FROM STDIN,
    ROLLBACK/PREPARE TRANSACTION in a file, a statement that releases the session's advisory locks,
    a non-transactional statement forced into a transaction, a statement that needs a transaction
    block in a migration that runs outside one, or BEGIN options that cannot be honoured. In a
    transaction, the file's own `BEGIN ISOLATION LEVEL …` becomes `SET TRANSACTION …`, its first statement.
    """
    sec = section or m.up
    tx = m.transactional if transactional is None else transactional
    out: list[Statement] = []
    in_block = False  # outside a transaction: inside the file's own BEGIN … COMMIT (run as written)

    def refuse(s: Statement, why: str) -> SourceError:
        line, _ = sec.location(s.offset)  # computed only on the error path (it scans the file)
        return SourceError(f"{sec.path}:{line}: {why}", file=str(sec.path), line=line)

    for index, s in enumerate(sec.statements):
        if s.copy_client:
            raise refuse(s, "COPY … FROM STDIN / TO STDOUT is a psql feature; use INSERT or a file on the server")
        if s.releases_locks:
            raise refuse(
                s,
                f"{s.releases_locks} releases every advisory lock of the session, including the lock migrate-job "
                "holds so that no second runner migrates at the same time; remove it from the migration",
            )
        if s.transaction_control in _FORBIDDEN_TX:
            raise refuse(s, f"{s.text.split()[0].upper()} in a migration file is not supported")
        if tx:
            if s.transaction_control in _DROPPED_TX:
                if s.transaction_modes:
                    out.insert(0, _set_transaction(s, index, refuse))
                continue
            if s.non_transactional:
                raise refuse(
                    s,
                    f"{sec.reason_of(s)}: this statement cannot run inside a transaction block, but the migration "
                    "is forced transactional (remove `-- migrate-job: transaction=on`)",
                )
        elif s.transaction_control in ("begin", "start"):
            in_block = True
        elif s.transaction_control in ("commit", "rollback"):
            in_block = False
        elif s.non_transactional and in_block:
            raise refuse(
                s,
                f"{sec.reason_of(s)}: this statement cannot run inside a transaction block, but it is inside the "
                "file's own BEGIN … COMMIT; remove the BEGIN and COMMIT, or move it into a migration of its own",
            )
        elif s.transaction_only and not in_block:
            raise refuse(
                s,
                f"{s.transaction_only} only works inside a transaction block, but this migration runs outside one "
                f"because of {transaction_reason(m, sec)}; move the statement that cannot run in a transaction into "
                "a migration of its own",
            )
        out.append(s)
    return out


def _set_transaction(s: Statement, index: int, refuse: Callable[[Statement, str], SourceError]) -> Statement:
    """The file's `BEGIN ISOLATION LEVEL …` as `SET TRANSACTION …` for the migration's own transaction."""
    written = f"{s.text.split()[0].upper()} {', '.join(s.transaction_modes)}"
    if index > 0:
        raise refuse(
            s,
            f"{written}: transaction options are honoured only on the file's first statement (the whole file runs "
            "in one transaction, and its isolation level must be set before any query)",
        )
    if "READ ONLY" in s.transaction_modes:
        raise refuse(
            s,
            f"{written}: READ ONLY cannot be honoured: migrate-job records the migration in its history table "
            "in the same transaction; remove READ ONLY",
        )
    return replace(
        s,
        text="SET TRANSACTION " + ", ".join(s.transaction_modes),
        kind="VariableSetStmt",
        transaction_control=None,
        transaction_modes=(),
    )


def transaction_modes(m: Migration, section: Section | None = None) -> tuple[str, ...]:
    """The options (ISOLATION LEVEL …) of the file's own BEGIN / START TRANSACTION, if it has any."""
    sec = section or m.up
    return next((s.transaction_modes for s in sec.statements if s.transaction_modes), ())


def section_transactional(m: Migration, sec: Section) -> bool:
    """Whether a section runs in one transaction: directive > marker option > its statements."""
    if m.directives.transaction is not None:
        return m.directives.transaction
    if sec.transaction is not None:
        return sec.transaction
    return not any(s.non_transactional for s in sec.statements)


def _ms(directive: str | None, setting_ms: int) -> int:
    return setting_ms if directive is None else round(parse_duration(directive) * 1000)


def timeouts_ms(m: Migration, settings: Settings) -> tuple[int, int]:
    """(lock_timeout, statement_timeout) in ms for this file: directive > setting. 0 = none."""
    return (
        _ms(m.directives.lock_timeout, settings.lock_timeout_ms),
        _ms(m.directives.statement_timeout, settings.statement_timeout_ms),
    )


@dataclass(frozen=True)
class Script:
    """A one-message script, with every statement sent: (offset in text, migration statement or None for
    the job's own statements, index of the migration it belongs to). The server returns one result per
    statement, so the number of results before an error names the failing statement."""

    text: str
    items: tuple[tuple[int, Statement | None, int], ...]
    prefix_results: int = 3  # results before the first migration's statements: BEGIN and its two SETs

    @property
    def pieces(self) -> tuple[tuple[int, Statement], ...]:
        return tuple((off, st) for off, st, _ in self.items if st is not None)

    def at_result(self, completed: int) -> tuple[Statement | None, int, int]:
        """(statement or None, migration index, statement index within that migration) of result `completed`."""
        if not self.items:
            return None, 0, 0
        _, stmt, mig = self.items[min(completed, len(self.items) - 1)]
        within = sum(1 for _, st, m in self.items[:completed] if st is not None and m == mig)
        return stmt, mig, within

    def locate(self, position: int) -> tuple[int, Statement, int] | None:
        """Map a server error position (1-based, characters) to (piece index, statement, offset in it)."""
        pos = position - 1
        for index, (start, stmt) in enumerate(self.pieces):
            if start <= pos < start + len(stmt.text) + 2:
                return index, stmt, pos - start
        return None

    def migration_of_piece(self, piece_index: int) -> tuple[int, int]:
        """(migration index, statement index within it) of a piece."""
        owners = [m for _, st, m in self.items if st is not None]
        mig = owners[piece_index]
        return mig, owners[:piece_index].count(mig)


def tx_script_many(parts: list[tuple[list[Statement], int, int, list[str]]]) -> Script:
    """One transaction for one or more migrations: per migration its timeouts, statements and history SQL."""
    text = "BEGIN;\n"
    items: list[tuple[int, Statement | None, int]] = [(0, None, 0)]
    for mig, (stmts, lock_ms, statement_ms, tail) in enumerate(parts):
        for meta in (f"SET LOCAL lock_timeout = {lock_ms};", f"SET LOCAL statement_timeout = {statement_ms};"):
            items.append((len(text), None, mig))
            text += meta + "\n"
        for st in stmts:
            items.append((len(text), st, mig))
            text += st.terminated + "\n"
        for t in tail:
            items.append((len(text), None, mig))
            text += t + ";\n"
    items.append((len(text), None, max(0, len(parts) - 1)))
    text += "COMMIT;"
    return Script(text, tuple(items))


def tx_script(stmts: list[Statement], lock_ms: int, statement_ms: int, tail: list[str]) -> Script:
    return tx_script_many([(stmts, lock_ms, statement_ms, tail)])


# ---------------------------------------------------------------------------- running


@dataclass
class Outcome:
    migration: Migration
    elapsed_ms: int
    attempts: int = 1


@dataclass
class Runner:
    conn: Connection
    settings: Settings
    table: HistoryTable
    log: Log
    run_id: str
    batch: int
    check_lock: Callable[[], None] = lambda: None
    blockers: Callable[[int], list[dict[str, Any]]] | None = None
    applied: list[Outcome] = field(default_factory=list)
    current: Migration | None = None

    def row(self, m: Migration, kind: str) -> dict[str, Any]:
        return {
            "version": m.key,
            "name": m.name,
            "checksum": m.checksum,
            "kind": kind,
            "applied_by": self.settings.applied_by,
            "batch": self.batch,
            "source": "migrate-job",
            "run_id": self.run_id,
        }

    def apply_all(self, pending: tuple[Migration, ...] | list[Migration]) -> list[Outcome]:
        for m in pending:
            self.check_lock()
            self.current = m
            outcome = self.apply_tx(m) if m.transactional else self.apply_nontx(m)
            self.current = None
            self.applied.append(outcome)
            self.log.info(
                "migration.applied",
                version=m.key,
                name=m.name,
                file=m.filename,
                transactional=m.transactional,
                duration_ms=outcome.elapsed_ms,
                attempts=outcome.attempts,
            )
        return self.applied

    def rollback_all(self, chosen: list[Migration]) -> list[Outcome]:
        """Run the down sections, newest first, each with the removal of its history row."""
        for m in chosen:
            self.check_lock()
            self.current = m
            assert m.down is not None
            tx = section_transactional(m, m.down)
            outcome = self.apply_tx(m, down=True) if tx else self.apply_nontx(m, down=True)
            self.current = None
            self.applied.append(outcome)
            self.log.info(
                "migration.rolled_back",
                version=m.key,
                name=m.name,
                file=m.down.path.name,
                transactional=tx,
                duration_ms=outcome.elapsed_ms,
            )
        return self.applied

    # -- transactional -----------------------------------------------------------------

    def apply_tx(self, m: Migration, *, down: bool = False) -> Outcome:
        """One transaction, one message: the section's SQL plus the history write (insert or delete)."""
        sec = m.down if down and m.down is not None else m.up
        stmts = statements_for(m, sec, transactional=True)
        lock_ms, stmt_ms = timeouts_ms(m, self.settings)
        tail = (
            history.delete_row_sql(self.table, m.key)
            if down
            else history.applied_row_sql(self.table, self.row(m, "transactional"))
        )
        script = tx_script(stmts, lock_ms, stmt_ms, [tail])
        elapsed, attempts = self._run_tx_script([m], [sec], script, lock_ms)
        return Outcome(m, elapsed, attempts)

    def apply_single_tx(self, pending: tuple[Migration, ...] | list[Migration]) -> list[Outcome]:
        """Every pending migration in ONE transaction and ONE message: all or nothing (--single-transaction)."""
        if not pending:
            return self.applied
        self.check_lock()
        parts = []
        for m in pending:
            lock_ms, stmt_ms = timeouts_ms(m, self.settings)
            row = history.applied_row_sql(self.table, self.row(m, "transactional"))
            parts.append((statements_for(m, m.up, transactional=True), lock_ms, stmt_ms, [row]))
        script = tx_script_many(parts)
        elapsed, attempts = self._run_tx_script(list(pending), [m.up for m in pending], script, parts[0][1])
        for m in pending:
            self.applied.append(Outcome(m, elapsed, attempts))
            self.log.info(
                "migration.applied",
                version=m.key,
                name=m.name,
                file=m.filename,
                transactional=True,
                single_transaction=True,
                duration_ms=elapsed,
                attempts=attempts,
            )
        return self.applied

    def _run_tx_script(
        self, migrations: list[Migration], sections: list[Section], script: Script, lock_ms: int
    ) -> tuple[int, int]:
        """Send the script; on a lock timeout roll back and retry with backoff. Returns (elapsed ms, attempts)."""
        m = migrations[0]
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            watcher = _BlockerWatcher(self, lock_ms) if lock_ms and self.blockers else None
            try:
                result = run_script(self.conn, script.text)
            except Interrupted:
                self._rollback_quietly()
                raise
            except psycopg.OperationalError as exc:
                raise self._lost(m, exc) from None
            finally:
                if watcher:
                    watcher.stop()
            elapsed = round((time.monotonic() - started) * 1000)
            if result.error is None:
                return elapsed, attempt
            self._rollback_quietly()
            err = result.error
            if isinstance(err, pgerrors.LockNotAvailable) and attempt <= self.settings.lock_retries:
                delay = random.uniform(0, min(30.0, 0.5 * 2 ** (attempt - 1)))
                failing = migrations[script.at_result(result.completed)[1]]
                self.log.warning(
                    "migration.lock_timeout",
                    version=failing.key,
                    file=failing.filename,
                    attempt=attempt,
                    retries=self.settings.lock_retries,
                    lock_timeout_ms=lock_ms,
                    retry_in_s=round(delay, 2),
                    blockers=watcher.found if watcher else [],
                )
                time.sleep(delay)
                continue
            if is_connection_lost(err, self.conn):
                raise self._lost(m, err) from None
            raise self._failure(migrations, sections, script, result, err, attempts=attempt)

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

    def _failure(
        self,
        migrations: list[Migration],
        sections: list[Section],
        script: Script,
        result: ScriptResult,
        err: pgerrors.Error,
        *,
        attempts: int,
    ) -> MigrationFailed:
        """The error of a one-message script, attributed to its migration, statement, line and column."""
        stmt, mig, within = script.at_result(result.completed)
        offset_in_stmt = 0
        if err.diag.statement_position:
            located = script.locate(int(err.diag.statement_position))
            if located:
                piece, stmt, offset_in_stmt = located
                mig, within = script.migration_of_piece(piece)
        return _failure_error(
            migrations[mig],
            sections[mig],
            stmt,
            within,
            offset_in_stmt,
            err,
            attempts=attempts,
            lock_exhausted=isinstance(err, pgerrors.LockNotAvailable),
        )

    # -- non-transactional -------------------------------------------------------------

    def apply_nontx(self, m: Migration, *, start_at: int = 0, down: bool = False) -> Outcome:
        """Statement by statement in autocommit, recording progress (up) so a failure names its statement."""
        sec = m.down if down and m.down is not None else m.up
        stmts = statements_for(m, sec, transactional=False)
        lock_ms, stmt_ms = timeouts_ms(m, self.settings)
        row = self.row(m, "non_transactional")
        row["statements_done"] = start_at
        started = time.monotonic()
        try:
            if not down:
                history.record_started(self.conn, self.table, row)
            self.conn.execute(f"SET lock_timeout = {lock_ms}; SET statement_timeout = {stmt_ms}")
        except psycopg.OperationalError as exc:
            raise self._lost(m, exc, done=start_at) from None
        done = start_at
        for index in range(start_at, len(stmts)):
            stmt = stmts[index]
            self.check_lock()
            try:
                result = run_script(self.conn, stmt.text)
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
                history.record_progress(self.conn, self.table, m.key, done)
        elapsed = round((time.monotonic() - started) * 1000)
        if down:
            history.delete(self.conn, self.table, m.key)
        else:
            history.record_finished(self.conn, self.table, m.key, done, elapsed)
        self.conn.execute("RESET lock_timeout; RESET statement_timeout")
        return Outcome(m, elapsed)

    def _record_failed(self, m: Migration, done: int, error: str) -> None:
        try:
            self._rollback_quietly()
            history.record_failed(self.conn, self.table, m.key, done, error)
        except psycopg.Error as exc:  # keep the original error primary
            self.log.error("history.write_failed", version=m.key, error=_first_line(exc))


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
    """While a migration waits on a lock, ask (on the lock connection) who blocks it.

    Starts after half the lock_timeout so fast migrations cost nothing; the answer is logged with
    the lock-timeout retry.
    """

    def __init__(self, runner: Runner, lock_ms: int) -> None:
        self.found: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._runner = runner
        self._pid = runner.conn.info.backend_pid
        self._thread = threading.Thread(target=self._run, args=(lock_ms / 2000,), daemon=True)
        self._thread.start()

    def _run(self, delay: float) -> None:
        if self._stop.wait(delay) or self._runner.blockers is None:
            return
        try:
            self.found = self._runner.blockers(self._pid)
        except Exception:  # best effort: never disturb the migration
            self.found = []

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
