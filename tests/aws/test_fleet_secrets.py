"""Fleet discovery from Secrets Manager (moto in server mode over real HTTP) with real PostgreSQL targets.

Each tenant database is owned by its own role with a password; its connection lives only in an RDS-format
secret. The fleet finds the secrets by name prefix or by tag (ListSecrets, every page), migrates each database,
and never prints a password.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from job import aws as job_aws
from tests.aws.conftest import (
    REGION,
    Client,
    applied_versions,
    aws_env,
    remember_secret,
    run_job,
    unique,
    write_migrations,
)
from tests.pgutil import PgServer, new_database

pytestmark = pytest.mark.pg


def tenant_database(stack: list[tuple[str, str]], pg_server: PgServer, url: str) -> dict[str, object]:
    """Give the database at `url` to a new role with a password; returns the RDS secret's fields."""
    params = conninfo_to_dict(url)
    role = f"mjf_{uuid.uuid4().hex[:10]}"
    password = remember_secret(f"Fl{secrets.token_hex(8)}#{secrets.token_hex(3)}")
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(str(params["dbname"])), sql.Identifier(role))
        )
    stack.append((str(params["dbname"]), role))
    return {
        "username": role,
        "password": password,
        "engine": "postgres",
        "host": str(params.get("host") or "localhost"),
        "port": int(params.get("port") or 5432),
        "dbname": str(params["dbname"]),
    }


@pytest.fixture
def tenants(pg_server: PgServer) -> Iterator[list[tuple[str, dict[str, object]]]]:
    """Three databases, each owned by its own password role: (inspection URL, RDS secret fields)."""
    made: list[tuple[str, str]] = []
    found: list[tuple[str, dict[str, object]]] = []
    with new_database(pg_server) as a, new_database(pg_server) as b, new_database(pg_server) as c:
        for url in (a, b, c):
            found.append((url, tenant_database(made, pg_server, url)))
        yield found
        with psycopg.connect(pg_server.url(), autocommit=True) as admin:
            for dbname, _role in made:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    with psycopg.connect(pg_server.url(), autocommit=True) as admin:
        for _dbname, role in made:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_secrets_by_name_prefix_become_the_fleet(
    tmp_path: Path, moto_url: str, aws: Client, tenants: list[tuple[str, dict[str, object]]]
) -> None:
    """--secrets-prefix: every secret under the prefix is a target (id = the rest of its name); others are not."""
    prefix = unique("prod/tenants") + "/"
    sm = aws("secretsmanager")
    for n, (_url, fields) in enumerate(tenants):
        sm.create_secret(Name=f"{prefix}tenant-{n}", SecretString=json.dumps(fields))
    sm.create_secret(Name=unique("prod/other") + "/x", SecretString=json.dumps(tenants[0][1]))
    folder = write_migrations(tmp_path / "migrations")
    report_file = tmp_path / "report.json"

    result = run_job(
        "fleet",
        "migrate",
        "--secrets-prefix",
        prefix,
        "--dir",
        str(folder),
        "--report-file",
        str(report_file),
        cwd=tmp_path,
        env=aws_env(moto_url),
    )

    assert result.returncode == 0, result.describe()
    assert sorted(e["target"] for e in result.events("target.finished")) == ["tenant-0", "tenant-1", "tenant-2"]
    for url, _fields in tenants:
        assert applied_versions(url) == ["1", "2"]
    assert [e["count"] for e in result.events("fleet.discovered")] == [3]
    for _url, fields in tenants:
        assert str(fields["password"]) not in report_file.read_text()


def test_secrets_by_tag_become_the_fleet(
    tmp_path: Path, moto_url: str, aws: Client, tenants: list[tuple[str, dict[str, object]]]
) -> None:
    """--secrets-tag KEY=VALUE: only the secrets carrying that tag are targets."""
    tag = unique("fleet")
    sm = aws("secretsmanager")
    names = []
    for n, (_url, fields) in enumerate(tenants[:2]):
        name = unique(f"db-{n}")
        names.append(name)
        sm.create_secret(Name=name, SecretString=json.dumps(fields), Tags=[{"Key": "migrate-job", "Value": tag}])
    sm.create_secret(
        Name=unique("untagged"), SecretString=json.dumps(tenants[2][1]), Tags=[{"Key": "migrate-job", "Value": "x"}]
    )
    folder = write_migrations(tmp_path / "migrations")

    result = run_job(
        "fleet",
        "migrate",
        "--secrets-tag",
        f"migrate-job={tag}",
        "--dir",
        str(folder),
        cwd=tmp_path,
        env=aws_env(moto_url),
    )

    assert result.returncode == 0, result.describe()
    assert sorted(e["target"] for e in result.events("target.finished")) == sorted(names)
    assert [applied_versions(url) for url, _ in tenants] == [["1", "2"], ["1", "2"], []]


def test_listing_reads_every_page(moto_url: str, aws: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """More secrets than one ListSecrets page: all of them are found, sorted, and only those under the prefix."""
    prefix = unique("paged") + "/"
    sm = aws("secretsmanager")
    for n in range(130):
        sm.create_secret(Name=f"{prefix}{n:03d}", SecretString="postgresql://u@h/db")
    sm.create_secret(Name=f"not-{prefix}000", SecretString="postgresql://u@h/db")
    for name, value in aws_env(moto_url).items():
        monkeypatch.setenv(name, value)
    job_aws._client.cache_clear()
    try:
        names = job_aws.list_secret_names(prefix=prefix, tag=None, region=REGION)
    finally:
        job_aws._client.cache_clear()
    assert names == [f"{prefix}{n:03d}" for n in range(130)]
