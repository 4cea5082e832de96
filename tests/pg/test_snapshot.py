"""Schema snapshots against a real server: stable across databases and runs, history table excluded,
drift found, and a missing/old/failing pg_dump reported clearly.

Migrations are applied by the real CLI (a subprocess); dump_schema/normalise/diff run in-process.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from job.config import Settings, load_settings
from job.devserver import find_bindir
from job.errors import ExitCode
from job.history import HistoryTable
from job.snapshot import SnapshotFailed, diff, dump_schema, normalise, objects, write_snapshot
from tests.pg import cli
from tests.pg.cli import ROOT
from tests.pgutil import PgServer, new_database

pytestmark = pytest.mark.pg

HISTORY = HistoryTable("public", "migrate_job_history")

# The same objects in two creation orders. pg_dump 16 orders same-named rules on different tables by OID.
SAME_NAMES = [
    "CREATE TABLE t1 (id int PRIMARY KEY, v text)",
    "CREATE TABLE t2 (id int PRIMARY KEY, v text)",
    "CREATE RULE r AS ON UPDATE TO t1 DO ALSO NOTIFY t1",
    "CREATE RULE r AS ON UPDATE TO t2 DO ALSO NOTIFY t2",
    "ALTER TABLE t1 ADD CONSTRAINT positive CHECK (id > 0) NOT VALID",
    "ALTER TABLE t2 ADD CONSTRAINT positive CHECK (id > 0) NOT VALID",
    "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
    "CREATE TRIGGER same AFTER INSERT ON t1 FOR EACH ROW EXECUTE FUNCTION trg()",
    "CREATE TRIGGER same AFTER INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION trg()",
    "COMMENT ON RULE r ON t1 IS 'rule one'",
]
SAME_NAMES_REORDERED = [*SAME_NAMES[:2], SAME_NAMES[3], SAME_NAMES[2], SAME_NAMES[5], SAME_NAMES[4], *SAME_NAMES[6:]]


# ---------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings in this process sees no database or migrate-job variables of the caller."""
    for name in list(os.environ):
        if name.startswith(("PG", "MIGRATE_")) or name in ("DATABASE_URL", "TEST_DATABASE_URL"):
            monkeypatch.delenv(name)


@pytest.fixture
def pg_dump(pg_server: PgServer) -> Path:
    """The pg_dump of the test PostgreSQL installation (skips if it is older than the server)."""
    bindir = os.environ.get("TEST_PG_BINDIR")
    path = find_bindir(Path(bindir) if bindir else None) / "pg_dump"
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        server_major = conn.info.server_version // 10000
    if int(out.split()[2].split(".")[0]) < server_major:
        pytest.skip(f"{path} ({out.strip()}) is older than the server (PostgreSQL {server_major})")
    return path


@pytest.fixture
def second_url(pg_server: PgServer) -> Iterator[str]:
    """Another new empty database on the same server, dropped after the test."""
    with new_database(pg_server) as url:
        yield url


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    """A copy of the repository's example migrations."""
    return Path(shutil.copytree(ROOT / "migrations", tmp_path / "migrations"))


def migrate(url: str, directory: Path, **env: str) -> None:
    """Apply the migrations in `directory` with the real CLI; fail the test if it does not exit 0."""
    result = cli.run(
        url,
        "migrate",
        cwd=directory.parent,
        MIGRATE_DIR=str(directory),
        MIGRATE_TERMINATION_LOG=str(directory.parent / "termination-log"),
        **env,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def settings_for(url: str, pg_dump: Path | str) -> Settings:
    """In-process settings for `url` with an explicit pg_dump."""
    return load_settings(database_url=url, pg_dump=str(pg_dump))


def live(url: str, pg_dump: Path | str, table: HistoryTable = HISTORY) -> str:
    """The normalised schema of `url`, dumped in-process."""
    with psycopg.connect(url, autocommit=True) as conn:
        return normalise(dump_schema(settings_for(url, pg_dump), conn, table))


def execute(url: str, *statements: str) -> None:
    """Run statements one by one (autocommit)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def fake_pg_dump(directory: Path, body: str) -> Path:
    """An executable shell script called pg_dump in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "pg_dump"
    script.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def server_major(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.info.server_version // 10000


# ---------------------------------------------------------------------------- stability


def test_snapshot_is_identical_across_databases_and_runs(
    db_url: str, second_url: str, migrations: Path, pg_dump: Path, tmp_path: Path
) -> None:
    """Two fresh databases with the same migrations give byte-identical snapshots, run after run."""
    migrate(db_url, migrations)
    migrate(second_url, migrations)
    first = live(db_url, pg_dump)
    assert live(db_url, pg_dump) == first
    assert live(second_url, pg_dump) == first
    assert "CREATE TABLE public.accounts (" in first
    assert "CREATE TRIGGER projects_audit" in first
    assert "-- Dumped " not in first
    assert "\\restrict" not in first
    assert first.endswith("--\n-- PostgreSQL database dump complete\n--\n")
    assert not diff(first, live(second_url, pg_dump))

    path = tmp_path / "db" / "schema.sql"
    assert write_snapshot(path, first) is True
    assert write_snapshot(path, live(second_url, pg_dump)) is False
    assert path.read_bytes() == first.encode()


def test_history_table_is_not_in_the_snapshot(db_url: str, migrations: Path, pg_dump: Path) -> None:
    """The tool's own history table (and its primary key) is excluded from the snapshot."""
    migrate(db_url, migrations)
    text = live(db_url, pg_dump)
    assert "migrate_job_history" not in text
    assert not [key for key in objects(text) if "migrate_job_history" in key[2]]


def test_quoted_history_table_is_excluded_exactly(db_url: str, migrations: Path, pg_dump: Path) -> None:
    """A mixed-case history table with `$` in another schema is excluded; a same-named table elsewhere is not."""
    table = HistoryTable("Ops", "Hist$Table")
    migrate(db_url, migrations, MIGRATE_HISTORY_SCHEMA=table.schema, MIGRATE_HISTORY_TABLE=table.table)
    execute(db_url, 'CREATE TABLE public."Hist$Table" (id int)', 'CREATE TABLE "Ops"."HistXTable" (id int)')
    keys = set(objects(live(db_url, pg_dump, table)))
    assert ("TABLE", "Ops", "Hist$Table") not in keys
    assert ("TABLE", "public", "Hist$Table") in keys
    assert ("TABLE", "Ops", "HistXTable") in keys
    assert ("SCHEMA", "", "Ops") in keys


def test_same_objects_in_another_creation_order_give_the_same_snapshot(
    db_url: str, second_url: str, pg_dump: Path
) -> None:
    """Same-named rules, constraints and triggers created in another order (other OIDs) dump alike."""
    execute(db_url, *SAME_NAMES)
    execute(second_url, *SAME_NAMES_REORDERED)
    first = live(db_url, pg_dump)
    assert live(second_url, pg_dump) == first
    assert first.index("-- Name: t1 r;") < first.index("-- Name: RULE r ON t1;") < first.index("-- Name: t2 r;")


def test_snapshot_loads_into_an_empty_database_and_dumps_the_same(
    db_url: str, second_url: str, migrations: Path, pg_dump: Path
) -> None:
    """The snapshot is plain SQL: loaded into an empty database it gives the same snapshot back."""
    migrate(db_url, migrations)
    text = live(db_url, pg_dump)
    with psycopg.connect(second_url, autocommit=True) as conn:
        conn.execute(text.encode())
    assert live(second_url, pg_dump) == text


# ---------------------------------------------------------------------------- drift


def test_diff_finds_objects_changed_by_hand(db_url: str, migrations: Path, pg_dump: Path) -> None:
    """A table created by hand is added, a column added by hand changes its table, dropped objects are removed."""
    migrate(db_url, migrations)
    snapshot = live(db_url, pg_dump)
    execute(
        db_url,
        "CREATE TABLE hand_made (id int)",
        "ALTER TABLE accounts ADD COLUMN nickname text",
        "DROP INDEX users_email_domain_idx",
        "DROP TRIGGER projects_audit ON projects",
    )
    drift = diff(snapshot, live(db_url, pg_dump))
    assert drift.added == [("TABLE", "public", "hand_made")]
    assert drift.changed == [("TABLE", "public", "accounts")]
    assert drift.removed == [
        ("INDEX", "public", "users_email_domain_idx"),
        ("TRIGGER", "public", "projects projects_audit"),
    ]
    assert drift.lines() == [
        "added TABLE public.hand_made",
        "removed INDEX public.users_email_domain_idx",
        "removed TRIGGER public.projects projects_audit",
        "changed TABLE public.accounts",
    ]
    assert "    +    nickname text" in drift.lines(details=True)


def test_no_drift_right_after_migrate(db_url: str, migrations: Path, pg_dump: Path) -> None:
    """Data changes and a rerun of migrate are not drift."""
    migrate(db_url, migrations)
    snapshot = live(db_url, pg_dump)
    execute(db_url, "INSERT INTO plans VALUES ('solo', 'Solo', 1)")
    migrate(db_url, migrations)
    assert not diff(snapshot, live(db_url, pg_dump))


# ---------------------------------------------------------------------------- pg_dump problems


def test_pg_dump_older_than_the_server_is_refused(db_url: str, tmp_path: Path) -> None:
    """A pg_dump older than the server fails clearly (both versions named, exit 2) and is never run to dump."""
    ran = tmp_path / "dumped"
    old = fake_pg_dump(
        tmp_path / "old",
        f'if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 9.6"; exit 0; fi\ntouch "{ran}"\nexit 0',
    )
    major = server_major(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(SnapshotFailed) as caught:
        dump_schema(settings_for(db_url, old), conn, HISTORY)
    message = caught.value.message
    assert f"pg_dump 9.6 ({old}) is older than the server (PostgreSQL {major}." in message
    assert f"needs pg_dump {major} or newer" in message
    assert "MIGRATE_PG_DUMP" in message
    assert caught.value.exit_code == ExitCode.CONFIG
    assert caught.value.fields["pg_dump_version"] == "9.6"
    assert not ran.exists()


def test_missing_pg_dump_is_refused(db_url: str, tmp_path: Path) -> None:
    """A pg_dump that does not exist fails clearly (exit 2), naming the version needed and MIGRATE_PG_DUMP."""
    missing = tmp_path / "nowhere" / "pg_dump"
    major = server_major(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(SnapshotFailed) as caught:
        dump_schema(settings_for(db_url, missing), conn, HISTORY)
    message = caught.value.message
    assert message.startswith(f"pg_dump not found ('{missing}')")
    assert f"needs pg_dump {major} or newer" in message
    assert "MIGRATE_PG_DUMP" in message
    assert caught.value.exit_code == ExitCode.CONFIG


def test_failing_pg_dump_reports_its_error(db_url: str, tmp_path: Path, pg_dump: Path) -> None:
    """pg_dump exiting non-zero fails with its exit code and its last error line."""
    failing = fake_pg_dump(
        tmp_path / "failing",
        f'if [ "$1" = "--version" ]; then exec "{pg_dump}" --version; fi\n'
        'echo "pg_dump: error: query failed: permission denied for table secrets" >&2\nexit 1',
    )
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(SnapshotFailed) as caught:
        dump_schema(settings_for(db_url, failing), conn, HISTORY)
    assert caught.value.message == (
        "pg_dump --schema-only failed (exit 1): pg_dump: error: query failed: permission denied for table secrets"
    )


def test_password_reaches_pg_dump_by_environment_only(db_url: str, tmp_path: Path, pg_dump: Path) -> None:
    """pg_dump gets the password in PGPASSWORD (never on its command line) and names itself in PGAPPNAME."""
    password = str(conninfo_to_dict(db_url).get("password") or "s3cret-Snapshot")
    dsn = make_conninfo(db_url, password=password)
    args, env = tmp_path / "args", tmp_path / "env"
    wrapper = fake_pg_dump(
        tmp_path / "wrapper",
        f'printf "%s\\n" "$@" >> "{args}"\nprintf "%s %s" "$PGPASSWORD" "$PGAPPNAME" > "{env}"\nexec "{pg_dump}" "$@"',
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        text = normalise(dump_schema(settings_for(dsn, wrapper), conn, HISTORY))
    assert "PostgreSQL database dump complete" in text
    assert password not in args.read_text()
    assert "--schema-only" in args.read_text()
    assert env.read_text() == f"{password} migrate-job:snapshot"
    assert '--exclude-table="public"."migrate_job_history"' in args.read_text()
