"""Repeatable migrations in every layout, end to end through the CLI on a real PostgreSQL.

`R__name.sql` beside numbered, dbmate-style, golang-migrate or MIGRATE_FILENAME_PATTERN files, and any `*.sql` of a
`repeatable/` subfolder: applied after every pending versioned migration, by name; re-applied (their history row
overwritten) only when the file changed; never rolled back, forgotten by `reset`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.pg import cli
from tests.pg.cli import (
    FIXTURES,
    applied_versions,
    history_by_version,
    query,
    schema_dump,
    sha256,
    user_relations,
    write,
)
from tests.pg.cli import migrate_unattended as migrate
from tests.pg.cli import run_unattended as run

pytestmark = pytest.mark.pg

NUMBERED = {
    "0001_create_accounts.sql": (
        "-- UP\n"
        "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL,"
        " active boolean NOT NULL DEFAULT true);\n"
        "-- DOWN\n"
        "-- The repeatables read accounts: drop them first (the next migrate re-creates them).\n"
        "DROP VIEW IF EXISTS active_accounts;\n"
        "DROP FUNCTION IF EXISTS account_count();\n"
        "DROP TABLE accounts;\n"
    ),
    "0002_accounts_plan.sql": (
        "-- UP\n"
        "ALTER TABLE accounts ADD COLUMN plan text NOT NULL DEFAULT 'free';\n"
        "-- DOWN\n"
        "DROP VIEW IF EXISTS active_accounts;\n"
        "ALTER TABLE accounts DROP COLUMN plan;\n"
    ),
    "R__active_accounts.sql": (
        "-- UP\nCREATE OR REPLACE VIEW active_accounts AS SELECT id, email FROM accounts WHERE active;\n"
    ),
    "R__account_functions.sql": (
        "-- migrate-job: lock_timeout=2s\n"
        "CREATE OR REPLACE FUNCTION account_count() RETURNS bigint LANGUAGE sql STABLE\n"
        "  AS $$ SELECT count(*) FROM accounts $$;\n"
    ),
}
NUMBERED_ORDER = ["1", "2", "R__account_functions", "R__active_accounts"]


def status(db_url: str, folder: Path) -> dict[str, str]:
    """`status --format json`: the state of each version."""
    result = run(db_url, "status", "--dir", str(folder), "--format", "json")
    assert result.returncode == 0, result.describe()
    rows: list[dict[str, Any]] = json.loads(result.stdout)["migrations"]
    return {str(r["version"]): str(r["state"]) for r in rows}


def audit_events(db_url: str, version: str) -> list[str]:
    """The audit log's events of one version, oldest first."""
    rows = query(db_url, "SELECT event FROM public.migrate_job_history_log WHERE version = %s ORDER BY id", (version,))
    return [str(r[0]) for r in rows]


def view_columns(db_url: str, view: str) -> list[str]:
    rows = query(
        db_url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        (view,),
    )
    return [str(r[0]) for r in rows]


def test_r_files_beside_numbered_files_run_last_once_and_again_when_edited(db_url: str, tmp_path: Path) -> None:
    """R__ files beside numbered files apply after them by name, a rerun is a no-op, an edit re-applies it once."""
    folder = write(tmp_path / "migrations", NUMBERED)

    first = migrate(db_url, folder)

    assert first.returncode == 0, first.describe()
    assert applied_versions(first) == NUMBERED_ORDER
    before = history_by_version(db_url)
    assert before["R__active_accounts"]["checksum"] == sha256(folder / "R__active_accounts.sql")
    assert status(db_url, folder) == dict.fromkeys(NUMBERED_ORDER, "applied")

    rerun = migrate(db_url, folder)

    assert rerun.returncode == 0, rerun.describe()
    assert applied_versions(rerun) == []
    assert history_by_version(db_url) == before

    view = folder / "R__active_accounts.sql"
    view.write_text(view.read_text().replace("id, email", "id, email, plan"))
    validate = run(db_url, "validate", "--dir", str(folder))
    assert validate.returncode == 0, validate.describe()
    assert "1 pending, no problems" in validate.stdout
    assert status(db_url, folder)["R__active_accounts"] == "pending"

    changed = migrate(db_url, folder)

    assert changed.returncode == 0, changed.describe()
    assert applied_versions(changed) == ["R__active_accounts"]
    after = history_by_version(db_url)
    assert after["R__active_accounts"]["checksum"] == sha256(view)
    assert after["R__active_accounts"]["batch"] == before["R__active_accounts"]["batch"] + 1
    assert {k: v for k, v in after.items() if k != "R__active_accounts"} == {
        k: v for k, v in before.items() if k != "R__active_accounts"
    }
    assert audit_events(db_url, "R__active_accounts") == ["applied", "applied"], "one row, overwritten"
    assert view_columns(db_url, "active_accounts") == ["id", "email", "plan"]

    settled = migrate(db_url, folder)
    assert settled.returncode == 0, settled.describe()
    assert applied_versions(settled) == []


def test_reset_rolls_back_the_versioned_forgets_the_repeatables_and_migrate_rebuilds(
    db_url: str, tmp_path: Path
) -> None:
    """`reset` runs only the versioned downs and forgets the R__ rows; the next migrate re-applies everything."""
    folder = write(tmp_path / "migrations", NUMBERED)
    empty = schema_dump(db_url)
    assert migrate(db_url, folder).returncode == 0
    schema = schema_dump(db_url)

    reset = run(db_url, "reset", "--dir", str(folder))

    assert reset.returncode == 0, reset.describe()
    assert [str(e["version"]) for e in reset.events("migration.rolled_back")] == ["2", "1"]
    assert reset.events("rollback.repeatables_forgotten")[0]["versions"] == [
        "R__account_functions",
        "R__active_accounts",
    ]
    assert history_by_version(db_url) == {}
    assert user_relations(db_url) == cli.OWN_RELATIONS
    assert schema_dump(db_url) == empty

    again = migrate(db_url, folder)

    assert again.returncode == 0, again.describe()
    assert applied_versions(again) == NUMBERED_ORDER
    assert schema_dump(db_url) == schema


def test_repeatable_folder_beside_dbmate_files(db_url: str, tmp_path: Path) -> None:
    """Every *.sql of repeatable/ is a repeatable (markers, non-transactional ones too); callbacks are no migrations."""
    folder = write(
        tmp_path / "db" / "migrations",
        {
            "20240101120000_create_items.sql": (
                "-- migrate:up\nCREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price_cents int);\n\n"
                "-- migrate:down\nDROP TABLE items CASCADE;\n"
            ),
            "20240102120000_items_stock.sql": (
                "-- migrate:up\nALTER TABLE items ADD COLUMN stock int NOT NULL DEFAULT 0;\n\n"
                "-- migrate:down\nALTER TABLE items DROP COLUMN stock CASCADE;\n"
            ),
            "afterMigrate__grant.sql": "SELECT 1;\n",
        },
    )
    write(
        folder / "repeatable",
        {
            "item_totals.sql": (
                "-- migrate:up\nCREATE OR REPLACE VIEW item_totals AS SELECT count(*) AS items FROM items;\n"
            ),
            "items_name_index.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name_idx ON items (name);\n",
            "README.md": "views and indexes, re-applied when edited\n",
        },
    )
    write(folder / "callbacks", {"beforeMigrate.sql": "SELECT 1;\n"})

    first = migrate(db_url, folder)

    assert first.returncode == 0, first.describe()
    assert applied_versions(first) == ["20240101120000", "20240102120000", "R__item_totals", "R__items_name_index"]
    rows = history_by_version(db_url)
    assert rows["R__items_name_index"]["kind"] == "non_transactional"
    assert rows["R__item_totals"]["kind"] == "transactional"
    assert query(db_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_name_idx'::regclass") == [(True,)]
    assert applied_versions(migrate(db_url, folder)) == []

    totals = folder / "repeatable" / "item_totals.sql"
    totals.write_text(totals.read_text().replace("count(*) AS items", "count(*) AS items, sum(stock) AS stock"))
    index = folder / "repeatable" / "items_name_index.sql"
    index.write_text("-- by name, for the search page\n" + index.read_text())

    changed = migrate(db_url, folder)

    assert changed.returncode == 0, changed.describe()
    assert applied_versions(changed) == ["R__item_totals", "R__items_name_index"]
    rows = history_by_version(db_url)
    assert {v: r["status"] for v, r in rows.items()} == dict.fromkeys(
        ["20240101120000", "20240102120000", "R__item_totals", "R__items_name_index"], "applied"
    )
    assert rows["R__items_name_index"]["checksum"] == sha256(index)
    assert view_columns(db_url, "item_totals") == ["items", "stock"]


R_TEAMS = (
    "CREATE OR REPLACE FUNCTION team_size(team bigint) RETURNS bigint LANGUAGE plpgsql STABLE AS $$\n"
    "BEGIN\n  RETURN (SELECT count(*) FROM memberships WHERE team_id = team);\nEND $$;\n"
)


def golang_folder(root: Path) -> tuple[Path, dict[str, str], list[str]]:
    folder = root / "golang"
    shutil.copytree(FIXTURES / "golang", folder)
    return folder, {}, [str(n) for n in range(1, 11)]


def pattern_folder(root: Path) -> tuple[Path, dict[str, str], list[str]]:
    folder = write(
        root / "pattern",
        {
            "migration-0001-users.sql": "CREATE TABLE users (id bigserial PRIMARY KEY);\n",
            "migration-0002-memberships.sql": "CREATE TABLE memberships (team_id bigint, user_id bigint);\n",
        },
    )
    return folder, {"MIGRATE_FILENAME_PATTERN": r"migration-(?P<version>\d{4})-(?P<name>[a-z]+)\.sql"}, ["1", "2"]


@pytest.mark.parametrize("make", [golang_folder, pattern_folder], ids=["golang", "pattern"])
def test_r_file_beside_golang_or_pattern_files(db_url: str, tmp_path: Path, make: Any) -> None:
    """An R__ file beside golang-migrate (or MIGRATE_FILENAME_PATTERN) files is applied last and again when edited."""
    folder, env, versioned = make(tmp_path)
    team_size = write(folder, {"R__team_size.sql": R_TEAMS}) / "R__team_size.sql"

    first = migrate(db_url, folder, **env)

    assert first.returncode == 0, first.describe()
    assert applied_versions(first) == [*versioned, "R__team_size"]
    assert applied_versions(migrate(db_url, folder, **env)) == []

    team_size.write_text(team_size.read_text().replace("STABLE", "STABLE PARALLEL SAFE"))
    changed = migrate(db_url, folder, **env)

    assert changed.returncode == 0, changed.describe()
    assert applied_versions(changed) == ["R__team_size"]
    assert history_by_version(db_url)["R__team_size"]["checksum"] == sha256(team_size)
    assert query(db_url, "SELECT proparallel FROM pg_proc WHERE proname = 'team_size'") == [("s",)]


def test_repeatable_defined_twice_is_refused_naming_both_files(db_url: str, tmp_path: Path) -> None:
    """R__views.sql and repeatable/views.sql stop migrate with exit 4 naming both files; nothing is created."""
    folder = write(tmp_path / "migrations", {"0001_a.sql": "CREATE TABLE a (id int);\n", "R__views.sql": "SELECT 1;\n"})
    write(folder / "repeatable", {"views.sql": "SELECT 2;\n"})

    result = migrate(db_url, folder)

    assert result.returncode == 4, result.describe()
    assert result.error_text() == (
        f"{folder / 'repeatable' / 'views.sql'}: repeatable migration 'views' is defined twice (also R__views.sql)"
    )
    assert user_relations(db_url) == set()


def test_repeatable_with_a_down_section_is_refused(db_url: str, tmp_path: Path) -> None:
    """A `-- DOWN` section in a repeatable stops migrate with exit 4 naming file:line, before anything runs."""
    folder = write(
        tmp_path / "migrations",
        {
            "0001_a.sql": "CREATE TABLE a (id int);\n",
            "R__views.sql": "-- UP\nCREATE VIEW v AS SELECT * FROM a;\n-- DOWN\nDROP VIEW v;\n",
        },
    )

    result = migrate(db_url, folder)

    assert result.returncode == 4, result.describe()
    assert result.error_text().startswith(f"{folder / 'R__views.sql'}:3: '-- DOWN' starts a down section")
    assert user_relations(db_url) == set()


def test_failing_repeatable_exits_1_and_keeps_its_previous_row(db_url: str, tmp_path: Path) -> None:
    """A re-applied repeatable that fails exits 1, rolled back: its old row and object stay; fixing it applies it."""
    folder = write(tmp_path / "migrations", NUMBERED)
    assert migrate(db_url, folder).returncode == 0
    before = history_by_version(db_url)
    view = folder / "R__active_accounts.sql"
    view.write_text(view.read_text().replace("id, email", "id, email, no_such_column"))

    failed = migrate(db_url, folder)

    assert failed.returncode == 1, failed.describe()
    assert failed.error_text().startswith(f"{view}:2:")
    assert "migration R__active_accounts failed (rolled back)" in failed.error_text()
    assert history_by_version(db_url) == before
    assert view_columns(db_url, "active_accounts") == ["id", "email"]
    assert status(db_url, folder)["R__active_accounts"] == "pending"

    view.write_text(view.read_text().replace("no_such_column", "plan"))
    fixed = migrate(db_url, folder)

    assert fixed.returncode == 0, fixed.describe()
    assert applied_versions(fixed) == ["R__active_accounts"]
    assert view_columns(db_url, "active_accounts") == ["id", "email", "plan"]
