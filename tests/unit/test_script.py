"""Pure tests of job.script: the exact text sent for one migration, a pipeline and a single transaction, and
which statement of which migration each server result (or error position) belongs to."""

from __future__ import annotations

import pytest

from job.script import (
    FLUSH_SQL,
    MARK_START,
    SESSION_RESET,
    Block,
    Script,
    Session,
    build,
    chunks,
    literal,
    session_sql,
)
from job.sqlscan import Statement, split

STMT_SETS: list[list[str]] = [
    [],
    ["create table t (a int)"],
    ["create table t (a int)", "insert into t values (1)", "create index i on t (a)"],
    ["select 1 -- trailing comment", "select 2"],
    ["insert into t values ('héllo 😀')", "select 'ü' -- ü", "select 3"],
    ["do $$ begin perform 1; perform 2; end $$", "select $fn$;$fn$"],
]
SESSION = Session((("client_connection_check_interval", "2000"),), "select 'lock check'")


def statements(texts: list[str]) -> list[Statement]:
    out: list[Statement] = []
    for text in texts:
        (s,) = split(text)
        out.append(s)
    return out


def block(texts: list[str], n: int = 1, lock_ms: int = 5000, statement_ms: int = 0) -> Block:
    return Block(statements(texts), lock_ms, statement_ms, f"insert into history values ({n})", (("own.n", str(n)),))


def parsed(script: Script) -> list[str]:
    """The statements PostgreSQL's parser sees in the script text (what the server will run)."""
    return [s.text for s in split(script.text)]


def migration_part(texts: list[str], n: int) -> list[str]:
    return [
        *SESSION_RESET,
        "SELECT pg_catalog.set_config('lock_timeout', '5000', true), "
        "pg_catalog.set_config('statement_timeout', '0', true), "
        "pg_catalog.set_config('client_connection_check_interval', '2000', true), "
        f"pg_catalog.set_config('own.n', '{n}', true), {MARK_START}",
        *texts,
        "RESET ROLE",
        "select 'lock check'",
        f"insert into history values ({n})",
    ]


@pytest.mark.parametrize("texts", STMT_SETS)
def test_one_migration_is_one_transaction_with_its_history_row(texts: list[str]) -> None:
    """BEGIN, the session reset and settings, the statements, the lock check, the history row, COMMIT."""
    script = build([block(texts)], SESSION)
    assert parsed(script) == ["BEGIN", *migration_part(texts, 1), "COMMIT"]
    assert len(script.pieces) == len(parsed(script))  # one result per piece


def test_pipeline_commits_each_migration_and_flushes_between() -> None:
    """Several migrations: each its own transaction; a flushing notice after every COMMIT but the last."""
    script = build([block(["select 1"], 1), block(["select 2"], 2)], SESSION)
    assert parsed(script) == [
        "BEGIN",
        *migration_part(["select 1"], 1),
        "COMMIT",
        FLUSH_SQL,
        "BEGIN",
        *migration_part(["select 2"], 2),
        "COMMIT",
    ]
    commits = [i for i, p in enumerate(script.pieces) if p.role == "commit"]
    assert [script.committed_by(i) for i in commits] == [(0,), (1,)]
    assert script.migration_count() == 2


def test_single_transaction_commits_everything_at_once() -> None:
    """--single-transaction: one BEGIN, every migration's part, one COMMIT that commits them all."""
    script = build([block(["select 1"], 1), block(["select 2"], 2)], SESSION, single_transaction=True)
    assert parsed(script) == ["BEGIN", *migration_part(["select 1"], 1), *migration_part(["select 2"], 2), "COMMIT"]
    last = len(script.pieces) - 1
    assert script.committed_by(last) == (0, 1)
    assert all(script.committed_by(i) == () for i in range(last))


@pytest.mark.parametrize("texts", STMT_SETS)
def test_pieces_point_at_their_statements(texts: list[str]) -> None:
    """Every migration statement's piece records where its text sits in the script and which it is."""
    stmts = statements(texts)
    script = build([Block(stmts, 0, 0, "select 'h'")], Session())
    mine = [p for p in script.pieces if p.role == "sql"]
    assert [p.stmt for p in mine] == stmts
    for p in mine:
        assert p.stmt is not None
        assert script.text[p.offset : p.offset + len(p.stmt.text)] == p.stmt.text


@pytest.mark.parametrize("texts", [t for t in STMT_SETS if t])
def test_error_after_k_results_is_the_kth_piece(texts: list[str]) -> None:
    """`completed` results before an error name the failing piece: its statement and number in its migration."""
    script = build([block(["select 0"], 1), block(texts, 2)], SESSION)
    for index, piece in enumerate(script.pieces):
        where, stmt, offset, within = script.attribute(index, None)
        assert (where, stmt, offset) == (index, piece.stmt, 0)
        if piece.role == "sql" and piece.mig == 1:
            assert piece.stmt is not None and texts[within] == piece.stmt.text


@pytest.mark.parametrize("texts", [t for t in STMT_SETS if t])
def test_error_position_maps_into_the_statement(texts: list[str]) -> None:
    """A server error position (1-based, characters) inside a statement gives that statement and the offset."""
    script = build([block(texts)], SESSION)
    for index, piece in enumerate(script.pieces):
        if piece.stmt is None:
            continue
        for j in range(len(piece.stmt.text)):
            assert script.attribute(index, piece.offset + j + 1)[:3] == (index, piece.stmt, j)


def test_error_position_in_another_migration_is_ignored() -> None:
    """A position that points outside the failing migration does not move the blame to another migration."""
    script = build([block(["select 1"], 1), block(["select 2"], 2)], SESSION)
    second = next(i for i, p in enumerate(script.pieces) if p.role == "sql" and p.mig == 1)
    first_stmt = next(p for p in script.pieces if p.role == "sql" and p.mig == 0)
    assert script.attribute(second, first_stmt.offset + 1)[0] == second


def test_non_transactional_prelude_uses_session_settings() -> None:
    """Outside a transaction the job resets the session and sets its values for the session, in one statement."""
    text = session_sql(SESSION, 250, 60_000, (("application_name", "x"),))
    assert [s.text for s in split(text)] == [
        *SESSION_RESET,
        "SELECT pg_catalog.set_config('lock_timeout', '250', false), "
        "pg_catalog.set_config('statement_timeout', '60000', false), "
        "pg_catalog.set_config('client_connection_check_interval', '2000', false), "
        "pg_catalog.set_config('application_name', 'x', false)",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("back\\slash", "E'back\\\\slash'"),
        ("both\\'", "E'both\\\\'''"),
        ("", "''"),
    ],
)
def test_setting_values_are_quoted_as_psycopg_quotes_them(value: str, expected: str) -> None:
    """A setting's value is a string literal that reads the same with standard_conforming_strings on or off."""
    from psycopg import sql

    assert literal(value) == expected
    assert sql.Literal(value).as_string(None).strip() == expected


@pytest.mark.parametrize(
    ("sizes", "max_bytes", "max_count", "expected"),
    [
        ([], 10, 10, []),
        ([1, 1, 1], 10, 10, [(0, 3)]),
        ([4, 4, 4], 10, 10, [(0, 2), (2, 3)]),
        ([20, 1, 1], 10, 10, [(0, 1), (1, 3)]),
        ([1, 20, 1], 10, 10, [(0, 1), (1, 2), (2, 3)]),
        ([1] * 5, 100, 2, [(0, 2), (2, 4), (4, 5)]),
    ],
)
def test_chunks_bound_bytes_and_count(
    sizes: list[int], max_bytes: int, max_count: int, expected: list[tuple[int, int]]
) -> None:
    """Pipelines are cut by size and count; an item bigger than the bound travels alone."""
    assert chunks(sizes, max_bytes=max_bytes, max_count=max_count) == expected
