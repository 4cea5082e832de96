"""AWS lookups: Secrets Manager, SSM Parameter Store, RDS IAM tokens, and the boto3 clients.

boto3 is imported only here and only when one of these paths is used. Region and credentials come
from boto3's standard chain (task role, IRSA, env, profile); AWS_ENDPOINT_URL is honoured by boto3.
Errors name the secret/parameter and the key, never a value.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from job.errors import ConfigError

_NOT_FOUND = {"ResourceNotFoundException", "ParameterNotFound", "NoSuchEntity"}
_DENIED = {
    "AccessDeniedException",
    "AccessDenied",
    "UnauthorizedOperation",
    "DecryptionFailure",
    "KMSAccessDeniedException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
}


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client; imported lazily so runs that don't use AWS never pay for boto3."""
    return _client(service, region)


@cache
def _client(service: str, region: str | None) -> Any:
    try:
        import boto3
    except ImportError:  # pragma: no cover - boto3 is an install extra
        raise ConfigError("boto3 is not installed: pip install 'migrate-job[aws]'") from None
    return boto3.session.Session().client(service, region_name=region)


def _describe(exc: Exception) -> str:
    """The error code of a botocore error, without its message (which may echo request data)."""
    response = getattr(exc, "response", {}) or {}
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _NOT_FOUND:
        return "not found"
    if code in _DENIED or status == 403 or str(code) == "403":
        return f"access denied ({code})" if code and str(code) != "403" else "access denied (HTTP 403)"
    if code:
        return str(code)
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no AWS credentials found (task role, IRSA, environment or profile)"
    if name == "NoRegionError":
        return "no AWS region configured (set AWS_REGION or MIGRATE_AWS_REGION)"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return f"AWS endpoint unreachable ({name})"
    return name


def list_secret_names(*, prefix: str | None, tag: str | None, region: str | None) -> list[str]:
    """Names of the Secrets Manager secrets whose name starts with `prefix` and/or that carry tag KEY=VALUE
    (every page of ListSecrets), sorted."""
    filters: list[dict[str, Any]] = []
    if prefix:
        filters.append({"Key": "name", "Values": [prefix]})
    if tag:
        key, _, value = tag.partition("=")
        filters += [{"Key": "tag-key", "Values": [key]}, {"Key": "tag-value", "Values": [value]}]
    names: set[str] = set()
    try:
        paginator = client("secretsmanager", region).get_paginator("list_secrets")
        for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 100}):
            for entry in page.get("SecretList", []):
                name = str(entry.get("Name", ""))
                tags = {t.get("Key"): t.get("Value") for t in entry.get("Tags", []) or []}
                if prefix and not name.startswith(prefix):  # the name filter also matches words inside names
                    continue
                if tag and tags.get(tag.partition("=")[0]) != tag.partition("=")[2]:
                    continue
                names.add(name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"MIGRATE_FLEET_SECRETS_PREFIX/TAG: listing Secrets Manager secrets: {_describe(exc)}",
            setting="MIGRATE_FLEET_SECRETS_PREFIX",
        ) from None
    return sorted(names)


def get_secret(secret_id: str, *, version_stage: str, region: str | None) -> str:
    """The SecretString of a Secrets Manager secret."""
    try:
        response = client("secretsmanager", region).get_secret_value(SecretId=secret_id, VersionStage=version_stage)
    except Exception as exc:
        raise ConfigError(
            f"MIGRATE_DATABASE_SECRET_ID: secret {secret_id!r} (stage {version_stage}): {_describe(exc)}",
            setting="MIGRATE_DATABASE_SECRET_ID",
            secret_id=secret_id,
        ) from None
    value = response.get("SecretString")
    if not isinstance(value, str):
        raise ConfigError(
            f"MIGRATE_DATABASE_SECRET_ID: secret {secret_id!r} has no SecretString (binary secrets are not supported)",
            setting="MIGRATE_DATABASE_SECRET_ID",
        )
    return value


def get_parameter(name: str, *, region: str | None) -> str:
    """The decrypted value of an SSM parameter (SecureString or String)."""
    try:
        response = client("ssm", region).get_parameter(Name=name, WithDecryption=True)
    except Exception as exc:
        raise ConfigError(
            f"MIGRATE_DATABASE_URL_PARAMETER: parameter {name!r}: {_describe(exc)}",
            setting="MIGRATE_DATABASE_URL_PARAMETER",
            parameter=name,
        ) from None
    return str(response["Parameter"]["Value"])


def conninfo_from_secret(secret_id: str, raw: str, key: str | None) -> dict[str, Any]:
    """Connection parameters from a secret: RDS-managed JSON, a JSON key holding a URL, or a plain URL.

    Raises ConfigError naming the secret and the key; never the value.
    """
    from psycopg.conninfo import conninfo_to_dict

    text = raw.strip()
    if key is None and not text.startswith("{"):
        return _parse_url(secret_id, text, conninfo_to_dict)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"MIGRATE_DATABASE_SECRET_ID: secret {secret_id!r} is not valid JSON "
            f"(line {exc.lineno}, column {exc.colno})",
            setting="MIGRATE_DATABASE_SECRET_ID",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"MIGRATE_DATABASE_SECRET_ID: secret {secret_id!r} is JSON but not an object")
    if key is not None:
        if key not in data or not isinstance(data[key], str):
            raise ConfigError(
                f"MIGRATE_DATABASE_SECRET_KEY: secret {secret_id!r} has no string key {key!r}",
                setting="MIGRATE_DATABASE_SECRET_KEY",
                key=key,
            )
        return _parse_url(secret_id, data[key], conninfo_to_dict)
    missing = [k for k in ("username", "password", "host") if not data.get(k)]
    if missing:
        raise ConfigError(
            f"MIGRATE_DATABASE_SECRET_ID: secret {secret_id!r} lacks key(s) {', '.join(missing)} "
            "(expected the RDS format: username, password, host, port, dbname; or set MIGRATE_DATABASE_SECRET_KEY)",
            setting="MIGRATE_DATABASE_SECRET_ID",
            missing=missing,
        )
    engine = str(data.get("engine") or "postgres")
    if engine not in ("postgres", "postgresql", "aurora-postgresql"):
        raise ConfigError(f"MIGRATE_DATABASE_SECRET_ID: secret {secret_id!r} is for engine {engine!r}, not PostgreSQL")
    return {
        "host": str(data["host"]),
        "port": str(data.get("port") or 5432),
        "user": str(data["username"]),
        "password": str(data["password"]),
        "dbname": str(data.get("dbname") or "postgres"),
    }


def _parse_url(secret_id: str, text: str, parse: Any) -> dict[str, Any]:
    try:
        return dict(parse(text))
    except Exception:
        raise ConfigError(
            f"secret {secret_id!r} does not hold a valid PostgreSQL connection string",
            setting="MIGRATE_DATABASE_SECRET_ID",
        ) from None


def iam_token(*, host: str, port: int, user: str, region: str | None) -> str:
    """A fresh RDS IAM auth token (valid 15 minutes): generated locally by signing, no network call."""
    try:
        rds = client("rds", region)
        return str(rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region))
    except Exception as exc:
        raise ConfigError(
            f"MIGRATE_IAM_AUTH: cannot create an IAM auth token: {_describe(exc)}", setting="MIGRATE_IAM_AUTH"
        ) from None
