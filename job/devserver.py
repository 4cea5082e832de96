"""A throwaway PostgreSQL server for ``make run``, the test suite and the benchmark.

Not part of the product's runtime path: no other ``job`` module may import this one.

PostgreSQL refuses to run as root, so when we are root every PostgreSQL command runs as the
system user ``pgserver`` (created if missing) through ``runuser``; the data directory is owned
by that user, and directories above it and above the binaries get the traverse bit it needs.

CLI::

    python -m job.devserver start DATADIR [--port N]   # prints the URL, leaves the server running
    python -m job.devserver stop DATADIR
    python -m job.devserver url DATADIR
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import random
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

RUN_USER = "pgserver"
PORT_FILE = "devserver.port"
CONF_FILE = "devserver.conf"
LOG_FILE = "server.log"
STOP_MODES = ("smart", "fast", "immediate")
# Settings for speed and for tests; durability does not matter for a throwaway server.
SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}
_SOCKET_NAME_MAX = len("/.s.PGSQL.65535.lock")
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes including the final NUL


class DevServerError(RuntimeError):
    """A PostgreSQL command failed or no usable installation was found."""


@dataclass
class DevServer:
    """A local PostgreSQL cluster in ``datadir`` served on ``host:port`` with trust authentication."""

    datadir: Path
    port: int
    bindir: Path
    host: str = "127.0.0.1"
    run_as: str | None = None  # OS user that runs PostgreSQL (needed when we are root)

    def url(self, dbname: str = "postgres") -> str:
        """The URL of database ``dbname`` as the superuser ``postgres`` (no password)."""
        return f"postgresql://postgres@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections; no-op if it is running."""
        if self.is_running():
            return
        self._write_settings()
        log = self.datadir / LOG_FILE
        result = self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir), "-l", str(log))
        if result.returncode != 0:
            raise DevServerError(f"{self.datadir}: server did not start: {_output(result)}\n{_tail(log)}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``) and wait; no-op if it is not running."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {STOP_MODES}, not {mode!r}")
        if not self.is_running():
            return
        result = self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.datadir))
        if result.returncode != 0 and self.is_running():
            raise DevServerError(f"{self.datadir}: server did not stop: {_output(result)}")

    def restart(self) -> None:
        """Stop then start the server, on the same port."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """Whether a server is running on ``datadir``."""
        return self._pg("pg_ctl", "status", "-D", str(self.datadir)).returncode == 0

    def _pg(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([str(self.bindir / program), *args], self.run_as)

    def _write_settings(self) -> None:
        settings = {
            **SETTINGS,
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": _socket_dir(self.datadir),
        }
        conf = "".join(f"{key} = {_conf_quote(value)}\n" for key, value in settings.items())
        _write(self.datadir / CONF_FILE, "# Written by job.devserver at each start.\n" + conf, self.run_as)
        _write(self.datadir / PORT_FILE, f"{self.port}\n", self.run_as)


def find_bindir(bindir: Path | None = None) -> Path:
    """PostgreSQL's bin directory: ``bindir`` if given, else pgserver's, else Debian's newest."""
    if bindir is not None:
        if not _is_bindir(bindir):
            raise DevServerError(f"{bindir} has no initdb, pg_ctl and postgres")
        return bindir.absolute()
    candidates: list[Path] = []
    spec = importlib.util.find_spec("pgserver")  # locates the wheel without importing it
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_major, reverse=True)
    for candidate in candidates:
        if _is_bindir(candidate):
            return candidate
    raise DevServerError(
        "no PostgreSQL binaries found: `pip install pgserver`, `apt-get install postgresql`, or pass a bindir"
    )


def create(datadir: Path, *, port: int | None = None, bindir: Path | None = None) -> DevServer:
    """A server for ``datadir``, running initdb if it is missing or empty (the server is not started).

    An initialised ``datadir`` is reused with the port remembered in ``datadir/devserver.port``
    unless ``port`` is given; a new one gets a free port.
    """
    datadir = Path(datadir).absolute()
    bindir = find_bindir(bindir)
    run_as = _run_user()
    if run_as is not None:
        _make_reachable(bindir, run_as)
    if not (datadir / "PG_VERSION").exists():
        _initdb(datadir, bindir, run_as)
    elif run_as is not None:
        _adopt(datadir, pwd.getpwnam(run_as))
    if port is None:
        port = _saved_port(datadir) or _free_port("127.0.0.1")
    _write(datadir / PORT_FILE, f"{port}\n", run_as)
    return DevServer(datadir=datadir, port=port, bindir=bindir, run_as=run_as)


def _existing(datadir: Path, bindir: Path | None) -> DevServer:
    datadir = Path(datadir).absolute()
    port = _saved_port(datadir)
    if port is None or not (datadir / "PG_VERSION").exists():
        raise DevServerError(f"{datadir} is not a data directory made by job.devserver")
    return DevServer(datadir=datadir, port=port, bindir=find_bindir(bindir), run_as=_run_user())


def _initdb(datadir: Path, bindir: Path, run_as: str | None) -> None:
    if datadir.exists() and any(datadir.iterdir()):
        raise DevServerError(f"{datadir} is neither empty nor a PostgreSQL data directory")
    datadir.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        os.chown(datadir, user.pw_uid, user.pw_gid)
        _make_traversable(datadir.parent, user)
    datadir.chmod(0o700)
    args = ["-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N"]
    result = _run([str(bindir / "initdb"), *args, "--no-instructions"], run_as)
    if result.returncode != 0:
        raise DevServerError(f"initdb {datadir} failed: {_output(result)}")
    with (datadir / "postgresql.conf").open("a") as conf:
        conf.write(f"\ninclude_if_exists = '{CONF_FILE}'\n")


def _adopt(datadir: Path, user: pwd.struct_passwd) -> None:
    """Give ``user`` a data directory another user owns (e.g. after the run user was recreated)."""
    if datadir.stat().st_uid == user.pw_uid:
        return
    for directory, _, files in os.walk(datadir):
        for path in (directory, *(os.path.join(directory, name) for name in files)):
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    _make_traversable(datadir.parent, user)


def _run(cmd: list[str], run_as: str | None) -> subprocess.CompletedProcess[str]:
    if run_as is not None:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    # cwd="/": the run user may not be allowed into our working directory.
    return subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)


def _run_user() -> str | None:
    """None when we may run PostgreSQL ourselves, else the (ensured) system user to run it as."""
    if os.geteuid() != 0:
        return None
    cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_USER]
    error = ""
    for _ in range(20):  # concurrent useradd calls (pytest-xdist workers) fail on /etc/passwd's lock
        try:
            pwd.getpwnam(RUN_USER)
            return RUN_USER
        except KeyError:
            pass
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return RUN_USER
        error = _output(result)
        time.sleep(0.1)
    raise DevServerError(f"cannot create system user {RUN_USER}: {error}")


def _make_reachable(bindir: Path, run_as: str) -> None:
    """Let ``run_as`` run the binaries (e.g. pgserver's wheel under /root, mode 0700)."""
    _make_traversable(bindir, pwd.getpwnam(run_as))
    result = _run([str(bindir / "postgres"), "--version"], run_as)
    if result.returncode != 0:
        raise DevServerError(f"user {run_as} cannot run {bindir / 'postgres'}: {_output(result)}")


def _make_traversable(directory: Path, user: pwd.struct_passwd) -> None:
    """Add the search (x) bit that ``user`` lacks to ``directory`` and its ancestors."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for path in (directory, *directory.parents):
        info = path.stat()
        if info.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            path.chmod(stat.S_IMODE(info.st_mode) | bit)


def _socket_dir(datadir: Path) -> str:
    """The data directory, unless its path is too long or awkward for unix_socket_directories."""
    path = str(datadir)
    if len(path) + _SOCKET_NAME_MAX <= _SUN_PATH_MAX and not re.search(r'[\s,"\\]', path):
        return path
    return tempfile.gettempdir()


def _free_port(host: str) -> int:
    # Below Linux's ephemeral range (32768-60999), so client connections never take the port
    # while the server restarts.
    for _ in range(100):
        port = random.randint(20000, 32767)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise DevServerError("no free TCP port found")


def _saved_port(datadir: Path) -> int | None:
    try:
        return int((datadir / PORT_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, text: str, run_as: str | None) -> None:
    path.write_text(text)
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        os.chown(path, user.pw_uid, user.pw_gid)


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_bindir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _major(bindir: Path) -> int:
    name = bindir.parent.name
    return int(name) if name.isdigit() else -1


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr or result.stdout).strip()


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m job.devserver", description="Throwaway PostgreSQL server.")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="initialise if needed, start, print the URL")
    start.add_argument("--port", type=int, help="TCP port (default: remembered, else a free one)")
    stop = commands.add_parser("stop", help="stop the server")
    stop.add_argument("--mode", choices=STOP_MODES, default="fast")
    url = commands.add_parser("url", help="print the URL")
    for command in (start, stop, url):
        command.add_argument("datadir", type=Path)
        command.add_argument("--bindir", type=Path, help="PostgreSQL's bin directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            server = create(args.datadir, port=args.port, bindir=args.bindir)
            server.start()
            print(server.url())
        elif args.command == "stop":
            _existing(args.datadir, args.bindir).stop(args.mode)
        else:
            print(_existing(args.datadir, args.bindir).url())
    except DevServerError as error:
        print(f"devserver: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
