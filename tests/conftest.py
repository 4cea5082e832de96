"""Fixtures for tests that need PostgreSQL.

``pg_server`` is the server at TEST_DATABASE_URL (a URL allowed to create databases) if set,
else a DevServer started per test session (per pytest-xdist worker) and always stopped.
TEST_PG_BINDIR picks the PostgreSQL binaries of that DevServer (default: see find_bindir).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from job import devserver
from job.devserver import DevServer
from tests.pg.runner import Jobs
from tests.pgutil import DevServerFactory, ExternalServer, PgServer, new_database


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pg: the test needs a PostgreSQL server")
    # A developer's own ./.env (DATABASE_URL of their app) must not reach the runs the tests start.
    os.environ.setdefault("MIGRATE_ENV_FILE", "")


def _bindir() -> Path | None:
    value = os.environ.get("TEST_PG_BINDIR")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole session: TEST_DATABASE_URL's or a private DevServer."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield ExternalServer(url)
        return
    # Not under pytest's basetemp: a concurrent pytest session resets /tmp/pytest-of-<user> to 0700,
    # which would lock the (non-root) server out of its own data directory.
    root = Path(tempfile.mkdtemp(prefix="migrate-job-pg-"))
    server = devserver.create(root / "data", bindir=_bindir())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new empty database, dropped after the test."""
    with new_database(pg_server) as url:
        yield url


@pytest.fixture
def devserver_factory() -> Iterator[DevServerFactory]:
    """Starts private DevServers (to stop or restart at will); all are stopped at teardown."""
    servers: list[DevServer] = []
    root = Path(tempfile.mkdtemp(prefix="migrate-job-pgf-"))

    def start(*, port: int | None = None) -> DevServer:
        server = devserver.create(root / f"pg{len(servers)}", port=port, bindir=_bindir())
        servers.append(server)
        server.start()
        return server

    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        yield start
        for server in servers:
            stack.callback(server.stop)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    """Starts CLI subprocesses in tmp_path; any still running at the end of the test is killed."""
    started = Jobs(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
