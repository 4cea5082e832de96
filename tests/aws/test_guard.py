"""The production guard, end to end: MIGRATE_ENV=production needs a confirmation before changing anything.

The CLI runs as a subprocess with stdin not a TTY (as in a deploy job) against a real PostgreSQL. The test
server has no TLS, so MIGRATE_SSLMODE=disable overrides production's verify-full default.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.aws.conftest import Target, applied_versions, migrate, pg_tool, table_exists, write_migrations
from tests.pg.cli import Result

pytestmark = pytest.mark.pg


def production(target: Target, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": target.url, "MIGRATE_ENV": "production", "MIGRATE_SSLMODE": "disable", **extra}


def assert_nothing_applied(target: Target, result: Result) -> None:
    assert applied_versions(target.inspect_url) == []
    assert not table_exists(target.inspect_url, "items")
    assert not result.events("migration.applied")
    assert not result.events("backup.started")


def test_production_refuses_without_confirmation(tmp_path: Path, target: Target) -> None:
    """On production with something pending and no confirmation: exit 7, nothing applied, no backup written."""
    backups = tmp_path / "backups"
    env = production(target, MIGRATE_BACKUP_PATH=str(backups), MIGRATE_PG_DUMP=pg_tool("pg_dump"))
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 7, result.describe()
    assert "--yes" in result.error_text() and result.events("guard.refused")
    assert_nothing_applied(target, result)
    assert not backups.exists() or list(backups.iterdir()) == []


def test_production_env_flag_is_guarded(tmp_path: Path, target: Target) -> None:
    """`--env production` guards like MIGRATE_ENV=production: without confirmation, exit 7 and nothing applied."""
    env = {"DATABASE_URL": target.url, "MIGRATE_SSLMODE": "disable", "MIGRATE_BACKUP": "none"}
    result = migrate(write_migrations(tmp_path / "migrations"), env, "--env", "production")
    assert result.returncode == 7, result.describe()
    assert_nothing_applied(target, result)


def test_production_yes_flag_proceeds(tmp_path: Path, target: Target) -> None:
    """`--yes` confirms: the migrations are applied after the automatic backup to MIGRATE_BACKUP_PATH."""
    backups = tmp_path / "backups"
    env = production(target, MIGRATE_BACKUP_PATH=str(backups), MIGRATE_PG_DUMP=pg_tool("pg_dump"))
    result = migrate(write_migrations(tmp_path / "migrations"), env, "--yes")
    assert result.returncode == 0, result.describe()
    assert applied_versions(target.inspect_url) == ["1", "2"]
    assert [p.suffix for p in backups.iterdir()] == [".dump"]


def test_production_confirm_variable_proceeds(tmp_path: Path, target: Target) -> None:
    """MIGRATE_CONFIRM_PRODUCTION=yes confirms: the migrations are applied."""
    env = production(target, MIGRATE_CONFIRM_PRODUCTION="yes", MIGRATE_BACKUP="none")
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 0, result.describe()
    assert applied_versions(target.inspect_url) == ["1", "2"]
    assert not result.events("guard.refused")


def test_production_nothing_pending_needs_no_confirmation(tmp_path: Path, target: Target) -> None:
    """On production with nothing pending the run succeeds (exit 0) without confirmation and takes no backup."""
    directory = write_migrations(tmp_path / "migrations")
    first = migrate(directory, {"DATABASE_URL": target.url, "MIGRATE_BACKUP": "none"})
    assert first.returncode == 0, first.describe()
    backups = tmp_path / "backups"
    result = migrate(directory, production(target, MIGRATE_BACKUP_PATH=str(backups)))
    assert result.returncode == 0, result.describe()
    assert not result.events("guard.refused") and not result.events("backup.started")
    assert not backups.exists()


def test_production_auto_backup_without_target(tmp_path: Path, target: Target) -> None:
    """Confirmed production, MIGRATE_BACKUP=auto and no backup target: exit 2 naming the settings, nothing applied."""
    env = production(target, MIGRATE_CONFIRM_PRODUCTION="yes", MIGRATE_BACKUP="auto")
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert "MIGRATE_BACKUP=auto on production needs a backup target" in error
    assert "MIGRATE_RDS_INSTANCE_ID" in error and "MIGRATE_BACKUP_PATH" in error
    assert_nothing_applied(target, result)
