"""`migrate-job create`: new migration files that follow the folder's own convention. Pure (no I/O).

The convention is read from the newest migration of the folder:
  version  sequential with the same width (`007` → `008`, `1` → `2`), or a timestamp in the same format
           (`YYYYMMDDHHMMSS`, `YYYYMMDD_HHMMSS`, `YYYYMMDDHHMM`, Unix seconds); `--sequential` /
           `--timestamp` override it
  layout   where the down goes (`--style` overrides it):
             markers   one file with `-- UP` / `-- DOWN` (dbmate's `-- migrate:up`, sql-migrate's
                       `-- +migrate Up`, goose's `-- +goose Up` when the folder uses those)
             rollback  `NAME.sql` + `NAME_rollback.sql`
             updown    golang-migrate `N_name.up.sql` + `N_name.down.sql`
             flyway    `V2__name.sql` (+ `U2__name.sql` when the folder has undo files)
An empty folder gets the documented default: `0001_name.sql` with `-- UP` / `-- DOWN` (`--layout golang`:
`000001_name.up.sql` + `.down.sql`; `--layout flyway`: `V1__name.sql`).

Every file written carries a `-- Created by migrate-job create at <time>` line. A migration whose file still
has that line and no SQL is the untouched template: `migrate` refuses it (exit 4), so a forgotten file never
lands as applied, while comment-only files written by hand (reserved versions) keep applying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from job.source import Migration, Section

VERSION_STYLES = ("sequential", "timestamp")
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"
UNIX = "unix"  # a timestamp in Unix seconds (golang-migrate's `migrate create` default)

_CREATED = re.compile(
    r"^--[ \t]*Created by migrate-job create at (?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)?)",
    re.MULTILINE,
)
_MARKER_LINES = {
    "markers": ("-- UP", "-- DOWN"),
    "dbmate": ("-- migrate:up", "-- migrate:down"),
    "sql-migrate": ("-- +migrate Up", "-- +migrate Down"),
    "goose": ("-- +goose Up", "-- +goose Down"),
}
_MARKER_FLAVOUR = (
    ("dbmate", re.compile(r"^[ \t]*--[ \t]*migrate:[ \t]*up\b", re.IGNORECASE | re.MULTILINE)),
    ("sql-migrate", re.compile(r"^[ \t]*--[ \t]*\+migrate[ \t]+up\b", re.IGNORECASE | re.MULTILINE)),
    ("goose", re.compile(r"^[ \t]*--[ \t]*\+goose[ \t]+up\b", re.IGNORECASE | re.MULTILINE)),
)
_TIME_FORMATS = {14: "%Y%m%d%H%M%S", 12: "%Y%m%d%H%M"}
_DEFAULT_WIDTH = {"numbered": 4, "golang": 6, "flyway": 1}
_FAMILY_OF_STYLE = {"markers": "numbered", "dbmate": "numbered", "rollback": "numbered", "updown": "golang"}


class ScaffoldError(ValueError):
    """The requested file cannot be made here (the message says why); the CLI turns it into exit 2."""


@dataclass(frozen=True)
class Convention:
    """How the folder names and lays out its migrations."""

    family: str  # numbered | golang | flyway (the source layout of the files)
    style: str  # one of STYLES
    version_style: str  # sequential | timestamp
    width: int  # digits of a sequential version (zero-padded)
    time_format: str  # strftime format of a timestamp version, or UNIX
    separator: str  # between version and name: "_" or "-" ("__" for Flyway)
    markers: tuple[str, str] = _MARKER_LINES["markers"]
    rollback_suffix: str = "_rollback"
    undo: bool = False  # Flyway: write a U file too


@dataclass(frozen=True)
class NewFile:
    """A file `create` writes: its path and text."""

    path: Path
    text: str


# ---------------------------------------------------------------------------- reading the folder


def _digits(filename: str) -> str:
    """The version digits a file name starts with (`V` of Flyway skipped; `YYYYMMDD_HHMMSS` kept whole)."""
    m = re.match(r"^[VU]?(\d{8}_\d{6}(?=_)|\d+)", filename)
    return m.group(1) if m else ""


def _time_format(digits: str) -> str | None:
    """The timestamp format of a version text, or None when it is a sequence number."""
    if re.fullmatch(r"\d{8}_\d{6}", digits):
        return "%Y%m%d_%H%M%S"
    fmt = _TIME_FORMATS.get(len(digits))
    if fmt is not None:
        try:
            datetime.strptime(digits, fmt)
        except ValueError:
            return None
        return fmt
    if len(digits) == 10 and not digits.startswith("0") and 1_000_000_000 <= int(digits) < 4_000_000_000:
        return UNIX
    return None


def _separator(filename: str, digits: str, family: str) -> str:
    if family == "flyway":
        return "__"
    rest = filename[len(digits) :]
    return "-" if family == "numbered" and rest.startswith("-") else "_"


def _down_layout(migrations: list[Migration]) -> tuple[str, tuple[str, str], str]:
    """(style, marker lines, rollback suffix) of the newest numbered migration that has a down."""
    for m in reversed(migrations):
        if m.down is None or m.layout != "numbered":
            continue
        if m.down.path != m.path:
            suffix = ".rollback" if m.down.path.stem.endswith(".rollback") else "_rollback"
            return "rollback", _MARKER_LINES["markers"], suffix
        for flavour, pattern in _MARKER_FLAVOUR:
            if pattern.search(m.up.file_text):
                return ("dbmate" if flavour == "dbmate" else "markers"), _MARKER_LINES[flavour], "_rollback"
        return "markers", _MARKER_LINES["markers"], "_rollback"
    return "markers", _MARKER_LINES["markers"], "_rollback"


def convention(migrations: list[Migration], layout: str = "auto") -> Convention:
    """The folder's convention, from its newest versioned migration (`layout`: MIGRATE_FORMAT, for an empty folder)."""
    versioned = [m for m in migrations if m.version is not None]
    if not versioned:
        family = layout if layout != "auto" else "numbered"
        if family == "golang":
            return Convention("golang", "updown", "sequential", 6, DEFAULT_TIME_FORMAT, "_")
        if family == "flyway":
            return Convention("flyway", "flyway", "sequential", 1, DEFAULT_TIME_FORMAT, "__")
        return Convention("numbered", "markers", "sequential", 4, DEFAULT_TIME_FORMAT, "_")
    last = versioned[-1]
    digits = _digits(last.filename)
    fmt = _time_format(digits)
    version_style = "sequential" if fmt is None else "timestamp"
    width = len(digits) if fmt is None else 4
    family = last.layout
    separator = _separator(last.filename, digits, family)
    if family == "golang":
        return Convention(family, "updown", version_style, width, fmt or DEFAULT_TIME_FORMAT, separator)
    if family == "flyway":
        undo = any(m.down is not None for m in migrations)
        width = len(digits) if fmt is None and digits.startswith("0") else 1
        return Convention(family, "flyway", version_style, width, fmt or DEFAULT_TIME_FORMAT, separator, undo=undo)
    style, markers, suffix = _down_layout(migrations)
    return Convention(family, style, version_style, width, fmt or DEFAULT_TIME_FORMAT, separator, markers, suffix)


def with_options(
    conv: Convention, families: set[str], *, style: str | None = None, version_style: str | None = None
) -> Convention:
    """The convention with `--style` / `--timestamp` / `--sequential` applied. ScaffoldError when the style's
    files would not be recognised next to the folder's (`families`: the layouts of its files; mixed is an error)."""
    if style is not None and style != conv.style:
        family = _FAMILY_OF_STYLE.get(style, "flyway")
        if families and family not in families:
            allowed = "markers, dbmate or rollback" if "numbered" in families else sorted(families)[0]
            raise ScaffoldError(
                f"create --style {style}: the folder's migrations are {'/'.join(sorted(families))} files; "
                f"{style} files next to them would make a mixed folder (use --style "
                f"{allowed.replace('golang', 'updown')})"
            )
        same_family = family == conv.family
        conv = replace(
            conv,
            family=family,
            style=style,
            width=conv.width if same_family or conv.version_style != "sequential" else _DEFAULT_WIDTH[family],
            separator={"flyway": "__", "golang": "_"}.get(family, conv.separator if same_family else "_"),
            markers=_MARKER_LINES["dbmate"] if style == "dbmate" else _MARKER_LINES["markers"],
        )
    if version_style is not None and version_style != conv.version_style:
        conv = replace(conv, version_style=version_style)
    return conv


# ---------------------------------------------------------------------------- the new version


def _last_integer(migrations: list[Migration]) -> int:
    versioned = [m for m in migrations if m.version is not None]
    if not versioned:
        return 0
    digits = _digits(versioned[-1].filename).replace("_", "")
    return int(digits) if digits else 0


def _format_time(at: datetime, fmt: str) -> str:
    return str(int(at.timestamp())) if fmt == UNIX else at.strftime(fmt)


def _parse_time(text: str, fmt: str) -> datetime | None:
    try:
        if fmt == UNIX:
            return datetime.fromtimestamp(int(text), UTC)
        return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def next_version(migrations: list[Migration], conv: Convention, now: datetime) -> str:
    """The version text of the new file: the next sequence number, or `now` in the folder's timestamp format
    (moved just past the newest version when the clock is behind it, so the new file always sorts last)."""
    last = _last_integer(migrations)
    if conv.version_style == "sequential":
        return str(last + 1).zfill(conv.width)
    text = _format_time(now.astimezone(UTC), conv.time_format)
    if int(text.replace("_", "")) > last:
        return text
    versioned = [m for m in migrations if m.version is not None]
    newest = _parse_time(_digits(versioned[-1].filename), conv.time_format)
    if newest is None:
        raise ScaffoldError(
            f"create --timestamp: the newest version ({_digits(versioned[-1].filename)}) is above a timestamp of "
            "now; use --sequential"
        )
    step = timedelta(minutes=1) if conv.time_format == "%Y%m%d%H%M" else timedelta(seconds=1)
    return _format_time(newest + step, conv.time_format)


# ---------------------------------------------------------------------------- the files


def slug(name: str) -> str:
    """`Add user e-mail` → `add_user_e_mail`; ScaffoldError when nothing usable is left."""
    text = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not text:
        raise ScaffoldError(f"create: {name!r} is not a usable migration name (use letters and digits)")
    return text


def created_line(now: datetime, *, up: bool = True) -> str:
    """The line that marks a file as made by `create` (how an untouched template is recognised)."""
    at = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    line = f"-- Created by migrate-job create at {at}"
    return line + ("; `migrate` refuses this file until it has SQL." if up else ".")


def new_files(directory: Path, name: str, conv: Convention, version: str, now: datetime) -> list[NewFile]:
    """The files `create` writes (paths and templates); the first is the up migration."""
    words = slug(name)
    title = words.replace("_", " ")
    created, created_down = created_line(now), created_line(now, up=False)
    if conv.family == "numbered" and conv.separator == "-":
        words = words.replace("_", "-")
    directives = "-- Directives (optional): -- migrate-job: transaction=off lock_timeout=10s statement_timeout=0"
    head = f"-- {title}\n{created}\n{directives}\n"
    if conv.style in ("markers", "dbmate"):
        up, down = conv.markers
        return [NewFile(directory / f"{version}{conv.separator}{words}.sql", f"{head}\n{up}\n\n\n{down}\n\n")]
    if conv.style == "rollback":
        stem = f"{version}{conv.separator}{words}"
        return [
            NewFile(directory / f"{stem}.sql", f"{head}-- Undone by {stem}{conv.rollback_suffix}.sql\n\n"),
            NewFile(
                directory / f"{stem}{conv.rollback_suffix}.sql",
                f"-- rollback: {title}\n{created_down}\n-- Undo everything {stem}.sql does.\n\n",
            ),
        ]
    if conv.style == "updown":
        stem = f"{version}_{words}"
        return [
            NewFile(directory / f"{stem}.up.sql", f"{head}\n"),
            NewFile(directory / f"{stem}.down.sql", f"-- {title} (down)\n{created_down}\n\n"),
        ]
    files = [NewFile(directory / f"V{version}__{words}.sql", f"{head}\n")]
    if conv.undo:
        files.append(NewFile(directory / f"U{version}__{words}.sql", f"-- undo: {title}\n{created_down}\n\n"))
    return files


# ---------------------------------------------------------------------------- untouched templates


def created_at(section: Section) -> str | None:
    """When `create` wrote this section's file, if the file still carries its `Created by` line."""
    found = _CREATED.search(section.file_text)
    return found.group("at") if found else None


def untouched(section: Section) -> str | None:
    """The creation time when the section is still the template (its file has the `Created by` line and the
    section has no SQL); None for anything a person wrote, including intentionally empty migrations."""
    at = created_at(section)
    if at is None or section.statements:
        return None
    return at


def template_problem(m: Migration) -> str | None:
    """The message `migrate` refuses a just-created, still empty migration with (None when it has SQL)."""
    at = untouched(m.up)
    if at is None:
        return None
    return f"{m.path}: empty migration, created at {at} by migrate-job create; write its SQL or delete it"
