"""Resolve `failed` / interrupted entries of non-transactional migrations.

Modes (per failed entry, under the advisory lock):
  resume        (default) drop what the failed statement left behind — the INVALID index of an
                interrupted CREATE INDEX / REINDEX CONCURRENTLY — then run the migration again from
                the failed statement
  restart       the same cleanup, then run the migration from its first statement
  mark-applied  record it as applied without running anything (you finished it by hand)
  forget        delete the entry, so the next `migrate` runs the file from the start
"""

from __future__ import annotations

from psycopg import sql

from job import history
from job.apply import Runner, statements_for
from job.config import Settings
from job.db import Connection
from job.errors import ValidationFailed
from job.plan import Applied
from job.report import Log
from job.source import Migration
from job.sqlscan import IndexTarget, index_target

MODES = ("resume", "restart", "mark-applied", "forget")

_INVALID_BY_NAME = """
SELECT i.indexrelid::regclass::text FROM pg_index i
WHERE NOT i.indisvalid AND i.indexrelid = to_regclass(%s)
"""
_INVALID_ON_TABLE = """
SELECT i.indexrelid::regclass::text FROM pg_index i
WHERE NOT i.indisvalid AND i.indrelid = to_regclass(%s)
"""
_INVALID_CCNEW_OF_INDEX = """
SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class orig ON orig.oid = to_regclass(%s)
WHERE NOT i.indisvalid AND c.relnamespace = orig.relnamespace AND c.relname LIKE orig.relname || '\\_ccnew%%'
"""
_INVALID_CCNEW_ON_TABLE = """
SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE NOT i.indisvalid AND i.indrelid = to_regclass(%s) AND c.relname LIKE '%%\\_ccnew%%'
"""


def leftovers(conn: Connection, target: IndexTarget) -> list[str]:
    """INVALID indexes an interrupted CONCURRENTLY statement left behind."""
    if target.action == "create":
        if target.index:
            query, arg = _INVALID_BY_NAME, target.index
            if target.table and "." in target.table and "." not in target.index:
                arg = f"{target.table.rsplit('.', 1)[0]}.{target.index}"
        else:
            query, arg = _INVALID_ON_TABLE, target.table or ""
    elif target.index:
        query, arg = _INVALID_CCNEW_OF_INDEX, target.index
    else:
        query, arg = _INVALID_CCNEW_ON_TABLE, target.table or ""
    return [str(r[0]) for r in conn.execute(query, (arg,)).fetchall()]


def clean_up(conn: Connection, m: Migration, index: int, log: Log) -> list[str]:
    """Drop the INVALID index left by statement `index` of `m`, if it is a CONCURRENTLY build."""
    stmts = statements_for(m)
    if index >= len(stmts):
        return []
    target = index_target(stmts[index].text)
    if target is None:
        return []
    dropped = leftovers(conn, target)
    for name in dropped:
        # regclass text is already quoted where needed.
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(name)))
        log.info("repair.dropped_invalid_index", version=m.key, index=name, statement=index + 1)
    return dropped


def repair(
    conn: Connection,
    runner: Runner,
    settings: Settings,
    log: Log,
    migrations: list[Migration],
    entries: list[Applied],
    *,
    mode: str,
    versions: list[str] | None = None,
) -> list[str]:
    """Repair every failed/running entry (or only `versions`). Returns the versions repaired."""
    by_key = {m.key: m for m in migrations}
    broken = [a for a in entries if a.status in ("failed", "running")]
    if versions:
        unknown = [v for v in versions if v not in {a.version for a in broken}]
        if unknown:
            raise ValidationFailed(f"repair: version(s) {', '.join(unknown)} have no failed entry to repair")
        broken = [a for a in broken if a.version in versions]
    if not broken:
        log.info("repair.nothing_to_do")
        return []
    done: list[str] = []
    for entry in broken:
        m = by_key.get(entry.version)
        if mode == "forget":
            history.delete(conn, runner.table, entry.version)
            log.info("repair.forgotten", version=entry.version)
        elif m is None:
            raise ValidationFailed(
                f"repair: the file of failed version {entry.version} ({entry.name}) is gone; "
                "restore it, or run `migrate-job repair --forget` to drop the entry",
                version=entry.version,
            )
        elif mode == "mark-applied":
            total = len(statements_for(m))
            history.record_started(conn, runner.table, {**runner.row(m, "non_transactional"), "statements_done": total})
            history.record_finished(conn, runner.table, m.key, total, entry.execution_ms or 0)
            log.info("repair.marked_applied", version=m.key)
        else:
            start = 0 if mode == "restart" else (entry.statements_done or 0)
            clean_up(conn, m, start, log)
            if mode == "restart":
                for index in range(0, entry.statements_done or 0):
                    clean_up(conn, m, index, log)
            log.info(
                "repair.resuming",
                version=m.key,
                from_statement=start + 1,
                checksum_changed=entry.checksum != m.checksum,
            )
            if m.transactional:
                history.delete(conn, runner.table, m.key)
                runner.apply_tx(m)
            else:
                runner.apply_nontx(m, start_at=start)
            log.info("repair.resumed", version=m.key)
        done.append(entry.version)
    return done
