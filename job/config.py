"""Settings: the only module that reads the process environment.

Precedence: CLI flags > environment variables > defaults. The CLI passes its flags as keyword
arguments to `load_settings`; the result is frozen and handed to the command functions.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from job.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h)?\s*$", re.IGNORECASE)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGPASSWORD")


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `1.5`, `500ms`, `5s`, `10m`, `1h`; 0 means "no limit" where allowed."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError("expected a duration such as 30, 500ms, 5s, 10m or 1h")
        seconds = float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def compile_filename_pattern(pattern: str) -> re.Pattern[str]:
    """MIGRATE_FILENAME_PATTERN compiled; ValueError saying why when it is not a usable pattern."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    if "version" not in regex.groupindex:
        raise ValueError("needs a named group `version`, e.g. (?P<version>[0-9]+)")
    return regex


_FILE_VALUES: dict[str, Any] = {}


class _FileSource(PydanticBaseSettingsSource):
    """Values from the config file's shared and environment sections: below environment variables."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _FILE_VALUES.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_VALUES)


class Settings(BaseSettings):
    """Every setting of the job. Environment names are listed in README.md."""

    model_config = SettingsConfigDict(
        frozen=True,
        populate_by_name=True,
        env_prefix="MIGRATE_",
        extra="ignore",
        env_ignore_empty=True,
        case_sensitive=False,
    )

    database_url: SecretStr | None = Field(None, validation_alias=AliasChoices("MIGRATE_DATABASE_URL", "DATABASE_URL"))
    libpq_env: bool = Field(False, exclude=True)
    dir: Path = Field(Path("migrations"), validation_alias=AliasChoices("MIGRATE_DIR"))
    format: Literal["auto", "numbered", "golang", "flyway"] = Field(
        "auto", validation_alias=AliasChoices("MIGRATE_FORMAT")
    )
    filename_pattern: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_FILENAME_PATTERN"))
    order: Literal["numeric", "lexical"] = Field("numeric", validation_alias=AliasChoices("MIGRATE_ORDER"))
    history_schema: str = Field("public", validation_alias=AliasChoices("MIGRATE_HISTORY_SCHEMA"))
    history_table: str = Field("migrate_job_history", validation_alias=AliasChoices("MIGRATE_HISTORY_TABLE"))
    lock_wait_timeout: Duration = Field(600.0, validation_alias=AliasChoices("MIGRATE_LOCK_WAIT_TIMEOUT"))
    lock_timeout: Duration = Field(5.0, validation_alias=AliasChoices("MIGRATE_LOCK_TIMEOUT"))
    lock_retries: int = Field(10, ge=0, le=1000, validation_alias=AliasChoices("MIGRATE_LOCK_RETRIES"))
    statement_timeout: Duration = Field(0.0, validation_alias=AliasChoices("MIGRATE_STATEMENT_TIMEOUT"))
    connect_timeout: Duration = Field(60.0, validation_alias=AliasChoices("MIGRATE_CONNECT_TIMEOUT"))
    allow_out_of_order: bool = Field(False, validation_alias=AliasChoices("MIGRATE_ALLOW_OUT_OF_ORDER"))
    allow_non_empty: bool = Field(False, validation_alias=AliasChoices("MIGRATE_ALLOW_NON_EMPTY"))
    application_name: str = Field("migrate-job", validation_alias=AliasChoices("MIGRATE_APPLICATION_NAME"))
    applied_by: str = Field("", validation_alias=AliasChoices("MIGRATE_APPLIED_BY"))
    log_format: Literal["auto", "json", "console"] = Field("auto", validation_alias=AliasChoices("MIGRATE_LOG_FORMAT"))
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=AliasChoices("MIGRATE_LOG_LEVEL")
    )
    env: str = Field("dev", validation_alias=AliasChoices("MIGRATE_ENV"))
    config: Path | None = Field(None, validation_alias=AliasChoices("MIGRATE_CONFIG"))
    allow_pooler: bool = Field(False, validation_alias=AliasChoices("MIGRATE_ALLOW_POOLER"))

    database_secret_id: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_DATABASE_SECRET_ID"))
    database_secret_key: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_DATABASE_SECRET_KEY"))
    database_secret_version_stage: str = Field(
        "AWSCURRENT", validation_alias=AliasChoices("MIGRATE_DATABASE_SECRET_VERSION_STAGE")
    )
    database_url_parameter: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_DATABASE_URL_PARAMETER"))
    iam_auth: bool = Field(False, validation_alias=AliasChoices("MIGRATE_IAM_AUTH"))
    aws_region: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_AWS_REGION"))
    db_host: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_DB_HOST"))
    db_port: int | None = Field(None, validation_alias=AliasChoices("MIGRATE_DB_PORT"))
    db_name: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_DB_NAME"))
    db_user: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_DB_USER"))
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = Field(
        None, validation_alias=AliasChoices("MIGRATE_SSLMODE")
    )
    sslrootcert: Path | None = Field(None, validation_alias=AliasChoices("MIGRATE_SSLROOTCERT"))
    # The Node runner's `.env` convention: true = TLS (at least sslmode=require), false = no TLS.
    database_ssl: bool | None = Field(None, validation_alias=AliasChoices("DATABASE_SSL", "MIGRATE_DATABASE_SSL"))
    # libpq's own TLS variables, read here (the only module that reads the environment) for the precedence.
    libpq_sslmode: str | None = Field(None, validation_alias=AliasChoices("PGSSLMODE"), exclude=True)
    libpq_sslrootcert: str | None = Field(None, validation_alias=AliasChoices("PGSSLROOTCERT"), exclude=True)
    backup: Literal["auto", "none", "rds-snapshot", "pg-dump"] = Field(
        "auto", validation_alias=AliasChoices("MIGRATE_BACKUP")
    )
    backup_s3_uri: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_BACKUP_S3_URI"))
    backup_kms_key_id: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_BACKUP_KMS_KEY_ID"))
    backup_path: Path | None = Field(None, validation_alias=AliasChoices("MIGRATE_BACKUP_PATH"))
    backup_timeout: Duration = Field(1800.0, validation_alias=AliasChoices("MIGRATE_BACKUP_TIMEOUT"))
    backup_poll_interval: Duration = Field(15.0, validation_alias=AliasChoices("MIGRATE_BACKUP_POLL_INTERVAL"))
    rds_instance_id: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_RDS_INSTANCE_ID"))
    rds_cluster_id: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_RDS_CLUSTER_ID"))
    pg_dump: str = Field("pg_dump", validation_alias=AliasChoices("MIGRATE_PG_DUMP"))
    termination_log: Path | None = Field(
        Path("/dev/termination-log"), validation_alias=AliasChoices("MIGRATE_TERMINATION_LOG")
    )
    github_actions: bool = Field(False, validation_alias=AliasChoices("GITHUB_ACTIONS"))
    github_step_summary: Path | None = Field(None, validation_alias=AliasChoices("GITHUB_STEP_SUMMARY"))
    lint_gate: Literal["off", "error"] = Field("off", validation_alias=AliasChoices("MIGRATE_LINT_GATE"))
    # validate --offline lints only the migrations above this version (older ones are applied and frozen).
    lint_since: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_LINT_SINCE"))
    confirm_production: bool = Field(
        False, validation_alias=AliasChoices("MIGRATE_CONFIRM_PRODUCTION", "MIGRATE_CONFIRM")
    )
    adopt: bool = Field(True, validation_alias=AliasChoices("MIGRATE_ADOPT"))
    adopt_table: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_ADOPT_TABLE"))
    adopt_column: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_ADOPT_COLUMN"))
    schema_load_file: Path | None = Field(None, validation_alias=AliasChoices("MIGRATE_SCHEMA_LOAD_FILE"))
    baseline_version: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_BASELINE_VERSION"))
    schema_file: Path | None = Field(None, validation_alias=AliasChoices("MIGRATE_SCHEMA_FILE"))

    # Per-invocation options (CLI flags; also settable from the environment where it makes sense).
    target: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_TARGET"))
    dry_run: bool = False
    single_transaction: bool = Field(False, validation_alias=AliasChoices("MIGRATE_SINGLE_TRANSACTION"))
    pipeline: bool = Field(True, validation_alias=AliasChoices("MIGRATE_PIPELINE"))
    tenant_schema: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_TENANT_SCHEMA"))
    # Flyway-style ${name} placeholders: [placeholders] in the config file and MIGRATE_PLACEHOLDER_<NAME>.
    placeholders: dict[str, str] = Field(default_factory=dict, validation_alias=AliasChoices("MIGRATE_PLACEHOLDERS"))
    placeholder_replacement: Literal["auto", "on", "off"] = Field(
        "auto", validation_alias=AliasChoices("MIGRATE_PLACEHOLDER_REPLACEMENT")
    )

    # Fleets (`migrate-job fleet …`): many targets in one run.
    fleet_targets: Path | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_TARGETS"))
    fleet_parallel: int = Field(4, ge=1, le=256, validation_alias=AliasChoices("MIGRATE_FLEET_PARALLEL"))
    fleet_max_per_host: int | None = Field(
        None, ge=1, le=256, validation_alias=AliasChoices("MIGRATE_FLEET_MAX_PER_HOST")
    )
    fleet_canary: int = Field(0, ge=0, validation_alias=AliasChoices("MIGRATE_FLEET_CANARY"))
    fleet_max_failures: int | None = Field(None, ge=1, validation_alias=AliasChoices("MIGRATE_FLEET_MAX_FAILURES"))
    fleet_shard: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_SHARD"))
    fleet_shards: int | None = Field(None, ge=1, le=10000, validation_alias=AliasChoices("MIGRATE_FLEET_SHARDS"))
    job_completion_index: int | None = Field(None, ge=0, validation_alias=AliasChoices("JOB_COMPLETION_INDEX"))
    report_file: Path | None = Field(None, validation_alias=AliasChoices("MIGRATE_REPORT_FILE"))
    fleet_schemas: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_SCHEMAS"))
    fleet_schemas_query: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_SCHEMAS_QUERY"))
    fleet_secrets_prefix: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_SECRETS_PREFIX"))
    fleet_secrets_tag: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_SECRETS_TAG"))
    fleet_catalog_query: str | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_CATALOG_QUERY"))
    fleet_catalog_url: SecretStr | None = Field(None, validation_alias=AliasChoices("MIGRATE_FLEET_CATALOG_URL"))
    interactive: bool = Field(False, exclude=True)  # stdin is a TTY (set by the CLI)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI flags (init) > environment variables > config file ([env.NAME] > shared) > defaults.
        return init_settings, env_settings, _FileSource(settings_cls)

    @field_validator("filename_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            compile_filename_pattern(value)
        return value

    @field_validator("placeholders", mode="before")
    @classmethod
    def _placeholder_values(cls, value: Any) -> Any:
        if isinstance(value, dict):  # names are case-insensitive (as Flyway's); values are text
            return {str(k).lower(): v if isinstance(v, str) else str(v) for k, v in value.items()}
        return value

    @field_validator("tenant_schema")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        return None if value is None else cls._identifier(value)

    @field_validator("fleet_shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            index, sep, count = value.partition("/")
            if not (sep and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
                raise ValueError("expected I/N with 0 <= I < N, e.g. 0/4")
        return value

    @field_validator("fleet_secrets_tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        if value is not None and "=" not in value:
            raise ValueError("expected KEY=VALUE")
        return value

    @field_validator("history_schema", "history_table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError("must be a plain SQL identifier (letters, digits, _; at most 63 characters)")
        return value

    @field_validator("adopt_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        if value is not None and not _IDENT.match(value):
            raise ValueError("must be a column name (letters, digits, _; at most 63 characters)")
        return value

    @field_validator("adopt_table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not all(_IDENT.match(part) for part in value.split(".", 1)):
            raise ValueError("must be schema.table or table (plain SQL identifiers)")
        return value

    @property
    def lock_timeout_ms(self) -> int:
        return round(self.lock_timeout * 1000)

    @property
    def statement_timeout_ms(self) -> int:
        return round(self.statement_timeout * 1000)

    @property
    def has_connection(self) -> bool:
        return any(
            (
                self.database_url is not None,
                self.libpq_env,
                self.database_secret_id,
                self.database_url_parameter,
                self.iam_auth and self.db_host,
            )
        )

    @property
    def connection_source(self) -> str:
        """Where the connection comes from; the first that is set wins (see README)."""
        if self.database_url is not None or self.libpq_env:
            return "iam" if self.iam_auth else "url"
        if self.database_secret_id:
            return "secret"
        if self.database_url_parameter:
            return "parameter"
        if self.iam_auth:
            return "iam"
        return "none"

    @property
    def is_production(self) -> bool:
        return self.env.strip().lower() in ("production", "prod")

    @property
    def effective_sslmode(self) -> str | None:
        """The sslmode from the settings alone (no sslmode in the URL): see `choose_sslmode`."""
        return self.tls(url_sslmode=None, url_sslrootcert=None)[0]

    def tls(self, *, url_sslmode: str | None, url_sslrootcert: str | None) -> tuple[str | None, str]:
        """(sslmode, where it came from) for a connection whose URL/conninfo has these TLS parameters."""
        return choose_sslmode(
            explicit=self.sslmode,
            url=url_sslmode,
            pgsslmode=self.libpq_sslmode,
            database_ssl=self.database_ssl,
            rootcert=bool(self.sslrootcert or url_sslrootcert or self.libpq_sslrootcert),
            production=self.is_production,
            iam=self.iam_auth,
        )

    def secrets(self) -> list[str]:
        """Secret strings that must never be printed (used by the log redactor)."""
        found = [p for p in (password_of(self.database_url), password_of(self.fleet_catalog_url)) if p]
        found += [v for k, v in self.placeholders.items() if _SECRET_NAME.search(k) and v]
        pgpassword = os.environ.get("PGPASSWORD")
        if pgpassword:
            found.append(pgpassword)
        return found


def password_of(url: SecretStr | None) -> str | None:
    """The password inside a connection URL or conninfo, if any (for the log redactor)."""
    if url is None:
        return None
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(url.get_secret_value()).get("password")
    except Exception:
        return None
    return str(password) if password else None


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def choose_sslmode(
    *,
    explicit: str | None,
    url: str | None,
    pgsslmode: str | None,
    database_ssl: bool | None,
    rootcert: bool,
    production: bool,
    iam: bool,
) -> tuple[str | None, str]:
    """The sslmode of the job's connections and its origin (for messages). None = libpq's default.

    Precedence: MIGRATE_SSLMODE > sslmode in the URL/conninfo > PGSSLMODE > DATABASE_SSL (true: require, or
    verify-full when a root certificate is configured; false: disable). Then floors that only MIGRATE_SSLMODE
    can lower: production needs at least verify-full, RDS IAM auth at least require.
    """
    if explicit:
        return explicit, "MIGRATE_SSLMODE"
    mode: str | None = None
    origin = "libpq default"
    if url:
        mode, origin = url, "sslmode in DATABASE_URL"
    elif pgsslmode:
        mode, origin = pgsslmode, "PGSSLMODE"
    elif database_ssl is not None:
        if database_ssl:
            mode = "verify-full" if rootcert else "require"
            origin = "DATABASE_SSL=true" + (" with a root certificate" if rootcert else "")
        else:
            mode, origin = "disable", "DATABASE_SSL=false"
    floor = None
    if production:
        floor = ("verify-full", "MIGRATE_ENV=production")
    elif iam:
        floor = ("require", "MIGRATE_IAM_AUTH")
    if floor and _strength(mode) < _strength(floor[0]):
        return floor[0], f"{floor[1]} (needs at least sslmode={floor[0]}; MIGRATE_SSLMODE overrides)"
    return mode, origin


def _strength(mode: str | None) -> int:
    """disable < allow < prefer (libpq's default) < require < verify-ca < verify-full; unknown values lowest."""
    if mode is None:
        return SSLMODES.index("prefer")
    return SSLMODES.index(mode) if mode in SSLMODES else -1


_FIELD_ENV = {
    name: str(field.validation_alias.choices[0]) if isinstance(field.validation_alias, AliasChoices) else name
    for name, field in Settings.model_fields.items()
}


def env_name(field: str) -> str:
    """The environment variable that sets `field` (for error messages and docs)."""
    return _FIELD_ENV.get(field, field)


def _default_applied_by() -> str:
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_RUN_ID"):
        return f"github:{env.get('GITHUB_REPOSITORY', '')}#{env['GITHUB_RUN_ID']}"
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


# Settings whose command-line flag is not `--<name with dashes>` (error messages name the flag the user typed).
FLAGS = {
    "format": "--layout",
    "confirm_production": "--yes",
    "fleet_targets": "--targets",
    "fleet_parallel": "--parallel",
    "fleet_max_per_host": "--max-per-host",
    "fleet_canary": "--canary",
    "fleet_max_failures": "--max-failures",
    "fleet_shard": "--shard",
    "fleet_shards": "--shards",
    "fleet_schemas": "--schemas",
    "fleet_schemas_query": "--schemas-query",
    "fleet_secrets_prefix": "--secrets-prefix",
    "fleet_secrets_tag": "--secrets-tag",
    "fleet_catalog_query": "--catalog-query",
}


_PLACEHOLDER_ENV = "MIGRATE_PLACEHOLDER_"
_SECRET_NAME = re.compile(r"password|passwd|secret|token|credential|private|api_?key", re.IGNORECASE)


def _placeholders_from_env() -> dict[str, str]:
    """MIGRATE_PLACEHOLDER_<NAME>=value (Flyway's FLYWAY_PLACEHOLDERS_<NAME>): name lower-cased."""
    return {
        key[len(_PLACEHOLDER_ENV) :].lower(): value
        for key, value in os.environ.items()
        if key.upper().startswith(_PLACEHOLDER_ENV) and key.upper() != "MIGRATE_PLACEHOLDER_REPLACEMENT"
    }


def _lower(values: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def env_value(name: str) -> str | None:
    """The value of the environment variable `name` (for settings that name another variable, e.g. a fleet
    target's `url_env`); None when unset or empty."""
    return os.environ.get(name) or None


def find_config_file(explicit: Path | None) -> Path | None:
    """--config / MIGRATE_CONFIG, else ./migrate.toml, else ./pyproject.toml (if it has [tool.migrate-job])."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} not found (--config / MIGRATE_CONFIG)", setting="MIGRATE_CONFIG")
        return explicit
    for name in ("migrate.toml", "pyproject.toml"):
        candidate = Path(name)
        if candidate.is_file():
            return candidate
    return None


def _file_values(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], Any, str | None]:
    """Values (and their origins) from the config file for the selected environment, the file and that env."""
    from job import configfile

    explicit = overrides.get("config") or (
        Path(os.environ["MIGRATE_CONFIG"]) if os.environ.get("MIGRATE_CONFIG") else None
    )
    path = find_config_file(Path(explicit) if explicit else None)
    if path is None:
        return {}, {}, None, None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({type(exc).__name__})", file=str(path)) from None
    cfg = configfile.parse(path, text, pyproject=path.name == "pyproject.toml")
    if cfg is None:
        return {}, {}, None, None
    configfile.check_keys(cfg, set(Settings.model_fields))
    chosen = overrides.get("env") or os.environ.get("MIGRATE_ENV")
    env = str(chosen or cfg.shared.get("env") or "dev")
    values, origin = configfile.values_for(cfg, env, strict_env=chosen is not None)
    ref = values.pop("database_url_env", None)
    origin.pop("database_url_env", None)
    if ref is not None:
        if os.environ.get(str(ref)):
            values["database_url"] = os.environ[str(ref)]
            origin["database_url"] = f"${ref} (named by {cfg.where(env)})"
        else:
            origin["database_url"] = f"unset: ${ref} (named by {cfg.where(env)}) is empty"
    return values, origin, cfg, env


_LOG_FORMATS = ("auto", "json", "console")


def early_log_format(flag: str | None) -> str:
    """The log format for an error before the settings exist (an unknown --env, a bad value): --log-format,
    else MIGRATE_LOG_FORMAT, else auto; a value that is itself invalid counts as auto."""
    value = (flag or os.environ.get("MIGRATE_LOG_FORMAT") or "auto").strip().lower()
    return value if value in _LOG_FORMATS else "auto"


_FROM_ENV_FILE: dict[str, str] = {}  # variable -> the env file that set it


def load_env_file() -> None:
    """dbmate's and the Node runners' `.env`: the variables of ./.env (or MIGRATE_ENV_FILE; empty: none) that the
    environment does not set are added to it, so every reader (libpq's PG*, pg_dump) sees them as dbmate's
    do. A missing ./.env is fine; a MIGRATE_ENV_FILE that does not exist is an error (exit 2)."""
    named = os.environ.get("MIGRATE_ENV_FILE")
    name = ".env" if named is None else named
    if not name:
        return
    path = Path(name)
    if not path.is_file():
        if named:
            raise ConfigError(f"env file {name} not found (MIGRATE_ENV_FILE)", setting="MIGRATE_ENV_FILE")
        return
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, interpolate=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the env file ({type(exc).__name__})", file=str(path)) from None
    for key, value in values.items():
        if value is not None and key not in os.environ:
            os.environ[key] = value
            _FROM_ENV_FILE[key] = str(path)


def load_settings(**overrides: Any) -> Settings:
    """Build the frozen settings from CLI overrides (None = not given), the environment (with `.env`, see
    load_env_file) and the config file.

    Raises ConfigError naming the setting (and for file values the file, key and line); the offending
    value is never echoed (it may be a secret).
    """
    load_env_file()
    given = {k: v for k, v in overrides.items() if v is not None}
    given.setdefault("libpq_env", any(os.environ.get(k) for k in LIBPQ_ENV))
    from_env = _placeholders_from_env()
    file_values, file_origin, cfg, file_env = _file_values(given)
    _FILE_VALUES.clear()
    _FILE_VALUES.update(file_values)
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        given_by_flag = field in overrides and overrides.get(field) is not None
        env_var = env_name(field)
        if given_by_flag:
            name = FLAGS.get(field, f"--{field.replace('_', '-')}")
        elif cfg is not None and field in file_values and not os.environ.get(env_var):
            line = cfg.line_of(field, None if file_origin[field] == cfg.where(None) else file_env)
            raise ConfigError(
                f"{cfg.path}:{line}: invalid value for {field}: {err['msg']}", file=str(cfg.path), key=field, line=line
            ) from None
        else:
            name = env_var
        raise ConfigError(f"invalid setting {name}: {err['msg']}", setting=name) from None
    finally:
        _FILE_VALUES.clear()
    if settings.filename_pattern is not None and settings.format != "auto":
        raise ConfigError(
            "MIGRATE_FILENAME_PATTERN and MIGRATE_FORMAT cannot be combined: the pattern replaces the layout "
            "detection; unset one of them",
            setting="MIGRATE_FILENAME_PATTERN",
        )
    if not settings.applied_by:
        settings = settings.model_copy(update={"applied_by": _default_applied_by()})
    merged = {**_lower(file_values.get("placeholders")), **settings.placeholders, **from_env}
    if merged != settings.placeholders:
        settings = settings.model_copy(update={"placeholders": merged})  # env over file, key by key
    if settings.tenant_schema and "history_schema" not in settings.model_fields_set:
        settings = settings.model_copy(update={"history_schema": settings.tenant_schema})  # the tenant's own history
    if cfg is not None and settings.config is None:  # found, not named: say which file was read
        settings = settings.model_copy(update={"config": cfg.path})
        file_origin = {**file_origin, "config": "found in the working directory"}
    _ORIGINS.clear()
    _ORIGINS.update(_origins(given, file_origin))
    return settings


_ORIGINS: dict[str, str] = {}


def _origins(given: dict[str, Any], file_origin: dict[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        env_vars = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [f"MIGRATE_{name.upper()}"]
        set_env = next((v for v in env_vars if os.environ.get(v)), None)
        if name in given and name not in ("libpq_env", "interactive"):
            result[name] = "command line"
        elif set_env:
            result[name] = f"${set_env}" + (f" (from {_FROM_ENV_FILE[set_env]})" if set_env in _FROM_ENV_FILE else "")
        elif name in file_origin:
            result[name] = file_origin[name]
        else:
            result[name] = "default"
    return result


def origins() -> dict[str, str]:
    """Where each setting of the last `load_settings` came from (for `config show`)."""
    return dict(_ORIGINS)


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    """Environment for a child process (pg_dump): ours without libpq variables, plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in ("DATABASE_URL",)}
    return {**base, **extra}
