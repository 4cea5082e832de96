"""End to end: how migration files are read, named, split and classified, through the real CLI.

Empty downs, DO blocks that commit, other tools' markers and directives, custom file-name patterns,
statements that need (or must not have) a transaction, BEGIN options, normalised checksums, and
files that cannot be read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.pg.cli import (
    Result,
    applied_versions,
    clean_env,
    execute,
    history,
    history_by_version,
    migrate,
    query,
    run,
    run_cli,
    sha256,
    snapshot,
    user_relations,
    versions,
    write,
)

pytestmark = pytest.mark.pg


def run_with(database_url: str, *args: str, env: dict[str, str]) -> Result:
    """`python -m job ARGS` with only DATABASE_URL and `env` set (see clean_env)."""
    return run_cli(*args, env=clean_env(database_url, **env))


def assert_refused(result_code: int, output: str, *words: str) -> None:
    assert result_code == 4, output
    for word in words:
        assert word in output, (word, output)


# ---------------------------------------------------------------------------- empty downs (issue 11 §1)


def test_reset_runs_through_an_empty_golang_down_file(db_url: str, tmp_path: Path) -> None:
    """A zero-byte N_x.down.sql is an explicit no-op down: `reset` removes its row and leaves no relation."""
    folder = write(
        tmp_path / "migrations",
        {
            "1_create_users.up.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
            "1_create_users.down.sql": "DROP TABLE users;\n",
            "2_seed_users.up.sql": "INSERT INTO users VALUES (1), (2);\n",
            "2_seed_users.down.sql": b"",
            "3_create_teams.up.sql": "CREATE TABLE teams (id int PRIMARY KEY);\n",
            "3_create_teams.down.sql": "DROP TABLE teams;\n",
        },
    )
    assert migrate(db_url, folder).returncode == 0

    dry = run(db_url, "reset", "--dry-run", "--dir", str(folder))
    assert dry.returncode == 0, dry.describe()
    assert "only the history row is removed" in dry.stdout

    result = run(db_url, "reset", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert [e["version"] for e in result.events("migration.rolled_back")] == ["3", "2", "1"]
    assert user_relations(db_url, without_history=True) == set()
    assert history(db_url) == []


# ---------------------------------------------------------------------------- DO blocks that commit (issue 11 §2)

BACKFILL = """CREATE TABLE events (id int PRIMARY KEY, batch int NOT NULL);

-- Backfill 10,000 rows, committing every 1,000 so no transaction stays open for long.
DO $$
DECLARE
  n int;
BEGIN
  FOR n IN 0..9 LOOP
    INSERT INTO events SELECT g, n FROM generate_series(n * 1000 + 1, n * 1000 + 1000) AS g;
    COMMIT;
  END LOOP;
END
$$;
"""


def test_do_block_that_commits_in_batches_applies(db_url: str, tmp_path: Path) -> None:
    """A DO block that COMMITs every 1,000 rows runs outside a transaction (said in the dry run), and is recorded."""
    folder = write(tmp_path / "migrations", {"0001_backfill_events.sql": BACKFILL})

    dry = migrate(db_url, folder, "--dry-run")
    assert dry.returncode == 0, dry.describe()
    assert "non-transactional: DO block commits (line 10)" in dry.stdout

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    (plan,) = result.events("plan")
    assert plan["non_transactional"] == {"1": "DO block commits (line 10)"}
    assert query(db_url, "SELECT count(*), count(DISTINCT batch) FROM events") == [(10_000, 10)]
    # each batch committed on its own: ten different inserting transactions
    assert query(db_url, "SELECT count(DISTINCT xmin::text) FROM events") == [(10,)]
    row = history_by_version(db_url)["1"]
    assert (row["status"], row["kind"], row["statements_done"], row["error"]) == (
        "applied",
        "non_transactional",
        2,
        None,
    )
    assert migrate(db_url, folder).returncode == 0
    assert applied_versions(migrate(db_url, folder)) == []


def test_procedure_that_commits_created_and_called_in_the_file(db_url: str, tmp_path: Path) -> None:
    """CREATE PROCEDURE … COMMIT … followed by CALL in the same file runs outside a transaction and works."""
    body = (
        "CREATE TABLE ticks (n int);\n"
        "CREATE PROCEDURE tick(times int) LANGUAGE plpgsql AS $$\n"
        "BEGIN\n  FOR i IN 1..times LOOP INSERT INTO ticks VALUES (i); COMMIT; END LOOP;\nEND $$;\n"
        "CALL tick(3);\n"
    )
    folder = write(tmp_path / "migrations", {"0001_ticks.sql": body})
    result = migrate(db_url, folder)
    assert result.returncode == 0, result.describe()
    assert query(db_url, "SELECT count(*) FROM ticks") == [(3,)]
    assert history_by_version(db_url)["1"]["kind"] == "non_transactional"


# ---------------------------------------------------------------------------- postgres-migrations (issue 11 §3)


def test_postgres_migrations_folder_and_create(db_url: str, tmp_path: Path) -> None:
    """NNNN-name.sql files are versioned by their number; disable-transaction runs a file outside a transaction."""
    folder = write(
        tmp_path / "migrations",
        {
            "0001-create-users.sql": "CREATE TABLE users (id int PRIMARY KEY, email text);\n",
            "0002-index-users-email.sql": (
                "-- postgres-migrations disable-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n"
            ),
        },
    )
    first = migrate(db_url, folder)
    assert first.returncode == 0, first.describe()
    assert versions(db_url) == ["1", "2"]
    assert history_by_version(db_url)["2"]["kind"] == "non_transactional"

    created = run(db_url, "create", "add user name", "--dir", str(folder))
    assert created.returncode == 0, created.describe()
    new = folder / "0003-add-user-name.sql"
    assert created.stdout.strip() == str(new)
    new.write_text("-- UP\nALTER TABLE users ADD COLUMN name text;\n-- DOWN\nALTER TABLE users DROP COLUMN name;\n")
    assert applied_versions(migrate(db_url, folder)) == ["3"]
    assert applied_versions(migrate(db_url, folder)) == []


# ---------------------------------------------------------------------------- any naming scheme (issue 11 §4)

STAGE_PATTERN = r"migration-(?P<name>[a-z]+)-(?P<version>\d{4})-\d{8}\.sql"
DATE_PATTERN = r"(?P<version>\d{4}-\d{2}-\d{2})_(?P<name>.+)\.sql"


@pytest.mark.parametrize(
    ("files", "env", "expected"),
    [
        (
            {
                "migration-schema-0001-20240115.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
                "migration-data-0002-20240116.sql": "INSERT INTO users VALUES (1);\n",
                "migration-schema-0010-20240301.sql": "ALTER TABLE users ADD COLUMN email text;\n",
                "NOTES.md": "not a migration",
            },
            {"MIGRATE_FILENAME_PATTERN": STAGE_PATTERN},
            ["1", "2", "10"],
        ),
        (
            {
                "2024-01-15_add_users.sql": "CREATE TABLE users (id int PRIMARY KEY);\n",
                "2024-02-01_add_teams.sql": "CREATE TABLE teams (owner int REFERENCES users);\n",
                "2024-01-20_add_email.sql": "ALTER TABLE users ADD COLUMN email text;\n",
            },
            {"MIGRATE_FILENAME_PATTERN": DATE_PATTERN, "MIGRATE_ORDER": "lexical"},
            ["2024-01-15", "2024-01-20", "2024-02-01"],
        ),
    ],
    ids=["stage-number-date", "dated-lexical"],
)
def test_custom_naming_scheme_applies_with_one_setting(
    db_url: str, tmp_path: Path, files: dict[str, str], env: dict[str, str], expected: list[str]
) -> None:
    """A folder named its own way applies with DATABASE_URL, MIGRATE_DIR and the pattern; a rerun is a no-op."""
    folder = write(tmp_path / "migrations", files)

    first = run_with(db_url, "migrate", env={"MIGRATE_DIR": str(folder), **env})

    assert first.returncode == 0, first.describe()
    assert applied_versions(first) == expected
    assert versions(db_url) == sorted(expected, key=expected.index)
    again = run_with(db_url, "migrate", env={"MIGRATE_DIR": str(folder), **env})
    assert again.returncode == 0, again.describe()
    assert applied_versions(again) == []
    status = run_with(db_url, "status", "--format", "json", env={"MIGRATE_DIR": str(folder), **env})
    assert status.returncode == 0, status.describe()
    assert '"state": "pending"' not in status.stdout


def test_lexical_versions_adopt_another_tools_rows(db_url: str, tmp_path: Path) -> None:
    """With MIGRATE_ORDER=lexical, a dbmate schema_migrations(version) row adopts the file whose version text it is."""
    folder = write(
        tmp_path / "migrations",
        {f"20240{n}01120000_t{n}.sql": f"-- migrate:up\nCREATE TABLE t{n} (id int);\n" for n in (1, 2, 3)},
    )
    execute(db_url, "CREATE TABLE t1 (id int); CREATE TABLE t2 (id int)")  # applied by dbmate
    execute(db_url, "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
    execute(db_url, "INSERT INTO schema_migrations (version) VALUES ('20240101120000'), ('20240201120000')")

    result = run_with(db_url, "migrate", env={"MIGRATE_DIR": str(folder), "MIGRATE_ORDER": "lexical"})

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["20240301120000"]
    assert {v: r["source"] for v, r in history_by_version(db_url).items()} == {
        "20240101120000": "adopted:dbmate",
        "20240201120000": "adopted:dbmate",
        "20240301120000": "migrate-job",
    }


def test_file_not_matching_the_pattern_is_refused(db_url: str, tmp_path: Path) -> None:
    """A .sql file the pattern does not match stops the run (exit 4) naming the file and the pattern."""
    folder = write(
        tmp_path / "migrations",
        {"migration-schema-0001-20240115.sql": "CREATE TABLE a (id int);\n", "0002_b.sql": "SELECT 1;\n"},
    )
    before = snapshot(db_url)
    result = run(db_url, "migrate", MIGRATE_DIR=str(folder), MIGRATE_FILENAME_PATTERN=STAGE_PATTERN)
    assert_refused(result.returncode, result.output, "0002_b.sql", STAGE_PATTERN.replace("\\", "\\\\"))
    assert snapshot(db_url) == before


@pytest.mark.parametrize("pattern", [r"(?P<version>\d+", r"(?P<number>\d+)\.sql"])
def test_unusable_pattern_is_a_configuration_error(db_url: str, tmp_path: Path, pattern: str) -> None:
    """An invalid regex or one without a `version` group exits 2 naming MIGRATE_FILENAME_PATTERN."""
    folder = write(tmp_path / "migrations", {"1.sql": "SELECT 1;\n"})
    result = run(db_url, "migrate", MIGRATE_DIR=str(folder), MIGRATE_FILENAME_PATTERN=pattern)
    assert result.returncode == 2, result.describe()
    assert "MIGRATE_FILENAME_PATTERN" in result.error_text()


# ---------------------------------------------------------------------------- goose markers (issue 14 §2)

GOOSE_FILES = {
    "00001_create_users.sql": """-- +goose Up
-- +goose StatementBegin
CREATE TABLE users (id int PRIMARY KEY);
CREATE FUNCTION users_count() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN (SELECT count(*) FROM users);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION users_count();
DROP TABLE users;
""",
    "00002_index_users.sql": """-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY users_id_idx ON users (id);

-- +goose Down
DROP INDEX CONCURRENTLY users_id_idx;
""",
}


def test_goose_folder_down_runs_only_on_rollback(db_url: str, tmp_path: Path) -> None:
    """A goose folder applies its Up sections only; `rollback` runs the Down sections."""
    folder = write(tmp_path / "migrations", GOOSE_FILES)

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    assert {"public.users", "public.users_pkey", "public.users_id_idx"} <= user_relations(db_url)
    assert query(db_url, "SELECT users_count()") == [(0,)]
    assert history_by_version(db_url)["2"]["kind"] == "non_transactional"

    back = run(db_url, "rollback", "--dir", str(folder))

    assert back.returncode == 0, back.describe()
    assert user_relations(db_url, without_history=True) == set()
    assert history(db_url) == []


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("-- +dbtool Up\nCREATE TABLE a (id int);\n-- +dbtool Down\nDROP TABLE a;\n", 1),
        ("CREATE TABLE a (id int);\n--- DOWN\nDROP TABLE a;\n", 2),
        ("CREATE TABLE a (id int);\n-- migrate: down\nDROP TABLE a;\n", 2),
    ],
)
def test_file_with_a_marker_we_do_not_know_never_runs(db_url: str, tmp_path: Path, body: str, line: int) -> None:
    """An unknown tool's down marker is refused (exit 4, file:line) instead of running the file as all UP."""
    folder = write(tmp_path / "migrations", {"0001_a.sql": body})
    before = snapshot(db_url)
    result = migrate(db_url, folder)
    assert_refused(result.returncode, result.output, f"0001_a.sql:{line}:", "section marker")
    assert snapshot(db_url) == before


# ---------------------------------------------------------------------------- outside a transaction (issue 14 §3)

FORCED_OUT = """CREATE TABLE accounts (id int PRIMARY KEY);
CREATE TABLE ledger (id int PRIMARY KEY, account int);
VACUUM FULL accounts;
LOCK TABLE ledger IN SHARE MODE;
"""


@pytest.mark.parametrize("command", [["migrate"], ["migrate", "--dry-run"], ["validate"]])
def test_statement_needing_a_transaction_in_a_non_transactional_file(
    db_url: str, tmp_path: Path, command: list[str]
) -> None:
    """LOCK TABLE in a file that VACUUM forces out of its transaction is refused before anything runs."""
    folder = write(tmp_path / "migrations", {"0001_accounts.sql": FORCED_OUT})
    before = snapshot(db_url)
    result = run(db_url, *command, "--dir", str(folder))
    assert_refused(result.returncode, result.output, "0001_accounts.sql:4:", "LOCK TABLE", "VACUUM (line 3)")
    assert snapshot(db_url) == before


def test_lint_warns_when_one_statement_forces_the_file_out(tmp_path: Path) -> None:
    """`lint` warns (MJ023) that the VACUUM makes the whole file run outside a transaction, and how to fix it."""
    folder = write(tmp_path / "migrations", {"0001_accounts.sql": FORCED_OUT.replace("LOCK TABLE", "-- LOCK")})
    result = run(None, "lint", "--dir", str(folder))
    assert "0001_accounts.sql:3:1: MJ023 warning" in result.stdout, result.describe()
    assert "split it into its own migration" in result.stdout


ISOLATION = """BEGIN ISOLATION LEVEL SERIALIZABLE;
CREATE TABLE seen (isolation text);
INSERT INTO seen SELECT current_setting('transaction_isolation');
COMMIT;
"""


def test_begin_isolation_level_is_honoured(db_url: str, tmp_path: Path) -> None:
    """A file's BEGIN ISOLATION LEVEL SERIALIZABLE really runs the migration at that isolation level."""
    folder = write(tmp_path / "migrations", {"0001_seen.sql": ISOLATION})
    result = migrate(db_url, folder)
    assert result.returncode == 0, result.describe()
    assert query(db_url, "SELECT isolation FROM seen") == [("serializable",)]
    assert history_by_version(db_url)["1"]["kind"] == "transactional"


@pytest.mark.parametrize(
    ("body", "args", "words"),
    [
        (ISOLATION, ["--single-transaction"], ["0001_seen.sql", "--single-transaction"]),
        (ISOLATION.replace("SERIALIZABLE", "SERIALIZABLE READ ONLY"), [], ["0001_seen.sql:1:", "READ ONLY"]),
    ],
)
def test_begin_options_that_cannot_be_honoured(
    db_url: str, tmp_path: Path, body: str, args: list[str], words: list[str]
) -> None:
    """BEGIN options that cannot be honoured are refused (exit 4) before anything runs."""
    folder = write(tmp_path / "migrations", {"0001_seen.sql": body})
    before = snapshot(db_url)
    result = migrate(db_url, folder, *args)
    assert_refused(result.returncode, result.output, *words)
    assert snapshot(db_url) == before


# ---------------------------------------------------------------------------- checksums (issue 14 §4)


def test_line_endings_and_bom_do_not_make_a_file_edited(db_url: str, tmp_path: Path) -> None:
    """CRLF/BOM checkouts validate; a row holding an old raw-byte checksum validates and is upgraded by migrate."""
    folder = write(
        tmp_path / "migrations",
        {"0001_a.sql": "CREATE TABLE a (id int);\n", "0002_b.sql": "CREATE TABLE b (id int);\n"},
    )
    assert migrate(db_url, folder).returncode == 0
    lf = {p.name: p.read_bytes() for p in folder.iterdir()}
    for name, data in lf.items():  # the same files checked out on Windows, with a BOM
        (folder / name).write_bytes(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    # What an earlier release stored for 0002 had it applied this checkout: the SHA-256 of the raw bytes.
    raw = hashlib.sha256((folder / "0002_b.sql").read_bytes()).hexdigest()
    query(db_url, "UPDATE migrate_job_history SET checksum = %s WHERE version = '2'", (raw,))

    checked = run(db_url, "validate", "--dir", str(folder))
    assert checked.returncode == 0, checked.describe()
    assert history_by_version(db_url)["2"]["checksum"] == raw  # validate writes nothing

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    (upgraded,) = result.events("history.checksums_upgraded")
    assert upgraded["versions"] == ["2"]
    rows = history_by_version(db_url)
    for name, version in (("0001_a.sql", "1"), ("0002_b.sql", "2")):  # the normalised (LF, no BOM) checksum
        assert rows[version]["checksum"] == hashlib.sha256(lf[name]).hexdigest() == sha256(folder / name)
    assert migrate(db_url, folder).events("history.checksums_upgraded") == []


# ---------------------------------------------------------------------------- unreadable files (issue 16 §1)


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "volume-not-mounted" / path.name)


def _directory(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize("make", [_dangling, _directory], ids=["dangling-symlink", "directory"])
def test_unreadable_migration_file_stops_the_run(db_url: str, tmp_path: Path, make: object) -> None:
    """A migration file that cannot be read is an error (exit 4) naming it; the later versions do not apply."""
    folder = write(
        tmp_path / "migrations",
        {"0001_a.sql": "CREATE TABLE a (id int);\n", "0003_c.sql": "CREATE TABLE c (id int);\n"},
    )
    assert callable(make)
    make(folder / "0002_b.sql")
    before = snapshot(db_url)
    result = migrate(db_url, folder)
    assert_refused(result.returncode, result.output, f"{folder / '0002_b.sql'}: cannot read this migration file")
    assert snapshot(db_url) == before


# ---------------------------------------------------------------------------- releasing the runner's lock (issue 16 §5)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("SELECT pg_advisory_unlock_all();\n", "pg_advisory_unlock_all()"),
        ("-- migrate-job: transaction=off\nDISCARD ALL;\n", "DISCARD ALL"),
    ],
)
@pytest.mark.parametrize("command", ["migrate", "validate"])
def test_migration_releasing_advisory_locks_is_refused(
    db_url: str, tmp_path: Path, body: str, what: str, command: str
) -> None:
    """A migration that would release the runner's advisory lock is refused at validation, naming file:line."""
    folder = write(tmp_path / "migrations", {"0001_a.sql": "CREATE TABLE a (id int);\n", "0002_unlock.sql": body})
    before = snapshot(db_url)
    result = run(db_url, command, "--dir", str(folder))
    line = body.count("\n")
    assert_refused(result.returncode, result.output, f"0002_unlock.sql:{line}:", what, "advisory lock")
    assert snapshot(db_url) == before
