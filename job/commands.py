"""One function per command. Each reads like the pipeline: files → connect → lock → history →
plan → apply → report. They raise JobError subclasses; `job.cli` maps those to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from job import adopt, baseline, db, guard, history, snapshot, source
from job.apply import Outcome, Runner, section_transactional, statements_for, timeouts_ms, tx_script
from job.config import Settings
from job.errors import ConfigError, SourceError, ValidationFailed
from job.history import HistoryTable
from job.lock import AdvisoryLock, lock_key
from job.plan import Plan, StatusRow, build_plan, rollback_plan
from job.report import Log, status_json, status_table
from job.source import Migration


@dataclass
class RunState:
    """What the run did so far: read by the CLI for `run.finished` / `run.interrupted`."""

    applied: list[Outcome] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)  # to apply (known once the plan is built)
    rolled_back: list[Outcome] = field(default_factory=list)
    to_roll_back: list[Migration] = field(default_factory=list)
    current: Migration | None = None
    backup: Any = None


def table_of(settings: Settings) -> HistoryTable:
    return HistoryTable(settings.history_schema, settings.history_table)


def load_files(settings: Settings) -> list[Migration]:
    return source.load(settings.dir, layout=settings.format)


def check_pending(plan: Plan, *, single_transaction: bool = False) -> None:
    """Parse every pending migration before anything runs: bad SQL, or a file `create` made that is still
    empty, fails the run with exit 4."""
    for m in plan.pending:
        statements_for(m)
        refuse_template(m)
        if single_transaction and not m.transactional:
            raise SourceError(
                f"{m.path}: --single-transaction cannot include a migration that must run outside a "
                "transaction (CONCURRENTLY, VACUUM, ...); apply without --single-transaction",
                file=str(m.path),
            )


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
    """Lock connection + advisory lock + work connection, all released/closed on every exit path."""
    db.refuse_pooler(settings)
    lock_conn = db.connect(settings, log, purpose="lock")
    try:
        lock = AdvisoryLock(
            lock_conn,
            lock_key(settings.history_schema, settings.history_table),
            log,
            wait_timeout=settings.lock_wait_timeout,
        )
        with lock:
            work = db.connect(settings, log, purpose="migrate")
            try:
                yield work, lock
            finally:
                work.close()
    finally:
        lock_conn.close()


def migrate(settings: Settings, log: Log, state: RunState, run_id: str) -> RunState:
    """Apply pending migrations under the advisory lock. Nothing is written before validation passes."""
    migrations = load_files(settings)
    if settings.dry_run:
        return dry_run(settings, log, migrations, sys.stdout, state)
    table = table_of(settings)
    with locked_session(settings, log) as (conn, lock):
        applied, setup = prepare_history(conn, settings, log, migrations, run_id)
        plan = build_plan(migrations, applied, target=settings.target, allow_out_of_order=settings.allow_out_of_order)
        log.info("plan", pending=[m.key for m in plan.pending], applied=len(applied), problems=len(plan.problems))
        state.pending = list(plan.pending)  # also when validation fails: run.finished reports the real count
        _raise_problems(plan)
        check_pending(plan, single_transaction=settings.single_transaction)
        lint_gate(settings, migrations, plan.pending)
        if settings.schema_file is not None and not settings.is_production:
            snapshot.check_schema_file(settings.schema_file, settings)
            snapshot.check_pg_dump(settings, conn)  # fails (exit 2) before anything changes
        if not plan.pending and setup is None:
            write_schema_snapshot(settings, log, conn, table)  # a missing or stale snapshot gets written
            return state
        if plan.pending:
            guard.confirm(settings, "apply migrations", database=conn.info.dbname, interactive=settings.interactive)
            back_up(settings, log, conn, state, plan.pending[-1].key, run_id)
        if setup is not None or not applied:
            history.ensure(conn, table)
        if setup is not None:
            applied = setup()
        runner = make_runner(conn, lock, settings, log, run_id, applied)
        runner.applied = state.applied
        if settings.single_transaction:
            runner.apply_single_tx(plan.pending)
        else:
            runner.apply_all(plan.pending)
        write_schema_snapshot(settings, log, conn, table)
    return state


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
    conn: db.Connection, settings: Settings, log: Log, migrations: list[Migration], run_id: str
) -> tuple[list[Any], Callable[[], list[Any]] | None]:
    """Our history, read-only. On a first run, also what adopting another tool's table or loading the schema
    file (empty database) would record, with the action that writes it (run only after validation)."""
    table = table_of(settings)
    applied = history.load(conn, table)
    if applied:
        return applied, None
    if settings.adopt:
        legacy = adopt.find_one(conn, sorted({settings.history_schema, "public"}), (table.schema, table.table))
        if legacy is not None:
            rows, unmatched = adopt.rows_to_adopt(conn, legacy, migrations)

            def adopt_rows() -> list[Any]:
                history.insert_rows(conn, table, rows, run_id)
                log.info(
                    "history.adopted",
                    tool=legacy.tool,
                    table=legacy.qualified,
                    count=len(rows),
                    versions=[a.version for a in rows],
                    unmatched=unmatched,
                )
                return history.load(conn, table)

            return rows, adopt_rows
    schema_file = baseline.find_schema_file(settings.dir, settings.schema_load_file)
    if schema_file is not None:
        if baseline.database_is_empty(conn, table):
            covered = baseline.covered_rows(schema_file, migrations, settings.baseline_version)

            def load_schema() -> list[Any]:
                rows = baseline.load_schema(conn, table, schema_file, migrations, settings.baseline_version, run_id)
                log.info("schema.loaded", file=str(schema_file), baselined=[a.version for a in rows])
                return history.load(conn, table)

            return covered, load_schema
        log.info("schema.ignored", file=str(schema_file), reason="database is not empty")
    return applied, None


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
        chosen = rollback_plan(
            migrations, read_history(settings, log), steps=steps, to=to, name=name, everything=everything
        )
        _print_rollback(chosen, sys.stdout)
        if everything:
            for a in read_history(settings, log):
                if a.version.startswith("R__"):
                    sys.stdout.write(f"-- forget repeatable {a.version} (re-applied by the next migrate)\n")
        state.to_roll_back = chosen
        return state
    with locked_session(settings, log) as (conn, lock):
        history.ensure(conn, table)
        applied = history.load(conn, table)
        chosen = rollback_plan(migrations, applied, steps=steps, to=to, name=name, everything=everything)
        for m in chosen:
            statements_for(m, m.down, transactional=section_transactional(m, m.down) if m.down else True)
        state.to_roll_back = chosen
        log.info("rollback.plan", versions=[m.key for m in chosen])
        if chosen:
            guard.confirm(settings, action, database=conn.info.dbname, interactive=settings.interactive)
            back_up(settings, log, conn, state, _version_after_rollback(applied, chosen), run_id)
        runner = make_runner(conn, lock, settings, log, run_id, applied)
        runner.applied = state.rolled_back
        runner.rollback_all(chosen)
        if everything:
            # Repeatable (R__) migrations have no down: forget their rows so the next migrate re-applies them.
            repeatables = [a.version for a in applied if a.version.startswith("R__")]
            for version in repeatables:
                history.delete(conn, table, version)
            if repeatables:
                log.info("rollback.repeatables_forgotten", versions=repeatables)
    return state


def _print_rollback(chosen: list[Migration], out: TextIO) -> None:
    if not chosen:
        out.write("-- nothing to roll back\n")
    for m in chosen:
        assert m.down is not None
        out.write(f"-- roll back {m.key} {m.name} ({m.down.path})\n")
        out.write("".join(s.terminated + "\n" for s in m.down.statements) + "\n")


def refresh(settings: Settings, log: Log, state: RunState, run_id: str) -> RunState:
    """Roll back everything, then migrate again."""
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
    from job.source import Version

    try:
        upto = Version.parse(version)
    except ValueError:
        raise ConfigError(f"baseline --version {version!r} is not a version number") from None
    state = state if state is not None else RunState()
    migrations = load_files(settings)
    table = table_of(settings)
    if settings.dry_run:
        rows = baseline.baseline_rows(migrations, upto, read_history(settings, log), "baseline")
        out.write("".join(f"-- would record {a.version} {a.name} as applied (baseline)\n" for a in rows))
        return [a.version for a in rows]
    with locked_session(settings, log) as (conn, _lock):
        history.ensure(conn, table)
        existing = history.load(conn, table)
        rows = baseline.baseline_rows(migrations, upto, existing, "baseline")
        if rows:
            guard.confirm(settings, "baseline", database=conn.info.dbname, interactive=settings.interactive)
            back_up(settings, log, conn, state, str(upto), run_id)
        history.insert_rows(conn, table, rows, run_id)
        log.info("history.baselined", version=str(upto), recorded=[a.version for a in rows])
        return [a.version for a in rows]


def read_history(settings: Settings, log: Log, migrations: list[Migration] | None = None) -> list[Any]:
    """History rows without taking the lock or writing anything (status, validate, dry run).

    With `migrations`, a first run shows what `migrate` would record: rows adopted from another tool's
    table, or the migrations a schema file covers on an empty database.
    """
    conn = db.connect(settings, log, purpose="status")
    try:
        if migrations is None:
            return history.load(conn, table_of(settings))
        rows, _ = prepare_history(conn, settings, log, migrations, run_id="")
        return rows
    finally:
        conn.close()


@dataclass(frozen=True)
class SchemaLoad:
    """`migrate` would first load this schema file (empty database), recording these versions as applied."""

    file: Path
    versions: list[str]


def planned_history(settings: Settings, log: Log, migrations: list[Migration]) -> tuple[list[Any], SchemaLoad | None]:
    """The history `migrate` would plan with (read-only, no lock), and the schema file it would load first."""
    conn = db.connect(settings, log, purpose="status")
    try:
        rows, setup = prepare_history(conn, settings, log, migrations, run_id="")
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
    settings: Settings, log: Log, migrations: list[Migration], out: TextIO, state: RunState | None = None
) -> RunState:
    """Print the plan and the exact SQL that would run; change nothing."""
    state = state if state is not None else RunState()
    applied, load = planned_history(settings, log, migrations)
    plan = build_plan(migrations, applied, target=settings.target, allow_out_of_order=settings.allow_out_of_order)
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
    for m in plan.pending:
        lock_ms, stmt_ms = timeouts_ms(m, settings)
        out.write(f"-- {m.key} {m.name} ({m.path}) {'transactional' if m.transactional else 'non-transactional'}\n")
        stmts = statements_for(m)
        if m.transactional:
            row = history.applied_row_sql(
                table_of(settings), {"version": m.key, "name": m.name, "checksum": m.checksum}
            )
            out.write(tx_script(stmts, lock_ms, stmt_ms, [row]).text + "\n\n")
        else:
            out.write(f"SET lock_timeout = {lock_ms}; SET statement_timeout = {stmt_ms};\n")
            out.write("".join(s.terminated + "\n" for s in stmts) + "\n")
    log.info("plan", pending=[m.key for m in plan.pending], dry_run=True)
    return state


def status(settings: Settings, log: Log, out: TextIO, fmt: str = "table") -> Plan:
    """Every migration with its state. On an empty database with a schema file, the migrations it covers are
    `pending (schema file)`: nothing is applied before `migrate` loads it."""
    migrations = load_files(settings)
    applied, load = planned_history(settings, log, migrations)
    plan = build_plan(migrations, applied, allow_out_of_order=True)
    rows = _schema_rows(plan, load)
    counts: dict[str, int] = {}
    shown: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
        label = f"{r.state} ({r.via})" if r.via else r.state
        shown[label] = shown.get(label, 0) + 1
    if fmt == "json":
        summary: dict[str, Any] = {"summary": counts, "problems": [p.message for p in plan.problems]}
        if load is not None:
            summary["schema_file"] = {"file": str(load.file), "versions": load.versions}
        out.write(status_json(rows, summary) + "\n")
    else:
        out.write(status_table(rows) + "\n")
        out.write(", ".join(f"{n} {state}" for state, n in sorted(shown.items())) or "no migrations")
        out.write("\n")
        if load is not None:
            out.write(f"on the first migrate the schema file {load.file} is loaded (empty database)\n")
    return plan


def validate(settings: Settings, log: Log, out: TextIO) -> Plan:
    """Check files and history; raise ValidationFailed listing every problem."""
    migrations = load_files(settings)
    plan = build_plan(
        migrations, read_history(settings, log, migrations), allow_out_of_order=settings.allow_out_of_order
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

    directory = settings.dir
    migrations = load_files(settings) if directory.is_dir() else []
    families = {m.layout for m in migrations} or ({settings.format} if settings.format != "auto" else set())
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
    conn: db.Connection, lock: AdvisoryLock, settings: Settings, log: Log, run_id: str, applied: list[Any]
) -> Runner:
    return Runner(
        conn,
        settings,
        table_of(settings),
        log,
        run_id,
        history.next_batch(applied),
        check_lock=lock.check_alive,
        blockers=lock.blockers_of,
    )


def repair(
    settings: Settings, log: Log, state: RunState, run_id: str, *, mode: str, versions: list[str] | None
) -> list[str]:
    """Resolve failed/interrupted entries (see job.repair) under the advisory lock."""
    from job import repair as repair_mod

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
        history.ensure(conn, table)
        applied = history.load(conn, table)
        broken = [a.version for a in applied if a.status != "applied" and (not versions or a.version in versions)]
        if broken:
            guard.confirm(settings, "repair", database=conn.info.dbname, interactive=settings.interactive)
            back_up(settings, log, conn, state, broken[-1], run_id)
        runner = make_runner(conn, lock, settings, log, run_id, applied)
        runner.applied = state.applied
        return repair_mod.repair(conn, runner, settings, log, migrations, applied, mode=mode, versions=versions)


def wait(settings: Settings, log: Log, timeout: float | None) -> None:
    """Wait until the database accepts connections (exit 5 after the timeout)."""
    conn = db.connect(settings, log, purpose="wait", timeout=timeout)
    conn.close()
    log.info("db.ready")


def wait_for_version(settings: Settings, log: Log, version: str, timeout: float, interval: float = 2.0) -> None:
    """Wait until the history shows `version` (and everything below it) applied."""
    import time

    from job.errors import NotReady
    from job.source import Version

    try:
        wanted = Version.parse(version)
    except ValueError:
        raise ConfigError(f"wait-for-version: {version!r} is not a version number") from None
    deadline = time.monotonic() + timeout
    conn = db.connect(settings, log, purpose="wait", timeout=timeout)
    try:
        while True:
            rows = history.load(conn, table_of(settings))
            applied = [a.parsed_version for a in rows if a.status == "applied" and a.parsed_version]
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
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
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
