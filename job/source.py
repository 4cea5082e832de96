"""Find migration files, recognise their layout, read sections and directives, checksum them.

Pure apart from reading the folder: no database. Everything the rest of the job knows about a
file comes from the `Migration` objects built here.

Layouts recognised (auto-detected; a folder mixing families is an error):
  numbered   0001_name.sql / 1-name.sql / 20240101120000_name.sql / 20240101_120000_name.sql,
             with optional `-- UP` / `-- DOWN` (or dbmate `-- migrate:up` / `-- migrate:down`) markers
             and optional companion `NAME_rollback.sql` down files
  golang     1_name.up.sql + 1_name.down.sql (golang-migrate)
  flyway     V1__name.sql, V1.1__name.sql, V2_1__name.sql, U1__name.sql (undo), R__name.sql (repeatable)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, total_ordering
from pathlib import Path

from job.config import parse_duration
from job.errors import SourceError
from job.sqlscan import SqlSyntaxError, Statement, line_col, split

SCHEMA_FILE_NAMES = ("schema.sql", "init.sql")


@total_ordering
@dataclass(frozen=True)
class Version:
    """A migration version: integer parts compared numerically (10 after 9, 1.10 after 1.9)."""

    parts: tuple[int, ...]
    _cmp: tuple[int, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # 1 == 1.0: compare with trailing zeros removed; computed once (sorting compares a lot).
        parts = list(self.parts)
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        object.__setattr__(self, "_cmp", tuple(parts))

    @classmethod
    def parse(cls, text: str) -> Version:
        pieces = re.split(r"[._]", text.strip())
        if not pieces or not all(p.isdigit() for p in pieces):
            raise ValueError(f"not a version: {text!r}")
        return cls(tuple(int(p) for p in pieces))

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._cmp < other._cmp

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._cmp == other._cmp

    def __hash__(self) -> int:
        return hash(self._cmp)


@dataclass(frozen=True)
class Directives:
    """Per-file settings from `-- migrate-job: key=value` comment lines."""

    transaction: bool | None = None  # None: decided from the statements
    lock_timeout: str | None = None
    statement_timeout: str | None = None
    lint_disable: tuple[str, ...] = ()  # rule ids for job.lint to skip, e.g. lint_disable=MJ001,MJ007


@dataclass(frozen=True)
class Section:
    """The UP or DOWN SQL of a migration, with where it starts in its file."""

    path: Path
    file_text: str
    start: int  # offset of the section's first character in file_text
    end: int
    transaction: bool | None = None  # dbmate's `transaction:false` on the marker line

    @property
    def text(self) -> str:
        return self.file_text[self.start : self.end]

    @cached_property
    def statements(self) -> tuple[Statement, ...]:
        """Statements with offsets relative to the whole file; raises SourceError on a syntax error."""
        try:
            stmts = split(self.text)
        except SqlSyntaxError as exc:
            line, col = line_col(self.file_text, self.start + exc.offset)
            raise SourceError(
                f"{self.path}:{line}:{col}: syntax error: {exc.message}",
                file=str(self.path),
                line=line,
                column=col,
            ) from None
        return tuple(
            Statement(
                text=s.text,
                offset=s.offset + self.start,
                kind=s.kind,
                non_transactional=s.non_transactional,
                transaction_control=s.transaction_control,
                copy_client=s.copy_client,
            )
            for s in stmts
        )

    def location(self, offset: int) -> tuple[int, int]:
        """(line, column) in the file of a character offset into the file."""
        return line_col(self.file_text, offset)


@dataclass(frozen=True)
class Migration:
    version: Version | None  # None for a repeatable (Flyway R__) migration
    name: str
    path: Path
    checksum: str
    up: Section
    down: Section | None
    directives: Directives = field(default_factory=Directives)
    layout: str = "numbered"

    @property
    def key(self) -> str:
        """The identity stored in the history table."""
        return str(self.version) if self.version is not None else f"R__{self.name}"

    @property
    def repeatable(self) -> bool:
        return self.version is None

    @property
    def filename(self) -> str:
        return self.path.name

    @cached_property
    def transactional(self) -> bool:
        """Run in one transaction unless a directive says otherwise or a statement cannot."""
        if self.directives.transaction is not None:
            return self.directives.transaction
        if self.up.transaction is not None:
            return self.up.transaction
        return not any(s.non_transactional for s in self.up.statements)


# ---------------------------------------------------------------------------- names

_NUMBERED_TS = re.compile(r"^(?P<date>\d{8})_(?P<time>\d{6})_(?P<name>.+)\.sql$")
_NUMBERED = re.compile(r"^(?P<version>\d+)(?:[_-](?P<name>.+?))?\.sql$")
_GOLANG = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.(?P<dir>up|down)\.sql$")
_FLYWAY = re.compile(r"^(?P<prefix>[VUR])(?P<version>\d+(?:[._]\d+)*)?__(?P<name>.+)\.sql$")
_ROLLBACK_SUFFIXES = ("_rollback", ".rollback")

LAYOUTS = ("auto", "numbered", "golang", "flyway")


@dataclass(frozen=True)
class _Name:
    family: str  # numbered | golang | flyway
    version: Version | None
    name: str
    role: str  # up | down | repeatable


def _classify(filename: str) -> _Name | None:
    m = _GOLANG.match(filename)
    if m:
        return _Name("golang", Version.parse(m["version"]), m["name"], m["dir"])
    m = _FLYWAY.match(filename)
    if m:
        prefix = m["prefix"]
        if prefix == "R":
            if m["version"]:
                return None
            return _Name("flyway", None, m["name"], "repeatable")
        if not m["version"]:
            return None
        return _Name("flyway", Version.parse(m["version"]), m["name"], "down" if prefix == "U" else "up")
    m = _NUMBERED_TS.match(filename)
    if m:
        name = m["name"]
        role = "up"
        for suffix in _ROLLBACK_SUFFIXES:
            if name.endswith(suffix):
                name, role = name[: -len(suffix)], "down"
        return _Name("numbered", Version((int(m["date"] + m["time"]),)), name, role)
    m = _NUMBERED.match(filename)
    if m:
        name = m["name"] or ""
        role = "up"
        for suffix in _ROLLBACK_SUFFIXES:
            if name.endswith(suffix):
                name, role = name[: -len(suffix)], "down"
        return _Name("numbered", Version((int(m["version"]),)), name, role)
    return None


# ---------------------------------------------------------------------------- contents

_MARKER = re.compile(
    r"^[ \t]*--[ \t]*(?:\+migrate[ \t]+|migrate:[ \t]*)?(?P<dir>up|down)\b[ \t]*"
    r"(?:transaction:(?P<tx>true|false))?[ \t]*(?:--[^\r\n]*)?\r?$",
    re.IGNORECASE | re.MULTILINE,
)
_COMMENT_LINE = re.compile(r"\n[ \t]*--")
_DIRECTIVE = re.compile(r"^[ \t]*--[ \t]*migrate-job:[ \t]*(?P<body>[^\r\n]*)\r?$", re.IGNORECASE | re.MULTILINE)
_DIRECTIVE_KEYS = {"transaction", "lock_timeout", "statement_timeout", "baseline", "lint_disable"}
_BOOL = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            file=str(path),
            line=line,
        ) from None
    return text.removeprefix("\ufeff")


def parse_directives(path: Path, text: str) -> Directives:
    values: dict[str, str] = {}
    if "migrate-job" not in text.lower():  # exact, cheap pre-check of the regex below
        return Directives()
    for m in _DIRECTIVE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        for item in m["body"].split():
            key, sep, value = item.partition("=")
            key = key.strip().lower().replace("-", "_")
            if key == "no_transaction" and not sep:
                key, value, sep = "transaction", "off", "="
            if key not in _DIRECTIVE_KEYS or not sep:
                raise SourceError(
                    f"{path}:{line}: unknown directive {item!r} "
                    f"(expected key=value with key in {sorted(_DIRECTIVE_KEYS)})",
                    file=str(path),
                    line=line,
                )
            values[key] = value.strip()
            if key in ("lock_timeout", "statement_timeout"):
                try:
                    parse_duration(values[key])
                except ValueError as exc:
                    raise SourceError(
                        f"{path}:{line}: directive {key}={values[key]!r}: {exc}", file=str(path), line=line
                    ) from None
    transaction: bool | None = None
    if "transaction" in values:
        raw = values["transaction"].lower()
        if raw == "auto":
            transaction = None
        elif raw in _BOOL:
            transaction = _BOOL[raw]
        else:
            raise SourceError(f"{path}: directive transaction={raw!r}: use on, off or auto", file=str(path))
    return Directives(
        transaction=transaction,
        lock_timeout=values.get("lock_timeout"),
        statement_timeout=values.get("statement_timeout"),
        lint_disable=tuple(r.strip().upper() for r in values.get("lint_disable", "").split(",") if r.strip()),
    )


def split_sections(path: Path, text: str) -> tuple[Section, Section | None]:
    """UP and DOWN sections of a marker file; a file without markers is all UP."""
    # Only lines starting with `--` can be markers: find those fast, then match the marker there.
    starts = [m.start() + 1 for m in _COMMENT_LINE.finditer(text)]
    if text.lstrip(" \t").startswith("--"):
        starts.insert(0, 0)
    markers = [m for pos in starts if (m := _MARKER.match(text, pos))]
    if not markers:
        return Section(path, text, 0, len(text)), None
    ups = [m for m in markers if m["dir"].lower() == "up"]
    downs = [m for m in markers if m["dir"].lower() == "down"]
    for group, label in ((ups, "UP"), (downs, "DOWN")):
        if len(group) > 1:
            line = text.count("\n", 0, group[1].start()) + 1
            raise SourceError(f"{path}:{line}: a second -- {label} marker", file=str(path), line=line)

    def tx_of(m: re.Match[str]) -> bool | None:
        return None if m["tx"] is None else m["tx"].lower() == "true"

    def body_start(m: re.Match[str]) -> int:
        nl = text.find("\n", m.end())
        return len(text) if nl < 0 else nl + 1

    up_m = ups[0] if ups else None
    down_m = downs[0] if downs else None
    if up_m and down_m and down_m.start() < up_m.start():
        up = Section(path, text, body_start(up_m), len(text), tx_of(up_m))
        down = Section(path, text, body_start(down_m), up_m.start(), tx_of(down_m))
        return up, down
    if up_m is None and down_m is not None:
        return Section(path, text, 0, down_m.start()), Section(path, text, body_start(down_m), len(text), tx_of(down_m))
    assert up_m is not None
    up_end = down_m.start() if down_m else len(text)
    up_section = Section(path, text, body_start(up_m), up_end, tx_of(up_m))
    down_section = Section(path, text, body_start(down_m), len(text), tx_of(down_m)) if down_m else None
    return up_section, down_section


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- folder


def _sql_files(directory: Path, exclude: Iterable[str]) -> list[Path]:
    if not directory.is_dir():
        raise SourceError(f"{directory}: migrations folder not found (set --dir or MIGRATE_DIR)", file=str(directory))
    skip = {name.lower() for name in exclude}
    with os.scandir(directory) as entries:  # DirEntry.is_file() needs no stat; sort names, not Paths
        names = sorted(
            e.name
            for e in entries
            if e.name.lower().endswith(".sql")
            and not e.name.startswith(".")
            and e.name.lower() not in skip
            and e.is_file()
        )
    return [directory / name for name in names]


def load(directory: Path, *, layout: str = "auto", exclude: Iterable[str] = SCHEMA_FILE_NAMES) -> list[Migration]:
    """Read every migration in `directory`, ordered by version (repeatables last, by name).

    Raises SourceError naming the file for an unparseable name, a duplicate version, a
    non-UTF-8 file, a mixed layout, or an orphan down file.
    """
    files = _sql_files(directory, exclude)
    named: list[tuple[Path, _Name]] = []
    for path in files:
        n = _classify(path.name)
        if n is None:
            raise SourceError(
                f"{path}: file name does not parse as a migration "
                "(expected e.g. 0001_create_users.sql, 1_x.up.sql or V1__x.sql)",
                file=str(path),
            )
        named.append((path, n))
    families = {n.family for _, n in named}
    if layout != "auto":
        wrong = [p for p, n in named if n.family != layout]
        if wrong:
            raise SourceError(f"{wrong[0]}: does not match MIGRATE_FORMAT={layout}", file=str(wrong[0]), layout=layout)
    elif len(families) > 1:
        examples = {n.family: p.name for p, n in named}
        listing = ", ".join(f"{fam} ({ex})" for fam, ex in sorted(examples.items()))
        raise SourceError(
            f"{directory}: mixed migration layouts: {listing}; set MIGRATE_FORMAT or rename",
            file=str(directory),
        )

    ups: dict[Version | str, tuple[Path, _Name]] = {}
    downs: dict[Version, Path] = {}
    for path, n in named:
        if n.role == "down":
            assert n.version is not None
            if n.version in downs:
                raise SourceError(
                    f"{path}: duplicate down migration for version {n.version} (also {downs[n.version].name})",
                    file=str(path),
                )
            downs[n.version] = path
            continue
        key: Version | str = n.version if n.version is not None else f"R__{n.name}"
        if key in ups:
            raise SourceError(
                f"{path}: duplicate version {key} (also {ups[key][0].name})", file=str(path), version=str(key)
            )
        ups[key] = (path, n)
    for version, path in downs.items():
        if version not in ups:
            raise SourceError(f"{path}: down migration without an up migration for version {version}", file=str(path))

    migrations = [_read(path, n, downs.get(n.version) if n.version else None) for path, n in ups.values()]
    migrations.sort(key=lambda m: (m.version is None, m.version or Version((0,)), m.name))
    return migrations


def _read(path: Path, n: _Name, down_path: Path | None) -> Migration:
    data = path.read_bytes()
    text = _decode(path, data)
    directives = parse_directives(path, text)
    up, down_section = split_sections(path, text)
    down = down_section
    if down_path is not None:
        if down is not None:
            raise SourceError(
                f"{path}: has a -- DOWN section and a separate down file {down_path.name}", file=str(path)
            )
        down_text = _decode(down_path, down_path.read_bytes())
        down = Section(down_path, down_text, 0, len(down_text))
    return Migration(
        version=n.version,
        name=n.name,
        path=path,
        checksum=checksum(data),
        up=up,
        down=down,
        directives=directives,
        layout=n.family,
    )
