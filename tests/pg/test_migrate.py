"""End to end: the `migrate-job` CLI as a subprocess against a real PostgreSQL database."""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.pg import cli
from tests.pg.cli import history, history_exists, migrate, query, sha256, snapshot, tables, versions, write

pytestmark = pytest.mark.pg

REPO_MIGRATIONS = cli.ROOT / "migrations"


def five(directory: Path, third: str | None = None) -> Path:
    """Five migrations, each creating table tN; `third` replaces the body of the third."""
    files: dict[str, str | bytes] = {f"{n}_m{n}.sql": f"CREATE TABLE t{n} (id int);\n" for n in range(1, 6)}
    if third is not None:
        files["3_m3.sql"] = third
    return write(directory, files)


# ---------------------------------------------------------------------------- applying


def test_applies_realistic_folder_and_records_history(db_url: str, tmp_path: Path) -> None:
    """Migrating the sample folder applies every file once and records version, checksum, batch, who, duration."""
    folder = tmp_path / "migrations"
    shutil.copytree(REPO_MIGRATIONS, folder)
    files = sorted(folder.glob("*.sql"))

    first = migrate(db_url, folder)

    assert first.returncode == 0, first.describe()
    assert first.stderr == ""
    assert all(line.startswith("{") for line in first.stdout.splitlines()), "migrate logs JSON lines on stdout"
    assert len(first.logs) == len(first.stdout.splitlines())
    rows = history(db_url)
    assert [r["version"] for r in rows] == [str(int(p.name.split("_")[0])) for p in files]
    for row, path in zip(rows, files, strict=True):
        assert row["status"] == "applied"
        assert row["checksum"] == sha256(path), path.name
        assert row["batch"] == 1
        assert row["applied_by"]
        assert row["execution_ms"] is not None
    kinds = {r["version"]: r["kind"] for r in rows}
    assert kinds["6"] == "non_transactional"
    assert {k for k, v in kinds.items() if v == "transactional"} == {"1", "2", "3", "4", "5", "7"}
    assert {"accounts", "users", "projects", "project_members", "audit_log", "plans"} <= tables(db_url)
    assert query(db_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_domain_idx'::regclass") == [
        (True,)
    ]
    assert [e["version"] for e in first.events("migration.applied")] == [r["version"] for r in rows]

    second = migrate(db_url, folder)

    assert second.returncode == 0, second.describe()
    assert history(db_url) == rows
    assert second.events("migration.applied") == []


def test_dry_run_prints_sql_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    """`migrate --dry-run` prints the SQL it would run and leaves the database untouched."""
    folder = tmp_path / "migrations"
    shutil.copytree(REPO_MIGRATIONS, folder)
    before = snapshot(db_url)

    result = migrate(db_url, folder, "--dry-run")

    assert result.returncode == 0, result.describe()
    assert "CREATE TABLE accounts" in result.stdout
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_domain_idx" in result.stdout
    inserts = [line for line in result.stdout.splitlines() if 'INSERT INTO "public"."migrate_job_history" (' in line]
    assert inserts, result.stdout
    for column in ("kind", "applied_by", "batch", "source", "run_id"):  # the row migrate writes, every column
        assert f'"{column}"' in inserts[0], inserts[0]
    (finished,) = result.events("run.finished")
    assert f"'{finished['run_id']}'" in inserts[0], inserts[0]
    assert not [line for line in cli.json_lines(result.stdout) if "event" in line], "logs belong on stderr"
    assert not history_exists(db_url)
    assert tables(db_url) == set()
    assert snapshot(db_url) == before


def test_a_database_with_tables_but_no_history_is_refused_until_baselined(db_url: str, tmp_path: Path) -> None:
    """Tables in the history schema that migrate-job never recorded (the schema was built by psql loops): migrate
    and --dry-run exit 4 naming them and change nothing, as Flyway refuses a non-empty schema; `baseline` records
    what is there, then migrate applies the rest; MIGRATE_ALLOW_NON_EMPTY applies everything."""
    folder = write(
        tmp_path / "migrations",
        {"1_users.sql": "CREATE TABLE users (id int);\n", "2_teams.sql": "CREATE TABLE teams (id int);\n"},
    )
    cli.execute(db_url, "CREATE TABLE users (id int)")  # 1 was applied by hand
    before = snapshot(db_url)
    for args in ([], ["--dry-run"]):
        result = migrate(db_url, folder, *args)
        assert result.returncode == 4, result.describe()
        assert "schema public already has tables (users) but no migration history" in result.output
        assert "baseline --version V" in result.output and "MIGRATE_ALLOW_NON_EMPTY" in result.output
        assert snapshot(db_url) == before
    assert cli.run_unattended(db_url, "baseline", "--version", "1", "--dir", str(folder)).returncode == 0
    result = migrate(db_url, folder)
    assert result.returncode == 0, result.describe()
    assert cli.applied_versions(result) == ["2"]

    other = write(tmp_path / "other", {"1_extra.sql": "CREATE TABLE extra (id int);\n"})
    forced = migrate(db_url, other, MIGRATE_HISTORY_TABLE="other_history", MIGRATE_ALLOW_NON_EMPTY="true")
    assert forced.returncode == 0, forced.describe()
    assert cli.applied_versions(forced) == ["1"]


def test_what_migrate_job_itself_left_is_no_reason_to_refuse(db_url: str, tmp_path: Path) -> None:
    """Another migration set's history and audit tables in the same schema (another MIGRATE_HISTORY_TABLE)
    do not make the database "non-empty"; nor does --target below the first file make --dry-run refuse."""
    first = write(tmp_path / "first", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    assert migrate(db_url, first, MIGRATE_HISTORY_TABLE="first_history").returncode == 0
    cli.execute(db_url, "DROP TABLE a")  # only first_history and first_history_log are left
    second = write(tmp_path / "second", {"5_b.sql": "CREATE TABLE b (id int);\n"})
    result = migrate(db_url, second, MIGRATE_HISTORY_TABLE="second_history")
    assert result.returncode == 0, result.describe()
    assert cli.applied_versions(result) == ["5"]

    third = write(tmp_path / "third", {"7_c.sql": "CREATE TABLE c (id int);\n"})
    dry = migrate(db_url, third, "--dry-run", "--target", "6", MIGRATE_HISTORY_TABLE="third_history")
    assert dry.returncode == 0, dry.describe()


def test_target_applies_only_up_to_that_version(db_url: str, tmp_path: Path) -> None:
    """`--target 2` applies versions 1 and 2 and nothing after them."""
    folder = tmp_path / "migrations"
    shutil.copytree(REPO_MIGRATIONS, folder)

    result = migrate(db_url, folder, "--target", "2")

    assert result.returncode == 0, result.describe()
    assert versions(db_url) == ["1", "2"]
    assert tables(db_url) == {"accounts", "users", "projects", "project_members"}


def test_versions_are_ordered_numerically(db_url: str, tmp_path: Path) -> None:
    """10_y.sql runs after 9_x.sql (numeric, not text, order), so it can depend on it."""
    folder = write(
        tmp_path / "migrations",
        {
            "10_y.sql": "ALTER TABLE nine ADD COLUMN ten int;\n",
            "9_x.sql": "CREATE TABLE nine (id int);\n",
        },
    )

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    assert [e["version"] for e in result.events("migration.applied")] == ["9", "10"]
    assert versions(db_url) == ["9", "10"]
    assert query(db_url, "SELECT attname FROM pg_attribute WHERE attrelid = 'nine'::regclass AND attnum > 0") == [
        ("id",),
        ("ten",),
    ]


def test_sql_error_keeps_earlier_migrations_and_leaves_no_trace(db_url: str, tmp_path: Path) -> None:
    """A runtime SQL error in migration 3 of 5 keeps 1-2, rolls 3 back entirely, skips 4-5, exits 1, names file:line."""
    third = (
        "-- third migration\n"  # line 1
        "CREATE TABLE t3 (id int);\n"  # line 2
        "INSERT INTO t3 VALUES (1);\n"  # line 3
        "INSERT INTO no_such_table VALUES (1);\n"  # line 4: fails (undefined_table)
        "CREATE TABLE t3_after (id int);\n"
    )
    folder = five(tmp_path / "migrations", third)

    result = migrate(db_url, folder)

    assert result.returncode == 1, result.describe()
    assert versions(db_url) == ["1", "2"]
    assert tables(db_url) == {"t1", "t2"}
    failed = result.events("migration.failed")
    assert len(failed) == 1, result.describe()
    assert failed[0]["file"].endswith("3_m3.sql")
    assert failed[0]["line"] == 4
    assert failed[0]["sqlstate"] == "42P01"
    assert failed[0]["version"] == "3"
    assert [e["version"] for e in result.events("migration.applied")] == ["1", "2"]


def test_concurrently_index_is_applied_non_transactionally(db_url: str, tmp_path: Path) -> None:
    """A CREATE INDEX CONCURRENTLY migration builds a valid index and is recorded as non_transactional."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_table.sql": (
                "CREATE TABLE items (id int, label text);\n"
                "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 100) g;\n"
            ),
            "2_index.sql": "CREATE INDEX CONCURRENTLY items_label_idx ON items (label);\n",
        },
    )

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    assert query(
        db_url, "SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = 'items_label_idx'::regclass"
    ) == [(True, True)]
    row = history(db_url)[1]
    assert (row["version"], row["kind"], row["status"], row["statements_done"]) == (
        "2",
        "non_transactional",
        "applied",
        1,
    )
    assert row["checksum"] == sha256(folder / "2_index.sql")
    assert row["execution_ms"] is not None


def test_file_with_own_begin_commit_is_atomic(db_url: str, tmp_path: Path) -> None:
    """A file wrapped in BEGIN; ... COMMIT; whose last statement fails leaves neither its effects nor a history row."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_first.sql": "CREATE TABLE first (id int);\n",
            "2_wrapped.sql": (
                "BEGIN;\n"
                "CREATE TABLE wrapped (id int);\n"
                "INSERT INTO first VALUES (2);\n"
                "INSERT INTO wrapped VALUES (1);\n"
                "SELECT 1 / 0;\n"
                "COMMIT;\n"
            ),
        },
    )

    result = migrate(db_url, folder)

    assert result.returncode == 1, result.describe()
    assert versions(db_url) == ["1"]
    assert tables(db_url) == {"first"}
    assert query(db_url, "SELECT count(*) FROM first") == [(0,)]
    failed = result.events("migration.failed")
    assert [(e["version"], e["line"], e["sqlstate"]) for e in failed] == [("2", 5, "22012")]


def test_failed_non_transactional_migration_is_recorded_and_blocks_next_run(db_url: str, tmp_path: Path) -> None:
    """A failing transaction=off migration is recorded as failed at its statement; the next run exits 4 (repair)."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_base.sql": "CREATE TABLE base (id int);\n",
            "2_nontx.sql": (
                "-- migrate-job: transaction=off\n"
                "CREATE TABLE made_first (id int);\n"
                "CREATE INDEX CONCURRENTLY missing_idx ON missing_table (id);\n"
                "CREATE TABLE never_made (id int);\n"
            ),
            "3_later.sql": "CREATE TABLE later (id int);\n",
        },
    )

    result = migrate(db_url, folder)

    assert result.returncode == 1, result.describe()
    rows = {r["version"]: r for r in history(db_url)}
    assert sorted(rows) == ["1", "2"]
    assert rows["1"]["status"] == "applied"
    failed = rows["2"]
    assert (failed["status"], failed["kind"], failed["statements_done"]) == ("failed", "non_transactional", 1)
    assert failed["error"] and "missing_table" in failed["error"]
    assert tables(db_url) == {"base", "made_first"}
    [event] = result.events("migration.failed")
    assert (event["version"], event["line"], event["sqlstate"]) == ("2", 3, "42P01")
    before = snapshot(db_url)

    again = migrate(db_url, folder)

    assert again.returncode == 4, again.describe()
    assert "repair" in again.stdout
    assert "2_nontx.sql" in again.stdout
    assert snapshot(db_url) == before


def test_repair_resumes_a_failed_concurrent_index_after_the_cause_is_fixed(db_url: str, tmp_path: Path) -> None:
    """A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an INVALID index; after fixing the data `repair` rebuilds it."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_t.sql": "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (1), (2);\n",
            "2_uniq.sql": "CREATE UNIQUE INDEX CONCURRENTLY t_id_key ON t (id);\n",
            "3_after.sql": "CREATE TABLE after_repair (id int);\n",
        },
    )
    failed = migrate(db_url, folder)
    assert failed.returncode == 1, failed.describe()
    assert query(db_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id_key'::regclass") == [(False,)]
    row = history(db_url)[1]
    assert (row["version"], row["status"], row["statements_done"]) == ("2", "failed", 0)
    assert migrate(db_url, folder).returncode == 4

    cli.execute(db_url, "DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t WHERE id = 1)")
    repaired = cli.run(db_url, "repair", "--dir", str(folder), cwd=tmp_path)

    assert repaired.returncode == 0, repaired.describe()
    assert query(db_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id_key'::regclass") == [(True,)]
    assert [(r["version"], r["status"]) for r in history(db_url)] == [("1", "applied"), ("2", "applied")]

    after = migrate(db_url, folder)

    assert after.returncode == 0, after.describe()
    assert versions(db_url) == ["1", "2", "3"]
    assert "after_repair" in tables(db_url)


# ---------------------------------------------------------------------------- validation


def _applied_base(db_url: str, folder: Path) -> None:
    write(folder, {"1_a.sql": "CREATE TABLE a (id int);\n", "3_c.sql": "CREATE TABLE c (id int);\n"})
    result = migrate(db_url, folder)
    assert result.returncode == 0, result.describe()
    assert versions(db_url) == ["1", "3"]


def _assert_refused(db_url: str, folder: Path, before: object, *needles: str) -> cli.Result:
    result = migrate(db_url, folder)
    assert result.returncode == 4, result.describe()
    for needle in needles:
        assert needle in result.stdout, f"{needle!r} not in output\n{result.describe()}"
    assert result.events("migration.applied") == []
    assert snapshot(db_url) == before
    return result


def test_edited_applied_file_is_refused(db_url: str, tmp_path: Path) -> None:
    """Editing an applied file makes migrate exit 4, naming the file as edited, and apply nothing."""
    folder = tmp_path / "migrations"
    _applied_base(db_url, folder)
    write(folder, {"4_d.sql": "CREATE TABLE d (id int);\n"})
    (folder / "1_a.sql").write_text("CREATE TABLE a (id int, changed int);\n")
    before = snapshot(db_url)

    _assert_refused(db_url, folder, before, "1_a.sql", "edited")


def test_deleted_applied_file_is_refused(db_url: str, tmp_path: Path) -> None:
    """Deleting an applied file makes migrate exit 4, saying its file is gone, and apply nothing."""
    folder = tmp_path / "migrations"
    _applied_base(db_url, folder)
    write(folder, {"4_d.sql": "CREATE TABLE d (id int);\n"})
    (folder / "1_a.sql").unlink()
    before = snapshot(db_url)

    _assert_refused(db_url, folder, before, "gone")


def test_out_of_order_file_is_refused_unless_allowed(db_url: str, tmp_path: Path) -> None:
    """A new version 2 after 3 was applied exits 4; with --allow-out-of-order it is applied."""
    folder = tmp_path / "migrations"
    _applied_base(db_url, folder)
    write(folder, {"2_b.sql": "CREATE TABLE b (id int);\n"})
    before = snapshot(db_url)

    _assert_refused(db_url, folder, before, "2_b.sql", "--allow-out-of-order")

    allowed = migrate(db_url, folder, "--allow-out-of-order")

    assert allowed.returncode == 0, allowed.describe()
    assert versions(db_url) == ["1", "2", "3"]
    assert tables(db_url) == {"a", "b", "c"}


def test_duplicate_versions_are_refused_before_touching_the_database(db_url: str, tmp_path: Path) -> None:
    """0002_a.sql next to 2_b.sql exits 4 before connecting: not even the history table is created."""
    folder = write(
        tmp_path / "migrations",
        {
            "0001_x.sql": "CREATE TABLE x (id int);\n",
            "0002_a.sql": "CREATE TABLE a (id int);\n",
            "2_b.sql": "CREATE TABLE b (id int);\n",
        },
    )
    before = snapshot(db_url)

    result = _assert_refused(db_url, folder, before, "duplicate version 2")

    assert not history_exists(db_url)
    assert "0002_a.sql" in result.stdout and "2_b.sql" in result.stdout


@pytest.mark.parametrize(
    ("files", "needles"),
    [
        pytest.param(
            {"4_latin1.sql": b"-- caf\xe9\nCREATE TABLE d (id int);\n"},
            ("4_latin1.sql", "UTF-8"),
            id="non-utf8",
        ),
        pytest.param(
            {"4_d.sql": "CREATE TABLE d (id int);\n", "add_column.sql": "SELECT 1;\n"},
            ("add_column.sql",),
            id="unparseable-name",
        ),
        pytest.param(
            {
                "4_good.sql": "CREATE TABLE d (id int);\n",
                "5_bad.sql": "CREATE TABLE e (id int);\n\nCREAT TABLE f (id int);\n",
            },
            ("5_bad.sql:3", "syntax error"),
            id="syntax-error-in-pending",
        ),
    ],
)
def test_bad_file_is_refused_and_nothing_is_applied(
    db_url: str, tmp_path: Path, files: dict[str, str | bytes], needles: tuple[str, ...]
) -> None:
    """A non-UTF-8 file, bad file name or syntax error exits 4 and applies nothing, not even valid pending files."""
    folder = tmp_path / "migrations"
    _applied_base(db_url, folder)
    write(folder, files)
    before = snapshot(db_url)

    _assert_refused(db_url, folder, before, *needles)


def test_syntax_error_on_fresh_database_applies_nothing(db_url: str, tmp_path: Path) -> None:
    """On a new database, a syntax error in the last pending file exits 4 before any migration runs; the
    run.finished event still counts both files as pending."""
    folder = write(
        tmp_path / "migrations",
        {"1_ok.sql": "CREATE TABLE ok (id int);\n", "2_bad.sql": "CREATE TABLE (;\n"},
    )

    result = migrate(db_url, folder)

    assert result.returncode == 4, result.describe()
    assert "2_bad.sql:1" in result.stdout
    assert tables(db_url) == set()
    assert history(db_url) == []
    (finished,) = result.events("run.finished")
    assert (finished["applied"], finished["pending"]) == (0, 2), finished  # what is still to apply


# ---------------------------------------------------------------------------- report commands


def test_status_json_lists_every_state(db_url: str, tmp_path: Path) -> None:
    """`status --format json` lists each migration with version, name, state and applied_at."""
    folder = tmp_path / "migrations"
    write(
        folder,
        {
            "1_a.sql": "CREATE TABLE a (id int);\n",
            "2_b.sql": "CREATE TABLE b (id int);\n",
            "3_c.sql": "CREATE TABLE c (id int);\n",
        },
    )
    assert migrate(db_url, folder).returncode == 0
    (folder / "2_b.sql").write_text("CREATE TABLE b (id bigint);\n")
    (folder / "3_c.sql").unlink()
    write(folder, {"4_d.sql": "CREATE TABLE d (id int);\n"})
    before = snapshot(db_url)

    result = cli.run(db_url, "status", "--format", "json", "--dir", str(folder), cwd=tmp_path)

    assert result.returncode == 0, result.describe()
    report = json.loads(result.stdout)
    items = {m["version"]: m for m in report["migrations"]}
    assert {v: m["state"] for v, m in items.items()} == {
        "1": "applied",
        "2": "modified",
        "3": "missing",
        "4": "pending",
    }
    assert [m["version"] for m in report["migrations"]] == ["1", "2", "3", "4"]
    assert (items["1"]["name"], items["2"]["name"], items["3"]["name"], items["4"]["name"]) == ("a", "b", "c", "d")
    for version in ("1", "2", "3"):
        assert items[version]["applied_at"], version
    assert items["4"]["applied_at"] is None
    assert snapshot(db_url) == before


def test_validate_exit_codes(db_url: str, tmp_path: Path) -> None:
    """`validate` exits 0 when files and history agree and 4 once an applied file was edited."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    assert migrate(db_url, folder).returncode == 0

    clean = cli.run(db_url, "validate", "--dir", str(folder), cwd=tmp_path)

    assert clean.returncode == 0, clean.describe()
    assert clean.stdout.startswith("ok:")

    (folder / "1_a.sql").write_text("CREATE TABLE a (id int); -- edited\n")
    edited = cli.run(db_url, "validate", "--dir", str(folder), cwd=tmp_path)

    assert edited.returncode == 4, edited.describe()
    assert "1_a.sql" in edited.stdout and "edited" in edited.stdout


def test_create_writes_next_numbered_file(tmp_path: Path) -> None:
    """`create add_user_email` writes 0003_add_user_email.sql with UP and DOWN sections, without a database."""
    folder = write(tmp_path / "migrations", {"0001_x.sql": "SELECT 1;\n", "0002_y.sql": "SELECT 2;\n"})

    result = cli.run(None, "create", "add_user_email", "--dir", str(folder), cwd=tmp_path)

    assert result.returncode == 0, result.describe()
    created = folder / "0003_add_user_email.sql"
    assert sorted(p.name for p in folder.iterdir()) == ["0001_x.sql", "0002_y.sql", "0003_add_user_email.sql"]
    text = created.read_text()
    assert "-- UP" in text and "-- DOWN" in text
    assert str(created) in result.stdout


# ---------------------------------------------------------------------------- connection and settings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_database_exits_5(tmp_path: Path) -> None:
    """A database nobody listens for exits 5 once MIGRATE_CONNECT_TIMEOUT is spent."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nowhere"

    result = migrate(url, folder, MIGRATE_CONNECT_TIMEOUT="2")

    assert result.returncode == 5, result.describe()
    assert result.events("db.unreachable"), result.describe()


def test_missing_database_url_exits_2(tmp_path: Path) -> None:
    """Without DATABASE_URL (or PG* variables) migrate exits 2 and says to set DATABASE_URL."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})

    result = migrate(None, folder)

    assert result.returncode == 2, result.describe()
    assert "DATABASE_URL" in result.output


def test_invalid_setting_exits_2_naming_it(db_url: str, tmp_path: Path) -> None:
    """MIGRATE_LOCK_TIMEOUT=banana exits 2 with a message naming MIGRATE_LOCK_TIMEOUT, touching nothing."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})

    result = migrate(db_url, folder, MIGRATE_LOCK_TIMEOUT="banana")

    assert result.returncode == 2, result.describe()
    assert "MIGRATE_LOCK_TIMEOUT" in result.output
    assert "banana" not in result.output
    assert not history_exists(db_url)


@pytest.fixture
def password_role(db_url: str) -> Iterator[tuple[str, str]]:
    """A new login role with a password full of URL/conninfo specials: (role, password)."""
    role = f"u_{uuid.uuid4().hex[:12]}"
    password = f"s3cr3t-{uuid.uuid4().hex}-p@ss:w/rd?#%"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
    try:
        yield role, password
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("form", ["url", "conninfo"])
def test_password_never_printed(db_url: str, password_role: tuple[str, str], tmp_path: Path, form: str) -> None:
    """The database password never appears in any output: success, SQL failure, wrong database, status, dry run."""
    role, password = password_role
    parts = urlsplit(db_url)

    def target(dbname: str) -> str:
        if form == "url":
            netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
            return urlunsplit(parts._replace(netloc=netloc, path="/" + dbname))
        return make_conninfo(host=parts.hostname, port=parts.port, dbname=dbname, user=role, password=password)

    url = target(parts.path.lstrip("/"))
    wrong_db = target("no_such_database_here")
    folder = write(tmp_path / "migrations", {"1_a.sql": "CREATE TABLE a (id int);\n"})
    debug = {"MIGRATE_LOG_LEVEL": "debug"}

    ok = migrate(url, folder, **debug)
    write(folder, {"2_bad.sql": "INSERT INTO nowhere VALUES (1);\n"})
    failing = migrate(url, folder, **debug)
    dry = migrate(url, folder, "--dry-run", **debug)
    status = cli.run(url, "status", "--dir", str(folder), cwd=tmp_path, **debug)
    status_json = cli.run(url, "status", "--format", "json", "--dir", str(folder), cwd=tmp_path, **debug)
    validate = cli.run(url, "validate", "--dir", str(folder), cwd=tmp_path, **debug)
    wrong = migrate(wrong_db, folder, MIGRATE_CONNECT_TIMEOUT="0.5", **debug)
    wrong_status = cli.run(wrong_db, "status", "--dir", str(folder), cwd=tmp_path, MIGRATE_CONNECT_TIMEOUT="0.5")

    assert (ok.returncode, failing.returncode, dry.returncode) == (0, 1, 0), [ok.describe(), failing.describe()]
    assert (status.returncode, status_json.returncode, validate.returncode) == (0, 0, 0), status.describe()
    assert (wrong.returncode, wrong_status.returncode) == (5, 5), wrong.describe()
    assert failing.events("migration.failed"), failing.describe()
    secrets = {password, quote(password, safe=""), quote(password), password.split("-")[1]}
    for result in (ok, failing, dry, status, status_json, validate, wrong, wrong_status):
        for secret in secrets:
            assert secret not in result.output, result.describe()
