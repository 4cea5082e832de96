"""Connection details from AWS: Secrets Manager, SSM Parameter Store and RDS IAM tokens.

The job runs as a subprocess against moto in server mode (real HTTP through AWS_ENDPOINT_URL) and a
real PostgreSQL; DATABASE_URL and the PG* variables are never set, so the AWS source is the only one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from job import aws as job_aws
from tests.aws.conftest import (
    REGION,
    TOKEN_MARKERS,
    AuthMotoServer,
    Client,
    Target,
    applied_versions,
    aws_env,
    boto_client,
    migrate,
    remember_secret,
    table_exists,
    unique,
    write_migrations,
)
from tests.pg.cli import query

pytestmark = pytest.mark.pg


def create_secret(aws: Client, value: str, name: str | None = None) -> str:
    """A Secrets Manager secret holding `value` (registered as a secret for the leak scan); returns its name."""
    name = name or unique("migrate-job/db")
    aws("secretsmanager").create_secret(Name=name, SecretString=remember_secret(value))
    return name


def table_owner(target: Target, table: str) -> str:
    return str(query(target.inspect_url, "SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,))[0][0])


def assert_migrated_as_secret_user(target: Target) -> None:
    assert applied_versions(target.inspect_url) == ["1", "2"]
    assert table_owner(target, "items") == target.user


def assert_nothing_applied(target: Target) -> None:
    assert applied_versions(target.inspect_url) == []
    assert not table_exists(target.inspect_url, "items")


# ---------------------------------------------------------------------------- Secrets Manager


def test_rds_format_secret(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """An RDS-managed JSON secret (username, password, host, port, dbname, engine) is enough to migrate."""
    secret = create_secret(aws, target.rds_secret())
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret))
    assert result.returncode == 0, result.describe()
    assert_migrated_as_secret_user(target)


def test_connection_string_secret(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """A secret holding a plain postgresql:// URL is used as the connection string."""
    secret = create_secret(aws, target.url)
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret))
    assert result.returncode == 0, result.describe()
    assert_migrated_as_secret_user(target)


def test_json_secret_with_custom_key(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """MIGRATE_DATABASE_SECRET_KEY picks the JSON key that holds the connection URL."""
    secret = create_secret(aws, json.dumps({"api_token": "unrelated", "migrations_url": target.url}))
    env = aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret, MIGRATE_DATABASE_SECRET_KEY="migrations_url")
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 0, result.describe()
    assert_migrated_as_secret_user(target)


def test_secret_version_stage(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """MIGRATE_DATABASE_SECRET_VERSION_STAGE=AWSPENDING connects with the pending (rotated) version of the secret."""
    secret = create_secret(aws, target.rds_secret(username=f"{target.user}_retired"))
    pending = remember_secret(target.rds_secret())
    aws("secretsmanager").put_secret_value(SecretId=secret, SecretString=pending, VersionStages=["AWSPENDING"])
    directory = write_migrations(tmp_path / "migrations")

    current = migrate(directory, aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret, MIGRATE_CONNECT_TIMEOUT="1"))
    assert current.returncode == 5, current.describe()  # AWSCURRENT names a role that does not exist
    assert_nothing_applied(target)

    env = aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret, MIGRATE_DATABASE_SECRET_VERSION_STAGE="AWSPENDING")
    result = migrate(directory, env)
    assert result.returncode == 0, result.describe()
    assert_migrated_as_secret_user(target)


# ---------------------------------------------------------------------------- SSM Parameter Store


def test_ssm_securestring_parameter(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """An SSM SecureString parameter holding the URL is decrypted and used to migrate."""
    name = f"/{unique('app')}/database-url"
    aws("ssm").put_parameter(Name=name, Value=remember_secret(target.url), Type="SecureString")
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_URL_PARAMETER=name))
    assert result.returncode == 0, result.describe()
    assert_migrated_as_secret_user(target)


# ---------------------------------------------------------------------------- configuration errors


def test_missing_secret(tmp_path: Path, moto_url: str, target: Target) -> None:
    """A secret id that does not exist fails with exit 2 and one error line naming the secret."""
    secret = unique("migrate-job/absent")
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret))
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert secret in error and "not found" in error
    assert "Traceback" not in result.output
    assert_nothing_applied(target)


def test_malformed_json_secret(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """A secret that is broken JSON fails with exit 2 naming the secret, without echoing its value."""
    broken = target.rds_secret()[:-12]  # cut off: still contains the password
    secret = create_secret(aws, broken)
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret))
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert secret in error and "not valid JSON" in error
    assert target.password not in result.output
    assert_nothing_applied(target)


@pytest.mark.parametrize("missing", ["password", "host"])
def test_json_secret_missing_key(tmp_path: Path, moto_url: str, aws: Client, target: Target, missing: str) -> None:
    """An RDS-format secret without `password` or `host` fails with exit 2 naming the missing key."""
    data = json.loads(target.rds_secret())
    del data[missing]
    secret = create_secret(aws, json.dumps(data))
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret))
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert secret in error and f"lacks key(s) {missing}" in error
    assert_nothing_applied(target)


def test_secret_key_override_absent(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """MIGRATE_DATABASE_SECRET_KEY naming a key the secret lacks fails with exit 2 naming that key."""
    secret = create_secret(aws, json.dumps({"url": target.url}))
    env = aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret, MIGRATE_DATABASE_SECRET_KEY="database_url")
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert "'database_url'" in error and secret in error
    assert_nothing_applied(target)


def test_missing_ssm_parameter(tmp_path: Path, moto_url: str, target: Target) -> None:
    """An SSM parameter that does not exist fails with exit 2 naming the parameter."""
    name = f"/{unique('app')}/missing-url"
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_URL_PARAMETER=name))
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert name in error and "not found" in error
    assert_nothing_applied(target)


# ---------------------------------------------------------------------------- denied (IAM enforced)


@dataclass(frozen=True)
class Enforcing:
    url: str
    secret: str
    parameter: str
    key_id: str
    key_secret: str


@pytest.fixture(scope="module")
def enforcing_moto() -> Iterator[Enforcing]:
    """A moto server enforcing IAM: a secret, a parameter, and a user allowed only sts:GetCallerIdentity.

    The first five requests are unauthenticated (INITIAL_NO_AUTH_ACTION_COUNT=5): exactly the setup below.
    """
    server = AuthMotoServer(allowed=5)
    try:
        admin: dict[str, str] = {}
        secret = unique("migrate-job/denied")
        value = remember_secret(json.dumps({"username": "app", "password": f"pw-{uuid.uuid4().hex}", "host": "db"}))
        boto_client(server.url, "secretsmanager", **admin).create_secret(Name=secret, SecretString=value)
        parameter = f"/{unique('app')}/denied-url"
        url = remember_secret(f"postgresql://app:pw-{uuid.uuid4().hex}@db/app")
        boto_client(server.url, "ssm", **admin).put_parameter(Name=parameter, Value=url, Type="SecureString")
        iam = boto_client(server.url, "iam", **admin)
        iam.create_user(UserName="migrator")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="migrator", PolicyName="no-secrets", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="migrator")["AccessKey"]
        yield Enforcing(server.url, secret, parameter, key["AccessKeyId"], remember_secret(key["SecretAccessKey"]))
    finally:
        server.stop()


def test_secret_access_denied(tmp_path: Path, enforcing_moto: Enforcing, target: Target) -> None:
    """A role without secretsmanager:GetSecretValue gets exit 2 naming the secret, not its value."""
    env = aws_env(
        enforcing_moto.url,
        AWS_ACCESS_KEY_ID=enforcing_moto.key_id,
        AWS_SECRET_ACCESS_KEY=enforcing_moto.key_secret,
        MIGRATE_DATABASE_SECRET_ID=enforcing_moto.secret,
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert enforcing_moto.secret in error
    # Real AWS answers AccessDeniedException (JSON); moto answers an XML body botocore reads as code "403".
    assert "access denied" in error or ": 403" in error, error
    assert_nothing_applied(target)


def test_parameter_access_denied(tmp_path: Path, enforcing_moto: Enforcing, target: Target) -> None:
    """A role without ssm:GetParameter gets exit 2 naming the parameter, not its value."""
    env = aws_env(
        enforcing_moto.url,
        AWS_ACCESS_KEY_ID=enforcing_moto.key_id,
        AWS_SECRET_ACCESS_KEY=enforcing_moto.key_secret,
        MIGRATE_DATABASE_URL_PARAMETER=enforcing_moto.parameter,
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert enforcing_moto.parameter in error
    assert "access denied" in error or ": 403" in error, error
    assert_nothing_applied(target)


def test_secret_with_unknown_credentials(tmp_path: Path, enforcing_moto: Enforcing, target: Target) -> None:
    """Credentials AWS does not know get exit 2 naming the secret, not its value."""
    env = aws_env(enforcing_moto.url, MIGRATE_DATABASE_SECRET_ID=enforcing_moto.secret)  # key id "testing"
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 2, result.describe()
    error = result.error_text()
    assert enforcing_moto.secret in error
    assert_nothing_applied(target)


# ---------------------------------------------------------------------------- poolers behind AWS sources


def proxy_conninfo(target: Target) -> str:
    """A conninfo naming an RDS Proxy endpoint; hostaddr makes it reach the test server without DNS."""
    return (
        f"host=app-db.proxy-c0ffee12ab34.{REGION}.rds.amazonaws.com hostaddr=127.0.0.1 port={target.port} "
        f"dbname={target.dbname} user={target.user} password='{target.password}'"
    )


def test_secret_pointing_at_rds_proxy_is_refused(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """A secret whose host is an RDS Proxy endpoint is refused (exit 2) before anything is applied."""
    secret = create_secret(aws, proxy_conninfo(target))
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_SECRET_ID=secret))
    assert result.returncode == 2, result.describe()
    assert "connection pooler" in result.error_text()
    assert_nothing_applied(target)


def test_parameter_pointing_at_rds_proxy_is_refused(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """An SSM parameter whose host is an RDS Proxy endpoint is refused (exit 2) before anything is applied."""
    name = f"/{unique('app')}/proxy-url"
    aws("ssm").put_parameter(Name=name, Value=remember_secret(proxy_conninfo(target)), Type="SecureString")
    result = migrate(write_migrations(tmp_path / "migrations"), aws_env(moto_url, MIGRATE_DATABASE_URL_PARAMETER=name))
    assert result.returncode == 2, result.describe()
    assert "connection pooler" in result.error_text()
    assert_nothing_applied(target)


# ---------------------------------------------------------------------------- RDS IAM authentication


def iam_env(moto_url: str, target: Target, **extra: str) -> dict[str, str]:
    return aws_env(
        moto_url,
        MIGRATE_IAM_AUTH="true",
        MIGRATE_DB_HOST=target.host,
        MIGRATE_DB_PORT=str(target.port),
        MIGRATE_DB_NAME=target.dbname,
        MIGRATE_DB_USER=target.user,
        MIGRATE_LOG_LEVEL="debug",
        **extra,
    )


def test_iam_auth_refuses_plaintext(tmp_path: Path, moto_url: str, target: Target) -> None:
    """MIGRATE_IAM_AUTH with MIGRATE_SSLMODE=disable fails with exit 2: an IAM token must not travel unencrypted."""
    result = migrate(write_migrations(tmp_path / "migrations"), iam_env(moto_url, target, MIGRATE_SSLMODE="disable"))
    assert result.returncode == 2, result.describe()
    assert "requires TLS" in result.error_text()
    assert_nothing_applied(target)


def test_iam_auth_without_tls_server_never_prints_token(tmp_path: Path, moto_url: str, target: Target) -> None:
    """With an IAM token and sslmode=require against a server without TLS: exit 5 at once, the token never printed."""
    env = iam_env(moto_url, target, MIGRATE_SSLMODE="require", MIGRATE_CONNECT_TIMEOUT="60")
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 5, result.describe()
    assert "does not support TLS, but sslmode=require (MIGRATE_SSLMODE)" in result.error_text()
    assert not result.events("db.waiting"), "a server without TLS does not heal: not retried (issue 11 §6)"
    assert not [m for m in TOKEN_MARKERS if m in result.output]
    assert_nothing_applied(target)


def test_iam_token_is_signed_for_the_host(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """job.aws.iam_token returns a presigned token for the host, port and user (X-Amz-* query parameters)."""
    for name, value in aws_env(moto_url).items():
        monkeypatch.setenv(name, value)
    job_aws._client.cache_clear()
    try:
        token = job_aws.iam_token(host="db.example.internal", port=5433, user="app_migrator", region=REGION)
    finally:
        job_aws._client.cache_clear()
    remember_secret(token)
    assert token.startswith("db.example.internal:5433/?")
    assert "Action=connect" in token and "DBUser=app_migrator" in token
    for param in ("X-Amz-Algorithm=", "X-Amz-Credential=", "X-Amz-Expires=900", "X-Amz-Signature="):
        assert param in token
    assert f"%2F{REGION}%2Frds-db%2Faws4_request" in token
