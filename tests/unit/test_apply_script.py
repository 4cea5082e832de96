"""Pure tests of job.apply's statement selection: statements_for, section_transactional, timeouts_ms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from job.apply import section_transactional, statements_for, timeouts_ms
from job.config import load_settings
from job.errors import SourceError
from job.source import Migration, load
from job.sqlscan import Statement


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
