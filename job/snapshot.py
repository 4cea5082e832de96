"""Schema snapshot: a normalised `pg_dump --schema-only` kept in the repository, and drift against it.

After a successful `migrate` on a non-production environment the live schema is dumped, normalised and
written to MIGRATE_SCHEMA_FILE (only when it changed), so schema changes show up in code review. `diff`
compares the live schema with that file and names the objects that differ (hand-made changes).

The dump: `pg_dump --schema-only --no-owner --no-privileges --no-tablespaces --no-subscriptions
--encoding=UTF8 --exclude-table="schema"."history"`. Comments on objects (COMMENT ON) are kept: they are
part of the schema people review. Subscriptions are left out because their CONNECTION string may hold a
password. pg_dump's major version must be >= the server's; a missing or older pg_dump is a SnapshotFailed
(a ConfigError, exit 2), never a silent skip. Connection settings and the password reach pg_dump through
its environment, never argv.

`normalise` makes the text identical across runs and machines (same pg_dump major version):

- drops the `-- Dumped from/by ... version` lines, `\\restrict KEY` / `\\unrestrict KEY` (random keys of
  pg_dump 17.6+/16.10+), the timestamps and OIDs of verbose dumps, and the preamble's
  `SET transaction_timeout = 0;` (pg_dump 17+ only; unknown to older servers);
- keeps the rest of the preamble (search_path, check_function_bodies, ...: stable, and the file stays
  loadable);
- strips trailing whitespace (and CR), collapses blank lines between objects to one, ends with one newline;
  blank lines inside an object's definition (function bodies, string literals) are kept;
- keeps pg_dump's order (type, schema, name, then dependencies) except where pg_dump breaks ties by OID:
  same-named constraints, rules, triggers, policies on different tables (pg_dump 16.2 orders same-named
  rules and NOT VALID check constraints by OID, so the same objects created in another order dumped
  differently). Those runs are sorted by (name, table), with each object's COMMENT kept right after it.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from job.backup import _dump_env
from job.config import Settings
from job.db import Connection
from job.errors import ConfigError
from job.history import HistoryTable

Key = tuple[str, str, str]  # (type, schema or "" for schema-less objects, name) as in pg_dump's headers

VERSION_TIMEOUT = 30.0

_HEADER = re.compile(
    r"^-- Name: (?P<name>.*); Type: (?P<type>[^;]*); Schema: (?P<schema>[^;]*); Owner: [^;]*(?:; Tablespace: .*)?$"
)
_DROP = re.compile(
    r"^(?:-- Dumped (?:from database|by pg_dump) version\b.*"
    r"|-- (?:Started|Completed) on\b.*"
    r"|-- TOC entry \d+\b.*"
    r"|-- Dependencies:.*"
    r"|\\(?:un)?restrict(?:[ \t].*)?)$"
)
_PREAMBLE_DROP = frozenset({"SET transaction_timeout = 0;"})
_SESSION_SET = re.compile(r"^SET [A-Za-z_.]+ (?:=|TO) .*;$")
_TRAILER = "-- PostgreSQL database dump complete"
# Blocks that belong to the object dumped just before them (pg_dump emits them right after it).
_ATTACHED = frozenset({"COMMENT", "SECURITY LABEL", "ACL"})
# Types whose same-named objects (on different tables/publications) pg_dump may order by OID.
_TIE_TYPES = frozenset(
    {
        "CONSTRAINT",
        "CHECK CONSTRAINT",
        "FK CONSTRAINT",
        "RULE",
        "TRIGGER",
        "POLICY",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
    }
)


class SnapshotFailed(ConfigError):
    """pg_dump is missing, too old or failed: the schema could not be dumped (exit 2)."""

    event = "schema.snapshot_failed"


# ---------------------------------------------------------------------------- pg_dump


def _version_text(path: str) -> str:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnapshotFailed(
            f"cannot run {path} --version: {exc}; set MIGRATE_PG_DUMP to a working pg_dump", setting="MIGRATE_PG_DUMP"
        ) from None
    return proc.stdout.strip() or proc.stderr.strip()


def _server_version(conn: Connection) -> tuple[int, str]:
    number = conn.info.server_version
    major = number // 10000
    return major, f"{major}.{number % 10000}" if major >= 10 else f"{major}.{number // 100 % 100}"


def check_pg_dump(settings: Settings, conn: Connection) -> str:
    """The path of a pg_dump able to dump this server; SnapshotFailed naming both versions otherwise.

    Cheap: call it before applying migrations so a missing pg_dump fails the run before it changes anything.
    """
    major, server = _server_version(conn)
    path = shutil.which(settings.pg_dump)
    if path is None:
        raise SnapshotFailed(
            f"pg_dump not found ({settings.pg_dump!r}): the schema snapshot needs pg_dump {major} or newer "
            f"(the server is PostgreSQL {server}); install the PostgreSQL client or set MIGRATE_PG_DUMP",
            setting="MIGRATE_PG_DUMP",
            server_version=server,
        )
    text = _version_text(path)
    found = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", text) or re.search(r"\b(\d+)(?:\.(\d+))?", text)
    if found is None:
        raise SnapshotFailed(
            f"cannot read the version of {path} from {text[:200]!r}; set MIGRATE_PG_DUMP to a pg_dump {major} or newer",
            setting="MIGRATE_PG_DUMP",
        )
    dump_major = int(found.group(1))
    dump_version = found.group(0).split()[-1]
    if dump_major < major:
        raise SnapshotFailed(
            f"pg_dump {dump_version} ({path}) is older than the server (PostgreSQL {server}): the schema snapshot "
            f"needs pg_dump {major} or newer; install a newer PostgreSQL client or set MIGRATE_PG_DUMP",
            setting="MIGRATE_PG_DUMP",
            pg_dump_version=dump_version,
            server_version=server,
        )
    return path


def check_schema_file(path: Path, settings: Settings) -> None:
    """Refuse a snapshot path that `migrate` itself reads (ConfigError, exit 2).

    Every `*.sql` directly in MIGRATE_DIR is read: schema.sql / init.sql (and MIGRATE_SCHEMA_LOAD_FILE)
    are loaded into an empty database before the migrations, and the snapshot has no `-- migrate-job:
    baseline` header, so every migration would then run again on top of it ("relation already exists");
    any other name fails as "not a migration file".
    """
    target = path.resolve()
    in_dir = target.parent == settings.dir.resolve() and target.suffix.lower() == ".sql"
    is_load_file = settings.schema_load_file is not None and target == settings.schema_load_file.resolve()
    if in_dir or is_load_file:
        what = "MIGRATE_SCHEMA_LOAD_FILE" if is_load_file else "a .sql file in MIGRATE_DIR"
        raise ConfigError(
            f"MIGRATE_SCHEMA_FILE={path} is {what}, which migrate reads (as the schema file loaded into new "
            "databases, or as a migration); write the snapshot outside MIGRATE_DIR, e.g. db/schema.sql",
            setting="MIGRATE_SCHEMA_FILE",
        )


def exclude_pattern(table: HistoryTable, name: str | None = None) -> str:
    """A pg_dump pattern matching exactly `schema.table` (double-quoted: no case folding, no wildcards)."""

    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    return f"{quote(table.schema)}.{quote(name or table.table)}"


def pg_dump_args(table: HistoryTable) -> list[str]:
    """pg_dump's options (without the program): schema only, no owners/grants/tablespaces/subscriptions."""
    return [
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-tablespaces",
        "--no-subscriptions",
        "--encoding=UTF8",
        "--no-password",
        f"--exclude-table={exclude_pattern(table, table.log_table)}",  # the audit table
        f"--exclude-table={exclude_pattern(table)}",
    ]


def dump_schema(settings: Settings, conn: Connection, table: HistoryTable) -> str:
    """pg_dump's raw schema-only output for the target database (the history table excluded).

    `conn` is only used for the server's version. Raises SnapshotFailed (exit 2) when pg_dump is missing,
    older than the server, fails or exceeds MIGRATE_BACKUP_TIMEOUT.
    """
    path = check_pg_dump(settings, conn)
    timeout = settings.backup_timeout or None
    try:
        proc = subprocess.run(
            [path, *pg_dump_args(table)],
            capture_output=True,
            env={**_dump_env(settings), "PGAPPNAME": f"{settings.application_name}:snapshot"},
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SnapshotFailed(
            f"pg_dump --schema-only did not finish within MIGRATE_BACKUP_TIMEOUT={settings.backup_timeout:g}s",
            setting="MIGRATE_BACKUP_TIMEOUT",
        ) from None
    except OSError as exc:
        raise SnapshotFailed(f"cannot run {path}: {exc}", setting="MIGRATE_PG_DUMP") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else "no message"
        raise SnapshotFailed(
            f"pg_dump --schema-only failed (exit {proc.returncode}): {reason}", pg_dump_exit=proc.returncode
        )
    try:
        return proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise SnapshotFailed("pg_dump --schema-only wrote text that is not UTF-8 despite --encoding=UTF8") from None


def snapshot(settings: Settings, conn: Connection, table: HistoryTable) -> str:
    """The normalised schema of the target database: what MIGRATE_SCHEMA_FILE holds."""
    return normalise(dump_schema(settings, conn, table))


# ---------------------------------------------------------------------------- normalise / parse


@dataclass
class _Segment:
    """A run of lines of a schema dump that sorts as one unit."""

    kind: str  # "preamble" | "block" | "glue" | "trailer"
    lines: list[str]
    key: Key = ("", "", "")


def _trim(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start]:
        start += 1
    while end > start and not lines[end - 1]:
        end -= 1
    return lines[start:end]


def _collapse(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return _trim(out)


def _paragraphs_tail(lines: list[str]) -> tuple[list[str], list[str]]:
    """Split off trailing paragraphs made only of session SET lines (pg_dump's default_table_access_method)."""
    body = _trim(lines)
    tail: list[str] = []
    while body:
        blank = max((i for i, line in enumerate(body) if not line), default=-1)
        if blank < 0:
            break
        last, rest = body[blank + 1 :], _trim(body[:blank])
        if len(rest) <= 3 or not all(_SESSION_SET.match(line) for line in last):
            break  # never leave a header without its SQL
        tail = [*last, "", *tail]
        body = rest
    return body, _trim(tail)


def _segments(text: str) -> list[_Segment]:
    lines = [line.rstrip(" \t\r") for line in text.split("\n")]
    lines = [line for line in lines if not _DROP.match(line)]
    starts = [
        i - 1
        for i in range(1, len(lines) - 1)
        if lines[i - 1] == "--" and lines[i + 1] == "--" and _HEADER.match(lines[i])
    ]
    if not starts:
        return [_Segment("preamble", [line for line in lines if line not in _PREAMBLE_DROP])]
    segments = [_Segment("preamble", [line for line in lines[: starts[0]] if line not in _PREAMBLE_DROP])]
    for n, start in enumerate(starts):
        chunk = lines[start : starts[n + 1] if n + 1 < len(starts) else len(lines)]
        trailer: list[str] = []
        if n + 1 == len(starts) and _TRAILER in chunk:
            at = chunk.index(_TRAILER)
            at = at - 1 if at > 0 and chunk[at - 1] == "--" else at
            chunk, trailer = chunk[:at], chunk[at:]
        header = _HEADER.match(chunk[1])
        assert header is not None
        schema = header["schema"]
        key = (header["type"], "" if schema == "-" else schema, header["name"])
        body, glue = _paragraphs_tail(chunk)
        segments.append(_Segment("block", body, key))
        if glue:
            segments.append(_Segment("glue", glue))
        if trailer:
            segments.append(_Segment("trailer", trailer))
    return segments


def _canonical_order(segments: list[_Segment]) -> list[_Segment]:
    """Sort runs of same-type, same-schema tie-prone blocks (with their COMMENTs) by (name, tag)."""
    units: list[list[_Segment]] = []
    for seg in segments:
        if seg.kind == "block" and seg.key[0] in _ATTACHED and units and units[-1][0].kind == "block":
            units[-1].append(seg)
        else:
            units.append([seg])

    def group(unit: list[_Segment]) -> tuple[str, str] | None:
        head = unit[0]
        return (head.key[0], head.key[1]) if head.kind == "block" and head.key[0] in _TIE_TYPES else None

    def order(unit: list[_Segment]) -> tuple[str, str, str]:
        name = unit[0].key[2]
        return name.rsplit(" ", 1)[-1], name, "\n".join("\n".join(s.lines) for s in unit)

    out: list[_Segment] = []
    i = 0
    while i < len(units):
        g = group(units[i])
        j = i + 1
        while g is not None and j < len(units) and group(units[j]) == g:
            j += 1
        for unit in sorted(units[i:j], key=order) if j - i > 1 else units[i:j]:
            out.extend(unit)
        i = j
    return out


def normalise(dump: str) -> str:
    """pg_dump's plain output made identical across runs and machines (see the module docstring). Pure."""
    parts: list[list[str]] = []
    for seg in _canonical_order(_segments(dump)):
        lines = _trim(seg.lines) if seg.kind == "block" else _collapse(seg.lines)
        if lines:
            parts.append(lines)
    out: list[str] = []
    for lines in parts:
        if out:
            out.append("")
        out.extend(lines)
    return "\n".join(out) + "\n" if out else ""


def objects(normalised: str) -> dict[Key, str]:
    """(type, schema, name) → the object's block (header comment and SQL), in file order.

    Schema-less objects (schemas, extensions, event triggers) have schema "". A repeated key (which
    pg_dump should not produce) gets " #2", " #3", ... appended to its name.
    """
    found: dict[Key, str] = {}
    for seg in _segments(normalised):
        if seg.kind != "block":
            continue
        key, n = seg.key, 1
        while key in found:
            n += 1
            key = (seg.key[0], seg.key[1], f"{seg.key[2]} #{n}")
        found[key] = "\n".join(_trim(seg.lines)) + "\n"
    return found


# ---------------------------------------------------------------------------- drift


def describe(key: Key) -> str:
    """`TABLE public.users`, `CONSTRAINT public.users users_pkey`, `SCHEMA ops`."""
    kind, schema, name = key
    return f"{kind} {schema}.{name}" if schema else f"{kind} {name}"


@dataclass(frozen=True)
class Drift:
    """How the live schema differs from the snapshot: objects only live (added), only in the snapshot
    (removed), or in both with different definitions (changed). `details` holds a unified diff per changed
    object."""

    added: list[Key] = field(default_factory=list)
    removed: list[Key] = field(default_factory=list)
    changed: list[Key] = field(default_factory=list)
    details: dict[Key, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    @property
    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)

    def lines(self, *, details: bool = False) -> list[str]:
        """One line per object: `added TABLE public.foo`, `removed ...`, `changed ...` (+ diffs)."""
        out = [f"added {describe(k)}" for k in self.added]
        out += [f"removed {describe(k)}" for k in self.removed]
        for k in self.changed:
            out.append(f"changed {describe(k)}")
            if details and k in self.details:
                out += ["    " + line if line else "" for line in self.details[k].rstrip("\n").split("\n")]
        return out

    def as_dict(self) -> dict[str, list[str]]:
        """For JSON output and structured logs."""
        return {
            "added": [describe(k) for k in self.added],
            "removed": [describe(k) for k in self.removed],
            "changed": [describe(k) for k in self.changed],
        }


def diff(snapshot_text: str, live_text: str) -> Drift:
    """Compare the snapshot (expected) with the live schema. Both are normalised first (idempotent)."""
    expected = objects(normalise(snapshot_text))
    actual = objects(normalise(live_text))
    changed = [k for k in expected if k in actual and expected[k] != actual[k]]
    details = {
        k: "".join(
            difflib.unified_diff(
                expected[k].splitlines(keepends=True),
                actual[k].splitlines(keepends=True),
                fromfile="snapshot",
                tofile="live",
                n=2,
            )
        )
        for k in changed
    }
    return Drift(
        added=[k for k in actual if k not in expected],
        removed=[k for k in expected if k not in actual],
        changed=changed,
        details=details,
    )


# ---------------------------------------------------------------------------- file


def write_snapshot(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically, only if the content differs. Returns whether the file changed."""
    data = text.encode("utf-8")
    mode = 0o644
    try:
        if path.read_bytes() == data:
            return False
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
