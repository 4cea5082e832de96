"""Pure tests of job.apply's statement selection: statements_for, section_transactional, timeouts_ms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from job.apply import timeouts_ms
from job.config import load_settings
from job.errors import SourceError
from job.script import Block, Session, build
from job.source import Migration, load
from job.sqlscan import Statement
from job.statements import section_transactional, statements_for, transaction_modes


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings in these tests come only from explicit arguments."""
    for key in list(os.environ):
        if key.startswith(("MIGRATE_", "PG")) or key == "DATABASE_URL":
            monkeypatch.delenv(key, raising=False)


def load_one(root: Path, body: str, name: str = "0001_t.sql") -> Migration:
    folder = root / "migrations"
    folder.mkdir()
    (folder / name).write_bytes(body.encode("utf-8"))
    (m,) = load(folder)
    return m


def texts(stmts: list[Statement]) -> list[str]:
    return [s.text for s in stmts]


# ---------------------------------------------------------------------------- statements_for


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "begin;\ncreate table t (a int);\ninsert into t values (1);\ncommit;\n",
            ["create table t (a int)", "insert into t values (1)"],
        ),
        ("BEGIN TRANSACTION;\ncreate table t (a int);\nEND;\n", ["create table t (a int)"]),
        ("START TRANSACTION;\ncreate table t (a int);\nCOMMIT WORK;\n", ["create table t (a int)"]),
        (
            "begin;\ncreate table t (a int);\ncommit;\nbegin;\ncreate table u (a int);\ncommit;\n",
            [
                "create table t (a int)",
                "create table u (a int)",
            ],
        ),
        (
            "create table t (a int);\nsavepoint s;\ninsert into t values (1);\nrelease savepoint s;\n",
            ["create table t (a int)", "savepoint s", "insert into t values (1)", "release savepoint s"],
        ),
        ("create table t (a int);\n", ["create table t (a int)"]),
        ("-- nothing to do\n", []),
    ],
)
def test_statements_for_drops_own_transaction_control(tmp_path: Path, body: str, expected: list[str]) -> None:
    """In a transactional migration the file's own BEGIN/COMMIT are dropped; its body joins our transaction."""
    m = load_one(tmp_path, body)
    assert m.transactional
    assert texts(statements_for(m)) == expected


@pytest.mark.parametrize(
    ("body", "line", "word"),
    [
        ("create table t (a int);\nrollback;\n", 2, "ROLLBACK"),
        ("begin;\ncreate table t (a int);\n\nabort;\n", 4, "ABORT"),
        ("create table t (a int);\nprepare transaction 'x';\n", 2, "PREPARE"),
        ("commit prepared 'x';\n", 1, "COMMIT"),
        ("rollback prepared 'x';\n", 1, "ROLLBACK"),
        ("-- migrate-job: transaction=off\nvacuum t;\nrollback;\n", 3, "ROLLBACK"),
    ],
)
def test_statements_for_rejects_rollback(tmp_path: Path, body: str, line: int, word: str) -> None:
    """ROLLBACK / PREPARE TRANSACTION in a file are refused with file:line before anything runs."""
    m = load_one(tmp_path, body)
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert f"0001_t.sql:{line}:" in info.value.message
    assert word in info.value.message
    assert info.value.fields["line"] == line


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("create table t (a int);\ncopy t from stdin;\n", 2),
        ("create table t (a int);\n\nCOPY t (a) FROM STDIN WITH (FORMAT csv);\n", 3),
        ("-- migrate-job: transaction=off\ncopy t from stdin;\n", 2),
    ],
)
def test_statements_for_rejects_copy_from_stdin(tmp_path: Path, body: str, line: int) -> None:
    """COPY ... FROM STDIN (a psql feature) is refused with file:line."""
    m = load_one(tmp_path, body)
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert f"0001_t.sql:{line}:" in info.value.message
    assert "STDIN" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        "copy t from '/srv/import/data.csv';\n",
        "copy t from '/srv/import/stdin_export.csv';\n",
        "insert into t values ('from stdin');\n",
    ],
)
def test_statements_for_allows_server_side_copy(tmp_path: Path, body: str) -> None:
    """COPY from a file on the server (whatever its name) and text mentioning stdin are allowed."""
    m = load_one(tmp_path, body)
    assert len(statements_for(m)) == 1


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("-- migrate-job: transaction=on\ncreate table t (a int);\ncreate index concurrently i on t (a);\n", 3),
        ("-- migrate-job: transaction=on\n\n\nvacuum t;\n", 4),
        ("-- migrate-job: transaction=on\nalter system set work_mem = '64MB';\n", 2),
    ],
)
def test_statements_for_rejects_concurrently_forced_transactional(tmp_path: Path, body: str, line: int) -> None:
    """A statement that cannot run in a transaction, in a migration forced transactional, is refused with file:line."""
    m = load_one(tmp_path, body)
    assert m.transactional
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert f"0001_t.sql:{line}:" in info.value.message
    assert info.value.fields["line"] == line


def test_statements_for_transactional_override(tmp_path: Path) -> None:
    """Forcing transactional=True on an auto non-transactional migration is refused; auto mode runs it."""
    m = load_one(tmp_path, "create index concurrently i on t (a);\n")
    assert not m.transactional
    assert texts(statements_for(m)) == ["create index concurrently i on t (a)"]
    with pytest.raises(SourceError) as info:
        statements_for(m, transactional=True)
    assert "0001_t.sql:1:" in info.value.message


def test_statements_for_down_section_reports_file_line(tmp_path: Path) -> None:
    """Errors in the DOWN section are reported at their line in the whole file."""
    body = "-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\nrollback;\n"
    m = load_one(tmp_path, body)
    assert m.down is not None
    assert texts(statements_for(m)) == ["create table t (a int)"]
    with pytest.raises(SourceError) as info:
        statements_for(m, m.down)
    assert "0001_t.sql:5:" in info.value.message


def test_statements_for_syntax_error(tmp_path: Path) -> None:
    """A syntax error surfaces as a SourceError with file:line:column."""
    m = load_one(tmp_path, "create table t (a int);\n  selec 1;\n")
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert "0001_t.sql:2:3" in info.value.message


@pytest.mark.parametrize(
    ("body", "up_tx", "down_tx"),
    [
        ("-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\n", True, True),
        ("-- UP\ncreate index i on t (a);\n-- DOWN\ndrop index concurrently i;\n", True, False),
        ("-- UP\ncreate index concurrently i on t (a);\n-- DOWN\ndrop index i;\n", False, True),
        ("-- migrate:up\ncreate table t (a int);\n-- migrate:down transaction:false\ndrop table t;\n", True, False),
        ("-- migrate-job: transaction=off\n-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\n", False, False),
    ],
)
def test_section_transactional(tmp_path: Path, body: str, up_tx: bool, down_tx: bool) -> None:
    """Each section's mode comes from the directive, else its marker option, else its own statements."""
    m = load_one(tmp_path, body)
    assert m.down is not None
    assert section_transactional(m, m.up) is up_tx
    assert section_transactional(m, m.down) is down_tx
    assert texts(statements_for(m, m.down, transactional=down_tx)) == [s.text for s in m.down.statements]


# ---------------------------------------------------------------------------- timeouts_ms


@pytest.mark.parametrize(
    ("directives", "lock", "statement", "expected"),
    [
        ("", "5s", "0", (5000, 0)),
        ("", "2s", "1h", (2000, 3_600_000)),
        ("-- migrate-job: lock_timeout=10s", "5s", "0", (10_000, 0)),
        ("-- migrate-job: statement_timeout=1min", "5s", "30s", (5000, 60_000)),
        ("-- migrate-job: lock_timeout=500ms statement_timeout=0", "5s", "30s", (500, 0)),
        ("-- migrate-job: lock_timeout=90", "5s", "0", (90_000, 0)),
        ("-- migrate-job: lock_timeout=0", "5s", "0", (0, 0)),
        ("-- migrate-job: transaction=off", "750ms", "2m", (750, 120_000)),
    ],
)
def test_timeouts_ms_directive_over_setting(
    tmp_path: Path, directives: str, lock: str, statement: str, expected: tuple[int, int]
) -> None:
    """A file's lock_timeout/statement_timeout directives win over the job settings."""
    m = load_one(tmp_path, f"{directives}\ncreate table t (a int);\n")
    settings = load_settings(lock_timeout=lock, statement_timeout=statement)
    assert timeouts_ms(m, settings) == expected


# ---------------------------------------------------------------------------- outside a transaction: what needs one


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("create index concurrently i on t (a);\nlock table t;\n", 2, "LOCK TABLE"),
        ("vacuum t;\nset local work_mem = '1GB';\n", 2, "SET LOCAL"),
        ("-- migrate-job: transaction=off\nsavepoint a;\n", 2, "SAVEPOINT"),
        ("-- +goose NO TRANSACTION\n-- +goose Up\nrelease savepoint a;\n", 3, "RELEASE SAVEPOINT"),
        ("-- postgres-migrations disable-transaction\nrollback to savepoint a;\n", 2, "ROLLBACK TO SAVEPOINT"),
        ("do $$ begin commit; end $$;\ndeclare c cursor for select 1;\n", 2, "DECLARE CURSOR without HOLD"),
        ("-- migrate:up transaction:false\nset transaction isolation level serializable;\n", 2, "SET TRANSACTION"),
        ("vacuum t;\nset constraints all deferred;\n", 2, "SET CONSTRAINTS"),
    ],
)
def test_statement_needing_a_transaction_outside_one_is_refused(
    tmp_path: Path, body: str, line: int, what: str
) -> None:
    """Outside a transaction, LOCK TABLE, SET LOCAL, SAVEPOINT ... are refused before anything runs."""
    m = load_one(tmp_path, body)
    assert not m.transactional
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert info.value.message.startswith(f"{m.path}:{line}: {what} only works inside a transaction block")
    assert str(m.non_transactional_reason) in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        "vacuum t;\nbegin;\nlock table t;\nset local work_mem = '1GB';\ncommit;\n",
        "vacuum t;\ndeclare c cursor with hold for select 1;\nclose c;\n",
        "lock table t;\nset local work_mem = '1GB';\nsavepoint a;\nrelease savepoint a;\n",
    ],
)
def test_statement_needing_a_transaction_is_fine_inside_one(tmp_path: Path, body: str) -> None:
    """Inside the file's own BEGIN … COMMIT, with HOLD, or in a transactional migration, they are accepted."""
    m = load_one(tmp_path, body)
    assert statements_for(m)


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("create table t (a int);\nselect pg_advisory_unlock_all();\n", 2, "pg_advisory_unlock_all()"),
        ("-- migrate-job: transaction=off\nDISCARD ALL;\n", 2, "DISCARD ALL"),
        ("do $$\nbegin\n  perform pg_catalog.pg_advisory_unlock_all();\nend $$;\n", 1, "pg_advisory_unlock_all()"),
    ],
)
def test_releasing_advisory_locks_is_refused(tmp_path: Path, body: str, line: int, what: str) -> None:
    """A migration that would release the runner's advisory lock is refused at validation, with file:line."""
    m = load_one(tmp_path, body)
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert info.value.message.startswith(f"{m.path}:{line}: {what}")
    assert "advisory lock" in info.value.message


# ---------------------------------------------------------------------------- BEGIN options


@pytest.mark.parametrize(
    ("body", "first"),
    [
        (
            "BEGIN ISOLATION LEVEL SERIALIZABLE;\ninsert into t values (1);\nCOMMIT;\n",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        ),
        (
            "start transaction isolation level repeatable read, deferrable;\nselect 1;\ncommit;\n",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, DEFERRABLE",
        ),
        ("begin read write;\nselect 1;\ncommit;\n", "SET TRANSACTION READ WRITE"),
    ],
)
def test_begin_options_become_set_transaction(tmp_path: Path, body: str, first: str) -> None:
    """The file's BEGIN ISOLATION LEVEL … is honoured as SET TRANSACTION, the first statement of its transaction."""
    m = load_one(tmp_path, body)
    stmts = statements_for(m)
    assert stmts[0].text == first
    assert "BEGIN" not in " ".join(s.text.upper() for s in stmts)
    script = build([Block(stmts, 5000, 0, "select 'history'")], Session())
    assert script.text.splitlines()[:2] == ["BEGIN;", first + ";"]  # before any query: MARK_START is a SELECT


@pytest.mark.parametrize(
    ("body", "line", "why"),
    [
        ("begin isolation level serializable, read only;\nselect 1;\ncommit;\n", 1, "READ ONLY cannot be honoured"),
        ("select 1;\nbegin isolation level serializable;\nselect 2;\ncommit;\n", 2, "first statement"),
        ("begin;\nselect 1;\ncommit;\nbegin isolation level serializable;\ncommit;\n", 4, "first statement"),
    ],
)
def test_begin_options_that_cannot_be_honoured_are_refused(tmp_path: Path, body: str, line: int, why: str) -> None:
    """READ ONLY, or options on a BEGIN that is not the first statement, are refused with file:line."""
    m = load_one(tmp_path, body)
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert info.value.message.startswith(f"{m.path}:{line}: ")
    assert why in info.value.message


def test_begin_options_run_as_written_outside_a_transaction(tmp_path: Path) -> None:
    """In a non-transactional file the BEGIN ISOLATION LEVEL … runs as written (the server honours it)."""
    m = load_one(tmp_path, "-- migrate-job: transaction=off\nbegin isolation level serializable;\nselect 1;\ncommit;\n")
    assert texts(statements_for(m))[0] == "begin isolation level serializable"
    assert transaction_modes(m) == ("ISOLATION LEVEL SERIALIZABLE",)


# ---------------------------------------------------------------------------- DO blocks that commit


def test_do_block_that_commits_runs_outside_a_transaction(tmp_path: Path) -> None:
    """A DO block with COMMIT makes the migration non-transactional, saying why and where."""
    body = "create table t (a int);\ndo $$\nbegin\n  insert into t values (1);\n  commit;\nend $$;\n"
    m = load_one(tmp_path, body)
    assert not m.transactional
    assert m.non_transactional_reason == "DO block commits (line 5)"
    assert texts(statements_for(m)) == ["create table t (a int)", body.split(";\n", 1)[1].rstrip().rstrip(";")]


def test_do_block_that_commits_in_a_forced_transaction_is_refused(tmp_path: Path) -> None:
    """`transaction=on` with a DO block that commits is refused (it would fail with 2D000)."""
    m = load_one(tmp_path, "-- migrate-job: transaction=on\ndo $$ begin commit; end $$;\n")
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert info.value.message.startswith(f"{m.path}:2: DO block commits (line 2): this statement cannot run")


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("begin;\ncreate table t (a int);\ncreate index concurrently i on t (a);\ncommit;\n", 3),
        ("-- migrate-job: transaction=off\nstart transaction;\nvacuum t;\ncommit;\n", 3),
        ("begin;\ndo $$ begin commit; end $$;\ncommit;\n", 2),
    ],
)
def test_non_transactional_statement_inside_the_files_own_block_is_refused(
    tmp_path: Path, body: str, line: int
) -> None:
    """CONCURRENTLY, VACUUM or a committing DO between the file's BEGIN and COMMIT is refused before anything runs."""
    m = load_one(tmp_path, body)
    with pytest.raises(SourceError) as info:
        statements_for(m)
    assert info.value.message.startswith(f"{m.path}:{line}: ")
    assert "inside the file's own BEGIN … COMMIT" in info.value.message


# ---------------------------------------------------------------------------- history statements


@pytest.mark.parametrize(
    ("version", "name", "checksum"),
    [
        ("1", "create_users", "ab" * 32),
        ("20240101120000", "it's \\ odd", "cd" * 32),
        ("R__views", "vüe 😀", None),
        ("1.10", "migrate_job_sentinel", "ef" * 32),
        ("2", "x'migrate_job_sentinel_checksum_7f3a9c'", "12" * 32),  # a name holding another sentinel
    ],
)
@pytest.mark.parametrize("down", [False, True])
def test_history_templates_write_what_the_composed_statement_writes(
    version: str, name: str, checksum: str | None, down: bool
) -> None:
    """The run's history statement, filled in per migration, is exactly the one composed for that migration."""
    from psycopg import sql

    from job import history
    from job.apply import HistoryTemplates
    from job.history import HistoryTable
    from job.script import SINCE_MARK_MS

    table = HistoryTable("public", "migrate_job_history")
    base = {"kind": "transactional", "applied_by": "o'neil@host", "batch": 3, "source": "migrate-job", "run_id": "r1"}
    row = {"version": version, "name": name, "checksum": checksum, **base}
    templates = HistoryTemplates(table, {"version": "0", "name": "other", "checksum": "00", **base})
    if down:
        expected = history.delete_row_sql(
            table, version, by="o'neil@host", run_id="r1", returning=sql.SQL(SINCE_MARK_MS)
        )
    else:
        expected = history.applied_row_sql(
            table, row, elapsed=sql.SQL(SINCE_MARK_MS), returning=sql.SQL("execution_ms")
        )
    assert templates.sql(row, down=down) == expected
