"""Helpers for the end-to-end tests: run the real CLI as a subprocess and look at the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
HISTORY = "public.migrate_job_history"


def clean_env(database_url: str | None, **extra: str) -> dict[str, str]:
    """The current environment without any database or migrate-job setting, plus ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("PG", "MIGRATE_")) or k in ("DATABASE_URL", "TEST_DATABASE_URL"))
    }
    env["MIGRATE_LOG_FORMAT"] = "json"
    env["PYTHONPATH"] = str(ROOT)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "job", *args]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object (log lines); other lines are ignored."""
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def run(
    database_url: str | None,
    *args: str,
    cwd: Path,
    **env: str,
) -> Result:
    """Run `python -m job ARGS` in `cwd`; logs are parsed from both streams."""
    proc = subprocess.run(
        command(*args),
        cwd=cwd,
        env=clean_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, json_lines(proc.stdout) + json_lines(proc.stderr))


def migrate(database_url: str | None, directory: Path, *args: str, **env: str) -> Result:
    return run(database_url, "migrate", "--dir", str(directory), *args, cwd=directory.parent, **env)


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    """Create `directory` (if needed) with the given files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        path = directory / name
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body, encoding="utf-8")
    return directory


# ---------------------------------------------------------------------------- database


def query(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def execute(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql, params)


def history_exists(database_url: str) -> bool:
    return query(database_url, "SELECT to_regclass(%s) IS NOT NULL", (HISTORY,)) == [(True,)]


def history(database_url: str) -> list[dict[str, Any]]:
    """History rows (as dicts) ordered by numeric version; [] when the table does not exist."""
    if not history_exists(database_url):
        return []
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        rows = cur.execute(f"SELECT * FROM {HISTORY}").fetchall()
    return sorted(rows, key=lambda r: [int(p) for p in str(r["version"]).split(".")])


def versions(database_url: str) -> list[str]:
    return [str(r["version"]) for r in history(database_url)]


def tables(database_url: str) -> set[str]:
    """Tables of the public schema (without the history table)."""
    rows = query(
        database_url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'migrate_job_history'",
    )
    return {str(r[0]) for r in rows}


def snapshot(database_url: str) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """Every user relation (schema, name, kind) and every history row: to compare before/after."""
    relations = query(
        database_url,
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        " AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'"
        " ORDER BY 1, 2",
    )
    return relations, history(database_url)


def advisory_locks(database_url: str) -> list[tuple[Any, ...]]:
    """Advisory locks (held or awaited) in the database of `database_url`."""
    return query(
        database_url,
        "SELECT pid, classid, objid, granted FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )


def runner_sessions(database_url: str) -> list[tuple[Any, ...]]:
    """Sessions of migrate-job (by application_name) connected to the database."""
    return query(
        database_url,
        "SELECT pid, application_name, state FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'migrate-job%%'",
    )


def wait_until_no_runner_left(database_url: str, timeout: float = 10.0) -> tuple[list[Any], list[Any]]:
    """Poll until no migrate-job session and no advisory lock remain; returns what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = runner_sessions(database_url), advisory_locks(database_url)
        if not left[0] and not left[1]:
            return left
        if time.monotonic() > deadline:
            return left
        time.sleep(0.1)
