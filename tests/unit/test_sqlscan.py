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
        ("copy t from stdin", "CopyStmt"),
        ("do $$ begin end $$", "DoStmt"),
        ("vacuum t", "VacuumStmt"),
        ("begin", "TransactionStmt"),
        ("lock table t", "LockStmt"),
        ("set local lock_timeout = 0", "VariableSetStmt"),
    ],
)
def test_statement_kind(sql: str, kind: str) -> None:
    """A statement that can matter (transaction control, COPY, PL/pgSQL, ...) carries the parser's node name."""
    (stmt,) = split(sql)
    assert stmt.kind == kind


PLAIN_FILES = [
    "select 1",
    "create table t (a int);\ninsert into t values (1);\n",
    "create table t (a int);\n\n-- a trailing comment\n",
    "/* leading */ insert into t values ('é');  -- x\n select 3 -- y",
    "select 1;;; select 2;",
    "alter table t add column b text not null default 'x';\ncomment on column t.b is 'héllo 😀';",
    "create view v as select a from t where a > 1;\ngrant select on v to public;",
]


@pytest.mark.parametrize("text", PLAIN_FILES)
def test_plain_files_split_like_the_full_parse(text: str) -> None:
    """A file with no special word takes the fast path: exactly the statements and offsets of the full parse."""
    from job.sqlscan import _parser, _plain

    assert _plain(text)
    fast = [(s.text, s.offset, s.non_transactional, s.transaction_control) for s in split(text)]
    full = []
    for raw in _parser().parse_sql(text):
        start = raw.stmt_location
        body = text[start : len(text) if raw.stmt_len == 0 else start + raw.stmt_len]
        stripped = body.lstrip()
        if stripped.strip():
            full.append((stripped.rstrip(), start + len(body) - len(stripped), False, None))
    assert fast == full


SPECIAL_WORDS = [
    "concurrently",
    "vacuum",
    "system",
    "database",
    "tablespace",
    "subscription",
    "reindex",
    "detach",
    "discard",
    "pg_advisory",
    "begin",
    "start",
    "commit",
    "end",
    "abort",
    "rollback",
    "savepoint",
    "release",
    "prepare",
    "copy",
    "lock",
    "local",
    "declare",
    "transaction",
    "constraints",
    "call",
    "do",
    "procedure",
    "function",
]


@pytest.mark.parametrize("word", SPECIAL_WORDS)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_a_special_word_in_any_case_takes_the_full_analysis(word: str, case: object) -> None:
    """The quick check sees each word however it is written (PostgreSQL's keywords ignore ASCII case)."""
    from job.sqlscan import _plain

    assert callable(case)
    assert not _plain(f"select 1;\n{case(word)} x;\n")
    assert not _plain("select $q$ 1 $q$")


def test_a_syntax_error_in_a_plain_file_is_found_by_the_fast_path_too() -> None:
    """The fast path uses the same parser: a syntax error is reported with its offset as before."""
    with pytest.raises(SqlSyntaxError) as info:
        split("create table t (a int);\nselect from from t;\n")
    assert info.value.offset > len("create table t (a int);\n")


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


# ---------------------------------------------------------------------------- transaction control in PL/pgSQL

BATCHES = """do $$
declare
  n int;
begin
  for n in 1..10 loop
    insert into t select generate_series(n * 1000, n * 1000 + 999);
    if n % 2 = 0 then
      commit;
    end if;
  end loop;
end
$$"""


@pytest.mark.parametrize(
    ("sql", "reason", "at"),
    [
        ("do $$ begin commit; end $$", "DO block commits", "commit"),
        ("DO $$ BEGIN ROLLBACK; END $$", "DO block rolls back", "ROLLBACK"),
        (BATCHES, "DO block commits", "commit;\n    end if"),
        ("do $$ begin begin begin commit; end; end; end $$", "DO block commits", "commit"),
        ("do $$ begin while true loop exit when true; commit; end loop; end $$", "DO block commits", "commit"),
        ("do language plpgsql $x$ begin commit; end $x$", "DO block commits", "commit"),
        ("do $batch_1$ begin commit; end $batch_1$", "DO block commits", "commit"),
        ("do $täg$ begin commit; end $täg$", "DO block commits", "commit"),
        ("do $\U0001f600$ begin commit; end $\U0001f600$", "DO block commits", "commit"),
        ("do 'begin commit; end'", "DO block commits", "commit"),
        (
            "create procedure p() language plpgsql as $$ begin\n commit;\nend $$;\ncall p()",
            "CALL p() commits",
            "commit;\nend",
        ),
        (
            "create procedure s.batch() language plpgsql as $$ begin rollback; end $$;\ncall s.batch()",
            "CALL batch() rolls back",
            "rollback; end",
        ),
        (
            "create procedure p() language plpgsql as $$ begin commit; end $$;\ndo $$ begin call p(); end $$",
            "DO block calls p(), which commits",
            "call p()",
        ),
    ],
)
def test_transaction_control_in_plpgsql_is_non_transactional(sql: str, reason: str, at: str) -> None:
    """A DO block (or a CALLed procedure created in the same file) that commits cannot run in a transaction."""
    stmt = split(sql)[-1]
    assert stmt.non_transactional
    assert stmt.non_transactional_reason == reason
    assert stmt.reason_offset is not None
    assert sql[stmt.reason_offset :].startswith(at)


@pytest.mark.parametrize(
    "sql",
    [
        "do $$ begin perform 1; end $$",
        "do $$ begin raise notice 'commit'; end $$",
        "do $$ begin -- commit here?\n perform 1; end $$",
        "do $$ begin execute 'commit'; end $$",
        "do language plpython3u $$ plpy.commit() $$",
        "do $$ begin not plpgsql at all; commit; end $$",
        "call p()",
        "call s.unknown_procedure(1)",
        "create procedure p() language plpgsql as $$ begin perform 1; end $$;\ncall p()",
        "create procedure p() language sql as $$ select 1 $$;\ncall p()",
        "create function f() returns void language plpgsql as $$ begin perform 1; end $$",
        "create procedure p() language plpgsql as $$ begin commit; end $$",
    ],
)
def test_plpgsql_without_transaction_control_stays_transactional(sql: str) -> None:
    """Bodies without COMMIT/ROLLBACK, other languages, unparsable bodies and unknown CALLs stay transactional."""
    stmt = split(sql)[-1]
    assert not stmt.non_transactional
    assert stmt.non_transactional_reason is None


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("create index concurrently i on t (a)", "CREATE INDEX CONCURRENTLY"),
        ("drop index concurrently i", "DROP INDEX CONCURRENTLY"),
        ("reindex (concurrently) table t", "REINDEX CONCURRENTLY"),
        ("reindex schema s", "REINDEX SCHEMA"),
        ("vacuum full t", "VACUUM"),
        ("alter system set work_mem = '64MB'", "ALTER SYSTEM"),
        ("create database app", "CREATE DATABASE"),
        ("alter table t detach partition p concurrently", "DETACH PARTITION CONCURRENTLY"),
    ],
)
def test_non_transactional_reason_names_the_statement(sql: str, reason: str) -> None:
    """Each statement that cannot run in a transaction says why, pointing at itself."""
    (stmt,) = split(sql)
    assert (stmt.non_transactional_reason, stmt.reason_offset) == (reason, 0)


# ---------------------------------------------------------------------------- needs a transaction block


@pytest.mark.parametrize(
    ("sql", "needs"),
    [
        ("lock table t in access exclusive mode", "LOCK TABLE"),
        ("LOCK t", "LOCK TABLE"),
        ("set local lock_timeout = '1s'", "SET LOCAL"),
        ("SET LOCAL search_path TO app", "SET LOCAL"),
        ("set transaction isolation level serializable", "SET TRANSACTION"),
        ("set transaction snapshot '00000003-0000001B-1'", "SET TRANSACTION"),
        ("set constraints all deferred", "SET CONSTRAINTS"),
        ("savepoint a", "SAVEPOINT"),
        ("release savepoint a", "RELEASE SAVEPOINT"),
        ("rollback to savepoint a", "ROLLBACK TO SAVEPOINT"),
        ("declare c cursor for select 1", "DECLARE CURSOR without HOLD"),
        ("declare c scroll cursor without hold for select 1", "DECLARE CURSOR without HOLD"),
        ("declare c cursor with hold for select 1", None),
        ("set lock_timeout = '1s'", None),
        ("set session characteristics as transaction read only", None),
        ("begin", None),
        ("commit", None),
        ("select 1", None),
    ],
)
def test_statements_that_need_a_transaction_block(sql: str, needs: str | None) -> None:
    """Statements that fail or do nothing outside a transaction block are recognised."""
    (stmt,) = split(sql)
    assert stmt.transaction_only == needs


# ---------------------------------------------------------------------------- releasing advisory locks


@pytest.mark.parametrize(
    ("sql", "releases"),
    [
        ("select pg_advisory_unlock_all()", "pg_advisory_unlock_all()"),
        ("SELECT pg_catalog.pg_advisory_unlock_all()", "pg_advisory_unlock_all()"),
        ("select 1 where exists (select pg_advisory_unlock_all())", "pg_advisory_unlock_all()"),
        ('select "pg_advisory_unlock_all"()', "pg_advisory_unlock_all()"),
        ("discard all", "DISCARD ALL"),
        ("do $$ begin perform pg_advisory_unlock_all(); end $$", "pg_advisory_unlock_all() in a DO block"),
        ("do $$ declare b bool; begin b := pg_advisory_unlock_all(); end $$", "pg_advisory_unlock_all() in a DO block"),
        ("do $$ begin discard all; end $$", "DISCARD ALL in a DO block"),
        ("discard plans", None),
        ("discard temp", None),
        ("select pg_advisory_unlock(42)", None),
        ("select 'pg_advisory_unlock_all()'", None),
        ("select 1 -- pg_advisory_unlock_all()", None),
        ("comment on table t is 'calls pg_advisory_unlock_all()'", None),
    ],
)
def test_statements_that_release_advisory_locks(sql: str, releases: str | None) -> None:
    """pg_advisory_unlock_all() calls and DISCARD ALL are found in the parse tree, not in comments or strings."""
    (stmt,) = split(sql)
    assert stmt.releases_locks == releases


# ---------------------------------------------------------------------------- BEGIN options


@pytest.mark.parametrize(
    ("sql", "modes"),
    [
        ("begin", ()),
        ("begin isolation level serializable", ("ISOLATION LEVEL SERIALIZABLE",)),
        ("BEGIN ISOLATION LEVEL REPEATABLE READ", ("ISOLATION LEVEL REPEATABLE READ",)),
        (
            "start transaction isolation level serializable, read only, deferrable",
            ("ISOLATION LEVEL SERIALIZABLE", "READ ONLY", "DEFERRABLE"),
        ),
        ("start transaction read write", ("READ WRITE",)),
        ("begin not deferrable", ("NOT DEFERRABLE",)),
        ("commit", ()),
    ],
)
def test_begin_options_are_kept(sql: str, modes: tuple[str, ...]) -> None:
    """The options of a file's own BEGIN / START TRANSACTION are read so they can be honoured."""
    (stmt,) = split(sql)
    assert stmt.transaction_modes == modes
