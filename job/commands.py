"""One function per command. Each reads like the pipeline: files → connect → lock → history →
plan → apply → report. They raise JobError subclasses; `job.cli` maps those to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

from job import cancel, db, guard, history, source
from job.callbacks import Callbacks
from job.config import Settings
from job.errors import CallbackFailed, ConfigError, JobError, MigrationFailed, SourceError, ValidationFailed
from job.history import HistoryTable
from job.integrity import Problem
from job.lock import AdvisoryLock, lock_key
from job.lock import check_sql as lock_check_sql
from job.plan import Plan, StatusRow, build_plan, rollback_plan
from job.report import Log, audit_json, audit_table, redact_text, secrets_known, status_json, status_table
from job.source import Migration
from job.statements import section_transactional, statements_for, transaction_modes

if TYPE_CHECKING:
    from job.apply import Outcome, Runner


@dataclass
class RunState:
    """What the run did so far: read by the CLI for `run.finished` / `run.interrupted`."""

    applied: list[Outcome] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)  # to apply (known once the plan is built)
    rolled_back: list[Outcome] = field(default_factory=list)
    to_roll_back: list[Migration] = field(default_factory=list)
    backup: Any = None
    version_before: str | None = None  # the highest applied version when the run started (fleet report)


def highest_version(rows: list[Any]) -> str | None:
    """The highest applied (versioned) entry of history rows, as text."""
    return highest_of(None, [a.version for a in rows if a.status == "applied"])


def highest_of(before: str | None, applied: list[str]) -> str | None:
    """The highest version among `before` and the versions just applied (repeatables ignored)."""
    from job.source import Version

    best: tuple[Version, str] | None = None
    for text in [*([before] if before else []), *applied]:
        try:
            candidate = (Version.parse(text), text)
        except ValueError:
            continue
        if best is None or candidate[0] > best[0]:
            best = candidate
    return best[1] if best else before


def table_of(settings: Settings) -> HistoryTable:
    return HistoryTable(settings.history_schema, settings.history_table)


def load_files(settings: Settings, *, offline: bool = False) -> list[Migration]:
    return source.load(
        settings.dir,
        layout=settings.format,
        pattern=settings.filename_pattern,
        order=settings.order,
        placeholders=placeholders_of(settings, offline=offline),
    )


def placeholders_of(settings: Settings, *, offline: bool = False) -> source.Placeholders:
    """The run's `${name}` values: the defined ones, and built-ins for the target (resolved only if used).

    Built-ins: schema (the tenant schema, else public), database and user (of the connection), table (the
    history table). Offline (`validate --offline`, or no database configured) database and user stand in as
    `migrate_job_offline_database` / `_user`, so the files still parse and nothing is looked up.
    """

    def builtin(kind: str) -> str | None:
        if kind == "schema":
            return settings.tenant_schema or "public"
        if kind == "table":
            return settings.history_table
        if offline or not settings.has_connection:
            return f"migrate_job_offline_{kind}"
        params = db.connection_params(settings)  # a secret's host/database/user are known once it is read
        found = params.get("dbname") or params.get("user") if kind == "database" else params.get("user")
        return str(found) if found else None  # libpq's default database is the user's name

    return source.Placeholders(settings.placeholders, builtin, settings.placeholder_replacement)


def check_pending(plan: Plan, *, single_transaction: bool = False) -> None:
    """Parse every pending migration before anything runs: bad SQL, or a file `create` made that is still
    empty, fails the run with exit 4."""
    for m in plan.pending:
        statements_for(m)
        refuse_template(m)
        if single_transaction and not m.transactional:
            raise SourceError(
                f"{m.path}: --single-transaction cannot include a migration that must run outside a "
                f"transaction ({m.non_transactional_reason}); apply without --single-transaction",
                file=str(m.path),
            )
        if single_transaction and (modes := transaction_modes(m)):
            raise SourceError(
                f"{m.path}: its BEGIN {', '.join(modes)} cannot be honoured with --single-transaction (every "
                "migration shares one transaction); apply without --single-transaction",
                file=str(m.path),
            )


def non_transactional(plan: Plan) -> dict[str, str]:
    """Why each pending migration that runs outside a transaction does so, by version (for the plan log)."""
    return {m.key: m.non_transactional_reason or "" for m in plan.pending if not m.transactional}


def upgrade_checksums(conn: db.Connection, table: HistoryTable, plan: Plan, log: Log) -> None:
    """Rewrite old-style (raw-byte) checksums of unchanged files as normalised ones; after validation passed."""
    if plan.checksum_upgrades:
        history.update_checksums(conn, table, list(plan.checksum_upgrades))
        log.info("history.checksums_upgraded", versions=[v for v, _ in plan.checksum_upgrades])


def refuse_template(m: Migration) -> None:
    """A migration `create` wrote that still has no SQL is refused (exit 4): a forgotten file never lands."""
    from job.scaffold import template_problem

    problem = template_problem(m)
    if problem is not None:
        raise SourceError(problem, file=str(m.path))


def _raise_problems(plan: Plan) -> None:
    if plan.problems:
        first = plan.problems[0].message
        more = f" (and {len(plan.problems) - 1} more problem(s))" if len(plan.problems) > 1 else ""
        raise ValidationFailed(
            f"validation failed: {first}{more}",
            problems=[p.message for p in plan.problems],
            count=len(plan.problems),
            file=problem_file(plan),
        )


def problem_file(plan: Plan) -> str | None:
    """The file of the plan's first problem (an edited, failed or out-of-order migration), for annotations."""
    if not plan.problems:
        return None
    version = plan.problems[0].version
    return next((r.file for r in plan.rows if r.version == version and r.file), None)


@contextmanager
def locked_session(settings: Settings, log: Log) -> Iterator[tuple[db.Connection, AdvisoryLock]]:
    """One session that holds the advisory lock and runs the migrations; released/closed on every exit path.

    The lock lives on the migrating session itself: whatever that session still executes (an orphaned
    statement of a killed runner included) happens under the lock, so no second runner starts beside it.
    """
    db.refuse_pooler(settings)
    conn = db.connect(settings, log, purpose="migrate")
    monitor = db.SideConnection(settings)
    try:
        db.refuse_read_only(conn, settings)  # exit 9 before the lock: a replica cannot be migrated
        lock = AdvisoryLock(
            conn,
            lock_key(settings.history_schema, settings.history_table),
            log,
            wait_timeout=settings.lock_wait_timeout,
            monitor=monitor,
        )
        with lock:
            history.preflight(conn, table_of(settings), write=True)  # shape and GRANTs (exit 2)
            yield conn, lock
    finally:
        monitor.close()
        conn.close()


def migrate(settings: Settings, log: Log, state: RunState, run_id: str) -> RunState:
    """Apply pending migrations under the advisory lock. Nothing is written before validation passes."""

    migrations = load_files(settings)
    check_sum_file(settings, migrations)  # production: the files must be the ones CI checked (before connecting)
    hooks = load_callbacks(settings, log)
    if settings.dry_run:
        return dry_run(settings, log, migrations, sys.stdout, state, run_id=run_id)
    table = table_of(settings)
    with locked_session(settings, log) as (conn, lock):
        applied, setup = prepare_history(conn, settings, log, migrations, run_id)
        state.version_before = highest_version(applied)
        plan = with_taken_back(
            partial(
                build_plan, migrations, applied, target=settings.target, allow_out_of_order=settings.allow_out_of_order
            ),
            partial(history.taken_back, conn, table),
            log,
        )
        state.pending = list(plan.pending)  # also when validation fails: run.finished reports the real count
        if setup is None and not applied:
            refuse_unrecorded_schema(plan, settings, hooks, table, partial(unrecorded_tables, conn, table))
        log.info(
            "plan",
            pending=[m.key for m in plan.pending],
            applied=len(applied),
            problems=len(plan.problems),
            non_transactional=non_transactional(plan),  # parses the pending files: a syntax error raises here
        )
        _raise_problems(plan)
        check_pending(plan, single_transaction=settings.single_transaction)
        lint_gate(settings, migrations, plan.pending)
        if setup is None and (not settings.is_production or settings.confirm_production):
            # Our own rows (adopted and schema-file rows are written with new checksums). Old ones keep
            # validating, so an unconfirmed production run changes nothing.
            upgrade_checksums(conn, table, plan, log)
        if settings.schema_file is not None and not settings.is_production:
            from job import snapshot

            snapshot.check_schema_file(settings.schema_file, settings)
            snapshot.check_pg_dump(settings, conn)  # fails (exit 2) before anything changes
        every_run = bool(hooks.of("beforeMigrate") or hooks.of("afterMigrate"))
        if not plan.pending and setup is None and not every_run:
            write_schema_snapshot(settings, log, conn, table)  # a missing or stale snapshot gets written
            return state
        if plan.pending or every_run:
            what = "apply migrations" if plan.pending else "run the beforeMigrate/afterMigrate callbacks"
            guard.confirm(settings, what, database=conn.info.dbname, interactive=settings.interactive)
        if plan.pending:
            back_up(settings, log, conn, state, plan.pending[-1].key, run_id)
        history.ensure(conn, table)  # the history and audit tables (an older version may lack the audit one)
        if setup is not None:
            applied = setup()
        runner = make_runner(conn, lock, settings, log, run_id, applied, hooks)
        runner.applied = state.applied
        try:
            runner.run_callbacks("beforeMigrate")
            if settings.single_transaction:
                runner.apply_single_tx(plan.pending)
            else:
                runner.apply_all(plan.pending)
            runner.run_callbacks("afterMigrate")
        except (MigrationFailed, CallbackFailed, SourceError) as exc:
            after_error(runner, log, exc)
            raise
        write_schema_snapshot(settings, log, conn, table)
    return state


def load_callbacks(settings: Settings, log: Log) -> Callbacks:
    """The migrations folder's callbacks (job.callbacks); Flyway events migrate-job does not run are named."""
    from job import callbacks

    hooks = callbacks.load(settings.dir, placeholders_of(settings))
    if hooks.ignored:
        log.warning(
            "callback.ignored",
            files=[str(p) for p in hooks.ignored],
            reason=f"migrate-job runs only the {', '.join(callbacks.EVENTS)} callbacks",
        )
    return hooks


def after_error(runner: Runner, log: Log, error: Exception) -> None:
    """The afterMigrateError callbacks after a failed run; their own failure is logged, never replaces `error`."""
    if not runner.callbacks or not runner.callbacks.of("afterMigrateError"):
        return
    try:
        runner.run_callbacks("afterMigrateError")
    except (JobError, psycopg.Error) as exc:
        log.error("callback.failed", callback="afterMigrateError", error=str(exc), after=type(error).__name__)


def back_up(settings: Settings, log: Log, conn: db.Connection, state: RunState, version: str, run_id: str) -> None:
    """The backup policy of every command that changes the database (after the guard, before the change):
    MIGRATE_BACKUP (auto = required on production). A failure raises (exit 6; exit 2 without a target)."""
    if settings.backup == "none" or state.backup is not None:
        return
    from job import backup

    state.backup = backup.run(settings, log, conn, version, run_id)


def _version_after_rollback(applied: list[Any], chosen: list[Migration]) -> str:
    """The highest version left applied once `chosen` are rolled back ("0" when none): tags the backup."""
    gone = {m.key for m in chosen}
    left = [a.parsed_version for a in applied if a.status == "applied" and a.version not in gone and a.parsed_version]
    return str(max(left)) if left else "0"


def write_schema_snapshot(settings: Settings, log: Log, conn: db.Connection, table: HistoryTable) -> None:
    """After a successful migrate (not on production): the normalised schema, written only if it changed."""
    if settings.schema_file is None:
        return
    if settings.is_production:
        log.info("schema.snapshot_skipped", reason="production", file=str(settings.schema_file))
        return
    from job import snapshot

    text = snapshot.snapshot(settings, conn, table)
    changed = snapshot.write_snapshot(settings.schema_file, text)
    log.info(
        "schema.snapshot_written" if changed else "schema.snapshot_unchanged",
        file=str(settings.schema_file),
        objects=len(snapshot.objects(text)),
    )


def schema_diff(settings: Settings, log: Log, out: TextIO, fmt: str = "text", details: bool = False) -> Any:
    """Compare the live schema with the snapshot: exit 4 on drift (someone changed the database by hand)."""
    import json

    from job import snapshot

    path = settings.schema_file
    if path is None:
        raise ConfigError(
            "diff needs the schema snapshot: set MIGRATE_SCHEMA_FILE or pass --file", setting="MIGRATE_SCHEMA_FILE"
        )
    try:
        expected = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: schema snapshot not found; `migrate` writes it on a non-production database "
            "when MIGRATE_SCHEMA_FILE is set",
            setting="MIGRATE_SCHEMA_FILE",
        ) from None
    conn = db.connect(settings, log, purpose="diff")
    try:
        actual = snapshot.snapshot(settings, conn, table_of(settings))
    finally:
        conn.close()
    drift = snapshot.diff(expected, actual)
    if fmt == "json":
        out.write(json.dumps({"file": str(path), "drift": bool(drift), **drift.as_dict()}) + "\n")
    else:
        out.write("".join(line + "\n" for line in drift.lines(details=details)))
        summary = f"{drift.count} object(s) differ from {path}" if drift else f"no drift: the schema matches {path}"
        out.write(summary + "\n")
    if drift:
        raise ValidationFailed(
            f"schema drift: {drift.count} object(s) differ from {path}",
            problems=drift.lines(),
            count=drift.count,
            file=str(path),
        )
    return drift


def prepare_history(
    conn: db.Connection,
    settings: Settings,
    log: Log,
    migrations: list[Migration],
    run_id: str,
    *,
    schema_file: bool = True,
) -> tuple[list[Any], Callable[[], list[Any]] | None]:
    """Our history, read-only. On a first run, also what adopting another tool's table or loading the schema
    file (empty database; only with `schema_file`) would record, with the action that writes it (run it only
    after validation, after `history.ensure`).

    Another tool's table is adopted once: only while migrate-job has recorded nothing in this database (no
    history row, no audit event). After that it is history, never read again (reset/refresh/rollback do not
    bring it back). Every command that writes history goes through here, so the first command run on a
    database — migrate, rollback, reset, refresh, baseline, repair — adopts first.
    """

    table = table_of(settings)
    applied = history.load(conn, table)
    if applied:
        return applied, None
    from job import baseline

    if settings.adopt and not history.ever_written(conn, table):
        setup = _adoption(conn, settings, log, migrations, run_id)
        if setup is not None:
            return setup
    path = baseline.find_schema_file(settings.dir, settings.schema_load_file) if schema_file else None
    if path is not None and settings.tenant_schema:
        log.info("schema.ignored", file=str(path), reason="a tenant schema: migrations build it")
    elif path is not None:
        if baseline.database_is_empty(conn, table):
            covered = baseline.covered_rows(path, migrations, settings.baseline_version)

            def load_schema() -> list[Any]:
                rows = baseline.load_schema(
                    conn, table, path, migrations, settings.baseline_version, run_id, by=settings.applied_by
                )
                log.info("schema.loaded", file=str(path), baselined=[a.version for a in rows])
                return history.load(conn, table)

            return covered, load_schema
        log.info("schema.ignored", file=str(path), reason="database is not empty")
    return applied, None


def _adoption(
    conn: db.Connection, settings: Settings, log: Log, migrations: list[Migration], run_id: str
) -> tuple[list[Any], Callable[[], list[Any]]] | None:
    """The rows adopting another tool's tracking table would record, and the action writing them (with an
    `adopted` audit event naming the table, in the same transaction); None when there is no such table."""
    from job import adopt

    table = table_of(settings)
    tenant = settings.tenant_schema
    legacy = adopt.find_one(
        conn,
        [tenant] if tenant else adopt.search_schemas(conn, settings.history_schema),
        (table.schema, table.table),
        table=settings.adopt_table,
        column=settings.adopt_column,
        strict=tenant is not None,
    )
    if legacy is None:
        return None
    rows, unmatched = adopt.rows_to_adopt(conn, legacy, migrations)
    files = {m.key: m for m in migrations}
    modified = [a.version for a in rows if a.version in files and a.checksum != files[a.version].checksum]
    detail = {
        "tool": legacy.label,
        "table": legacy.qualified,
        "columns": list(legacy.columns),
        "column": legacy.column,
        "count": len(rows),
        "versions": [a.version for a in rows],
        "unmatched": unmatched,
        "modified": modified,
    }

    def adopt_rows() -> list[Any]:
        event = history.event_sql(table, "adopted", detail=detail, by=settings.applied_by, run_id=run_id)
        history.insert_rows(conn, table, rows, run_id, events=[event])
        log.info(
            "history.adopted",
            tool=legacy.label,
            table=legacy.qualified,
            count=len(rows),
            versions=[a.version for a in rows],
            unmatched=unmatched,
            modified=modified,
        )
        return history.load(conn, table)

    return rows, adopt_rows


def rollback(
    settings: Settings,
    log: Log,
    state: RunState,
    run_id: str,
    *,
    steps: int | None = None,
    to: str | None = None,
    name: str | None = None,
    everything: bool = False,
    action: str = "rollback",
) -> RunState:
    """Roll back (default: the last batch). Each down runs in a transaction with the removal of its row."""
    migrations = load_files(settings)
    table = table_of(settings)
    if settings.dry_run:
        current = read_history(settings, log, migrations, schema_file=False)
        chosen = rollback_plan(migrations, current, steps=steps, to=to, name=name, everything=everything)
        warn_edited(chosen, current, log)
        _print_rollback(chosen, sys.stdout)
        if everything:
            for a in current:
                if a.version.startswith("R__"):
                    sys.stdout.write(f"-- forget repeatable {a.version} (re-applied by the next migrate)\n")
        state.to_roll_back = chosen
        return state
    with locked_session(settings, log) as (conn, lock):
        applied, setup = prepare_history(conn, settings, log, migrations, run_id, schema_file=False)
        chosen = rollback_plan(migrations, applied, steps=steps, to=to, name=name, everything=everything)
        for m in chosen:
            statements_for(m, m.down, transactional=section_transactional(m, m.down) if m.down else True)
        state.to_roll_back = chosen
        log.info("rollback.plan", versions=[m.key for m in chosen])
        warn_edited(chosen, applied, log)
        # Repeatable (R__) migrations have no down: reset forgets their rows so the next migrate re-applies them.
        repeatables = [a.version for a in applied if a.version.startswith("R__")] if everything else []
        if not chosen and not repeatables:
            return state
        guard.confirm(settings, action, database=conn.info.dbname, interactive=settings.interactive)
        if chosen:
            back_up(settings, log, conn, state, _version_after_rollback(applied, chosen), run_id)
        history.ensure(conn, table)
        if setup is not None:
            applied = setup()  # the first command on this database: adopt first, then roll back
        runner = make_runner(conn, lock, settings, log, run_id, applied)
        runner.applied = state.rolled_back
        runner.rollback_all(chosen)
        for version in repeatables:
            history.delete(
                conn,
                table,
                version,
                event="forgotten",
                by=settings.applied_by,
                run_id=run_id,
                detail={"reason": action},
            )
        if repeatables:
            log.info("rollback.repeatables_forgotten", versions=repeatables)
    return state


def _print_rollback(chosen: list[Migration], out: TextIO) -> None:
    if not chosen:
        out.write("-- nothing to roll back\n")
    for m in chosen:
        assert m.down is not None
        out.write(f"-- roll back {m.key} {m.name} ({m.down.path})\n")
        if not m.down.statements:
            out.write("-- (empty down: nothing to run; only the history row is removed)\n")
        out.write("".join(s.terminated + "\n" for s in m.down.statements) + "\n")


def refresh(settings: Settings, log: Log, state: RunState, run_id: str) -> RunState:
    """Roll back everything, then migrate again."""
    check_sum_file(settings, load_files(settings))  # before the reset, not only before the re-apply
    rollback(settings, log, state, run_id, everything=True, action="refresh (reset and re-apply)")
    if settings.dry_run:
        return state
    # Confirmed and backed up (per MIGRATE_BACKUP) before the reset: the re-apply needs neither again.
    again = {"confirm_production": True, **({"backup": "none"} if state.backup is not None else {})}
    return migrate(settings.model_copy(update=again), log, state, run_id)


def baseline_cmd(
    settings: Settings, log: Log, run_id: str, version: str, out: TextIO, state: RunState | None = None
) -> list[str]:
    """Record every migration <= version as applied without running it."""
    from job import baseline

    try:
        upto = source.parse_version(version, settings.order)
    except ValueError:
        raise ConfigError(f"baseline --version {version!r} is not a version number") from None
    state = state if state is not None else RunState()
    migrations = load_files(settings)
    table = table_of(settings)
    if settings.dry_run:
        current = read_history(settings, log, migrations, schema_file=False)
        rows = baseline.baseline_rows(migrations, upto, current, "baseline")
        out.write("".join(f"-- would record {a.version} {a.name} as applied (baseline)\n" for a in rows))
        return [a.version for a in rows]
    with locked_session(settings, log) as (conn, _lock):
        existing, setup = prepare_history(conn, settings, log, migrations, run_id, schema_file=False)
        rows = baseline.baseline_rows(migrations, upto, existing, "baseline")
        if rows:
            guard.confirm(settings, "baseline", database=conn.info.dbname, interactive=settings.interactive)
            back_up(settings, log, conn, state, str(upto), run_id)
            history.ensure(conn, table)
            if setup is not None:
                setup()
            event = history.event_sql(
                table,
                "baselined",
                version=str(upto),
                detail={"versions": [a.version for a in rows]},
                by=settings.applied_by,
                run_id=run_id,
            )
            history.insert_rows(conn, table, rows, run_id, events=[event])
        log.info("history.baselined", version=str(upto), recorded=[a.version for a in rows])
        return [a.version for a in rows]


def read_history(
    settings: Settings, log: Log, migrations: list[Migration] | None = None, *, schema_file: bool = True
) -> list[Any]:
    """History rows without taking the lock or writing anything (status, validate, dry run).

    With `migrations`, a first run shows what `migrate` would record: rows adopted from another tool's
    table, or (with `schema_file`) the migrations a schema file covers on an empty database.
    """
    conn = db.connect(settings, log, purpose="status")
    try:
        if migrations is None:
            return history.load(conn, table_of(settings))
        rows, _ = prepare_history(conn, settings, log, migrations, run_id="", schema_file=schema_file)
        return rows
    finally:
        conn.close()


def unrecorded_tables(conn: db.Connection, table: history.HistoryTable) -> list[str]:
    """The application's tables in the history schema when migrate-job has recorded nothing at all, else []."""
    found = history.user_relations(conn, table, history_schema_only=True, limit=3)
    return [] if not found or history.ever_written(conn, table) else found


def refuse_unrecorded_schema(
    plan: Plan, settings: Settings, hooks: Callbacks, table: history.HistoryTable, found: Callable[[], list[str]]
) -> None:
    """A first run (no history, no legacy table adopted, no schema file loaded) with something to apply, on a
    history schema that has tables (`found`, asked only then): the database was built some other way, and
    applying every migration would run them again. Refused, as Flyway refuses a non-empty schema without its
    history table (exit 4), unless MIGRATE_ALLOW_NON_EMPTY; not with callbacks (they create objects of their own)."""
    if not plan.pending or settings.allow_non_empty or hooks.by_event:
        return
    tables = found()
    if not tables:
        return
    raise ValidationFailed(
        f"schema {table.schema} already has tables ({', '.join(tables)}) but no migration history: if migrations "
        "built them, record that with `migrate-job baseline --version V` (V: the last one applied); to apply "
        "every migration anyway, set MIGRATE_ALLOW_NON_EMPTY=true (--allow-non-empty); nothing was applied",
        setting="MIGRATE_ALLOW_NON_EMPTY",
        tables=tables,
    )


def warn_edited(chosen: list[Migration], applied: list[Any], log: Log) -> None:
    """A rollback runs even when a file was edited after it was applied (it must work in an emergency), but says
    so: the down may no longer undo what the up did then."""
    recorded = {a.version: a.checksum for a in applied}
    baselined = {a.version for a in applied if a.source == "baseline"}  # not compared by the plan either
    for m in chosen:
        stored = recorded.get(m.key)
        if stored and not m.checksum_matches(stored) and m.key not in baselined:
            log.warning(
                "rollback.edited",
                version=m.key,
                file=str(m.path),
                message="edited after it was applied: its down may not undo what was applied; rolling back anyway",
            )


def with_taken_back(build: Callable[..., Plan], taken_back: Callable[[list[str]], frozenset[str]], log: Log) -> Plan:
    """`build()`, or `build(taken_back=…)` when out-of-order pending versions are ones `rollback` took back
    (`rollback --name` of a migration with later ones applied): re-applying those is what the user asked for,
    not out of order. The audit table is only read when such a problem exists."""
    plan = build()
    late = [p.version for p in plan.problems if p.kind == "out_of_order"]
    back = taken_back(late) if late else frozenset()
    if not back:
        return plan
    log.info("plan.reapplying", versions=sorted(back), reason="rolled back while later migrations stayed applied")
    return build(taken_back=back)


def read_taken_back(settings: Settings, log: Log, versions: list[str]) -> frozenset[str]:
    """history.taken_back on a read-only connection of its own (status, validate, dry run)."""
    conn = db.connect(settings, log, purpose="status")
    try:
        return history.taken_back(conn, table_of(settings), versions)
    finally:
        conn.close()


def read_log(settings: Settings, log: Log) -> list[history.Event]:
    """The audit trail (`<history table>_log`), read-only; [] before migrate-job wrote anything."""
    conn = db.connect(settings, log, purpose="status")
    try:
        return history.load_log(conn, table_of(settings))
    finally:
        conn.close()


@dataclass(frozen=True)
class SchemaLoad:
    """`migrate` would first load this schema file (empty database), recording these versions as applied."""

    file: Path
    versions: list[str]


def planned_history(
    settings: Settings,
    log: Log,
    migrations: list[Migration],
    *,
    refuse_unrecorded: Callable[[Callable[[], list[str]]], None] | None = None,
) -> tuple[list[Any], SchemaLoad | None]:
    """The history `migrate` would plan with (read-only, no lock), and the schema file it would load first.
    `refuse_unrecorded(found)`: on a first run, what migrate refuses (see refuse_unrecorded_schema)."""
    from job import baseline

    conn = db.connect(settings, log, purpose="status")
    try:
        rows, setup = prepare_history(conn, settings, log, migrations, run_id="")
        if setup is None and not rows and refuse_unrecorded is not None:
            refuse_unrecorded(partial(unrecorded_tables, conn, table_of(settings)))
        if setup is None:
            return rows, None
        # A first-run action on an empty database is the schema file (adopting needs a legacy table).
        path = baseline.find_schema_file(settings.dir, settings.schema_load_file)
        if path is None or not baseline.database_is_empty(conn, table_of(settings)):
            return rows, None
        return rows, SchemaLoad(path, [a.version for a in rows])
    finally:
        conn.close()


def _schema_rows(plan: Plan, load: SchemaLoad | None) -> tuple[StatusRow, ...]:
    """Status rows with the migrations a not-yet-loaded schema file covers shown as pending via the schema file."""
    if load is None:
        return plan.rows
    covered = set(load.versions)
    return tuple(
        StatusRow(r.version, r.name, "pending", file=r.file, via="schema file") if r.version in covered else r
        for r in plan.rows
    )


def dry_run(
    settings: Settings,
    log: Log,
    migrations: list[Migration],
    out: TextIO,
    state: RunState | None = None,
    *,
    run_id: str = "",
) -> RunState:
    """Print the plan and the exact SQL that would run (the history rows with this dry run's id); change nothing."""
    from job.apply import preview

    state = state if state is not None else RunState()
    hooks = load_callbacks(settings, log)

    def refuse_unrecorded(found: Callable[[], list[str]]) -> None:  # the first run's plan: nothing recorded
        first = build_plan(migrations, [], target=settings.target)
        refuse_unrecorded_schema(first, settings, hooks, table_of(settings), found)

    applied, load = planned_history(settings, log, migrations, refuse_unrecorded=refuse_unrecorded)
    plan = with_taken_back(
        partial(
            build_plan, migrations, applied, target=settings.target, allow_out_of_order=settings.allow_out_of_order
        ),
        partial(read_taken_back, settings, log),
        log,
    )
    state.pending = list(plan.pending)
    for p in plan.problems:
        out.write(f"problem: {p.message}\n")
    _raise_problems(plan)
    check_pending(plan)
    if load is not None:
        covers = ", ".join(load.versions) or "no migration (no `-- migrate-job: baseline V` header)"
        out.write(
            f"-- load the schema file {load.file} (empty database), in one transaction with the history rows of "
            f"the migrations it covers: {covers}\n\n"
        )
        log.info("schema.would_load", file=str(load.file), baselined=load.versions, dry_run=True)
    if not plan.pending:
        out.write("-- nothing to apply: the database is up to date\n")
    for event in ("beforeMigrate", "beforeEachMigrate", "afterEachMigrate", "afterMigrate", "afterMigrateError"):
        for cb in hooks.of(event):
            out.write(f"-- callback {event}: {cb.path}\n")
    check = lock_check_sql(lock_key(settings.history_schema, settings.history_table))
    for m in plan.pending:
        mode = "transactional" if m.transactional else f"non-transactional: {m.non_transactional_reason}"
        out.write(f"-- {m.key} {m.name} ({m.path}) {mode}\n")
        text = preview(m, settings, table_of(settings), check, batch=history.next_batch(applied), run_id=run_id)
        out.write(redact_text(text, secrets_known()) + "\n")
    log.info("plan", pending=[m.key for m in plan.pending], dry_run=True)
    return state


def status(settings: Settings, log: Log, out: TextIO, fmt: str = "table", show_all: bool = False) -> Plan:
    """Every migration with its state; with `show_all` also the audit trail (adoption, rollbacks, repairs).
    On an empty database with a schema file, the migrations it covers are `pending (schema file)`: nothing is
    applied before `migrate` loads it."""
    migrations = load_files(settings)
    applied, load = planned_history(settings, log, migrations)
    plan = build_plan(migrations, applied, allow_out_of_order=True)
    rows = _schema_rows(plan, load)
    events = read_log(settings, log) if show_all else []
    counts: dict[str, int] = {}
    shown: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
        label = f"{r.state} ({r.via})" if r.via else r.state
        shown[label] = shown.get(label, 0) + 1
    if fmt == "json":
        summary: dict[str, Any] = {"summary": counts, "problems": [p.message for p in plan.problems]}
        if show_all:
            summary["log"] = audit_json(events)
        if load is not None:
            summary["schema_file"] = {"file": str(load.file), "versions": load.versions}
        out.write(status_json(rows, summary) + "\n")
    else:
        out.write(status_table(rows) + "\n")
        out.write(", ".join(f"{n} {state}" for state, n in sorted(shown.items())) or "no migrations")
        out.write("\n")
        if show_all:
            out.write(f"\nhistory log ({table_of(settings).log_qualified}):\n{audit_table(events)}\n")
        if load is not None:
            out.write(f"on the first migrate the schema file {load.file} is loaded (empty database)\n")
    return plan


def validate(settings: Settings, log: Log, out: TextIO) -> Plan:
    """Check files and history; raise ValidationFailed listing every problem."""
    migrations = load_files(settings)
    load_callbacks(settings, log)  # a callback that does not parse is exit 4 too
    applied = read_history(settings, log, migrations)
    plan = with_taken_back(
        partial(build_plan, migrations, applied, allow_out_of_order=settings.allow_out_of_order),
        partial(read_taken_back, settings, log),
        log,
    )
    problems = [p.message for p in plan.problems]
    first_file = problem_file(plan)
    for m in plan.pending:
        try:
            statements_for(m)
            refuse_template(m)
        except SourceError as exc:
            problems.append(exc.message)
            first_file = first_file or exc.fields.get("file")
    for p in problems:
        out.write(f"problem: {p}\n")
    if problems:
        raise ValidationFailed(
            f"validation failed: {len(problems)} problem(s): {problems[0]}",
            problems=problems,
            count=len(problems),
            file=first_file,
        )
    out.write(f"ok: {len(migrations)} migration file(s), {len(plan.pending)} pending, no problems\n")
    return plan


def create(
    settings: Settings,
    name: str,
    out: TextIO,
    *,
    now: datetime | None = None,
    style: str | None = None,
    version_style: str | None = None,
) -> list[Path]:
    """Write a new migration following the folder's convention (see job.scaffold); `--dry-run` only prints it."""
    from job import scaffold

    if settings.filename_pattern is not None:
        raise ConfigError(
            "create: files here are named by MIGRATE_FILENAME_PATTERN, from which migrate-job cannot derive a "
            "new name; create the file by hand",
            setting="MIGRATE_FILENAME_PATTERN",
        )
    directory = settings.dir
    migrations = load_files(settings, offline=True) if directory.is_dir() else []
    families = {m.layout for m in migrations if not m.repeatable} or (
        {settings.format} if settings.format != "auto" else set()
    )
    at = now or datetime.now(UTC)
    try:
        conv = scaffold.with_options(
            scaffold.convention(migrations, settings.format), families, style=style, version_style=version_style
        )
        files = scaffold.new_files(directory, name, conv, scaffold.next_version(migrations, conv, at), at)
    except scaffold.ScaffoldError as exc:
        raise ConfigError(str(exc)) from None
    for f in files:
        if f.path.exists():
            raise ConfigError(f"create: {f.path} already exists")
    if settings.dry_run:
        out.write("".join(f"-- would write {f.path}\n{f.text}\n" for f in files))
        return [f.path for f in files]
    directory.mkdir(parents=True, exist_ok=True)
    for f in files:
        f.path.write_text(f.text, encoding="utf-8")
        out.write(f"{f.path}\n")
    return [f.path for f in files]


def make_runner(
    conn: db.Connection,
    lock: AdvisoryLock,
    settings: Settings,
    log: Log,
    run_id: str,
    applied: list[Any],
    hooks: Callbacks | None = None,
) -> Runner:
    from job.apply import Runner

    return Runner(
        conn,
        settings,
        table_of(settings),
        log,
        run_id,
        history.next_batch(applied),
        lock_check_sql=lock.check_sql,
        blockers=lock.blockers_of,
        callbacks=hooks,
    )


def repair(
    settings: Settings,
    log: Log,
    state: RunState,
    run_id: str,
    *,
    mode: str,
    versions: list[str] | None,
    accept: list[str] | None = None,
    forget: list[str] | None = None,
) -> list[str]:
    """Resolve failed/interrupted entries (see job.repair) under the advisory lock; with `accept` / `forget`
    (`--accept-checksum V`, `--forget-missing V`) fix the history of applied migrations instead."""
    from job import repair as repair_mod

    if accept or forget:
        return fix_history(settings, log, run_id, accept=accept or [], forget=forget or [], out=sys.stdout)
    migrations = load_files(settings)
    table = table_of(settings)
    if settings.dry_run:
        broken = [
            a for a in read_history(settings, log) if a.status != "applied" and (not versions or a.version in versions)
        ]
        for a in broken:
            sys.stdout.write(
                f"-- would {mode} version {a.version} ({a.name}), failed at statement "
                f"{(a.statements_done or 0) + 1}: {a.error}\n"
            )
        if not broken:
            sys.stdout.write("-- nothing to repair\n")
        return [a.version for a in broken]
    with locked_session(settings, log) as (conn, lock):
        applied, _ = prepare_history(conn, settings, log, migrations, run_id, schema_file=False)
        broken = [a.version for a in applied if a.status != "applied" and (not versions or a.version in versions)]
        if broken:  # adopted rows are never failed: nothing to adopt here
            guard.confirm(settings, "repair", database=conn.info.dbname, interactive=settings.interactive)
            back_up(settings, log, conn, state, broken[-1], run_id)
            history.ensure(conn, table)
        runner = make_runner(conn, lock, settings, log, run_id, applied)
        runner.applied = state.applied
        return repair_mod.repair(conn, runner, settings, log, migrations, applied, mode=mode, versions=versions)


def fix_history(
    settings: Settings, log: Log, run_id: str, *, accept: list[str], forget: list[str], out: TextIO
) -> list[str]:
    """`repair --accept-checksum V` / `--forget-missing V`: change the history of applied migrations, each
    change logged and written to the audit table; guarded on production; `--dry-run` prints the changes."""
    from job import repair as repair_mod

    migrations = load_files(settings)
    table = table_of(settings)
    if settings.dry_run:
        current = read_history(settings, log, migrations, schema_file=False)
        fixes = repair_mod.plan_fixes(migrations, current, accept=accept, forget=forget)
        out.write("".join(f"-- would {f.describe()}\n" for f in fixes) or "-- nothing to change\n")
        return [f.version for f in fixes]
    with locked_session(settings, log) as (conn, _lock):
        applied, setup = prepare_history(conn, settings, log, migrations, run_id, schema_file=False)
        fixes = repair_mod.plan_fixes(migrations, applied, accept=accept, forget=forget)
        if not fixes:
            log.info("repair.nothing_to_do", accept=accept, forget=forget)
            return []
        what = "repair --accept-checksum" if accept else "repair --forget-missing"
        guard.confirm(settings, what, database=conn.info.dbname, interactive=settings.interactive)
        history.ensure(conn, table)
        if setup is not None:
            setup()  # the first command on this database: adopt first, then fix
        return repair_mod.apply_fixes(conn, table, fixes, by=settings.applied_by, run_id=run_id, log=log)


def wait(settings: Settings, log: Log, timeout: float | None) -> None:
    """Wait until the database accepts connections (exit 5 after the timeout)."""
    conn = db.connect(settings, log, purpose="wait", timeout=timeout)
    conn.close()
    log.info("db.ready")


def _history_version(text: str, order: str) -> source.Version | None:
    if text.startswith("R__"):
        return None
    try:
        return source.parse_version(text, order)
    except ValueError:
        return None


def wait_for_version(settings: Settings, log: Log, version: str, timeout: float, interval: float = 2.0) -> None:
    """Wait until the history shows `version` (and everything below it) applied."""
    import time

    from job.errors import NotReady

    try:
        wanted = source.parse_version(version, settings.order)
    except ValueError:
        raise ConfigError(f"wait-for-version: {version!r} is not a version number") from None
    deadline = time.monotonic() + timeout
    conn = db.connect(settings, log, purpose="wait", timeout=timeout)
    try:
        while True:
            rows = history.load(conn, table_of(settings))
            applied = [v for a in rows if a.status == "applied" and (v := _history_version(a.version, settings.order))]
            broken = [a.version for a in rows if a.status != "applied"]
            current = max(applied, default=None)
            if current is not None and current >= wanted and not broken:
                log.info("schema.ready", version=str(current), wanted=version)
                return
            if time.monotonic() >= deadline:
                raise NotReady(
                    f"the database is at version {current or 'none'}, not {version}, after {timeout:g}s"
                    + (f" (failed entries: {', '.join(broken)})" if broken else ""),
                    current=str(current) if current else None,
                    wanted=version,
                )
            log.info("schema.waiting", current=str(current) if current else None, wanted=version)
            cancel.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    finally:
        conn.close()


_HIDDEN = {"libpq_env", "interactive", "dry_run", "target", "single_transaction"}


def config_show(settings: Settings, out: TextIO, fmt: str = "table") -> dict[str, Any]:
    """Print the effective settings and where each came from; secrets masked."""
    import json

    from job.config import origins
    from job.report import redact_text

    where = origins()
    secrets = settings.secrets()
    rows: dict[str, Any] = {}
    for name in type(settings).model_fields:
        if name in _HIDDEN:
            continue
        value = getattr(settings, name)
        if name == "database_url" and value is not None:
            shown: Any = redact_text(value.get_secret_value(), secrets)
        elif value is None or isinstance(value, bool | int | float):
            shown = value
        else:
            shown = redact_text(str(value), secrets)
        rows[name] = {"value": shown, "source": where.get(name, "default")}
    if fmt == "json":
        out.write(json.dumps({"env": settings.env, "settings": rows}, indent=2, default=str) + "\n")
    else:
        out.write(f"environment: {settings.env}\n")
        width = max(len(n) for n in rows)
        for name, row in rows.items():
            value = "" if row["value"] is None else str(row["value"])
            out.write(f"  {name.ljust(width)}  {value.ljust(28)}  {row['source']}\n")
    return rows


def lint(settings: Settings, log: Log, files: list[Path], fmt: str, out: TextIO) -> list[Any]:
    """Lint FILES, else the pending migrations (when a database is configured), else every migration.

    Every migration is linted in order so knowledge carries over (e.g. a CHECK validated in an earlier
    file); only the selected ones are reported. Error-level findings → ValidationFailed (exit 4).
    """
    from job import lint as lint_mod

    migrations = load_files(settings)
    if files:
        wanted = {p.resolve() for p in files}
        unknown = [str(p) for p in files if p.resolve() not in {m.path.resolve() for m in migrations}]
        if unknown:
            raise ConfigError(f"lint: {unknown[0]} is not a migration in {settings.dir}")
        selected = {m.path.resolve() for m in migrations if m.path.resolve() in wanted}
    elif settings.has_connection:
        plan = build_plan(migrations, read_history(settings, log, migrations), allow_out_of_order=True)
        selected = {m.path.resolve() for m in plan.pending}
    else:
        selected = {m.path.resolve() for m in migrations}
    findings = [f for f in lint_mod.lint_migrations(migrations) if Path(f.file).resolve() in selected]
    render = {"json": lint_mod.format_json, "github": lint_mod.format_github}.get(fmt, lint_mod.format_human)
    out.write(render(findings))
    if fmt == "human":
        errors = sum(1 for f in findings if f.severity == "error")
        out.write(f"{len(selected)} migration(s) linted: {errors} error(s), {len(findings) - errors} warning(s)\n")
    log.info("lint.finished", migrations=len(selected), findings=len(findings))
    if lint_mod.has_errors(findings):
        first = next(f for f in findings if f.severity == "error")
        raise ValidationFailed(
            f"lint: {first.file}:{first.line}: {first.rule} {first.message}",
            problems=[f"{f.file}:{f.line}: {f.rule} {f.message}" for f in findings if f.severity == "error"],
        )
    return findings


def lint_gate(settings: Settings, migrations: list[Migration], pending: tuple[Migration, ...]) -> None:
    """On production with MIGRATE_LINT_GATE=error: refuse (exit 4) when a pending migration has a lint error."""
    if settings.lint_gate != "error" or not settings.is_production or not pending:
        return
    from job import lint as lint_mod

    selected = {m.path.resolve() for m in pending}
    errors = [
        f for f in lint_mod.lint_migrations(migrations) if f.severity == "error" and Path(f.file).resolve() in selected
    ]
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"lint gate (MIGRATE_LINT_GATE=error on production): {first.file}:{first.line}: {first.rule} "
            f"{first.message}; fix it, or disable the rule for that file: "
            f"`-- migrate-job: lint_disable={first.rule}`",
            problems=[f"{f.file}:{f.line}: {f.rule} {f.message}" for f in errors],
        )


# ---------------------------------------------------------------------------- fleets


def fleet(
    settings: Settings,
    log: Log,
    run_id: str,
    action: str,
    out: TextIO,
    *,
    version: str | None = None,
    timeout: float = 300.0,
) -> Any:
    """`fleet migrate|status|validate|wait-for-version`: the single-target command for every target (job.fleet).

    Raises TargetsFailed (exit 8) when some targets failed, or the one exit code every target ended with.
    """
    from job import fleet as fleet_mod
    from job import targets
    from job.errors import ExitCode, TargetsFailed

    found = targets.load(settings, log)

    def do_migrate(s: Settings, tlog: Log, state: RunState) -> dict[str, Any] | None:
        migrate(s, tlog, state, run_id)
        return None

    def do_validate(s: Settings, tlog: Log, state: RunState) -> dict[str, Any] | None:
        plan = validate(s, tlog, fleet_mod.quiet_output())
        return {"pending": len(plan.pending)}

    def do_status(s: Settings, tlog: Log, state: RunState) -> dict[str, Any] | None:
        plan = status(s, tlog, fleet_mod.quiet_output(), "json")
        states: dict[str, int] = {}
        for r in plan.rows:
            states[r.state] = states.get(r.state, 0) + 1
        versions = [r.version for r in plan.rows if r.state == "applied"]
        state.version_before = highest_of(None, versions)
        return {"states": states, "problems": [p.message for p in plan.problems]}

    def do_wait(s: Settings, tlog: Log, state: RunState) -> dict[str, Any] | None:
        assert version is not None
        wait_for_version(s, tlog, version, timeout)
        return None

    if action == "wait-for-version" and version is None:
        raise ConfigError("fleet wait-for-version needs the VERSION to wait for")
    actions = {"migrate": do_migrate, "validate": do_validate, "status": do_status, "wait-for-version": do_wait}
    report = fleet_mod.run(action, settings, log, found, actions[action])
    if action == "status":
        out.write(fleet_mod.status_table(report))
    elif out.isatty():
        out.write(report.table())
    code = report.exit_code
    if report.signum is not None:
        from job.errors import Interrupted

        raise Interrupted(report.signum)
    if code != 0:
        failed = [r for r in report.results if r.state == "failed"]
        first = f"; first: {failed[0].id}: {failed[0].error}" if failed and failed[0].error else ""
        error = TargetsFailed(
            f"fleet {action}: {len(failed)} of {len(report.results)} target(s) failed"
            + (f", {report.count('not_started')} not started ({report.stopped})" if report.stopped else "")
            + first,
            failed=[r.id for r in failed],
        )
        error.exit_code = ExitCode(code)
        raise error
    return report


# ---------------------------------------------------------------------------- CI without a database


def sum_path(settings: Settings) -> Path:
    """The folder's integrity file, `<MIGRATE_DIR>/migrate-job.sum`."""
    from job.integrity import SUM_FILE

    return settings.dir / SUM_FILE


def hash_files(settings: Settings, log: Log, out: TextIO) -> Path:
    """`hash`: write `<dir>/migrate-job.sum` (every migration file's checksum, and a total); `--dry-run` prints it."""
    from job import integrity, snapshot

    items = integrity.entries(settings.dir, load_files(settings, offline=True))
    text = integrity.render(items)
    path = sum_path(settings)
    if settings.dry_run:
        out.write(text)
        return path
    try:
        changed = snapshot.write_snapshot(path, text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the sum file: {exc.strerror or exc}", file=str(path)) from None
    note = "" if changed else " (unchanged)"
    out.write(f"{path}: {len(items)} file(s), total sha256:{integrity.total(items)}{note}\n")
    log.info("sum.written" if changed else "sum.unchanged", file=str(path), files=len(items))
    return path


def _problem(exc: SourceError) -> Problem:
    return Problem(exc.message, exc.fields.get("file"), exc.fields.get("line"), exc.fields.get("column"))


def sum_problems(settings: Settings, migrations: list[Migration]) -> tuple[list[Problem], str | None]:
    """The folder against its sum file: one problem per change (or a missing/unreadable sum file), and the
    one-line summary naming the changed files when there are changes."""
    from job import integrity

    path = sum_path(settings)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        message = f"{path} not found: run `migrate-job hash` and commit it, so CI can check the migrations"
        return [integrity.Problem(message, str(path))], None
    except (OSError, UnicodeError) as exc:
        return [integrity.Problem(f"{path}: cannot read the sum file: {exc}", str(path))], None
    try:
        recorded = integrity.parse(path, text)
    except SourceError as exc:
        return [_problem(exc)], None
    changes = integrity.compare(settings.dir, path, recorded, integrity.entries(settings.dir, migrations))
    problems = [
        integrity.Problem(
            c.message, str(settings.dir / c.path) if c.kind in ("added", "edited") and c.path else str(path)
        )
        for c in changes
    ]
    return problems, integrity.summary(path, changes) if changes else None


def check_sum_file(settings: Settings, migrations: list[Migration]) -> None:
    """On production, when the folder has a migrate-job.sum, it must match (exit 4, before connecting): the files
    deployed are the ones CI checked. Elsewhere a developer's migrate needs no `hash` after each edit."""
    if not settings.is_production or not sum_path(settings).exists():
        return
    problems, summary = sum_problems(settings, migrations)
    if problems:
        raise ValidationFailed(
            summary or problems[0].message,
            problems=[p.message for p in problems],
            count=len(problems),
            file=problems[0].file,
            line=problems[0].line,
        )


def parse_problems(migrations: list[Migration]) -> list[Problem]:
    """Every up and down section checked as the runner would before running it (syntax errors with file:line),
    and no migration that `create` wrote and nobody filled in."""
    found: list[Problem] = []
    for m in migrations:
        checks: list[Callable[[], object]] = [partial(statements_for, m), partial(refuse_template, m)]
        if m.down is not None:
            checks.append(partial(_check_down, m, m.down))
        for check in checks:
            try:
                check()
            except SourceError as exc:
                found.append(_problem(exc))
    return found


def _check_down(m: Migration, down: source.Section) -> None:
    statements_for(m, down, transactional=section_transactional(m, down))


def lint_problems(settings: Settings, migrations: list[Migration]) -> tuple[list[Problem], list[Problem]]:
    """Lint findings (errors, warnings) of every migration above MIGRATE_LINT_SINCE (default: every one);
    syntax errors are left to `parse_problems`."""
    from job import lint as lint_mod

    since = None
    if settings.lint_since is not None:
        try:
            since = source.parse_version(settings.lint_since, settings.order)
        except ValueError:
            raise ConfigError(
                f"invalid setting MIGRATE_LINT_SINCE (--lint-since): {settings.lint_since!r} is not a version",
                setting="MIGRATE_LINT_SINCE",
            ) from None
    selected = {m.path.resolve() for m in migrations if since is None or m.version is None or m.version > since}
    findings = [
        f for f in lint_mod.lint_migrations(migrations) if f.rule != "MJ000" and Path(f.file).resolve() in selected
    ]
    as_problem = [
        (
            f.severity,
            Problem(f"{f.file}:{f.line}:{f.column}: {f.rule} {f.message} (hint: {f.hint})", f.file, f.line, f.column),
        )
        for f in findings
    ]
    return [p for s, p in as_problem if s == "error"], [p for s, p in as_problem if s != "error"]


def validate_offline(settings: Settings, log: Log, out: TextIO) -> list[Migration]:
    """`validate --offline`: the sum file, every file's SQL (up and down) and the lint, without a database.

    Never connects (no DATABASE_URL needed). Raises ValidationFailed (exit 4) listing every problem.
    """
    try:
        migrations = load_files(settings, offline=True)
    except SourceError as exc:
        migrations, problems, summary = [], [_problem(exc)], None
    else:
        problems, summary = sum_problems(settings, migrations)
    about_sum = len(problems) if summary else 1
    problems += parse_problems(migrations)
    errors, warnings = lint_problems(settings, migrations)
    problems += errors
    _print_offline(settings, out, problems, warnings)
    log.info("validate.offline", files=len(migrations), problems=len(problems), warnings=len(warnings))
    if problems:
        more = len(problems) - about_sum
        raise ValidationFailed(
            f"validate --offline: {summary or problems[0].message}"
            + (f" (and {more} more problem(s))" if more else ""),
            problems=[p.message for p in problems],
            count=len(problems),
            file=problems[0].file,
            line=problems[0].line,
        )
    out.write(
        f"ok: {len(migrations)} migration(s) match {sum_path(settings)}, parse, and have no lint error"
        f" ({len(warnings)} warning(s))\n"
    )
    return migrations


def _print_offline(settings: Settings, out: TextIO, problems: list[Problem], warnings: list[Problem]) -> None:
    """`problem:` / `warning:` lines; in GitHub Actions also one annotation each and the step summary."""
    from job.report import append_file, github_annotation, github_problems_summary, redact_text

    secrets = settings.secrets()
    for label, items in (("problem", problems), ("warning", warnings)):
        out.write("".join(f"{label}: {redact_text(p.message, secrets)}\n" for p in items))
    if not settings.github_actions:
        return
    for level, items in (("error", problems), ("warning", warnings)):
        for p in items:
            out.write(github_annotation(redact_text(p.message, secrets), p.file, p.line, p.column, level=level) + "\n")
    if settings.github_step_summary:
        text = github_problems_summary(
            "validate --offline",
            int(ValidationFailed.exit_code) if problems else 0,
            [redact_text(p.message, secrets) for p in problems],
            [redact_text(w.message, secrets) for w in warnings],
        )
        append_file(settings.github_step_summary, text)


def dump(settings: Settings, log: Log, out: TextIO) -> str:
    """`dump`: the normalised schema snapshot now, to `--file` / MIGRATE_SCHEMA_FILE, or stdout (`-` or neither).
    Only reads the database (production and replicas too); a missing or too old pg_dump exits 2."""
    from job import snapshot

    path = settings.schema_file
    to_file = path is not None and str(path) != "-"
    if path is not None and to_file:
        snapshot.check_schema_file(path, settings)
    conn = db.connect(settings, log, purpose="dump")
    try:
        text = snapshot.snapshot(settings, conn, table_of(settings))
    finally:
        conn.close()
    count = len(snapshot.objects(text))
    if path is None or not to_file:
        out.write(text)
        log.info("schema.dumped", file="-", objects=count)
        return text
    try:
        changed = snapshot.write_snapshot(path, text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the schema snapshot: {exc.strerror or exc}", file=str(path)) from None
    out.write(f"{path}: {count} object(s){'' if changed else ' (unchanged)'}\n")
    log.info("schema.dumped", file=str(path), objects=count, changed=changed)
    return text
