"""The session-level PostgreSQL advisory lock that makes exactly one runner migrate.

Held on the very session that runs the migrations: a runner killed with SIGKILL in the middle of a
statement keeps the lock for exactly as long as its orphaned statement runs on the server, so the next
runner waits for it instead of running beside it. (`client_connection_check_interval`, set by `apply` on
PostgreSQL 14+, makes the server stop such an orphan within seconds.) Released by unlocking, by closing,
and by PostgreSQL itself when the session ends.

While a migration runs, the session is busy: questions about *other* sessions (who blocks a migration)
go through a `db.SideConnection` that holds nothing.
"""

from __future__ import annotations

import hashlib
import time
from types import TracebackType
from typing import Any

import psycopg

from job import cancel
from job.db import Connection, SideConnection
from job.errors import LockTimeout
from job.report import Log

LOST_LOCK_SQLSTATE = "MJ001"  # raised by `check_sql` when the session no longer holds the lock

_HOLDERS = """
SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start, a.state,
       left(a.query, 200) AS query
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %(classid)s AND l.objid::bigint = %(objid)s
"""


def lock_key(schema: str, table: str) -> int:
    """A stable signed 64-bit key derived from the history table's name."""
    digest = hashlib.sha256(f"migrate-job:{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _parts(key: int) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows a bigint advisory key."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def check_sql(key: int) -> str:
    """A statement that fails with SQLSTATE MJ001 unless this session holds the advisory lock `key`.

    Sent inside each migration's transaction, before its history row: a migration that released the lock
    (pg_advisory_unlock_all() in a function, say) is rolled back instead of committed unprotected.
    """
    classid, objid = _parts(key)
    return (
        "DO $migrate_job$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
        f"AND pid = pg_catalog.pg_backend_pid() AND granted AND objsubid = 1 AND classid = {classid} "
        f"AND objid = {objid}) THEN RAISE EXCEPTION 'migrate-job lost its advisory lock {key}' "
        f"USING ERRCODE = '{LOST_LOCK_SQLSTATE}'; END IF; END $migrate_job$"
    )


class AdvisoryLock:
    """`with AdvisoryLock(conn, key, ...):` polls pg_try_advisory_lock on `conn` until acquired or timed out.

    Polling (not a blocking pg_advisory_lock) keeps the waiter out of long transactions, so a runner's
    CREATE INDEX CONCURRENTLY never waits for the runners queued behind it.
    """

    def __init__(
        self,
        conn: Connection,
        key: int,
        log: Log,
        *,
        wait_timeout: float,
        monitor: SideConnection | None = None,
        poll_interval: float = 0.5,
        report_every: float = 5.0,
    ) -> None:
        self.conn = conn
        self.key = key
        self.log = log
        self.wait_timeout = wait_timeout
        self.monitor = monitor
        self.poll_interval = poll_interval
        self.report_every = report_every
        self.held = False

    def _try(self) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        return bool(row and row[0])

    def holders(self) -> list[dict[str, Any]]:
        classid, objid = _parts(self.key)
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        rows = cur.execute(_HOLDERS, {"classid": classid, "objid": objid}).fetchall()
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]

    @property
    def check_sql(self) -> str:
        return check_sql(self.key)

    def blockers_of(self, pid: int) -> list[dict[str, Any]]:
        """Sessions blocking backend `pid` (pid, query, age, state), asked on the side connection."""
        if self.monitor is None:
            return []
        rows = (
            self.monitor.get()
            .execute(
                "SELECT pid, left(query, 200), (now() - coalesce(xact_start, query_start))::text, state "
                "FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids(%s))",
                (pid,),
            )
            .fetchall()
        )
        return [{"pid": r[0], "query": r[1], "age": r[2], "state": r[3]} for r in rows]

    def __enter__(self) -> AdvisoryLock:
        started = time.monotonic()
        next_report = started
        while not self._try():
            waited = time.monotonic() - started
            if waited >= self.wait_timeout:
                holders = self.holders()
                raise LockTimeout(
                    f"advisory lock {self.key} still held by another runner after {self.wait_timeout:g}s"
                    + (f" (pid {holders[0]['pid']}, {holders[0]['application_name']})" if holders else ""),
                    key=self.key,
                    holders=holders,
                )
            if time.monotonic() >= next_report:
                self.log.info("lock.waiting", key=self.key, waited_s=round(waited, 1), holders=self.holders())
                next_report = time.monotonic() + self.report_every
            cancel.sleep(min(self.poll_interval, max(0.0, self.wait_timeout - waited)))
        self.held = True
        self.log.info("lock.acquired", key=self.key, waited_ms=round((time.monotonic() - started) * 1000))
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if not self.conn.closed and self.conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except psycopg.Error:
            pass  # the session is gone (or unusable), so is the lock once it is closed
        self.log.info("lock.released", key=self.key)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
