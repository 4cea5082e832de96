"""The throwaway PostgreSQL server and the fixtures built on it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from job import devserver
from tests.pgutil import DevServerFactory, live, pids_mentioning, postmaster_pids

pytestmark = pytest.mark.pg


def test_db_url_is_an_empty_connectable_database(db_url: str) -> None:
    """db_url names a new UTF8 database we can connect to, with no user tables."""
    with psycopg.connect(db_url) as conn:
        name, encoding = conn.execute("SELECT current_database(), current_setting('server_encoding')").fetchone() or ()
        user_relations = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        ).fetchone()
    assert db_url.endswith(f"/{name}") and name.startswith("test_")
    assert encoding == "UTF8"
    assert user_relations == (0,)


def test_restart_keeps_data_and_port(devserver_factory: DevServerFactory) -> None:
    """A restarted DevServer comes back on the same port with its committed data."""
    server = devserver_factory()
    port = server.port
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.restart()
    assert server.port == port and server.is_running()
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT v, inet_server_port() FROM kept").fetchall() == [(42, port)]


def test_create_reuses_datadir_and_port(devserver_factory: DevServerFactory) -> None:
    """create() on an initialised data directory reuses it with its remembered port."""
    first = devserver_factory()
    with psycopg.connect(first.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE reused")
    first.stop()
    again = devserver.create(first.datadir, bindir=first.bindir)
    assert again.port == first.port
    again.start()
    with psycopg.connect(again.url("reused")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("reused",)


def test_stop_leaves_no_process(devserver_factory: DevServerFactory) -> None:
    """stop() ends the postmaster and all its children and frees the port."""
    server = devserver_factory()
    pids = postmaster_pids(server.datadir)
    assert len(pids) > 1  # the postmaster and its background workers
    server.stop()
    assert not server.is_running()
    assert not live(pids)
    assert not pids_mentioning(str(server.datadir))
    with socket.socket() as sock:
        assert sock.connect_ex((server.host, server.port)) != 0


def test_cli_start_url_stop(tmp_path: Path) -> None:
    """The CLI starts a server and prints its URL, repeats the URL, then stops the server."""
    datadir = tmp_path / "data"

    def cli(*args: str) -> str:
        command = [sys.executable, "-m", "job.devserver", *args, str(datadir)]
        root = Path(__file__).parents[2]
        return subprocess.run(command, capture_output=True, text=True, check=True, cwd=root).stdout

    try:
        url = cli("start").strip()
        assert cli("url").strip() == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cli("stop")
    assert not pids_mentioning(str(datadir))
