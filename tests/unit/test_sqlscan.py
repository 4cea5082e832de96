"""Pure tests of job.sqlscan: splitting, offsets, classification. No database."""

from __future__ import annotations

import pytest

from job.sqlscan import SqlSyntaxError, Statement, line_col, split

# ---------------------------------------------------------------------------- splitting

SPLIT_CASES: list[tuple[str, list[str]]] = [
    ("select 1", ["select 1"]),
    ("select 1;", ["select 1"]),
    ("select 1;\nselect 2", ["select 1", "select 2"]),
    ("select 'a;b'; select 2", ["select 'a;b'", "select 2"]),
    ("select 'it''s; fine'; select 2;", ["select 'it''s; fine'", "select 2"]),
    ("select E'a\\';b'; select 2;", ["select E'a\\';b'", "select 2"]),
    ('select "a;b" from t; select 2;', ['select "a;b" from t', "select 2"]),
    ("select $$a;b$$; select 2;", ["select $$a;b$$", "select 2"]),
    (
        "create function f() returns int language sql as $fn$ select 1; select 2; $fn$;\nselect 3;",
        ["create function f() returns int language sql as $fn$ select 1; select 2; $fn$", "select 3"],
    ),
    (
        "create function g() returns text language sql as $outer$ select $$;$$ $outer$; select 4",
        ["create function g() returns text language sql as $outer$ select $$;$$ $outer$", "select 4"],
    ),
    (
        "do $$ begin perform 1; perform 2; end $$;\nselect 1;",
        ["do $$ begin perform 1; perform 2; end $$", "select 1"],
    ),
    (
        "do $body$ begin raise notice 'x;'; end $body$ language plpgsql;",
        ["do $body$ begin raise notice 'x;'; end $body$ language plpgsql"],
    ),
    (
        "-- first; comment\nselect 1; /* block; comment */ select 2; -- trailing; comment\n",
        ["select 1", "select 2"],
    ),
    ("select 1; -- a; b\nselect 2;", ["select 1", "select 2"]),
    ("select 1;;select 2", ["select 1", "select 2"]),
    ("-- only a comment\n", []),
    ("/* only a block comment */", []),
    ("-- a\n-- b\n", []),
    ("", []),
    ("   \n", []),
    (";;", []),
]


@pytest.mark.parametrize(("sql", "expected"), SPLIT_CASES)
def test_split_statement_texts(sql: str, expected: list[str]) -> None:
    """Semicolons inside strings, dollar quotes, DO blocks and comments do not split a statement."""
    assert [s.text for s in split(sql)] == expected


@pytest.mark.parametrize(("sql", "expected"), SPLIT_CASES)
def test_split_offsets_point_at_statement_text(sql: str, expected: list[str]) -> None:
    """Each statement's offset is where its text starts in the input, so errors map to the right place."""
    for stmt in split(sql):
        assert sql[stmt.offset : stmt.offset + len(stmt.text)] == stmt.text


@pytest.mark.parametrize(
    ("sql", "index", "line", "col"),
    [
        ("select 1;\nselect 2;", 1, 2, 1),
        ("select 'héllo'; -- ü\nselect 2;", 1, 2, 1),
        ("select 'ééé'; select 2;", 1, 1, 15),
        ("select '😀'; select 2", 1, 1, 13),
        ("-- commentaire: déjà vu\n\n   select 'ß';\n  select 2;", 0, 3, 4),
        ("-- commentaire: déjà vu\n\n   select 'ß';\n  select 2;", 1, 4, 3),
        ("/* ünïcödé */ select 1", 0, 1, 15),
    ],
)
def test_offsets_after_non_ascii_text(sql: str, index: int, line: int, col: int) -> None:
    """Statement offsets are character offsets even when non-ASCII text comes before the statement."""
    stmt = split(sql)[index]
    assert sql[stmt.offset : stmt.offset + len(stmt.text)] == stmt.text
    assert line_col(sql, stmt.offset) == (line, col)


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("abc", 0, (1, 1)),
        ("abc", 2, (1, 3)),
        ("a\nbc", 1, (1, 2)),
        ("a\nbc", 2, (2, 1)),
        ("a\nbc", 3, (2, 2)),
        ("a\n\n\nb", 4, (4, 1)),
        ("ü\nx", 2, (2, 1)),
        ("ab", 99, (1, 3)),
        ("ab", -5, (1, 1)),
        ("", 0, (1, 1)),
    ],
)
def test_line_col(text: str, offset: int, expected: tuple[int, int]) -> None:
    """line_col turns a 0-based character offset into a 1-based (line, column), clamped to the text."""
    assert line_col(text, offset) == expected


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("sql", "non_transactional"),
    [
        ("create index concurrently i on t (a)", True),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)", True),
        ("drop index concurrently i", True),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", True),
        ("reindex index concurrently i", True),
        ("reindex table concurrently t", True),
        ("reindex (concurrently) index i", True),
        ("reindex (verbose, concurrently) table t", True),
        ("reindex schema s", True),
        ("reindex database mydb", True),
        ("reindex system mydb", True),
        ("vacuum", True),
        ("vacuum t", True),
        ("vacuum full t", True),
        ("vacuum analyze t", True),
        ("vacuum (analyze, verbose) t", True),
        ("alter system set work_mem = '64MB'", True),
        ("alter system reset all", True),
        ("create database app", True),
        ("drop database app", True),
        ("create tablespace ts location '/srv/ts'", True),
        ("alter table t detach partition p concurrently", True),
        ("analyze", False),
        ("analyze t", False),
        ("analyze verbose t", False),
        ("create index i on t (a)", False),
        ("drop index i", False),
        ("reindex index i", False),
        ("reindex table t", False),
        ("alter type mood add value 'meh'", False),
        ("alter type mood add value if not exists 'meh' after 'ok'", False),
        ("alter table t detach partition p", False),
        ("alter table t add column b int", False),
        ("create table t (a int)", False),
        ("insert into t values (1)", False),
        ("select 1", False),
        ("do $$ begin perform 1; end $$", False),
    ],
)
def test_non_transactional_detection(sql: str, non_transactional: bool) -> None:
    """Statements PostgreSQL refuses inside a transaction block are flagged; ordinary DDL/DML is not."""
    (stmt,) = split(sql)
    assert stmt.non_transactional is non_transactional


@pytest.mark.parametrize(
    ("sql", "control"),
    [
        ("begin", "begin"),
        ("BEGIN TRANSACTION", "begin"),
        ("begin work", "begin"),
        ("start transaction", "start"),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "start"),
        ("commit", "commit"),
        ("COMMIT WORK", "commit"),
        ("end", "commit"),
        ("end transaction", "commit"),
        ("rollback", "rollback"),
        ("abort", "rollback"),
        ("savepoint sp1", "savepoint"),
        ("release savepoint sp1", "release"),
        ("rollback to savepoint sp1", "rollback_to"),
        ("prepare transaction 'gid'", "prepare"),
        ("commit prepared 'gid'", "commit_prepared"),
        ("rollback prepared 'gid'", "rollback_prepared"),
        ("select 1", None),
        ("create table t (a int)", None),
        ("set local lock_timeout = 1000", None),
    ],
)
def test_transaction_control(sql: str, control: str | None) -> None:
    """Transaction-control statements are recognised so the runner can drop or reject them."""
    (stmt,) = split(sql)
    assert stmt.transaction_control == control
    if control is not None:
        assert stmt.kind == "TransactionStmt"


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("select 1", "SelectStmt"),
        ("create table t (a int)", "CreateStmt"),
        ("insert into t values (1)", "InsertStmt"),
        ("copy t from stdin", "CopyStmt"),
        ("do $$ begin end $$", "DoStmt"),
    ],
)
def test_statement_kind(sql: str, kind: str) -> None:
    """Each statement carries the parser's node name as its kind."""
    (stmt,) = split(sql)
    assert stmt.kind == kind


# ---------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize(
    ("sql", "offset"),
    [
        ("selec 1", 0),
        ("select 1;\nselec 2;", 10),
        ("select 1;\n  create tabel t (a int);", 19),
        ("select 'unterminated", 7),
        ("select $$never closed", 7),
    ],
)
def test_syntax_error_offset(sql: str, offset: int) -> None:
    """A syntax error raises SqlSyntaxError carrying the 0-based offset of the offending token."""
    with pytest.raises(SqlSyntaxError) as info:
        split(sql)
    assert info.value.offset == offset
    assert info.value.message
    assert str(info.value) == info.value.message


@pytest.mark.parametrize(
    ("sql", "token"),
    [
        ("select 'ü';\nselec 2;", "selec 2"),
        ("select 'üüü';\nselec 2;", "selec 2"),
        ("-- déjà vu\nselect 1;\ncreate tabel t ();", "tabel"),
        ("select '😀€';\nselec 2;", "selec 2"),
    ],
)
def test_syntax_error_offset_after_non_ascii(sql: str, token: str) -> None:
    """A syntax error after non-ASCII text still points at the offending token (character offset)."""
    with pytest.raises(SqlSyntaxError) as info:
        split(sql)
    assert info.value.offset == sql.index(token)


@pytest.mark.parametrize(
    "sql",
    [
        "select (",
        "create table t (a int",
        "select 1;\ncreate table t (a int",
        "insert into t values (1,",
    ],
)
def test_syntax_error_at_end_of_input(sql: str) -> None:
    """An unfinished last statement ("at end of input") is a SqlSyntaxError on the last line, not a crash."""
    with pytest.raises(SqlSyntaxError) as info:
        split(sql)
    assert 0 <= info.value.offset <= len(sql)
    assert line_col(sql, info.value.offset)[0] == sql.count("\n") + 1
    assert "end of input" in info.value.message


# ---------------------------------------------------------------------------- terminated


@pytest.mark.parametrize(
    "sql",
    [
        "select 1",
        "select 1 -- note",
        "select 1 -- note\n;",
        "select 1 -- a\n-- b",
        "select 1 /* c */",
        "select 1 /* -- c */",
        "select '--'",
        "create table t (\n  a int -- the a column\n)",
    ],
)
def test_terminated_is_safe_with_trailing_comment(sql: str) -> None:
    """`terminated` appends a semicolon that a trailing `--` comment cannot swallow."""
    (stmt,) = split(sql)
    term = stmt.terminated
    assert term.startswith(stmt.text)
    assert term.endswith(";")
    again = split(term + "\nselect 2")
    assert [s.text for s in again] == [stmt.text, "select 2"]


def test_terminated_plain_statement_gets_plain_semicolon() -> None:
    """A statement without a trailing comment is terminated by a bare `;`."""
    stmt = Statement(text="select 1", offset=0, kind="SelectStmt")
    assert stmt.terminated == "select 1;"
