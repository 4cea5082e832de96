"""Adopted databases stay adopted (issue 17 §1), the audit trail, and fixing history (issue 14 §4).

The seeds' own commands are run unchanged: seed 003's `_migrations` with batches (`migrate:reset`,
`migrate:rollback`) and seed 004's `YYYYMMDD_HHMMSS_name.sql` + `_rollback.sql` folder with its checksummed
`schema_migrations` (`refresh --env uat`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.pg import cli
from tests.pg.cli import applied_versions, execute, query
from tests.pg.cli import history_by_version as history
from tests.pg.cli import run_unattended as run
from tests.pg.test_adoption import ACCOUNTS, apply_accounts, legacy_rows, write_accounts
from tests.pg.test_adoption_tools import audit, events

pytestmark = pytest.mark.pg

PRODUCTION = {"MIGRATE_ENV": "production", "MIGRATE_SSLMODE": "disable", "MIGRATE_BACKUP": "none"}


def rolled_back(result: cli.Result) -> list[str]:
    return [str(e["version"]) for e in result.events("migration.rolled_back")]


def status(db_url: str, folder: Path, *args: str, **env: str) -> dict[str, Any]:
    result = run(db_url, "status", "--format", "json", "--dir", str(folder), *args, **env)
    assert result.returncode == 0, result.describe()
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def states(db_url: str, folder: Path) -> dict[str, tuple[str, str | None]]:
    return {str(m["version"]): (m["state"], m["source"]) for m in status(db_url, folder)["migrations"]}


# ---------------------------------------------------------------------------- seed 003: _migrations with batches


def seed_003(db_url: str, folder: Path) -> None:
    """Seed 003's runner applied 001 in batch 1 and 002+003 in batch 2 (`_migrations(id, name, batch,
    executed_at)`, names with .sql); 004 is new."""
    write_accounts(folder, ["001", "002", "003", "004"])
    apply_accounts(db_url, 3)
    execute(
        db_url,
        "CREATE TABLE _migrations (id SERIAL PRIMARY KEY, name VARCHAR(255) NOT NULL UNIQUE, batch INTEGER NOT NULL,"
        " executed_at TIMESTAMPTZ NOT NULL DEFAULT NOW())",
    )
    execute(
        db_url,
        "INSERT INTO _migrations (name, batch, executed_at) VALUES"
        " ('001_create_accounts.sql', 1, '2026-01-20 10:00:00+00'),"
        " ('002_create_ledger.sql', 2, '2026-01-20 11:00:00+00'),"
        " ('003_account_balance.sql', 2, '2026-01-20 11:00:01+00')",
    )


def test_reset_on_an_adopted_database_does_not_re_adopt(db_url: str, tmp_path: Path) -> None:
    """Seed 003: migrate (adopts), reset, status shows everything pending (nothing adopted again), migrate
    re-applies all four and exits 0; the legacy table is never changed."""
    folder = tmp_path / "migrations"
    seed_003(db_url, folder)
    legacy_before = legacy_rows(db_url, "_migrations")

    first = run(db_url, "migrate", "--dir", str(folder))
    assert first.returncode == 0, first.describe()
    assert applied_versions(first) == ["4"]

    reset = run(db_url, "reset", "--dir", str(folder))

    assert reset.returncode == 0, reset.describe()
    assert rolled_back(reset) == ["4", "3", "2", "1"]
    assert history(db_url) == {}
    assert states(db_url, folder) == {v: ("pending", None) for v in ("1", "2", "3", "4")}

    again = run(db_url, "migrate", "--dir", str(folder))

    assert again.returncode == 0, again.describe()
    assert applied_versions(again) == ["1", "2", "3", "4"]
    assert {r["source"] for r in history(db_url).values()} == {"migrate-job"}
    assert again.events("history.adopted") == []
    assert [e["detail"]["table"] for e in events(db_url, "adopted")] == ["public._migrations"]
    assert legacy_rows(db_url, "_migrations") == legacy_before
    rerun = run(db_url, "migrate", "--dir", str(folder))
    assert rerun.returncode == 0 and applied_versions(rerun) == [], rerun.describe()


def test_rollback_as_the_first_command_rolls_back_the_legacy_last_batch(db_url: str, tmp_path: Path) -> None:
    """Seed 003's `migrate:rollback` habit: the first command on the database adopts `_migrations` and rolls
    back its last batch (003, 002); migrate then re-applies them and 004."""
    folder = tmp_path / "migrations"
    seed_003(db_url, folder)

    rollback = run(db_url, "rollback", "--dir", str(folder))

    assert rollback.returncode == 0, rollback.describe()
    assert rolled_back(rollback) == ["3", "2"]
    assert {v: (r["source"], r["batch"]) for v, r in history(db_url).items()} == {"1": ("adopted:batches", 1)}
    assert query(db_url, "SELECT to_regclass('ledger_entries') IS NULL")[0][0]

    again = run(db_url, "migrate", "--dir", str(folder))

    assert again.returncode == 0, again.describe()
    assert applied_versions(again) == ["2", "3", "4"]
    assert len(events(db_url, "adopted")) == 1


def test_refresh_on_an_adopted_database_re_applies_from_our_history(db_url: str, tmp_path: Path) -> None:
    """refresh on a database adopted from `_migrations`: every migration rolled back and re-applied; no
    re-adoption (the second refresh behaves the same); exit 0 each time."""
    folder = tmp_path / "migrations"
    seed_003(db_url, folder)
    assert run(db_url, "migrate", "--dir", str(folder)).returncode == 0

    for _ in range(2):
        result = run(db_url, "refresh", "--dir", str(folder))
        assert result.returncode == 0, result.describe()
        assert rolled_back(result) == ["4", "3", "2", "1"]
        assert applied_versions(result) == ["1", "2", "3", "4"]
        assert {r["source"] for r in history(db_url).values()} == {"migrate-job"}
    assert len(events(db_url, "adopted")) == 1


# ---------------------------------------------------------------------------- seed 004: _rollback.sql, --env uat

SEED_004 = [
    ("20241227_093000_create_accounts", ACCOUNTS[0]),
    ("20241228_100000_create_ledger", ACCOUNTS[1]),
    ("20250105_090000_account_balance", ACCOUNTS[2]),
]


def seed_004(db_url: str, root: Path) -> Path:
    """Seed 004: migration + `_rollback.sql` pairs wrapped in BEGIN/COMMIT, all three applied by
    migration_manager.py (schema_migrations with migration_name = stem and checksum = SHA-256 of the file);
    migrate.toml names the uat database."""
    folder = root / "backend" / "migrations"
    folder.mkdir(parents=True)
    for stem, (name, up, down) in SEED_004:
        (folder / f"{stem}.sql").write_text(
            f"-- Migration: {name}\n-- Created: 2024-12-27\n\nBEGIN;\n\n{up}\n\nCOMMIT;\n", encoding="utf-8"
        )
        (folder / f"{stem}_rollback.sql").write_text(
            f"-- Rollback: {name}\n\nBEGIN;\n\n{down}\n\nCOMMIT;\n", encoding="utf-8"
        )
    apply_accounts(db_url, 3)
    execute(
        db_url,
        "CREATE TABLE schema_migrations (id SERIAL PRIMARY KEY, migration_name VARCHAR(255) UNIQUE NOT NULL,"
        " checksum VARCHAR(64) NOT NULL, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    )
    for stem, _ in SEED_004:
        execute(
            db_url,
            "INSERT INTO schema_migrations (migration_name, checksum) VALUES (%s, %s)",
            (stem, cli.sha256(folder / f"{stem}.sql")),
        )
    (root / "migrate.toml").write_text(
        'dir = "backend/migrations"\n\n[env.uat]\ndatabase_url_env = "UAT_DATABASE_URL"\n', encoding="utf-8"
    )
    return folder


def run_in(root: Path, db_url: str, *args: str, **env: str) -> cli.Result:
    """The CLI run in `root` (its migrate.toml) with the uat URL only in UAT_DATABASE_URL."""
    return cli.run_cli(
        *args,
        env=cli.clean_env(None, UAT_DATABASE_URL=db_url, MIGRATE_CONNECT_TIMEOUT="10s", **env),
        cwd=root,
        stdin=subprocess.DEVNULL,
    )


def test_refresh_env_uat_as_the_first_command_on_a_rollback_files_folder(db_url: str, tmp_path: Path) -> None:
    """Seed 004, `refresh --env uat` first: the checksummed schema_migrations is adopted once, every migration
    is rolled back with its _rollback.sql and re-applied; a second refresh does the same; status agrees."""
    folder = seed_004(db_url, tmp_path)
    legacy_before = legacy_rows(db_url, "schema_migrations")
    versions = ["20241227093000", "20241228100000", "20250105090000"]

    for _ in range(2):
        result = run_in(tmp_path, db_url, "refresh", "--env", "uat", MIGRATE_APPLIED_BY="deploy@uat")
        assert result.returncode == 0, result.describe()
        assert rolled_back(result) == versions[::-1]
        assert [Path(str(e["file"])).name for e in result.events("migration.rolled_back")] == [
            f"{stem}_rollback.sql" for stem, _ in reversed(SEED_004)
        ]
        assert applied_versions(result) == versions
    assert sorted(history(db_url)) == versions
    assert {r["source"] for r in history(db_url).values()} == {"migrate-job"}
    assert legacy_rows(db_url, "schema_migrations") == legacy_before
    adopted = events(db_url, "adopted")
    assert len(adopted) == 1 and adopted[0]["detail"]["table"] == "public.schema_migrations"
    assert [e["version"] for e in events(db_url, "rolled_back")] == versions[::-1] * 2
    assert {e["applied_by"] for e in events(db_url, "rolled_back")} == {"deploy@uat"}
    shown = run_in(tmp_path, db_url, "status", "--env", "uat", "--format", "json")
    assert shown.returncode == 0, shown.describe()
    assert {m["state"] for m in json.loads(shown.stdout)["migrations"]} == {"applied"}
    assert folder.is_dir()


# ---------------------------------------------------------------------------- the audit trail in status --all


def test_status_all_shows_adoption_and_rollbacks_with_when_and_by_whom(db_url: str, tmp_path: Path) -> None:
    """`status --all` lists the audit trail: the adoption (from which table) and each rolled-back version with
    who rolled it back; `--format json` has the same under "log"."""
    folder = tmp_path / "migrations"
    seed_003(db_url, folder)
    assert run(db_url, "migrate", "--dir", str(folder), MIGRATE_APPLIED_BY="ci#41").returncode == 0
    assert run(db_url, "rollback", "--dir", str(folder), MIGRATE_APPLIED_BY="ana@laptop").returncode == 0

    table = run(db_url, "status", "--all", "--dir", str(folder))
    listed = status(db_url, folder, "--all")

    assert table.returncode == 0, table.describe()
    assert "history log (public.migrate_job_history_log):" in table.stdout
    lines = table.stdout.split("history log")[1].splitlines()
    adopted = [line for line in lines if " adopted " in line]
    assert len(adopted) == 1 and "from public._migrations (batches): 3 row(s)" in adopted[0], table.stdout
    undone = [line for line in lines if " rolled_back " in line]
    assert len(undone) == 1 and " 4 " in undone[0] and "ana@laptop" in undone[0] and "by ci#41" in undone[0]
    log = listed["log"]
    assert [(e["event"], e["version"]) for e in log] == [("adopted", None), ("applied", "4"), ("rolled_back", "4")]
    assert log[2]["applied_by"] == "ana@laptop" and log[2]["at"]
    assert {m["version"]: m["state"] for m in listed["migrations"]}["4"] == "pending"


# ---------------------------------------------------------------------------- repair --accept-checksum/--forget-missing


def two_applied(db_url: str, folder: Path) -> list[Path]:
    paths = write_accounts(folder, ["0001", "0002"])
    assert run(db_url, "migrate", "--dir", str(folder)).returncode == 0
    return paths


def test_accept_checksum_stores_the_edited_files_checksum_and_logs_it(db_url: str, tmp_path: Path) -> None:
    """An intended edit blocks every run (exit 4); `repair --accept-checksum 1` stores the new checksum, logs
    `repair.checksum_accepted` and an audit entry with who; validate passes again."""
    folder = tmp_path / "migrations"
    paths = two_applied(db_url, folder)
    old = history(db_url)["1"]["checksum"]
    paths[0].write_text(paths[0].read_text(encoding="utf-8").replace("-- UP", "-- UP\n-- accounts of customers"))
    assert run(db_url, "migrate", "--dir", str(folder)).returncode == 4

    result = run(
        db_url,
        "repair",
        "--accept-checksum",
        "0001_create_accounts.sql",
        "--dir",
        str(folder),
        MIGRATE_APPLIED_BY="ana@laptop",
    )

    assert result.returncode == 0, result.describe()
    assert [e["version"] for e in result.events("repair.checksum_accepted")] == ["1"]
    assert history(db_url)["1"]["checksum"] == cli.sha256(paths[0])
    accepted = events(db_url, "checksum_accepted")
    assert len(accepted) == 1
    assert accepted[0]["applied_by"] == "ana@laptop" and accepted[0]["detail"]["old_checksum"] == old
    assert accepted[0]["detail"]["checksum"] == cli.sha256(paths[0])
    assert run(db_url, "validate", "--dir", str(folder)).returncode == 0


def test_forget_missing_drops_the_row_of_a_deleted_file_and_logs_it(db_url: str, tmp_path: Path) -> None:
    """A deleted applied file blocks every run (exit 4); `repair --forget-missing 2` drops its row (logged,
    audited); migrate then runs clean. A file that still exists is refused (exit 4, nothing changed)."""
    folder = tmp_path / "migrations"
    paths = two_applied(db_url, folder)
    refused = run(db_url, "repair", "--forget-missing", "2", "--dir", str(folder))
    assert refused.returncode == 4 and "still exists" in refused.error_text(), refused.describe()
    paths[1].unlink()
    assert run(db_url, "migrate", "--dir", str(folder)).returncode == 4

    result = run(db_url, "repair", "--forget-missing", "2", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert [e["version"] for e in result.events("repair.missing_forgotten")] == ["2"]
    assert sorted(history(db_url)) == ["1"]
    forgotten = events(db_url, "forgotten")
    assert [e["version"] for e in forgotten] == ["2"] and forgotten[0]["detail"]["reason"] == "repair --forget-missing"
    assert run(db_url, "migrate", "--dir", str(folder)).returncode == 0


@pytest.mark.parametrize("fix", [["--accept-checksum", "1"], ["--forget-missing", "2"]])
def test_history_fixes_are_guarded_on_production_and_dry_run_changes_nothing(
    db_url: str, tmp_path: Path, fix: list[str]
) -> None:
    """On production without confirmation: exit 7, nothing changed; `--dry-run` prints the change and changes
    nothing; with --yes it is done."""
    folder = tmp_path / "migrations"
    paths = two_applied(db_url, folder)
    paths[0].write_text(paths[0].read_text(encoding="utf-8") + "\n-- reviewed\n", encoding="utf-8")
    paths[1].unlink()
    before = (history(db_url), audit(db_url))

    refused = run(db_url, "repair", *fix, "--dir", str(folder), **PRODUCTION)
    dry = run(db_url, "repair", *fix, "--dry-run", "--dir", str(folder))

    assert refused.returncode == 7, refused.describe()
    assert "production guard" in refused.output
    assert dry.returncode == 0, dry.describe()
    assert dry.stdout.startswith("-- would ") and f"version {fix[1]}" in dry.stdout, dry.stdout
    assert (history(db_url), audit(db_url)) == before

    done = run(db_url, "repair", *fix, "--yes", "--dir", str(folder), **PRODUCTION)

    assert done.returncode == 0, done.describe()
    assert (history(db_url), audit(db_url)) != before


def test_every_history_change_of_a_run_is_in_the_audit_trail(db_url: str, tmp_path: Path) -> None:
    """applied, rolled_back and baselined events are written in the same transaction as the change."""
    folder = tmp_path / "migrations"
    write_accounts(folder, ["0001", "0002", "0003"])
    assert run(db_url, "baseline", "--version", "1", "--dir", str(folder)).returncode == 0
    apply_accounts(db_url, 1)
    assert run(db_url, "migrate", "--dir", str(folder), MIGRATE_APPLIED_BY="ci").returncode == 0
    assert run(db_url, "rollback", "--steps", "1", "--dir", str(folder), MIGRATE_APPLIED_BY="ops").returncode == 0

    trail = [(e["event"], e["version"], e["applied_by"]) for e in audit(db_url)]

    assert trail[0][:2] == ("baselined", "1")
    assert trail[1:] == [("applied", "2", "ci"), ("applied", "3", "ci"), ("rolled_back", "3", "ops")]
    assert events(db_url, "rolled_back")[0]["detail"]["applied_by"] == "ci"
