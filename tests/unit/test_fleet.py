"""The fleet scheduler without a database: parallelism bound, canary waves, max failures, exit codes, report.

`schedule` runs a work function per target on threads; here the work is a stand-in that records what ran
and returns a chosen outcome, so every rule of the scheduler is checked on its own.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from job import cancel
from job.errors import Interrupted
from job.fleet import FAILED, NOT_STARTED, SUCCEEDED, FleetReport, TargetResult, schedule
from job.targets import Target


class Recorder:
    """A work function: tracks concurrency and start order; targets named in `failing` fail with `code`."""

    def __init__(self, failing: set[str] | None = None, code: int = 1, hold: float = 0.02) -> None:
        self.failing = failing or set()
        self.code = code
        self.hold = hold
        self.started: list[str] = []
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, target: Target, scope: cancel.Scope) -> TargetResult:
        with self._lock:
            self.started.append(target.id)
            self.running += 1
            self.peak = max(self.peak, self.running)
        threading.Event().wait(self.hold)
        with self._lock:
            self.running -= 1
        if target.id in self.failing:
            return TargetResult(target.id, FAILED, exit_code=self.code, error="boom")
        return TargetResult(target.id, SUCCEEDED, exit_code=0)


def targets(n: int) -> list[Target]:
    return [Target(f"t{i:02d}") for i in range(n)]


@pytest.mark.parametrize("parallel", [1, 3, 8])
def test_at_most_parallel_targets_run_at_once(parallel: int) -> None:
    """Every target runs once, never more than `parallel` at a time."""
    work = Recorder(hold=0.05)
    report = schedule(targets(12), work, parallel=parallel)
    assert sorted(work.started) == [t.id for t in targets(12)]
    assert work.peak <= parallel
    assert report.exit_code == 0 and report.count(SUCCEEDED) == 12


def test_a_failed_canary_stops_before_the_rest() -> None:
    """--canary 2 with a failure among the first two: the others never start; exit 8."""
    work = Recorder(failing={"t01"})
    report = schedule(targets(10), work, parallel=4, canary=2)
    assert sorted(work.started) == ["t00", "t01"]
    assert [r.state for r in report.results] == [SUCCEEDED, FAILED] + [NOT_STARTED] * 8
    assert report.stopped is not None and "canary" in report.stopped
    assert report.exit_code == 8


def test_a_good_canary_lets_the_rest_run() -> None:
    """Canary targets first (all of them before any other), then the rest."""
    work = Recorder()
    report = schedule(targets(6), work, parallel=4, canary=2)
    assert work.started[:2] == ["t00", "t01"] and sorted(work.started[2:]) == ["t02", "t03", "t04", "t05"]
    assert report.exit_code == 0


def test_max_failures_stops_starting_new_targets() -> None:
    """After F failures no new target starts; those already running finish; the rest are not started."""
    work = Recorder(failing={"t00", "t01", "t02", "t03"}, hold=0.01)
    report = schedule(targets(20), work, parallel=1, max_failures=2)
    assert work.started == ["t00", "t01"]
    assert report.count(FAILED) == 2 and report.count(NOT_STARTED) == 18
    assert report.exit_code == 8


@pytest.mark.parametrize(
    ("failing", "code", "expected"),
    [
        (set(), 1, 0),
        ({"t00"}, 1, 8),
        ({"t00", "t01", "t02"}, 5, 5),  # every target unreachable: exit 5 keeps its meaning
        ({"t00", "t01", "t02"}, 3, 3),
        ({"t00", "t01"}, 7, 8),  # not all of them
    ],
)
def test_exit_code_of_a_fleet(failing: set[str], code: int, expected: int) -> None:
    """0 when all succeed; the shared code when every target failed the same way; otherwise 8."""
    assert schedule(targets(3), Recorder(failing=failing, code=code), parallel=2).exit_code == expected


def test_report_json_names_failed_targets_and_why() -> None:
    """The JSON report has a summary with the failed ids and one entry per target with its error."""
    report = schedule(targets(3), Recorder(failing={"t01"}), parallel=2)
    report.command = "migrate"
    body = json.loads(report.to_json())
    assert body["summary"]["failed_targets"] == ["t01"]
    assert {t["id"]: t["error"] for t in body["targets"]} == {"t00": None, "t01": "boom", "t02": None}
    assert "t01" in report.table() and "1 failed" in report.table()


def test_a_signal_cancels_every_running_target() -> None:
    """SIGTERM in the scheduler's thread cancels the running targets' scopes; queued ones are not started."""
    started = threading.Event()
    seen: list[int | None] = []

    def work(target: Target, scope: cancel.Scope) -> TargetResult:
        with cancel.scope(scope):
            try:
                started.set()
                cancel.sleep(30)
            except BaseException:
                seen.append(scope.signum)
                return TargetResult(target.id, "interrupted", exit_code=143)
        return TargetResult(target.id, SUCCEEDED, exit_code=0)

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    def send_sigterm() -> None:
        if started.wait(60):  # never a late signal into whatever test runs next
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)  # what job.cli installs
    try:
        threading.Thread(target=send_sigterm).start()
        report: FleetReport = schedule(targets(5), work, parallel=2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert report.signum == signal.SIGTERM and report.exit_code == 143
    assert seen and set(seen) == {signal.SIGTERM}  # the running ones (1 or 2), each cancelled
    assert report.count("interrupted") == len(seen)
    assert report.count(NOT_STARTED) == 5 - len(seen)
