"""Hostile and unsuitable databases (issues 11 §5-6 and 16 §3, §4, §6), each class table-driven on a real server.

Connection failures that never heal fail at once, those that heal are retried; TLS settings the server cannot
meet are said in one line; a history table the role may not use, or a table of that name with another shape,
is a configuration error naming the GRANT or the setting; a read-only target (a hot standby, or
`default_transaction_read_only`) is refused before anything changes; and every other database failure outside
a migration body has its message and exit code.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from job import devserver
from job.dberror import as_job_error
from job.devserver import DevServer
from job.errors import ExitCode
from tests.pg.cli import (
    Result,
    fail_on_crash,
    history,
    migrate_unattended,
    pg_tool,
    query,
    run_unattended,
    snapshot,
    user_relations,
    write,
)
from tests.pg.runner import Jobs, free_port, open_transaction
from tests.pg.tlsproxy import TlsProxy, make_certificate
from tests.pgutil import DevServerFactory, PgServer

pytestmark = pytest.mark.pg

PASSWORD = "s3cret-Pa55-for-tests"
FILES = {
    "001_users.sql": "-- UP\nCREATE TABLE users (id int);\n-- DOWN\nDROP TABLE users;\n",
    "002_orders.sql": "-- UP\nCREATE TABLE orders (id int);\n-- DOWN\nDROP TABLE orders;\n",
}


def _admin(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _with_user(url: str, user: str, password: str | None = None, dbname: str | None = None) -> str:
    """`url` (postgresql://postgres@host:port/db) for another user (and password, database)."""
    rest = url.split("@", 1)[1]
    host, _, db = rest.partition("/")
    auth = f"{user}:{password}" if password is not None else user
    return f"postgresql://{auth}@{host}/{dbname or db}"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[DevServer]:
    """A private server where role `pw` must give a password (scram) and role `nohba` has no pg_hba entry."""
    root = Path(tempfile.mkdtemp(prefix="migrate-job-hostile-"))
    server = devserver.create(root / "data")
    try:
        server.start()
        _admin(server.url(), f"CREATE ROLE pw LOGIN PASSWORD '{PASSWORD}'", "CREATE ROLE nohba LOGIN")
        hba = server.datadir / "pg_hba.conf"
        rules = "host all pw 127.0.0.1/32 scram-sha-256\nhost all nohba 127.0.0.1/32 reject\n"
        hba.write_text(rules + hba.read_text())
        _admin(server.url(), "SELECT pg_reload_conf()")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _status(url: str, tmp_path: Path, **env: str) -> Result:
    folder = write(tmp_path / "migrations", FILES)
    return run_unattended(url, "status", "--dir", str(folder), **env)


def _failed_at_once(result: Result) -> dict[str, Any]:
    """The run failed with exit 5 after one attempt, without a retry, and never printed the password."""
    assert result.returncode == ExitCode.DB_UNREACHABLE, result.describe()
    assert not result.events("db.waiting"), result.describe()
    assert PASSWORD not in result.output
    (error,) = result.events("db.unreachable")
    assert error["attempts"] == 1 and "not retried" in error["error"], result.describe()
    return error


# ---------------------------------------------------------------------------- connection failures


NEVER_HEAL = [
    # (case, user, password, url suffix, extra env, text in the error, sqlstate)
    ("wrong password", "pw", "not-the-password", "", {}, "password authentication failed", "28P01"),
    ("no password given", "pw", None, "", {}, "no password", None),
    ("no pg_hba.conf entry", "nohba", None, "", {}, "pg_hba.conf rejects connection", "28000"),
    ("role does not exist", "ghost", None, "", {}, 'role "ghost" does not exist', "28000"),
    ("invalid sslmode value", "postgres", None, "?sslmode=bogus", {}, 'invalid sslmode value: "bogus"', None),
    ("invalid option value", "postgres", None, "?target_session_attrs=bogus", {}, "target_session_attrs", None),
    ("sslmode=require, server without TLS", "postgres", None, "?sslmode=require", {}, "does not support TLS", None),
    ("DATABASE_SSL=true, server without TLS", "postgres", None, "", {"DATABASE_SSL": "true"}, "DATABASE_SSL", None),
]


@pytest.mark.parametrize(
    ("user", "password", "suffix", "env", "expected", "sqlstate"),
    [case[1:] for case in NEVER_HEAL],
    ids=[case[0] for case in NEVER_HEAL],
)
def test_connection_failures_that_never_heal_fail_at_once(
    auth_server: DevServer,
    tmp_path: Path,
    user: str,
    password: str | None,
    suffix: str,
    env: dict[str, str],
    expected: str,
    sqlstate: str | None,
) -> None:
    """Bad credentials, no pg_hba entry, a missing role, a bad option or unmeetable TLS: exit 5 at once, no retry."""
    url = _with_user(auth_server.url(), user, password) + suffix
    result = _status(url, tmp_path, MIGRATE_CONNECT_TIMEOUT="60s", **env)
    error = _failed_at_once(result)
    assert expected in error["error"], result.describe()
    assert error.get("sqlstate") == sqlstate, result.describe()


def test_right_password_connects(auth_server: DevServer, tmp_path: Path) -> None:
    """The scram role with its password connects (the auth server is not simply refusing everyone)."""
    result = _status(_with_user(auth_server.url(), "pw", PASSWORD), tmp_path)
    assert result.returncode == 0, result.describe()
    assert PASSWORD not in result.output


def test_connection_refused_is_retried_until_the_timeout(tmp_path: Path) -> None:
    """Nobody listening on the port: retried (db.waiting) until MIGRATE_CONNECT_TIMEOUT, then exit 5."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    result = _status(url, tmp_path, MIGRATE_CONNECT_TIMEOUT="2s")
    assert result.returncode == ExitCode.DB_UNREACHABLE, result.describe()
    assert result.events("db.waiting"), result.describe()
    assert "database unreachable after" in result.error_text()


@dataclass(frozen=True)
class Heal:
    """A failure that heals: `break_it` makes connecting fail with `sqlstate`, `heal` repairs it."""

    sqlstate: str
    break_it: Callable[[DevServer, str], str]  # returns the URL the job connects to
    heal: Callable[[DevServer, str], None]


def _missing_database(server: DevServer, name: str) -> str:
    return server.url(name)


def _create_database(server: DevServer, name: str) -> None:
    _admin(server.url(), f'CREATE DATABASE "{name}"')


def _role_without_slots(server: DevServer, name: str) -> str:
    _admin(server.url(), f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT 0')
    return _with_user(server.url(), name)


def _give_slots(server: DevServer, name: str) -> None:
    _admin(server.url(), f'ALTER ROLE "{name}" CONNECTION LIMIT -1')


_HOLDERS: dict[str, psycopg.Connection[Any]] = {}


def _shutting_down(server: DevServer, name: str) -> str:
    """A smart shutdown waits for this open session; meanwhile new connections get 57P03."""
    _HOLDERS[name] = psycopg.connect(server.url(), autocommit=True)
    result = server._pg("pg_ctl", "stop", "-W", "-m", "smart", "-D", str(server.datadir))
    assert result.returncode == 0, result.stderr
    return server.url()


def _finish_shutdown_and_start(server: DevServer, name: str) -> None:
    _HOLDERS.pop(name).close()
    server.stop()
    server.start()


HEALS = {
    "database does not exist yet (3D000)": Heal("3D000", _missing_database, _create_database),
    "too many connections (53300)": Heal("53300", _role_without_slots, _give_slots),
    "the database system is shutting down (57P03)": Heal("57P03", _shutting_down, _finish_shutdown_and_start),
}


@pytest.mark.parametrize("heal", HEALS.values(), ids=HEALS.keys())
def test_connection_failures_that_heal_are_retried(
    devserver_factory: DevServerFactory, tmp_path: Path, heal: Heal
) -> None:
    """A missing database, no connection slots, a server shutting down: retried with the SQLSTATE until healed."""
    server = devserver_factory()
    name = f"heal_{uuid.uuid4().hex[:8]}"
    url = heal.break_it(server, name)
    jobs = Jobs(tmp_path)
    try:
        job = jobs.start(url, "wait", "--timeout", "120s")
        waiting = job.wait_for_event("db.waiting", timeout=60)
        assert waiting["sqlstate"] == heal.sqlstate, job.describe()
        heal.heal(server, name)
        assert job.wait(120) == 0, job.describe()
        assert job.events("db.connected") and job.events("db.ready"), job.describe()
    finally:
        jobs.stop_all()
        if name in _HOLDERS:
            _HOLDERS.pop(name).close()


# ---------------------------------------------------------------------------- DATABASE_SSL and its precedence


TLS_CASES = [
    # (case, url suffix, env, exit code, text in the error or None)
    ("DATABASE_SSL=false: no TLS", "", {"DATABASE_SSL": "false"}, 0, None),
    ("DATABASE_SSL=true: at least require", "", {"DATABASE_SSL": "true"}, 5, "sslmode=require (DATABASE_SSL=true)"),
    (
        "DATABASE_SSL=true with a root certificate: verify-full",
        "",
        {"DATABASE_SSL": "true", "MIGRATE_SSLROOTCERT": "ROOTCERT"},
        5,
        "sslmode=verify-full (DATABASE_SSL=true with a root certificate)",
    ),
    ("sslmode in the URL wins over DATABASE_SSL", "?sslmode=disable", {"DATABASE_SSL": "true"}, 0, None),
    ("PGSSLMODE wins over DATABASE_SSL", "", {"DATABASE_SSL": "false", "PGSSLMODE": "require"}, 5, "(PGSSLMODE)"),
    ("MIGRATE_SSLMODE wins over the URL", "?sslmode=require", {"MIGRATE_SSLMODE": "disable"}, 0, None),
    ("MIGRATE_SSLMODE=require", "?sslmode=disable", {"MIGRATE_SSLMODE": "require"}, 5, "(MIGRATE_SSLMODE)"),
    (
        "production needs verify-full",
        "?sslmode=disable",
        {"MIGRATE_ENV": "production", "DATABASE_SSL": "false"},
        5,
        "sslmode=verify-full (MIGRATE_ENV=production",
    ),
    (
        "a root certificate that does not exist",
        "",
        {"DATABASE_SSL": "true", "MIGRATE_SSLROOTCERT": "/nonexistent/root.pem"},
        2,
        "MIGRATE_SSLROOTCERT",
    ),
    (
        "require with a root certificate that does not exist (libpq would silently not verify)",
        "",
        {"MIGRATE_SSLMODE": "require", "MIGRATE_SSLROOTCERT": "/nonexistent/root.pem"},
        2,
        "root certificate file /nonexistent/root.pem (MIGRATE_SSLROOTCERT) does not exist",
    ),
    (
        "PGSSLROOTCERT that does not exist is named as such",
        "",
        {"DATABASE_SSL": "true", "PGSSLROOTCERT": "/nonexistent/root.pem"},
        2,
        "root certificate file /nonexistent/root.pem (PGSSLROOTCERT) does not exist",
    ),
]


@pytest.mark.parametrize(
    ("suffix", "env", "code", "expected"), [c[1:] for c in TLS_CASES], ids=[c[0] for c in TLS_CASES]
)
def test_tls_settings_and_their_precedence(
    db_url: str, tmp_path: Path, suffix: str, env: dict[str, str], code: int, expected: str | None
) -> None:
    """DATABASE_SSL, PGSSLMODE, the URL's sslmode and MIGRATE_SSLMODE are honoured in the documented order."""
    rootcert = tmp_path / "root.pem"
    rootcert.write_text("not used: the server has no TLS\n")
    env = {k: str(rootcert) if v == "ROOTCERT" else v for k, v in env.items()}
    result = _status(db_url + suffix, tmp_path, MIGRATE_CONNECT_TIMEOUT="60s", **env)
    assert result.returncode == code, result.describe()
    if code == ExitCode.DB_UNREACHABLE:
        _failed_at_once(result)
        assert "does not support TLS" in result.error_text(), result.describe()
    if expected is not None:
        assert expected in result.error_text(), result.describe()


@pytest.fixture(scope="module")
def tls_front(pg_server: PgServer) -> Iterator[tuple[TlsProxy, Path, Path]]:
    """A TLS front (certificate for IP:127.0.0.1) to the test server, plus a certificate for another name."""
    root = Path(tempfile.mkdtemp(prefix="migrate-job-tls-"))
    try:
        cert, key = make_certificate(root, "server", "IP:127.0.0.1")
        other, _ = make_certificate(root, "other", "DNS:db.example.internal")
        parts = urlsplit(pg_server.url())
        proxy = TlsProxy((parts.hostname or "127.0.0.1", parts.port or 5432), cert, key)
        proxy.start()
        try:
            yield proxy, cert, other
        finally:
            proxy.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


TLS_SERVER_CASES = [
    # (case, env (ROOT = the server's certificate, OTHER = a certificate for another name), exit, TLS used)
    ("DATABASE_SSL=true: TLS without verification", {"DATABASE_SSL": "true"}, 0, True),
    (
        "DATABASE_SSL=true with the right root: verify-full",
        {"DATABASE_SSL": "true", "MIGRATE_SSLROOTCERT": "ROOT"},
        0,
        True,
    ),
    ("DATABASE_SSL=false: no TLS", {"DATABASE_SSL": "false"}, 0, False),
    ("no TLS setting: libpq's prefer", {}, 0, True),
]


@pytest.mark.parametrize(
    ("env", "code", "tls"), [c[1:] for c in TLS_SERVER_CASES], ids=[c[0] for c in TLS_SERVER_CASES]
)
def test_database_ssl_against_a_tls_server(
    tls_front: tuple[TlsProxy, Path, Path], db_url: str, tmp_path: Path, env: dict[str, str], code: int, tls: bool
) -> None:
    """DATABASE_SSL=true connects with TLS (verify-full with a root certificate); false connects without."""
    proxy, cert, _ = tls_front
    parts = urlsplit(db_url)
    url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    env = {k: str(cert) if v == "ROOT" else v for k, v in env.items()}
    before = (proxy.tls_connections, proxy.plain_connections)
    result = migrate_unattended(url, write(tmp_path / "migrations", FILES), **env)
    assert result.returncode == code, result.describe()
    tls_used = proxy.tls_connections - before[0]
    plain_used = proxy.plain_connections - before[1]
    assert (tls_used > 0, plain_used > 0) == (tls, not tls), (tls_used, plain_used)
    assert [r["version"] for r in history(db_url)] == ["1", "2"]


def _through(proxy: TlsProxy, db_url: str, host: str = "127.0.0.1") -> str:
    """db_url through the TLS front, named `host` (libpq still connects to 127.0.0.1: `hostaddr`)."""
    parts = urlsplit(db_url)
    query = "hostaddr=127.0.0.1" if host != "127.0.0.1" else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}:{proxy.port}", query=query))


@pytest.mark.parametrize(
    ("where", "mode"),
    [
        ("MIGRATE_SSLROOTCERT", {"DATABASE_SSL": "true"}),
        ("PGSSLROOTCERT", {"DATABASE_SSL": "true"}),
        ("sslrootcert", {"DATABASE_SSL": "true"}),
        ("MIGRATE_SSLROOTCERT", {"MIGRATE_SSLMODE": "verify-ca"}),
        ("MIGRATE_SSLROOTCERT", {"MIGRATE_SSLMODE": "require"}),  # libpq: require + a root file = verify-ca
    ],
)
def test_a_certificate_the_root_cannot_verify_fails_at_once(
    tls_front: tuple[TlsProxy, Path, Path], db_url: str, tmp_path: Path, where: str, mode: dict[str, str]
) -> None:
    """A server certificate the root certificate cannot verify fails at once (exit 5, not retried): waiting
    never fixes a certificate; the error names the root certificate and where it was set."""
    proxy, _, other = tls_front
    # The server's certificate is its own root: with `other` as the root it cannot be verified.
    url = _through(proxy, db_url)
    env = {**mode, "MIGRATE_CONNECT_TIMEOUT": "120s"}
    if where == "sslrootcert":
        url += f"?sslrootcert={other}"
    else:
        env[where] = str(other)
    error = _failed_at_once(result := _status(url, tmp_path, **env))
    assert "certificate verify failed" in error["error"], result.describe()
    assert f"does not verify against the root certificate {other} ({where})" in error["error"], result.describe()
    assert history(db_url) == []


@pytest.mark.parametrize(
    ("sslmode", "code", "expected"),
    [
        pytest.param("verify-ca", 0, None, id="verify-ca: the chain only"),
        pytest.param("verify-full", ExitCode.DB_UNREACHABLE, "Hostname mismatch", id="verify-full: also the name"),
    ],
)
def test_the_host_name_is_checked_by_verify_full_only(
    tls_front: tuple[TlsProxy, Path, Path],
    db_url: str,
    tmp_path: Path,
    sslmode: str,
    code: int,
    expected: str | None,
) -> None:
    """A certificate from the right root for another name: verify-ca connects, verify-full fails at once."""
    proxy, cert, _ = tls_front
    url = _through(proxy, db_url, host="localhost")  # the certificate is for IP:127.0.0.1
    env = {"MIGRATE_SSLMODE": sslmode, "MIGRATE_SSLROOTCERT": str(cert), "MIGRATE_CONNECT_TIMEOUT": "120s"}
    result = _status(url, tmp_path, **env)
    assert result.returncode == code, result.describe()
    if expected is not None:
        assert expected in _failed_at_once(result)["error"], result.describe()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "postgresql://app:Zq3xPw@127.0.0.1:1/app?bogusopt=1&sslmode=require",
            "invalid setting DATABASE_URL: unknown connection option bogusopt in the URL's query",
            id="an unknown option is named",
        ),
        pytest.param(
            "postgresql://app:Zq3?xPw=1@127.0.0.1:1/app?bogusopt=1",
            "invalid setting DATABASE_URL: not a valid connection string or URL",
            id="nothing named where the query could hold the password",
        ),
        pytest.param(
            "postgresql://app@127.0.0.1:1/app?password=Zq3&xPw",
            "invalid setting DATABASE_URL: not a valid connection string or URL",
            id="nothing named when a password value holds an ampersand",
        ),
    ],
)
def test_a_database_url_libpq_cannot_parse(tmp_path: Path, url: str, expected: str) -> None:
    """A DATABASE_URL that libpq cannot parse exits 2 before connecting, naming an unknown option but never
    any part of the password (libpq's own message can quote it)."""
    result = _status(url, tmp_path, MIGRATE_CONNECT_TIMEOUT="120s")
    assert result.returncode == ExitCode.CONFIG, result.describe()
    assert result.error_text().startswith(expected), result.describe()
    for part in ("Zq3", "xPw"):
        assert part not in result.output, result.describe()


# ---------------------------------------------------------------------------- the history table


def test_a_table_with_the_history_name_and_another_shape_is_refused_by_every_command(
    db_url: str, tmp_path: Path
) -> None:
    """migrate_job_history(foo int): every command that reads history exits 2 naming it, and changes nothing."""
    folder = write(tmp_path / "migrations", FILES)
    _admin(db_url, "CREATE TABLE migrate_job_history (foo int)", "INSERT INTO migrate_job_history VALUES (1)")
    before = snapshot_all(db_url)
    commands = [
        ["status"],
        ["validate"],
        ["migrate"],
        ["migrate", "--dry-run"],
        ["rollback"],
        ["rollback", "--dry-run"],
        ["reset"],
        ["refresh"],
        ["repair"],
        ["baseline", "--version", "1"],
        ["wait-for-version", "1", "--timeout", "0"],
        ["lint"],
    ]
    for command in commands:
        result = run_unattended(db_url, *command, "--dir", str(folder))
        assert result.returncode == ExitCode.CONFIG, result.describe()
        assert result.error_text() == (
            "public.migrate_job_history exists but is not a migrate-job history table (columns: foo); "
            "set MIGRATE_HISTORY_TABLE (or MIGRATE_HISTORY_SCHEMA) to another name"
        ), result.describe()
        assert snapshot_all(db_url) == before, command


def snapshot_all(url: str) -> tuple[Any, ...]:
    return tuple(query(url, "SELECT * FROM migrate_job_history ORDER BY 1")), user_relations(url)


SHAPES = [
    ("a view", "CREATE VIEW migrate_job_history AS SELECT 1 AS version", "version; it is a view"),
    (
        "some columns missing",
        "CREATE TABLE migrate_job_history (version text PRIMARY KEY, name text, checksum text)",
        "(columns: version, name, checksum; missing: status, kind",
    ),
]


@pytest.mark.parametrize(("ddl", "expected"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_history_relations_of_other_shapes_are_named(db_url: str, tmp_path: Path, ddl: str, expected: str) -> None:
    """A view or a table lacking columns under the history table's name: exit 2 saying what it lacks."""
    _admin(db_url, ddl)
    before = user_relations(db_url)
    result = migrate_unattended(db_url, write(tmp_path / "migrations", FILES))
    assert result.returncode == ExitCode.CONFIG, result.describe()
    assert expected in result.error_text(), result.describe()
    assert user_relations(db_url) == before


def test_extra_history_columns_are_tolerated(db_url: str, tmp_path: Path) -> None:
    """A history table with a column added later (an audit column) still works for every command."""
    folder = write(tmp_path / "migrations", FILES)
    assert migrate_unattended(db_url, folder, "--target", "1").returncode == 0
    _admin(db_url, "ALTER TABLE migrate_job_history ADD COLUMN audit_id bigint")
    for command in (["status"], ["validate"], ["migrate"], ["rollback"]):
        result = run_unattended(db_url, *command, "--dir", str(folder))
        assert result.returncode == 0, result.describe()
    assert [r["version"] for r in history(db_url)] == ["1"]


@dataclass(frozen=True)
class Privileges:
    """A real unprivileged role's situation (set up as the superuser) and what the job must say."""

    setup: tuple[str, ...]  # statements run as the superuser; {role} is the role
    command: tuple[str, ...]
    expected: str  # in the one error line; {role} is the role
    env: tuple[tuple[str, str], ...] = ()


PRIVILEGES = {
    "no CREATE on schema public for a new history table": Privileges(
        (),
        ("migrate",),
        "role {role} may not create the history table public.migrate_job_history (permission denied for schema "
        "public); GRANT USAGE, CREATE ON SCHEMA public TO {role}",
    ),
    "no CREATE on the database for a new history schema": Privileges(
        (),
        ("migrate",),
        "role {role} may not create the schema audit of the history table (permission denied for database",
        (("MIGRATE_HISTORY_SCHEMA", "audit"),),
    ),
    "no SELECT on the history table (status)": Privileges(
        ("MIGRATED",),
        ("status",),
        "role {role} lacks SELECT on the history table public.migrate_job_history (permission denied); "
        "GRANT SELECT ON public.migrate_job_history TO {role}",
    ),
    "only SELECT on the history table (migrate)": Privileges(
        ("MIGRATED", "GRANT SELECT ON migrate_job_history TO {role}"),
        ("migrate",),
        "role {role} lacks INSERT, UPDATE, DELETE on the history table public.migrate_job_history (permission "
        "denied); GRANT SELECT, INSERT, UPDATE, DELETE ON public.migrate_job_history TO {role}",
    ),
    "only SELECT on the history table (rollback)": Privileges(
        ("MIGRATED", "GRANT SELECT ON migrate_job_history TO {role}"),
        ("rollback",),
        "GRANT SELECT, INSERT, UPDATE, DELETE ON public.migrate_job_history TO {role}",
    ),
    "no USAGE on the history schema": Privileges(
        ("MIGRATED_IN_AUDIT",),
        ("status",),
        "role {role} may not use schema audit of the history table audit.migrate_job_history (permission "
        "denied); GRANT USAGE ON SCHEMA audit TO {role}",
        (("MIGRATE_HISTORY_SCHEMA", "audit"),),
    ),
}


@pytest.mark.parametrize("case", PRIVILEGES.values(), ids=PRIVILEGES.keys())
def test_history_the_role_may_not_use_is_a_configuration_error(db_url: str, tmp_path: Path, case: Privileges) -> None:
    """A real role without the privileges: exit 2, one line naming the table, the role and the GRANT; no change."""
    folder = write(tmp_path / "migrations", FILES)
    role = f"app_{uuid.uuid4().hex[:8]}"
    _admin(db_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        for statement in case.setup:
            if statement == "MIGRATED":
                assert migrate_unattended(db_url, folder, "--target", "1").returncode == 0
            elif statement == "MIGRATED_IN_AUDIT":
                assert migrate_unattended(db_url, folder, MIGRATE_HISTORY_SCHEMA="audit").returncode == 0
            else:
                _admin(db_url, statement.format(role=role))
        before = snapshot(db_url), user_relations(db_url)
        result = run_unattended(_with_user(db_url, role), *case.command, "--dir", str(folder), **dict(case.env))
        assert result.returncode == ExitCode.CONFIG, result.describe()
        assert case.expected.format(role=role) in result.error_text(), result.describe()
        assert (snapshot(db_url), user_relations(db_url)) == before
    finally:
        _drop_role(db_url, role)


def _drop_role(url: str, role: str) -> None:
    _admin(url, f'DROP OWNED BY "{role}" CASCADE', f'DROP ROLE "{role}"')


def test_a_role_with_only_the_history_grants_migrates_and_rolls_back(db_url: str, tmp_path: Path) -> None:
    """No CREATE on the history's schema is fine once the tables exist: the job never re-creates them."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    folder = write(
        tmp_path / "migrations",
        {
            "000_setup.sql": "SELECT 1;\n",
            "001_a.sql": "-- UP\nCREATE TABLE mine.a (id int);\n-- DOWN\nDROP TABLE mine.a;\n",
        },
    )
    _admin(db_url, f'CREATE ROLE "{role}" LOGIN', f'CREATE SCHEMA mine AUTHORIZATION "{role}"')
    try:
        created = migrate_unattended(db_url, folder, "--target", "0")  # the admin: the tables and version 0
        assert created.returncode == 0 and [r["version"] for r in history(db_url)] == ["0"], created.describe()
        _admin(
            db_url,
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON migrate_job_history TO "{role}"',
            f'GRANT SELECT, INSERT ON migrate_job_history_log TO "{role}"',
            f'GRANT USAGE ON SEQUENCE migrate_job_history_log_id_seq TO "{role}"',
        )
        url = _with_user(db_url, role)
        assert migrate_unattended(url, folder).returncode == 0
        assert [r["version"] for r in history(db_url)] == ["0", "1"]
        result = run_unattended(url, "rollback", "--dir", str(folder))
        assert result.returncode == 0, result.describe()
        assert [r["version"] for r in history(db_url)] == ["0"]
    finally:
        _drop_role(db_url, role)


def test_a_role_without_the_audit_grants_is_told_which_grant(db_url: str, tmp_path: Path) -> None:
    """History grants but none on the audit table: exit 2 naming the audit table and the GRANT, nothing changed."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    folder = write(tmp_path / "migrations", {"000_setup.sql": "SELECT 1;\n", "001_a.sql": "SELECT 2;\n"})
    _admin(db_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        assert migrate_unattended(db_url, folder, "--target", "0").returncode == 0
        _admin(db_url, f'GRANT SELECT, INSERT, UPDATE, DELETE ON migrate_job_history TO "{role}"')
        result = migrate_unattended(_with_user(db_url, role), folder)
        assert result.returncode == 2, result.describe()
        error = result.error_text()
        assert "migrate_job_history_log" in error and "GRANT SELECT, INSERT ON" in error, error
        assert [r["version"] for r in history(db_url)] == ["0"]
    finally:
        _drop_role(db_url, role)


# ---------------------------------------------------------------------------- read-only targets


WRITERS = [
    ["migrate"],
    ["rollback"],
    ["reset"],
    ["refresh"],
    ["repair"],
    ["baseline", "--version", "2"],
]
READERS = [["status"], ["validate"], ["migrate", "--dry-run"], ["wait-for-version", "1", "--timeout", "5s"], ["diff"]]


def _snapshot_env(schema_file: Path) -> dict[str, str]:
    return {"MIGRATE_SCHEMA_FILE": str(schema_file), "MIGRATE_PG_DUMP": pg_tool("pg_dump")}


def _check_read_only(url: str, folder: Path, schema_file: Path, expected: str) -> None:
    before = snapshot(url), user_relations(url)
    for command in WRITERS:
        result = run_unattended(url, *command, "--dir", str(folder), **_snapshot_env(schema_file))
        assert result.returncode == ExitCode.READ_ONLY, result.describe()
        text = result.error_text()
        assert expected in text and "writer (primary) endpoint" in text, result.describe()
        assert not result.events("lock.acquired"), result.describe()
    for command in READERS:
        result = run_unattended(url, *command, "--dir", str(folder), **_snapshot_env(schema_file))
        assert result.returncode == 0, result.describe()
    assert (snapshot(url), user_relations(url)) == before


def test_default_transaction_read_only_is_refused_before_anything(db_url: str, tmp_path: Path) -> None:
    """default_transaction_read_only=on: writing commands exit 9 and change nothing; reading ones still work."""
    folder = write(tmp_path / "migrations", FILES)
    schema_file = tmp_path / "schema.sql"
    result = migrate_unattended(db_url, folder, "--target", "1", **_snapshot_env(schema_file))
    assert result.returncode == 0, result.describe()
    dbname = db_url.rsplit("/", 1)[1]
    _admin(db_url, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    _check_read_only(db_url, folder, schema_file, "is read-only (default_transaction_read_only = on")


def _replica_of(primary: DevServer, root: Path) -> DevServer:
    """A streaming hot standby of `primary` (pg_basebackup -R), started on its own port."""
    datadir = root / "replica"
    backup = subprocess.run(
        [
            str(primary.bindir / "pg_basebackup"),
            f"--dbname=postgresql://postgres@{primary.host}:{primary.port}/postgres",
            "--pgdata",
            str(datadir),
            "--write-recovery-conf",
            "--checkpoint=fast",
            "--wal-method=stream",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert backup.returncode == 0, backup.stderr
    replica = devserver.create(datadir, port=free_port(), bindir=primary.bindir)
    replica.start()
    return replica


@pytest.fixture
def replica_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="migrate-job-replica-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_hot_standby_is_refused_for_writes_and_read_for_reports(
    devserver_factory: DevServerFactory, tmp_path: Path, replica_root: Path
) -> None:
    """A real streaming replica: writing commands exit 9 naming the replica; status, validate, diff still work."""
    primary = devserver_factory()
    _admin(primary.url(), "CREATE DATABASE app")
    folder = write(tmp_path / "migrations", FILES)
    schema_file = tmp_path / "schema.sql"
    result = migrate_unattended(primary.url("app"), folder, "--target", "1", **_snapshot_env(schema_file))
    assert result.returncode == 0, result.describe()
    replica = _replica_of(primary, replica_root)
    try:
        assert query(replica.url("app"), "SELECT pg_is_in_recovery()") == [(True,)]
        _check_read_only(replica.url("app"), folder, schema_file, "is a read-only replica (hot standby")
    finally:
        replica.stop()


# ---------------------------------------------------------------------------- other failures of the job's own SQL


def test_statement_timeout_on_the_jobs_own_query_is_a_one_line_exit_5(db_url: str, tmp_path: Path) -> None:
    """The role's statement_timeout cancels the job's history query: exit 5 with one line, not run.crashed."""
    folder = write(tmp_path / "migrations", FILES)
    assert migrate_unattended(db_url, folder, "--target", "1").returncode == 0
    dbname = db_url.rsplit("/", 1)[1]
    _admin(db_url, f"ALTER DATABASE \"{dbname}\" SET statement_timeout = '300ms'")
    with open_transaction(db_url, "LOCK TABLE migrate_job_history IN ACCESS EXCLUSIVE MODE"):
        result = run_unattended(db_url, "status", "--dir", str(folder))
    assert result.returncode == ExitCode.DB_UNREACHABLE, result.describe()
    assert result.error_text().startswith("the server cancelled one of the job's own statements: canceling"), (
        result.describe()
    )
    assert "(SQLSTATE 57014)" in result.error_text()


# Each statement provokes one class of failure on a real server; the mapping gives its exit code and one line.
FAILURES = [
    ("ReadOnlySqlTransaction", "superuser", ["BEGIN READ ONLY", "CREATE TABLE x (id int)"], ExitCode.READ_ONLY),
    ("InsufficientPrivilege", "role", ["SELECT * FROM pg_authid"], ExitCode.CONFIG),
    ("UndefinedTable", "superuser", ["SELECT * FROM migrate_job_history_nope"], ExitCode.CONFIG),
    ("UndefinedColumn", "superuser", ["SELECT nope FROM pg_class"], ExitCode.CONFIG),
    ("QueryCanceled", "superuser", ["SET statement_timeout = 50", "SELECT pg_sleep(5)"], ExitCode.DB_UNREACHABLE),
    ("AdminShutdown", "superuser", ["SELECT pg_terminate_backend(pg_backend_pid())"], ExitCode.DB_UNREACHABLE),
    (
        "DiskFull",
        "superuser",
        ["DO $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$"],
        ExitCode.DB_UNREACHABLE,
    ),
    (
        "OutOfMemory",
        "superuser",
        ["DO $$ BEGIN RAISE EXCEPTION 'out of memory' USING ERRCODE = 'out_of_memory'; END $$"],
        ExitCode.DB_UNREACHABLE,
    ),
    ("DivisionByZero", "superuser", ["SELECT 1 / 0"], ExitCode.MIGRATION_FAILED),
    (
        "InternalError_",
        "superuser",
        ["DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'internal_error'; END $$"],
        ExitCode.MIGRATION_FAILED,
    ),
]


@pytest.mark.parametrize(("cls", "who", "statements", "code"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_class_of_database_failure_has_a_message_and_exit_code(
    db_url: str, cls: str, who: str, statements: list[str], code: ExitCode
) -> None:
    """Every psycopg error class outside a migration body maps to one line (no bare class name) and its exit code."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    _admin(db_url, f'CREATE ROLE "{role}" LOGIN')
    try:
        url = _with_user(db_url, role) if who == "role" else db_url
        with pytest.raises(psycopg.Error) as caught, psycopg.connect(url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
        assert type(caught.value).__name__ == cls
        error = as_job_error(caught.value, {"user": role})
        assert error.exit_code == code
        assert "\n" not in error.message and not error.message.startswith(cls), error.message
    finally:
        _drop_role(db_url, role)


def test_crash_detector_fails_a_test_whose_job_logged_run_crashed() -> None:
    """tests/pg/cli.py fails any test whose job logged run.crashed (an undesigned path), and passes others."""
    with pytest.raises(pytest.fail.Exception, match=r"run\.crashed"):
        fail_on_crash('{"event": "run.crashed", "error": "KeyError: x"}', "a crashed job")
    fail_on_crash('{"event": "run.finished"}', "a finished job")


def test_connect_timeout_and_application_name_in_the_url_are_accepted(db_url: str, tmp_path: Path) -> None:
    """A DATABASE_URL with ?connect_timeout=…&application_name=… connects (the job names its own sessions)."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    sep = "&" if "?" in db_url else "?"

    result = migrate_unattended(f"{db_url}{sep}connect_timeout=5&application_name=mine", folder)

    assert result.returncode == 0, result.describe()
    assert [r["version"] for r in history(db_url)] == ["1"]
