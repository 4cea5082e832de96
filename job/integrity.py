"""The integrity file `migrate-job.sum`: the checksum of every migration file, for CI without a database.

`migrate-job hash` writes it into the migrations folder; `migrate-job validate --offline` compares the
folder with it (like Atlas's `atlas.sum`), so a pull request that edits, removes or slips in a migration
file without re-hashing fails before it reaches a database. Pure: no I/O (the command reads and writes).

Format (version 1), UTF-8, LF line endings, no trailing spaces:

    # migrate-job.sum v1: written by `migrate-job hash`, checked by `migrate-job validate --offline`; do not edit
    total sha256:<64 hex digits>
    0001_create_users.sql sha256:<64 hex digits>
    0001_create_users_rollback.sql sha256:<64 hex digits>
    ...

- One line per file: its path relative to the migrations folder (`/`-separated), a space, `sha256:` and the
  checksum migrate-job stores in the history table (SHA-256 of the file without a leading BOM, line endings
  normalised to LF: `job.source.checksum`). A separate down file (`_rollback.sql`, `.down.sql`, Flyway `U`)
  has its own line, right after its up file.
- The lines are in the order `migrate` applies the files (versions as MIGRATE_ORDER compares them, then
  repeatables by name), so a change of that order is detected too.
- `total` is the SHA-256 of the file lines, each ending in LF. Two branches that each add a migration both
  change it, so merging them conflicts on that line (as with atlas.sum); a sum file whose lines were edited
  or merged by hand no longer matches its total.
- Lines starting with `#` are comments; blank lines are ignored.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from job.errors import SourceError
from job.source import Migration, checksum

SUM_FILE = "migrate-job.sum"
FORMAT = "v1"
HEADER = (
    f"# migrate-job.sum {FORMAT}: written by `migrate-job hash`, checked by `migrate-job validate --offline`; "
    "do not edit"
)
HINT = f"if the change is intended, run `migrate-job hash` and commit {SUM_FILE}"

_HEX = re.compile(r"[0-9a-f]{64}")
_FORMAT_LINE = re.compile(r"#\s*migrate-job\.sum\s+(?P<format>v\d+)\b")


@dataclass(frozen=True)
class Entry:
    """One file of the folder: its path relative to the folder and its checksum."""

    path: str
    checksum: str

    @property
    def line(self) -> str:
        return f"{self.path} sha256:{self.checksum}"


@dataclass(frozen=True)
class SumFile:
    """A parsed sum file: the recorded total and the file lines in their order."""

    total: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Problem:
    """What `validate --offline` reports, with where it is (for the `::error file=…,line=…` annotation)."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True)
class Change:
    """A difference between the folder and its sum file.

    kind: added | edited | removed (a file), reordered (the apply order), total (the sum file's own lines).
    """

    kind: str
    path: str | None  # relative to the folder; None for `total`
    message: str


def _relative(directory: Path, path: Path) -> str:
    try:
        relative = path.relative_to(directory)
    except ValueError:
        relative = Path(os.path.relpath(path, directory))
    text = relative.as_posix()
    if "\n" in text or "\r" in text:
        raise SourceError(f"{path}: a file name with a line break cannot be listed in {SUM_FILE}", file=str(path))
    return text


def entries(directory: Path, migrations: Iterable[Migration]) -> list[Entry]:
    """The lines of the folder's sum file: every up file, each followed by its separate down file (if any)."""
    out: list[Entry] = []
    for m in migrations:
        out.append(Entry(_relative(directory, m.path), m.checksum))
        down = m.down
        if down is not None and down.path != m.path:
            # Section.file_text is the file decoded without its BOM: the same bytes `checksum` normalises.
            out.append(Entry(_relative(directory, down.path), checksum(down.file_text.encode("utf-8"))))
    return out


def total(items: Iterable[Entry]) -> str:
    """SHA-256 over the file lines, each ending in LF."""
    return hashlib.sha256("".join(e.line + "\n" for e in items).encode("utf-8")).hexdigest()


def render(items: list[Entry]) -> str:
    """The sum file's text."""
    return "".join(f"{line}\n" for line in [HEADER, f"total sha256:{total(items)}", *(e.line for e in items)])


def _checksum_of(value: str) -> str | None:
    digest = value.removeprefix("sha256:")
    return digest if value.startswith("sha256:") and _HEX.fullmatch(digest) else None


def parse(path: Path, text: str) -> SumFile:
    """Read a sum file; SourceError naming `path:line` for anything that is not one (exit 4)."""

    def bad(number: int, why: str) -> SourceError:
        return SourceError(
            f"{path}:{number}: {why}; check the migrations, then run `migrate-job hash` to write it anew",
            file=str(path),
            line=number,
        )

    recorded: str | None = None
    seen: dict[str, int] = {}
    items: list[Entry] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if line.startswith(("<<<<<<<", "=======", ">>>>>>>", "|||||||")):
            raise bad(number, "a merge conflict marker: two branches changed the migrations")
        if line.startswith("#"):
            fmt = _FORMAT_LINE.match(line)
            if fmt and fmt["format"] != FORMAT:
                raise bad(number, f"format {fmt['format']} is not {FORMAT}, the one this migrate-job reads")
            continue
        if not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        digest = _checksum_of(value)
        if not name or digest is None:
            raise bad(number, f"not a {SUM_FILE} line (expected `<file> sha256:<64 hex digits>`)")
        if name == "total" and recorded is None and not items:
            recorded = digest
            continue
        if name in seen:
            raise bad(number, f"{name} is listed twice (also line {seen[name]})")
        seen[name] = number
        items.append(Entry(name, digest))
    if recorded is None:
        raise bad(1, "no `total sha256:…` line before the files")
    return SumFile(recorded, tuple(items))


def compare(directory: Path, sum_path: Path, recorded: SumFile, current: list[Entry]) -> list[Change]:
    """What changed since the sum file was written: files added, edited, removed; the order; the total."""
    changes: list[Change] = []
    if total(recorded.entries) != recorded.total:
        changes.append(
            Change(
                "total",
                None,
                f"{sum_path}: its total does not match its lines (edited by hand, or merged from two branches): "
                "check the migrations, then run `migrate-job hash`",
            )
        )
    before = {e.path: e.checksum for e in recorded.entries}
    now = {e.path: e.checksum for e in current}
    for e in current:
        shown = directory / e.path
        if e.path not in before:
            changes.append(Change("added", e.path, f"{shown}: added since `migrate-job hash`"))
        elif before[e.path] != e.checksum:
            changes.append(
                Change(
                    "edited",
                    e.path,
                    f"{shown}: edited since `migrate-job hash` (a migration applied anywhere must not change: "
                    "add a new one instead)",
                )
            )
    for e in recorded.entries:
        if e.path not in now:
            changes.append(Change("removed", e.path, f"{directory / e.path}: removed since `migrate-job hash`"))
    old_order = [e.path for e in recorded.entries if e.path in now]
    new_order = [e.path for e in current if e.path in before]
    moved = next(((a, b) for a, b in zip(new_order, old_order, strict=True) if a != b), None)
    if moved is not None:
        changes.append(
            Change(
                "reordered",
                moved[0],
                f"{sum_path}: the order of the migrations changed since `migrate-job hash`: {moved[0]} now runs "
                f"before {moved[1]} (a changed MIGRATE_ORDER, MIGRATE_FILENAME_PATTERN or renamed versions)",
            )
        )
    return changes


def summary(sum_path: Path, changes: list[Change]) -> str:
    """One line for the error: the files that changed, and what to do if that was intended."""
    files = [f"{c.path} {c.kind}" for c in changes if c.kind in ("added", "edited", "removed")]
    other = [c.kind for c in changes if c.kind not in ("added", "edited", "removed")]
    shown = files[:5] + ([f"{len(files) - 5} more file(s)"] if len(files) > 5 else [])
    if "reordered" in other:
        shown.append("the order changed")
    if "total" in other:
        shown.append("its total does not match its lines")
    return f"{sum_path} does not match the migrations: {', '.join(shown)}; {HINT}"
