"""Compare migration files with the applied history: a pure function, no I/O.

`build_plan` returns the pending migrations to apply, every problem found (each a one-line
message naming the file), and one status row per version for `status`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from job.source import Migration, Version


@dataclass(frozen=True)
class Applied:
    """One row of the history table."""

    version: str
    name: str
    checksum: str | None
    status: str  # applied | running | failed
    applied_at: datetime | None = None
    execution_ms: int | None = None
    applied_by: str | None = None
    batch: int | None = None
    kind: str = "transactional"
    statements_done: int | None = None
    error: str | None = None
    source: str = "migrate-job"

    @cached_property
    def parsed_version(self) -> Version | None:
        try:
            return Version.parse(self.version)
        except ValueError:
            return None


@dataclass(frozen=True)
class Problem:
    """Something that stops a run: a modified, missing or failed migration, out of order, bad target."""

    kind: str  # modified | missing | failed | out_of_order | unknown_target
    version: str
    message: str


@dataclass(frozen=True)
class StatusRow:
    """One row of `status`: a migration's state with what the history recorded of it."""

    version: str
    name: str
    state: str  # applied | pending | failed | missing | modified
    applied_at: datetime | None = None
    execution_ms: int | None = None
    applied_by: str | None = None
    batch: int | None = None
    file: str | None = None
    source: str | None = None
    error: str | None = None
    via: str | None = None  # how a pending migration will be applied when not by its file ("schema file")


@dataclass(frozen=True)
class Plan:
    """What a run will do: the pending migrations, the problems that block it, the status rows."""

    pending: tuple[Migration, ...]
    problems: tuple[Problem, ...]
    rows: tuple[StatusRow, ...]
    skipped_after_target: tuple[Migration, ...] = field(default=())
    # (version, new checksum) of applied rows that hold an old-style checksum of the same content
    # (raw bytes, before line endings and a BOM were normalised): `migrate` rewrites them.
    checksum_upgrades: tuple[tuple[str, str], ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def _sort_key(version: str, lexical: bool = False) -> tuple[int, Version, str]:
    if lexical and not version.startswith("R__"):
        return (0, Version.lexical(version), version)
    try:
        return (0, Version.parse(version), version)
    except ValueError:
        return (1, Version((0,)), version)


def _is_lexical(migrations: list[Migration]) -> bool:
    """Whether the folder's versions are compared as text (MIGRATE_ORDER=lexical)."""
    return any(m.version is not None and m.version.is_lexical for m in migrations)


def _parse(version: str, lexical: bool) -> Version | None:
    """A history row's version in the folder's order; None when it is not one (e.g. R__ rows)."""
    if version.startswith("R__"):
        return None
    try:
        return Version.lexical(version) if lexical else Version.parse(version)
    except ValueError:
        return None


def build_plan(
    migrations: list[Migration],
    history: list[Applied],
    *,
    target: str | None = None,
    allow_out_of_order: bool = False,
    verify_checksums: bool = True,
    taken_back: Collection[str] = (),
) -> Plan:
    """Decide what to apply and what is wrong, without touching a database.

    `taken_back`: versions migrate-job applied and `rollback` then took back while later ones stayed applied
    (`rollback --name`): re-applying them is not out of order.
    """
    by_key = {m.key: m for m in migrations}
    applied = {a.version: a for a in history}
    problems: list[Problem] = []
    rows: list[StatusRow] = []
    upgrades: list[tuple[str, str]] = []
    lexical = _is_lexical(migrations)

    target_version: Version | None = None
    if target is not None:
        target_version = _parse(target, lexical)
        if target_version is None:
            problems.append(Problem("unknown_target", target, f"--target {target!r} is not a version number"))

    highest_applied: Version | None = None
    for a in history:
        v = _parse(a.version, lexical) if lexical else a.parsed_version
        if (
            a.status == "applied"
            and v is not None
            and a.version in by_key
            and (highest_applied is None or v > highest_applied)
        ):
            highest_applied = v

    for a in history:
        m = by_key.get(a.version)
        if a.status in ("failed", "running"):
            where = f"statement {a.statements_done + 1}" if a.statements_done is not None else "unknown statement"
            what = "failed" if a.status == "failed" else "was interrupted"
            file = m.path if m else a.name
            problems.append(
                Problem(
                    "failed",
                    a.version,
                    f"{file}: version {a.version} {what} at {where}"
                    + (f" ({a.error})" if a.error else "")
                    + "; fix the cause, then run `migrate-job repair` to resume or clear it",
                )
            )
            rows.append(_row(a, "failed", m))
            continue
        if m is None:
            if a.source != "baseline":
                problems.append(
                    Problem(
                        "missing",
                        a.version,
                        f"version {a.version} ({a.name}) is applied but its file is gone",
                    )
                )
            rows.append(_row(a, "missing" if a.source != "baseline" else "applied", None))
            continue
        if a.status == "applied" and a.checksum and a.checksum != m.checksum and m.checksum_matches(a.checksum):
            upgrades.append((a.version, m.checksum))  # same content, old-style checksum: not an edit
        elif m.repeatable and a.checksum != m.checksum:
            continue  # re-applied: listed once, as pending, below
        elif (
            verify_checksums
            and a.checksum
            and a.checksum != m.checksum
            and not m.repeatable
            and a.source not in ("baseline",)
        ):
            problems.append(
                Problem(
                    "modified",
                    a.version,
                    f"{m.path}: edited after it was applied (checksum {a.checksum[:12]}… != {m.checksum[:12]}…)",
                )
            )
            rows.append(_row(a, "modified", m))
            continue
        rows.append(_row(a, "applied", m))

    pending: list[Migration] = []
    skipped: list[Migration] = []
    for m in migrations:
        prev = applied.get(m.key)
        if m.repeatable:
            if prev is None or (prev.status == "applied" and not m.checksum_matches(prev.checksum)):
                pending.append(m)
                rows.append(StatusRow(m.key, m.name, "pending", file=str(m.path)))
            continue
        if prev is not None:
            continue
        assert m.version is not None
        if target_version is not None and m.version > target_version:
            skipped.append(m)
            rows.append(StatusRow(m.key, m.name, "pending", file=str(m.path)))
            continue
        if (
            highest_applied is not None
            and m.version < highest_applied
            and not allow_out_of_order
            and m.key not in taken_back
        ):
            problems.append(
                Problem(
                    "out_of_order",
                    m.key,
                    f"{m.path}: version {m.key} is pending but {highest_applied} is already applied "
                    "(rename it to a higher version, or pass --allow-out-of-order)",
                )
            )
        pending.append(m)
        rows.append(StatusRow(m.key, m.name, "pending", file=str(m.path)))

    def row_key(r: StatusRow) -> tuple[bool, tuple[int, Version, str]]:
        m = by_key.get(r.version)
        if m is not None and m.version is not None:  # already parsed: no Version.parse per row
            return (False, (0, m.version, r.version))
        return (r.version.startswith("R__"), _sort_key(r.version, lexical))

    rows.sort(key=row_key)
    return Plan(tuple(pending), tuple(problems), tuple(rows), tuple(skipped), tuple(upgrades))


def _row(a: Applied, state: str, m: Migration | None) -> StatusRow:
    return StatusRow(
        version=a.version,
        name=m.name if m else a.name,
        state=state,
        applied_at=a.applied_at,
        execution_ms=a.execution_ms,
        applied_by=a.applied_by,
        batch=a.batch,
        file=str(m.path) if m else None,
        source=a.source,
        error=a.error,
    )


def names_of(m: Migration) -> set[str]:
    """What `rollback --name` accepts for a migration: its version (as stored and as the file writes it), its
    name, its file name, and the file's stem (`20250105_090000_add_new_field`, `1_x.up`, `1_x`)."""
    filename = m.filename
    stem = filename.removesuffix(".sql")
    found = {m.key, m.name, filename, stem, stem.removesuffix(".up")}
    prefix = re.match(r"^[VU]?(\d{8}_\d{6}(?=_)|\d+(?:\.\d+)*)", filename)
    if prefix:
        found.add(prefix.group(1))
    return found


def _named(applied: list[Applied], by_key: dict[str, Migration], name: str) -> list[Applied]:
    """The one applied migration `rollback --name NAME` means; ValidationFailed when none or several match."""
    from job.errors import ValidationFailed

    wanted = name.strip()
    try:
        as_version: Version | None = Version.parse(wanted)
    except ValueError:
        as_version = None
    matches = []
    for a in applied:
        m = by_key.get(a.version)
        names = names_of(m) if m is not None else {a.version, a.name}
        if wanted in names or (as_version is not None and a.parsed_version == as_version):
            matches.append(a)
    if not matches:
        repeatable = next((m for m in by_key.values() if m.repeatable and wanted in names_of(m)), None)
        if repeatable is not None:
            raise ValidationFailed(
                f"rollback --name {name}: {repeatable.path} is a repeatable migration: it has no down and is never "
                "rolled back (reset forgets its row; edit the file to re-apply it)"
            )
        raise ValidationFailed(f"rollback --name {name}: no applied migration has that name, file name or version")
    if len(matches) > 1:
        listing = ", ".join(
            f"{by_key[a.version].filename if a.version in by_key else a.name} ({a.version})" for a in matches
        )
        raise ValidationFailed(
            f"rollback --name {name}: {len(matches)} applied migrations match: {listing}; give the version or the "
            "file name",
            problems=[f"{a.version} {a.name}" for a in matches],
        )
    return matches


def rollback_plan(
    migrations: list[Migration],
    history: list[Applied],
    *,
    steps: int | None = None,
    to: str | None = None,
    name: str | None = None,
    everything: bool = False,
) -> list[Migration]:
    """Which applied migrations to roll back, newest first. Pure.

    Default: the last batch (one `migrate` run). `steps`: the last N. `to`: everything above that
    version. `name`: that one migration. `everything`: all (reset). Raises ValidationFailed, before
    anything changes, when a selected migration has no file or no down section.
    """
    from job.errors import ValidationFailed

    by_key = {m.key: m for m in migrations}
    lexical = _is_lexical(migrations)
    applied = [a for a in history if a.status == "applied" and not a.version.startswith("R__")]
    applied.sort(key=lambda a: _sort_key(a.version, lexical), reverse=True)
    if everything:
        chosen = applied
    elif name is not None:
        chosen = _named(applied, by_key, name)
    elif to is not None:
        floor = _parse(to, lexical)
        if floor is None:
            raise ValidationFailed(f"rollback --to {to!r}: not a version number")
        chosen = [a for a in applied if (v := _parse(a.version, lexical)) is not None and v > floor]
    elif steps is not None:
        chosen = applied[: max(0, steps)]
    else:
        last = max((a.batch or 0 for a in applied), default=0)
        chosen = [a for a in applied if (a.batch or 0) == last and last > 0]
    result: list[Migration] = []
    problems: list[str] = []
    for a in chosen:
        m = by_key.get(a.version)
        if m is None:
            problems.append(f"version {a.version} ({a.name}) cannot be rolled back: its file is gone")
        elif m.down is None:  # an empty or comment-only down is an explicit no-op: only the row goes
            problems.append(f"{m.path}: version {m.key} has no down migration; nothing was rolled back")
        else:
            result.append(m)
    if problems:
        raise ValidationFailed(problems[0], problems=problems)
    return result
