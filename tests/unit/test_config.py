"""Pure tests of job.config: defaults, environment, overrides, durations, secrets. No database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from job.config import Settings, env_name, load_settings, parse_duration
from job.errors import ConfigError, ExitCode


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test without the caller's MIGRATE_*, DATABASE_URL, PG* or GitHub variables."""
    for key in list(os.environ):
        if key.startswith(("MIGRATE_", "PG", "GITHUB_")) or key == "DATABASE_URL":
            monkeypatch.delenv(key, raising=False)


# ---------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("database_url", None),
        ("libpq_env", False),
        ("dir", Path("migrations")),
        ("format", "auto"),
        ("history_schema", "public"),
        ("history_table", "migrate_job_history"),
        ("lock_wait_timeout", 600.0),
        ("lock_timeout", 5.0),
        ("lock_retries", 10),
        ("statement_timeout", 0.0),
        ("connect_timeout", 60.0),
        ("allow_out_of_order", False),
        ("application_name", "migrate-job"),
        ("log_format", "auto"),
        ("log_level", "info"),
        ("env", "dev"),
        ("allow_pooler", False),
        ("target", None),
        ("dry_run", False),
    ],
)
def test_defaults(field: str, expected: Any) -> None:
    """With an empty environment every setting has its documented default."""
    assert getattr(load_settings(), field) == expected


def test_default_derived_values() -> None:
    """Defaults give 5000 ms lock_timeout, no statement timeout, no connection, and a non-empty applied_by."""
    s = load_settings()
    assert s.lock_timeout_ms == 5000
    assert s.statement_timeout_ms == 0
    assert not s.has_connection
    assert s.applied_by
    assert s.secrets() == []


def test_applied_by_default_on_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """On GitHub Actions the default applied_by names the repository and run."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/app")
    assert load_settings().applied_by == "github:acme/app#4242"


# ---------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    ("var", "value", "field", "expected"),
    [
        ("MIGRATE_DIR", "/srv/migrations", "dir", Path("/srv/migrations")),
        ("MIGRATE_FORMAT", "flyway", "format", "flyway"),
        ("MIGRATE_HISTORY_SCHEMA", "ops", "history_schema", "ops"),
        ("MIGRATE_HISTORY_TABLE", "schema_history", "history_table", "schema_history"),
        ("MIGRATE_LOCK_WAIT_TIMEOUT", "2m", "lock_wait_timeout", 120.0),
        ("MIGRATE_LOCK_TIMEOUT", "500ms", "lock_timeout", 0.5),
        ("MIGRATE_LOCK_RETRIES", "3", "lock_retries", 3),
        ("MIGRATE_STATEMENT_TIMEOUT", "1h", "statement_timeout", 3600.0),
        ("MIGRATE_CONNECT_TIMEOUT", "90", "connect_timeout", 90.0),
        ("MIGRATE_ALLOW_OUT_OF_ORDER", "true", "allow_out_of_order", True),
        ("MIGRATE_ALLOW_OUT_OF_ORDER", "1", "allow_out_of_order", True),
        ("MIGRATE_APPLICATION_NAME", "deploy", "application_name", "deploy"),
        ("MIGRATE_APPLIED_BY", "ci-bot", "applied_by", "ci-bot"),
        ("MIGRATE_LOG_FORMAT", "json", "log_format", "json"),
        ("MIGRATE_LOG_LEVEL", "debug", "log_level", "debug"),
        ("MIGRATE_ENV", "production", "env", "production"),
        ("MIGRATE_ALLOW_POOLER", "yes", "allow_pooler", True),
        ("MIGRATE_TARGET", "20240101120000", "target", "20240101120000"),
        ("MIGRATE_LOCK_TIMEOUT", "", "lock_timeout", 5.0),
    ],
)
def test_env_overrides_default(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str, expected: Any
) -> None:
    """Each MIGRATE_* variable sets its setting (an empty value keeps the default)."""
    monkeypatch.setenv(var, value)
    assert getattr(load_settings(), field) == expected


@pytest.mark.parametrize("var", ["DATABASE_URL", "MIGRATE_DATABASE_URL"])
def test_database_url_from_env(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    """The connection URL is read from DATABASE_URL or MIGRATE_DATABASE_URL."""
    monkeypatch.setenv(var, "postgresql://app@db/app")
    s = load_settings()
    assert s.database_url is not None
    assert s.database_url.get_secret_value() == "postgresql://app@db/app"
    assert s.has_connection


def test_migrate_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """MIGRATE_DATABASE_URL takes precedence over DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://generic@db/app")
    monkeypatch.setenv("MIGRATE_DATABASE_URL", "postgresql://migrator@db/app")
    s = load_settings()
    assert s.database_url is not None
    assert s.database_url.get_secret_value() == "postgresql://migrator@db/app"


@pytest.mark.parametrize("var", ["PGHOST", "PGDATABASE", "PGSERVICE"])
def test_libpq_env_counts_as_connection(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    """Standard libpq variables are enough to connect without a URL."""
    monkeypatch.setenv(var, "x")
    s = load_settings()
    assert s.libpq_env
    assert s.has_connection


# ---------------------------------------------------------------------------- explicit overrides


@pytest.mark.parametrize(
    ("var", "env_value", "field", "flag_value", "expected"),
    [
        ("MIGRATE_LOCK_TIMEOUT", "30s", "lock_timeout", "1s", 1.0),
        ("MIGRATE_HISTORY_TABLE", "env_history", "history_table", "flag_history", "flag_history"),
        ("MIGRATE_DIR", "/env", "dir", Path("/flag"), Path("/flag")),
        ("MIGRATE_ALLOW_OUT_OF_ORDER", "true", "allow_out_of_order", False, False),
        ("MIGRATE_TARGET", "5", "target", "7", "7"),
        ("MIGRATE_LOCK_RETRIES", "3", "lock_retries", 0, 0),
        ("MIGRATE_LOG_LEVEL", "debug", "log_level", "error", "error"),
    ],
)
def test_kwargs_override_env(
    monkeypatch: pytest.MonkeyPatch, var: str, env_value: str, field: str, flag_value: Any, expected: Any
) -> None:
    """A CLI flag (keyword argument) wins over the environment variable."""
    monkeypatch.setenv(var, env_value)
    assert getattr(load_settings(**{field: flag_value}), field) == expected


def test_none_kwarg_means_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag left unset (None) does not hide the environment value."""
    monkeypatch.setenv("MIGRATE_LOCK_TIMEOUT", "30s")
    assert load_settings(lock_timeout=None).lock_timeout == 30.0


def test_kwarg_database_url_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit database URL wins over DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://env@db/app")
    s = load_settings(database_url="postgresql://flag@db/app")
    assert s.database_url is not None
    assert s.database_url.get_secret_value() == "postgresql://flag@db/app"


# ---------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("90", 90.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("2min", 120.0),
        ("10sec", 10.0),
        ("250MS", 0.25),
        (" 5 s ", 5.0),
        (7, 7.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    """Durations accept plain seconds and ms/s/m/min/h suffixes."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("5s", 5000), ("10m", 600_000), ("1h", 3_600_000), ("90", 90_000), ("0", 0)],
)
def test_duration_env_to_milliseconds(monkeypatch: pytest.MonkeyPatch, text: str, ms: int) -> None:
    """A duration from the environment becomes the right number of milliseconds for PostgreSQL."""
    monkeypatch.setenv("MIGRATE_LOCK_TIMEOUT", text)
    monkeypatch.setenv("MIGRATE_STATEMENT_TIMEOUT", text)
    s = load_settings()
    assert s.lock_timeout_ms == ms
    assert s.statement_timeout_ms == ms


@pytest.mark.parametrize("text", ["", "soon", "5 parsecs", "1d", "-1s", "1,5s", "ms", "5s5"])
def test_parse_duration_rejects(text: str) -> None:
    """Malformed or negative durations are rejected."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_rejects_negative_number() -> None:
    """A negative numeric duration is rejected."""
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)


# ---------------------------------------------------------------------------- invalid settings


@pytest.mark.parametrize(
    ("var", "bad"),
    [
        ("MIGRATE_LOCK_TIMEOUT", "5 parsecs-zq1"),
        ("MIGRATE_LOCK_TIMEOUT", "-3s"),
        ("MIGRATE_STATEMENT_TIMEOUT", "forever-zq2"),
        ("MIGRATE_LOCK_WAIT_TIMEOUT", "soonish-zq3"),
        ("MIGRATE_CONNECT_TIMEOUT", "42 days"),
        ("MIGRATE_HISTORY_TABLE", "history; drop table users"),
        ("MIGRATE_HISTORY_TABLE", "h" * 64),
        ("MIGRATE_HISTORY_TABLE", "9lives"),
        ("MIGRATE_HISTORY_SCHEMA", "my-schema-zq4"),
        ("MIGRATE_LOCK_RETRIES", "lots-zq5"),
        ("MIGRATE_LOCK_RETRIES", "100000"),
        ("MIGRATE_FORMAT", "liquibase"),
        ("MIGRATE_LOG_LEVEL", "chatty"),
    ],
)
def test_invalid_env_names_var_not_value(monkeypatch: pytest.MonkeyPatch, var: str, bad: str) -> None:
    """An invalid variable is a ConfigError (exit 2) naming the variable and never echoing the value."""
    monkeypatch.setenv(var, bad)
    with pytest.raises(ConfigError) as info:
        load_settings()
    err = info.value
    assert var in err.message
    assert bad not in err.message
    assert bad not in str(err.fields)
    assert err.exit_code == ExitCode.CONFIG
    assert err.fields["setting"] == var


@pytest.mark.parametrize(
    ("field", "flag", "bad"),
    [
        ("lock_timeout", "--lock-timeout", "bogus-zq6"),
        ("statement_timeout", "--statement-timeout", "bogus-zq7"),
        ("history_table", "--history-table", "bad name zq8"),
    ],
)
def test_invalid_flag_names_the_flag(field: str, flag: str, bad: str) -> None:
    """An invalid CLI value is a ConfigError naming the flag as spelled on the command line, not the value."""
    with pytest.raises(ConfigError) as info:
        load_settings(**{field: bad})
    assert flag in info.value.message
    assert bad not in info.value.message


@pytest.mark.parametrize(
    ("field", "var"),
    [
        ("lock_timeout", "MIGRATE_LOCK_TIMEOUT"),
        ("history_table", "MIGRATE_HISTORY_TABLE"),
        ("database_url", "MIGRATE_DATABASE_URL"),
        ("dir", "MIGRATE_DIR"),
        ("dry_run", "dry_run"),
    ],
)
def test_env_name(field: str, var: str) -> None:
    """env_name gives the environment variable documented for a setting."""
    assert env_name(field) == var


# ---------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://app:s3cret@db:5432/app", ["s3cret"]),
        ("postgres://app:p%40ss%2Fword@db/app?sslmode=require", ["p@ss/word"]),
        ("host=db user=app password=kv-secret dbname=app", ["kv-secret"]),
        ("host=db user=app password='with space' dbname=app", ["with space"]),
        ("postgresql://app@db/app", []),
        ("host=db user=app dbname=app", []),
    ],
)
def test_secrets_from_database_url(monkeypatch: pytest.MonkeyPatch, url: str, secrets: list[str]) -> None:
    """secrets() returns the password of DATABASE_URL in URL or key=value form, for the log redactor."""
    monkeypatch.setenv("DATABASE_URL", url)
    assert load_settings().secrets() == secrets


def test_secrets_include_pgpassword(monkeypatch: pytest.MonkeyPatch) -> None:
    """PGPASSWORD is also a secret to redact."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:urlpw@db/app")
    monkeypatch.setenv("PGPASSWORD", "envpw")
    assert load_settings().secrets() == ["urlpw", "envpw"]


def test_settings_repr_hides_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Printing the settings never shows the database password."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2-zq9@db/app")
    s = load_settings()
    assert "hunter2-zq9" not in repr(s)
    assert "hunter2-zq9" not in str(s)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.lock_timeout = 1.0
    assert isinstance(s, Settings)


# ---------------------------------------------------------------------------- file names: pattern and order


def test_filename_pattern_and_order_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MIGRATE_FILENAME_PATTERN and MIGRATE_ORDER are read from the environment."""
    monkeypatch.setenv("MIGRATE_FILENAME_PATTERN", r"(?P<version>\d+)-(?P<name>.+)\.sql")
    monkeypatch.setenv("MIGRATE_ORDER", "lexical")
    s = load_settings()
    assert (s.filename_pattern, s.order) == (r"(?P<version>\d+)-(?P<name>.+)\.sql", "lexical")


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("MIGRATE_FILENAME_PATTERN", "(?P<version>\\d+", "not a valid regular expression"),
        ("MIGRATE_FILENAME_PATTERN", "(?P<v>\\d+)\\.sql", "named group `version`"),
        ("MIGRATE_ORDER", "alphabetic", "numeric"),
    ],
)
def test_bad_filename_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, words: str
) -> None:
    """An unusable pattern or order is a configuration error (exit 2) naming the setting."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.exit_code == ExitCode.CONFIG
    assert var in info.value.message and words in info.value.message


def test_filename_pattern_excludes_forced_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pattern together with MIGRATE_FORMAT is refused: the pattern replaces the layout detection."""
    monkeypatch.setenv("MIGRATE_FILENAME_PATTERN", r"(?P<version>\d+)\.sql")
    monkeypatch.setenv("MIGRATE_FORMAT", "golang")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "MIGRATE_FILENAME_PATTERN" in info.value.message and "MIGRATE_FORMAT" in info.value.message


# ---------------------------------------------------------------------------- TLS precedence (DATABASE_SSL)

_TLS = {"explicit": None, "url": None, "pgsslmode": None, "database_ssl": None, "rootcert": False}


@pytest.mark.parametrize(
    ("given", "production", "iam", "expected"),
    [
        ({}, False, False, (None, "libpq default")),
        ({"database_ssl": True}, False, False, ("require", "DATABASE_SSL=true")),
        (
            {"database_ssl": True, "rootcert": True},
            False,
            False,
            ("verify-full", "DATABASE_SSL=true with a root certificate"),
        ),
        ({"database_ssl": False}, False, False, ("disable", "DATABASE_SSL=false")),
        ({"database_ssl": True, "url": "disable"}, False, False, ("disable", "sslmode in DATABASE_URL")),
        ({"database_ssl": False, "pgsslmode": "require"}, False, False, ("require", "PGSSLMODE")),
        ({"url": "verify-ca", "pgsslmode": "require"}, False, False, ("verify-ca", "sslmode in DATABASE_URL")),
        ({"explicit": "disable", "url": "require", "database_ssl": True}, False, False, ("disable", "MIGRATE_SSLMODE")),
        ({"explicit": "disable"}, True, True, ("disable", "MIGRATE_SSLMODE")),
        ({"url": "require"}, True, False, ("verify-full", "MIGRATE_ENV=production")),
        ({"database_ssl": False}, True, False, ("verify-full", "MIGRATE_ENV=production")),
        ({"url": "verify-full"}, True, False, ("verify-full", "sslmode in DATABASE_URL")),
        ({}, False, True, ("require", "MIGRATE_IAM_AUTH")),
        ({"url": "disable"}, False, True, ("require", "MIGRATE_IAM_AUTH")),
        ({"url": "verify-full"}, False, True, ("verify-full", "sslmode in DATABASE_URL")),
    ],
)
def test_choose_sslmode(given: dict[str, Any], production: bool, iam: bool, expected: tuple[str | None, str]) -> None:
    """MIGRATE_SSLMODE > URL sslmode > PGSSLMODE > DATABASE_SSL; production/IAM raise weaker modes to their floor."""
    from job.config import choose_sslmode

    mode, origin = choose_sslmode(**{**_TLS, **given}, production=production, iam=iam)
    assert mode == expected[0]
    assert origin.startswith(expected[1])


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False), ("no", False)])
def test_database_ssl_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    """DATABASE_SSL (the Node runner's .env convention) is read as a boolean."""
    monkeypatch.setenv("DATABASE_SSL", value)
    assert load_settings().database_ssl is expected


def test_database_ssl_invalid_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE_SSL=maybe is a configuration error naming DATABASE_SSL (exit 2)."""
    monkeypatch.setenv("DATABASE_SSL", "maybe")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "DATABASE_SSL" in caught.value.message and caught.value.exit_code == ExitCode.CONFIG
