"""Which statements of a migration run, checked for the way it runs (in a transaction or outside one).

Pure: no I/O. Everything here raises SourceError (exit 4) before anything runs, so `migrate` can check every
pending file first; `apply` runs what `statements_for` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from job.errors import SourceError
from job.source import Migration, Section, transaction_reason
from job.sqlscan import Statement

_DROPPED_TX = {"begin", "start", "commit"}
_FORBIDDEN_TX = {"rollback", "prepare", "commit_prepared", "rollback_prepared"}


def statements_for(
    m: Migration, section: Section | None = None, *, transactional: bool | None = None
) -> list[Statement]:
    """The statements to run for a section, checked for what the chosen mode cannot do.

    Raises SourceError (exit 4, before anything runs) for a syntax error, COPY FROM STDIN,
    ROLLBACK/PREPARE TRANSACTION in a file, a statement that releases the session's advisory locks,
    a non-transactional statement forced into a transaction, a statement that needs a transaction
    block in a migration that runs outside one, or BEGIN options that cannot be honoured. In a
    transaction, the file's own `BEGIN ISOLATION LEVEL …` becomes `SET TRANSACTION …`, its first statement.
    """
    sec = section or m.up
    tx = m.transactional if transactional is None else transactional
    out: list[Statement] = []
    in_block = False  # outside a transaction: inside the file's own BEGIN … COMMIT (run as written)

    def refuse(s: Statement, why: str) -> SourceError:
        line, _ = sec.location(s.offset)  # computed only on the error path (it scans the file)
        return SourceError(f"{sec.path}:{line}: {why}", file=str(sec.path), line=line)

    for index, s in enumerate(sec.statements):
        if s.copy_client:
            raise refuse(s, "COPY … FROM STDIN / TO STDOUT is a psql feature; use INSERT or a file on the server")
        if s.releases_locks:
            raise refuse(
                s,
                f"{s.releases_locks} releases every advisory lock of the session, including the lock migrate-job "
                "holds so that no second runner migrates at the same time; remove it from the migration",
            )
        if s.transaction_control in _FORBIDDEN_TX:
            raise refuse(s, f"{s.text.split()[0].upper()} in a migration file is not supported")
        if tx:
            if s.transaction_control in _DROPPED_TX:
                if s.transaction_modes:
                    out.insert(0, _set_transaction(s, index, refuse))
                continue
            if s.non_transactional:
                raise refuse(
                    s,
                    f"{sec.reason_of(s)}: this statement cannot run inside a transaction block, but the migration "
                    "is forced transactional (remove `-- migrate-job: transaction=on`)",
                )
        elif s.transaction_control in ("begin", "start"):
            in_block = True
        elif s.transaction_control in ("commit", "rollback"):
            in_block = False
        elif s.non_transactional and in_block:
            raise refuse(
                s,
                f"{sec.reason_of(s)}: this statement cannot run inside a transaction block, but it is inside the "
                "file's own BEGIN … COMMIT; remove the BEGIN and COMMIT, or move it into a migration of its own",
            )
        elif s.transaction_only and not in_block:
            raise refuse(
                s,
                f"{s.transaction_only} only works inside a transaction block, but this migration runs outside one "
                f"because of {transaction_reason(m, sec)}; move the statement that cannot run in a transaction into "
                "a migration of its own",
            )
        out.append(s)
    return out


def _set_transaction(s: Statement, index: int, refuse: Callable[[Statement, str], SourceError]) -> Statement:
    """The file's `BEGIN ISOLATION LEVEL …` as `SET TRANSACTION …` for the migration's own transaction."""
    written = f"{s.text.split()[0].upper()} {', '.join(s.transaction_modes)}"
    if index > 0:
        raise refuse(
            s,
            f"{written}: transaction options are honoured only on the file's first statement (the whole file runs "
            "in one transaction, and its isolation level must be set before any query)",
        )
    if "READ ONLY" in s.transaction_modes:
        raise refuse(
            s,
            f"{written}: READ ONLY cannot be honoured: migrate-job records the migration in its history table "
            "in the same transaction; remove READ ONLY",
        )
    return replace(
        s,
        text="SET TRANSACTION " + ", ".join(s.transaction_modes),
        kind="VariableSetStmt",
        transaction_control=None,
        transaction_modes=(),
    )


def transaction_modes(m: Migration, section: Section | None = None) -> tuple[str, ...]:
    """The options (ISOLATION LEVEL …) of the file's own BEGIN / START TRANSACTION, if it has any."""
    sec = section or m.up
    return next((s.transaction_modes for s in sec.statements if s.transaction_modes), ())


def section_transactional(m: Migration, sec: Section) -> bool:
    """Whether a section runs in one transaction: directive > marker option > its statements."""
    if m.directives.transaction is not None:
        return m.directives.transaction
    if sec.transaction is not None:
        return sec.transaction
    return not any(s.non_transactional for s in sec.statements)
