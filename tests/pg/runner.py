"""Helpers for the production-safety tests: the real CLI as a live subprocess, plus database probes.

`Job` starts `python -m job ...` with `subprocess.Popen` and collects its stdout/stderr lines on
threads, so a test can wait for a log event, send a signal while a statement runs, and then check
what the process printed. The environment, log parsing and `query` come from tests/pg/cli.py.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from tests.pg.cli import clean_env, command, fail_on_crash, parse_logs, query

T = TypeVar("T")


class Job:
    """One `python -m job ARGS` process whose output lines are collected while it runs."""

    def __init__(self, args: list[str], *, env: dict[str, str], cwd: Path, allow_crash: bool = False) -> None:
        self.args = args
        self.allow_crash = allow_crash
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            command(*args),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._lock:
                into.append(line)
        stream.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self.stderr_lines)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def logs(self) -> list[dict[str, Any]]:
        with self._lock:
            return parse_logs(self.stdout_lines) + parse_logs(self.stderr_lines)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    def event(self, name: str) -> dict[str, Any]:
        """The one log event called `name` (fails the test with the output when it is not exactly one)."""
        found = self.events(name)
        assert len(found) == 1, f"expected one {name!r} event, got {len(found)}\n{self.describe()}"
        return found[0]

    def wait_for_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """The first `name` event, polling the output until it appears (fails if the process ends first)."""
        return wait_until(
            lambda: next(iter(self.events(name)), None),
            timeout,
            f"log event {name!r} from {self.args}",
            on_timeout=self.describe,
            stop_if=lambda: self.proc.poll() is not None and not self.events(name),
        )

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code; raises subprocess.TimeoutExpired if the process is still running after `timeout`."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        if not self.allow_crash:
            fail_on_crash(self.output, self.describe())
        return code

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        """Kill the process if it still runs (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with suppress(subprocess.TimeoutExpired):
            self.wait(timeout=10)

    def describe(self) -> str:
        return (
            f"$ python -m job {' '.join(self.args)}\nexit {self.proc.poll()}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


class Jobs:
    """Starts `Job`s for one test and kills every one still running at teardown."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[Job] = []

    def start(self, database_url: str | None, *args: str, **env: str) -> Job:
        job = Job(list(args), env=clean_env(database_url, **env), cwd=self.cwd)
        self.started.append(job)
        return job

    def run(self, database_url: str | None, *args: str, timeout: float = 120.0, **env: str) -> Job:
        """Start the job and wait for it to finish."""
        job = self.start(database_url, *args, **env)
        job.wait(timeout)
        return job

    def stop_all(self) -> None:
        for job in self.started:
            job.stop()


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
    stop_if: Callable[[], bool] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if stop_if is not None and stop_if():
            value = probe()
            if value:
                return value
            raise AssertionError(f"gave up waiting for {what}" + (f"\n{on_timeout()}" if on_timeout else ""))
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}" + (f"\n{on_timeout()}" if on_timeout else "")
            )
        time.sleep(interval)


# ---------------------------------------------------------------------------- database


def table_exists(database_url: str, name: str) -> bool:
    return query(database_url, "SELECT to_regclass(%s) IS NOT NULL", (name,)) == [(True,)]


def column_exists(database_url: str, table: str, column: str) -> bool:
    rows = query(
        database_url,
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped",
        (table, column),
    )
    return bool(rows)


def index_valid(database_url: str, name: str) -> bool | None:
    """True/False for a valid/INVALID index called `name`, None when there is no such index."""
    rows = query(database_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,))
    return bool(rows[0][0]) if rows else None


def sessions(database_url: str, application_name: str, query_like: str = "%") -> list[dict[str, Any]]:
    """Sessions on the URL's database with this application_name whose current/last query matches."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s AND query LIKE %s",
            (application_name, query_like),
        ).fetchall()


def active_session(database_url: str, application_name: str, query_like: str) -> dict[str, Any] | None:
    """The session of `application_name` currently running a query LIKE `query_like`, if any."""
    for s in sessions(database_url, application_name, query_like):
        if s["state"] == "active":
            return s
    return None


RUNNER_SESSION = "migrate-job:migrate"


def runner_sessions(database_url: str) -> list[dict[str, Any]]:
    """The runner's sessions on the URL's database (it names itself `migrate-job:migrate[ <version>]`)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(
            "SELECT pid, application_name, state, wait_event_type, wait_event, query FROM pg_stat_activity"
            " WHERE datname = current_database() AND (application_name = %s OR application_name LIKE %s)",
            (RUNNER_SESSION, RUNNER_SESSION + " %"),
        ).fetchall()


def migration_session(database_url: str, version: str, wait_event: str | None = None) -> dict[str, Any] | None:
    """The runner's session while it runs migration `version` (shown in its application_name), if it does.

    `wait_event`: only while it waits on that: `Lock` (a lock type: any heavyweight lock) or an event
    name such as `PgSleep`.
    """
    for s in runner_sessions(database_url):
        if s["application_name"] != f"{RUNNER_SESSION} {version}" or s["state"] != "active":
            continue
        if wait_event is None or wait_event in (s["wait_event_type"], s["wait_event"]):
            return s
    return None


def backend_alive(database_url: str, pid: int) -> bool:
    return bool(query(database_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))


def backends_running(database_url: str, query_like: str) -> list[int]:
    """Pids of active backends (other than ours) on the URL's database running a query LIKE `query_like`."""
    rows = query(
        database_url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle'"
        " AND pid <> pg_backend_pid() AND query LIKE %s",
        (query_like,),
    )
    return [int(r[0]) for r in rows]


def terminate(database_url: str, pid: int) -> None:
    assert query(database_url, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]


@contextmanager
def open_transaction(database_url: str, *statements: str) -> Iterator[psycopg.Connection[Any]]:
    """A session that ran `statements` in a transaction it keeps open; rolled back and closed at exit."""
    conn = psycopg.connect(database_url, application_name="test:holder")
    try:
        for statement in statements:
            conn.execute(statement)
        yield conn
    finally:
        conn.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on, below Linux's ephemeral range (as job.devserver picks them)."""
    for _ in range(200):
        port = random.randint(20000, 32767)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) != 0:
                return port
    raise RuntimeError("no free TCP port found")


def listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


class Background:
    """Run `fn` on a thread after `delay` seconds; `join()` re-raises what it raised."""

    def __init__(self, fn: Callable[[], object], *, delay: float = 0.0) -> None:
        self.error: BaseException | None = None
        self._fn = fn
        self._delay = delay
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            time.sleep(self._delay)
            self._fn()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 120.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "background action still running"
        if self.error is not None:
            raise self.error
