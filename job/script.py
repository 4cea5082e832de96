"""Scripts: the exact text `apply` sends, and which statement of which migration each result belongs to.

Pure: no I/O. A `Script` is a list of `Piece`s, one SQL statement each, joined into one simple-query
message. The server answers every statement with exactly one result (and stops at the first error), so
result number i is piece i: the same attribution serves the three ways of sending migrations:

- one message per transactional migration (MIGRATE_PIPELINE=off),
- a pipeline: consecutive transactional migrations in one message, each its own transaction,
- `--single-transaction`: every pending migration in one transaction.

Every migration block starts from the same session state (the job's settings re-applied after RESET ALL,
RESET SESSION AUTHORIZATION and RESET ROLE, so a `SET search_path` or `SET ROLE` in one file never leaks
into the next; one SELECT of set_config calls sets the timeouts, the job's settings and the start mark, so
the prelude costs one result, not one per setting), checks before its history row that the session still
holds the advisory lock, and writes that row (INSERT … RETURNING execution_ms, measured on the server)
before its COMMIT. In a pipeline, a tiny DO block that raises a NOTICE follows each COMMIT: PostgreSQL
flushes its output on every notice, so the COMMIT's result reaches us while the next migration runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from job.sqlscan import Statement

FLUSH_NOTICE = "migrate-job: committed"
FLUSH_SQL = f"DO $migrate_job$ BEGIN RAISE NOTICE '{FLUSH_NOTICE}'; END $migrate_job$"
SESSION_RESET = ("RESET ALL", "RESET SESSION AUTHORIZATION", "RESET ROLE")
# Per-migration start time: now() is the start of the whole message (all transactions of a pipeline) or of the
# single transaction, so each migration's execution_ms is measured from this mark (the last call of the prelude).
MARK_START = "pg_catalog.set_config('migrate_job.started', pg_catalog.clock_timestamp()::text, true)"
SINCE_MARK_MS = (  # a migration that ran RESET ALL erased the mark: then measured from the message's start
    "(extract(epoch FROM pg_catalog.clock_timestamp() - coalesce(nullif("
    "pg_catalog.current_setting('migrate_job.started', true), '')::timestamptz, pg_catalog.now())) * 1000)::integer"
)


Setting = tuple[str, str]  # (parameter, value as text), e.g. ("application_name", "app:migrate 7")


def literal(text: str) -> str:
    """`text` as a SQL string literal, read alike whatever standard_conforming_strings is (as psycopg quotes)."""
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


def settings_sql(values: Sequence[Setting], *, local: bool, mark: bool = False) -> str:
    """One statement setting every parameter: `SELECT pg_catalog.set_config(name, value, local), …`.

    `local`: for the current transaction only (SET LOCAL), else for the session (SET). `mark`: also record the
    migration's start time (MARK_START), last, once the timeouts are in force.
    """
    flag = "true" if local else "false"
    calls = [f"pg_catalog.set_config({literal(name)}, {literal(value)}, {flag})" for name, value in values]
    if mark:
        calls.append(MARK_START)
    return "SELECT " + ", ".join(calls)


def timeouts(lock_ms: int, statement_ms: int) -> tuple[Setting, Setting]:
    return ("lock_timeout", str(lock_ms)), ("statement_timeout", str(statement_ms))


@dataclass(frozen=True)
class Session:
    """The job's own statements around every migration: settings to re-apply, and the lock check."""

    settings: tuple[Setting, ...] = ()  # e.g. ("client_connection_check_interval", "2000")
    lock_check: str | None = None  # a statement that fails unless the session holds the advisory lock


@dataclass(frozen=True)
class Block:
    """What one migration contributes: its statements, timeouts and the history statement of its commit."""

    stmts: Sequence[Statement]
    lock_ms: int
    statement_ms: int
    history_sql: str  # INSERT … RETURNING execution_ms (apply) or DELETE (rollback)
    settings: tuple[Setting, ...] = ()  # this migration's own, e.g. ("application_name", "…:migrate 7")
    # Callbacks around the migration's SQL, in its transaction: (what it is, e.g. a Callback, its statements).
    before: Sequence[tuple[object, Sequence[Statement]]] = ()
    after: Sequence[tuple[object, Sequence[Statement]]] = ()


@dataclass(frozen=True)
class Piece:
    """One statement of a script.

    role: `job` (our own), `sql` (the migration's), `callback` (a callback's, see `origin`), `check` (lock
    check), `history`, `commit`.
    """

    offset: int
    role: str
    mig: int
    stmt: Statement | None = None
    origin: object = None  # for `callback` pieces: the callback the statement belongs to


@dataclass(frozen=True)
class Script:
    """The text of one message and its pieces: piece i is the statement whose result is number i."""

    text: str
    pieces: tuple[Piece, ...]
    single_transaction: bool = False

    def migration_count(self) -> int:
        return self.pieces[-1].mig + 1 if self.pieces else 0

    def committed_by(self, index: int) -> tuple[int, ...]:
        """The migrations whose COMMIT is result `index` (all of them in a single transaction)."""
        piece = self.pieces[index]
        if piece.role != "commit":
            return ()
        if self.single_transaction:
            return tuple(range(self.migration_count()))
        return (piece.mig,)

    def within(self, index: int) -> int:
        """0-based index, among its migration's (or its callback's) statements, of the statement at piece `index`."""
        piece = self.pieces[index]
        return sum(
            1 for p in self.pieces[:index] if p.mig == piece.mig and p.role == piece.role and p.origin is piece.origin
        )

    def locate(self, position: int) -> int | None:
        """The piece holding a server error position (1-based character offset into the text)."""
        pos = position - 1
        found = None
        for index, piece in enumerate(self.pieces):
            if piece.offset > pos:
                break
            found = index
        return found

    def attribute(self, completed: int, position: int | None) -> tuple[int, Statement | None, int, int]:
        """Where an error happened: (piece index, statement, offset of the error in it, statement number).

        `completed` results arrived before the error, so the error is piece `completed`; the server's
        error position, when it gives one, points into that statement.
        """
        index = min(completed, len(self.pieces) - 1)
        offset_in_stmt = 0
        if position:
            located = self.locate(position)
            if located is not None and self.pieces[located].mig == self.pieces[index].mig:
                index = located
                offset_in_stmt = max(0, position - 1 - self.pieces[index].offset)
        piece = self.pieces[index]
        offset_in_stmt = min(offset_in_stmt, len(piece.stmt.text)) if piece.stmt is not None else 0
        return index, piece.stmt, offset_in_stmt, self.within(index)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.pieces: list[Piece] = []

    def add(self, text: str, role: str, mig: int, stmt: Statement | None = None, origin: object = None) -> None:
        self.pieces.append(Piece(self.length, role, mig, stmt, origin))
        line = (stmt.terminated if stmt is not None else text + ";") + "\n"
        self.parts.append(line)
        self.length += len(line)


def _sets_transaction(st: Statement) -> bool:
    return st.kind == "VariableSetStmt" and st.text.upper().startswith("SET TRANSACTION ")


def _prelude(b: _Builder, block: Block, session: Session, mig: int) -> None:
    for reset in SESSION_RESET:
        b.add(reset, "job", mig)
    values = (*timeouts(block.lock_ms, block.statement_ms), *session.settings, *block.settings)
    b.add(settings_sql(values, local=True, mark=True), "job", mig)


def _tail(b: _Builder, block: Block, session: Session, mig: int) -> None:
    b.add("RESET ROLE", "job", mig)  # the history row is written as the job's own role
    if session.lock_check:
        b.add(session.lock_check, "check", mig)
    b.add(block.history_sql, "history", mig)


def build(blocks: Sequence[Block], session: Session, *, single_transaction: bool = False) -> Script:
    """The script for `blocks`: each its own transaction (a pipeline when several), or all in one."""
    b = _Builder()
    if single_transaction:
        b.add("BEGIN", "job", 0)
    for mig, block in enumerate(blocks):
        if not single_transaction:
            if mig > 0:
                b.add(FLUSH_SQL, "job", mig)
            b.add("BEGIN", "job", mig)
        stmts = list(block.stmts)
        if stmts and not single_transaction and _sets_transaction(stmts[0]):
            b.add("", "sql", mig, stmts.pop(0))  # the file's BEGIN ISOLATION LEVEL …: before any query
        _prelude(b, block, session, mig)
        for origin, callback_stmts in block.before:
            for st in callback_stmts:
                b.add("", "callback", mig, st, origin)
        for st in stmts:
            b.add("", "sql", mig, st)
        for origin, callback_stmts in block.after:
            for st in callback_stmts:
                b.add("", "callback", mig, st, origin)
        _tail(b, block, session, mig)
        if not single_transaction:
            b.add("COMMIT", "commit", mig)
    if single_transaction:
        b.add("COMMIT", "commit", max(0, len(blocks) - 1))
    return Script("".join(b.parts).rstrip("\n"), tuple(b.pieces), single_transaction)


def callback_script(
    stmts: Sequence[Statement],
    origin: object,
    session: Session,
    lock_ms: int,
    statement_ms: int,
    own: tuple[Setting, ...] = (),
) -> Script:
    """A transactional callback (beforeMigrate, afterMigrate, afterMigrateError) as one transaction."""
    b = _Builder()
    b.add("BEGIN", "job", 0)
    for reset in SESSION_RESET:
        b.add(reset, "job", 0)
    b.add(settings_sql((*timeouts(lock_ms, statement_ms), *session.settings, *own), local=True), "job", 0)
    for st in stmts:
        b.add("", "callback", 0, st, origin)
    b.add("COMMIT", "commit", 0)
    return Script("".join(b.parts).rstrip("\n"), tuple(b.pieces))


def session_sql(session: Session, lock_ms: int, statement_ms: int, own: tuple[Setting, ...] = ()) -> str:
    """The prelude of a non-transactional migration (autocommit, so session settings, not transaction-local)."""
    values = (*timeouts(lock_ms, statement_ms), *session.settings, *own)
    return ";\n".join([*SESSION_RESET, settings_sql(values, local=False)]) + ";"


def chunks(sizes: Sequence[int], *, max_bytes: int, max_count: int) -> list[tuple[int, int]]:
    """Split consecutive items of the given sizes into [start, end) runs of at most max_bytes / max_count.

    A single item larger than max_bytes is a run of its own.
    """
    runs: list[tuple[int, int]] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (total + size > max_bytes or index - start >= max_count):
            runs.append((start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        runs.append((start, len(sizes)))
    return runs
