"""The optional config file: shared settings plus one section per named environment.

`migrate.toml` (or a `[tool.migrate-job]` table in `pyproject.toml`):

    dir = "db/migrations"            # shared settings: top-level keys
    lock_timeout = "5s"

    [env.dev]
    database_url_env = "DEV_DATABASE_URL"     # read the URL from this environment variable

    [env.production]
    database_secret_id = "prod/app/db"
    backup = "rds-snapshot"
    confirm_production = false                # true: no confirmation needed (e.g. a CI-only config)

Keys are the settings' names (the environment variable without MIGRATE_, lower-case). Pure: parses text.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from job.errors import ConfigError

# Not settable from a file: secrets and per-invocation switches.
FORBIDDEN = {"database_url", "interactive", "libpq_env", "dry_run", "target", "single_transaction"}
EXTRA_KEYS = {"database_url_env"}


@dataclass(frozen=True)
class ConfigFile:
    """A parsed migrate.toml (or pyproject.toml's [tool.migrate-job]): shared and per-env values."""

    path: Path
    text: str
    shared: dict[str, Any] = field(default_factory=dict)
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)
    prefix: tuple[str, ...] = ()  # ("tool", "migrate-job") for pyproject.toml

    def line_of(self, key: str, env: str | None = None) -> int:
        """Best-effort line number of `key` (in [env.NAME] when given) for error messages."""
        lines = self.text.splitlines()
        start = 0
        if env is not None:
            header = re.compile(r"^\s*\[\s*(?:tool\.\"?migrate-job\"?\.)?env\.\"?" + re.escape(env) + r"\"?\s*\]")
            start = next((i for i, ln in enumerate(lines) if header.match(ln)), 0)
        pattern = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
        for i in range(start, len(lines)):
            if pattern.match(lines[i]):
                return i + 1
        return 1

    def where(self, env: str | None) -> str:
        table = ".".join((*self.prefix, "env", env)) if env else ".".join(self.prefix) or "top level"
        return f"{self.path} [{table}]"


def parse(path: Path, text: str, *, pyproject: bool = False) -> ConfigFile | None:
    """Parse a config file; None for a pyproject.toml without [tool.migrate-job]."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", file=str(path)) from None
    prefix: tuple[str, ...] = ()
    if pyproject:
        tool = data.get("tool", {})
        if "migrate-job" not in tool:
            return None
        data = tool["migrate-job"]
        prefix = ("tool", "migrate-job")
    envs_raw = data.pop("env", {})
    if not isinstance(envs_raw, dict) or not all(isinstance(v, dict) for v in envs_raw.values()):
        raise ConfigError(f"{path}: [env] must contain one table per environment, e.g. [env.uat]", file=str(path))
    return ConfigFile(path, text, dict(data), {str(k): dict(v) for k, v in envs_raw.items()}, prefix)


def check_keys(cfg: ConfigFile, known: set[str]) -> None:
    """Every key must be a known setting; raise ConfigError naming file, key and line otherwise."""
    for env, values in [(None, cfg.shared), *cfg.envs.items()]:
        for key in values:
            if key in FORBIDDEN:
                raise ConfigError(
                    f"{cfg.path}:{cfg.line_of(key, env)}: {key} cannot be set in the config file"
                    + (
                        " (a secret: use database_url_env, a secret id or an SSM parameter)"
                        if key == "database_url"
                        else ""
                    ),
                    file=str(cfg.path),
                    key=key,
                    line=cfg.line_of(key, env),
                )
            if key not in known and key not in EXTRA_KEYS:
                raise ConfigError(
                    f"{cfg.path}:{cfg.line_of(key, env)}: unknown key {key!r}" + (f" in [env.{env}]" if env else ""),
                    file=str(cfg.path),
                    key=key,
                    line=cfg.line_of(key, env),
                )


def values_for(cfg: ConfigFile, env: str, *, strict_env: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Merged values for `env` (env section over shared) and where each came from."""
    if cfg.envs and env not in cfg.envs and strict_env:
        known = ", ".join(sorted(cfg.envs))
        raise ConfigError(f"{cfg.path}: unknown environment {env!r} (defined: {known})", file=str(cfg.path), env=env)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in cfg.shared.items():
        merged[key], origin[key] = value, cfg.where(None)
    for key, value in cfg.envs.get(env, {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):  # [placeholders]: the env's add to shared
            value = {**merged[key], **value}
        merged[key], origin[key] = value, cfg.where(env)
    return merged, origin
