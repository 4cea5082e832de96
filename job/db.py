"""Connections: connect directly with an application_name, wait for the server with backoff,
and run a multi-statement script in one round trip while knowing which statement failed."""

from __future__ import annotations

import contextlib
import functools
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq
from psycopg.abc import PQGenConn
from psycopg.pq import ExecStatus
from psycopg.waiting import Wait

from job import cancel
from job.config import Settings
from job.errors import ConfigError, DatabaseUnreachable, Interrupted, ReadOnlyTarget
from job.report import Log, add_secret

Connection = psycopg.Connection[Any]


def _url_params(settings: Settings) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    url = settings.database_url.get_secret_value() if settings.database_url else ""
    try:
        return dict(conninfo_to_dict(url))
    except psycopg.ProgrammingError:
        unknown = _unknown_url_options(url)
        if unknown:
            raise ConfigError(
                f"invalid setting DATABASE_URL: unknown connection option {', '.join(unknown)} in the URL's query "
                "(see libpq's parameter key words)",
                setting="DATABASE_URL",
            ) from None
        raise ConfigError("invalid setting DATABASE_URL: not a valid connection string or URL") from None


_OPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _unknown_url_options(url: str) -> list[str]:
    """Names in a URL's query that libpq does not know; only names, and only where no secret can be among them.

    libpq's own message is never shown: it can quote the password. Nothing is named when part of the query
    could be a password: a query holding "@" (the rest of a userinfo whose password has a "?",
    postgresql://u:pa?ss@host), one that sets a password (its value may hold "&", which splits it), or one
    with a part that is not name=value.
    """
    from urllib.parse import parse_qsl, urlsplit

    if not url.startswith(("postgresql://", "postgres://")):
        return []
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    parts = query.split("&")
    if "@" in query or "pass" in query.lower() or not all("=" in part for part in parts):
        return []
    known = {str(o.keyword.decode()) for o in pq.Conninfo.get_defaults()}
    names = [k for k, _ in parse_qsl(query, keep_blank_values=True)]
    return [n for n in names if _OPTION_NAME.fullmatch(n) and n not in known]


_resolved: dict[tuple[str, str], dict[str, Any]] = {}


def connection_params(settings: Settings) -> dict[str, Any]:
    """libpq parameters for one connection attempt, from the first configured source.

    1. DATABASE_URL / PG* variables; 2. a Secrets Manager secret; 3. an SSM parameter; with
    MIGRATE_IAM_AUTH=true the password is a fresh RDS IAM token on every call. TLS settings are
    applied on top (`apply_tls`). Secrets fetched from AWS are added to the log redactor.
    """
    from job import aws

    params = _source_params(settings)
    apply_tls(settings, params)
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


def _source_params(settings: Settings) -> dict[str, Any]:
    """The parameters of the configured source with the MIGRATE_DB_* overrides, before TLS and IAM."""
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
    return params


def tls_choice(settings: Settings) -> tuple[str | None, str]:
    """(sslmode, where it came from) of the job's connections; sslmode None = libpq's default."""
    raw = _source_params(settings)
    return settings.tls(url_sslmode=raw.get("sslmode"), url_sslrootcert=raw.get("sslrootcert"))


def apply_tls(settings: Settings, params: dict[str, Any]) -> None:
    """Set sslmode/sslrootcert in `params` by the documented precedence (see config.choose_sslmode).

    A root certificate file that does not exist is a configuration error (exit 2), found before connecting.
    """
    sslmode, _ = settings.tls(url_sslmode=params.get("sslmode"), url_sslrootcert=params.get("sslrootcert"))
    if sslmode:
        params["sslmode"] = sslmode
    if settings.sslrootcert:
        params["sslrootcert"] = str(settings.sslrootcert)
    rootcert = params.get("sslrootcert") or settings.libpq_sslrootcert
    # `require` too: with a root certificate file libpq verifies the chain (as verify-ca); without one it
    # would silently not, so a mistyped path must not pass.
    verifying = ("require", "verify-ca", "verify-full")
    if rootcert and rootcert != "system" and sslmode in verifying and not Path(rootcert).is_file():
        where = _rootcert_origin(settings, params)
        raise ConfigError(
            f"root certificate file {rootcert} ({where}) does not exist: sslmode={sslmode} cannot verify the "
            "server without it",
            setting=where,
        )


def _rootcert_origin(settings: Settings, params: dict[str, Any]) -> str:
    """Where the root certificate of `params` was set: MIGRATE_SSLROOTCERT, the URL's sslrootcert or PGSSLROOTCERT."""
    if settings.sslrootcert:
        return "MIGRATE_SSLROOTCERT"
    return "sslrootcert" if params.get("sslrootcert") else "PGSSLROOTCERT"


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
    """One connection attempt. Raises psycopg.Error on failure (see `startup_failure` for its meaning)."""
    return _open(connection_params(settings), settings, purpose=purpose, timeout=timeout)


def _open(params: dict[str, Any], settings: Settings, *, purpose: str, timeout: float) -> Connection:
    cancel.check()
    own = dict(params)
    # The job names its sessions (MIGRATE_APPLICATION_NAME) and bounds each attempt by what is left of
    # MIGRATE_CONNECT_TIMEOUT; a URL's own connect_timeout, if shorter, still applies.
    own.pop("application_name", None)
    url_timeout = own.pop("connect_timeout", None)
    attempt = max(1, min(int(timeout), 30))
    if url_timeout is not None and str(url_timeout).strip().isdigit() and int(url_timeout) > 0:
        attempt = min(attempt, int(url_timeout))
    conn = _JobConnection.connect(
        "",
        autocommit=True,
        application_name=f"{settings.application_name}:{purpose}",
        connect_timeout=attempt,
        **own,
    )
    cancel.register(conn)
    return conn


def connect(settings: Settings, log: Log, *, purpose: str, timeout: float | None = None) -> Connection:
    """Connect, retrying with capped exponential backoff until `timeout` (default MIGRATE_CONNECT_TIMEOUT).

    Only failures that can heal are retried (`startup_failure`); the others raise DatabaseUnreachable
    at once with the server's reason. Raises DatabaseUnreachable with the last error once the time is up.
    """
    budget = settings.connect_timeout if timeout is None else timeout
    deadline = time.monotonic() + budget
    attempt = 0
    delay = 0.25
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        params = connection_params(settings)
        try:
            conn = _open(params, settings, purpose=purpose, timeout=max(1.0, remaining))
        except psycopg.Error as exc:
            failure = startup_failure(exc, params, settings)
            remaining = deadline - time.monotonic()
            if not failure.retry:
                raise DatabaseUnreachable(
                    f"cannot connect to the database: {failure.reason}; not retried: {failure.why}",
                    sqlstate=failure.sqlstate,
                    attempts=attempt,
                    **target_description(settings),
                ) from None
            if remaining <= 0:
                raise DatabaseUnreachable(
                    f"database unreachable after {attempt} attempt(s) in {budget:g}s: {failure.reason}",
                    sqlstate=failure.sqlstate,
                    attempts=attempt,
                    **target_description(settings),
                ) from None
            log.info(
                "db.waiting",
                attempt=attempt,
                error=failure.reason,
                sqlstate=failure.sqlstate,
                retry_in_s=round(min(delay, remaining), 2),
            )
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


def refuse_read_only(conn: Connection, settings: Settings) -> None:
    """Raise ReadOnlyTarget (exit 9) when the target only accepts reads: call before anything that writes.

    A hot standby (`pg_is_in_recovery()`: an RDS/Aurora reader endpoint, a replica) or a session that starts
    read-only (`default_transaction_read_only = on`, set on the database or role, or during a failover).
    """
    row = conn.execute(
        "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on', "
        "current_setting('default_transaction_read_only') = 'on'"
    ).fetchone()
    in_recovery, tx_read_only, default_read_only = row if row is not None else (False, False, False)
    if in_recovery:
        why = "a read-only replica (hot standby: pg_is_in_recovery() is true)"
    elif tx_read_only or default_read_only:
        why = "read-only (default_transaction_read_only = on: a reader endpoint, a failover in progress, or set so)"
    else:
        return
    raise ReadOnlyTarget(
        f"the target database {conn.info.dbname} is {why}; nothing was changed: point the job at the writer "
        "(primary) endpoint",
        replica=bool(in_recovery),
        **target_description(settings),
    )


# ---------------------------------------------------------------------------- failed connection attempts
#
# Which failures are retried is decided by SQLSTATE, never by message text. libpq keeps the SQLSTATE of
# the server's startup error (the ErrorResponse that rejects the connection) only inside the PGconn; psycopg
# 3.3 exposes neither it nor the error fields for a failed attempt (`exc.sqlstate` is None, `exc.diag` is
# empty, see psycopg issue #1188) — only `exc.pgconn` with `needs_password` / `used_password`, which cannot
# tell a wrong password from a database that does not exist yet. So each attempt runs with libpq's error
# verbosity VERBOSE (PQsetErrorVerbosity through ctypes on `pgconn.pgconn_ptr`, which psycopg documents for
# calling unwrapped libpq functions), which makes libpq put the SQLSTATE in its fixed place in the message
# ("FATAL:  28P01: ..."); we read that code and raise psycopg's exception class for it, so callers match
# classes (InvalidPassword, InvalidCatalogName, ...). Failures libpq decides itself have no SQLSTATE; for
# those we use what libpq and the protocol tell without reading text:
# - options libpq rejects (bad sslmode value, port=abc): the PGconn is BAD right after PQconnectStart,
#   before any network I/O (psycopg resolves host names before, so this is not DNS) → InvalidConnectionOption;
# - no password given but the server wants one: `pgconn.needs_password`;
# - TLS required but the server has none: we ask the server ourselves (the protocol's SSLRequest, answered
#   with the single byte 'N' by a server without TLS);
# - a server certificate that sslmode verify-ca/verify-full rejects: we make the same TLS handshake with
#   Python's ssl, whose verification error is a class of its own (ssl.SSLCertVerificationError);
# - anything else (refused, timeout, DNS, network, a TLS handshake failure) is retried until the timeout.
# Where the verbosity cannot be set (libpq not found), server errors have no SQLSTATE and are retried
# like before: never a wrong "fail at once".

_VERBOSE = 2  # PQERRORS_VERBOSE
_DEFAULT = 1  # PQERRORS_DEFAULT
_SQLSTATE_IN_MESSAGE = re.compile(r":  ([0-9A-Z]{5}): ")
_LOCATION_LINE = re.compile(r"^\S[^\n]*:\s+\w+, [\w./-]+:\d+\s*$", re.MULTILINE)

# Failures that heal: the server is starting, stopping, full, or the database is being created.
RETRIED_SQLSTATES = {
    "3D000": "the database does not exist (yet): a new instance or a parallel CREATE DATABASE",
    "53300": "too many connections",
    "57P03": "the database system is starting up or shutting down",
    "57P01": "the server is shutting down",
    "57P02": "the server crashed and is restarting",
}
RETRIED_CLASSES = ("08", "53")  # connection exception, insufficient resources


class InvalidConnectionOption(psycopg.OperationalError):
    """libpq rejected the connection options before any network I/O (e.g. sslmode=bogus, port=abc)."""


@dataclass(frozen=True)
class StartupFailure:
    """Why a connection attempt failed, and whether retrying can help."""

    retry: bool
    reason: str  # libpq's/the server's message, one line, without the password
    why: str  # for a failure not retried: why retrying would not help
    sqlstate: str | None = None


def startup_failure(exc: psycopg.Error, params: dict[str, Any], settings: Settings) -> StartupFailure:
    """What a failed connection attempt means: retry it, or fail at once (with why)."""
    reason = _one_line(exc)
    code = exc.sqlstate
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return StartupFailure(True, reason, "")
    if code is not None:
        if code in RETRIED_SQLSTATES or code[:2] in RETRIED_CLASSES:
            return StartupFailure(True, reason, "", code)
        return StartupFailure(False, reason, _permanent(exc), code)
    if isinstance(exc, InvalidConnectionOption):
        return StartupFailure(False, reason, "libpq rejected a connection option (check DATABASE_URL)")
    pgconn = exc.pgconn
    if pgconn is not None and _attr(pgconn, "needs_password"):
        return StartupFailure(
            False, reason, "the server asks for a password and none is configured (DATABASE_URL or PGPASSWORD)"
        )
    sslmode = str(params.get("sslmode") or "")
    if sslmode in ("require", "verify-ca", "verify-full") and pgconn is not None:
        host, port, hostaddr = (_text(_attr(pgconn, name)) for name in ("host", "port", "hostaddr"))
        rootcert = str(params.get("sslrootcert") or settings.libpq_sslrootcert or "")
        if "," in str(params.get("host") or "") + str(params.get("hostaddr") or ""):
            rootcert = ""  # several hosts: the one that failed last says nothing of the others (no verdict)
        problem = _tls_problem(hostaddr or host, host, port, sslmode, rootcert)
        if problem is not None:
            _, origin = tls_choice(settings)
            if problem == _NO_TLS:
                return StartupFailure(
                    False,
                    f"the server at {host}:{port} does not support TLS, but sslmode={sslmode} ({origin}) requires it",
                    "enable ssl on the server, or lower the TLS setting (MIGRATE_SSLMODE / DATABASE_SSL=false)",
                )
            where = _rootcert_origin(settings, params)
            return StartupFailure(
                False,
                reason,
                f"the server's certificate does not verify against the root certificate {rootcert} ({where}) as "
                f"sslmode={sslmode} ({origin}){_REQUIRE_VERIFIES if sslmode == 'require' else ''} requires: {problem}; "
                "set the right root certificate or fix the "
                "server's certificate",
            )
    return StartupFailure(True, reason, "")


def _permanent(exc: psycopg.Error) -> str:
    if isinstance(exc, pgerrors.InvalidPassword):
        return "wrong password for the role (DATABASE_URL / PGPASSWORD / the secret)"
    if isinstance(exc, pgerrors.InvalidAuthorizationSpecification):
        return "the server rejects this role or client (pg_hba.conf, a missing role): fix the server or the user"
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return "the role may not connect to this database (GRANT CONNECT ON DATABASE ...)"
    return "the server refused the connection for a reason that does not heal by waiting"


def _attr(pgconn: Any, name: str) -> Any:
    try:
        return getattr(pgconn, name)
    except psycopg.Error:
        return None


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ""


_NO_TLS = "no TLS"
_REQUIRE_VERIFIES = " with a root certificate (libpq then verifies the chain, as verify-ca)"


def _tls_problem(address: str, host: str, port: str, sslmode: str, rootcert: str, timeout: float = 5.0) -> str | None:
    """What makes TLS to the server fail for good, asked of the server itself; None when unsure.

    `_NO_TLS` when it answers the protocol's SSLRequest with 'N' (it has no TLS). With sslmode verify-ca or
    verify-full and a root certificate file (or `system`), or require and a root certificate file, the TLS
    handshake libpq makes, checked as libpq checks it (the chain; for verify-full also the host name): the
    verification error when the server's certificate fails it. A plain SSLContext, not
    create_default_context, so that no check is stricter than libpq's; any other failure (network, protocol
    version, a client certificate the server wants) is "unsure".
    """
    if not address or address.startswith("/") or not port.isdigit():
        return None  # Unix-domain sockets never use TLS
    import socket
    import ssl
    import struct

    context: ssl.SSLContext | None = None
    verifies = sslmode in ("verify-ca", "verify-full") and bool(rootcert)
    if sslmode == "require" and rootcert and rootcert != "system":
        verifies = Path(rootcert).is_file()  # libpq's `require` with a root certificate file acts as verify-ca
    if verifies:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The host name as OpenSSL checks it; for an IP address libpq also accepts a dNSName or the CN holding it,
        # which OpenSSL does not: there only the chain is checked (a name libpq rejects stays "unsure").
        context.check_hostname = sslmode == "verify-full" and not _is_ip(host or address)
        with contextlib.suppress(ssl.SSLError):
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # no key-size verdict stricter than libpq's OpenSSL
        try:
            if rootcert == "system":
                context.load_default_certs()
            else:
                context.load_verify_locations(cafile=rootcert)
        except (OSError, ssl.SSLError):
            context = None
    try:
        with socket.create_connection((address, int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
            answer = sock.recv(1)
            if answer == b"N":
                return _NO_TLS
            if answer != b"S" or context is None:
                return None
            with context.wrap_socket(sock, server_hostname=host or address):
                return None  # the certificate verifies: the failure was something else
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message or "certificate verify failed").rstrip(".")
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return None


class _JobConnection(psycopg.Connection[Any]):
    """A psycopg connection whose startup errors carry the server's SQLSTATE (see above)."""

    @classmethod
    def _connect_gen(cls, conninfo: str = "") -> PQGenConn[Self]:
        pgconn = yield from _startup(conninfo)
        return cls(pgconn)


def _startup(conninfo: str) -> PQGenConn[pq.abc.PGconn]:
    """psycopg's connection generator, with libpq's error verbosity VERBOSE while the connection starts."""
    conn = pq.PGconn.connect_start(conninfo.encode())
    if conn.status == pq.ConnStatus.BAD:
        raise InvalidConnectionOption(_message(conn), pgconn=pgerrors.finish_pgconn(conn))
    _set_verbosity(conn, _VERBOSE)
    while True:
        status = conn.connect_poll() if conn.status != pq.ConnStatus.BAD else pq.PollingStatus.FAILED
        if status == pq.PollingStatus.OK:
            break
        if status in (pq.PollingStatus.READING, pq.PollingStatus.WRITING):
            wait = Wait.R if status == pq.PollingStatus.READING else Wait.W
            while not (yield conn.socket, wait):
                pass
            continue
        raise _startup_error(_message(conn), conn)
    _set_verbosity(conn, _DEFAULT)
    conn.nonblocking = 1
    return conn


def _set_verbosity(conn: pq.abc.PGconn, verbosity: int) -> None:
    libpq, ptr = _libpq(), getattr(conn, "pgconn_ptr", None)
    if libpq is not None and ptr is not None:
        libpq.PQsetErrorVerbosity(ptr, verbosity)


def _message(conn: pq.abc.PGconn) -> str:
    return conn.get_error_message("utf-8")


def _startup_error(message: str, conn: pq.abc.PGconn) -> psycopg.Error:
    """The psycopg exception for a failed start: the SQLSTATE's class when the server sent one."""
    codes = _SQLSTATE_IN_MESSAGE.findall(message)
    text = _LOCATION_LINE.sub("", message).strip()
    pgconn = pgerrors.finish_pgconn(conn)
    if not codes:
        return psycopg.OperationalError(f"connection failed: {text}", pgconn=pgconn)
    code = codes[-1]  # libpq appends one error per try (e.g. with and without TLS): the last one decided
    text = text.replace(f":  {code}: ", ":  ")
    return pgerrors.lookup(code)(f"connection failed: {text} (SQLSTATE {code})", pgconn=pgconn)


@functools.cache
def _libpq() -> Any:
    """The libpq that psycopg uses, through ctypes (only for PQsetErrorVerbosity); None when not found."""
    import ctypes

    try:
        if pq.__impl__ == "binary":
            import psycopg_binary

            libs = Path(psycopg_binary.__file__).parent.parent / "psycopg_binary.libs"
            candidates = [str(p) for p in sorted(libs.glob("libpq*"))]
        else:
            from psycopg.pq.misc import find_libpq_full_path

            found = find_libpq_full_path()
            candidates = [found] if found else []
        for path in candidates:
            lib = ctypes.CDLL(path)
            lib.PQlibVersion.restype = ctypes.c_int
            if lib.PQlibVersion() != pq.version():
                continue  # not the library psycopg loaded
            lib.PQsetErrorVerbosity.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.PQsetErrorVerbosity.restype = ctypes.c_int
            return lib
    except (OSError, AttributeError, ImportError):
        pass
    return None


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
