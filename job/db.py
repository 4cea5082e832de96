"""Connections: connect directly with an application_name, wait for the server with backoff,
and run a multi-statement script in one round trip while knowing which statement failed."""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import generators
from psycopg.pq import ExecStatus

from job import cancel
from job.config import Settings
from job.errors import ConfigError, DatabaseUnreachable, Interrupted
from job.report import Log, add_secret

Connection = psycopg.Connection[Any]


def _url_params(settings: Settings) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    url = settings.database_url.get_secret_value() if settings.database_url else ""
    try:
        return dict(conninfo_to_dict(url))
    except psycopg.ProgrammingError:
        raise ConfigError("invalid setting DATABASE_URL: not a valid connection string or URL") from None


_resolved: dict[tuple[str, str], dict[str, Any]] = {}


def connection_params(settings: Settings) -> dict[str, Any]:
    """libpq parameters for one connection attempt, from the first configured source.

    1. DATABASE_URL / PG* variables; 2. a Secrets Manager secret; 3. an SSM parameter; with
    MIGRATE_IAM_AUTH=true the password is a fresh RDS IAM token on every call. TLS settings are
    applied on top. Secrets fetched from AWS are added to the log redactor.
    """
    from job import aws

    source = settings.connection_source
    if source == "none":
        raise ConfigError(
            "no database configured: set DATABASE_URL (or the libpq PG* variables), MIGRATE_DATABASE_SECRET_ID, "
            "MIGRATE_DATABASE_URL_PARAMETER, or MIGRATE_IAM_AUTH=true with MIGRATE_DB_HOST",
            setting="DATABASE_URL",
        )
    if source == "secret":
        assert settings.database_secret_id
        key = ("secret", settings.database_secret_id)
        if key not in _resolved:
            raw = aws.get_secret(
                settings.database_secret_id,
                version_stage=settings.database_secret_version_stage,
                region=settings.aws_region,
            )
            add_secret(raw)
            _resolved[key] = aws.conninfo_from_secret(settings.database_secret_id, raw, settings.database_secret_key)
        params = dict(_resolved[key])
    elif source == "parameter":
        assert settings.database_url_parameter
        key = ("parameter", settings.database_url_parameter)
        if key not in _resolved:
            raw = aws.get_parameter(settings.database_url_parameter, region=settings.aws_region)
            add_secret(raw)
            _resolved[key] = aws.conninfo_from_secret(settings.database_url_parameter, raw, None)
        params = dict(_resolved[key])
    else:
        params = _url_params(settings)
    for field, name in (("db_host", "host"), ("db_port", "port"), ("db_name", "dbname"), ("db_user", "user")):
        value = getattr(settings, field)
        if value is not None:
            params[name] = str(value)
    if params.get("password"):
        add_secret(str(params["password"]))
    if settings.tenant_schema:
        # The tenant's schema first, for the whole session: RESET ALL (before every migration) returns to it.
        tenant_path = f"-c search_path={settings.tenant_schema},public"
        params["options"] = f"{params['options']} {tenant_path}" if params.get("options") else tenant_path
    sslmode = settings.effective_sslmode
    if sslmode:
        params["sslmode"] = sslmode
    if settings.sslrootcert:
        params["sslrootcert"] = str(settings.sslrootcert)
    if settings.iam_auth:
        if params.get("sslmode") in ("disable", "allow", "prefer"):
            raise ConfigError(
                "MIGRATE_IAM_AUTH requires TLS: set MIGRATE_SSLMODE to require, verify-ca or verify-full",
                setting="MIGRATE_SSLMODE",
            )
        host, user = params.get("host"), params.get("user")
        if not host or not user:
            raise ConfigError(
                "MIGRATE_IAM_AUTH needs the host and user (DATABASE_URL without password, PG* or MIGRATE_DB_HOST/USER)",
                setting="MIGRATE_IAM_AUTH",
            )
        token = aws.iam_token(
            host=str(host), port=int(params.get("port") or 5432), user=str(user), region=settings.aws_region
        )
        add_secret(token)
        params["password"] = token
    return params


def target_description(settings: Settings) -> dict[str, Any]:
    """Host, port, database and user of the target: safe to log (never the password or DSN)."""
    if settings.connection_source in ("url", "iam"):
        info = _url_params(settings)
        for field, name in (("db_host", "host"), ("db_port", "port"), ("db_name", "dbname"), ("db_user", "user")):
            if getattr(settings, field) is not None:
                info[name] = str(getattr(settings, field))
    else:
        key = (
            ("secret", settings.database_secret_id or "")
            if settings.connection_source == "secret"
            else ("parameter", settings.database_url_parameter or "")
        )
        info = dict(_resolved.get(key, {}))
    return {k: info[k] for k in ("host", "port", "dbname", "user") if info.get(k)}


_RDS_PROXY = re.compile(r"\.proxy-[a-z0-9]+\.[a-z0-9-]+\.rds\.amazonaws\.com$", re.IGNORECASE)
PGBOUNCER_PORT = "6432"


def refuse_pooler(settings: Settings) -> None:
    """Refuse targets that look like a connection pooler: session advisory locks need a direct session.

    PgBouncer in transaction mode hands each transaction to any server session (the lock would be
    taken and "held" on a session we do not own); RDS Proxy pins sessions. Detected by PgBouncer's
    default port 6432 and the RDS Proxy endpoint name; MIGRATE_ALLOW_POOLER=true overrides.
    """
    if settings.allow_pooler:
        return
    info = connection_params(settings)  # the host may come from a secret or an SSM parameter
    host, port = str(info.get("host", "")), str(info.get("port", ""))
    why = None
    if _RDS_PROXY.search(host):
        why = f"host {host} is an RDS Proxy endpoint"
    elif port == PGBOUNCER_PORT:
        why = f"port {port} is PgBouncer's default port"
    if why:
        raise ConfigError(
            f"refusing to migrate through a connection pooler ({why}): advisory locks need a direct connection; "
            "point DATABASE_URL at the database itself, or set MIGRATE_ALLOW_POOLER=true if it is not a pooler",
            setting="DATABASE_URL",
        )


def connect_once(settings: Settings, *, purpose: str, timeout: float = 10.0) -> Connection:
    """One connection attempt. Raises psycopg.OperationalError on failure."""
    params = connection_params(settings)
    cancel.check()
    conn = psycopg.connect(
        "",
        autocommit=True,
        application_name=f"{settings.application_name}:{purpose}",
        connect_timeout=max(1, min(int(timeout), 30)),
        **params,
    )
    cancel.register(conn)
    return conn


def connect(settings: Settings, log: Log, *, purpose: str, timeout: float | None = None) -> Connection:
    """Connect, retrying with capped exponential backoff until `timeout` (default MIGRATE_CONNECT_TIMEOUT).

    Raises DatabaseUnreachable with the last error once the time is up.
    """
    budget = settings.connect_timeout if timeout is None else timeout
    deadline = time.monotonic() + budget
    attempt = 0
    delay = 0.25
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            conn = connect_once(settings, purpose=purpose, timeout=max(1.0, remaining))
        except psycopg.OperationalError as exc:
            last = _one_line(exc)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnreachable(
                    f"database unreachable after {attempt} attempt(s) in {budget:g}s: {last}",
                    attempts=attempt,
                    **target_description(settings),
                ) from None
            log.info("db.waiting", attempt=attempt, error=last, retry_in_s=round(min(delay, remaining), 2))
            cancel.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0) * (0.5 + random.random() / 2)
            continue
        if attempt > 1:
            log.info("db.connected", attempts=attempt)
        return conn


class SideConnection:
    """A connection opened on first use for questions about other sessions while the main one is busy.

    It holds no lock and runs nothing of the migrations; closed with `close()` (idempotent).
    """

    def __init__(self, settings: Settings, purpose: str = "monitor") -> None:
        self._settings = settings
        self._purpose = purpose
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect_once(self._settings, purpose=self._purpose)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (never its class name alone unless it has no text)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


_one_line = one_line


@dataclass
class ScriptResult:
    """What happened to a script sent as one message."""

    completed: int  # statements that succeeded before the error (or all of them)
    error: pgerrors.Error | None


def run_script(conn: Connection, script: str) -> ScriptResult:
    """Send `script` (many statements) in one simple-query message: one network round trip.

    Returns how many statements completed and the first error, so the caller can name the
    statement that failed. The server skips the rest of the message after an error; an explicit
    transaction is then left in the failed state for the caller to roll back.
    """
    pgconn = conn.pgconn
    with conn.lock:
        pgconn.send_query(script.encode(conn.info.encoding))
        # execute() flushes what the non-blocking send could not push yet, then fetches every result:
        # a big migration (megabytes) would otherwise wait forever with half the message unsent.
        results = conn.wait(generators.execute(pgconn))
    completed = 0
    for res in results:
        if res.status in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK, ExecStatus.EMPTY_QUERY):
            completed += 1
            continue
        if res.status == ExecStatus.FATAL_ERROR:
            return ScriptResult(completed, pgerrors.error_from_result(res, encoding=conn.info.encoding))
        raise DatabaseUnreachable(f"unexpected result status {res.status.name} (COPY is not supported)")
    if pgconn.status != psycopg.pq.ConnStatus.OK:
        raise DatabaseUnreachable("the connection to the database was lost")
    return ScriptResult(completed, None)


@dataclass(frozen=True)
class Notice:
    """A NOTICE/WARNING/INFO the server sent (copied: psycopg's Diagnostic is only valid in its callback)."""

    severity: str
    message: str
    detail: str | None = None
    hint: str | None = None
    sqlstate: str | None = None

    @classmethod
    def of(cls, diag: psycopg.errors.Diagnostic) -> Notice:
        return cls(
            (diag.severity_nonlocalized or diag.severity or "NOTICE").upper(),
            diag.message_primary or "",
            diag.message_detail,
            diag.message_hint,
            diag.sqlstate,
        )

    def fields(self) -> dict[str, str]:
        found = {"severity": self.severity, "message": self.message, "detail": self.detail, "hint": self.hint}
        return {k: v for k, v in found.items() if v}


ResultHandler = Callable[[int, "psycopg.pq.abc.PGresult"], None]
NoticeHandler = Callable[[int, Notice], None]
_OK_RESULTS = (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK, ExecStatus.EMPTY_QUERY)


def stream_script(
    conn: Connection,
    script: str,
    on_result: ResultHandler | None = None,
    on_notice: NoticeHandler | None = None,
) -> ScriptResult:
    """Like `run_script`, but hand each result to `on_result(index, result)` the moment it arrives.

    Notices (RAISE NOTICE/WARNING) go to `on_notice(index, diagnostic)`, `index` being the statement that
    raised them. On SIGTERM/SIGINT (`Interrupted`, raised while waiting or inside a handler) the running
    statement is cancelled on the server and the remaining results are still read and handed over, so the
    caller knows exactly what committed; then `Interrupted` propagates.
    """
    from psycopg.abc import PQGen
    from psycopg.waiting import Ready, Wait

    pgconn = conn.pgconn
    notices: list[Notice] = []
    state: dict[str, Any] = {"completed": 0, "index": 0, "error": None, "interrupted": None}

    def interrupted(exc: Interrupted) -> None:
        if state["interrupted"] is None:  # first signal: stop the server's work, keep reading its answers
            state["interrupted"] = exc
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5.0)

    def handle(res: Any) -> None:
        # Bookkeeping first, callbacks last: a signal inside a callback must not skew the count.
        index = state["index"]
        pending = list(notices)
        notices.clear()
        if res is not None and res.status in _OK_RESULTS:
            state["index"] += 1
            if state["error"] is None:
                state["completed"] += 1
        elif res is not None and res.status == ExecStatus.FATAL_ERROR:
            if state["error"] is None:
                state["error"] = pgerrors.error_from_result(res, encoding=conn.info.encoding)
            res = None
        elif res is not None:
            raise DatabaseUnreachable(f"unexpected result status {res.status.name} (COPY is not supported)")
        for diag in pending:
            if on_notice is not None:
                on_notice(index, diag)
        if res is not None and on_result is not None and state["error"] is None:
            on_result(index, res)

    def gen() -> PQGen[None]:
        # A signal (Interrupted) can land anywhere in this Python code: catch it, cancel, and keep reading
        # so every result is consumed and the caller learns exactly what committed.
        sent = False
        while not sent:
            try:
                while pgconn.flush() != 0:  # a big script does not fit the socket buffer at once
                    ready = yield Wait.RW
                    if ready & Ready.R:
                        pgconn.consume_input()
                sent = True
            except Interrupted as exc:
                interrupted(exc)
        done = False
        while not done:
            try:
                while pgconn.is_busy():
                    ready = yield Wait.R
                    if ready:
                        pgconn.consume_input()
                res = pgconn.get_result()
                done = res is None
                handle(res)
            except Interrupted as exc:
                interrupted(exc)

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(Notice.of(diag))

    conn.add_notice_handler(collect)
    try:
        with conn.lock:
            pgconn.send_query(script.encode(conn.info.encoding))
            conn.wait(gen())
    finally:
        conn.remove_notice_handler(collect)
    if state["interrupted"] is not None:
        raise state["interrupted"]
    if state["error"] is None and pgconn.status != psycopg.pq.ConnStatus.OK:
        raise DatabaseUnreachable("the connection to the database was lost")
    return ScriptResult(state["completed"], state["error"])


def is_connection_lost(exc: BaseException, conn: Connection | None = None) -> bool:
    """True when `exc` means the session is gone (terminated backend, restart, network)."""
    if isinstance(exc, pgerrors.AdminShutdown | pgerrors.CrashShutdown | pgerrors.CannotConnectNow):
        return True
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pgerrors.QueryCanceled):
        if conn is None or conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            return True
        return exc.sqlstate is None or exc.sqlstate.startswith("08")
    return False
