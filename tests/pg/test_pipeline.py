"""Pipelined apply on a real PostgreSQL: many transactional migrations in one message, every safety kept.

Each migration of a pipeline is still its own transaction with its history row; a failure stops at a
migration boundary; a lock timeout retries that migration and the pipeline goes on; progress is logged as
each COMMIT arrives; MIGRATE_PIPELINE=off sends one message per migration. Round trips are counted by the
benchmark's proxy (bench/proxy.py) between the CLI and the server: a count, not a timing.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.proxy import DelayProxy
from tests.pg import cli
from tests.pg.cli import applied_versions, history_by_version, migrate, write
from tests.pg.runner import Jobs, migration_session, open_transaction, wait_until

pytestmark = pytest.mark.pg

PIPELINE = [pytest.param({}, id="pipelined"), pytest.param({"MIGRATE_PIPELINE": "off"}, id="one-per-message")]


def through_proxy(url: str, proxy: DelayProxy) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))


def numbered(count: int) -> dict[str, str | bytes]:
    return {
        f"{n:04d}_t{n}.sql": f"CREATE TABLE t{n} (id int PRIMARY KEY);\nINSERT INTO t{n} VALUES ({n});\n"
        for n in range(1, count + 1)
    }


@pytest.mark.parametrize(("env", "most", "least"), [({}, 20, 1), ({"MIGRATE_PIPELINE": "off"}, 400, 200)])
def test_round_trips_for_200_migrations(
    db_url: str, tmp_path: Path, env: dict[str, str], most: int, least: int
) -> None:
    """200 transactional migrations take at most 20 round trips in all when pipelined (one per migration if not)."""
    folder = write(tmp_path / "migrations", numbered(200))
    parts = urlsplit(db_url)
    proxy = DelayProxy(parts.hostname or "127.0.0.1", parts.port or 5432, delay=0.0)
    proxy.start()
    try:
        result = migrate(through_proxy(db_url, proxy), folder, **env)
        stats = proxy.snapshot()
    finally:
        proxy.stop()

    assert result.returncode == 0, result.describe()
    assert len(applied_versions(result)) == 200
    assert least <= stats.round_trips <= most, stats.by_label()
    assert len(history_by_version(db_url)) == 200


@pytest.mark.parametrize("env", PIPELINE)
def test_a_failing_migration_stops_the_pipeline_at_its_boundary(
    db_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """Migration 3 of 6 fails: 1–2 committed and logged, 3 rolled back with file:line and SQLSTATE, 4–6 never run."""
    files = numbered(6)
    files["0003_t3.sql"] = "CREATE TABLE t3 (id int);\nINSERT INTO t3 VALUES (1);\nINSERT INTO nowhere VALUES (1);\n"
    folder = write(tmp_path / "migrations", files)

    result = migrate(db_url, folder, **env)

    assert result.returncode == 1, result.describe()
    assert applied_versions(result) == ["1", "2"]
    [failed] = result.events("migration.failed")
    assert (failed["version"], failed["line"], failed["sqlstate"]) == ("3", 3, "42P01"), failed
    assert failed["file"].endswith("0003_t3.sql")
    assert f"{folder / '0003_t3.sql'}:3:" in failed["error"]
    assert sorted(history_by_version(db_url)) == ["1", "2"]
    assert cli.tables(db_url) == {"t1", "t2"}
    finished = result.events("run.finished")[0]
    assert (finished["applied"], finished["exit_code"]) == (2, 1)


@pytest.mark.parametrize("env", PIPELINE)
def test_a_lock_timeout_retries_that_migration_then_the_pipeline_goes_on(
    db_url: str, tmp_path: Path, jobs: Jobs, env: dict[str, str]
) -> None:
    """Migration 3 hits lock_timeout: 1–2 stay committed, 3 is retried with backoff, then 3–5 apply."""
    folder = write(tmp_path / "migrations", {"0001_busy.sql": "CREATE TABLE busy (x int);\n"})
    assert migrate(db_url, folder).returncode == 0
    files = numbered(5)
    del files["0001_t1.sql"]
    files["0003_t3.sql"] = "ALTER TABLE busy ADD COLUMN y int;\n"
    write(folder, files)

    with open_transaction(db_url, "LOCK TABLE busy IN ACCESS SHARE MODE") as holder:
        job = jobs.start(db_url, "migrate", "--dir", str(folder), MIGRATE_LOCK_TIMEOUT="300ms", **env)
        job.wait_for_event("migration.lock_timeout")
        holder.commit()
    assert job.wait(timeout=120) == 0, job.describe()

    applied = [e["version"] for e in job.events("migration.applied")]
    assert applied == ["2", "3", "4", "5"]
    retries = job.events("migration.lock_timeout")
    assert {e["version"] for e in retries} == {"3"}
    assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    assert job.events("migration.applied")[1]["attempts"] == len(retries) + 1
    assert sorted(history_by_version(db_url), key=int) == ["1", "2", "3", "4", "5"]


def test_each_commit_is_reported_while_the_pipeline_still_runs(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """`migration.applied` for 1 is logged (and its row committed) while migration 2 of the same message waits."""
    gate = 74_001  # migration 2 waits for this advisory lock, which the test holds until it has seen 1 reported
    folder = write(
        tmp_path / "migrations",
        {
            "1_a.sql": "CREATE TABLE a (id int);\n",
            "2_b.sql": "-- migrate-job: lock_timeout=0\nCREATE TABLE b (id int);\n"
            f"SELECT pg_advisory_xact_lock({gate});\n",
            "3_c.sql": "CREATE TABLE c (id int);\n",
        },
    )
    with open_transaction(db_url, f"SELECT pg_advisory_xact_lock({gate})") as gatekeeper:
        job = jobs.start(db_url, "migrate", "--dir", str(folder))
        wait_until(lambda: migration_session(db_url, "2", "Lock"), 60, "migration 2 to wait", on_timeout=job.describe)
        applied_1 = wait_until(
            lambda: [e for e in job.events("migration.applied") if e["version"] == "1"],
            60,
            "migration 1 to be reported",
            on_timeout=job.describe,
        )
        assert migration_session(db_url, "2", "Lock"), "migration 2 no longer waits"  # so 1 came first
        assert [e["version"] for e in job.events("migration.applied")] == ["1"]
        assert sorted(history_by_version(db_url)) == ["1"]
        gatekeeper.commit()

    assert job.wait(timeout=60) == 0, job.describe()
    assert applied_1[0]["transactional"] is True
    assert [e["version"] for e in job.events("migration.applied")] == ["1", "2", "3"]
    durations = {e["version"]: e["duration_ms"] for e in job.events("migration.applied")}
    rows = history_by_version(db_url)
    assert {v: r["execution_ms"] for v, r in rows.items()} == durations  # the server's measure, in both


@pytest.mark.parametrize("env", PIPELINE)
def test_notices_of_a_migration_are_logged_with_its_version(db_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    """RAISE NOTICE / WARNING inside a migration become `migration.notice` events tagged with its version."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_a.sql": "DO $$ BEGIN RAISE NOTICE 'backfilled % rows', 42; END $$;\n",
            "2_b.sql": "DO $$ BEGIN RAISE WARNING 'slow path' USING HINT = 'add an index'; END $$;\n",
            "3_c.sql": "-- migrate-job: transaction=off\nDO $$ BEGIN RAISE NOTICE 'outside a transaction'; END $$;\n",
        },
    )

    result = migrate(db_url, folder, **env)

    assert result.returncode == 0, result.describe()
    notices = [
        (e["version"], e["severity"], e["message"], e.get("hint"), e["level"])
        for e in result.events("migration.notice")
    ]
    assert notices == [
        ("1", "NOTICE", "backfilled 42 rows", None, "info"),
        ("2", "WARNING", "slow path", "add an index", "warning"),
        ("3", "NOTICE", "outside a transaction", None, "info"),
    ]


def test_single_transaction_is_one_message_with_per_migration_durations(db_url: str, tmp_path: Path) -> None:
    """--single-transaction still commits all or nothing; each history row measures its own migration."""
    files: dict[str, str | bytes] = {
        "1_a.sql": "CREATE TABLE a (id int);\nSELECT pg_sleep(0.3);\n",
        "2_b.sql": "CREATE TABLE b (id int);\n",
    }
    folder = write(tmp_path / "migrations", files)

    result = migrate(db_url, folder, "--single-transaction")

    assert result.returncode == 0, result.describe()
    rows = history_by_version(db_url)
    assert rows["1"]["execution_ms"] >= 300 > rows["2"]["execution_ms"]
    assert {e["version"]: e["duration_ms"] for e in result.events("migration.applied")} == {
        v: r["execution_ms"] for v, r in rows.items()
    }


@pytest.mark.parametrize("env", [*PIPELINE, pytest.param({"SINGLE": "1"}, id="single-transaction")])
def test_each_migration_records_when_it_was_applied(db_url: str, tmp_path: Path, env: dict[str, str]) -> None:
    """applied_at is the moment each migration's history row was written, not the start of the message (or of
    the single transaction) they shared: later migrations have later times."""
    files = {f"{n:04d}_t{n}.sql": f"CREATE TABLE t{n} (id int);\nSELECT pg_sleep(0.002);\n" for n in range(1, 4)}
    folder = write(tmp_path / "migrations", files)
    args = ["--single-transaction"] if env.pop("SINGLE", None) else []
    result = cli.run_unattended(db_url, "migrate", "--dir", str(folder), *args, **env)
    assert result.returncode == 0, result.describe()
    rows = history_by_version(db_url)
    times = [rows[v]["applied_at"] for v in ("1", "2", "3")]
    assert times[0] < times[1] < times[2], times
