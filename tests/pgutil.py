"""Helpers for tests that need PostgreSQL; the fixtures are in conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from job.devserver import DevServer


class PgServer(Protocol):
    """A server the tests may create databases on; ``url()`` is its admin database."""

    def url(self, dbname: str = ...) -> str: ...


class DevServerFactory(Protocol):
    """Starts a private DevServer, stopped at the test's teardown."""

    def __call__(self, *, port: int | None = None) -> DevServer: ...


@dataclass(frozen=True)
class ExternalServer:
    """The server given by TEST_DATABASE_URL; ``url()`` without a name is that URL itself."""

    admin_url: str

    def __post_init__(self) -> None:
        if urlsplit(self.admin_url).scheme not in ("postgresql", "postgres"):
            raise ValueError("TEST_DATABASE_URL must be a postgresql:// URL")

    def url(self, dbname: str | None = None) -> str:
        if dbname is None:
            return self.admin_url
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


@contextmanager
def new_database(server: PgServer, name: str | None = None) -> Iterator[str]:
    """The URL of a new empty database on `server` (test_<random hex> unless named), dropped at exit."""
    name = name or f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def postmaster_pids(datadir: Path) -> set[int]:
    """The live postmaster serving ``datadir`` (per postmaster.pid) and its live children."""
    try:
        postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return set()
    family = {postmaster} | {pid for pid, ppid in _processes().items() if ppid == postmaster}
    return live(family)


def live(pids: set[int]) -> set[int]:
    """Those of ``pids`` that are running (zombies count as gone)."""
    return {pid for pid in pids if pid in _processes()}


def pids_mentioning(text: str) -> set[int]:
    """Live processes whose command line contains ``text``."""
    found = set()
    for pid in _processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline:
            found.add(pid)
    return found


def _processes() -> dict[int, int]:
    """Live (non-zombie) process ids mapped to their parent's id, from /proc."""
    processes = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            processes[int(entry.name)] = int(fields[1])
    return processes
