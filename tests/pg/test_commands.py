"""The commands as the in-house systems we replace used them: create, rollback --name, status and dry runs on a
new database with a schema file, backups before every change, and what run.finished and GitHub are told.

Each test drives the real CLI as a subprocess against a real PostgreSQL and checks the files and the database.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import cli
from tests.pg.cli import (
    FIXTURES,
    Result,
    applied_versions,
    execute,
    history_exists,
    pg_tool,
    query,
    schema_dump,
    write,
)
from tests.pg.cli import history_by_version as history
from tests.pg.cli import migrate_unattended as migrate
from tests.pg.cli import run_unattended as run
from tests.pgutil import PgServer, new_database

pytestmark = pytest.mark.pg


def snapshot(db_url: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """Schema and history: to show that a command changed nothing."""
    return schema_dump(db_url), history(db_url)


def rolled_back(result: Result) -> list[str]:
    return [str(e["version"]) for e in result.events("migration.rolled_back")]


def finished(result: Result) -> dict[str, Any]:
    [event] = result.events("run.finished")
    return event


@pytest.fixture
def other_db_url(pg_server: PgServer) -> Iterator[str]:
    """A second empty database on the same server (to restore backups into)."""
    with new_database(pg_server) as url:
        yield url


# Seed 004 (migration_manager.py): YYYYMMDD_HHMMSS_name.sql + YYYYMMDD_HHMMSS_name_rollback.sql, own BEGIN/COMMIT.
SEED_004 = {
    "20241227_100000_create_users.sql": "BEGIN;\nCREATE TABLE users (id serial PRIMARY KEY, email text);\nCOMMIT;\n",
    "20241227_100000_create_users_rollback.sql": "BEGIN;\nDROP TABLE IF EXISTS users;\nCOMMIT;\n",
    "20250105_090000_add_new_field.sql": (
        "-- Migration: add_new_field\nBEGIN;\nALTER TABLE users ADD COLUMN new_field VARCHAR(255) NULL;\nCOMMIT;\n"
    ),
    "20250105_090000_add_new_field_rollback.sql": (
        "BEGIN;\nALTER TABLE users DROP COLUMN IF EXISTS new_field;\nCOMMIT;\n"
    ),
    "20250110_120000_add_user_preferences.sql": (
        "BEGIN;\nCREATE TABLE user_preferences (id serial PRIMARY KEY, user_id int REFERENCES users (id));\nCOMMIT;\n"
    ),
    "20250110_120000_add_user_preferences_rollback.sql": "BEGIN;\nDROP TABLE IF EXISTS user_preferences;\nCOMMIT;\n",
}

# Seed 003 (migrate.ts): NNN_name.sql with -- UP / -- DOWN markers.
SEED_003 = {
    "001_initial_schema.sql": "-- UP\nCREATE TABLE users (id text PRIMARY KEY);\n\n-- DOWN\nDROP TABLE users;\n",
}

# Seed 002 (bun migration:create): plain NNN_name.sql files, no down.
SEED_002 = {
    "001_initial_schema.sql": "CREATE TABLE channels (id serial PRIMARY KEY);\n",
    "003_create_migration_tracking.sql": "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY);\n",
}


def columns(db_url: str, table: str) -> set[str]:
    rows = query(db_url, "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
    return {str(r[0]) for r in rows}


# ---------------------------------------------------------------------------- rollback --name (issue 11 §5)


@pytest.mark.parametrize(
    "name",
    [
        "20250105_090000_add_new_field",  # the file's stem: how migration_manager.py takes it
        "20250105_090000_add_new_field.sql",
        "add_new_field",
        "20250105090000",  # the version as the history stores it
        "20250105_090000",  # the version as the file name writes it
    ],
)
def test_rollback_name_accepts_stem_file_name_name_and_version(db_url: str, tmp_path: Path, name: str) -> None:
    """Seed 004's `rollback --name <stem>` (and the file name, the name, the version) rolls back that migration."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder).returncode == 0

    result = run(db_url, "rollback", "--name", name, "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["20250105090000"]
    assert sorted(history(db_url)) == ["20241227100000", "20250110120000"]
    assert "new_field" not in columns(db_url, "users")


def test_rollback_name_shared_by_two_migrations_exits_4_listing_them(db_url: str, tmp_path: Path) -> None:
    """`rollback --name add_index` when two applied migrations are called add_index: exit 4 naming both, no change."""
    folder = write(
        tmp_path / "migrations",
        {
            "0001_create_t.sql": "-- UP\nCREATE TABLE t (a int, b int);\n-- DOWN\nDROP TABLE t;\n",
            "0002_add_index.sql": "-- UP\nCREATE INDEX t_a ON t (a);\n-- DOWN\nDROP INDEX t_a;\n",
            "0003_add_index.sql": "-- UP\nCREATE INDEX t_b ON t (b);\n-- DOWN\nDROP INDEX t_b;\n",
        },
    )
    assert migrate(db_url, folder).returncode == 0
    before = snapshot(db_url)

    result = run(db_url, "rollback", "--name", "add_index", "--dir", str(folder))

    assert result.returncode == 4, result.describe()
    error = result.error_text()
    assert "0002_add_index.sql (2)" in error and "0003_add_index.sql (3)" in error
    assert "version or the file name" in error
    assert rolled_back(result) == []
    assert snapshot(db_url) == before


def test_rollback_name_unknown_exits_4(db_url: str, tmp_path: Path) -> None:
    """A --name no applied migration has exits 4 and changes nothing."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder).returncode == 0
    before = snapshot(db_url)

    result = run(db_url, "rollback", "--name", "20250105_090000_add_old_field", "--dir", str(folder))

    assert result.returncode == 4, result.describe()
    assert "no applied migration has that name" in result.error_text()
    assert snapshot(db_url) == before


# ---------------------------------------------------------------------------- schema file on an empty database


LIBRARY = {
    "0001_authors.sql": "-- UP\nCREATE TABLE authors (id serial PRIMARY KEY);\n-- DOWN\nDROP TABLE authors;\n",
    "0002_books.sql": "-- UP\nCREATE TABLE books (id serial PRIMARY KEY, author_id int);\n-- DOWN\nDROP TABLE books;\n",
    "0003_isbn.sql": "-- UP\nALTER TABLE books ADD COLUMN isbn text;\n-- DOWN\nALTER TABLE books DROP COLUMN isbn;\n",
    "0004_reviews.sql": "-- UP\nCREATE TABLE reviews (id serial PRIMARY KEY);\n-- DOWN\nDROP TABLE reviews;\n",
    "schema.sql": (
        "-- migrate-job: baseline 3\nCREATE TABLE authors (id serial PRIMARY KEY);\n"
        "CREATE TABLE books (id serial PRIMARY KEY, author_id int, isbn text);\n"
    ),
}


def test_status_on_an_empty_database_shows_schema_file_migrations_as_pending(db_url: str, tmp_path: Path) -> None:
    """Before the first migrate, the migrations schema.sql covers are `pending (schema file)`, not applied."""
    folder = write(tmp_path / "migrations", LIBRARY)

    table = run(db_url, "status", "--dir", str(folder))
    as_json = run(db_url, "status", "--format", "json", "--dir", str(folder))

    assert table.returncode == 0, table.describe()
    states = {line.split()[0]: line for line in table.stdout.splitlines()[1:5]}
    for version in ("1", "2", "3"):
        assert "pending (schema file)" in states[version], table.stdout
    assert "pending" in states["4"] and "schema file" not in states["4"]
    assert "applied" not in table.stdout
    assert "1 pending, 3 pending (schema file)" in table.stdout
    assert as_json.returncode == 0, as_json.describe()
    doc = json.loads(as_json.stdout)
    assert [(m["version"], m["state"], m["via"]) for m in doc["migrations"]] == [
        ("1", "pending", "schema file"),
        ("2", "pending", "schema file"),
        ("3", "pending", "schema file"),
        ("4", "pending", None),
    ]
    assert doc["summary"] == {"pending": 4}
    assert doc["schema_file"] == {"file": str(folder / "schema.sql"), "versions": ["1", "2", "3"]}
    assert not history_exists(db_url)


def test_dry_run_on_an_empty_database_prints_and_logs_the_schema_file_load(db_url: str, tmp_path: Path) -> None:
    """`migrate --dry-run` says the schema file would be loaded (file, versions covered), logs it, changes nothing."""
    folder = write(tmp_path / "migrations", LIBRARY)
    before = snapshot(db_url)

    result = migrate(db_url, folder, "--dry-run")

    assert result.returncode == 0, result.describe()
    assert f"-- load the schema file {folder / 'schema.sql'}" in result.stdout
    assert "covers: 1, 2, 3" in result.stdout
    assert "-- 4 reviews" in result.stdout and "-- 3 isbn" not in result.stdout
    [event] = result.events("schema.would_load")
    assert (event["file"], event["baselined"]) == (str(folder / "schema.sql"), ["1", "2", "3"])
    assert snapshot(db_url) == before and not history_exists(db_url)
    applied = migrate(db_url, folder)
    assert applied.returncode == 0 and applied_versions(applied) == ["4"], applied.describe()
    assert len(applied.events("schema.loaded")) == 1


def test_status_after_the_schema_file_was_loaded_shows_applied(db_url: str, tmp_path: Path) -> None:
    """Once migrate has loaded the schema file, its migrations are applied (source schema) in status."""
    folder = write(tmp_path / "migrations", LIBRARY)
    assert migrate(db_url, folder).returncode == 0

    result = run(db_url, "status", "--format", "json", "--dir", str(folder))

    doc = json.loads(result.stdout)
    assert {m["version"]: (m["state"], m["via"]) for m in doc["migrations"]} == {
        "1": ("applied", None),
        "2": ("applied", None),
        "3": ("applied", None),
        "4": ("applied", None),
    }
    assert "schema_file" not in doc


# ---------------------------------------------------------------------------- create (issue 17 §5, issue 15)


def create(folder: Path, *args: str) -> Result:
    """`create ARGS --dir FOLDER` without a database, as a developer runs it."""
    return cli.run(None, "create", *args, "--dir", str(folder), cwd=folder.parent)


def new_names(folder: Path, before: set[str]) -> list[str]:
    return sorted({p.name for p in folder.iterdir()} - before)


def test_create_dash_dash_name_in_a_seed_004_folder_writes_a_timestamped_rollback_pair(
    db_url: str, tmp_path: Path
) -> None:
    """Seed 004's `create --name add_user_settings`: YYYYMMDD_HHMMSS_name.sql + _rollback.sql, after the newest."""
    folder = write(tmp_path / "migrations", SEED_004)
    before = {p.name for p in folder.iterdir()}

    result = create(folder, "--name", "add_user_settings")

    assert result.returncode == 0, result.describe()
    up, down = sorted(new_names(folder, before), key=len)
    match = re.fullmatch(r"(\d{8}_\d{6})_add_user_settings\.sql", up)
    assert match is not None, up
    assert down == f"{match.group(1)}_add_user_settings_rollback.sql"
    assert match.group(1) > "20250110_120000"
    assert result.stdout.splitlines() == [str(folder / up), str(folder / down)]
    (folder / up).write_text("BEGIN;\nCREATE TABLE user_settings (id int);\nCOMMIT;\n")
    (folder / down).write_text("DROP TABLE user_settings;\n")
    applied = migrate(db_url, folder)
    assert applied.returncode == 0, applied.describe()
    undone = run(db_url, "rollback", "--name", up.removesuffix(".sql"), "--dir", str(folder))
    assert undone.returncode == 0 and rolled_back(undone) == [match.group(1).replace("_", "")], undone.describe()


@pytest.mark.parametrize(
    ("files", "args", "expected", "contains"),
    [
        (SEED_003, ["add_user_avatar"], ["002_add_user_avatar.sql"], ["-- UP", "-- DOWN"]),
        (SEED_002, ["add_new_column_to_table"], ["004_add_new_column_to_table.sql"], ["-- UP", "-- DOWN"]),
        (
            {"1_users.up.sql": "CREATE TABLE u (id int);\n", "1_users.down.sql": "DROP TABLE u;\n"},
            ["add_email"],
            ["2_add_email.down.sql", "2_add_email.up.sql"],
            [],
        ),
        ({"V1__users.sql": "CREATE TABLE u (id int);\n"}, ["add_email"], ["V2__add_email.sql"], []),
        (
            {"20240101120000_users.sql": "-- migrate:up\nCREATE TABLE u (id int);\n-- migrate:down\nDROP TABLE u;\n"},
            ["add_email"],
            None,
            ["-- migrate:up", "-- migrate:down"],
        ),
        ({"0001-users.sql": "CREATE TABLE u (id int);\n"}, ["add email"], ["0002-add-email.sql"], ["-- UP"]),
        ({}, ["add_email"], ["0001_add_email.sql"], ["-- UP", "-- DOWN"]),
        (SEED_003, ["add_email", "--style", "rollback"], ["002_add_email.sql", "002_add_email_rollback.sql"], []),
        (SEED_003, ["add_email", "--timestamp"], None, ["-- UP", "-- DOWN"]),
        (
            SEED_004,
            ["add_email", "--sequential"],
            ["20250110120001_add_email.sql", "20250110120001_add_email_rollback.sql"],
            [],
        ),
        ({}, ["add_email", "--style", "updown"], ["000001_add_email.down.sql", "000001_add_email.up.sql"], []),
        ({}, ["add_email", "--style", "flyway"], ["V1__add_email.sql"], []),
    ],
    ids=[
        "seed003-markers",
        "seed002-plain",
        "golang",
        "flyway",
        "dbmate-timestamp",
        "hyphen",
        "empty-folder",
        "style-rollback",
        "timestamp",
        "sequential",
        "empty-updown",
        "empty-flyway",
    ],
)
def test_create_follows_the_folder_convention(
    db_url: str,
    tmp_path: Path,
    files: dict[str, str],
    args: list[str],
    expected: list[str] | None,
    contains: list[str],
) -> None:
    """`create` writes the folder's version style and up/down layout; the folder still loads and migrates."""
    folder = write(tmp_path / "migrations", files)
    before = {p.name for p in folder.iterdir()}

    result = create(folder, *args)

    assert result.returncode == 0, result.describe()
    made = new_names(folder, before)
    if expected is not None:
        assert made == expected
    else:
        assert len(made) == 1 and re.fullmatch(r"\d{14}_add_email\.sql", made[0]), made
    text = (folder / made[0]).read_text()
    for piece in contains:
        assert piece in text
    assert "Created by migrate-job create at" in text
    validated = run(db_url, "validate", "--dir", str(folder))
    assert validated.returncode == 4, validated.describe()  # the new file is still only its template
    assert "empty migration, created at" in validated.output


def test_create_refuses_a_style_that_would_mix_layouts(tmp_path: Path) -> None:
    """`create --style updown` in a folder of numbered files exits 2 saying why, and writes nothing."""
    folder = write(tmp_path / "migrations", SEED_003)

    result = create(folder, "add_email", "--style", "updown")

    assert result.returncode == 2, result.describe()
    assert "mixed folder" in result.error_text()
    assert sorted(p.name for p in folder.iterdir()) == ["001_initial_schema.sql"]


@pytest.mark.parametrize("args", [[], ["a", "--name", "b"]])
def test_create_needs_exactly_one_name(tmp_path: Path, args: list[str]) -> None:
    """`create` without a name, or with two different ones, exits 2 and writes nothing."""
    folder = write(tmp_path / "migrations", SEED_003)

    result = create(folder, *args)

    assert result.returncode == 2, result.describe()
    assert sorted(p.name for p in folder.iterdir()) == ["001_initial_schema.sql"]


def test_create_dry_run_prints_the_files_and_writes_nothing(tmp_path: Path) -> None:
    """`create --dry-run` prints each file it would write with its content; the folder is unchanged."""
    folder = write(tmp_path / "migrations", SEED_004)
    before = sorted(p.name for p in folder.iterdir())

    result = create(folder, "--name", "add_user_settings", "--dry-run")

    assert result.returncode == 0, result.describe()
    written = re.findall(r"^-- would write (\S+)$", result.stdout, re.MULTILINE)
    assert len(written) == 2 and written[1].endswith("_add_user_settings_rollback.sql"), result.stdout
    assert "Created by migrate-job create at" in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == before
    missing = create(tmp_path / "not-yet", "first", "--dry-run")
    assert missing.returncode == 0 and "0001_first.sql" in missing.stdout, missing.describe()
    assert not (tmp_path / "not-yet").exists()


def test_migrate_refuses_a_just_created_empty_migration(db_url: str, tmp_path: Path) -> None:
    """A file `create` made that still has no SQL stops migrate (exit 4, file and creation time); nothing changes."""
    folder = write(tmp_path / "migrations", SEED_003)
    assert create(folder, "add_user_avatar").returncode == 0
    new = folder / "002_add_user_avatar.sql"
    assert migrate(db_url, folder, "--target", "1").returncode == 0
    before = snapshot(db_url)

    result = migrate(db_url, folder)

    assert result.returncode == 4, result.describe()
    error = result.error_text()
    assert re.fullmatch(
        re.escape(str(new)) + r": empty migration, created at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ by migrate-job create; "
        r"write its SQL or delete it",
        error,
    ), error
    assert snapshot(db_url) == before
    assert finished(result)["pending"] == 1
    dry = migrate(db_url, folder, "--dry-run")
    assert dry.returncode == 4 and "empty migration" in dry.output, dry.describe()

    new.write_text(new.read_text().replace("-- UP\n", "-- UP\nALTER TABLE users ADD COLUMN avatar_url text;\n"))
    after = migrate(db_url, folder)
    assert after.returncode == 0 and applied_versions(after) == ["2"], after.describe()
    assert "avatar_url" in columns(db_url, "users")


@pytest.mark.parametrize(("layout", "reserved"), [("golang", "4"), ("numbered", "4")])
def test_comment_only_migrations_written_by_hand_still_apply(
    db_url: str, tmp_path: Path, layout: str, reserved: str
) -> None:
    """Intentionally empty migrations (reserved versions, not made by create) keep applying as before."""
    folder = tmp_path / layout
    shutil.copytree(FIXTURES / layout, folder)

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    assert reserved in applied_versions(result)
    assert history(db_url)[reserved]["status"] == "applied"


# ---------------------------------------------------------------------------- backups before every change


def failed_repairable(db_url: str, folder: Path) -> None:
    """Migration 2 (CREATE UNIQUE INDEX CONCURRENTLY over duplicates) fails; after removing them, repair resumes."""
    write(
        folder,
        {
            "0001_dup.sql": (
                "-- UP\nCREATE TABLE dup (x int);\nINSERT INTO dup VALUES (1), (1), (2);\n-- DOWN\nDROP TABLE dup;\n"
            ),
            "0002_dup_x.sql": "-- UP\nCREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x);\n-- DOWN\nDROP INDEX dup_x;\n",
        },
    )
    failed = migrate(db_url, folder)
    assert failed.returncode == 1, failed.describe()
    assert history(db_url)["2"]["status"] == "failed"
    execute(db_url, "DELETE FROM dup WHERE ctid = (SELECT max(ctid) FROM dup WHERE x = 1)")


def dumps(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.dump")) if directory.is_dir() else []


def restore(dump: Path, into: str) -> None:
    subprocess.run(
        [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", into, str(dump)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def backup_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MIGRATE_BACKUP": "pg-dump",
        "MIGRATE_BACKUP_PATH": str(tmp_path / "backups"),
        "MIGRATE_PG_DUMP": pg_tool("pg_dump"),
        **extra,
    }


def assert_backed_up_before(result: Result, change: str) -> None:
    events = [e.get("event") for e in result.logs]
    assert "backup.finished" in events and change in events, result.describe()
    assert events.index("backup.finished") < events.index(change)
    assert events.count("backup.finished") == 1


def test_rollback_with_pg_dump_backup_takes_a_restorable_dump_first(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    """MIGRATE_BACKUP=pg-dump: `rollback` dumps the database before the first down; the dump restores it."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder).returncode == 0
    before = schema_dump(db_url)

    result = run(db_url, "rollback", "--steps", "2", "--dir", str(folder), **backup_env(tmp_path))

    assert result.returncode == 0, result.describe()
    assert_backed_up_before(result, "migration.rolled_back")
    [dump] = dumps(tmp_path / "backups")
    assert result.events("backup.finished")[0]["location"] == str(dump)
    assert "-v20241227100000-" in dump.name  # tagged with the version the rollback goes back to
    restore(dump, other_db_url)
    assert schema_dump(other_db_url) == before
    assert sorted(history(other_db_url)) == ["20241227100000", "20250105090000", "20250110120000"]


@pytest.mark.parametrize(
    ("command", "change"),
    [
        (["reset"], "migration.rolled_back"),
        (["refresh"], "migration.rolled_back"),
        (["baseline", "--version", "20250110120000"], "history.baselined"),
    ],
)
def test_other_changing_commands_back_up_first(db_url: str, tmp_path: Path, command: list[str], change: str) -> None:
    """reset, refresh (once, before the reset) and baseline take the MIGRATE_BACKUP backup before changing anything."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder, "--target", "20250105090000").returncode == 0

    result = run(db_url, *command, "--dir", str(folder), **backup_env(tmp_path))

    assert result.returncode == 0, result.describe()
    assert_backed_up_before(result, change)
    assert len(dumps(tmp_path / "backups")) == 1


def test_repair_backs_up_first(db_url: str, tmp_path: Path) -> None:
    """`repair` with MIGRATE_BACKUP=pg-dump dumps the database before it touches the failed migration."""
    folder = tmp_path / "migrations"
    failed_repairable(db_url, folder)

    result = run(db_url, "repair", "--dir", str(folder), **backup_env(tmp_path))

    assert result.returncode == 0, result.describe()
    assert_backed_up_before(result, "repair.resuming")
    assert history(db_url)["2"]["status"] == "applied"
    assert len(dumps(tmp_path / "backups")) == 1


def test_nothing_to_roll_back_takes_no_backup(db_url: str, tmp_path: Path) -> None:
    """A rollback with nothing selected changes nothing and takes no backup."""
    folder = write(tmp_path / "migrations", SEED_004)

    result = run(db_url, "rollback", "--dir", str(folder), **backup_env(tmp_path))

    assert result.returncode == 0, result.describe()
    assert result.events("backup.started") == [] and dumps(tmp_path / "backups") == []


# The test server has no TLS (production defaults to sslmode=verify-full).
PRODUCTION = {"MIGRATE_ENV": "production", "MIGRATE_SSLMODE": "disable", "MIGRATE_CONFIRM_PRODUCTION": "yes"}
CHANGING = [
    ["rollback"],
    ["rollback", "--name", "add_new_field"],
    ["reset"],
    ["refresh"],
    ["baseline", "--version", "20250110120000"],
]


@pytest.mark.parametrize("command", CHANGING)
def test_production_without_a_backup_target_refuses_before_changing_anything(
    db_url: str, tmp_path: Path, command: list[str]
) -> None:
    """On production MIGRATE_BACKUP=auto requires a backup: without a target the command exits 2, nothing changed."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder, "--target", "20250105090000").returncode == 0
    before = snapshot(db_url)

    result = run(db_url, *command, "--dir", str(folder), **PRODUCTION)

    assert result.returncode == 2, result.describe()
    assert "MIGRATE_BACKUP=auto on production needs a backup target" in result.error_text()
    assert snapshot(db_url) == before


def failing_pg_dump(tmp_path: Path) -> str:
    """A pg_dump that reports the real version and then fails."""
    version = subprocess.run([pg_tool("pg_dump"), "--version"], capture_output=True, text=True, check=True).stdout
    script = tmp_path / "bin" / "pg_dump"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version.strip()}"; exit 0; fi\n'
        'echo "pg_dump: error: connection lost" >&2\nexit 1\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("command", [["rollback"], ["reset"], ["refresh"], ["repair"]])
def test_production_backup_failure_changes_nothing(db_url: str, tmp_path: Path, command: list[str]) -> None:
    """On production a failing pg_dump stops rollback/reset/refresh/repair with exit 6 before any change."""
    folder = tmp_path / "migrations"
    failed_repairable(db_url, folder)
    if command != ["repair"]:  # a clean history first: both applied
        assert run(db_url, "repair", "--dir", str(folder)).returncode == 0
    before = snapshot(db_url)
    env = {**PRODUCTION, **backup_env(tmp_path, MIGRATE_PG_DUMP=failing_pg_dump(tmp_path))}

    result = run(db_url, *command, "--dir", str(folder), **env)

    assert result.returncode == 6, result.describe()
    assert "pg_dump failed" in result.error_text()
    assert snapshot(db_url) == before
    assert dumps(tmp_path / "backups") == []


def test_production_rollback_with_a_backup_target_proceeds(db_url: str, tmp_path: Path) -> None:
    """On production with MIGRATE_BACKUP_PATH set (auto picks pg-dump) a confirmed rollback backs up, then runs."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder).returncode == 0
    env = {**PRODUCTION, "MIGRATE_BACKUP_PATH": str(tmp_path / "backups"), "MIGRATE_PG_DUMP": pg_tool("pg_dump")}

    result = run(db_url, "rollback", "--steps", "1", "--dir", str(folder), **env)

    assert result.returncode == 0, result.describe()
    assert_backed_up_before(result, "migration.rolled_back")
    assert rolled_back(result) == ["20250110120000"]


# ---------------------------------------------------------------------------- what the run reports


def test_run_finished_after_rollback_counts_rolled_back(db_url: str, tmp_path: Path) -> None:
    """run.finished after a rollback says rolled_back=N (not applied=); after refresh both."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder).returncode == 0

    undone = run(db_url, "rollback", "--steps", "2", "--dir", str(folder))
    redone = run(db_url, "refresh", "--dir", str(folder))

    assert undone.returncode == 0, undone.describe()
    event = finished(undone)
    assert (event["rolled_back"], event["pending"]) == (2, 0) and "applied" not in event
    assert redone.returncode == 0, redone.describe()
    event = finished(redone)
    assert (event["rolled_back"], event["applied"], event["pending"]) == (1, 3, 0)


def test_run_finished_after_a_validation_failure_counts_the_pending_files(db_url: str, tmp_path: Path) -> None:
    """An edited applied file stops the run (exit 4); run.finished still says how many files are pending."""
    folder = write(tmp_path / "migrations", SEED_003)
    assert migrate(db_url, folder).returncode == 0
    (folder / "001_initial_schema.sql").write_text(SEED_003["001_initial_schema.sql"] + "-- edited\n")
    write(folder, {"002_a.sql": "CREATE TABLE a (id int);\n", "003_b.sql": "CREATE TABLE b (id int);\n"})

    result = migrate(db_url, folder)

    assert result.returncode == 4, result.describe()
    assert (finished(result)["applied"], finished(result)["pending"]) == (0, 2)


MIGRATE_TOML = 'dir = "migrations"\n\n[env.dev]\nlock_timeout = "5s"\n'


@pytest.mark.parametrize(
    ("env", "flags", "as_json"),
    [
        ({"MIGRATE_LOG_FORMAT": "console"}, [], False),
        ({"MIGRATE_LOG_FORMAT": "json"}, [], True),
        ({"MIGRATE_LOG_FORMAT": "console"}, ["--log-format", "json"], True),
        ({"MIGRATE_LOG_FORMAT": "json"}, ["--log-format", "console"], False),
    ],
)
def test_unknown_env_error_uses_the_requested_log_format(
    tmp_path: Path, env: dict[str, str], flags: list[str], as_json: bool
) -> None:
    """An unknown --env (an error before settings exist) is logged as MIGRATE_LOG_FORMAT / --log-format asks."""
    (tmp_path / "migrate.toml").write_text(MIGRATE_TOML)
    write(tmp_path / "migrations", SEED_003)

    result = cli.run(None, "migrate", "--env", "uat", *flags, cwd=tmp_path, **env)

    assert result.returncode == 2, result.describe()
    assert "uat" in result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.describe()
    assert all(line.startswith("{") for line in lines) is as_json, result.stdout
    if as_json:
        assert {e["event"] for e in result.logs} == {"config.invalid", "run.finished"}
    else:
        assert "config.invalid" in result.stdout and "run.finished" in result.stdout


def test_edited_file_is_annotated_with_its_path_in_github_actions(db_url: str, tmp_path: Path) -> None:
    """In GitHub Actions a validation failure for an edited file prints `::error file=<path>::`."""
    folder = write(tmp_path / "migrations", SEED_003)
    assert migrate(db_url, folder).returncode == 0
    edited = folder / "001_initial_schema.sql"
    edited.write_text(SEED_003["001_initial_schema.sql"] + "-- edited\n")

    result = migrate(db_url, folder, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))

    assert result.returncode == 4, result.describe()
    [annotation] = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert annotation.startswith("::error file=" + str(edited).replace(":", "%3A") + "::"), annotation
    assert "edited after it was applied" in annotation


def test_rollback_summary_in_github_actions_lists_rolled_back_migrations(db_url: str, tmp_path: Path) -> None:
    """The step summary and termination message of a rollback say what was rolled back, not "applied"."""
    folder = write(tmp_path / "migrations", SEED_004)
    assert migrate(db_url, folder).returncode == 0
    summary, termination = tmp_path / "summary.md", tmp_path / "termination-log"

    result = run(
        db_url,
        "rollback",
        "--steps",
        "1",
        "--dir",
        str(folder),
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
        MIGRATE_TERMINATION_LOG=str(termination),
    )

    assert result.returncode == 0, result.describe()
    assert "Rolled back:" in summary.read_text() and "| 20250110120000 | add_user_preferences |" in summary.read_text()
    assert termination.read_text() == "migrate-job rollback: exit 0: 1 migration(s) rolled back\n"


def test_repair_dry_run_prints_the_repair_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    """`repair --dry-run` says which failed entry it would resume from which statement; nothing changes."""
    folder = tmp_path / "migrations"
    failed_repairable(db_url, folder)
    before = snapshot(db_url)

    result = run(db_url, "repair", "--dry-run", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert "-- would resume version 2 (dup_x), failed at statement 1" in result.stdout
    assert snapshot(db_url) == before


# ---------------------------------------------------------------------------- .env


def test_dot_env_in_the_working_directory_is_read_as_dbmate_and_node_runners_do(db_url: str, tmp_path: Path) -> None:
    """Seed 003's `.env` (DATABASE_URL, DATABASE_SSL) configures a run started in its folder; a variable the
    environment sets wins over the file; config show says where the value came from; MIGRATE_ENV_FILE="" turns
    it off and a MIGRATE_ENV_FILE that does not exist exits 2."""
    project = tmp_path / "project"
    folder = cli.write(project / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    (project / ".env").write_text(
        f"# the app's settings\nDATABASE_URL={db_url}\nDATABASE_SSL=false\nMIGRATE_LOCK_RETRIES=3\n", encoding="utf-8"
    )

    env = cli.clean_env(None)
    del env["MIGRATE_ENV_FILE"]  # the default: ./.env
    result = cli.run_cli("migrate", "--dir", "migrations", env=env, cwd=project)
    assert result.returncode == 0, result.describe()
    assert cli.applied_versions(result) == ["1"]
    shown = cli.run_cli("config", "show", "--format", "json", env={**env, "MIGRATE_LOCK_RETRIES": "7"}, cwd=project)
    assert shown.returncode == 0, shown.describe()
    settings = json.loads(shown.stdout)["settings"]
    assert settings["database_url"]["source"] == "$DATABASE_URL (from .env)"
    assert settings["lock_retries"] == {"value": 7, "source": "$MIGRATE_LOCK_RETRIES"}  # the environment wins

    off = cli.run(None, "status", "--dir", str(folder), cwd=project, MIGRATE_ENV_FILE="")
    assert off.returncode == 2 and "no database configured" in off.error_text(), off.describe()
    missing = cli.run(None, "status", cwd=project, MIGRATE_ENV_FILE="deploy/none.env")
    assert missing.returncode == 2, missing.describe()
    assert missing.error_text() == "env file deploy/none.env not found (MIGRATE_ENV_FILE)"
