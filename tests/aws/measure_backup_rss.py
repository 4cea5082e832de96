"""Measure the peak RSS of `migrate-job` during a pg_dump → S3 backup, for a small and a large database.

Not a test (pytest does not collect it): run `python -m tests.aws.measure_backup_rss [--sizes 20,200]`.

It starts a private PostgreSQL DevServer and a moto server (S3) in this process, fills one database per
size (MB) with `INSERT ... SELECT generate_series` rows of md5 text, then runs the job's `migrate` with
MIGRATE_BACKUP=pg-dump and MIGRATE_BACKUP_S3_URI, as `python -c BOOTSTRAP` where BOOTSTRAP runs the module
`job` as __main__ (exactly what `python -m job` does) after registering an atexit hook that writes
getrusage(RUSAGE_SELF).ru_maxrss: the kernel's peak-RSS figure for the job's own process (no children).
Caveat seen on Linux 6.18: after moto has served earlier uploads, that figure (and wait4's) reached ~260-285
MB for a 600 MB database while Rss sampled from smaps_rollup and VmHWM never exceeded ~112 MB; compare both.

Also shown: the largest Rss of the job's process from /proc/<pid>/smaps_rollup (an exact page-table walk)
sampled every 20 ms; its VmHWM from /proc/<pid>/status at the last sample; pg_dump's own peak from GNU time
(`/usr/bin/time -f %M` in a wrapper set as MIGRATE_PG_DUMP; psutil sampling if GNU time is missing); and
ru_maxrss from wait4 on the job, which is the maximum over the job *and its waited-for children* (it counts
pg_dump and whatever the kernel charges to the children at exec), so it is not the job's own peak.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import psutil  # type: ignore[import-untyped]
import psycopg
from moto.server import ThreadedMotoServer
from psycopg import sql

from job import devserver

ROOT = Path(__file__).resolve().parents[2]
MIGRATION = "-- UP\nCREATE TABLE after_backup (id integer);\n-- DOWN\nDROP TABLE after_backup;\n"
BATCH_ROWS = 50_000
BOOTSTRAP = """
import atexit, resource, runpy, sys
out = sys.argv.pop(1)
def report():
    with open(out, "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(report)
sys.argv[0] = "job"
runpy.run_module("job", run_name="__main__", alter_sys=True)
"""


@dataclass
class Sample:
    size_mb: int
    db_bytes: int
    dump_bytes: int
    exit_code: int
    job_self_kb: int
    job_rss_kb: int
    job_hwm_kb: int
    pg_dump_peak_kb: int
    wait4_maxrss_kb: int
    seconds: float


def fill(url: str, size_mb: int) -> int:
    """Insert md5 rows until the database is at least `size_mb` MB; returns its size in bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE filler (id bigint PRIMARY KEY, a text NOT NULL, b text NOT NULL)")
        start = 1
        while True:
            conn.execute(
                "INSERT INTO filler SELECT g, md5(g::text), md5((g * 7919)::text)"
                " FROM generate_series(%s::bigint, %s::bigint) AS g",
                (start, start + BATCH_ROWS - 1),
            )
            start += BATCH_ROWS
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            assert row is not None
            if int(row[0]) >= size_mb * 1024 * 1024:
                conn.execute("VACUUM ANALYZE filler")
                return int(row[0])


def proc_kb(path: str, field: str) -> int | None:
    """A `Name:   123 kB` field of a /proc file (None once the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_backup(url: str, endpoint: str, bucket: str, pg_dump: Path, workdir: Path) -> tuple[int, ...]:
    """Run the job once: exit code, then KB: job RUSAGE_SELF, job Rss, job VmHWM, pg_dump, wait4; then ms."""
    migrations = workdir / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    timed = workdir / "pg_dump.maxrss"
    self_rss = workdir / "job.maxrss"
    if Path("/usr/bin/time").exists():
        wrapper = workdir / "pg_dump"
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/time -f %M -o "{timed}" "{pg_dump}" "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
        pg_dump = wrapper
    (migrations / "0001_after_backup.sql").write_text(MIGRATION, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MIGRATE_", "AWS_")) and k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=url,
        PYTHONPATH=str(ROOT),
        MIGRATE_LOG_FORMAT="json",
        MIGRATE_BACKUP="pg-dump",
        MIGRATE_BACKUP_S3_URI=f"s3://{bucket}/backups/",
        MIGRATE_PG_DUMP=str(pg_dump),
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        MIGRATE_AWS_REGION="us-east-1",
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP, str(self_rss), "migrate", "--dir", str(migrations)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    job = psutil.Process(proc.pid)
    job_hwm = job_rss = dump_peak = 0
    while True:
        hwm = proc_kb(f"/proc/{proc.pid}/status", "VmHWM")
        if hwm is not None:
            job_hwm = max(job_hwm, hwm)
        rss = proc_kb(f"/proc/{proc.pid}/smaps_rollup", "Rss")
        if rss is not None:
            job_rss = max(job_rss, rss)
        with contextlib.suppress(psutil.Error):
            for child in job.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    dump_peak = max(dump_peak, child.memory_info().rss // 1024)
        # Reap without blocking: wait4 gives ru_maxrss (job and waited children together).
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            if timed.exists():  # the last call is the dump (the first is --version)
                dump_peak = int(timed.read_text().split()[-1])
            own = int(self_rss.read_text()) if self_rss.exists() else -1
            elapsed_ms = round((time.monotonic() - started) * 1000)
            return proc.returncode, own, job_rss, job_hwm, dump_peak, int(usage.ru_maxrss), elapsed_ms
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,200", help="database sizes in MB (default 20,200)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    bindir = devserver.find_bindir(Path(os.environ["TEST_PG_BINDIR"]) if os.environ.get("TEST_PG_BINDIR") else None)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="measure-rss-") as tmp:
        server = devserver.create(Path(tmp) / "pg", bindir=bindir)
        server.start()
        try:
            endpoint = f"http://127.0.0.1:{moto.get_host_and_port()[1]}"
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            for size in sizes:
                name = f"rss_{size}mb_{uuid.uuid4().hex[:6]}"
                with psycopg.connect(server.url(), autocommit=True) as admin:
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                db_bytes = fill(server.url(name), size)
                bucket = f"rss-{size}-{uuid.uuid4().hex[:6]}"
                s3.create_bucket(Bucket=bucket)
                code, own, rss, hwm, dump_peak, maxrss, elapsed_ms = run_backup(
                    server.url(name), endpoint, bucket, bindir / "pg_dump", Path(tmp) / name
                )
                objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
                dump_bytes = sum(int(o["Size"]) for o in objects)
                samples.append(
                    Sample(size, db_bytes, dump_bytes, code, own, rss, hwm, dump_peak, maxrss, elapsed_ms / 1000)
                )
                for obj in objects:
                    s3.delete_object(Bucket=bucket, Key=obj["Key"])
                with psycopg.connect(server.url(), autocommit=True) as admin:
                    admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            server.stop()
            moto.stop()
    print(
        f"{'target':>7} {'db size':>9} {'dump (S3)':>10} {'exit':>4} {'job Rss peak':>13} {'job VmHWM':>10}"
        f" {'job ru_maxrss':>14}"
        f" {'pg_dump peak':>13} {'wait4 maxrss':>13} {'time':>7}"
    )
    for s in samples:
        print(
            f"{s.size_mb:>5}MB {s.db_bytes / 2**20:>7.1f}MB {s.dump_bytes / 2**20:>8.1f}MB {s.exit_code:>4}"
            f" {s.job_rss_kb / 1024:>11.1f}MB {s.job_hwm_kb / 1024:>8.1f}MB {s.job_self_kb / 1024:>12.1f}MB"
            f" {s.pg_dump_peak_kb / 1024:>11.1f}MB {s.wait4_maxrss_kb / 1024:>11.1f}MB"
            f" {s.seconds:>6.1f}s"
        )
    return 0 if all(s.exit_code == 0 for s in samples) else 1


if __name__ == "__main__":
    sys.exit(main())
