"""Every migration starts from the same session state: nothing one migration SETs leaks into the next.

The runner resets the session (RESET ALL, RESET SESSION AUTHORIZATION, RESET ROLE) and re-applies its own
settings (lock_timeout, statement_timeout, ...) before every migration, in a pipeline, one per message, and
around non-transactional migrations alike. Each case: migration 2 changes the session, migration 3 records
what it sees; the record must equal a run where migration 2 changed nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pg.cli import execute, migrate, query, write

pytestmark = pytest.mark.pg

PROBE = (
    "INSERT INTO probe SELECT current_user, current_setting('search_path'), current_setting('lock_timeout'),"
    " current_setting('statement_timeout'), current_setting('application_name');\n"
)
LEAKS = [
    pytest.param("SET search_path = nowhere;", id="search_path"),
    pytest.param("RESET ALL;", id="reset-all"),
    pytest.param("SET ROLE probe_role;", id="set-role"),
    pytest.param("SET statement_timeout = '55s';", id="statement_timeout"),
    pytest.param("SET lock_timeout = 0;\nSET search_path = nowhere;", id="two-at-once"),
]
MODES = [
    pytest.param({}, "", id="pipelined"),
    pytest.param({"MIGRATE_PIPELINE": "off"}, "", id="one-per-message"),
    pytest.param({}, "-- migrate-job: transaction=off\n", id="non-transactional"),
]


def probe_run(db_url: str, folder: Path, change: str, directive: str, env: dict[str, str]) -> tuple[object, ...]:
    write(
        folder,
        {
            "1_probe.sql": "CREATE TABLE probe (usr text, path text, lock text, stmt text, app text);\n"
            "GRANT ALL ON probe TO PUBLIC;\n",
            "2_change.sql": directive + change + "\nSELECT 1;\n",
            "3_record.sql": directive + PROBE + "CREATE TABLE after_change (id int);\n",
        },
    )
    result = migrate(db_url, folder, **env)
    assert result.returncode == 0, result.describe()
    [row] = query(db_url, "SELECT * FROM probe")
    return tuple(row)


@pytest.mark.parametrize(("env", "directive"), MODES)
@pytest.mark.parametrize("change", LEAKS)
def test_what_a_migration_sets_does_not_reach_the_next(
    db_url: str, tmp_path: Path, pg_server: object, change: str, env: dict[str, str], directive: str
) -> None:
    """Migration 3 sees the job's own session state whatever migration 2 SET, RESET or SET ROLE'd."""
    execute(db_url, "DO $$ BEGIN CREATE ROLE probe_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    clean = probe_run(db_url, tmp_path / "clean", "SELECT 1;", directive, env)
    query(db_url, "DROP TABLE probe, after_change, migrate_job_history")

    leaked = probe_run(db_url, tmp_path / "leaky", change, directive, env)

    assert leaked == clean
    usr, path, lock, stmt, app = clean
    assert usr == query(db_url, "SELECT current_user")[0][0]
    assert (path, lock, stmt, app) == ('"$user", public', "5s", "0", "migrate-job:migrate 3")
    assert query(db_url, "SELECT to_regclass('public.after_change') IS NOT NULL") == [(True,)]


@pytest.mark.parametrize(("env", "directive"), MODES)
def test_the_job_settings_keep_odd_values_exactly(
    db_url: str, tmp_path: Path, env: dict[str, str], directive: str
) -> None:
    """An application name with a quote and a backslash reaches the server unchanged, even where the database
    reads string literals the old way (standard_conforming_strings = off)."""
    dbname = query(db_url, "SELECT current_database()")[0][0]
    execute(db_url, f'ALTER DATABASE "{dbname}" SET standard_conforming_strings = off')
    name = "o'neil\\deploy"
    write(
        tmp_path,
        {
            "1_probe.sql": "CREATE TABLE probe (usr text, path text, lock text, stmt text, app text);\n",
            "2_record.sql": directive + PROBE,
        },
    )
    result = migrate(db_url, tmp_path, MIGRATE_APPLICATION_NAME=name, MIGRATE_LOCK_TIMEOUT="7s", **env)
    assert result.returncode == 0, result.describe()
    [(_usr, _path, lock, stmt, app)] = query(db_url, "SELECT * FROM probe")
    assert (lock, stmt, app) == ("7s", "0", f"{name}:migrate 2")
