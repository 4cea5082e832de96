"""Back up before changing anything: an RDS/Aurora snapshot, or pg_dump streamed to S3 or a file.

Runs only when something is pending and MIGRATE_BACKUP is not `none` (`auto` = required on production,
off elsewhere). Any failure or timeout raises BackupFailed (exit 6) before a migration runs.

pg_dump -Fc is streamed straight into an S3 multipart upload (no temporary file; memory bounded by the
part size) or into a local file. Its connection settings and password reach it through its environment,
never argv. Its major version must be >= the server's.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from job import aws
from job.config import Settings, subprocess_env
from job.db import Connection, connection_params
from job.errors import BackupFailed, ConfigError
from job.report import Log

PART_SIZE = 8 * 1024 * 1024
_INSTANCE_HOST = re.compile(
    r"^(?P<id>[a-z][a-z0-9-]*)\.(?P<cluster>cluster-(?:ro-)?)?[a-z0-9]+\.[a-z0-9-]+\.rds\.amazonaws\.com$"
)


@dataclass(frozen=True)
class BackupResult:
    """What the pre-migration backup produced: its kind, where it is, how long it took."""

    kind: str
    location: str
    elapsed_ms: int
    size_bytes: int | None = None


def mode_for(settings: Settings) -> str:
    """The backup to take: auto → required on production (snapshot if an RDS target is known, else pg_dump)."""
    mode = settings.backup
    if mode != "auto":
        return mode
    if not settings.is_production:
        return "none"
    if settings.rds_instance_id or settings.rds_cluster_id:
        return "rds-snapshot"
    if settings.backup_s3_uri or settings.backup_path:
        return "pg-dump"
    host = str(connection_params(settings).get("host", ""))
    if _INSTANCE_HOST.match(host.lower()):
        return "rds-snapshot"
    raise ConfigError(
        "MIGRATE_BACKUP=auto on production needs a backup target: MIGRATE_RDS_INSTANCE_ID / MIGRATE_RDS_CLUSTER_ID "
        "(snapshot) or MIGRATE_BACKUP_S3_URI / MIGRATE_BACKUP_PATH (pg_dump); or set MIGRATE_BACKUP=none",
        setting="MIGRATE_BACKUP",
    )


def run(settings: Settings, log: Log, conn: Connection, target_version: str, run_id: str) -> BackupResult | None:
    mode = mode_for(settings)
    if mode == "none":
        return None
    log.info("backup.started", kind=mode, target_version=target_version)
    started = time.monotonic()
    if mode == "rds-snapshot":
        location = snapshot(settings, log, target_version, run_id)
        size = None
    else:
        location, size = pg_dump(settings, log, conn, target_version, run_id)
    result = BackupResult(mode, location, round((time.monotonic() - started) * 1000), size)
    log.info("backup.finished", kind=mode, location=location, duration_ms=result.elapsed_ms, size_bytes=size)
    return result


# ---------------------------------------------------------------------------- RDS / Aurora snapshots


def _snapshot_target(settings: Settings) -> tuple[str, str]:
    """("cluster" | "instance", identifier), configured or derived from the endpoint."""
    if settings.rds_cluster_id:
        return "cluster", settings.rds_cluster_id
    if settings.rds_instance_id:
        ident = settings.rds_instance_id
    else:
        host = str(connection_params(settings).get("host", "")).lower()
        m = _INSTANCE_HOST.match(host)
        if not m:
            raise ConfigError(
                f"MIGRATE_BACKUP=rds-snapshot: cannot tell the RDS identifier from host {host!r}; "
                "set MIGRATE_RDS_INSTANCE_ID or MIGRATE_RDS_CLUSTER_ID",
                setting="MIGRATE_RDS_INSTANCE_ID",
            )
        if m.group("cluster"):
            return "cluster", m.group("id")
        ident = m.group("id")
    rds = aws.client("rds", settings.aws_region)
    try:
        found = rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"]
    except Exception as exc:
        raise BackupFailed(f"rds-snapshot: DB instance {ident!r}: {aws._describe(exc)}", instance=ident) from None
    cluster = found[0].get("DBClusterIdentifier") if found else None
    return ("cluster", str(cluster)) if cluster else ("instance", ident)


def snapshot_id(ident: str, target_version: str, run_id: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    raw = f"migrate-job-{ident}-v{target_version}-{stamp}-{run_id}"
    cleaned = re.sub(r"[^a-zA-Z0-9-]+", "-", raw)
    return re.sub(r"-{2,}", "-", cleaned).strip("-")[:255]


def snapshot(settings: Settings, log: Log, target_version: str, run_id: str) -> str:
    kind, ident = _snapshot_target(settings)
    rds = aws.client("rds", settings.aws_region)
    sid = snapshot_id(ident, target_version, run_id)
    tags = [
        {"Key": "migrate-job:target-version", "Value": target_version},
        {"Key": "migrate-job:run-id", "Value": run_id},
        {"Key": "migrate-job:created-by", "Value": settings.applied_by[:256]},
    ]
    delay = max(1, round(settings.backup_poll_interval))
    attempts = max(1, math.ceil(settings.backup_timeout / delay))
    try:
        if kind == "cluster":
            rds.create_db_cluster_snapshot(DBClusterSnapshotIdentifier=sid, DBClusterIdentifier=ident, Tags=tags)
            log.info("backup.snapshot_requested", cluster=ident, snapshot=sid)
            waiter = rds.get_waiter("db_cluster_snapshot_available")
            waiter.wait(DBClusterSnapshotIdentifier=sid, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
        else:
            rds.create_db_snapshot(DBSnapshotIdentifier=sid, DBInstanceIdentifier=ident, Tags=tags)
            log.info("backup.snapshot_requested", instance=ident, snapshot=sid)
            waiter = rds.get_waiter("db_snapshot_available")
            waiter.wait(DBSnapshotIdentifier=sid, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
    except Exception as exc:
        what = "timed out" if type(exc).__name__ == "WaiterError" else aws._describe(exc)
        raise BackupFailed(
            f"rds-snapshot of {kind} {ident!r}: snapshot {sid} {what} (MIGRATE_BACKUP_TIMEOUT="
            f"{settings.backup_timeout:g}s); no migration was applied",
            snapshot=sid,
        ) from None
    return f"rds:{kind}-snapshot:{sid}"


# ---------------------------------------------------------------------------- pg_dump


def pg_dump_major(binary: str) -> int:
    path = shutil.which(binary)
    if path is None:
        raise BackupFailed(f"pg_dump not found ({binary!r}); install the PostgreSQL client or set MIGRATE_PG_DUMP")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    if not m:
        raise BackupFailed(f"cannot read the version of {path}: {out.strip()!r}")
    return int(m.group(1))


def _dump_env(settings: Settings) -> dict[str, str]:
    params = connection_params(settings)
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "dbname": "PGDATABASE",
        "password": "PGPASSWORD",
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "sslcert": "PGSSLCERT",
        "sslkey": "PGSSLKEY",
    }
    extra = {env: str(params[key]) for key, env in names.items() if params.get(key) not in (None, "")}
    return subprocess_env(extra)


class _DumpStream(io.RawIOBase):
    """pg_dump's stdout as a file object that fails (aborting the upload) if pg_dump fails."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: list[bytes], reader: threading.Thread) -> None:
        self.proc = proc
        self.stderr = stderr
        self.reader = reader
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read(len(buffer))
        if not data:
            code = self.proc.wait()
            if code != 0:
                self.reader.join(timeout=5)  # pg_dump's last stderr line arrives as it exits
                tail = b"".join(self.stderr).decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise BackupFailed(f"pg_dump failed (exit {code}): {tail[0]}", pg_dump_exit=code)
            return 0
        n = len(data)
        buffer[:n] = data
        self.size += n
        return n


def pg_dump(settings: Settings, log: Log, conn: Connection, target_version: str, run_id: str) -> tuple[str, int]:
    server_major = conn.info.server_version // 10000
    dump_major = pg_dump_major(settings.pg_dump)
    if dump_major < server_major:
        raise BackupFailed(
            f"pg_dump is version {dump_major} but the server is PostgreSQL {server_major}: pg_dump must be the same "
            "major version or newer (set MIGRATE_PG_DUMP to a newer pg_dump)",
            pg_dump_major=dump_major,
            server_major=server_major,
        )
    if not settings.backup_s3_uri and settings.backup_path is None:
        raise ConfigError(
            "MIGRATE_BACKUP=pg-dump needs a destination: MIGRATE_BACKUP_S3_URI or MIGRATE_BACKUP_PATH",
            setting="MIGRATE_BACKUP_S3_URI",
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{conn.info.dbname}-{stamp}-v{target_version}-{run_id}.dump"
    proc = subprocess.Popen(
        [str(shutil.which(settings.pg_dump) or settings.pg_dump), "-Fc", "--no-password"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_dump_env(settings),
    )
    stderr: list[bytes] = []

    def drain_stderr() -> None:
        assert proc.stderr is not None
        stderr.extend(iter(lambda: proc.stderr.read(4096) if proc.stderr else b"", b""))

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(settings.backup_timeout, kill_on_timeout)
    timer.start()
    stream = _DumpStream(proc, stderr, reader)
    try:
        if settings.backup_s3_uri:
            location = _upload(settings, stream, name)
        else:
            assert settings.backup_path is not None
            location = _write_file(settings.backup_path, stream, name)
    except Exception as exc:
        proc.kill()
        if timed_out.is_set():
            raise BackupFailed(
                f"pg_dump did not finish within MIGRATE_BACKUP_TIMEOUT={settings.backup_timeout:g}s"
            ) from None
        if isinstance(exc, BackupFailed):
            raise
        raise BackupFailed(f"pg_dump backup failed: {aws._describe(exc)}") from None
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=5)
    return location, stream.size


def _upload(settings: Settings, stream: _DumpStream, name: str) -> str:
    from boto3.s3.transfer import TransferConfig

    assert settings.backup_s3_uri is not None
    m = re.match(r"^s3://(?P<bucket>[^/]+)/?(?P<prefix>.*)$", settings.backup_s3_uri)
    if not m:
        raise ConfigError("MIGRATE_BACKUP_S3_URI must look like s3://bucket/prefix/", setting="MIGRATE_BACKUP_S3_URI")
    prefix = m.group("prefix")
    key = f"{prefix.rstrip('/')}/{name}" if prefix else name
    extra: dict[str, str] = {}
    if settings.backup_kms_key_id:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.backup_kms_key_id}
    config = TransferConfig(
        multipart_threshold=PART_SIZE,
        multipart_chunksize=PART_SIZE,
        max_concurrency=2,
        max_io_queue=2,
    )
    config.max_in_memory_upload_chunks = 3  # s3transfer setting: bounds memory when S3 is slower than pg_dump
    s3 = aws.client("s3", settings.aws_region)
    s3.upload_fileobj(io.BufferedReader(stream, PART_SIZE), m.group("bucket"), key, ExtraArgs=extra, Config=config)
    return f"s3://{m.group('bucket')}/{key}"


def _write_file(directory: Path, stream: _DumpStream, name: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    partial = final.with_suffix(".dump.partial")
    try:
        with partial.open("wb") as out:
            partial.chmod(0o600)
            shutil.copyfileobj(stream, out, 1024 * 1024)
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
    return str(final)
