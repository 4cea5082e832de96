"""Fleets: one command across many targets — a scheduler over the single-target commands, nothing more.

Each target runs the very same command function (`commands.migrate`, `validate`, `status`,
`wait_for_version`) with its own `Settings` (`Target.settings`), on a worker thread, with its own advisory lock
and session, its log lines tagged `target=<id>`. The scheduler adds only what a fleet needs:

- at most `parallel` targets at a time, and at most `max_per_host` on one database server;
- waves: `canary` targets first, and nothing more if one of them fails; `max_failures` stops starting targets;
- SIGTERM/SIGINT (raised in the main thread): every running target is cancelled through its `cancel.Scope`
  (its query cancelled, its waits woken), so it rolls back and unlocks as a single run would; the targets not
  started are reported as such;
- a report: one `target.finished` event per target, a `fleet.finished` event, the JSON report file, a table.

Rerunning is the resume: each target's own history decides what is left.
"""

from __future__ import annotations

import contextlib
import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from job import cancel
from job.config import Settings
from job.errors import ExitCode, Interrupted, JobError
from job.report import Log, redact_text, secrets_known
from job.targets import Target

SUCCEEDED, FAILED, INTERRUPTED, NOT_STARTED = "succeeded", "failed", "interrupted", "not_started"


@dataclass
class TargetResult:
    """What happened to one target (never a password: errors are redacted)."""

    id: str
    state: str
    exit_code: int | None = None
    applied: list[str] = field(default_factory=list)
    version_before: str | None = None
    version_after: str | None = None
    duration_ms: int = 0
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FleetReport:
    """The outcome of a fleet command: one result per target, and why targets were not started."""

    command: str
    results: list[TargetResult]
    signum: int | None = None
    stopped: str | None = None  # why targets were not started (canary failed, max failures, signal)

    def count(self, state: str) -> int:
        return sum(1 for r in self.results if r.state == state)

    @property
    def exit_code(self) -> int:
        """0 all succeeded; a signal's code; one code all targets share (3, 5, 7, …); else 8."""
        if self.signum is not None:
            return int(Interrupted(self.signum).exit_code)
        ran = [r for r in self.results if r.state != NOT_STARTED]
        if all(r.exit_code == 0 for r in ran) and len(ran) == len(self.results):
            return 0
        codes = {r.exit_code for r in self.results}
        if len(codes) == 1 and None not in codes:
            return int(next(iter(codes)) or 0)
        return int(ExitCode.TARGETS_FAILED)

    def summary(self) -> dict[str, Any]:
        return {
            "targets": len(self.results),
            SUCCEEDED: self.count(SUCCEEDED),
            FAILED: self.count(FAILED),
            INTERRUPTED: self.count(INTERRUPTED),
            NOT_STARTED: self.count(NOT_STARTED),
            "failed_targets": [r.id for r in self.results if r.state == FAILED],
            "stopped": self.stopped,
            "exit_code": self.exit_code,
        }

    def to_json(self) -> str:
        body = {"command": self.command, "summary": self.summary(), "targets": [asdict(r) for r in self.results]}
        return json.dumps(body, indent=2, default=str) + "\n"

    def table(self) -> str:
        header = ["TARGET", "STATE", "EXIT", "BEFORE", "AFTER", "APPLIED", "DURATION", "ERROR"]
        rows = [
            [
                r.id,
                r.state,
                "" if r.exit_code is None else str(r.exit_code),
                r.version_before or "",
                r.version_after or "",
                str(len(r.applied)),
                f"{r.duration_ms} ms",
                (r.error or "")[:100],
            ]
            for r in self.results
        ]
        widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=False)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *rows]]
        s = self.summary()
        lines.append(
            f"{s['targets']} target(s): {s[SUCCEEDED]} succeeded, {s[FAILED]} failed, {s[INTERRUPTED]} interrupted, "
            f"{s[NOT_STARTED]} not started" + (f" ({self.stopped})" if self.stopped else "")
        )
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- scheduling

Work = Callable[[Target, cancel.Scope], TargetResult]


def schedule(
    targets: Sequence[Target],
    work: Work,
    *,
    parallel: int,
    canary: int = 0,
    max_failures: int | None = None,
) -> FleetReport:
    """Run `work` for every target on at most `parallel` threads, in waves (canary first), stopping early on
    failures; a SIGTERM/SIGINT (Interrupted, in this thread) cancels every running target."""
    results: dict[str, TargetResult] = {}  # written by the workers themselves: a signal cannot lose one
    scopes: dict[str, cancel.Scope] = {}
    threads: list[threading.Thread] = []
    finished: queue.SimpleQueue[str] = queue.SimpleQueue()
    waves = [list(targets[:canary]), list(targets[canary:])] if 0 < canary < len(targets) else [list(targets)]
    failures = 0
    stopped: str | None = None
    signum: int | None = None

    def worker(target: Target, scope: cancel.Scope) -> None:
        try:
            result = work(target, scope)
        except BaseException as exc:  # work reports its own failures; this is a last resort
            result = TargetResult(target.id, FAILED, exit_code=1, error=f"{type(exc).__name__}: {exc}")
        results[target.id] = result
        finished.put(target.id)

    try:
        for number, wave in enumerate(waves):
            waiting = list(wave)
            in_flight = 0
            while (waiting and stopped is None) or in_flight:
                while waiting and stopped is None and in_flight < parallel:
                    target = waiting.pop(0)
                    scopes[target.id] = cancel.Scope()
                    thread = threading.Thread(
                        target=worker, args=(target, scopes[target.id]), name=f"target-{target.id}", daemon=True
                    )
                    threads.append(thread)  # before start: a signal during start() still joins it
                    in_flight += 1
                    thread.start()
                done = finished.get()
                in_flight -= 1
                if results[done].exit_code:
                    failures += 1
                if max_failures is not None and failures >= max_failures and stopped is None and waiting:
                    stopped = f"{failures} failure(s): MIGRATE_FLEET_MAX_FAILURES={max_failures}"
            if number == 0 and len(waves) > 1 and failures and stopped is None:
                stopped = f"a canary target failed (MIGRATE_FLEET_CANARY={canary})"
            if stopped is not None:
                break
    except Interrupted as exc:
        signum = exc.signum
        stopped = f"interrupted by signal {exc.signum}"
        for scope in scopes.values():  # each cancelled target rolls back, records and unlocks, then returns
            scope.cancel(exc.signum)
    finally:
        for thread in threads:
            while thread.ident is not None and thread.is_alive():  # started (a signal may come between the two)
                try:
                    thread.join()
                except Interrupted as exc:  # the signal arrived while waiting for the last ones: cancel them
                    signum = signum or exc.signum
                    for scope in scopes.values():
                        scope.cancel(exc.signum)
    report = [results.get(t.id) or TargetResult(t.id, NOT_STARTED, error=stopped) for t in targets]
    return FleetReport("", report, signum=signum, stopped=stopped)


class HostSlots:
    """At most `limit` targets at a time on one database server (host:port)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], threading.BoundedSemaphore] = {}

    @contextlib.contextmanager
    def slot(self, settings: Settings) -> Iterator[None]:
        if self.limit is None:
            yield
            return
        from job import db

        params = db.connection_params(settings)
        key = (str(params.get("host") or "local"), str(params.get("port") or "5432"))
        with self._lock:
            semaphore = self._slots.setdefault(key, threading.BoundedSemaphore(self.limit))
        while not semaphore.acquire(timeout=0.2):
            cancel.check()
        try:
            yield
        finally:
            semaphore.release()


# ---------------------------------------------------------------------------- one target

Action = Callable[[Settings, Log, Any], dict[str, Any] | None]


def run_target(
    target: Target,
    scope: cancel.Scope,
    *,
    base: Settings,
    log: Log,
    action: Action,
    hosts: HostSlots,
    new_state: Callable[[], Any],
) -> TargetResult:
    """Run the command for one target (on a worker thread) and say how it ended, in its log and result."""
    from job.commands import highest_of

    started = time.monotonic()
    tlog = log.bind(target=target.id)
    state = new_state()
    result = TargetResult(target.id, FAILED)
    with cancel.scope(scope):
        try:
            settings = target.settings(base)
            with hosts.slot(settings):
                result.detail = action(settings, tlog, state) or {}
            result.state, result.exit_code = SUCCEEDED, 0
        except Interrupted as exc:
            result.state, result.exit_code = INTERRUPTED, int(exc.exit_code)
        except JobError as exc:
            fields = {**exc.fields, "error": exc.message, "exit_code": int(exc.exit_code)}
            tlog.error(exc.event, **fields)
            result.exit_code, result.error = int(exc.exit_code), exc.message
        except Exception as exc:  # a bug: this target fails, the fleet goes on
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
            tlog.error("target.crashed", error=text, exit_code=1)
            result.exit_code, result.error = 1, text
        if scope.cancelled and result.exit_code != 0:
            result.state = INTERRUPTED
            result.exit_code = int(Interrupted(scope.signum or 15).exit_code)
    result.applied = [o.migration.key for o in getattr(state, "applied", [])]
    result.version_before = getattr(state, "version_before", None)
    result.version_after = highest_of(result.version_before, result.applied)
    result.duration_ms = round((time.monotonic() - started) * 1000)
    if result.error:
        result.error = redact_text(result.error, secrets_known())
    tlog.info(
        "target.finished",
        state=result.state,
        exit_code=result.exit_code,
        applied=len(result.applied),
        version_before=result.version_before,
        version_after=result.version_after,
        duration_ms=result.duration_ms,
        error=result.error,
    )
    return result


def run(command: str, base: Settings, log: Log, targets: list[Target], action: Action) -> FleetReport:
    """The fleet run of `command`: schedule every target, log and write the report."""
    from job.commands import RunState

    started = time.monotonic()
    parallel = base.fleet_parallel
    log.info("fleet.started", command=command, targets=len(targets), parallel=parallel, canary=base.fleet_canary)
    hosts = HostSlots(base.fleet_max_per_host)

    def work(target: Target, scope: cancel.Scope) -> TargetResult:
        return run_target(target, scope, base=base, log=log, action=action, hosts=hosts, new_state=RunState)

    report = schedule(targets, work, parallel=parallel, canary=base.fleet_canary, max_failures=base.fleet_max_failures)
    report.command = command
    if base.report_file is not None:
        write_report(base.report_file, report)
    log.info("fleet.finished", **report.summary(), duration_ms=round((time.monotonic() - started) * 1000))
    return report


def write_report(path: Path, report: FleetReport) -> None:
    """The JSON report, written whole (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(report.to_json(), encoding="utf-8")
    tmp.replace(path)


def status_table(report: FleetReport) -> str:
    """`fleet status`: one line per target — version, counts by state, first problem."""
    header = ["TARGET", "VERSION", "APPLIED", "PENDING", "PROBLEMS", "NOTE"]
    rows = []
    for r in report.results:
        states = r.detail.get("states", {})
        problems = r.detail.get("problems", [])
        note = (problems[0] if problems else r.error or ("" if r.state == SUCCEEDED else r.state))[:100]
        rows.append(
            [
                r.id,
                r.version_before or "",
                str(states.get("applied", "")),
                str(states.get("pending", "")),
                str(len(problems)) if r.state == SUCCEEDED else "?",
                note,
            ]
        )
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def quiet_output() -> io.StringIO:
    """Where a target's report-style output goes (the fleet prints its own summary)."""
    return io.StringIO()
