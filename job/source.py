"""Find migration files, recognise their layout, read sections and directives, checksum them.

Pure apart from reading the folder: no database. Everything the rest of the job knows about a
file comes from the `Migration` objects built here.

Layouts recognised (auto-detected; a folder mixing families is an error):
  numbered   0001_name.sql / 1-name.sql / 20240101120000_name.sql / 20240101_120000_name.sql,
             with optional `-- UP` / `-- DOWN` (or dbmate `-- migrate:up` / `-- migrate:down`) markers
             and optional companion `NAME_rollback.sql` down files
  golang     1_name.up.sql + 1_name.down.sql (golang-migrate)
  flyway     V1__name.sql, V1.1__name.sql, V2_1__name.sql, U1__name.sql (undo), R__name.sql (repeatable)

Repeatable migrations in every layout: `R__name.sql` beside the versioned files (it is no other family), and
any `*.sql` in a `repeatable/` subfolder (named by its stem). Other subfolders (`callbacks/`) and Flyway-named
callback files (CALLBACK_EVENTS) are not migrations.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, total_ordering
from pathlib import Path
from typing import Any

from job.config import compile_filename_pattern, parse_duration
from job.errors import ConfigError, SourceError
from job.sqlscan import SqlSyntaxError, Statement, line_col, split

SCHEMA_FILE_NAMES = ("schema.sql", "init.sql")
# The subfolder whose every `*.sql` file is a repeatable migration named by its stem.
REPEATABLE_DIR = "repeatable"
_BOM = b"\xef\xbb\xbf"


@total_ordering
@dataclass(frozen=True)
class Version:
    """A migration version: integer parts compared numerically (10 after 9, 1.10 after 1.9).

    A lexical version (MIGRATE_ORDER=lexical) has `text` and no parts: compared as text by its UTF-8
    bytes (Python compares strings by code point, which is the same order) and stored as written.
    """

    parts: tuple[int, ...]
    text: str | None = None
    _cmp: tuple[Any, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.text is not None:
            object.__setattr__(self, "_cmp", (1, self.text))
            return
        # 1 == 1.0: compare with trailing zeros removed; computed once (sorting compares a lot).
        parts = list(self.parts)
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        object.__setattr__(self, "_cmp", (0, tuple(parts)))

    @classmethod
    def parse(cls, text: str) -> Version:
        pieces = re.split(r"[._]", text.strip())
        if not pieces or not all(p.isdigit() for p in pieces):
            raise ValueError(f"not a version: {text!r}")
        return cls(tuple(int(p) for p in pieces))

    @classmethod
    def lexical(cls, text: str) -> Version:
        if not text:
            raise ValueError("an empty version")
        return cls((), text)

    @property
    def is_lexical(self) -> bool:
        return self.text is not None

    @property
    def first(self) -> int:
        """The leading integer part (of a lexical version: its leading digits, else 0)."""
        if self.parts:
            return self.parts[0]
        digits = re.match(r"\d+", self.text or "")
        return int(digits.group(0)) if digits else 0

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        return ".".join(str(p) for p in self.parts)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return bool(self._cmp < other._cmp)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._cmp == other._cmp

    def __hash__(self) -> int:
        return hash(self._cmp)


def parse_version(text: str, order: str = "numeric") -> Version:
    """A version as the history stores it: numeric (`1.10`) or, with MIGRATE_ORDER=lexical, the text itself."""
    return Version.lexical(text) if order == "lexical" else Version.parse(text)


@dataclass(frozen=True)
class Directives:
    """Per-file settings from `-- migrate-job: key=value` comment lines (and other tools' directives)."""

    transaction: bool | None = None  # None: decided from the statements
    lock_timeout: str | None = None
    statement_timeout: str | None = None
    lint_disable: tuple[str, ...] = ()  # rule ids for job.lint to skip, e.g. lint_disable=MJ001,MJ007
    placeholders: bool | None = None  # placeholders=on|off: ${name} replacement for this file
    # The line that set `transaction`, e.g. "-- +goose NO TRANSACTION" (for messages; not compared).
    transaction_source: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Section:
    """The UP or DOWN SQL of a migration, with where it starts in its file."""

    path: Path
    file_text: str
    start: int  # offset of the section's first character in file_text
    end: int
    transaction: bool | None = None  # dbmate's `transaction:false` / sql-migrate's `notransaction` on the marker
    transaction_source: str | None = None  # that marker line, for messages

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
            replace(
                s,
                offset=s.offset + self.start,
                reason_offset=None if s.reason_offset is None else s.reason_offset + self.start,
            )
            for s in stmts
        )

    def location(self, offset: int) -> tuple[int, int]:
        """(line, column) in the file of a character offset into the file."""
        return line_col(self.file_text, offset)

    def reason_of(self, s: Statement) -> str:
        """Why statement `s` cannot run in a transaction block, with its line: "DO block commits (line 7)"."""
        where = s.offset if s.reason_offset is None else s.reason_offset
        return f"{s.non_transactional_reason or s.kind} (line {self.location(where)[0]})"


@dataclass(frozen=True)
class Migration:
    """One migration file (or up/down pair) as read from the folder: version, sections, checksums."""

    version: Version | None  # None for a repeatable (Flyway R__) migration
    name: str
    path: Path
    checksum: str  # SHA-256 of the file with line endings normalised to LF and without a BOM
    up: Section
    down: Section | None
    directives: Directives = field(default_factory=Directives)
    layout: str = "numbered"
    raw_checksum: str | None = None  # SHA-256 of the exact bytes (what earlier releases stored), if different

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

    @property
    def non_transactional_reason(self) -> str | None:
        """Why the UP section runs outside a transaction (None when it runs in one)."""
        return transaction_reason(self, self.up)

    @cached_property
    def legacy_checksums(self) -> frozenset[str]:
        """Checksums earlier versions stored for this content: the raw bytes, LF or CRLF, with or without a BOM."""
        text = self.up.file_text.replace("\r\n", "\n").replace("\r", "\n")
        lf = text.encode("utf-8")
        crlf = text.replace("\n", "\r\n").encode("utf-8")
        found = {hashlib.sha256(v).hexdigest() for v in (lf, crlf, _BOM + lf, _BOM + crlf)}
        if self.raw_checksum:
            found.add(self.raw_checksum)
        found.discard(self.checksum)
        return frozenset(found)

    def checksum_matches(self, stored: str | None) -> bool:
        """True when `stored` is this file's checksum, or an old-style one of the same content."""
        return stored == self.checksum or (stored is not None and stored in self.legacy_checksums)


def transaction_reason(m: Migration, sec: Section) -> str | None:
    """Why a section runs outside a transaction: a directive, a marker option, or its first such statement."""
    if m.directives.transaction is not None:
        if m.directives.transaction:
            return None
        return m.directives.transaction_source or "-- migrate-job: transaction=off"
    if sec.transaction is not None:
        return None if sec.transaction else (sec.transaction_source or "transaction:false")
    first = next((s for s in sec.statements if s.non_transactional), None)
    return None if first is None else sec.reason_of(first)


# ---------------------------------------------------------------------------- names

_NUMBERED_TS = re.compile(r"^(?P<date>\d{8})_(?P<time>\d{6})_(?P<name>.+)\.sql$")
_NUMBERED = re.compile(r"^(?P<version>\d+)(?:[_-](?P<name>.+?))?\.sql$")
_GOLANG = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.(?P<dir>up|down)\.sql$")
_FLYWAY = re.compile(r"^(?P<prefix>[VUR])(?P<version>\d+(?:[._]\d+)*)?__(?P<name>.+)\.sql$")
_ROLLBACK_SUFFIXES = ("_rollback", ".rollback")


@dataclass(frozen=True)
class _Name:
    """What a file name says: its layout family, version, name and role (up, down, repeatable)."""

    family: str  # numbered | golang | flyway | pattern
    version: Version | None
    name: str
    role: str  # up | down | repeatable


def _version(text: str, order: str) -> Version:
    return Version.lexical(text) if order == "lexical" else Version.parse(text)


def _classify(filename: str, order: str = "numeric") -> _Name | None:
    m = _GOLANG.match(filename)
    if m:
        return _Name("golang", _version(m["version"], order), m["name"], m["dir"])
    m = _FLYWAY.match(filename)
    if m:
        prefix = m["prefix"]
        if prefix == "R":
            if m["version"]:
                return None
            return _Name("flyway", None, m["name"], "repeatable")
        if not m["version"]:
            return None
        return _Name("flyway", _version(m["version"], order), m["name"], "down" if prefix == "U" else "up")
    m = _NUMBERED_TS.match(filename)
    if m:
        name = m["name"]
        role = "up"
        for suffix in _ROLLBACK_SUFFIXES:
            if name.endswith(suffix):
                name, role = name[: -len(suffix)], "down"
        version = (
            Version.lexical(m["date"] + m["time"]) if order == "lexical" else Version((int(m["date"] + m["time"]),))
        )
        return _Name("numbered", version, name, role)
    m = _NUMBERED.match(filename)
    if m:
        name = m["name"] or ""
        role = "up"
        for suffix in _ROLLBACK_SUFFIXES:
            if name.endswith(suffix):
                name, role = name[: -len(suffix)], "down"
        version = Version.lexical(m["version"]) if order == "lexical" else Version((int(m["version"]),))
        return _Name("numbered", version, name, role)
    return None


# Values of a MIGRATE_FILENAME_PATTERN `direction` group (compared in lower case).
DIRECTIONS = {
    "up": "up",
    "do": "up",
    "apply": "up",
    "upgrade": "up",
    "forward": "up",
    "down": "down",
    "rollback": "down",
    "undo": "down",
    "revert": "down",
    "downgrade": "down",
}


def _classify_pattern(path: Path, regex: re.Pattern[str], order: str) -> _Name | None:
    """Version, name and direction of a file named by MIGRATE_FILENAME_PATTERN (None: it does not match)."""
    m = regex.fullmatch(path.name)
    if m is None:
        return None
    raw = m["version"]
    if not raw:
        raise SourceError(f"{path}: the `version` group of MIGRATE_FILENAME_PATTERN matched nothing", file=str(path))
    try:
        version = _version(raw, order)
    except ValueError:
        raise SourceError(
            f"{path}: version {raw!r} (from MIGRATE_FILENAME_PATTERN) is not a number; "
            "set MIGRATE_ORDER=lexical to order versions as text",
            file=str(path),
        ) from None
    groups = regex.groupindex
    name = (m["name"] or "") if "name" in groups else path.name.removesuffix(".sql")
    role = "up"
    if "direction" in groups and m["direction"]:
        role = DIRECTIONS.get(m["direction"].lower(), "")
        if not role:
            raise SourceError(
                f"{path}: direction {m['direction']!r} (from MIGRATE_FILENAME_PATTERN) is not one of "
                f"{', '.join(sorted(DIRECTIONS))}",
                file=str(path),
            )
    return _Name("pattern", version, name, role)


def _repeatable(filename: str) -> _Name | None:
    """An `R__name.sql` file: a repeatable migration, in any layout."""
    m = _FLYWAY.match(filename)
    if m is None or m["prefix"] != "R" or m["version"]:
        return None
    return _Name("flyway", None, m["name"], "repeatable")


def _in_repeatable_dir(path: Path) -> _Name:
    """A file of the `repeatable/` subfolder: named by its stem (an `R__` prefix dropped, so a moved file keeps it)."""
    stem = path.name[: -len(".sql")]
    name = stem[3:] if stem.startswith("R__") and len(stem) > 3 else stem
    return _Name(REPEATABLE_DIR, None, name, "repeatable")


# Endings of a down/up file name of the numbered, golang and pattern layouts: on a repeatable, a mistake.
_PAIR_SUFFIXES = (".up", ".down", *_ROLLBACK_SUFFIXES)


def _check_repeatable_name(path: Path, n: _Name, family: str) -> None:
    """Refuse a repeatable named like one half of an up/down pair (`R__views.down.sql`): it would run as an up."""
    suffix = next((x for x in _PAIR_SUFFIXES if n.name.lower().endswith(x)), None)
    if family == "flyway" or suffix is None:
        return
    stem = path.name[: -len(".sql")]
    fix = f"rename it to {stem[: -len(suffix)]}.sql" if suffix == ".up" else "remove it"
    raise SourceError(
        f"{path}: a repeatable migration has no up/down pair or rollback file (it is re-applied when it changes "
        f"and never rolled back); {fix}",
        file=str(path),
    )


# ---------------------------------------------------------------------------- contents

_MARKER = re.compile(
    r"^[ \t]*--[ \t]*(?:(?P<tool>\+migrate|\+goose)[ \t]+|migrate:)?(?P<dir>up|down)\b[ \t]*"
    r"(?:transaction:(?P<tx>true|false)|(?P<notx>notransaction))?[ \t]*(?:--[^\r\n]*)?\r?$",
    re.IGNORECASE | re.MULTILINE,
)
# `-- +tool words`: goose / sql-migrate annotations, or another tool's we do not know.
_ANNOTATION = re.compile(r"[ \t]*-{2,}[ \t]*\+(?P<tool>[A-Za-z][\w.-]*)[ \t]*(?P<body>[^\r\n]*)")
_KNOWN_ANNOTATIONS = {
    "goose": {"statementbegin", "statementend", "no transaction", "envsub off"},
    "migrate": {"statementbegin", "statementend"},
}
# A comment line that is nothing but a direction word (with punctuation, an optional `migrate`/`migration`
# prefix, a `migration`/`section` suffix, a remark in parentheses): a marker of some tool we do not know.
_PREFIXES = {"migrate", "migration", "migrations"}
_SUFFIXES = {"migration", "migrations", "section", "script"}
_REMARK = re.compile(r"\([^()\r\n]*\)\s*$")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_DIRECTION_WORDS = {"up", "down", "rollback", "undo", "revert", "downgrade", "upgrade"}
_POSTGRES_MIGRATIONS = re.compile(r"[ \t]*--[ \t]*postgres-migrations[ \t]+(?P<word>[\w-]+)[ \t]*\r?$", re.I | re.M)
_KNOWN_MARKERS = "`-- UP`/`-- DOWN`, `-- migrate:up`/`-- migrate:down`, `-- +goose Up`/`Down`, `-- +migrate Up`/`Down`"
_COMMENT_LINE = re.compile(r"\n[ \t]*--")
_DIRECTIVE = re.compile(r"^[ \t]*--[ \t]*migrate-job:[ \t]*(?P<body>[^\r\n]*)\r?$", re.IGNORECASE | re.MULTILINE)
_DIRECTIVE_KEYS = {"transaction", "lock_timeout", "statement_timeout", "baseline", "lint_disable", "placeholders"}
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
    source: str | None = None
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
            if key == "transaction":
                source = f"-- migrate-job: transaction={values[key]}"
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
    placeholders: bool | None = None
    if "placeholders" in values:
        raw_ph = values["placeholders"].lower()
        if raw_ph not in _BOOL:
            raise SourceError(f"{path}: directive placeholders={raw_ph!r}: use on or off", file=str(path))
        placeholders = _BOOL[raw_ph]
    return Directives(
        transaction=transaction,
        lock_timeout=values.get("lock_timeout"),
        statement_timeout=values.get("statement_timeout"),
        lint_disable=tuple(r.strip().upper() for r in values.get("lint_disable", "").split(",") if r.strip()),
        placeholders=placeholders,
        transaction_source=source if transaction is not None else None,
    )


# ---------------------------------------------------------------------------- placeholders

_PLACEHOLDER = re.compile(r"\$\{(?P<name>[A-Za-z0-9_.:-]+)\}")
# Built-in placeholders (Flyway's names too, so a Flyway folder works unchanged): resolved per run and target.
BUILTINS = {
    "migrate-job:schema": "schema",
    "migrate-job:database": "database",
    "migrate-job:user": "user",
    "migrate-job:table": "table",
    "migrate-job:filename": "filename",
    "flyway:defaultschema": "schema",
    "flyway:database": "database",
    "flyway:user": "user",
    "flyway:table": "table",
    "flyway:filename": "filename",
}


@dataclass(frozen=True)
class Placeholders:
    """Flyway-style `${name}` replacement: the defined values, the built-ins, and when it applies.

    `mode`: `auto` replaces when any placeholder is defined, `on` always, `off` never; a file's
    `-- migrate-job: placeholders=on|off` wins. The checksum is always of the file as written.
    """

    values: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    builtin: Callable[[str], str | None] | None = None  # "schema" | "database" | "user" | "table" -> value
    mode: str = "auto"

    def applies(self, directive: bool | None) -> bool:
        if directive is not None:
            return directive
        return self.mode == "on" or (self.mode == "auto" and bool(self.values))


def substitute(path: Path, text: str, ph: Placeholders) -> str:
    """`text` with every `${name}` replaced; SourceError naming file:line for an undefined one."""
    if "${" not in text:
        return text

    def value(m: re.Match[str]) -> str:
        name = m["name"].lower()
        if name in ph.values:
            return ph.values[name]
        kind = BUILTINS.get(name)
        if kind == "filename":
            return path.name
        found = ph.builtin(kind) if kind is not None and ph.builtin is not None else None
        if found is not None:
            return found
        line = text.count("\n", 0, m.start()) + 1
        env = "MIGRATE_PLACEHOLDER_" + re.sub(r"[^A-Za-z0-9]", "_", m["name"]).upper()
        raise SourceError(
            f"{path}:{line}: undefined placeholder ${{{m['name']}}}: define it ([placeholders] in migrate.toml, "
            f"or {env}), or turn replacement off for this file (-- migrate-job: placeholders=off)",
            file=str(path),
            line=line,
            placeholder=m["name"],
        )

    return _PLACEHOLDER.sub(value, text)


@dataclass
class _Scan:
    """What the comment lines of a file say: section markers and other tools' transaction directives."""

    markers: list[re.Match[str]] = field(default_factory=list)
    no_transaction: str | None = None  # the directive line, e.g. "-- +goose NO TRANSACTION"


def _refuse_line(path: Path, text: str, pos: int, why: str) -> SourceError:
    line = text.count("\n", 0, pos) + 1
    nl = text.find("\n", pos)
    shown = text[pos : len(text) if nl < 0 else nl].strip()
    return SourceError(f"{path}:{line}: {shown!r} {why}", file=str(path), line=line)


def _annotation(path: Path, text: str, pos: int, scan: _Scan) -> bool:
    """Handle a `-- +tool ...` line; True when it was one. Unknown tools' direction markers are refused."""
    m = _ANNOTATION.match(text, pos)
    if m is None:
        return False
    tool = m["tool"].lower()
    body = " ".join(m["body"].lower().split())
    if tool in _KNOWN_ANNOTATIONS:
        if body in _KNOWN_ANNOTATIONS[tool]:
            if body == "no transaction":
                scan.no_transaction = "-- +goose NO TRANSACTION"
            return True
        if tool == "goose" and body == "envsub on":
            raise _refuse_line(
                path,
                text,
                pos,
                "turns on goose's environment substitution, which migrate-job does not do: the "
                "file would run with its ${VAR} references unreplaced; replace them in the file",
            )
        raise _refuse_line(path, text, pos, f"is not a {tool} annotation migrate-job understands ({_KNOWN_MARKERS})")
    first = body.split(" ", 1)[0].strip(":;,.()[]") if body else ""
    if first in _DIRECTION_WORDS:
        raise _refuse_line(
            path,
            text,
            pos,
            f"looks like a section marker of a tool migrate-job does not know; it would run the "
            f"whole file as UP. Use one of {_KNOWN_MARKERS}, or reword the comment",
        )
    return True


def _scan(path: Path, text: str) -> _Scan:
    """Markers and directives on the file's comment lines; refuses marker-like lines it does not understand."""
    # Only lines starting with `--` can be markers: find those fast, then look at each.
    starts = [m.start() + 1 for m in _COMMENT_LINE.finditer(text)]
    if text.lstrip(" \t").startswith("--"):
        starts.insert(0, 0)
    scan = _Scan()
    for pos in starts:
        marker = _MARKER.match(text, pos)
        if marker is not None:
            scan.markers.append(marker)
            continue
        if _annotation(path, text, pos, scan):
            continue
        tool_line = _POSTGRES_MIGRATIONS.match(text, pos)
        if tool_line is not None:
            if tool_line["word"].lower() != "disable-transaction":
                raise _refuse_line(path, text, pos, "is not a postgres-migrations directive migrate-job understands")
            scan.no_transaction = "-- postgres-migrations disable-transaction"
            continue
        if _marker_like(text, pos):
            raise _refuse_line(
                path,
                text,
                pos,
                f"looks like a section marker migrate-job does not understand; it would run the "
                f"whole file as UP. Use one of {_KNOWN_MARKERS}, or reword the comment",
            )
    return scan


def _marker_like(text: str, pos: int) -> bool:
    """Whether the comment line at `pos` is only a direction word (`--- DOWN`, `-- migrate: down`, `--DOWN:`)."""
    nl = text.find("\n", pos)
    line = _REMARK.sub("", text[pos : len(text) if nl < 0 else nl].lower())
    words = _NON_WORD.split(line.strip())
    words = [w for w in words if w]
    if words and words[-1] in _SUFFIXES and len(words) > 1:
        words.pop()
    if len(words) == 2 and words[0] in _PREFIXES:
        return words[1] in ("up", "down", "rollback", "undo", "revert")
    return words in (["up"], ["down"])


def split_sections(path: Path, text: str) -> tuple[Section, Section | None]:
    """UP and DOWN sections of a marker file; a file without markers is all UP."""
    return _sections(path, text, _scan(path, text).markers)


def _sections(path: Path, text: str, markers: list[re.Match[str]]) -> tuple[Section, Section | None]:
    if not markers:
        return Section(path, text, 0, len(text)), None
    ups = [m for m in markers if m["dir"].lower() == "up"]
    downs = [m for m in markers if m["dir"].lower() == "down"]
    for group, label in ((ups, "UP"), (downs, "DOWN")):
        if len(group) > 1:
            line = text.count("\n", 0, group[1].start()) + 1
            raise SourceError(f"{path}:{line}: a second -- {label} marker", file=str(path), line=line)

    def section(m: re.Match[str], start: int, end: int) -> Section:
        tx = None if m["tx"] is None and m["notx"] is None else (m["tx"] or "").lower() == "true"
        source = " ".join(m.group(0).split()) if tx is not None else None
        return Section(path, text, start, end, tx, source)

    def body_start(m: re.Match[str]) -> int:
        nl = text.find("\n", m.end())
        return len(text) if nl < 0 else nl + 1

    up_m = ups[0] if ups else None
    down_m = downs[0] if downs else None
    if up_m and down_m and down_m.start() < up_m.start():
        return section(up_m, body_start(up_m), len(text)), section(down_m, body_start(down_m), up_m.start())
    if up_m is None and down_m is not None:
        return Section(path, text, 0, down_m.start()), section(down_m, body_start(down_m), len(text))
    assert up_m is not None
    up_end = down_m.start() if down_m else len(text)
    up_section = section(up_m, body_start(up_m), up_end)
    down_section = section(down_m, body_start(down_m), len(text)) if down_m else None
    return up_section, down_section


def normalise(data: bytes) -> bytes:
    """The bytes a checksum is taken of: without a leading BOM, line endings (CRLF, CR) as LF."""
    data = data.removeprefix(_BOM)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def checksum(data: bytes) -> str:
    """SHA-256 of the normalised content: a checkout that only changes line endings or a BOM keeps it."""
    return hashlib.sha256(normalise(data)).hexdigest()


# ---------------------------------------------------------------------------- folder


def _unreadable(path: Path, why: str) -> SourceError:
    return SourceError(f"{path}: cannot read this migration file: {why}", file=str(path))


def _sql_files(directory: Path, exclude: Iterable[str]) -> list[Path]:
    """Every `*.sql` entry (not hidden, not excluded); one that is not a readable regular file is an error."""
    if not directory.is_dir():
        raise SourceError(f"{directory}: migrations folder not found (set --dir or MIGRATE_DIR)", file=str(directory))
    skip = {name.lower() for name in exclude}
    names: list[str] = []
    with os.scandir(directory) as entries:  # DirEntry.is_file() needs no stat; sort names, not Paths
        for e in entries:
            lower = e.name.lower()
            if not lower.endswith(".sql") or e.name.startswith(".") or lower in skip or is_callback(e.name):
                continue
            try:
                regular = e.is_file()  # follows symlinks: a dangling link, a loop, a directory, a FIFO ...
            except OSError:
                regular = False
            if not regular:
                raise _unreadable(directory / e.name, _not_a_file(directory / e.name))
            names.append(e.name)
    return [directory / name for name in sorted(names)]


# Flyway's callback events: files named `<event>.sql` or `<event>__<description>.sql` are callbacks, not
# migrations (job/callbacks.py runs the migrate ones; the others are reported as not run).
CALLBACK_EVENTS = (
    "beforeMigrate",
    "beforeRepeatables",
    "beforeEachMigrate",
    "beforeEachMigrateStatement",
    "afterEachMigrateStatement",
    "afterEachMigrateStatementError",
    "afterEachMigrate",
    "afterEachMigrateError",
    "afterMigrate",
    "afterMigrateApplied",
    "afterVersioned",
    "afterMigrateError",
    "beforeUndo",
    "beforeEachUndo",
    "afterEachUndo",
    "afterEachUndoError",
    "afterUndo",
    "afterUndoError",
    "beforeClean",
    "afterClean",
    "afterCleanError",
    "beforeInfo",
    "afterInfo",
    "afterInfoError",
    "beforeValidate",
    "afterValidate",
    "afterValidateError",
    "beforeBaseline",
    "afterBaseline",
    "afterBaselineError",
    "beforeRepair",
    "afterRepair",
    "afterRepairError",
    "createSchema",
    "beforeConnect",
    "afterConnect",
)
_CALLBACK_NAME = re.compile(r"^(?P<event>" + "|".join(CALLBACK_EVENTS) + r")(?:__(?P<description>.+))?\.sql$")


def callback_event(filename: str) -> str | None:
    """The callback event a file name stands for (`afterMigrate__grants.sql` → afterMigrate), or None."""
    m = _CALLBACK_NAME.match(filename)
    return m["event"] if m else None


def is_callback(filename: str) -> bool:
    return callback_event(filename) is not None


def _not_a_file(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:  # ENOENT: dangling symlink (a missing mount looks like this); ELOOP: a link loop
        what = "a symbolic link to nothing" if path.is_symlink() and exc.errno == errno.ENOENT else "not accessible"
        return f"{what} ({os.strerror(exc.errno) if exc.errno else type(exc).__name__})"
    if stat.S_ISDIR(st.st_mode):
        return "it is a directory"
    return "not a regular file"


def decode_file(path: Path) -> str:
    """A file's text (UTF-8, BOM dropped); SourceError naming it when it cannot be read or decoded."""
    return _decode(path, _read_bytes(path))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, os.strerror(exc.errno) if exc.errno else type(exc).__name__) from None


def load(
    directory: Path,
    *,
    layout: str = "auto",
    exclude: Iterable[str] = SCHEMA_FILE_NAMES,
    pattern: str | None = None,
    order: str = "numeric",
    placeholders: Placeholders | None = None,
) -> list[Migration]:
    """Read every migration in `directory`, ordered by version (repeatables last, by name).

    `placeholders`: `${name}` replacement in the files where it applies (see Placeholders).
    Repeatables are `R__name.sql` files (in every layout) and the `*.sql` files of `directory/repeatable/`;
    callback files (CALLBACK_EVENTS) and other subfolders are skipped.

    `pattern` (MIGRATE_FILENAME_PATTERN) replaces the built-in layouts: its `version`, `name` and
    `direction` groups are read from each file name. `order` (MIGRATE_ORDER) is `numeric` or `lexical`.
    Raises SourceError naming the file for an unparseable name, a duplicate version, a non-UTF-8 or
    unreadable file, a mixed layout, an orphan down file, a repeatable defined twice or with a down section.
    """
    files = [p for p in _sql_files(directory, exclude) if not is_callback(p.name)]
    named = _named(files, pattern, order) + _repeatable_dir(directory)
    family = _check_layout(directory, named, layout) if pattern is None else "pattern"
    for i, (path, n) in enumerate(named):
        if n.role == "repeatable":
            _check_repeatable_name(path, n, family)
            named[i] = (path, replace(n, family=family))

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
        if key in ups and n.role == "repeatable":
            other = ups[key][0].relative_to(directory)
            raise SourceError(
                f"{path}: repeatable migration {n.name!r} is defined twice (also {other})",
                file=str(path),
                version=str(key),
            )
        if key in ups:
            raise SourceError(
                f"{path}: duplicate version {key} (also {ups[key][0].name})", file=str(path), version=str(key)
            )
        ups[key] = (path, n)
    for version, path in downs.items():
        if version not in ups:
            raise SourceError(f"{path}: down migration without an up migration for version {version}", file=str(path))

    migrations = [_read(path, n, downs.get(n.version) if n.version else None, placeholders) for path, n in ups.values()]
    migrations.sort(key=lambda m: (m.version is None, m.version or Version((0,)), m.name))
    return migrations


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return compile_filename_pattern(pattern)
    except ValueError as exc:
        raise ConfigError(
            f"invalid setting MIGRATE_FILENAME_PATTERN: {exc}", setting="MIGRATE_FILENAME_PATTERN"
        ) from None


def _named(files: list[Path], pattern: str | None, order: str) -> list[tuple[Path, _Name]]:
    regex = _compile(pattern) if pattern is not None else None
    named: list[tuple[Path, _Name]] = []
    for path in files:
        if regex is None:
            n = _classify(path.name, order)
        else:  # R__ files beside the pattern's are repeatables, whatever the pattern says of them
            n = _repeatable(path.name) or _classify_pattern(path, regex, order)
        if n is None:
            message = (
                f"{path}: file name does not match MIGRATE_FILENAME_PATTERN {pattern}"
                if pattern is not None
                else f"{path}: file name does not parse as a migration "
                "(expected e.g. 0001_create_users.sql, 1_x.up.sql or V1__x.sql)"
            )
            raise SourceError(message, file=str(path), pattern=pattern)
        named.append((path, n))
    return named


def _repeatable_dir(directory: Path) -> list[tuple[Path, _Name]]:
    """The files of the `repeatable/` subfolder, each a repeatable migration."""
    sub = directory / REPEATABLE_DIR
    if not sub.is_dir():
        return []
    return [(path, _in_repeatable_dir(path)) for path in _sql_files(sub, ())]


def _check_layout(directory: Path, named: list[tuple[Path, _Name]], layout: str) -> str:
    """The folder's layout (of its versioned files: a repeatable belongs to every layout); mixed is an error."""
    versioned = [(p, n) for p, n in named if n.role != "repeatable"]
    families = {n.family for _, n in versioned}
    if layout != "auto":
        wrong = [p for p, n in versioned if n.family != layout]
        if wrong:
            raise SourceError(f"{wrong[0]}: does not match MIGRATE_FORMAT={layout}", file=str(wrong[0]), layout=layout)
        return layout
    if len(families) > 1:
        examples = {n.family: p.name for p, n in versioned}
        listing = ", ".join(f"{fam} ({ex})" for fam, ex in sorted(examples.items()))
        raise SourceError(
            f"{directory}: mixed migration layouts: {listing}; set MIGRATE_FORMAT or rename",
            file=str(directory),
        )
    if families:
        return families.pop()
    return "flyway" if any(n.family == "flyway" for _, n in named) else "numbered"


def _read(path: Path, n: _Name, down_path: Path | None, ph: Placeholders | None = None) -> Migration:
    data = _read_bytes(path)
    text = _decode(path, data)
    directives = parse_directives(path, text)
    replace_ph = ph is not None and ph.applies(directives.placeholders)
    if replace_ph:
        assert ph is not None
        text = substitute(path, text, ph)
    scan = _scan(path, text)
    if directives.transaction is None and scan.no_transaction is not None:
        directives = replace(directives, transaction=False, transaction_source=scan.no_transaction)
    up, down_section = _sections(path, text, scan.markers)
    if n.role == "repeatable" and down_section is not None:
        marker = next(m for m in scan.markers if m["dir"].lower() == "down")
        raise _refuse_line(
            path,
            text,
            marker.start(),
            "starts a down section, which a repeatable migration cannot have (it is re-applied when it "
            "changes and never rolled back); remove the section",
        )
    down = down_section
    if down_path is not None:
        if down is not None:
            raise SourceError(
                f"{path}: has a -- DOWN section and a separate down file {down_path.name}", file=str(path)
            )
        down_text = _decode(down_path, _read_bytes(down_path))
        if replace_ph:
            assert ph is not None
            down_text = substitute(down_path, down_text, ph)
        down = Section(down_path, down_text, 0, len(down_text))
    normalised = checksum(data)
    raw = hashlib.sha256(data).hexdigest() if (b"\r" in data or data.startswith(_BOM)) else None
    return Migration(
        version=n.version,
        name=n.name,
        path=path,
        checksum=normalised,
        up=up,
        down=down,
        directives=directives,
        layout=n.family,
        raw_checksum=raw,
    )
