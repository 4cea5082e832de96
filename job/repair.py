"""Resolve `failed` / interrupted entries of non-transactional migrations.

Modes (per failed entry, under the advisory lock):
  resume        (default) drop what the failed statement left behind — the INVALID index of an
                interrupted CREATE INDEX / REINDEX CONCURRENTLY — then run the migration again from
                the failed statement
  restart       the same cleanup, then run the migration from its first statement
  mark-applied  record it as applied without running anything (you finished it by hand)
  forget        delete the entry, so the next `migrate` runs the file from the start

Fixing the history of applied migrations (each change logged and written to the audit table):
  --accept-checksum V  store the file's current checksum for applied version V (an intended edit: a comment
                       fixed, line endings changed); records who and when, like Flyway's `repair`
  --forget-missing V   drop the row of applied version V whose file is gone (a squashed or deleted file)
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from job import history
from job.apply import Runner
from job.config import Settings
from job.db import Connection
from job.errors import ValidationFailed
from job.plan import Applied
from job.report import Log
from job.source import Migration
from job.sqlscan import IndexTarget, index_target
from job.statements import statements_for

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
            history.delete(
                conn,
                runner.table,
                entry.version,
                event="forgotten",
                by=settings.applied_by,
                run_id=runner.run_id,
                detail={"reason": "repair --mode forget"},
            )
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
                history.delete(conn, runner.table, m.key, event=None)
                runner.apply_tx(m)
            else:
                runner.apply_nontx(m, start_at=start)
            log.info("repair.resumed", version=m.key)
        if mode != "forget":
            history.record_event(
                conn,
                runner.table,
                "repaired",
                version=entry.version,
                name=entry.name,
                detail={"mode": mode, "statements_done": entry.statements_done, "error": entry.error},
                by=settings.applied_by,
                run_id=runner.run_id,
            )
        done.append(entry.version)
    return done


# ---------------------------------------------------------------------------- fixing applied history


@dataclass(frozen=True)
class Fix:
    """One change to the history of an applied migration: accept its file's checksum, or forget its row."""

    action: str  # accept-checksum | forget-missing
    version: str
    name: str
    old_checksum: str | None
    new_checksum: str | None = None
    file: str | None = None

    def describe(self) -> str:
        if self.action == "accept-checksum":
            return (
                f"accept the current checksum of version {self.version} ({self.file}): "
                f"{(self.old_checksum or '')[:16]} -> {(self.new_checksum or '')[:16]}"
            )
        return f"forget version {self.version} ({self.name}): applied, its file is gone"


def _entry(wanted: str, entries: list[Applied], by_key: dict[str, Migration], option: str) -> Applied:
    """The history entry `wanted` names: its version, or its file's name/stem, or its name."""
    for a in entries:
        m = by_key.get(a.version)
        names = {a.version, a.name} | ({m.filename, m.path.stem} if m else set())
        if wanted in names:
            return a
    raise ValidationFailed(f"repair {option} {wanted}: no migration with that version or name is recorded as applied")


def plan_fixes(
    migrations: list[Migration], entries: list[Applied], *, accept: list[str], forget: list[str]
) -> list[Fix]:
    """What `--accept-checksum` / `--forget-missing` would change. Pure; raises ValidationFailed (exit 4,
    nothing changed) for a version that is not applied, a missing file to accept, or an existing file to forget."""
    by_key = {m.key: m for m in migrations}
    fixes: list[Fix] = []
    for wanted in accept:
        a = _entry(wanted, entries, by_key, "--accept-checksum")
        m = by_key.get(a.version)
        if m is None:
            raise ValidationFailed(
                f"repair --accept-checksum {wanted}: the file of version {a.version} ({a.name}) is gone; "
                "restore it, or drop the entry with `repair --forget-missing`",
                version=a.version,
            )
        if a.status != "applied":
            raise ValidationFailed(
                f"repair --accept-checksum {wanted}: version {a.version} is {a.status}, not applied; "
                "run `migrate-job repair` (see --mode) for failed entries",
                version=a.version,
            )
        if a.checksum != m.checksum:
            fixes.append(Fix("accept-checksum", a.version, a.name, a.checksum, m.checksum, str(m.path)))
    for wanted in forget:
        a = _entry(wanted, entries, by_key, "--forget-missing")
        m = by_key.get(a.version)
        if m is not None:
            raise ValidationFailed(
                f"repair --forget-missing {wanted}: {m.path} still exists; roll it back (`rollback --name`) "
                "or accept an edit (`repair --accept-checksum`) instead",
                version=a.version,
                file=str(m.path),
            )
        fixes.append(Fix("forget-missing", a.version, a.name, a.checksum))
    return fixes


def apply_fixes(
    conn: Connection, table: history.HistoryTable, fixes: list[Fix], *, by: str, run_id: str, log: Log
) -> list[str]:
    """Write each fix with its audit event (one transaction each) and log it."""
    for fix in fixes:
        if fix.action == "accept-checksum":
            assert fix.new_checksum is not None
            history.set_checksum(conn, table, fix.version, fix.new_checksum, by=by, run_id=run_id, old=fix.old_checksum)
            log.info(
                "repair.checksum_accepted",
                version=fix.version,
                file=fix.file,
                old_checksum=fix.old_checksum,
                checksum=fix.new_checksum,
                by=by,
            )
        else:
            with conn.transaction():
                history.delete(
                    conn,
                    table,
                    fix.version,
                    event="forgotten",
                    by=by,
                    run_id=run_id,
                    detail={"reason": "repair --forget-missing"},
                )
            log.info("repair.missing_forgotten", version=fix.version, name=fix.name, by=by)
    return [f.version for f in fixes]
