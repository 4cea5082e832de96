"""Helpers for the end-to-end tests: run the real CLI as a subprocess and look at the database.

The one home of what the PostgreSQL and AWS end-to-end tests share: the child environment, running
`python -m job` to its end, parsing its JSON logs, and probing the database (history, relations,
locks, schema dumps). tests/pg/runner.py adds live processes (signals, waiting for a log event) on
top of it; tests/pgutil.py holds the server and its throwaway databases.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from job.devserver import find_bindir

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "layouts"
HISTORY = "public.migrate_job_history"
# What migrate-job itself leaves in a database: the history table, its audit table (`_log`), their keys.
OWN_RELATIONS = {
    "public.migrate_job_history",
    "public.migrate_job_history_pkey",
    "public.migrate_job_history_log",
    "public.migrate_job_history_log_pkey",
    "public.migrate_job_history_log_id_seq",
}

Params = tuple[Any, ...] | dict[str, Any]

# ---------------------------------------------------------------------------- the CLI


def clean_env(database_url: str | None, **extra: str) -> dict[str, str]:
    """The current environment without any database or migrate-job setting, plus ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("PG", "MIGRATE_")) or k in ("DATABASE_URL", "TEST_DATABASE_URL"))
    }
    env["MIGRATE_LOG_FORMAT"] = "json"
    env["MIGRATE_ENV_FILE"] = ""  # no developer's ./.env (tests of .env set it back)
    env["PYTHONPATH"] = str(ROOT)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "job", *args]


def parse_logs(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON-object lines among `lines` (log events); anything else is ignored."""
    found: list[dict[str, Any]] = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object (log lines); other lines are ignored."""
    return parse_logs(text.splitlines())


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    logs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def parse(cls, returncode: int, stdout: str, stderr: str) -> Result:
        """The result with the log lines of both streams parsed."""
        return cls(returncode, stdout, stderr, json_lines(stdout) + json_lines(stderr))

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("level") == "error"]

    def error_text(self) -> str:
        """The one error line of a failed run (asserts there is exactly one)."""
        errors = self.errors()
        assert len(errors) == 1, self.describe()
        return str(errors[0].get("error", ""))

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


CRASH_EVENT = "run.crashed"


def fail_on_crash(output: str, describe: str) -> None:
    """Fail the test when the job logged `run.crashed`: a path nobody designed (issue 16 §6).

    Every failure the job understands has its own event, one line and a documented exit code.
    """
    if CRASH_EVENT in output:
        pytest.fail(f"the job logged {CRASH_EVENT} (an undesigned failure path)\n{describe}", pytrace=False)


def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    stdin: int | None = None,
    timeout: float = 120,
    allow_crash: bool = False,
) -> Result:
    """Run `python -m job ARGS` to its end with exactly `env` (see clean_env); stdin is inherited unless given.

    Fails the test if the job logged `run.crashed`, unless `allow_crash` (only for a deliberate bug).
    """
    proc = subprocess.run(
        command(*args),
        cwd=cwd,
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Result.parse(proc.returncode, proc.stdout, proc.stderr)
    if not allow_crash:
        fail_on_crash(result.output, result.describe())
    return result


def run(database_url: str | None, *args: str, cwd: Path | None = None, **env: str) -> Result:
    """Run `python -m job ARGS` in `cwd`; logs are parsed from both streams."""
    return run_cli(*args, env=clean_env(database_url, **env), cwd=cwd)


def migrate(database_url: str | None, directory: Path, *args: str, **env: str) -> Result:
    return run(database_url, "migrate", "--dir", str(directory), *args, cwd=directory.parent, **env)


def run_unattended(database_url: str, *args: str, **env: str) -> Result:
    """`python -m job ARGS` with stdin not a TTY, MIGRATE_CONNECT_TIMEOUT=10s (unless `env` sets it), 180 s at most."""
    env = {"MIGRATE_CONNECT_TIMEOUT": "10s", **env}
    return run_cli(*args, env=clean_env(database_url, **env), stdin=subprocess.DEVNULL, timeout=180)


def migrate_unattended(database_url: str, folder: Path, *args: str, **env: str) -> Result:
    """`migrate --dir FOLDER ARGS` run as `run_unattended` does (in the current directory)."""
    return run_unattended(database_url, "migrate", "--dir", str(folder), *args, **env)


def applied_versions(result: Result) -> list[str]:
    """Versions of the run's migration.applied events, in order."""
    return [str(e["version"]) for e in result.events("migration.applied")]


# ---------------------------------------------------------------------------- files


def write(directory: Path, files: Mapping[str, str | bytes]) -> Path:
    """Create `directory` (if needed) with the given files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        path = directory / name
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body, encoding="utf-8")
    return directory


def sha256(path: Path) -> str:
    """The checksum migrate-job stores for `path`: SHA-256 without a BOM, line endings as LF."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- database


def query(database_url: str, statement: str, params: Params | None = None) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit; its rows ([] for a statement that returns none).

    Without `params` the statement is sent as it is (a `%` needs no doubling).
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description is not None else []


def execute(database_url: str, script: str, params: Params | None = None) -> None:
    """Run SQL the way a migration tool would: one transaction per call, committed at the end."""
    with psycopg.connect(database_url) as conn:
        conn.execute(script, params)


def history_exists(database_url: str) -> bool:
    return query(database_url, "SELECT to_regclass(%s) IS NOT NULL", (HISTORY,)) == [(True,)]


def version_key(version: object) -> list[tuple[int, int | str]]:
    """Sorts dotted numeric versions numerically; other parts (Flyway's R__ names) come after numbers."""
    return [(0, int(part)) if part.isdecimal() else (1, part) for part in str(version).split(".")]


def history(database_url: str) -> list[dict[str, Any]]:
    """History rows (as dicts) ordered by version (see version_key); [] when the table does not exist."""
    if not history_exists(database_url):
        return []
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(f"SELECT * FROM {HISTORY}").fetchall()
    return sorted(rows, key=lambda r: version_key(r["version"]))


def history_by_version(database_url: str) -> dict[str, dict[str, Any]]:
    """History rows by version; {} when the table does not exist."""
    return {str(r["version"]): r for r in history(database_url)}


def versions(database_url: str) -> list[str]:
    return [str(r["version"]) for r in history(database_url)]


def tables(database_url: str) -> set[str]:
    """Tables of the public schema (without the history table and its audit table)."""
    rows = query(
        database_url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename NOT IN ('migrate_job_history', 'migrate_job_history_log')",
    )
    return {str(r[0]) for r in rows}


def user_relations(database_url: str, *, without_history: bool = False) -> set[str]:
    """Every table, view, sequence, index, … outside the system schemas (as schema.name).

    `without_history` leaves out the history table and its index.
    """
    statement = (
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
    )
    if without_history:
        statement += " AND c.relname NOT LIKE 'migrate\\_job\\_history%'"
    return {str(r[0]) for r in query(database_url, statement)}


def snapshot(database_url: str) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """Every user relation (schema, name, kind) and every history row: to compare before/after."""
    relations = query(
        database_url,
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        " AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'"
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
        " WHERE datname = current_database() AND application_name LIKE 'migrate-job%'",
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


# ---------------------------------------------------------------------------- PostgreSQL client tools


def pg_tool(name: str, *, skip_if_missing: bool = False) -> str:
    """The PostgreSQL client tool matching the test server: the DevServer's bindir, or PATH for TEST_DATABASE_URL.

    A tool missing from PATH skips the test with `skip_if_missing`; otherwise running it fails.
    """
    if os.environ.get("TEST_DATABASE_URL"):
        found = shutil.which(name)
        if found is None and skip_if_missing:
            pytest.skip(f"{name} is not on PATH")
        return found or name
    bindir = os.environ.get("TEST_PG_BINDIR")
    return str(find_bindir(Path(bindir) if bindir else None) / name)


def raw_schema_dump(database_url: str) -> str:
    """`pg_dump --schema-only --no-owner` of the database without the history and audit tables, as pg_dump prints it."""
    proc = subprocess.run(
        [
            pg_tool("pg_dump"),
            "--schema-only",
            "--no-owner",
            f"--exclude-table={HISTORY}",
            f"--exclude-table={HISTORY}_log",
            f"--dbname={database_url}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def schema_dump(database_url: str) -> str:
    """`pg_dump --schema-only` without the history table (and without pg_dump's random \\restrict key)."""
    lines = raw_schema_dump(database_url).splitlines()
    return "\n".join(line for line in lines if not line.startswith(("\\restrict", "\\unrestrict")))
