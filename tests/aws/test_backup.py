"""The pre-migration backup: RDS/Aurora snapshots (moto) and pg_dump to S3 (moto) or a local file.

Each test runs the CLI as a subprocess against a real PostgreSQL and moto in server mode, then looks at
moto and at the database: a backup exists before anything is applied, and a failed backup applies nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.aws.conftest import (
    Client,
    Target,
    applied_versions,
    aws_env,
    migrate,
    pg_tool,
    remember_secret,
    table_exists,
    unique,
    write_migrations,
)
from tests.pg.cli import Result, advisory_locks, execute, query
from tests.pgutil import PgServer, new_database

pytestmark = pytest.mark.pg


def db_env(moto_url: str, target: Target, **extra: str) -> dict[str, str]:
    """A job with DATABASE_URL (password included) and AWS credentials."""
    return aws_env(moto_url, DATABASE_URL=target.url, **extra)


def create_instance(aws: Client) -> str:
    ident = unique("app-db")
    aws("rds").create_db_instance(
        DBInstanceIdentifier=ident,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="postgres",
        MasterUserPassword=remember_secret(f"Master{uuid.uuid4().hex}"),
        AllocatedStorage=20,
    )
    return ident


def create_cluster(aws: Client) -> str:
    ident = unique("app-aurora")
    aws("rds").create_db_cluster(
        DBClusterIdentifier=ident,
        Engine="aurora-postgresql",
        MasterUsername="postgres",
        MasterUserPassword=remember_secret(f"Master{uuid.uuid4().hex}"),
    )
    return ident


def snapshot_of(result: Result, kind: str) -> str:
    """The snapshot id from the `backup.finished` event (location rds:<kind>-snapshot:<id>)."""
    finished = result.events("backup.finished")
    assert len(finished) == 1, result.describe()
    prefix = f"rds:{kind}-snapshot:"
    location = str(finished[0]["location"])
    assert location.startswith(prefix), location
    return location[len(prefix) :]


def assert_backup_before_migrations(result: Result) -> None:
    events = [e.get("event") for e in result.logs]
    assert "backup.finished" in events and "migration.applied" in events, result.describe()
    assert events.index("backup.finished") < events.index("migration.applied")


def tags(aws: Client, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in aws("rds").list_tags_for_resource(ResourceName=arn)["TagList"]}


def run_id_of(result: Result) -> str:
    return str(result.events("run.finished")[0]["run_id"])


def assert_nothing_applied(target: Target) -> None:
    assert applied_versions(target.inspect_url) == []
    assert not table_exists(target.inspect_url, "items")


# ---------------------------------------------------------------------------- RDS / Aurora snapshots


def test_rds_instance_snapshot(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """MIGRATE_BACKUP=rds-snapshot snapshots the instance, tagged with the target version and run id, then migrates."""
    instance = create_instance(aws)
    env = db_env(
        moto_url,
        target,
        MIGRATE_BACKUP="rds-snapshot",
        MIGRATE_RDS_INSTANCE_ID=instance,
        MIGRATE_BACKUP_POLL_INTERVAL="1",
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 0, result.describe()
    sid = snapshot_of(result, "instance")
    [snap] = aws("rds").describe_db_snapshots(DBSnapshotIdentifier=sid)["DBSnapshots"]
    assert snap["DBInstanceIdentifier"] == instance
    found = tags(aws, snap["DBSnapshotArn"])
    assert found["migrate-job:target-version"] == "2"
    assert found["migrate-job:run-id"] == run_id_of(result)
    assert_backup_before_migrations(result)
    assert applied_versions(target.inspect_url) == ["1", "2"]


def test_aurora_cluster_snapshot(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """MIGRATE_RDS_CLUSTER_ID takes an Aurora cluster snapshot before migrating."""
    cluster = create_cluster(aws)
    env = db_env(
        moto_url,
        target,
        MIGRATE_BACKUP="rds-snapshot",
        MIGRATE_RDS_CLUSTER_ID=cluster,
        MIGRATE_BACKUP_POLL_INTERVAL="1",
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 0, result.describe()
    sid = snapshot_of(result, "cluster")
    [snap] = aws("rds").describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=sid)["DBClusterSnapshots"]
    assert snap["DBClusterIdentifier"] == cluster
    found = tags(aws, snap["DBClusterSnapshotArn"])
    assert found["migrate-job:target-version"] == "2"
    assert found["migrate-job:run-id"] == run_id_of(result)
    assert_backup_before_migrations(result)
    assert applied_versions(target.inspect_url) == ["1", "2"]


def test_aurora_instance_id_snapshots_its_cluster(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """An Aurora instance id in MIGRATE_RDS_INSTANCE_ID snapshots its cluster (Aurora snapshots are per cluster)."""
    cluster = create_cluster(aws)
    instance = unique("app-aurora-1")
    aws("rds").create_db_instance(
        DBInstanceIdentifier=instance,
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
        DBClusterIdentifier=cluster,
    )
    env = db_env(
        moto_url,
        target,
        MIGRATE_BACKUP="rds-snapshot",
        MIGRATE_RDS_INSTANCE_ID=instance,
        MIGRATE_BACKUP_POLL_INTERVAL="1",
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 0, result.describe()
    sid = snapshot_of(result, "cluster")
    [snap] = aws("rds").describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=sid)["DBClusterSnapshots"]
    assert snap["DBClusterIdentifier"] == cluster


def test_snapshot_of_unknown_instance_applies_nothing(
    tmp_path: Path, moto_url: str, aws: Client, target: Target
) -> None:
    """A snapshot of an instance that does not exist fails with exit 6: nothing applied, advisory lock released."""
    missing = unique("no-such-db")
    env = db_env(moto_url, target, MIGRATE_BACKUP="rds-snapshot", MIGRATE_RDS_INSTANCE_ID=missing)
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 6, result.describe()
    assert missing in result.error_text()
    assert not result.events("backup.finished") and not result.events("migration.applied")
    assert_nothing_applied(target)
    assert advisory_locks(target.inspect_url) == []
    assert result.events("lock.released")


class _StillCreating(BaseHTTPRequestHandler):
    """Forwards every request to moto; in DescribeDB(Cluster)Snapshots answers, `available` becomes `creating`."""

    upstream: tuple[str, int]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if b"Action=DescribeDBSnapshots" in body or b"Action=DescribeDBClusterSnapshots" in body:
            data = data.replace(b"<Status>available</Status>", b"<Status>creating</Status>")
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def slow_snapshot_endpoint(moto_url: str) -> Iterator[str]:
    """An endpoint in front of moto where every snapshot stays `creating`, like a large database's snapshot."""
    upstream = urlsplit(moto_url)
    handler = type("Handler", (_StillCreating,), {"upstream": (upstream.hostname, upstream.port)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("kind", ["instance", "cluster"])
def test_snapshot_timeout_applies_nothing(
    tmp_path: Path, aws: Client, target: Target, slow_snapshot_endpoint: str, kind: str
) -> None:
    """A snapshot still not available after MIGRATE_BACKUP_TIMEOUT fails with exit 6 and applies nothing."""
    if kind == "instance":
        ident = create_instance(aws)
        extra = {"MIGRATE_RDS_INSTANCE_ID": ident}
    else:
        ident = create_cluster(aws)
        extra = {"MIGRATE_RDS_CLUSTER_ID": ident}
    env = db_env(
        slow_snapshot_endpoint,
        target,
        MIGRATE_BACKUP="rds-snapshot",
        MIGRATE_BACKUP_TIMEOUT="2",
        MIGRATE_BACKUP_POLL_INTERVAL="1",
        **extra,
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 6, result.describe()
    assert "timed out" in result.error_text()
    assert result.events("backup.snapshot_requested")
    assert_nothing_applied(target)
    assert advisory_locks(target.inspect_url) == []


def test_nothing_pending_takes_no_snapshot(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """When nothing is pending, no backup is taken (no snapshot, no backup.started)."""
    directory = write_migrations(tmp_path / "migrations")
    first = migrate(directory, db_env(moto_url, target, MIGRATE_BACKUP="none"))
    assert first.returncode == 0, first.describe()
    instance = create_instance(aws)
    env = db_env(moto_url, target, MIGRATE_BACKUP="rds-snapshot", MIGRATE_RDS_INSTANCE_ID=instance)
    result = migrate(directory, env)
    assert result.returncode == 0, result.describe()
    assert not result.events("backup.started")
    assert aws("rds").describe_db_snapshots(DBInstanceIdentifier=instance, SnapshotType="manual")["DBSnapshots"] == []


# ---------------------------------------------------------------------------- pg_dump


@pytest.fixture
def scratch_db(pg_server: PgServer) -> Iterator[str]:
    """An empty database to restore a dump into (dropped after the test)."""
    with new_database(pg_server, f"restore_{uuid.uuid4().hex[:12]}") as url:
        yield url


def seed(tmp_path: Path, moto_url: str, target: Target) -> Path:
    """Apply migration 1 (a filled `items` table) without backup, then add migration 2 (pending)."""
    directory = write_migrations(tmp_path / "migrations", count=1)
    result = migrate(directory, db_env(moto_url, target, MIGRATE_BACKUP="none"))
    assert result.returncode == 0, result.describe()
    execute(target.inspect_url, "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1000, 1999) AS g")
    return write_migrations(directory, count=2)


def items(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT id, label FROM items ORDER BY id")


def restore(dump: Path, into: str) -> None:
    subprocess.run(
        [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", into, str(dump)],
        check=True,
        capture_output=True,
    )


def assert_restores_items_only(dump: Path, into: str, target: Target) -> None:
    """The dump restores `items` as it was before the run, and nothing migration 2 created."""
    restore(dump, into)
    assert items(into) == items(target.inspect_url)
    assert len(items(into)) == 1050
    assert not table_exists(into, "notes")


def test_pg_dump_to_s3(tmp_path: Path, moto_url: str, aws: Client, target: Target, scratch_db: str) -> None:
    """MIGRATE_BACKUP=pg-dump streams a restorable dump to S3 (KMS-encrypted) before migrating."""
    directory = seed(tmp_path, moto_url, target)
    bucket = unique("backups")
    aws("s3").create_bucket(Bucket=bucket)
    key_id = aws("kms").create_key(Description="migrate-job backups")["KeyMetadata"]["KeyId"]
    secret = unique("migrate-job/db")
    aws("secretsmanager").create_secret(Name=secret, SecretString=remember_secret(target.rds_secret()))
    env = aws_env(
        moto_url,
        MIGRATE_DATABASE_SECRET_ID=secret,
        MIGRATE_BACKUP="pg-dump",
        MIGRATE_BACKUP_S3_URI=f"s3://{bucket}/prod/app/",
        MIGRATE_BACKUP_KMS_KEY_ID=key_id,
        MIGRATE_PG_DUMP=pg_tool("pg_dump"),
    )
    result = migrate(directory, env)
    assert result.returncode == 0, result.describe()
    assert_backup_before_migrations(result)
    [finished] = result.events("backup.finished")
    [obj] = aws("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert obj["Key"].startswith("prod/app/") and obj["Key"].endswith(".dump")
    assert finished["location"] == f"s3://{bucket}/{obj['Key']}"
    assert finished["size_bytes"] == obj["Size"]
    head = aws("s3").head_object(Bucket=bucket, Key=obj["Key"])
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key_id
    dump = tmp_path / "downloaded.dump"
    aws("s3").download_file(bucket, obj["Key"], str(dump))
    assert_restores_items_only(dump, scratch_db, target)
    assert applied_versions(target.inspect_url) == ["1", "2"]


def test_pg_dump_to_local_file(tmp_path: Path, moto_url: str, target: Target, scratch_db: str) -> None:
    """MIGRATE_BACKUP_PATH gets a restorable dump readable only by its owner (mode 0600)."""
    directory = seed(tmp_path, moto_url, target)
    backups = tmp_path / "backups"
    env = db_env(
        moto_url, target, MIGRATE_BACKUP="pg-dump", MIGRATE_BACKUP_PATH=str(backups), MIGRATE_PG_DUMP=pg_tool("pg_dump")
    )
    result = migrate(directory, env)
    assert result.returncode == 0, result.describe()
    [dump] = list(backups.iterdir())
    assert dump.suffix == ".dump"
    assert result.events("backup.finished")[0]["location"] == str(dump)
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert_restores_items_only(dump, scratch_db, target)
    assert applied_versions(target.inspect_url) == ["1", "2"]


def fake_pg_dump(tmp_path: Path, body: str, version: str | None = None) -> str:
    """An executable that answers --version like `version` (default: the real pg_dump) and runs `body` otherwise."""
    if version is None:
        version = subprocess.run([pg_tool("pg_dump"), "--version"], capture_output=True, text=True, check=True).stdout
    script = tmp_path / "bin" / "pg_dump"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version.strip()}"; exit 0; fi\n{body}\n', encoding="utf-8"
    )
    script.chmod(0o755)
    return str(script)


def bucket_is_empty(aws: Client, bucket: str) -> bool:
    s3 = aws("s3")
    return "Contents" not in s3.list_objects_v2(Bucket=bucket) and not s3.list_multipart_uploads(Bucket=bucket).get(
        "Uploads"
    )


FAILING_BODY = 'echo "pg_dump: error: query failed: server closed the connection unexpectedly" >&2\nexit 1'


def failing_pg_dump(tmp_path: Path, failure: str) -> str:
    """A pg_dump that fails at once, or after writing 20 MB (more than two S3 multipart parts)."""
    produce = "head -c 20000000 /dev/zero\n" if failure == "mid-stream" else ""
    return fake_pg_dump(tmp_path, produce + FAILING_BODY)


@pytest.mark.parametrize("dest", ["s3", "path"])
@pytest.mark.parametrize("failure", ["at-once", "mid-stream"])
def test_pg_dump_failure_applies_nothing(
    tmp_path: Path, moto_url: str, aws: Client, target: Target, dest: str, failure: str
) -> None:
    """pg_dump exiting 1 fails the run with exit 6, applies nothing and leaves no partial backup (file or S3 upload)."""
    bucket = unique("backups")
    aws("s3").create_bucket(Bucket=bucket)
    backups = tmp_path / "backups"
    where = {"MIGRATE_BACKUP_S3_URI": f"s3://{bucket}/x/"} if dest == "s3" else {"MIGRATE_BACKUP_PATH": str(backups)}
    env = db_env(
        moto_url, target, MIGRATE_BACKUP="pg-dump", MIGRATE_PG_DUMP=failing_pg_dump(tmp_path, failure), **where
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 6, result.describe()
    assert "pg_dump failed (exit 1)" in result.error_text()
    assert_nothing_applied(target)
    assert bucket_is_empty(aws, bucket)
    assert not backups.exists() or list(backups.iterdir()) == []


def test_pg_dump_failure_reports_its_reason(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """The error of a failed pg_dump → S3 backup includes pg_dump's own message, on every run (4 runs)."""
    bucket = unique("backups")
    aws("s3").create_bucket(Bucket=bucket)
    env = db_env(
        moto_url,
        target,
        MIGRATE_BACKUP="pg-dump",
        MIGRATE_BACKUP_S3_URI=f"s3://{bucket}/x/",
        MIGRATE_PG_DUMP=failing_pg_dump(tmp_path, "mid-stream"),
    )
    directory = write_migrations(tmp_path / "migrations")
    errors = []
    for _ in range(4):  # the message used to be lost in a race: one run proves little
        result = migrate(directory, env)
        assert result.returncode == 6, result.describe()
        errors.append(result.error_text())
    assert all("server closed the connection unexpectedly" in e for e in errors), errors
    assert_nothing_applied(target)


def test_old_pg_dump_is_refused(tmp_path: Path, moto_url: str, target: Target) -> None:
    """A pg_dump older than the server fails with exit 6 explaining the version mismatch; nothing applied."""
    old = fake_pg_dump(tmp_path, "exit 0", version="pg_dump (PostgreSQL) 9.6.24")
    env = db_env(
        moto_url, target, MIGRATE_BACKUP="pg-dump", MIGRATE_BACKUP_PATH=str(tmp_path / "b"), MIGRATE_PG_DUMP=old
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 6, result.describe()
    assert "pg_dump is version 9 but the server is PostgreSQL" in result.error_text()
    assert_nothing_applied(target)


def test_pg_dump_not_found(tmp_path: Path, moto_url: str, target: Target) -> None:
    """A MIGRATE_PG_DUMP that does not exist fails with exit 6 before anything is applied."""
    missing = str(tmp_path / "nowhere" / "pg_dump")
    env = db_env(
        moto_url, target, MIGRATE_BACKUP="pg-dump", MIGRATE_BACKUP_PATH=str(tmp_path / "b"), MIGRATE_PG_DUMP=missing
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 6, result.describe()
    assert "pg_dump not found" in result.error_text()
    assert_nothing_applied(target)


def test_pg_dump_timeout_applies_nothing(tmp_path: Path, moto_url: str, target: Target) -> None:
    """A pg_dump that outlives MIGRATE_BACKUP_TIMEOUT is killed: exit 6 naming the timeout, nothing applied."""
    slow = fake_pg_dump(tmp_path, "exec sleep 60")
    backups = tmp_path / "b"
    env = db_env(
        moto_url,
        target,
        MIGRATE_BACKUP="pg-dump",
        MIGRATE_BACKUP_PATH=str(backups),
        MIGRATE_BACKUP_TIMEOUT="1s",
        MIGRATE_PG_DUMP=slow,
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 6, result.describe()
    assert "did not finish within MIGRATE_BACKUP_TIMEOUT=1s" in result.error_text()
    assert_nothing_applied(target)
    assert not backups.exists() or list(backups.iterdir()) == []


def test_pg_dump_without_destination_is_a_config_error(tmp_path: Path, moto_url: str, target: Target) -> None:
    """MIGRATE_BACKUP=pg-dump without an S3 URI or a path: exit 2 naming the settings, nothing applied."""
    env = db_env(moto_url, target, MIGRATE_BACKUP="pg-dump", MIGRATE_PG_DUMP=pg_tool("pg_dump"))
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 2, result.describe()
    assert "MIGRATE_BACKUP_S3_URI or MIGRATE_BACKUP_PATH" in result.error_text()
    assert_nothing_applied(target)


def test_pg_dump_gets_password_from_environment(tmp_path: Path, moto_url: str, aws: Client, target: Target) -> None:
    """pg_dump receives the secret's password in PGPASSWORD, never on its command line."""
    record = tmp_path / "pg_dump.calls"
    real = pg_tool("pg_dump")
    wrapper = tmp_path / "bin" / "pg_dump"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f"{{ printf 'argv:'; printf ' %s' \"$@\"; printf '\\n'\n"
        '  echo "pgpassword_set: ${PGPASSWORD:+yes}"\n'
        '  echo "pgpassword_sha256: $(printf %s "$PGPASSWORD" | sha256sum | cut -d" " -f1)"\n'
        '  echo "database_url_set: ${DATABASE_URL:+yes}"\n'
        f"}} >> '{record}'\n"
        f"exec '{real}' \"$@\"\n",
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    secret = unique("migrate-job/db")
    aws("secretsmanager").create_secret(Name=secret, SecretString=remember_secret(target.rds_secret()))
    env = aws_env(
        moto_url,
        MIGRATE_DATABASE_SECRET_ID=secret,
        MIGRATE_BACKUP="pg-dump",
        MIGRATE_BACKUP_PATH=str(tmp_path / "backups"),
        MIGRATE_PG_DUMP=str(wrapper),
    )
    result = migrate(write_migrations(tmp_path / "migrations"), env)
    assert result.returncode == 0, result.describe()
    calls = record.read_text(encoding="utf-8")
    dump_call = calls.split("argv:")[-1]  # the last call is the dump itself (the first is --version)
    assert "-Fc" in dump_call
    assert target.password not in calls
    assert "pgpassword_set: yes" in dump_call
    assert f"pgpassword_sha256: {hashlib.sha256(target.password.encode()).hexdigest()}" in dump_call
    assert "database_url_set: \n" in dump_call
