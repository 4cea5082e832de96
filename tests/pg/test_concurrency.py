"""Several runners, killed runners and the advisory lock, with real processes and a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import psycopg
import pytest

from job.lock import lock_key
from tests.pg import cli
from tests.pg.cli import advisory_locks, history, migrate, query, tables, versions, write
from tests.pg.runner import migration_session

pytestmark = pytest.mark.pg


def _start(database_url: str, folder: Path, out: IO[str] | int = subprocess.PIPE, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli.command("migrate", "--dir", str(folder)),
        cwd=folder.parent,
        env=cli.clean_env(database_url, **env),
        stdout=out,
        stderr=subprocess.STDOUT if out != subprocess.PIPE else subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate_rows: int, database_url: str, proc: subprocess.Popen[str], timeout: float = 60) -> int:
    """Poll the history table until it has at least `predicate_rows` rows; returns the count seen."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        if cli.history_exists(database_url):
            count = int(query(database_url, f"SELECT count(*) FROM {cli.HISTORY}")[0][0])
            if count >= predicate_rows:
                return count
        assert proc.poll() is None, "the runner ended before it was killed"
        time.sleep(0.01)
    raise AssertionError(f"only {count} history rows after {timeout}s")


def test_eight_concurrent_runners_apply_each_migration_once(db_url: str, tmp_path: Path) -> None:
    """Eight runners started at once all exit 0 and every migration is applied exactly once."""
    files: dict[str, str | bytes] = {
        "01_effects.sql": "CREATE TABLE effects (version int NOT NULL);\nINSERT INTO effects VALUES (1);\n"
    }
    for n in range(2, 11):
        body = f"CREATE TABLE t{n} (id int);\nINSERT INTO effects VALUES ({n});\n"
        if n == 4:
            body += "SELECT pg_sleep(0.3);\n"
        if n == 7:  # a non-transactional one among them
            body += f"CREATE INDEX CONCURRENTLY t{n}_id_idx ON t{n} (id);\n"
        files[f"{n:02d}_m{n}.sql"] = body
    folder = write(tmp_path / "migrations", files)

    procs = [_start(db_url, folder) for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in procs]

    results = [cli.Result.parse(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    for r in results:
        assert r.returncode == 0, r.describe()
    assert versions(db_url) == [str(n) for n in range(1, 11)]
    assert query(db_url, "SELECT version, count(*) FROM effects GROUP BY version ORDER BY version") == [
        (n, 1) for n in range(1, 11)
    ]
    assert tables(db_url) == {"effects"} | {f"t{n}" for n in range(2, 11)}
    applied = [e["version"] for r in results for e in r.events("migration.applied")]
    assert sorted(applied, key=int) == [str(n) for n in range(1, 11)]
    assert all(len(r.events("lock.acquired")) == 1 for r in results)
    assert any(r.events("lock.waiting") for r in results), "no runner ever waited for the lock"
    assert [(r["kind"], r["status"]) for r in history(db_url) if r["version"] == "7"] == [
        ("non_transactional", "applied")
    ]
    assert query(db_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't7_id_idx'::regclass") == [(True,)]
    assert advisory_locks(db_url) == []


def test_sigkill_mid_run_leaves_consistent_history_and_no_lock(db_url: str, tmp_path: Path) -> None:
    """A runner killed with SIGKILL leaves history matching the schema, frees the lock, and a rerun finishes the job."""
    files: dict[str, str | bytes] = {
        f"{n:03d}_t{n}.sql": f"CREATE TABLE t{n} (id int);\nINSERT INTO t{n} VALUES ({n});\nSELECT pg_sleep(0.05);\n"
        for n in range(1, 51)
    }
    folder = write(tmp_path / "migrations", files)
    with (tmp_path / "killed.log").open("w") as log:
        proc = _start(db_url, folder, out=log)
        try:
            _wait_for(5, db_url, proc)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    sessions, locks = cli.wait_until_no_runner_left(db_url, timeout=10)

    assert locks == [], "the killed runner's advisory lock is still held"
    assert sessions == [], "the killed runner's sessions are still there"
    rows = history(db_url)
    assert 5 <= len(rows) < 50, "the runner was not killed mid-run"
    assert all(r["status"] == "applied" for r in rows)
    assert {f"t{r['version']}" for r in rows} == tables(db_url)
    for r in rows:
        assert query(db_url, f"SELECT id FROM t{int(r['version'])}") == [(int(r["version"]),)]

    rerun = migrate(db_url, folder)

    assert rerun.returncode == 0, rerun.describe()
    assert versions(db_url) == [str(n) for n in range(1, 51)]
    assert tables(db_url) == {f"t{n}" for n in range(1, 51)}
    assert len(rerun.events("migration.applied")) == 50 - len(rows)


@pytest.mark.parametrize(
    ("bad", "fixed", "code"),
    [
        pytest.param("INSERT INTO nowhere VALUES (1);\n", "SELECT 1;\n", 1, id="sql-error"),
        pytest.param(
            "-- migrate-job: transaction=off\nCREATE INDEX CONCURRENTLY i ON nowhere (id);\n",
            None,
            1,
            id="non-transactional-failure",
        ),
        pytest.param("SELEC 1;\n", "SELECT 1;\n", 4, id="syntax-error"),
    ],
)
def test_lock_is_released_after_a_failed_run(
    db_url: str, tmp_path: Path, bad: str, fixed: str | None, code: int
) -> None:
    """After a failed run exits, no advisory lock remains and the next run acquires it without waiting."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n", "2_b.sql": bad})

    failed = migrate(db_url, folder)

    assert failed.returncode == code, failed.describe()
    assert advisory_locks(db_url) == []
    assert failed.events("lock.released"), failed.describe()

    if fixed is not None:
        (folder / "2_b.sql").write_text(fixed)
    again = migrate(db_url, folder)

    assert again.returncode == (0 if fixed is not None else 4), again.describe()
    assert len(again.events("lock.acquired")) == 1
    assert again.events("lock.waiting") == []
    assert advisory_locks(db_url) == []


def test_lock_wait_timeout_exits_3_naming_the_holder(db_url: str, tmp_path: Path) -> None:
    """While another session holds the migration lock, a runner gives up after MIGRATE_LOCK_WAIT_TIMEOUT with exit 3."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key("public", "migrate_job_history"),))
        holder_pid = holder.info.backend_pid

        result = migrate(db_url, folder, MIGRATE_LOCK_WAIT_TIMEOUT="1")

    assert result.returncode == 3, result.describe()
    [timeout] = result.events("lock.timeout")
    assert [h["pid"] for h in timeout["holders"]] == [holder_pid]
    assert result.events("lock.waiting")
    assert not cli.history_exists(db_url)
    assert tables(db_url) == set()


def test_sigterm_stops_cleanly_with_143(db_url: str, tmp_path: Path) -> None:
    """SIGTERM mid-run exits 143, keeps finished migrations, rolls back the current one, and frees the lock."""
    files: dict[str, str | bytes] = {
        f"{n:02d}_t{n}.sql": f"CREATE TABLE t{n} (id int);\nSELECT pg_sleep(0.2);\n" for n in range(1, 21)
    }
    folder = write(tmp_path / "migrations", files)
    proc = _start(db_url, folder)
    try:
        _wait_for(2, db_url, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    result = cli.Result.parse(proc.returncode, out, err)

    assert result.returncode == 143, result.describe()
    [interrupted] = result.events("run.interrupted")
    assert interrupted["signal"] == "SIGTERM"
    rows = history(db_url)
    assert rows and all(r["status"] == "applied" for r in rows)
    assert interrupted["applied"] == [r["version"] for r in rows]
    assert {f"t{r['version']}" for r in rows} == tables(db_url)
    assert advisory_locks(db_url) == []
    sessions, _ = cli.wait_until_no_runner_left(db_url)
    assert sessions == []


def test_runner_stops_when_its_session_is_killed(db_url: str, tmp_path: Path) -> None:
    """If the runner's session (it holds the lock) is terminated mid-run, it exits 5 instead of going on unprotected."""
    files: dict[str, str | bytes] = {
        f"{n:02d}_t{n}.sql": f"CREATE TABLE t{n} (id int);\nSELECT pg_sleep(0.1);\n" for n in range(1, 31)
    }
    folder = write(tmp_path / "migrations", files)
    proc = _start(db_url, folder)
    try:
        _wait_for(2, db_url, proc)
        killed = query(
            db_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'migrate-job:migrate%'",
        )
        seen = len(history(db_url))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    result = cli.Result.parse(proc.returncode, out, err)

    assert killed == [(True,)]
    assert result.returncode == 5, result.describe()
    rows = history(db_url)
    assert len(rows) <= seen + 1, "kept migrating after losing the lock"
    assert len(rows) < 30
    assert {f"t{r['version']}" for r in rows} == tables(db_url)
    sessions, locks = cli.wait_until_no_runner_left(db_url)
    assert (sessions, locks) == ([], [])


def test_lock_timeout_on_a_busy_table_retries_then_fails_cleanly(db_url: str, tmp_path: Path) -> None:
    """A migration blocked by a long transaction hits lock_timeout, retries MIGRATE_LOCK_RETRIES times, then exits 1."""
    folder = write(
        tmp_path / "migrations",
        {"1_t.sql": "CREATE TABLE busy (id int);\n", "2_alter.sql": "ALTER TABLE busy ADD COLUMN extra int;\n"},
    )
    assert migrate(db_url, folder, MIGRATE_TARGET="1").returncode == 0
    with psycopg.connect(db_url) as blocker:
        blocker.execute("SELECT * FROM busy")  # holds ACCESS SHARE until the transaction ends

        blocked = migrate(db_url, folder, MIGRATE_LOCK_TIMEOUT="200ms", MIGRATE_LOCK_RETRIES="2")

    assert blocked.returncode == 1, blocked.describe()
    assert [e["attempt"] for e in blocked.events("migration.lock_timeout")] == [1, 2]
    [failed] = blocked.events("migration.failed")
    assert (failed["version"], failed["sqlstate"]) == ("2", "55P03")
    assert versions(db_url) == ["1"]
    assert query(
        db_url, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass AND attname = 'extra'"
    ) == [(0,)]

    unblocked = migrate(db_url, folder, MIGRATE_LOCK_TIMEOUT="200ms")

    assert unblocked.returncode == 0, unblocked.describe()
    assert versions(db_url) == ["1", "2"]


def _wait_for_sleep(database_url: str, proc: subprocess.Popen[str], version: str, timeout: float = 60) -> int:
    """Poll until the runner's session sleeps in migration `version` (its application_name names it); its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = migration_session(database_url, version, "PgSleep")
        if found:
            return int(found["pid"])
        assert proc.poll() is None, "the runner ended before reaching the query"
        time.sleep(0.01)
    raise AssertionError(f"the runner did not sleep in migration {version} within {timeout}s")


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "non-transactional"])
def test_connection_lost_mid_migration_exits_5_with_consistent_state(
    db_url: str, tmp_path: Path, transactional: bool
) -> None:
    """When the migration's session dies mid-file, the runner exits 5 and history tells the truth about what ran."""
    third = "" if transactional else "-- migrate-job: transaction=off\n"
    third += "CREATE TABLE t3 (id int);\nSELECT pg_sleep(30);\nCREATE TABLE u3 (id int);\n"
    folder = write(
        tmp_path / "migrations",
        {
            "1_t1.sql": "CREATE TABLE t1 (id int);\n",
            "2_t2.sql": "CREATE TABLE t2 (id int);\n",
            "3_t3.sql": third,
            "4_t4.sql": "CREATE TABLE t4 (id int);\n",
        },
    )
    proc = _start(db_url, folder)
    try:
        pid = _wait_for_sleep(db_url, proc, "3")
        assert query(db_url, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    result = cli.Result.parse(proc.returncode, out, err)

    assert result.returncode == 5, result.describe()
    [lost] = result.events("db.unreachable")
    assert lost["version"] == "3"
    assert cli.wait_until_no_runner_left(db_url) == ([], [])
    rows = {r["version"]: r for r in history(db_url)}
    (folder / "3_t3.sql").write_text(third.replace("pg_sleep(30)", "pg_sleep(0)"))
    if transactional:
        assert sorted(rows) == ["1", "2"]
        assert tables(db_url) == {"t1", "t2"}
        assert "rolled back" in lost["error"]
    else:
        assert sorted(rows) == ["1", "2", "3"]
        assert (rows["3"]["status"], rows["3"]["statements_done"]) == ("running", 1)
        assert tables(db_url) == {"t1", "t2", "t3"}  # statement 1 ran in autocommit: it stays
        blocked = migrate(db_url, folder)
        assert blocked.returncode == 4, blocked.describe()
        assert "repair" in blocked.stdout
        repaired = cli.run(db_url, "repair", "--dir", str(folder), cwd=tmp_path)
        assert repaired.returncode == 0, repaired.describe()  # resumed at statement 2: t3 is not created twice

    rerun = migrate(db_url, folder)

    assert rerun.returncode == 0, rerun.describe()
    assert versions(db_url) == ["1", "2", "3", "4"]
    assert tables(db_url) == {"t1", "t2", "t3", "u3", "t4"}
    if not transactional:  # statement 1 was committed: saying "rolled back" would mislead the operator
        assert "rolled back" not in lost["error"], lost["error"]
