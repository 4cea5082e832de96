"""Command line: parse argv, build the frozen Settings, call one command, map errors to exit codes.

Job commands (migrate, ...) log JSON lines to stdout. Report commands (status, validate, create,
migrate --dry-run) print their result on stdout and log to stderr, so their output stays parseable.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from job import __version__
from job.choices import FLEET_ACTIONS, LAYOUTS, MODES, ORDERS, STYLES
from job.errors import EXIT_CODE_HELP, ConfigError, ExitCode, Interrupted, JobError

SETTINGS_HELP = """\
settings (environment variables; CLI flags win over them; durations: 30, 500ms, 5s, 10m, 1h):
 connection (first that is set wins)
  DATABASE_URL / MIGRATE_DATABASE_URL  target database (URL or conninfo); or the libpq PG* variables
  MIGRATE_DATABASE_SECRET_ID   AWS Secrets Manager secret (RDS JSON or a connection string)
  MIGRATE_DATABASE_SECRET_KEY  JSON key holding the connection string (non-standard secrets)
  MIGRATE_DATABASE_SECRET_VERSION_STAGE  secret version stage (default AWSCURRENT)
  MIGRATE_DATABASE_URL_PARAMETER  SSM Parameter Store (SecureString) holding the connection string
  MIGRATE_IAM_AUTH             RDS IAM auth token as password (host/user from DATABASE_URL, PG* or MIGRATE_DB_*)
  MIGRATE_DB_HOST/PORT/NAME/USER  override parts of the connection
  MIGRATE_SSLMODE, MIGRATE_SSLROOTCERT  TLS (default verify-full when MIGRATE_ENV=production)
  DATABASE_SSL                 true: TLS (require; verify-full with a root certificate), false: no TLS;
                               precedence: MIGRATE_SSLMODE > sslmode in the URL > PGSSLMODE > DATABASE_SSL
  MIGRATE_AWS_REGION           AWS region (default: boto3's chain); AWS_ENDPOINT_URL is honoured
 migrations and history
  MIGRATE_DIR                  migrations folder (default ./migrations)            [--dir]
                               repeatables (any layout): R__name.sql there, or repeatable/*.sql: run after
                               the versioned ones, again when edited, never rolled back
                               callbacks (Flyway's names, there or in callbacks/): beforeMigrate,
                               beforeEachMigrate, afterEachMigrate, afterMigrate, afterMigrateError (exit 10)
  MIGRATE_FORMAT               auto|numbered|golang|flyway (default auto)          [--layout]
  MIGRATE_FILENAME_PATTERN     regex naming the files, instead of the layouts: named groups version (required),
                               name, direction (up|down|rollback|undo...)         [--filename-pattern]
  MIGRATE_ORDER                numeric|lexical: versions as numbers (9 < 10) or as text (default numeric) [--order]
  MIGRATE_HISTORY_SCHEMA       schema of the history table (default public)
  MIGRATE_HISTORY_TABLE        history table (default migrate_job_history)
  MIGRATE_TENANT_SCHEMA        schema-per-tenant: search_path = SCHEMA, public; history in SCHEMA [--tenant-schema]
  MIGRATE_PLACEHOLDER_<NAME>   value of ${name} in migrations (also [placeholders] in migrate.toml,
                               MIGRATE_PLACEHOLDERS as JSON); built-ins ${migrate-job:schema|database|user|table}
  MIGRATE_PLACEHOLDER_REPLACEMENT  auto|on|off (auto: on when a placeholder is defined)
  MIGRATE_ALLOW_OUT_OF_ORDER   apply pending versions lower than the highest applied
  MIGRATE_ALLOW_NON_EMPTY      apply everything to a database with tables but no history (default: exit 4,
                               as Flyway: record what it has with `baseline --version V`)  [--allow-non-empty]
  MIGRATE_TARGET               apply up to and including this version           [--target]
  MIGRATE_ADOPT                adopt another tool's tracking table on the first run (default true)
  MIGRATE_ADOPT_TABLE          schema.table of the tracking table to adopt (default: found by name and shape)
  MIGRATE_ADOPT_COLUMN         its column holding the version or file name (a table of unknown shape)
  MIGRATE_SCHEMA_LOAD_FILE     schema file for new databases (default schema.sql / init.sql in MIGRATE_DIR)
  MIGRATE_BASELINE_VERSION     versions the schema file covers (or a `-- migrate-job: baseline V` header)
  MIGRATE_SCHEMA_FILE          write a normalised pg_dump --schema-only here after migrate (not on production);
                               read by `diff`
  MIGRATE_LINT_GATE            error: refuse to migrate production when a pending migration has a lint error
  MIGRATE_LINT_SINCE           validate --offline lints only the migrations above this version  [--lint-since]
 safety
  MIGRATE_LOCK_WAIT_TIMEOUT    wait for the advisory lock (default 10m)           [--lock-wait-timeout]
  MIGRATE_LOCK_TIMEOUT         lock_timeout for each migration (default 5s)       [--lock-timeout]
  MIGRATE_LOCK_RETRIES         retries after a lock timeout (default 10)          [--lock-retries]
  MIGRATE_STATEMENT_TIMEOUT    statement_timeout for migrations (default 0 = off) [--statement-timeout]
  MIGRATE_CONNECT_TIMEOUT      keep retrying to connect for this long (default 60s): refused, timeout,
                               too many connections, starting up/shutting down, database not created yet
  MIGRATE_ALLOW_POOLER         allow a target that looks like PgBouncer/RDS Proxy (default false)
  MIGRATE_ENV                  environment name; `production` is guarded         [--env]
  MIGRATE_ENV_FILE             variables file read first, the environment winning (default ./.env, as dbmate
                               and the Node runners; empty: none)
  MIGRATE_CONFIRM_PRODUCTION   yes = confirm changing production (also MIGRATE_CONFIRM) [--yes]
  MIGRATE_PIPELINE             on|off: consecutive transactional migrations in one message (default on)
 fleet (`migrate-job fleet ACTION`)
  MIGRATE_FLEET_TARGETS        targets file (.toml/.yaml/.json)                   [--targets]
  MIGRATE_FLEET_PARALLEL       targets at a time (default 4)                      [--parallel]
  MIGRATE_FLEET_MAX_PER_HOST   targets at a time on one server                    [--max-per-host]
  MIGRATE_FLEET_CANARY         migrate K targets first; stop if one fails         [--canary]
  MIGRATE_FLEET_MAX_FAILURES   stop starting targets after F failures             [--max-failures]
  MIGRATE_FLEET_SHARD          I/N: only shard I of N (a hash of the target id)   [--shard]
  MIGRATE_FLEET_SHARDS         N shards, the index from JOB_COMPLETION_INDEX      [--shards]
  MIGRATE_FLEET_SCHEMAS / _SCHEMAS_QUERY / _SECRETS_PREFIX / _SECRETS_TAG / _CATALOG_QUERY  discovery
  MIGRATE_FLEET_CATALOG_URL    the catalog database of MIGRATE_FLEET_CATALOG_QUERY (default DATABASE_URL)
  MIGRATE_REPORT_FILE          JSON report of the fleet run                       [--report-file]
 backup (only when something changes: before migrate applies, before rollback/reset/refresh/repair/baseline)
  MIGRATE_BACKUP               auto|none|rds-snapshot|pg-dump (auto: required on production)
  MIGRATE_RDS_INSTANCE_ID / MIGRATE_RDS_CLUSTER_ID  snapshot target (default: from the endpoint)
  MIGRATE_BACKUP_S3_URI, MIGRATE_BACKUP_KMS_KEY_ID, MIGRATE_BACKUP_PATH  pg_dump destination
  MIGRATE_BACKUP_TIMEOUT (30m), MIGRATE_BACKUP_POLL_INTERVAL (15s), MIGRATE_PG_DUMP (pg_dump)
 output
  MIGRATE_LOG_FORMAT           auto|json|console (default auto: console on a TTY)
  MIGRATE_LOG_LEVEL            debug|info|warning|error (default info)
  MIGRATE_APPLIED_BY           identity recorded in history (default user@host)
  MIGRATE_APPLICATION_NAME     application_name prefix (default migrate-job; `:migrate 0042` while 0042 runs)
  MIGRATE_TERMINATION_LOG      Kubernetes termination message file (default /dev/termination-log)"""


def _common(argument_default: Any = argparse.SUPPRESS) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, argument_default=argument_default)
    p.add_argument("--dir", type=Path, help="migrations folder (MIGRATE_DIR, default ./migrations)")
    p.add_argument(
        "--layout",
        dest="format",
        choices=LAYOUTS,
        help="folder layout (MIGRATE_FORMAT, default auto)",
    )
    p.add_argument(
        "--filename-pattern",
        metavar="REGEX",
        help="file names by a regex with named groups version, name, direction (MIGRATE_FILENAME_PATTERN)",
    )
    p.add_argument("--order", choices=ORDERS, help="compare versions as numbers or as text (MIGRATE_ORDER)")
    p.add_argument("--history-table", help="history table name (MIGRATE_HISTORY_TABLE)")
    p.add_argument("--history-schema", help="history table schema (MIGRATE_HISTORY_SCHEMA)")
    p.add_argument(
        "--tenant-schema",
        help="schema-per-tenant: search_path = SCHEMA, public; history in SCHEMA (MIGRATE_TENANT_SCHEMA)",
    )
    p.add_argument("--log-format", choices=["auto", "json", "console"], help="MIGRATE_LOG_FORMAT")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="MIGRATE_LOG_LEVEL")
    p.add_argument("--lock-wait-timeout", help="how long to wait for the advisory lock (MIGRATE_LOCK_WAIT_TIMEOUT)")
    p.add_argument("--connect-timeout", help="how long to retry connecting (MIGRATE_CONNECT_TIMEOUT)")
    p.add_argument("--lock-timeout", help="lock_timeout for each migration (MIGRATE_LOCK_TIMEOUT)")
    p.add_argument("--lock-retries", type=int, help="retries after a lock timeout (MIGRATE_LOCK_RETRIES)")
    p.add_argument("--statement-timeout", help="statement_timeout for migrations (MIGRATE_STATEMENT_TIMEOUT)")
    p.add_argument(
        "--env", help="environment name (MIGRATE_ENV): selects [env.NAME] of the config file; `production` is guarded"
    )
    p.add_argument(
        "--config",
        type=Path,
        help="config file (MIGRATE_CONFIG; default ./migrate.toml or [tool.migrate-job] in ./pyproject.toml)",
    )
    p.add_argument(
        "--yes",
        dest="confirm_production",
        action="store_true",
        help="confirm changing a production database (MIGRATE_CONFIRM_PRODUCTION=yes)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="migrate-job",
        description="Apply PostgreSQL schema migrations safely, once, from a deploy job or a laptop.",
        epilog=EXIT_CODE_HELP + "\n\n" + SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"migrate-job {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=EXIT_CODE_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add("migrate", "apply pending migrations (the default command)")
    p.add_argument("--dry-run", action="store_true", default=None, help="print the plan and SQL; change nothing")
    p.add_argument("--target", help="apply up to and including this version")
    p.add_argument(
        "--single-transaction",
        action="store_true",
        default=None,
        help="apply every pending migration in one transaction (all or nothing; MIGRATE_SINGLE_TRANSACTION)",
    )
    p.add_argument(
        "--allow-out-of-order",
        action="store_true",
        default=None,
        help="apply pending versions lower than the highest applied one",
    )
    p.add_argument(
        "--allow-non-empty",
        action="store_true",
        default=None,
        help="apply every migration to a database whose history schema has tables but no migration history "
        "(default: refused, exit 4; run `baseline --version V` first)",
    )

    p = add(
        "status",
        "show every migration with its state (on an empty database with a schema file: `pending (schema file)`)",
    )
    p.add_argument("--format", dest="output", choices=["table", "json"], default="table", help="output format")
    p.add_argument(
        "--all",
        dest="show_all",
        action="store_true",
        help="also show the history's audit trail: adoption, applied/rolled-back migrations (when, by whom), "
        "repairs, accepted checksums",
    )

    p = add(
        "validate",
        "check files and history; exit 4 on any problem. --offline: no database (CI): the files against "
        "migrate-job.sum, every up/down parsed, the lint",
    )
    p.add_argument("--allow-out-of-order", action="store_true", default=None)
    p.add_argument(
        "--offline",
        action="store_true",
        help="never connect: check the folder against <dir>/migrate-job.sum (written by `hash`), parse every up "
        "and down section, lint (error-level findings fail); exit 4 naming each problem",
    )
    p.add_argument(
        "--lint-since",
        metavar="VERSION",
        help="--offline: lint only the migrations above VERSION (older ones are applied; MIGRATE_LINT_SINCE)",
    )

    def dry(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dry-run", action="store_true", default=None, help="print what would happen; change nothing")

    p = add(
        "create",
        "write a new migration with the next version, following the folder's convention (version style, "
        "up/down layout); an empty folder gets 0001_NAME.sql with -- UP / -- DOWN",
    )
    p.add_argument("name", nargs="?", help="what the migration does, e.g. add_user_email")
    p.add_argument("--name", dest="name_option", metavar="NAME", help="the same as the positional NAME")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--timestamp",
        dest="version_style",
        action="store_const",
        const="timestamp",
        help="version = the time now (UTC), in the folder's timestamp format (default YYYYMMDDHHMMSS)",
    )
    when.add_argument(
        "--sequential",
        dest="version_style",
        action="store_const",
        const="sequential",
        help="version = the newest version + 1, zero-padded like the folder's",
    )
    p.add_argument(
        "--style",
        choices=STYLES,
        help="markers: -- UP/-- DOWN in one file; dbmate: -- migrate:up/-- migrate:down; rollback: NAME.sql + "
        "NAME_rollback.sql; updown: N_NAME.up.sql + .down.sql; flyway: V<N>__NAME.sql (default: the folder's)",
    )
    dry(p)

    p = add(
        "repair",
        "resolve failed/interrupted non-transactional migrations (default: clean up and resume), "
        "or fix the history of applied ones (--accept-checksum, --forget-missing)",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--mode",
        choices=MODES,
        default="resume",
        help="resume from the failed statement (default), restart the file, mark it applied, or forget the entry",
    )
    how.add_argument(
        "--accept-checksum",
        dest="accept",
        action="append",
        metavar="VERSION",
        help="store the current checksum of applied VERSION's edited file (repeatable); logged with who and when",
    )
    how.add_argument(
        "--forget-missing",
        dest="forget",
        action="append",
        metavar="VERSION",
        help="drop the history row of applied VERSION whose file is gone (repeatable); logged",
    )
    p.add_argument(
        "--version",
        dest="versions",
        action="append",
        metavar="VERSION",
        help="only this version (repeatable); default: every failed entry",
    )
    dry(p)

    p = add("rollback", "roll back the last batch (one migrate run), or --steps/--to/--name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, help="roll back the last N migrations")
    group.add_argument("--to", metavar="VERSION", help="roll back every migration above VERSION")
    group.add_argument(
        "--name",
        help="roll back this one migration: its file's stem (20250105_090000_add_field), file name, name or version",
    )
    dry(p)

    p = add("reset", "roll back every applied migration (and forget the repeatables' rows)")
    dry(p)
    p = add("refresh", "reset, then migrate again")
    dry(p)
    p = add("baseline", "record every migration up to VERSION as applied without running it")
    p.add_argument("--version", dest="baseline_to", required=True, metavar="VERSION")
    dry(p)

    p = add(
        "hash",
        "write <dir>/migrate-job.sum: the checksum of every migration file (downs too) and a total, "
        "for `validate --offline` in CI; commit it with the migrations",
    )
    dry(p)

    p = add("lint", "report migrations that lock or rewrite tables on a live database (exit 4 on errors)")
    p.add_argument("files", nargs="*", type=Path, help="files to lint (default: pending, or all without a database)")
    p.add_argument("--format", dest="output", choices=["human", "json", "github"], default="human")

    p = add("diff", "compare the live schema with the snapshot (MIGRATE_SCHEMA_FILE); exit 4 on drift")
    p.add_argument("--file", dest="schema_file", type=Path, help="snapshot file (default MIGRATE_SCHEMA_FILE)")
    p.add_argument("--format", dest="output", choices=["text", "json"], default="text", help="output format")
    p.add_argument("--details", action="store_true", help="show a unified diff of every changed object")

    p = add(
        "dump",
        "write the normalised schema snapshot (pg_dump --schema-only) now: to --file, else MIGRATE_SCHEMA_FILE, "
        "else stdout; only reads the database",
    )
    p.add_argument(
        "--file",
        dest="schema_file",
        type=Path,
        help="where to write it (default MIGRATE_SCHEMA_FILE; `-` or none: stdout)",
    )

    p = add("config", "show the effective settings and where each came from (secrets masked)")
    p.add_argument("action", choices=["show"])
    p.add_argument("--format", dest="output", choices=["table", "json"], default="table")

    p = add("wait", "wait until the database accepts connections (exit 5 on timeout)")
    p.add_argument("--timeout", help="how long to wait (default MIGRATE_CONNECT_TIMEOUT)")

    p = add("wait-for-version", "wait until the history has reached VERSION (for application pods)")
    p.add_argument("target_version", metavar="VERSION")
    p.add_argument("--timeout", default="5m", help="how long to wait (default 5m); exit 4 after it")

    p = add("fleet", "run migrate/status/validate/wait-for-version across many databases or tenant schemas")
    p.add_argument("fleet_action", choices=FLEET_ACTIONS, metavar="ACTION", help="|".join(FLEET_ACTIONS))
    p.add_argument("target_version", nargs="?", metavar="VERSION", help="wait-for-version: the version to reach")
    p.add_argument("--targets", dest="fleet_targets", type=Path, help="targets file, .toml/.yaml/.json")
    p.add_argument("--parallel", dest="fleet_parallel", type=int, help="targets at a time (default 4)")
    p.add_argument("--max-per-host", dest="fleet_max_per_host", type=int, help="targets at a time on one server")
    p.add_argument("--canary", dest="fleet_canary", type=int, help="migrate K targets first; stop if one fails")
    p.add_argument("--max-failures", dest="fleet_max_failures", type=int, help="stop starting targets after F")
    p.add_argument("--shard", dest="fleet_shard", metavar="I/N", help="only shard I of N (0-based)")
    p.add_argument("--shards", dest="fleet_shards", type=int, help="N shards; the index is JOB_COMPLETION_INDEX")
    p.add_argument("--report-file", dest="report_file", type=Path, help="write the JSON report here")
    p.add_argument("--schemas", dest="fleet_schemas", help="tenant schemas (comma-separated) in DATABASE_URL")
    p.add_argument("--schemas-query", dest="fleet_schemas_query", help="SQL returning the tenant schemas")
    p.add_argument("--secrets-prefix", dest="fleet_secrets_prefix", help="Secrets Manager secrets by name prefix")
    p.add_argument("--secrets-tag", dest="fleet_secrets_tag", metavar="KEY=VALUE", help="Secrets Manager by tag")
    p.add_argument("--catalog-query", dest="fleet_catalog_query", help="SQL returning id, dsn|secret_id, schema")
    p.add_argument("--dry-run", action="store_true", default=None, help="migrate: print each target's plan")
    p.add_argument("--timeout", default="5m", help="wait-for-version: how long to wait (default 5m)")
    return parser


_SETTING_ARGS = (
    "dir",
    "format",
    "filename_pattern",
    "order",
    "history_table",
    "history_schema",
    "log_format",
    "log_level",
    "lock_wait_timeout",
    "connect_timeout",
    "dry_run",
    "target",
    "allow_out_of_order",
    "allow_non_empty",
    "single_transaction",
    "lock_timeout",
    "lock_retries",
    "statement_timeout",
    "env",
    "config",
    "confirm_production",
    "schema_file",
    "lint_since",
    "tenant_schema",
    "fleet_targets",
    "fleet_parallel",
    "fleet_max_per_host",
    "fleet_canary",
    "fleet_max_failures",
    "fleet_shard",
    "fleet_shards",
    "report_file",
    "fleet_schemas",
    "fleet_schemas_query",
    "fleet_secrets_prefix",
    "fleet_secrets_tag",
    "fleet_catalog_query",
)

COMMANDS = (
    "migrate",
    "status",
    "validate",
    "create",
    "repair",
    "wait",
    "wait-for-version",
    "rollback",
    "reset",
    "refresh",
    "baseline",
    "config",
    "lint",
    "diff",
    "fleet",
    "hash",
    "dump",
)
_JOB_COMMANDS = ("migrate", "rollback", "reset", "refresh", "repair")
_ROLLBACK_COMMANDS = ("rollback", "reset", "refresh")
_REPORT_COMMANDS = {"config", "diff", "lint", "status", "validate", "create", "hash", "dump"}


def _install_signal_handlers() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        # First signal: interrupt whatever runs (psycopg cancels the server-side query).
        # Later signals are ignored while we clean up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def entry() -> None:
    """The `migrate-job` command and `python -m job`: main() as a one-shot process, without the
    interpreter's costs a one-shot run does not need (about a third of a no-op run's CPU).

    Start-up allocates some 50,000 long-lived objects (psycopg, pydantic, structlog, our modules): the
    cyclic garbage collector stays off while they are created and then freezes them, so later collections
    never scan them again (it is back on for the run itself). At the end, once stdout and stderr are
    flushed, the process exits at once instead of tearing every module down; every file the run writes
    is closed by then, and no thread is left (fleet workers are joined before main returns).
    """
    gc.disable()
    try:
        code = main(_after_startup=_collect_from_now_on)
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # as the interpreter does: the message on stderr, exit 1
            print(exc.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`) or a closed stream
            stream.flush()
    os._exit(code)


def _collect_from_now_on() -> None:
    gc.freeze()
    gc.enable()


def main(argv: list[str] | None = None, *, _after_startup: Callable[[], None] | None = None) -> int:
    """Entry point of `migrate-job` and `python -m job`; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in COMMANDS for a in argv) and not any(a in ("-h", "--help", "--version") for a in argv):
        argv.insert(0, "migrate")  # `migrate-job [options]` means `migrate-job migrate [options]`
    args = parser.parse_args(argv)
    command = args.command or "migrate"
    _install_signal_handlers()
    run_id = uuid.uuid4().hex[:12]
    started = time.monotonic()

    from job.config import early_log_format, load_settings
    from job.report import configure

    overrides = {k: getattr(args, k) for k in _SETTING_ARGS if hasattr(args, k)}
    overrides["interactive"] = sys.stdin is not None and sys.stdin.isatty()
    report_style = (
        command in _REPORT_COMMANDS
        or bool(overrides.get("dry_run"))
        or (command == "fleet" and args.fleet_action in ("status", "validate"))
    )
    stream = sys.stderr if report_style else sys.stdout
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        fmt = early_log_format(overrides.get("log_format"))
        log = configure(fmt=fmt, level="info", run_id=run_id, secrets=[], stream=stream)
        log.error(exc.event, **{**exc.fields, "error": exc.message, "exit_code": int(exc.exit_code)})
        if command in _JOB_COMMANDS:
            log.info(
                "run.finished",
                exit_code=int(exc.exit_code),
                **_counts(command, None),
                duration_ms=round((time.monotonic() - started) * 1000),
                dry_run=bool(overrides.get("dry_run")),
            )
        return int(exc.exit_code)
    except Interrupted as exc:
        return int(exc.exit_code)
    log = configure(
        fmt=settings.log_format,
        level=settings.log_level,
        run_id=run_id,
        secrets=settings.secrets(),
        stream=stream,
    )
    from job import commands
    from job.config import parse_duration

    if _after_startup is not None:
        _after_startup()

    def seconds(value: str | None) -> float | None:
        try:
            return None if value is None else parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"invalid --timeout: {exc}") from None

    state = commands.RunState()
    actions: dict[str, Callable[[], object]] = {
        "migrate": lambda: commands.migrate(settings, log, state, run_id),
        "status": lambda: commands.status(settings, log, sys.stdout, args.output, args.show_all),
        "validate": lambda: (
            commands.validate_offline(settings, log, sys.stdout)
            if args.offline
            else commands.validate(settings, log, sys.stdout)
        ),
        "hash": lambda: commands.hash_files(settings, log, sys.stdout),
        "dump": lambda: commands.dump(settings, log, sys.stdout),
        "create": lambda: commands.create(
            settings, _create_name(args), sys.stdout, style=args.style, version_style=args.version_style
        ),
        "repair": lambda: commands.repair(
            settings, log, state, run_id, mode=args.mode, versions=args.versions, accept=args.accept, forget=args.forget
        ),
        "rollback": lambda: commands.rollback(
            settings, log, state, run_id, steps=args.steps, to=args.to, name=args.name
        ),
        "reset": lambda: commands.rollback(settings, log, state, run_id, everything=True, action="reset"),
        "refresh": lambda: commands.refresh(settings, log, state, run_id),
        "baseline": lambda: commands.baseline_cmd(settings, log, run_id, args.baseline_to, sys.stdout, state),
        "config": lambda: commands.config_show(settings, sys.stdout, args.output),
        "lint": lambda: commands.lint(settings, log, args.files, args.output, sys.stdout),
        "diff": lambda: commands.schema_diff(settings, log, sys.stdout, args.output, args.details),
        "wait": lambda: commands.wait(settings, log, seconds(getattr(args, "timeout", None))),
        "fleet": lambda: commands.fleet(
            settings,
            log,
            run_id,
            args.fleet_action,
            sys.stdout,
            version=args.target_version,
            timeout=seconds(args.timeout) or 0.0,
        ),
        "wait-for-version": lambda: commands.wait_for_version(
            settings, log, args.target_version, seconds(args.timeout) or 0.0
        ),
    }
    code = ExitCode.OK
    error_text: str | None = None
    error_fields: dict[str, Any] = {}
    try:
        log.debug("run.started", command=command, version=__version__)
        _run_mapped(actions[command], settings)
    except Interrupted as exc:
        code = exc.exit_code
        applied = [o.migration.key for o in state.applied]
        not_applied = [m.key for m in state.pending if m.key not in applied]
        rolled_back = [o.migration.key for o in state.rolled_back]
        undo = {
            "rolled_back": rolled_back,
            "not_rolled_back": [m.key for m in state.to_roll_back if m.key not in rolled_back],
        }
        log.warning(
            "run.interrupted",
            signal=signal.Signals(exc.signum).name,
            applied=applied,
            not_applied=not_applied,
            **(undo if command in _ROLLBACK_COMMANDS else {}),
            exit_code=int(code),
        )
    except JobError as exc:
        code = exc.exit_code
        error_text, error_fields = exc.message, exc.fields
        fields = dict(exc.fields)
        problems = getattr(exc, "problems", None)
        if problems:
            fields["problems"] = problems
        log.error(exc.event, **{**fields, "error": exc.message, "exit_code": int(code)})
    except BrokenPipeError:  # `migrate-job status | head`: the reader went away, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as exc:  # a bug: still exit cleanly with a one-line error and exit 1
        code = ExitCode.MIGRATION_FAILED
        error_text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        log.error("run.crashed", error=f"{type(exc).__name__}: {exc}".splitlines()[0], exit_code=int(code))
    _report_to_orchestrators(settings, command, int(code), state, error_text, error_fields, secrets=settings.secrets())
    if command in _JOB_COMMANDS:
        log.info(
            "run.finished",
            exit_code=int(code),
            **_counts(command, state),
            duration_ms=round((time.monotonic() - started) * 1000),
            dry_run=bool(settings.dry_run),
        )
    return int(code)


def _run_mapped(action: Callable[[], object], settings: Any) -> None:
    """Run the command; a database failure outside a migration body becomes a JobError (job.dberror)."""
    import psycopg

    try:
        action()
    except psycopg.Error as exc:
        from job.db import target_description
        from job.dberror import as_job_error

        try:
            target = target_description(settings)
        except JobError:
            target = {}
        raise as_job_error(exc, target) from None


def _counts(command: str, state: Any) -> dict[str, int]:
    """run.finished's counts: `applied` / `pending` (still to apply), and for rollback, reset and refresh
    `rolled_back` (refresh: both; its `pending` is what is left to re-apply)."""
    applied = list(getattr(state, "applied", []))
    pending = list(getattr(state, "pending", []))
    rolled = list(getattr(state, "rolled_back", []))
    to_undo = list(getattr(state, "to_roll_back", []))
    apply_counts = {"applied": len(applied), "pending": max(0, len(pending) - len(applied))}
    if command == "refresh":
        return {"rolled_back": len(rolled), **apply_counts}
    if command in _ROLLBACK_COMMANDS:
        return {"rolled_back": len(rolled), "pending": max(0, len(to_undo) - len(rolled))}
    return apply_counts


def _create_name(args: argparse.Namespace) -> str:
    """`create NAME` or `create --name NAME` (the form of the Python migration managers); one of them, once."""
    given = [str(n) for n in (args.name, args.name_option) if n]
    if not given:
        raise ConfigError("create: give the migration's name, e.g. `create add_user_email` or `--name add_user_email`")
    if len(given) == 2 and given[0] != given[1]:
        raise ConfigError(f"create: two names given ({given[0]!r} and --name {given[1]!r}); give one")
    return given[0]


def _report_to_orchestrators(
    settings: Any, command: str, code: int, state: Any, error: str | None, fields: dict[str, Any], *, secrets: list[str]
) -> None:
    """Kubernetes termination message; GitHub step summary and error annotation. Never raises."""
    from job.report import (
        append_file,
        github_annotation,
        github_summary,
        redact_text,
        termination_message,
        write_termination_log,
    )

    if command in _REPORT_COMMANDS or getattr(settings, "dry_run", False):
        return
    safe_error = redact_text(error, secrets) if error else None
    applied = list(getattr(state, "applied", []))
    rolled_back = list(getattr(state, "rolled_back", []))
    done = [f"{len(rolled_back)} migration(s) rolled back"] if command in _ROLLBACK_COMMANDS else []
    if command not in ("rollback", "reset"):
        done.append(f"{len(applied)} migration(s) applied")
    summary = safe_error or ", ".join(done)
    write_termination_log(settings.termination_log, termination_message(command, code, summary))
    if settings.github_actions:
        if settings.github_step_summary:
            text = github_summary(command, code, applied, safe_error, rolled_back=rolled_back)
            append_file(settings.github_step_summary, text)
        if safe_error:
            print(
                github_annotation(safe_error, fields.get("file"), fields.get("line"), fields.get("column")), flush=True
            )
