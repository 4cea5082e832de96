"""Production safety, end to end: lock timeouts, signals, crashes, lost connections, repair, waiting.

Every test runs the real CLI (`python -m job`) as a subprocess against a real PostgreSQL server and
looks at the database afterwards. Bounds such as "exits within 5 s" are requirements of the
README's "Running against production" section, not speed benchmarks.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from job.lock import lock_key
from tests.pg.cli import HISTORY, advisory_locks, query
from tests.pg.cli import history_by_version as history
from tests.pg.cli import write as write_migrations
from tests.pg.runner import (
    Background,
    Job,
    Jobs,
    backend_alive,
    column_exists,
    free_port,
    index_valid,
    listening,
    migration_session,
    open_transaction,
    runner_sessions,
    table_exists,
    terminate,
    wait_until,
)
from tests.pgutil import DevServerFactory

pytestmark = pytest.mark.pg

SIGNALS = [pytest.param(signal.SIGTERM, 143, id="SIGTERM"), pytest.param(signal.SIGINT, 130, id="SIGINT")]


def migrate(jobs: Jobs, url: str, folder: Path, **env: str) -> Job:
    job = jobs.start(url, "migrate", "--dir", str(folder), **env)
    job.wait(timeout=120)
    return job


def start_migrate(jobs: Jobs, url: str, folder: Path, **env: str) -> Job:
    return jobs.start(url, "migrate", "--dir", str(folder), **env)


def exit_within(job: Job, seconds: float, after: str) -> int:
    """The job's exit code; fails the test if the process is still running `seconds` after `after`."""
    try:
        return job.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the process was still running {seconds:g} s after {after}\n{job.describe()}")


def ok(job: Job) -> None:
    assert job.returncode == 0, job.describe()


def wait_for_migration(url: str, version: str, *, job: Job, wait_event: str | None = None) -> dict[str, Any]:
    """The runner's session once it runs migration `version` (optionally: while it waits on `wait_event`)."""
    return wait_until(
        lambda: migration_session(url, version, wait_event),
        60,
        f"the runner to run migration {version}" + (f" and wait on {wait_event}" if wait_event else ""),
        on_timeout=job.describe,
        stop_if=lambda: job.returncode is not None,
    )


def applied_versions(url: str) -> dict[str, str]:
    return {v: str(r["status"]) for v, r in history(url).items()}


# ---------------------------------------------------------------------------- lock_timeout and retries


def test_lock_timeout_retries_name_the_blocker_and_never_stall_readers(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """An ALTER blocked by a long transaction times out, retries (naming the blocker) and applies; readers go on."""
    folder = write_migrations(
        tmp_path / "migrations",
        {"1_busy.sql": "CREATE TABLE busy (x int);\nINSERT INTO busy SELECT generate_series(1, 10);\n"},
    )
    ok(migrate(jobs, db_url, folder))
    write_migrations(folder, {"2_add_y.sql": "ALTER TABLE busy ADD COLUMN y int;\n"})
    lock_timeout_s = 0.5

    reads: list[float] = []
    read_errors: list[str] = []
    stop_reading = threading.Event()

    def reader() -> None:
        with psycopg.connect(db_url, autocommit=True, application_name="test:reader") as conn:
            conn.execute(f"SET statement_timeout = '{round((lock_timeout_s + 2) * 1000)}ms'")
            while not stop_reading.is_set():
                started = time.monotonic()
                try:
                    conn.execute("SELECT count(*) FROM busy").fetchone()
                except psycopg.Error as exc:
                    read_errors.append(f"{exc.sqlstate}: {exc}")
                    return
                reads.append(time.monotonic() - started)
                stop_reading.wait(0.05)

    with open_transaction(db_url, "LOCK TABLE busy IN ACCESS SHARE MODE") as holder:
        holder_pid = holder.info.backend_pid
        job = start_migrate(jobs, db_url, folder, MIGRATE_LOCK_TIMEOUT="500ms")
        wait_for_migration(db_url, "2", job=job, wait_event="Lock")
        reading = Background(reader)
        release = Background(holder.commit, delay=3.0)
        try:
            code = job.wait(timeout=120)
        finally:
            stop_reading.set()
            release.join()
            reading.join()

    assert code == 0, job.describe()
    timeouts = job.events("migration.lock_timeout")
    assert timeouts, job.describe()
    assert [e["attempt"] for e in timeouts] == list(range(1, len(timeouts) + 1))
    for event in timeouts:
        assert event["version"] == "2"
        assert event["lock_timeout_ms"] == 500
        blockers = event["blockers"]
        assert isinstance(blockers, list)
        assert holder_pid in [b["pid"] for b in blockers], event
        assert all({"pid", "query", "age"} <= set(b) for b in blockers), event
    applied = [e for e in job.events("migration.applied") if e["version"] == "2"]
    assert len(applied) == 1 and applied[0]["attempts"] == len(timeouts) + 1, job.describe()
    assert column_exists(db_url, "busy", "y")
    assert applied_versions(db_url) == {"1": "applied", "2": "applied"}
    assert read_errors == [], "a reader hit its statement_timeout while the migration waited"
    assert reads, "the reader never completed a query while the migration waited"


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        pytest.param([], {"MIGRATE_LOCK_TIMEOUT": "200ms", "MIGRATE_LOCK_RETRIES": "2"}, id="env"),
        # The flags must win over the environment (README: flag > environment > default).
        pytest.param(["--lock-timeout", "200ms", "--lock-retries", "2"], {"MIGRATE_LOCK_RETRIES": "0"}, id="flags"),
    ],
)
def test_lock_timeout_retries_exhausted_fail_without_a_trace(
    db_url: str, tmp_path: Path, jobs: Jobs, flags: list[str], env: dict[str, str]
) -> None:
    """When the blocking transaction never ends, the retries run out: exit 1, 55P03 reported, nothing applied."""
    folder = write_migrations(tmp_path / "migrations", {"1_busy.sql": "CREATE TABLE busy (x int);\n"})
    ok(migrate(jobs, db_url, folder))
    write_migrations(
        folder,
        {
            "2_add_y.sql": "CREATE TABLE side (id int);\nALTER TABLE busy ADD COLUMN y int;\n",
            "3_after.sql": "CREATE TABLE after_busy (id int);\n",
        },
    )

    with open_transaction(db_url, "LOCK TABLE busy IN ACCESS SHARE MODE"):
        job = jobs.start(db_url, "migrate", "--dir", str(folder), *flags, **env)
        job.wait(timeout=120)
        after = applied_versions(db_url), column_exists(db_url, "busy", "y"), table_exists(db_url, "side")

    assert job.returncode == 1, job.describe()
    failed = job.event("migration.failed")
    assert failed["version"] == "2"
    assert failed["sqlstate"] == "55P03"
    assert "lock_timeout" in failed["error"] and "55P03" in failed["error"], failed
    assert failed["attempts"] == 3, job.describe()
    retries = job.events("migration.lock_timeout")
    assert [(e["attempt"], e["lock_timeout_ms"]) for e in retries] == [(1, 200), (2, 200)], job.describe()
    assert after == ({"1": "applied"}, False, False)
    assert not table_exists(db_url, "after_busy")


# ---------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("sig", "code"), SIGNALS)
def test_signal_during_statement_cancels_rolls_back_and_releases(
    db_url: str, tmp_path: Path, jobs: Jobs, sig: signal.Signals, code: int
) -> None:
    """SIGTERM/SIGINT during a long statement: exit 143/130 within 5 s, query cancelled, rolled back, lock free."""
    folder = write_migrations(
        tmp_path / "migrations",
        {
            "1_a.sql": "CREATE TABLE a (id int);\n",
            "2_slow.sql": "CREATE TABLE b (id int);\nSELECT pg_sleep(60);\n",
            "3_c.sql": "CREATE TABLE c (id int);\n",
        },
    )
    job = start_migrate(jobs, db_url, folder)
    session = wait_for_migration(db_url, "2", job=job, wait_event="PgSleep")

    job.send(sig)

    assert exit_within(job, 5, sig.name) == code, job.describe()
    interrupted = job.event("run.interrupted")
    assert interrupted["signal"] == sig.name
    assert interrupted["applied"] == ["1"]
    assert "2" in interrupted["not_applied"]
    assert interrupted["exit_code"] == code
    assert applied_versions(db_url) == {"1": "applied"}
    assert not table_exists(db_url, "b")
    wait_until(lambda: not backend_alive(db_url, int(session["pid"])), 5, "the runner's session to end")
    wait_until(lambda: advisory_locks(db_url) == [], 5, "the advisory lock to be released")

    write_migrations(folder, {"2_slow.sql": "CREATE TABLE b (id int);\n"})
    again = migrate(jobs, db_url, folder)

    ok(again)
    assert again.events("lock.waiting") == [], "the second runner had to wait for the advisory lock"
    assert len(again.events("lock.acquired")) == 1
    assert applied_versions(db_url) == {"1": "applied", "2": "applied", "3": "applied"}


def test_sigterm_while_waiting_for_the_advisory_lock(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """SIGTERM while another runner holds the advisory lock stops the wait at once: exit 143 within 5 s."""
    folder = write_migrations(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    with psycopg.connect(db_url, autocommit=True, application_name="test:other-runner") as other:
        other.execute("SELECT pg_advisory_lock(%s)", (lock_key("public", "migrate_job_history"),))
        job = start_migrate(jobs, db_url, folder)
        job.wait_for_event("lock.waiting")

        job.send(signal.SIGTERM)

        assert exit_within(job, 5, "SIGTERM") == 143, job.describe()
        assert job.event("run.interrupted")["signal"] == "SIGTERM"
        assert not table_exists(db_url, "a")
        wait_until(lambda: runner_sessions(db_url) == [], 5, "the runner's session to end")
        assert history(db_url) == {}


def test_sigterm_while_waiting_for_the_database(tmp_path: Path, jobs: Jobs) -> None:
    """SIGTERM while retrying to connect to a database that is not up stops at once: exit 143 within 5 s."""
    folder = write_migrations(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    job = start_migrate(jobs, url, folder, MIGRATE_CONNECT_TIMEOUT="60s")
    job.wait_for_event("db.waiting")

    job.send(signal.SIGTERM)

    assert exit_within(job, 5, "SIGTERM") == 143, job.describe()
    assert job.event("run.interrupted")["signal"] == "SIGTERM"


# ---------------------------------------------------------------------------- crashes


def consistent_state(url: str) -> tuple[dict[str, str], set[int]]:
    """History (version -> status) and the tN tables, read in one snapshot."""
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        tables = {
            int(r[0][1:])
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename ~ '^t[0-9]+$'"
            ).fetchall()
        }
        has_history = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'migrate_job_history'"
            " AND relnamespace = 'public'::regnamespace"
        ).fetchone()
        rows: dict[str, str] = {}
        if has_history and has_history[0]:
            rows = {str(v): str(s) for v, s in conn.execute(f"SELECT version, status FROM {HISTORY}").fetchall()}
    return rows, tables


def test_sigkill_at_random_moments_leaves_a_migration_boundary(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """SIGKILL at any moment, the next runner started at once: history and schema always agree, nothing runs twice."""
    count = 100
    folder = write_migrations(
        tmp_path / "migrations",
        {
            f"{n}_t{n}.sql": f"CREATE TABLE t{n} (id int);\nINSERT INTO t{n} VALUES ({n});\nSELECT pg_sleep(0.01);\n"
            for n in range(1, count + 1)
        },
    )
    rng = random.Random(2867)  # startup, lock-wait and mid-pipeline kills; the asserts hold whatever the moment
    killed: list[Job] = []
    for _ in range(5):
        job = start_migrate(jobs, db_url, folder)  # at once: the previous runner's orphan may still run
        time.sleep(rng.uniform(0.2, 1.5))
        job.proc.kill()
        code = job.wait(timeout=10)
        assert code in (-signal.SIGKILL, 0), job.describe()  # 0: it finished before the kill
        killed.append(job)
        rows, tables = consistent_state(db_url)
        assert set(rows.values()) <= {"applied"}, rows
        assert {int(v) for v in rows} == tables, f"history {sorted(rows)} vs tables {sorted(tables)}"

    final = migrate(jobs, db_url, folder)

    ok(final)
    for job in killed:  # a runner that started beside an orphan would have failed on "already exists"
        assert job.events("migration.failed") == [], job.describe()
    rows, tables = consistent_state(db_url)
    assert rows == {str(n): "applied" for n in range(1, count + 1)}
    assert tables == set(range(1, count + 1))
    counts = query(db_url, " UNION ALL ".join(f"SELECT {n}, count(*), min(id) FROM t{n}" for n in range(1, count + 1)))
    assert sorted((int(n), int(c), int(i)) for n, c, i in counts) == [(n, 1, n) for n in range(1, count + 1)]


def test_sigkill_during_a_long_statement_the_next_runner_waits_for_the_orphan(
    db_url: str, tmp_path: Path, jobs: Jobs
) -> None:
    """kill -9 mid-statement: the next runner waits while the orphaned statement lives, then applies it once."""
    folder = write_migrations(
        tmp_path / "migrations",
        {
            "1_mood.sql": "CREATE TYPE mood AS ENUM ('ok', 'sad');\nCREATE TABLE diary (m mood);\n"
            "INSERT INTO diary VALUES ('ok');\nSELECT pg_sleep(20);\n",
            "2_after.sql": "INSERT INTO diary VALUES ('sad');\n",
        },
    )
    first = start_migrate(jobs, db_url, folder)
    orphan = wait_for_migration(db_url, "1", job=first, wait_event="PgSleep")
    second = start_migrate(jobs, db_url, folder)  # already queued behind the lock when the first one dies
    waiting = second.wait_for_event("lock.waiting")
    assert [h["pid"] for h in waiting["holders"]] == [orphan["pid"]], waiting
    assert waiting["holders"][0]["application_name"] == "migrate-job:migrate 1"

    first.proc.kill()
    first.wait(timeout=10)

    # The orphaned statement keeps the lock while it lives: the second runner never starts beside it.
    # client_connection_check_interval makes the server notice the dead client and stop the orphan in
    # seconds, long before its pg_sleep(20) would end.
    deadline = time.monotonic() + 15
    while backend_alive(db_url, int(orphan["pid"])):
        assert second.events("lock.acquired") == [], second.describe()
        assert time.monotonic() < deadline, "the orphaned statement was not stopped"
        time.sleep(0.05)
    assert second.wait(timeout=60) == 0, second.describe()
    assert [e["version"] for e in second.events("migration.applied")] == ["1", "2"]
    assert second.events("migration.failed") == []
    assert query(db_url, "SELECT m::text FROM diary ORDER BY m") == [("ok",), ("sad",)]
    assert applied_versions(db_url) == {"1": "applied", "2": "applied"}


def test_a_migration_that_releases_the_lock_is_rolled_back(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """A migration that drops the runner's advisory lock (dynamic SQL) is rolled back and the run stops (exit 5)."""
    release = "DO $$ BEGIN EXECUTE 'SELECT pg_advisory_' || 'unlock_all()'; END $$;\n"
    folder = write_migrations(
        tmp_path / "migrations",
        {
            "1_a.sql": "CREATE TABLE a (id int);\n",
            "2_b.sql": "CREATE TABLE b (id int);\n" + release,
            "3_c.sql": "CREATE TABLE c (id int);\n",
        },
    )

    job = migrate(jobs, db_url, folder)

    assert job.returncode == 5, job.describe()
    error = job.event("db.unreachable")
    assert "lost the advisory lock" in error["error"] and error["version"] == "2", error
    assert applied_versions(db_url) == {"1": "applied"}
    assert (table_exists(db_url, "b"), table_exists(db_url, "c")) == (False, False)
    write_migrations(folder, {"2_b.sql": "CREATE TABLE b (id int);\n"})
    ok(migrate(jobs, db_url, folder))
    assert applied_versions(db_url) == {"1": "applied", "2": "applied", "3": "applied"}


# ---------------------------------------------------------------------------- non-transactional + repair

DUP_TABLE = "CREATE TABLE dup (x int);\nINSERT INTO dup VALUES (1), (1), (2);\n"
DUP_INDEXES = "CREATE INDEX CONCURRENTLY a_idx ON dup (x);\nCREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x);\n"
DEDUPLICATE = "DELETE FROM dup d WHERE d.ctid <> (SELECT min(ctid) FROM dup e WHERE e.x = d.x)"


def failed_concurrently(db_url: str, tmp_path: Path, jobs: Jobs) -> Path:
    """A folder whose CONCURRENTLY migration 2 failed at its second statement (duplicates)."""
    folder = write_migrations(tmp_path / "migrations", {"1_dup.sql": DUP_TABLE, "2_dup_idx.sql": DUP_INDEXES})
    job = migrate(jobs, db_url, folder)
    assert job.returncode == 1, job.describe()
    assert job.event("migration.failed")["version"] == "2"
    rows = history(db_url)
    assert rows["1"]["status"] == "applied"
    assert rows["2"]["status"] == "failed"
    assert rows["2"]["kind"] == "non_transactional"
    assert rows["2"]["statements_done"] == 1
    assert index_valid(db_url, "a_idx") is True
    assert index_valid(db_url, "dup_x") is False
    return folder


def test_failed_concurrently_migration_blocks_runs_until_repaired(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """A failed CONCURRENTLY migration is recorded as failed, later runs refuse (exit 4), and `repair` resumes it."""
    folder = failed_concurrently(db_url, tmp_path, jobs)

    blocked = migrate(jobs, db_url, folder)

    assert blocked.returncode == 4, blocked.describe()
    assert "repair" in blocked.event("validate.failed")["error"]
    assert history(db_url)["2"]["status"] == "failed"

    query(db_url, DEDUPLICATE)
    repaired = jobs.run(db_url, "repair", "--dir", str(folder))

    ok(repaired)
    assert [e["index"] for e in repaired.events("repair.dropped_invalid_index")] == ["dup_x"]
    assert index_valid(db_url, "dup_x") is True
    assert index_valid(db_url, "a_idx") is True
    row = history(db_url)["2"]
    assert (row["status"], row["statements_done"]) == ("applied", 2)

    after = migrate(jobs, db_url, folder)

    ok(after)
    assert after.events("migration.applied") == []


def test_repair_mark_applied_after_finishing_by_hand(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """`repair --mode mark-applied` records a failed migration the user finished by hand as applied."""
    folder = failed_concurrently(db_url, tmp_path, jobs)
    query(db_url, "DROP INDEX dup_x")
    query(db_url, DEDUPLICATE)
    query(db_url, "CREATE UNIQUE INDEX dup_x ON dup (x)")

    marked = jobs.run(db_url, "repair", "--dir", str(folder), "--mode", "mark-applied")

    ok(marked)
    row = history(db_url)["2"]
    assert (row["status"], row["statements_done"]) == ("applied", 2)
    after = migrate(jobs, db_url, folder)
    ok(after)
    assert after.events("migration.applied") == []


def test_repair_forget_lets_the_next_run_rerun_the_file(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """`repair --mode forget` deletes the failed entry, so the next `migrate` runs the file from the start."""
    folder = failed_concurrently(db_url, tmp_path, jobs)

    forgot = jobs.run(db_url, "repair", "--dir", str(folder), "--mode", "forget")

    ok(forgot)
    assert "2" not in history(db_url)
    query(db_url, "DROP INDEX dup_x")
    query(db_url, "DROP INDEX a_idx")
    query(db_url, DEDUPLICATE)
    after = migrate(jobs, db_url, folder)
    ok(after)
    assert [e["version"] for e in after.events("migration.applied")] == ["2"]
    assert (index_valid(db_url, "a_idx"), index_valid(db_url, "dup_x")) == (True, True)
    assert history(db_url)["2"]["status"] == "applied"


def test_sigterm_during_waiting_create_index_concurrently_then_repair(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """SIGTERM while CREATE INDEX CONCURRENTLY waits for a writer: exit 143, entry failed; `repair` finishes it."""
    folder = write_migrations(tmp_path / "migrations", {"1_w.sql": "CREATE TABLE w (x int);\n"})
    ok(migrate(jobs, db_url, folder))
    write_migrations(
        folder, {"2_w_idx.sql": "-- migrate-job: lock_timeout=0\nCREATE INDEX CONCURRENTLY w_x ON w (x);\n"}
    )

    with open_transaction(db_url, "INSERT INTO w VALUES (1)") as writer:
        job = start_migrate(jobs, db_url, folder)
        wait_for_migration(db_url, "2", job=job, wait_event="Lock")

        job.send(signal.SIGTERM)

        assert exit_within(job, 5, "SIGTERM") == 143, job.describe()
        row = history(db_url)["2"]
        assert row["status"] == "failed", row
        assert row["statements_done"] == 0
        assert index_valid(db_url, "w_x") is False  # the catalog entry CIC committed before it waited
        writer.commit()

    blocked = migrate(jobs, db_url, folder)
    assert blocked.returncode == 4, blocked.describe()
    repaired = jobs.run(db_url, "repair", "--dir", str(folder))

    ok(repaired)
    assert [e["index"] for e in repaired.events("repair.dropped_invalid_index")] == ["w_x"]
    assert index_valid(db_url, "w_x") is True
    assert history(db_url)["2"]["status"] == "applied"
    ok(migrate(jobs, db_url, folder))


def test_sigkill_during_create_index_concurrently_then_repair_at_once(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """kill -9 while CREATE INDEX CONCURRENTLY waits; `repair` waits while the orphan lives, then finishes it."""
    folder = write_migrations(tmp_path / "migrations", {"1_w.sql": "CREATE TABLE w (x int);\n"})
    ok(migrate(jobs, db_url, folder))
    write_migrations(
        folder, {"2_w_idx.sql": "-- migrate-job: lock_timeout=0\nCREATE INDEX CONCURRENTLY w_x ON w (x);\n"}
    )

    with open_transaction(db_url, "INSERT INTO w VALUES (1)") as writer:
        job = start_migrate(jobs, db_url, folder)
        orphan = wait_for_migration(db_url, "2", job=job, wait_event="Lock")
        repair = jobs.start(db_url, "repair", "--dir", str(folder))  # queued behind the lock
        waiting = repair.wait_for_event("lock.waiting")
        assert [h["pid"] for h in waiting["holders"]] == [orphan["pid"]], waiting

        job.proc.kill()
        job.wait(timeout=10)

        deadline = time.monotonic() + 15
        while backend_alive(db_url, int(orphan["pid"])):
            assert repair.events("lock.acquired") == [], repair.describe()
            assert time.monotonic() < deadline, "the orphaned CREATE INDEX was not stopped"
            time.sleep(0.05)
        writer.commit()

    assert repair.wait(timeout=60) == 0, repair.describe()
    assert [e["index"] for e in repair.events("repair.dropped_invalid_index")] == ["w_x"]
    assert index_valid(db_url, "w_x") is True
    row = history(db_url)["2"]
    assert (row["status"], row["statements_done"]) == ("applied", 1)
    ok(migrate(jobs, db_url, folder))


# ---------------------------------------------------------------------------- lost connections

THREE_WITH_SLOW_SECOND = {
    "1_a.sql": "CREATE TABLE a (id int);\n",
    "2_b.sql": "CREATE TABLE b (id int);\nSELECT pg_sleep(3);\n",
    "3_c.sql": "CREATE TABLE c (id int);\n",
}


def assert_second_left_no_trace(url: str) -> None:
    assert applied_versions(url) == {"1": "applied"}
    assert (table_exists(url, "a"), table_exists(url, "b"), table_exists(url, "c")) == (True, False, False)


def test_terminated_work_session_exits_5_and_rerun_completes(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """If the runner's session is terminated mid-migration: exit 5, that migration left no trace, a rerun works."""
    folder = write_migrations(tmp_path / "migrations", THREE_WITH_SLOW_SECOND)
    job = start_migrate(jobs, db_url, folder)
    session = wait_for_migration(db_url, "2", job=job, wait_event="PgSleep")

    terminate(db_url, int(session["pid"]))

    assert job.wait(timeout=60) == 5, job.describe()
    assert job.events("db.unreachable"), job.describe()
    assert_second_left_no_trace(db_url)
    ok(migrate(jobs, db_url, folder))
    assert applied_versions(db_url) == {"1": "applied", "2": "applied", "3": "applied"}


def test_server_restart_mid_migration_exits_5_and_rerun_completes(
    tmp_path: Path, jobs: Jobs, devserver_factory: DevServerFactory
) -> None:
    """A server restart during a migration: exit 5, the migration left no trace, a rerun completes."""
    server = devserver_factory()
    url = server.url()
    folder = write_migrations(tmp_path / "migrations", THREE_WITH_SLOW_SECOND)
    job = start_migrate(jobs, url, folder)
    wait_for_migration(url, "2", job=job, wait_event="PgSleep")

    restart = Background(server.restart)
    try:
        code = job.wait(timeout=60)
    finally:
        restart.join()

    assert code == 5, job.describe()
    assert job.events("db.unreachable"), job.describe()
    assert_second_left_no_trace(url)
    ok(migrate(jobs, url, folder))
    assert applied_versions(url) == {"1": "applied", "2": "applied", "3": "applied"}


def test_session_terminated_mid_pipeline_stops_at_a_migration_boundary(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """The runner's session terminated in the middle of a pipeline: exit 5, history = a prefix, a rerun completes."""
    folder = write_migrations(
        tmp_path / "migrations",
        {f"{n}_t{n}.sql": f"CREATE TABLE t{n} (id int);\nSELECT pg_sleep(0.5);\n" for n in range(1, 5)},
    )
    job = start_migrate(jobs, db_url, folder)
    session = wait_for_migration(db_url, "2", job=job, wait_event="PgSleep")

    terminate(db_url, int(session["pid"]))

    assert job.wait(timeout=60) == 5, job.describe()
    assert job.event("db.unreachable")["version"] == "2"
    assert [e["version"] for e in job.events("migration.applied")] == ["1"]
    assert applied_versions(db_url) == {"1": "applied"}
    assert [table_exists(db_url, f"t{n}") for n in range(1, 5)] == [True, False, False, False]
    ok(migrate(jobs, db_url, folder))
    assert applied_versions(db_url) == {str(n): "applied" for n in range(1, 5)}


# ---------------------------------------------------------------------------- waiting


def test_wait_and_migrate_started_before_the_database(
    tmp_path: Path, jobs: Jobs, devserver_factory: DevServerFactory
) -> None:
    """`wait` and `migrate` started before the database is up keep retrying and succeed once it accepts connections."""
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    folder = write_migrations(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    waiter = jobs.start(url, "wait", "--timeout", "30")
    migrator = start_migrate(jobs, url, folder, MIGRATE_CONNECT_TIMEOUT="30")
    waiter.wait_for_event("db.waiting")
    migrator.wait_for_event("db.waiting")

    starting = Background(lambda: devserver_factory(port=port), delay=2.0)
    try:
        waited = waiter.wait(timeout=60)
        migrated = migrator.wait(timeout=60)
    finally:
        starting.join()

    assert waited == 0, waiter.describe()
    assert len(waiter.events("db.ready")) == 1
    assert migrated == 0, migrator.describe()
    assert applied_versions(url) == {"1": "applied"}


def test_wait_gives_up_with_exit_5(tmp_path: Path, jobs: Jobs) -> None:
    """`wait --timeout 2` against a port where nothing listens exits 5 once the timeout has passed."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"

    job = jobs.run(url, "wait", "--timeout", "2", timeout=60)

    assert job.returncode == 5, job.describe()
    assert job.event("db.unreachable")["exit_code"] == 5


def test_wait_for_version(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """`wait-for-version 3` started before `migrate` exits 0 once 3 is applied; an unreached version exits 4."""
    folder = write_migrations(
        tmp_path / "migrations", {f"{n}_t{n}.sql": f"CREATE TABLE t{n} (id int);\n" for n in range(1, 4)}
    )
    waiter = jobs.start(db_url, "wait-for-version", "3", "--timeout", "20")
    waiter.wait_for_event("schema.waiting")
    assert waiter.returncode is None

    ok(migrate(jobs, db_url, folder))

    assert waiter.wait(timeout=30) == 0, waiter.describe()
    assert waiter.event("schema.ready")["version"] == "3"

    never = jobs.run(db_url, "wait-for-version", "99", "--timeout", "2", timeout=60)

    assert never.returncode == 4, never.describe()
    assert never.event("schema.not_ready")["current"] == "3"


# ---------------------------------------------------------------------------- poolers


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://postgres@127.0.0.1:6432/postgres", id="pgbouncer-port"),
        pytest.param("postgresql://app@db.proxy-abc123def.eu-west-1.rds.amazonaws.com:5432/app", id="rds-proxy"),
    ],
)
def test_pooler_targets_are_refused(tmp_path: Path, jobs: Jobs, url: str) -> None:
    """`migrate` refuses a target that looks like a connection pooler (exit 2, naming the pooler)."""
    folder = write_migrations(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})

    job = migrate(jobs, url, folder, MIGRATE_CONNECT_TIMEOUT="1")

    assert job.returncode == 2, job.describe()
    assert "pooler" in job.event("config.invalid")["error"]
    assert job.events("db.waiting") == [], "it tried to connect before refusing"


def test_allow_pooler_overrides_the_refusal(tmp_path: Path, jobs: Jobs) -> None:
    """With MIGRATE_ALLOW_POOLER=true port 6432 is not refused; it is simply connected to (here: exit 5)."""
    if listening("127.0.0.1", 6432):
        pytest.skip("something listens on 127.0.0.1:6432 on this machine")
    folder = write_migrations(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})

    job = migrate(
        jobs,
        "postgresql://postgres@127.0.0.1:6432/postgres",
        folder,
        MIGRATE_ALLOW_POOLER="true",
        MIGRATE_CONNECT_TIMEOUT="1",
    )

    assert job.returncode == 5, job.describe()
    assert job.events("config.invalid") == []
    assert "pooler" not in job.event("db.unreachable")["error"]
