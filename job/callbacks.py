"""Callbacks: SQL files run at fixed points of `migrate` (Flyway's names), that are not migrations.

Found in the migrations folder or its `callbacks/` folder, named `<event>.sql` or `<event>__<description>.sql`;
several for one event run in file-name order. They have no history row, run under the same advisory lock and on
the same session as the migrations, with the same placeholders. Pure: files in, `Callbacks` out.

    beforeMigrate      once, before the first pending migration (on every `migrate`, also when none is pending)
    beforeEachMigrate  inside each migration's transaction, before its SQL (e.g. SET ROLE for every migration)
    afterEachMigrate   inside each migration's transaction, after its SQL, before its history row
    afterMigrate       once, after a successful run (e.g. GRANT to the app role, REFRESH MATERIALIZED VIEW)
    afterMigrateError  once, after a failed run, in its own transaction; the run's error stays the error

beforeMigrate, afterMigrate and afterMigrateError run as one transaction each, or statement by statement when
they contain a statement that cannot run in a transaction. The each-migrate ones become part of a migration's
transaction, so they must be transactional. Flyway's other events (beforeClean, afterInfo, ...) are not run:
`ignored` lists their files, so the job can say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from job import source
from job.errors import SourceError
from job.source import Placeholders, Section
from job.sqlscan import Statement

EVENTS = ("beforeMigrate", "beforeEachMigrate", "afterEachMigrate", "afterMigrate", "afterMigrateError")
FOLDER = "callbacks"


@dataclass(frozen=True)
class Callback:
    """One callback file (Flyway's beforeMigrate, afterEachMigrate, ...): its event and SQL."""

    event: str
    path: Path
    section: Section
    transactional: bool

    @property
    def statements(self) -> tuple[Statement, ...]:
        return self.section.statements


@dataclass(frozen=True)
class Callbacks:
    """The folder's callbacks by event, and the files that looked like callbacks but are ignored."""

    by_event: dict[str, tuple[Callback, ...]] = field(default_factory=dict)
    ignored: tuple[Path, ...] = ()

    def of(self, event: str) -> tuple[Callback, ...]:
        return self.by_event.get(event, ())

    def __bool__(self) -> bool:
        return any(self.by_event.values())


def _files(directory: Path) -> Iterable[Path]:
    for folder in (directory, directory / FOLDER):
        if folder.is_dir():
            yield from sorted(p for p in folder.iterdir() if source.is_callback(p.name))


def load(directory: Path, placeholders: Placeholders | None = None) -> Callbacks:
    """Every callback file, parsed and checked; SourceError (exit 4) naming file:line for a bad one."""
    found: dict[str, list[Callback]] = {}
    ignored: list[Path] = []
    for path in _files(directory):
        event = source.callback_event(path.name)
        assert event is not None
        if event not in EVENTS:
            ignored.append(path)
            continue
        found.setdefault(event, []).append(_read(path, event, placeholders))
    for callbacks in found.values():
        callbacks.sort(key=lambda c: c.path.name)
        names = [c.path.name for c in callbacks]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise SourceError(
                f"{directory}: callback {duplicate} is both in the folder and in {FOLDER}/; keep one",
                file=str(directory / duplicate),
            )
    return Callbacks({e: tuple(cs) for e, cs in found.items()}, tuple(ignored))


def _read(path: Path, event: str, placeholders: Placeholders | None) -> Callback:
    text = source.decode_file(path)
    directives = source.parse_directives(path, text)
    if placeholders is not None and placeholders.applies(directives.placeholders):
        text = source.substitute(path, text, placeholders)
    section = Section(path, text, 0, len(text))
    statements = section.statements  # parses: a syntax error is exit 4 with file:line now
    for s in statements:
        if s.transaction_control is not None or s.copy_client:
            line, _ = section.location(s.offset)
            raise SourceError(
                f"{path}:{line}: a callback cannot control transactions or COPY FROM STDIN "
                "(it runs in the job's own transaction)",
                file=str(path),
                line=line,
            )
    transactional = not any(s.non_transactional for s in statements)
    if event in ("beforeEachMigrate", "afterEachMigrate") and not transactional:
        bad = next(s for s in statements if s.non_transactional)
        line, _ = section.location(bad.offset)
        raise SourceError(
            f"{path}:{line}: an {event} callback runs inside each migration's transaction; this statement "
            "cannot run in a transaction block",
            file=str(path),
            line=line,
        )
    return Callback(event, path, section, transactional)
