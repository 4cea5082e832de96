"""Split SQL into statements and classify them with PostgreSQL's own parser (pglast).

Pure: no I/O. Offsets are character offsets into the text given, so errors can be mapped back to
`file:line:column`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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
    # Why the statement cannot run in a transaction block, e.g. "CREATE INDEX CONCURRENTLY" or "DO block
    # commits"; `reason_offset` is where that is (the statement, or the COMMIT inside a PL/pgSQL body).
    non_transactional_reason: str | None = None
    reason_offset: int | None = None
    transaction_only: str | None = None  # works only inside a transaction block, e.g. "LOCK TABLE"
    releases_locks: str | None = None  # releases session advisory locks: "pg_advisory_unlock_all()", "DISCARD ALL"
    transaction_modes: tuple[str, ...] = ()  # BEGIN/START TRANSACTION options, e.g. ("ISOLATION LEVEL SERIALIZABLE",)

    @property
    def terminated(self) -> str:
        """The statement followed by a semicolon, safe even if it ends in a `--` comment."""
        last_line = self.text.rsplit("\n", 1)[-1]
        return self.text + ("\n;" if "--" in last_line else ";")


@cache
def _parser() -> Any:
    from pglast import parser

    return parser


_NON_TX_LABELS = {
    "VacuumStmt": "VACUUM",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
    "DropSubscriptionStmt": "DROP SUBSCRIPTION",
}


def _why_non_transactional(stmt: Any) -> str | None:
    """What makes PostgreSQL refuse `stmt` inside a transaction block (e.g. "VACUUM"), or None."""
    name = type(stmt).__name__
    if name in _NON_TX_LABELS:
        if name == "VacuumStmt" and not bool(getattr(stmt, "is_vacuumcmd", True)):
            return None  # ANALYZE
        return _NON_TX_LABELS[name]
    if name in {"IndexStmt", "DropStmt"}:
        if not getattr(stmt, "concurrent", False):
            return None
        return "CREATE INDEX CONCURRENTLY" if name == "IndexStmt" else "DROP INDEX CONCURRENTLY"
    if name == "ReindexStmt":
        if int(getattr(stmt, "kind", 0)) >= 2:  # REINDEX SCHEMA / SYSTEM / DATABASE
            return "REINDEX " + str(stmt.kind.name).removeprefix("REINDEX_OBJECT_")
        for param in getattr(stmt, "params", None) or ():
            if getattr(param, "defname", "") == "concurrently":
                return "REINDEX CONCURRENTLY"
        return "REINDEX CONCURRENTLY" if getattr(stmt, "concurrent", False) else None
    if name == "AlterTableStmt":
        for cmd in getattr(stmt, "cmds", None) or ():
            definition = getattr(cmd, "def_", None)
            if type(definition).__name__ == "PartitionCmd" and getattr(definition, "concurrent", False):
                return "DETACH PARTITION CONCURRENTLY"
    return None


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


# ---------------------------------------------------------------------------- what a statement needs


_CURSOR_OPT_HOLD = 0x0020
_TX_ONLY_CONTROL = {"savepoint": "SAVEPOINT", "release": "RELEASE SAVEPOINT", "rollback_to": "ROLLBACK TO SAVEPOINT"}


def _transaction_only(stmt: Any, tx: str | None) -> str | None:
    """What in `stmt` only works inside a transaction block (outside one it fails or does nothing)."""
    name = type(stmt).__name__
    if name == "LockStmt":
        return "LOCK TABLE"
    if name == "VariableSetStmt":
        if getattr(stmt, "is_local", False):
            return "SET LOCAL"
        if str(getattr(stmt, "name", "") or "").upper().startswith("TRANSACTION"):
            return "SET TRANSACTION"
    if name == "ConstraintsSetStmt":
        return "SET CONSTRAINTS"
    if name == "DeclareCursorStmt" and not int(getattr(stmt, "options", 0) or 0) & _CURSOR_OPT_HOLD:
        return "DECLARE CURSOR without HOLD"
    return _TX_ONLY_CONTROL.get(tx or "")


def _mode_text(option: str, value: Any) -> str | None:
    if option == "transaction_isolation":
        return f"ISOLATION LEVEL {str(value).upper()}"
    if option == "transaction_read_only":
        return "READ ONLY" if int(value or 0) else "READ WRITE"
    if option == "transaction_deferrable":
        return "DEFERRABLE" if int(value or 0) else "NOT DEFERRABLE"
    return None


def _transaction_modes(stmt: Any) -> tuple[str, ...]:
    """The options of BEGIN / START TRANSACTION as SQL, e.g. ("ISOLATION LEVEL SERIALIZABLE", "READ ONLY")."""
    modes: list[str] = []
    for opt in getattr(stmt, "options", None) or ():
        value = getattr(getattr(opt, "arg", None), "val", None)
        raw = getattr(value, "sval", None)
        text = _mode_text(str(getattr(opt, "defname", "")), raw if raw is not None else getattr(value, "ival", 0))
        if text is not None:
            modes.append(text)
    return tuple(modes)


def _ast_nodes(node: Any) -> Iterator[Any]:
    """`node` and every pglast AST node below it."""
    from pglast import ast

    if isinstance(node, tuple | list):
        for item in node:
            yield from _ast_nodes(item)
    elif isinstance(node, ast.Node):
        yield node
        for slot in getattr(type(node), "__slots__", ()):
            yield from _ast_nodes(getattr(node, slot, None))


_UNLOCK_ALL = "pg_advisory_unlock_all"


def _releases_locks(stmt: Any, text: str) -> str | None:
    """Whether `stmt` releases the session's advisory locks (and with them migrate-job's own lock)."""
    name = type(stmt).__name__
    if name == "DiscardStmt" and int(getattr(stmt, "target", -1)) == 0:
        return "DISCARD ALL"
    if _UNLOCK_ALL not in text.lower():  # cheap pre-check; the parse tree decides
        return None
    for node in _ast_nodes(stmt):
        if type(node).__name__ == "FuncCall":
            names = [str(getattr(n, "sval", "")) for n in node.funcname or ()]
            if names and names[-1].lower() == _UNLOCK_ALL:
                return f"{_UNLOCK_ALL}()"
    return None


# ---------------------------------------------------------------------------- PL/pgSQL bodies

_BODY_HINT = re.compile(r"commit|rollback|call|pg_advisory_unlock_all|discard", re.IGNORECASE)
# A dollar-quote tag: $$ or $tag$, the tag an identifier (letters, `_`, any non-ASCII character; digits after
# the first). Written as negated ASCII classes: the same strings as [A-Za-z_\u0080-\uffff] (and characters
# beyond U+FFFF, which PostgreSQL accepts too), compiled in 0.2 ms instead of 7.
_DOLLAR_TAG = re.compile(r"\$(?:[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f][^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]*)?\$")
_ASSIGN = re.compile(r"^[^:=]*:?=\s*", re.DOTALL)


@dataclass(frozen=True)
class _Body:
    """A PL/pgSQL body (of a DO block or a procedure) and where it starts in the text being split."""

    text: str
    start: int

    def offset_of_line(self, text: str, lineno: int, word: str) -> int:
        """Offset in `text` of `word` on the body's line `lineno` (1-based; PL/pgSQL gives no column)."""
        pos = self.start
        for _ in range(max(0, lineno - 1)):
            nl = text.find("\n", pos)
            if nl < 0:
                break
            pos = nl + 1
        end = text.find("\n", pos)
        found = re.search(rf"\b{word}\b", text[pos : len(text) if end < 0 else end], re.IGNORECASE)
        return pos + found.start() if found else pos


def _plpgsql_body(text: str, options: Any, language_default: str = "plpgsql") -> _Body | None:
    """The PL/pgSQL source of a DO statement's args / a CREATE PROCEDURE's options, or None (other language)."""
    language, body, location = language_default, None, None
    for opt in options or ():
        defname = str(getattr(opt, "defname", ""))
        arg = getattr(opt, "arg", None)
        if defname == "language":
            language = str(getattr(arg, "sval", "")).lower()
        elif defname == "as":
            first = arg[0] if isinstance(arg, tuple | list) and arg else arg
            body = getattr(first, "sval", None)
            location = getattr(opt, "arg_location", None)
    if language != "plpgsql" or not isinstance(body, str):
        return None
    start = location if isinstance(location, int) and 0 <= location < len(text) else 0
    tag = _DOLLAR_TAG.match(text, start)
    if tag:
        start = tag.end()
    elif text.startswith(("E'", "e'"), start):
        start += 2
    elif text.startswith("'", start):
        start += 1
    return _Body(body, start)


def _plpgsql_tree(body: str) -> Any:
    """PL/pgSQL parse tree (plain lists and dicts) of a body, or None when it cannot be analysed."""
    from pglast import parse_plpgsql

    tag, n = "$mj_body$", 0
    while tag in body:
        n += 1
        tag = f"$mj_body{n}$"
    try:
        return parse_plpgsql(f"CREATE FUNCTION mj_body() RETURNS void LANGUAGE plpgsql AS {tag}{body}{tag}")
    except Exception:  # not analysable: the server reports real errors when it runs
        return None


def _plpgsql_nodes(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, fields) of every PLpgSQL_* node in a parse_plpgsql tree, at any depth (blocks, loops, ifs)."""
    if isinstance(node, list):
        for item in node:
            yield from _plpgsql_nodes(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("PLpgSQL_") and isinstance(value, dict):
                yield key, value
            yield from _plpgsql_nodes(value)


def _parse_quietly(sql: str) -> tuple[Any, ...]:
    try:
        return tuple(r.stmt for r in _parser().parse_sql(sql))
    except Exception:
        return ()


def _called_procedure(stmt: Any) -> str | None:
    """The (lower-case, unqualified) name a CALL statement calls."""
    if type(stmt).__name__ != "CallStmt" or stmt.funccall is None:
        return None
    names = [str(getattr(n, "sval", "")) for n in stmt.funccall.funcname or ()]
    return names[-1] if names else None


def _body_control(tree: Any, committing: dict[str, tuple[str, int]]) -> tuple[int, str, str] | None:
    """(line in the body, what, keyword) of the first COMMIT/ROLLBACK, or CALL of a committing procedure."""
    found: list[tuple[int, str, str]] = []
    for kind, node in _plpgsql_nodes(tree):
        line = int(node.get("lineno", 1) or 1)
        if kind == "PLpgSQL_stmt_commit":
            found.append((line, "commits", "commit"))
        elif kind == "PLpgSQL_stmt_rollback":
            found.append((line, "rolls back", "rollback"))
        elif kind == "PLpgSQL_stmt_call":
            query = str(node.get("expr", {}).get("PLpgSQL_expr", {}).get("query", ""))
            called = next((c for st in _parse_quietly(query) if (c := _called_procedure(st))), None)
            if called in committing:
                found.append((line, f"calls {called}(), which {committing[called][0]}", "call"))
    return min(found) if found else None


def _body_releases_locks(tree: Any) -> str | None:
    """Whether a SQL statement or expression inside a PL/pgSQL tree releases the session's advisory locks."""
    for kind, node in _plpgsql_nodes(tree):
        if kind != "PLpgSQL_expr":
            continue
        query = str(node.get("query", ""))
        mode = int(node.get("parseMode", 0) or 0)
        sql = query if mode == 0 else "SELECT " + (_ASSIGN.sub("", query, count=1) if mode >= 3 else query)
        for stmt in _parse_quietly(sql):
            found = _releases_locks(stmt, sql)
            if found:
                return found
    return None


@dataclass(frozen=True)
class _Analysis:
    """What the PL/pgSQL analysis found in a statement: why it cannot run in a transaction, if so."""

    non_transactional_reason: str | None = None
    reason_offset: int | None = None
    releases_locks: str | None = None


def _analyse_plpgsql(stmt: Any, text: str, start: int, committing: dict[str, tuple[str, int]]) -> _Analysis:
    """DO blocks and procedures: transaction control (COMMIT/ROLLBACK, nested too) and advisory-lock release.

    A procedure created here whose body commits is remembered in `committing`, so a later CALL of it in the
    same text is known to commit; a CALL of anything else cannot be analysed and stays transactional.
    """
    name = type(stmt).__name__
    if name == "CallStmt":
        called = _called_procedure(stmt)
        if called is not None and called in committing:
            what, offset = committing[called]
            return _Analysis(f"CALL {called}() {what}", offset)
        return _Analysis()
    if name == "DoStmt":
        body = _plpgsql_body(text, stmt.args)
    elif name == "CreateFunctionStmt" and getattr(stmt, "is_procedure", False):
        body = _plpgsql_body(text, stmt.options, language_default="sql")
    else:
        return _Analysis()
    if body is None or not _BODY_HINT.search(body.text):
        return _Analysis()
    tree = _plpgsql_tree(body.text)
    if tree is None:
        return _Analysis()
    control = _body_control(tree, committing)
    if name == "CreateFunctionStmt":
        if control is not None:
            names = [str(getattr(n, "sval", "")) for n in stmt.funcname or ()]
            committing[names[-1]] = (control[1], body.offset_of_line(text, control[0], control[2]))
        return _Analysis()
    releases = _body_releases_locks(tree)
    if control is None:
        return _Analysis(releases_locks=f"{releases} in a DO block" if releases else None)
    line, what, word = control
    released = f"{releases} in a DO block" if releases else None
    return _Analysis(f"DO block {what}", body.offset_of_line(text, line, word), released)


# A word without which no statement is special: nothing here can make a statement non-transactional, control
# a transaction, need a transaction block, release locks, COPY from the client or hold PL/pgSQL. A text without
# any of them (ignoring case, anywhere, comments and strings included) is split by the parser without building
# its syntax tree (`parser.split`: the same parser, so the same statements and the same syntax errors), ~50×
# faster; any doubt falls back to the full analysis. It is searched in the lower-cased text (a case-insensitive
# search is ~4x slower): PostgreSQL folds only ASCII letters in keywords, and lower() folds at least those.
_SPECIAL_WORDS = re.compile(
    r"concurrently|vacuum|system|database|tablespace|subscription|reindex|detach|discard|pg_advisory|"
    r"\b(?:begin|start|commit|end|abort|rollback|savepoint|release|prepare|copy|lock|local|declare|"
    r"transaction|constraints|call|do|procedure|function)\b|\$"
)


def _plain(text: str) -> bool:
    """True when no statement of `text` can be special (see _SPECIAL_WORDS)."""
    return _SPECIAL_WORDS.search(text.lower()) is None


def split(text: str) -> list[Statement]:
    """Split `text` into statements, with offsets and classification.

    Raises SqlSyntaxError with the parser's message and offset when the text does not parse.
    """
    parser = _parser()
    if _plain(text):
        try:
            slices = parser.split(text, with_parser=True, only_slices=True)
        except parser.ParseError as exc:
            raise _syntax_error(parser, text, exc) from None
        return [Statement(text=text[sl], offset=sl.start or 0, kind="") for sl in slices if text[sl].strip()]
    try:
        raws = parser.parse_sql(text)
    except parser.ParseError as exc:
        raise _syntax_error(parser, text, exc) from None
    statements: list[Statement] = []
    committing: dict[str, tuple[str, int]] = {}  # procedures created in this text whose body commits
    for raw in raws:
        start = raw.stmt_location
        end = len(text) if raw.stmt_len == 0 else start + raw.stmt_len
        body = text[start:end]
        stripped = body.lstrip()
        start += len(body) - len(stripped)
        body = stripped.rstrip()
        if not body:
            continue
        statements.append(_statement(raw.stmt, text, body, start, committing))
    return statements


def _statement(stmt: Any, text: str, body: str, start: int, committing: dict[str, tuple[str, int]]) -> Statement:
    kind = type(stmt).__name__
    tx: str | None = None
    if kind == "TransactionStmt":
        tx = _TX_KINDS.get(int(stmt.kind), "other")
    copy_client = kind == "CopyStmt" and stmt.filename is None and not getattr(stmt, "is_program", False)
    reason = _why_non_transactional(stmt)
    analysis = _analyse_plpgsql(stmt, text, start, committing) if reason is None else _Analysis(reason, start)
    return Statement(
        text=body,
        offset=start,
        kind=kind,
        non_transactional=analysis.non_transactional_reason is not None,
        transaction_control=tx,
        copy_client=copy_client,
        non_transactional_reason=analysis.non_transactional_reason,
        reason_offset=analysis.reason_offset,
        transaction_only=_transaction_only(stmt, tx),
        releases_locks=_releases_locks(stmt, body) or analysis.releases_locks,
        transaction_modes=_transaction_modes(stmt) if tx in ("begin", "start") else (),
    )


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
