"""The peers of `make bench`: node-pg-migrate and dbmate (both from npm), in a folder of their own.

bench/npm/package.json and package-lock.json pin them: node-pg-migrate 9 with pg, and dbmate, whose Go
binary ships in @dbmate/linux-x64 (the benchmark runs that binary, not npm's Node wrapper around it).
`install` copies the two files into the folder (default .dev/bench-peers, git-ignored) and runs
`npm install --prefix` there on the first run, and again only when the pins change; the benchmark itself
reaches no network. (`npm ci` refuses this lockfile: npm writes only this platform's optional binary
package into it, and then finds the others missing.)

The converters are pure: the generated migrations (bench/generate.py) in each tool's own file format,
`<14-digit timestamp>_<title>.sql` with the tool's up/down markers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.generate import Generated, migration_parts

NPM_DIR = Path(__file__).resolve().parent / "npm"
PIN_FILES = ("package.json", "package-lock.json")
STAMP = ".bench-installed"
NODE_PG_MIGRATE = "node-pg-migrate"
DBMATE = "dbmate"
TIMESTAMP_BASE = dt.datetime(2024, 1, 1)  # migration k is stamped TIMESTAMP_BASE + k seconds
_NODE_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i686": "ia32", "armv7l": "arm"}


class PeersUnavailable(RuntimeError):
    """The peers could not be installed or found (the message says why and what to do)."""


# ---------------------------------------------------------------------------- pure: file formats


def timestamp_name(number: int, title: str) -> str:
    """The file name both peers expect: a 14-digit UTC timestamp (dbmate's `new`), `_`, the title."""
    stamp = (TIMESTAMP_BASE + dt.timedelta(seconds=number)).strftime("%Y%m%d%H%M%S")
    return f"{stamp}_{title}.sql"


def node_pg_migrate_text(m: Generated) -> str:
    """A node-pg-migrate SQL migration: `-- Up Migration` / `-- Down Migration` sections."""
    return f"{m.header}\n-- Up Migration\n{m.up}\n-- Down Migration\n{m.down}"


def dbmate_text(m: Generated) -> str:
    """A dbmate migration: `-- migrate:up` / `-- migrate:down` sections."""
    return f"{m.header}\n-- migrate:up\n{m.up}\n-- migrate:down\n{m.down}"


FORMATS: dict[str, Callable[[Generated], str]] = {NODE_PG_MIGRATE: node_pg_migrate_text, DBMATE: dbmate_text}


def peer_files(tool: str, migrations: Sequence[Generated]) -> list[tuple[str, str]]:
    """(file name, text) of each migration in `tool`'s format, in order."""
    text_of = FORMATS[tool]
    return [(timestamp_name(m.number, m.title), text_of(m)) for m in migrations]


def write_peer_migrations(directory: Path, tool: str, count: int, *, seed: int = 1) -> list[Path]:
    """The same `count` generated migrations as bench/generate.py, in `tool`'s format, written to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in peer_files(tool, migration_parts(count, seed=seed)):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def pins_digest(texts: Sequence[bytes]) -> str:
    return hashlib.sha256(b"\0".join(texts)).hexdigest()


def dbmate_package(machine: str) -> str:
    """The npm package with dbmate's binary for this Linux machine (`uname -m`)."""
    return f"@dbmate/linux-{_NODE_ARCH.get(machine.lower(), machine.lower())}"


def with_sslmode_disable(url: str) -> str:
    """dbmate (lib/pq) requires TLS unless told: the throwaway server has none."""
    return url + ("&" if "?" in url else "?") + "sslmode=disable"


# ---------------------------------------------------------------------------- install and run


@dataclass(frozen=True)
class Peer:
    """One installed peer: how to run it on a folder of its migrations, and its tracking table."""

    key: str  # NODE_PG_MIGRATE or DBMATE
    version: str
    program: Path
    history_table: str  # public.<table>: one row per applied migration
    detail: str = ""  # e.g. the pg driver's version

    @property
    def title(self) -> str:
        return f"{self.key} {self.version}"

    def command(self, folder: Path) -> list[str]:
        """The command a user runs: every default kept except dbmate's schema dump (the others write none)."""
        if self.key == NODE_PG_MIGRATE:
            return [str(self.program), "up", "--migrations-dir", str(folder)]
        return [str(self.program), "--migrations-dir", str(folder), "--no-dump-schema", "migrate"]

    def env(self, url: str) -> dict[str, str]:
        """Both read DATABASE_URL."""
        return {"DATABASE_URL": with_sslmode_disable(url) if self.key == DBMATE else url}

    def describe(self) -> str:
        """How it runs, for the report."""
        if self.key == NODE_PG_MIGRATE:
            return (
                f"`node-pg-migrate up` ({self.version}{self.detail}, SQL migration files, its defaults: one "
                "transaction around all pending migrations, each file one query then its history INSERT, "
                "advisory lock)"
            )
        return (
            f"`dbmate --no-dump-schema migrate` ({self.version}, the Go binary of @dbmate/linux-*, its defaults: "
            "each migration its own transaction)"
        )


def install(target: Path, log: Callable[[str], None]) -> list[Peer]:
    """Install the pinned peers into `target` (once per change of pins) and return them."""
    texts = [(NPM_DIR / name).read_bytes() for name in PIN_FILES]
    digest = pins_digest(texts)
    stamp = target / STAMP
    if not (stamp.exists() and stamp.read_text(encoding="utf-8").strip() == digest):
        npm = shutil.which("npm")
        if npm is None:
            raise PeersUnavailable("npm not found (apt-get install npm), or run with --no-peers")
        target.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        for name, text in zip(PIN_FILES, texts, strict=True):
            (target / name).write_bytes(text)
        log(f"installing the peers into {target} (npm install --prefix)")
        try:
            p = subprocess.run(
                [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error"],
                capture_output=True,
                text=True,
                timeout=600,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PeersUnavailable("npm install of the peers timed out; run with --no-peers") from exc
        if p.returncode != 0:
            tail = " ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
            raise PeersUnavailable(f"npm install of the peers exited {p.returncode}: {tail}; run with --no-peers")
        stamp.write_text(digest + "\n", encoding="utf-8")
    return find(target)


def find(target: Path) -> list[Peer]:
    modules = target / "node_modules"
    npm_cli = modules / ".bin" / NODE_PG_MIGRATE
    binary = modules / dbmate_package(platform.machine()) / "bin" / DBMATE
    for path in (npm_cli, binary):
        if not path.exists():
            raise PeersUnavailable(f"{path} is missing after the install; remove {target} and retry, or --no-peers")
    return [
        Peer(
            NODE_PG_MIGRATE,
            _version(modules / NODE_PG_MIGRATE),
            npm_cli,
            "pgmigrations",
            f" with pg {_version(modules / 'pg')} on node {_node_version()}",
        ),
        Peer(DBMATE, _version(binary.parent.parent), binary, "schema_migrations"),
    ]


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        raise PeersUnavailable("node not found (apt-get install nodejs), or run with --no-peers")
    p = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return p.stdout.strip().lstrip("v") or "?"


def _version(package_dir: Path) -> str:
    data = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    return str(data.get("version", "?"))
