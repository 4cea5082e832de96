"""Placeholders and callbacks end to end: Flyway users' folders through the CLI on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pg.cli import applied_versions, migrate, query, run, versions, write

pytestmark = pytest.mark.pg

LOG = "CREATE TABLE IF NOT EXISTS public.cb_log (n serial, what text);\n"


def log_entries(url: str) -> list[str]:
    return [str(r[0]) for r in query(url, "SELECT what FROM public.cb_log ORDER BY n")]


def test_placeholders_from_settings_and_built_ins(db_url: str, tmp_path: Path) -> None:
    """`${app_schema}` from migrate.toml and an env var, built-ins for database/user/schema, checksum as written."""
    folder = write(
        tmp_path / "migrations",
        {
            "V1__schema.sql": "CREATE SCHEMA ${app_schema};\nCREATE TABLE ${app_schema}.t (id int);\n",
            "V2__comment.sql": "COMMENT ON TABLE ${app_schema}.t IS "
            "'${flyway:database}/${flyway:user}/${migrate-job:schema}/${app_role}';\n",
        },
    )
    (tmp_path / "migrate.toml").write_text("[placeholders]\napp_schema = 'billing'\n")

    result = migrate(db_url, folder, MIGRATE_PLACEHOLDER_APP_ROLE="billing_rw")

    assert result.returncode == 0, result.describe()
    database = db_url.rsplit("/", 1)[1]
    assert query(db_url, "SELECT obj_description('billing.t'::regclass)") == [
        (f"{database}/postgres/public/billing_rw",)
    ]
    again = migrate(db_url, folder, MIGRATE_PLACEHOLDER_APP_ROLE="another_value")  # same files, other value
    assert again.returncode == 0, again.describe()
    assert applied_versions(again) == []


def test_an_undefined_placeholder_stops_before_anything_runs(db_url: str, tmp_path: Path) -> None:
    """A file using an undefined placeholder: exit 4 naming file:line; nothing applied, not even earlier files."""
    folder = write(
        tmp_path / "migrations",
        {"1_a.sql": "CREATE TABLE a (id int);\n", "2_b.sql": "-- comment\nGRANT SELECT ON a TO ${reader};\n"},
    )

    result = migrate(db_url, folder, MIGRATE_PLACEHOLDER_OTHER="x")

    assert result.returncode == 4, result.describe()
    assert f"{folder / '2_b.sql'}:2: undefined placeholder ${{reader}}" in result.error_text()
    assert versions(db_url) == []


def test_a_secret_placeholder_never_appears(db_url: str, tmp_path: Path) -> None:
    """A placeholder named like a secret (db_password) is used in the SQL but redacted from logs and dry runs."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_role.sql": "CREATE ROLE ph_app LOGIN PASSWORD '${db_password}';\n"
            "DO $$ BEGIN IF '${db_password}' = '' THEN RAISE 'empty'; END IF; END $$;\n"
        },
    )
    secret = "Sup3r-s3cret-pw"

    dry = run(db_url, "migrate", "--dry-run", "--dir", str(folder), MIGRATE_PLACEHOLDER_DB_PASSWORD=secret)
    applied = migrate(db_url, folder, MIGRATE_PLACEHOLDER_DB_PASSWORD=secret)

    assert dry.returncode == 0 and applied.returncode == 0, dry.describe() + applied.describe()
    assert secret not in dry.output + applied.output
    assert "PASSWORD '***'" in dry.stdout
    query(db_url, "DROP ROLE ph_app")


def test_callbacks_run_at_their_points_under_the_lock(db_url: str, tmp_path: Path) -> None:
    """before/afterMigrate once per run (also with nothing pending), before/afterEachMigrate per migration."""
    folder = write(
        tmp_path / "migrations",
        {
            "beforeMigrate.sql": LOG + "INSERT INTO cb_log (what) VALUES ('before');\n",
            "1_a.sql": "CREATE TABLE a (id int);\n",
            "2_b.sql": "-- migrate-job: transaction=off\nCREATE INDEX CONCURRENTLY b_idx ON a (id);\n",
            "3_c.sql": "CREATE TABLE c (id int);\n",
            "afterMigrate__grants.sql": "INSERT INTO cb_log (what) VALUES ('after');\n",
        },
    )
    write(
        folder / "callbacks",
        {
            "beforeEachMigrate.sql": "INSERT INTO cb_log (what) "
            "VALUES ('each ' || current_setting('application_name'));\n",
            "afterEachMigrate.sql": "INSERT INTO cb_log (what) VALUES ('done');\n",
            "afterClean.sql": "SELECT 1;\n",
        },
    )

    first = migrate(db_url, folder)
    second = migrate(db_url, folder)

    assert first.returncode == 0 and second.returncode == 0, first.describe() + second.describe()
    assert log_entries(db_url) == [
        "before",
        "each migrate-job:migrate 1",
        "done",
        "each migrate-job:migrate 2",
        "done",
        "each migrate-job:migrate 3",
        "done",
        "after",
        "before",
        "after",
    ]
    assert versions(db_url) == ["1", "2", "3"]  # callbacks have no history row
    [ignored] = first.events("callback.ignored")
    assert ignored["files"] == [str(folder / "callbacks" / "afterClean.sql")]


@pytest.mark.parametrize(
    ("event", "body", "applied", "effect"),
    [
        ("beforeMigrate", "INSERT INTO nowhere VALUES (1);\n", [], "nothing was applied"),
        ("afterEachMigrate", "SELECT 1 / (to_regclass('b') IS NULL)::int;\n", ["1"], "migration 2 was rolled back"),
        ("afterMigrate", "GRANT SELECT ON a TO no_such_role;\n", ["1", "2"], "the migrations stay applied"),
    ],
)
def test_a_failing_callback_exits_10_and_says_what_was_applied(
    db_url: str, tmp_path: Path, event: str, body: str, applied: list[str], effect: str
) -> None:
    """A callback's failure: exit 10, file:line and SQLSTATE, and what it means for the migrations."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_a.sql": "CREATE TABLE a (id int);\n",
            "2_b.sql": "CREATE TABLE b (id int);\n",
            f"{event}.sql": "-- a callback\n" + body,
            "afterMigrateError.sql": LOG + "INSERT INTO cb_log (what) VALUES ('error handled');\n",
        },
    )

    result = migrate(db_url, folder)

    assert result.returncode == 10, result.describe()
    [failed] = result.events("callback.failed")
    assert failed["callback"] == event and failed["line"] == 2, failed
    assert effect in failed["error"] and str(folder / f"{event}.sql") in failed["error"]
    assert versions(db_url) == applied
    assert log_entries(db_url) == ["error handled"]  # afterMigrateError ran after the failure
