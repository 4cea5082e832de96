"""The session-level PostgreSQL advisory lock that makes exactly one runner migrate.

Held on its own dedicated connection: released on every exit path by unlocking and closing,
and by PostgreSQL itself when the process dies (the session ends).
"""

from __future__ import annotations

import hashlib
import select
import time
from types import TracebackType
from typing import Any

import psycopg

from job.db import Connection
from job.errors import DatabaseUnreachable, LockTimeout
from job.report import Log

_HOLDERS = """
SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start, a.state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %(classid)s AND l.objid::bigint = %(objid)s
"""


def lock_key(schema: str, table: str) -> int:
    """A stable signed 64-bit key derived from the history table's name."""
    digest = hashlib.sha256(f"migrate-job:{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    """`with AdvisoryLock(conn, key, ...):` polls pg_try_advisory_lock until acquired or timed out."""

    def __init__(
        self,
        conn: Connection,
        key: int,
        log: Log,
        *,
        wait_timeout: float,
        poll_interval: float = 0.5,
        report_every: float = 5.0,
    ) -> None:
        self.conn = conn
        self.key = key
        self.log = log
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.report_every = report_every
        self.held = False

    def _try(self) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        return bool(row and row[0])

    def holders(self) -> list[dict[str, Any]]:
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        params = {"classid": unsigned >> 32, "objid": unsigned & 0xFFFFFFFF}
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        rows = cur.execute(_HOLDERS, params).fetchall()
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]

    def blockers_of(self, pid: int) -> list[dict[str, Any]]:
        """Sessions blocking backend `pid` (pid, query, age, state), asked on the lock's own connection."""
        rows = self.conn.execute(
            "SELECT pid, left(query, 200), (now() - coalesce(xact_start, query_start))::text, state "
            "FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids(%s))",
            (pid,),
        ).fetchall()
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
            time.sleep(min(self.poll_interval, max(0.0, self.wait_timeout - waited)))
        self.held = True
        self.log.info("lock.acquired", key=self.key, waited_ms=round((time.monotonic() - started) * 1000))
        return self

    def check_alive(self) -> None:
        """Raise DatabaseUnreachable if the lock's session is gone, without a round trip.

        Nothing is sent on the lock connection while we hold the lock, so any readable data
        (a FATAL termination message or EOF) means the server ended the session.
        """
        if self.conn.closed:
            raise DatabaseUnreachable("lost the advisory lock: its connection is closed")
        try:
            readable, _, _ = select.select([self.conn.fileno()], [], [], 0)
        except (OSError, ValueError):
            readable = [True]
        if readable:
            raise DatabaseUnreachable(
                "lost the advisory lock: its database session was terminated; stopping before applying more",
                key=self.key,
            )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except psycopg.Error:
            pass  # the session is gone, so is the lock
        self.log.info("lock.released", key=self.key)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
