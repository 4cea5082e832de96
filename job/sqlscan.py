"""Split SQL into statements and classify them with PostgreSQL's own parser (pglast).

Pure: no I/O. Offsets are character offsets into the text given, so errors can be mapped back to
`file:line:column`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any


class SqlSyntaxError(Exception):
    """The parser rejected the text; `offset` is a 0-based character offset into it."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Statement:
    """One statement of a migration.

    `offset` is where the statement starts in the text that was split (0-based characters),
    `text` is its source without the terminating semicolon.
    """

    text: str
    offset: int
    kind: str
    non_transactional: bool = False
    transaction_control: str | None = None  # "begin", "commit", "rollback", "savepoint", ...
    copy_client: bool = False  # COPY ... FROM STDIN / TO STDOUT: needs a psql-style client

    @property
    def terminated(self) -> str:
        """The statement followed by a semicolon, safe even if it ends in a `--` comment."""
        last_line = self.text.rsplit("\n", 1)[-1]
        return self.text + ("\n;" if "--" in last_line else ";")


@cache
def _parser() -> Any:
    from pglast import parser

    return parser


def _why_non_transactional(stmt: Any) -> bool:
    """True when PostgreSQL refuses to run `stmt` inside a transaction block."""
    name = type(stmt).__name__
    if name in {
        "VacuumStmt",
        "AlterSystemStmt",
        "CreatedbStmt",
        "DropdbStmt",
        "CreateTableSpaceStmt",
        "DropTableSpaceStmt",
        "CreateSubscriptionStmt",
        "DropSubscriptionStmt",
    }:
        return name != "VacuumStmt" or bool(getattr(stmt, "is_vacuumcmd", True))
    if name in {"IndexStmt", "DropStmt"}:
        return bool(getattr(stmt, "concurrent", False))
    if name == "ReindexStmt":
        if int(getattr(stmt, "kind", 0)) >= 2:  # REINDEX SCHEMA / SYSTEM / DATABASE
            return True
        for param in getattr(stmt, "params", None) or ():
            if getattr(param, "defname", "") == "concurrently":
                return True
        return bool(getattr(stmt, "concurrent", False))
    if name == "AlterTableStmt":
        for cmd in getattr(stmt, "cmds", None) or ():
            definition = getattr(cmd, "def_", None)
            if type(definition).__name__ == "PartitionCmd" and getattr(definition, "concurrent", False):
                return True
    return False


_TX_KINDS = {
    0: "begin",
    1: "start",
    2: "commit",
    3: "rollback",
    4: "savepoint",
    5: "release",
    6: "rollback_to",
    7: "prepare",
    8: "commit_prepared",
    9: "rollback_prepared",
}


def _syntax_error(parser: Any, text: str, exc: Exception) -> SqlSyntaxError:
    """The parser's message and a character offset into `text`.

    pglast converts the error position as if it were a byte offset, which is wrong after non-ASCII
    text: parse an ASCII stand-in of the same length (one ASCII character per character) to get it.
    """
    message = str(exc.args[0]) if exc.args else str(exc)
    if not text.isascii():
        try:
            parser.parse_sql("".join(c if c.isascii() else "x" for c in text))
        except parser.ParseError as ascii_exc:
            exc = ascii_exc
    raw = exc.args[1] if len(exc.args) > 1 else None
    offset = len(text) if raw is None else int(raw)
    return SqlSyntaxError(message, min(offset, len(text)))


def split(text: str) -> list[Statement]:
    """Split `text` into statements, with offsets and classification.

    Raises SqlSyntaxError with the parser's message and offset when the text does not parse.
    """
    parser = _parser()
    try:
        raws = parser.parse_sql(text)
    except parser.ParseError as exc:
        raise _syntax_error(parser, text, exc) from None
    statements: list[Statement] = []
    for raw in raws:
        start = raw.stmt_location
        end = len(text) if raw.stmt_len == 0 else start + raw.stmt_len
        body = text[start:end]
        stripped = body.lstrip()
        start += len(body) - len(stripped)
        body = stripped.rstrip()
        if not body:
            continue
        stmt = raw.stmt
        kind = type(stmt).__name__
        tx: str | None = None
        if kind == "TransactionStmt":
            tx = _TX_KINDS.get(int(stmt.kind), "other")
        copy_client = kind == "CopyStmt" and stmt.filename is None and not getattr(stmt, "is_program", False)
        statements.append(
            Statement(
                text=body,
                offset=start,
                kind=kind,
                non_transactional=_why_non_transactional(stmt),
                transaction_control=tx,
                copy_client=copy_client,
            )
        )
    return statements


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a 0-based character offset in text."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


@dataclass(frozen=True)
class IndexTarget:
    """What a CONCURRENTLY index statement works on, so `repair` can find what it left behind."""

    action: str  # "create" | "reindex"
    table: str | None  # qualified text as written, for CREATE INDEX and REINDEX TABLE
    index: str | None  # qualified text as written (None: a name PostgreSQL chose)


def _qualified(rangevar: Any) -> str:
    schema = getattr(rangevar, "schemaname", None)
    name = str(rangevar.relname)
    return f"{schema}.{name}" if schema else name


def index_target(text: str) -> IndexTarget | None:
    """For CREATE INDEX CONCURRENTLY / REINDEX … CONCURRENTLY: the table and index involved."""
    try:
        raws = _parser().parse_sql(text)
    except _parser().ParseError:
        return None
    if len(raws) != 1:
        return None
    stmt = raws[0].stmt
    name = type(stmt).__name__
    if name == "IndexStmt" and stmt.concurrent:
        schema = getattr(stmt.relation, "schemaname", None)
        index = f"{schema}.{stmt.idxname}" if stmt.idxname and schema else stmt.idxname
        return IndexTarget("create", _qualified(stmt.relation), index)
    if name == "ReindexStmt" and _why_non_transactional(stmt) and stmt.relation is not None:
        kind = int(stmt.kind)
        if kind == 0:  # REINDEX INDEX
            return IndexTarget("reindex", None, _qualified(stmt.relation))
        if kind == 1:  # REINDEX TABLE
            return IndexTarget("reindex", _qualified(stmt.relation), None)
    return None
