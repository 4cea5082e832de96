"""Named environments: the config file, its sections, and the precedence of every source."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from job import commands
from job.config import load_settings, origins
from job.errors import ConfigError

CONFIG = """\
dir = "db/migrations"
lock_timeout = "3s"
lock_retries = 4

[env.dev]
database_url_env = "DEV_DB"

[env.uat]
database_secret_id = "uat/app/db"
lock_timeout = "10s"

[env.production]
database_secret_id = "prod/app/db"
backup = "rds-snapshot"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "DATABASE_URL",
        "MIGRATE_DATABASE_URL",
        "MIGRATE_ENV",
        "MIGRATE_LOCK_TIMEOUT",
        "MIGRATE_CONFIG",
        "MIGRATE_DIR",
        "MIGRATE_LOCK_RETRIES",
        "DEV_DB",
        "PGHOST",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(tmp_path: Path, text: str = CONFIG, name: str = "migrate.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_without_a_config_file() -> None:
    """Without a config file the built-in defaults apply."""
    s = load_settings()
    assert (s.lock_timeout, s.env, str(s.dir)) == (5.0, "dev", "migrations")


def test_shared_section_over_defaults(tmp_path: Path) -> None:
    """Top-level keys of migrate.toml override the defaults."""
    write(tmp_path)
    s = load_settings(env="dev")
    assert (s.lock_timeout, s.lock_retries, str(s.dir)) == (3.0, 4, "db/migrations")


def test_environment_section_over_shared(tmp_path: Path) -> None:
    """[env.NAME] values override the shared ones for that environment only."""
    write(tmp_path)
    assert load_settings(env="uat").lock_timeout == 10.0
    assert load_settings(env="production").lock_timeout == 3.0
    assert load_settings(env="uat").database_secret_id == "uat/app/db"


def test_environment_variable_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment variable beats the environment's section of the file."""
    write(tmp_path)
    monkeypatch.setenv("MIGRATE_LOCK_TIMEOUT", "7s")
    assert load_settings(env="uat").lock_timeout == 7.0


def test_flag_over_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command-line flag beats the environment variable (and the file)."""
    write(tmp_path)
    monkeypatch.setenv("MIGRATE_LOCK_TIMEOUT", "7s")
    assert load_settings(env="uat", lock_timeout="1s").lock_timeout == 1.0


def test_env_selected_by_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MIGRATE_ENV selects the section like --env does."""
    write(tmp_path)
    monkeypatch.setenv("MIGRATE_ENV", "production")
    s = load_settings()
    assert (s.env, s.backup) == ("production", "rds-snapshot")


def test_database_url_env_reads_the_named_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """database_url_env names the variable holding the URL; the URL itself never lives in the file."""
    write(tmp_path)
    monkeypatch.setenv("DEV_DB", "postgresql://app:pw-123456@db/app")
    s = load_settings(env="dev")
    assert s.database_url is not None and s.database_url.get_secret_value().endswith("@db/app")


def test_pyproject_table(tmp_path: Path) -> None:
    """A [tool.migrate-job] table in pyproject.toml works like migrate.toml."""
    write(
        tmp_path,
        '[project]\nname = "x"\n\n[tool.migrate-job]\nlock_retries = 2\n\n[tool.migrate-job.env.uat]\n'
        "lock_retries = 3\n",
        name="pyproject.toml",
    )
    assert load_settings().lock_retries == 2
    assert load_settings(env="uat").lock_retries == 3


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (CONFIG, "staging", "unknown environment 'staging'"),
        (CONFIG + "bogus = 1\n", "dev", "migrate.toml:15: unknown key 'bogus'"),
        ('lock_timeout = "soon"\n', None, "migrate.toml:1: invalid value for lock_timeout"),
        ('[env.uat]\nlock_retries = "many"\n', "uat", "migrate.toml:2: invalid value for lock_retries"),
        ('database_url = "postgresql://u:p@h/d"\n', None, "database_url cannot be set in the config file"),
        ("lock_timeout = \n", None, "migrate.toml: "),
    ],
)
def test_bad_config_file_is_one_line_naming_file_key_and_line(
    tmp_path: Path, text: str, env: str | None, expected: str
) -> None:
    """An unknown environment, unknown key, type error or malformed TOML → exit-2 error naming file/key/line."""
    write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(env=env)
    assert expected in exc.value.message
    assert "\n" not in exc.value.message and "postgresql://u:p@" not in exc.value.message


def test_config_show_reports_sources_and_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`config show` prints each setting's value and origin (the config file it found too), with passwords
    masked."""
    write(tmp_path)
    monkeypatch.setenv("DEV_DB", "postgresql://app:s3cret-pass@db/app")
    monkeypatch.setenv("MIGRATE_LOCK_RETRIES", "9")
    s = load_settings(env="dev", connect_timeout="5s")
    out = io.StringIO()
    commands.config_show(s, out, "json")
    data = json.loads(out.getvalue())["settings"]
    assert "s3cret-pass" not in out.getvalue()
    assert data["lock_retries"] == {"value": 9, "source": "$MIGRATE_LOCK_RETRIES"}
    assert data["connect_timeout"]["source"] == "command line"
    assert data["lock_timeout"]["source"] == "migrate.toml [top level]"
    assert data["history_table"]["source"] == "default"
    assert data["config"] == {"value": "migrate.toml", "source": "found in the working directory"}
    assert origins()["database_url"].startswith("$DEV_DB")
