"""Fixtures for the AWS tests: moto in server mode over real HTTP, the CLI as a subprocess, a leak scanner.

The job is always run as `python -m job` in a subprocess that reaches moto through AWS_ENDPOINT_URL
(boto3 honours it); nothing is patched. Every output of every subprocess is kept in ``OUTPUTS`` and
every secret value the tests create is kept in ``SECRETS``; after each test all outputs captured so far
in the session (per xdist worker) are scanned for every secret known so far.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.pg import cli
from tests.pg.cli import HISTORY, Result, query
from tests.pgutil import PgServer

REGION = "us-east-1"
# Fragments of an RDS IAM auth token (a presigned query string): none may ever be printed.
TOKEN_MARKERS = ("X-Amz-Signature", "X-Amz-Credential", "Action=connect&DBUser")

OUTPUTS: list[str] = []  # stdout + stderr of every subprocess run in this session
SECRETS: set[str] = set()  # every secret value the tests handed to AWS or to the job


def remember_secret(value: str) -> str:
    """Register `value` as a secret that must never appear in any output; returns it."""
    SECRETS.add(value)
    return value


def leaks(text: str) -> list[str]:
    """The known secrets and token fragments that occur in `text` (shortened for the message)."""
    found = [f"{s[:6]}…({len(s)} chars)" for s in SECRETS if s and s in text]
    return found + [m for m in TOKEN_MARKERS if m in text]


@pytest.fixture(autouse=True)
def _no_secret_in_any_output() -> Iterator[None]:
    """After each test: no output captured so far in the session contains any secret known so far."""
    yield
    for i, text in enumerate(OUTPUTS):
        found = leaks(text)
        assert not found, f"output #{i} of this session leaks {found}:\n{text[:2000]}"


# ---------------------------------------------------------------------------- moto


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server (all services) on a free local port for the session; stopped at the end."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def boto_client(endpoint: str, service: str, **credentials: str) -> Any:
    creds = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=REGION, **creds)


Client = Callable[[str], Any]  # what the `aws` fixture returns: service name -> boto3 client


def unique(prefix: str) -> str:
    """`prefix` plus a random suffix: a name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def aws(moto_url: str) -> Client:
    """A boto3 client factory for the session's moto server (test setup and inspection only)."""
    return lambda service: boto_client(moto_url, service)


def aws_env(endpoint: str, **extra: str) -> dict[str, str]:
    """What a job running on AWS would have: an endpoint (moto), credentials and a region."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "MIGRATE_AWS_REGION": REGION,
        **extra,
    }


class AuthMotoServer:
    """A second moto server in its own process with IAM enforced after `allowed` unauthenticated calls.

    moto keeps INITIAL_NO_AUTH_ACTION_COUNT in a process-wide setting, so it cannot be enabled for one
    of two ThreadedMotoServers of the same process: this one runs in a child process with the
    variable set before the server starts.
    """

    SCRIPT = textwrap.dedent(
        """
        import logging, sys
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from moto.server import ThreadedMotoServer
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        print(server.get_host_and_port()[1], flush=True)
        sys.stdin.read()
        server.stop()
        """
    )

    def __init__(self, allowed: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(allowed)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the auth-enforcing moto server did not start")
        self.url = f"http://127.0.0.1:{int(line)}"

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------- the CLI


def job_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment without any database, migrate-job or AWS setting, plus `extra`."""
    env = {
        k: v
        for k, v in cli.clean_env(None).items()
        if not (k.startswith("AWS_") or k == "INITIAL_NO_AUTH_ACTION_COUNT")
    }
    env.update(MIGRATE_CONNECT_TIMEOUT="10", MIGRATE_LOCK_WAIT_TIMEOUT="30")
    env.update(extra)
    return env


def run_job(*args: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> Result:
    """Run `python -m job ARGS` (stdin not a TTY) and keep its output for the leak scan."""
    full_env = job_env(env)
    assert not any(k.startswith("PG") for k in full_env), "libpq variables must not reach the job"
    result = cli.run_cli(*args, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL, timeout=timeout)
    OUTPUTS.append(result.output)
    return result


def migrate(directory: Path, env: dict[str, str], *args: str) -> Result:
    return run_job("migrate", "--dir", str(directory), *args, cwd=directory.parent, env=env)


# ---------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class Target:
    """A test database owned by a login role with a password (what an RDS secret describes)."""

    inspect_url: str  # the test's admin URL for this database (inspection only, never given to the job)
    host: str
    port: int
    dbname: str
    user: str
    password: str

    @property
    def url(self) -> str:
        """postgresql://user:password@host:port/dbname with the password percent-encoded."""
        return f"postgresql://{self.user}:{quote(self.password, safe='')}@{self.host}:{self.port}/{self.dbname}"

    def rds_secret(self, **changes: Any) -> str:
        """The JSON an RDS-managed Secrets Manager secret holds."""
        data: dict[str, Any] = {
            "username": self.user,
            "password": self.password,
            "engine": "postgres",
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
        }
        data.update(changes)
        return json.dumps({k: v for k, v in data.items() if v is not None})


@pytest.fixture
def target(pg_server: PgServer, db_url: str) -> Iterator[Target]:
    """The `db_url` database, owned by a new role with a password (dropped with the database after the test)."""
    params = conninfo_to_dict(db_url)
    role = f"mj_{uuid.uuid4().hex[:12]}"
    password = remember_secret(f"Pw{secrets.token_hex(10)}#!%^*{secrets.token_hex(4)}")
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(str(params["dbname"])), sql.Identifier(role))
        )
    try:
        yield Target(
            inspect_url=db_url,
            host=str(params.get("host") or "localhost"),
            port=int(params.get("port") or 5432),
            dbname=str(params["dbname"]),
            user=role,
            password=password,
        )
    finally:
        with psycopg.connect(pg_server.url(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(params["dbname"])))
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def applied_versions(url: str) -> list[str]:
    """Versions recorded as applied ([] when the history table does not exist)."""
    if query(url, "SELECT to_regclass(%s) IS NOT NULL", (HISTORY,)) != [(True,)]:
        return []
    return sorted(str(r[0]) for r in query(url, f"SELECT version FROM {HISTORY} WHERE status = 'applied'"))


def table_exists(url: str, name: str) -> bool:
    return query(url, "SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",)) == [(True,)]


MIGRATION_1 = """-- UP
CREATE TABLE items (id integer PRIMARY KEY, label text NOT NULL);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) AS g;
-- DOWN
DROP TABLE items;
"""
MIGRATION_2 = """-- UP
CREATE TABLE notes (id integer PRIMARY KEY, body text);
-- DOWN
DROP TABLE notes;
"""


def write_migrations(directory: Path, count: int = 2) -> Path:
    """Migration 1 creates and fills `items`; migration 2 creates `notes`."""
    directory.mkdir(parents=True, exist_ok=True)
    bodies = {"0001_create_items.sql": MIGRATION_1, "0002_create_notes.sql": MIGRATION_2}
    for name, body in list(bodies.items())[:count]:
        (directory / name).write_text(body, encoding="utf-8")
    return directory


def pg_tool(name: str) -> str:
    """The PostgreSQL client tool matching the test server; skips the test if it is needed from PATH and missing."""
    return cli.pg_tool(name, skip_if_missing=True)
