"""Switching from the other common runners (issue 11 §3, issue 14 §5, issue 17 §2-§3).

Each test creates the tool's tracking table with the tool's own DDL and the rows it writes (postgres-migrations'
0_create-migrations-table.sql, node-pg-migrate's ensureMigrationsTable, Knex's table-creator.js, Prisma's
_prisma_migrations, sqitch's pg.sql registry, Rails' schema_migrations + ar_internal_metadata, Flyway's
flyway_schema_history), puts the schema objects of the migrations it applied in place, then drives migrate-job
only through its CLI and looks at the database afterwards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.pg import cli
from tests.pg.cli import FIXTURES, applied_versions, execute, history_exists, query
from tests.pg.cli import history_by_version as history
from tests.pg.cli import run_unattended as run
from tests.pg.test_adoption import ACCOUNTS, apply_accounts, flyway_crc, flyway_legacy, legacy_rows, user_relations

pytestmark = pytest.mark.pg


# ---------------------------------------------------------------------------- helpers


def write_named(folder: Path, names: list[str], *, downs: bool = True) -> list[Path]:
    """ACCOUNTS migrations as the given file names (in order), with -- UP/-- DOWN sections unless `downs` is off."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (_, up, down) in zip(names, ACCOUNTS, strict=False):
        path = folder / name
        path.write_text(f"-- UP\n{up}\n\n-- DOWN\n{down}\n" if downs else f"{up}\n", encoding="utf-8")
        paths.append(path)
    return paths


def sources(db_url: str) -> dict[str, str]:
    return {v: str(r["source"]) for v, r in history(db_url).items()}


def audit(db_url: str) -> list[dict[str, Any]]:
    """Rows of the audit table, oldest first ([] when it does not exist)."""
    if not query(db_url, "SELECT to_regclass('public.migrate_job_history_log') IS NOT NULL")[0][0]:
        return []
    rows = query(db_url, "SELECT event, version, detail, applied_by FROM public.migrate_job_history_log ORDER BY id")
    return [{"event": r[0], "version": r[1], "detail": r[2], "applied_by": r[3]} for r in rows]


def events(db_url: str, name: str) -> list[dict[str, Any]]:
    return [e for e in audit(db_url) if e["event"] == name]


def status_json(db_url: str, folder: Path, *args: str, **env: str) -> dict[str, Any]:
    result = run(db_url, "status", "--format", "json", "--dir", str(folder), *args, **env)
    assert result.returncode == 0, result.describe()
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def states(db_url: str, folder: Path) -> dict[str, tuple[str, str | None]]:
    return {str(m["version"]): (m["state"], m["source"]) for m in status_json(db_url, folder)["migrations"]}


def sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def assert_adopted_once(db_url: str, table: str, tool: str) -> None:
    adopted = events(db_url, "adopted")
    assert len(adopted) == 1, audit(db_url)
    assert adopted[0]["detail"]["table"] == table and adopted[0]["detail"]["tool"] == tool


# ---------------------------------------------------------------------------- postgres-migrations


POSTGRES_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS migrations (
  id integer PRIMARY KEY,
  name varchar(100) UNIQUE NOT NULL,
  hash varchar(40) NOT NULL, -- sha1 hex encoded hash of the file name and contents
  executed_at timestamp DEFAULT current_timestamp
)"""
PG_MIGRATIONS_FILES = ["1_create-accounts.sql", "2_create-ledger.sql", "3-account-balance.sql", "4-booked-at-index.sql"]


def postgres_migrations_legacy(db_url: str, folder: Path) -> list[Path]:
    """postgres-migrations ran its own migration 0 and files 1 and 2 (hash = sha1(file name + contents))."""
    paths = write_named(folder, PG_MIGRATIONS_FILES, downs=False)
    apply_accounts(db_url, 2)
    execute(db_url, POSTGRES_MIGRATIONS)
    execute(
        db_url,
        "INSERT INTO migrations (id, name, hash, executed_at) VALUES"
        " (0, 'create-migrations-table', 'e18db593bcde2aca2a408c4d1100f6abba2195df', '2023-04-01 09:00:00'),"
        " (1, 'create-accounts', %s, '2023-04-01 09:00:01'), (2, 'create-ledger', %s, '2023-04-08 09:00:00')",
        tuple(sha1(p.name.encode() + p.read_bytes()) for p in paths[:2]),
    )
    return paths


def test_postgres_migrations_table_is_adopted_and_only_the_rest_runs(db_url: str, tmp_path: Path) -> None:
    """postgres-migrations' migrations(id, name, hash, executed_at): 1-2 adopted with their dates, 3-4 run."""
    folder = tmp_path / "migrations"
    postgres_migrations_legacy(db_url, folder)
    legacy_before = legacy_rows(db_url, "migrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["3", "4"]
    assert sources(db_url) == {
        "1": "adopted:postgres-migrations",
        "2": "adopted:postgres-migrations",
        "3": "migrate-job",
        "4": "migrate-job",
    }
    assert history(db_url)["2"]["applied_at"] == datetime(2023, 4, 8, 9, tzinfo=UTC)
    assert legacy_rows(db_url, "migrations") == legacy_before
    assert_adopted_once(db_url, "public.migrations", "postgres-migrations")
    assert run(db_url, "validate", "--dir", str(folder)).returncode == 0


# ---------------------------------------------------------------------------- node-pg-migrate


NODE_PG_MIGRATE = (
    "CREATE TABLE public.pgmigrations (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL)"
)


def test_node_pg_migrate_table_is_adopted_by_migration_name(db_url: str, tmp_path: Path) -> None:
    """node-pg-migrate's pgmigrations(id, name, run_on) rows name files without extension; only the rest run."""
    folder = tmp_path / "migrations"
    names = [
        "1700000000000_create-accounts.sql",
        "1700000100000_create-ledger.sql",
        "1700000200000_account-balance.sql",
        "1700000300000_booked-at-index.sql",
    ]
    write_named(folder, names)
    apply_accounts(db_url, 3)
    execute(db_url, NODE_PG_MIGRATE)
    execute(
        db_url,
        "INSERT INTO pgmigrations (name, run_on) VALUES ('1700000000000_create-accounts', '2023-11-14 22:13:20'),"
        " ('1700000100000_create-ledger', '2023-11-16 02:00:00'),"
        " ('1700000200000_account-balance', '2023-11-17 05:46:40')",
    )
    legacy_before = legacy_rows(db_url, "pgmigrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["1700000300000"]
    assert set(sources(db_url).values()) == {"adopted:node-pg-migrate", "migrate-job"}
    assert [v for v, s in sources(db_url).items() if s == "migrate-job"] == ["1700000300000"]
    assert history(db_url)["1700000000000"]["applied_at"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert legacy_rows(db_url, "pgmigrations") == legacy_before


# ---------------------------------------------------------------------------- Knex

KNEX = """
CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz);
CREATE TABLE knex_migrations_lock ("index" serial PRIMARY KEY, is_locked integer);
INSERT INTO knex_migrations_lock (is_locked) VALUES (0);
"""
KNEX_FILES = [
    "20240101120000_create_accounts.sql",
    "20240102120000_create_ledger.sql",
    "20240103120000_account_balance.sql",
    "20240104120000_booked_at_index.sql",
]


def knex_legacy(db_url: str, folder: Path) -> None:
    """Knex ran 1-2 in batch 1 and 3 in batch 2 (names are its .js file names; the team converted them to SQL)."""
    write_named(folder, KNEX_FILES)
    apply_accounts(db_url, 3)
    execute(db_url, KNEX)
    execute(
        db_url,
        "INSERT INTO knex_migrations (name, batch, migration_time) VALUES"
        " ('20240101120000_create_accounts.js', 1, '2024-01-05 10:00:00+00'),"
        " ('20240102120000_create_ledger.js', 1, '2024-01-05 10:00:01+00'),"
        " ('20240103120000_account_balance.js', 2, '2024-02-01 10:00:00+00')",
    )


def test_knex_batches_are_kept_so_the_first_rollback_undoes_knexs_last_batch(db_url: str, tmp_path: Path) -> None:
    """`rollback` as the very first command adopts knex_migrations and rolls back Knex's batch 2; migrate redoes it."""
    folder = tmp_path / "migrations"
    knex_legacy(db_url, folder)
    legacy_before = legacy_rows(db_url, "knex_migrations")

    rollback = run(db_url, "rollback", "--dir", str(folder))

    assert rollback.returncode == 0, rollback.describe()
    assert [e["version"] for e in rollback.events("migration.rolled_back")] == ["20240103120000"]
    assert {v: (r["source"], r["batch"]) for v, r in history(db_url).items()} == {
        "20240101120000": ("adopted:knex", 1),
        "20240102120000": ("adopted:knex", 1),
    }
    assert query(db_url, "SELECT to_regprocedure('account_balance(bigint)') IS NULL")[0][0]
    assert_adopted_once(db_url, "public.knex_migrations", "knex")
    assert [e["version"] for e in events(db_url, "rolled_back")] == ["20240103120000"]

    again = run(db_url, "migrate", "--dir", str(folder))

    assert again.returncode == 0, again.describe()
    assert applied_versions(again) == ["20240103120000", "20240104120000"]
    # a new batch after Knex's remaining batch 1 (its batch 2 was rolled back)
    assert {r["batch"] for v, r in history(db_url).items() if r["source"] == "migrate-job"} == {2}
    assert legacy_rows(db_url, "knex_migrations") == legacy_before
    assert len(events(db_url, "adopted")) == 1


# ---------------------------------------------------------------------------- Prisma

PRISMA = """
CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) NOT NULL,
    "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL,
    "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "_prisma_migrations_pkey" PRIMARY KEY ("id")
)"""
PRISMA_NAMES = ["20240101120000_init", "20240201120000_ledger", "20240301120000_balance", "20240401120000_index"]


def prisma_legacy(db_url: str, folder: Path) -> list[Path]:
    """Prisma applied 1 and 2 (2 failed once and was resolved as rolled back, then applied); checksum = SHA-256
    of migration.sql. The folders <name>/migration.sql were flattened to <name>.sql (see README)."""
    paths = write_named(folder, [f"{n}.sql" for n in PRISMA_NAMES], downs=False)
    apply_accounts(db_url, 2)
    execute(db_url, PRISMA)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    execute(
        db_url,
        "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, logs, rolled_back_at,"
        " started_at, applied_steps_count) VALUES"
        " (gen_random_uuid(), %s, '2024-01-02 10:00:01+00', %s, NULL, NULL, '2024-01-02 10:00:00+00', 1),"
        " (gen_random_uuid(), %s, NULL, %s, 'Database error: relation exists', '2024-02-02 10:05:00+00',"
        "  '2024-02-02 10:00:00+00', 0),"
        " (gen_random_uuid(), %s, '2024-02-02 10:10:01+00', %s, NULL, NULL, '2024-02-02 10:10:00+00', 1)",
        (digest[0], PRISMA_NAMES[0], digest[1], PRISMA_NAMES[1], digest[1], PRISMA_NAMES[1]),
    )
    return paths


def test_prisma_finished_migrations_are_adopted_and_rolled_back_attempts_ignored(db_url: str, tmp_path: Path) -> None:
    """_prisma_migrations: finished, not rolled-back names are adopted (read-only); only 3 and 4 run."""
    folder = tmp_path / "migrations"
    prisma_legacy(db_url, folder)
    legacy_before = legacy_rows(db_url, "_prisma_migrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["20240301120000", "20240401120000"]
    assert sources(db_url) == {
        "20240101120000": "adopted:prisma",
        "20240201120000": "adopted:prisma",
        "20240301120000": "migrate-job",
        "20240401120000": "migrate-job",
    }
    assert history(db_url)["20240201120000"]["applied_at"] == datetime(2024, 2, 2, 10, 10, 1, tzinfo=UTC)
    assert legacy_rows(db_url, "_prisma_migrations") == legacy_before


# ---------------------------------------------------------------------------- sqitch

SQITCH = """
CREATE SCHEMA sqitch;
CREATE TABLE sqitch.releases (
    version REAL PRIMARY KEY, installed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    installer_name TEXT NOT NULL, installer_email TEXT NOT NULL
);
CREATE TABLE sqitch.projects (
    project TEXT PRIMARY KEY, uri TEXT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    creator_name TEXT NOT NULL, creator_email TEXT NOT NULL
);
CREATE TABLE sqitch.changes (
    change_id       TEXT        PRIMARY KEY,
    script_hash     TEXT            NULL,
    change          TEXT        NOT NULL,
    project         TEXT        NOT NULL REFERENCES sqitch.projects(project) ON UPDATE CASCADE,
    note            TEXT        NOT NULL DEFAULT '',
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name  TEXT        NOT NULL,
    committer_email TEXT        NOT NULL,
    planned_at      TIMESTAMPTZ NOT NULL,
    planner_name    TEXT        NOT NULL,
    planner_email   TEXT        NOT NULL,
    UNIQUE(project, script_hash)
);
INSERT INTO sqitch.releases VALUES (1.1, now(), 'Ops', 'ops@example.com');
INSERT INTO sqitch.projects (project, uri, creator_name, creator_email)
VALUES ('ledger', NULL, 'Ana', 'ana@example.com');
"""


def test_sqitch_changes_are_adopted_for_numbered_files_named_after_the_changes(db_url: str, tmp_path: Path) -> None:
    """sqitch.changes (registry schema `sqitch`, not on the search path): changes map to NNN_<change>.sql files."""
    folder = tmp_path / "migrations"
    names = ["001_create_accounts.sql", "002_create_ledger.sql", "003_account_balance.sql", "004_booked_at_index.sql"]
    write_named(folder, names)
    apply_accounts(db_url, 2)
    execute(db_url, SQITCH)
    execute(
        db_url,
        "INSERT INTO sqitch.changes (change_id, script_hash, change, project, note, committed_at, committer_name,"
        " committer_email, planned_at, planner_name, planner_email) VALUES"
        " (%s, %s, 'create_accounts', 'ledger', 'Adds accounts.', '2023-07-01 12:00:00+00', 'Ana', 'ana@example.com',"
        "  '2023-06-30 09:00:00+00', 'Ana', 'ana@example.com'),"
        " (%s, %s, 'create_ledger', 'ledger', 'Adds ledger_entries.', '2023-07-02 12:00:00+00', 'Ben',"
        "  'ben@example.com', '2023-07-01 09:00:00+00', 'Ben', 'ben@example.com')",
        (sha1(b"change 1"), sha1(b"deploy 1"), sha1(b"change 2"), sha1(b"deploy 2")),
    )

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["3", "4"]
    rows = history(db_url)
    assert {v: r["source"] for v, r in rows.items()} == {
        "1": "adopted:sqitch",
        "2": "adopted:sqitch",
        "3": "migrate-job",
        "4": "migrate-job",
    }
    assert rows["2"]["applied_by"] == "Ben"
    assert_adopted_once(db_url, "sqitch.changes", "sqitch")


# ---------------------------------------------------------------------------- Rails


RAILS = """
CREATE TABLE schema_migrations (version character varying NOT NULL PRIMARY KEY);
CREATE TABLE ar_internal_metadata (
    key character varying NOT NULL PRIMARY KEY, value character varying,
    created_at timestamp(6) without time zone NOT NULL, updated_at timestamp(6) without time zone NOT NULL
);
INSERT INTO ar_internal_metadata VALUES ('environment', 'production', now(), now());
INSERT INTO schema_migrations (version) VALUES ('20240105093000'), ('20240112140000');
"""


def test_rails_schema_migrations_is_adopted_like_dbmates(db_url: str, tmp_path: Path) -> None:
    """Rails' schema_migrations(version varchar) next to ar_internal_metadata: versions adopted, the rest run."""
    folder = tmp_path / "db" / "migrate"
    stamps = ["20240105093000", "20240112140000", "20240301081500", "20240302120000"]
    write_named(folder, [f"{s}_{name}.sql" for s, (name, _, _) in zip(stamps, ACCOUNTS, strict=True)])
    apply_accounts(db_url, 2)
    execute(db_url, RAILS)

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == stamps[2:]
    assert sources(db_url) == {
        stamps[0]: "adopted:rails",
        stamps[1]: "adopted:rails",
        stamps[2]: "migrate-job",
        stamps[3]: "migrate-job",
    }
    assert legacy_rows(db_url, "schema_migrations") == [(stamps[0],), (stamps[1],)]


# ---------------------------------------------------------------------------- legacy checksums


def _edit(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\nCOMMENT ON TABLE accounts IS 'edited later';\n")


def _edited_postgres_migrations(db_url: str, folder: Path) -> tuple[Path, str]:
    paths = postgres_migrations_legacy(db_url, folder)
    _edit(paths[0])
    return paths[0], "1"


def _edited_prisma(db_url: str, folder: Path) -> tuple[Path, str]:
    paths = prisma_legacy(db_url, folder)
    _edit(paths[0])
    return paths[0], "20240101120000"


def _edited_named(db_url: str, folder: Path) -> tuple[Path, str]:
    """Seed 004's schema_migrations(migration_name, checksum = SHA-256 of the file)."""
    paths = write_named(folder, ["20240101_090000_create_accounts.sql", "20240105_090000_create_ledger.sql"])
    apply_accounts(db_url, 2)
    execute(
        db_url,
        "CREATE TABLE schema_migrations (id SERIAL PRIMARY KEY, migration_name VARCHAR(255) UNIQUE NOT NULL,"
        " checksum VARCHAR(64), applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    )
    execute(
        db_url,
        "INSERT INTO schema_migrations (migration_name, checksum) VALUES (%s, %s), (%s, %s)",
        (paths[0].stem, cli.sha256(paths[0]), paths[1].stem, cli.sha256(paths[1])),
    )
    _edit(paths[0])
    return paths[0], "20240101090000"


def _edited_flyway(db_url: str, folder: Path) -> tuple[Path, str]:
    shutil.copytree(FIXTURES / "flyway", folder)
    flyway_legacy(db_url, folder=folder)
    path = folder / "V1.1__create_categories.sql"
    path.write_text(path.read_text(encoding="utf-8") + "\nCOMMENT ON TABLE categories IS 'edited later';\n")
    return path, "1.1"


@pytest.mark.parametrize(
    "legacy",
    [_edited_postgres_migrations, _edited_prisma, _edited_named, _edited_flyway],
    ids=["postgres-migrations", "prisma", "schema_migrations.checksum", "flyway"],
)
def test_file_edited_after_the_old_tool_applied_it_is_reported_as_modified(
    db_url: str, tmp_path: Path, legacy: Any
) -> None:
    """A legacy checksum that no longer matches: migrate and validate exit 4 naming the file, status says
    `modified`, nothing is applied or written."""
    folder = tmp_path / "migrations"
    edited, version = legacy(db_url, folder)
    relations = user_relations(db_url)

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 4, result.describe()
    assert str(edited) in result.error_text() and "edited after it was applied" in result.error_text()
    assert applied_versions(result) == []
    assert not history_exists(db_url)
    assert user_relations(db_url) == relations
    validate = run(db_url, "validate", "--dir", str(folder))
    assert validate.returncode == 4 and str(edited) in validate.output, validate.describe()
    assert states(db_url, folder)[version][0] == "modified"


def test_accepting_the_edit_of_a_flyway_file_lets_the_switch_proceed(db_url: str, tmp_path: Path) -> None:
    """`repair --accept-checksum 1.1` as the first command adopts Flyway's table, stores the file's checksum
    (logged with who and when), and the next migrate applies only the rest."""
    folder = tmp_path / "migrations"
    edited, _ = _edited_flyway(db_url, folder)

    fix = run(db_url, "repair", "--accept-checksum", "1.1", "--dir", str(folder), MIGRATE_APPLIED_BY="ana@laptop")

    assert fix.returncode == 0, fix.describe()
    assert fix.events("repair.checksum_accepted")[0]["version"] == "1.1"
    assert history(db_url)["1.1"]["checksum"] == cli.sha256(edited)
    accepted = events(db_url, "checksum_accepted")
    assert [(e["version"], e["applied_by"]) for e in accepted] == [("1.1", "ana@laptop")]
    assert str(accepted[0]["detail"]["old_checksum"]).startswith("flyway:")
    result = run(db_url, "migrate", "--dir", str(folder))
    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["1.10", "2", "2.1"]


def test_flyway_repeatable_changed_since_flyway_ran_it_is_re_applied_once(db_url: str, tmp_path: Path) -> None:
    """An R__ file whose Flyway CRC no longer matches is re-run once, after the versioned ones; then its row holds
    migrate-job's checksum and the next run applies nothing."""
    folder = tmp_path / "migrations"
    shutil.copytree(FIXTURES / "flyway", folder)
    flyway_legacy(db_url, folder=folder)
    repeatable = folder / "R__product_catalog.sql"
    repeatable.write_text(
        "CREATE OR REPLACE VIEW product_catalog AS\nSELECT p.id, p.name, c.name AS category, p.price_cents,"
        " p.price_cents / 100.0 AS price\n  FROM products p\n  LEFT JOIN categories c ON c.id = p.category_id;\n",
        encoding="utf-8",
    )

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["1.10", "2", "2.1", "R__product_catalog"]
    row = history(db_url)["R__product_catalog"]
    assert row["checksum"] == cli.sha256(repeatable) and row["source"] == "migrate-job"
    assert (
        query(
            db_url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'product_catalog'"
            " AND column_name = 'price'",
        )[0][0]
        == 1
    )
    rerun = run(db_url, "migrate", "--dir", str(folder))
    assert rerun.returncode == 0 and applied_versions(rerun) == [], rerun.describe()


def test_unchanged_flyway_files_validate_against_flyways_checksums(db_url: str, tmp_path: Path) -> None:
    """Files unchanged since Flyway ran them: adopted rows carry the files' checksums; the repeatable is not re-run."""
    folder = tmp_path / "migrations"
    shutil.copytree(FIXTURES / "flyway", folder)
    flyway_legacy(db_url, folder=folder)

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["1.10", "2", "2.1"]
    rows = history(db_url)
    assert rows["1.1"]["checksum"] == cli.sha256(folder / "V1.1__create_categories.sql")
    assert rows["R__product_catalog"]["source"] == "adopted:flyway"
    assert flyway_crc(folder / "V1.1__create_categories.sql") == legacy_rows(db_url, "flyway_schema_history")[1][5]


# ---------------------------------------------------------------------------- where the table is


def _flyway_in(db_url: str, schema: str) -> None:
    execute(db_url, f"CREATE SCHEMA IF NOT EXISTS {schema}")
    execute(db_url, f"CREATE TABLE {schema}.flyway_schema_history (LIKE public.flyway_schema_history INCLUDING ALL)")
    execute(db_url, f"INSERT INTO {schema}.flyway_schema_history SELECT * FROM public.flyway_schema_history")


def test_flyway_history_outside_public_is_found(db_url: str) -> None:
    """flyway_schema_history in schema `app` (flyway.schemas=app; not on the search path) is adopted."""
    flyway_legacy(db_url)
    _flyway_in(db_url, "app")
    execute(db_url, "DROP TABLE public.flyway_schema_history")

    result = run(db_url, "migrate", "--dir", str(FIXTURES / "flyway"))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["1.10", "2", "2.1"]
    assert_adopted_once(db_url, "app.flyway_schema_history", "flyway")


def test_two_flyway_histories_are_refused_naming_both_until_one_is_chosen(db_url: str) -> None:
    """Two candidate tables: exit 4 naming both, nothing written; MIGRATE_ADOPT_TABLE picks one."""
    flyway_legacy(db_url)
    _flyway_in(db_url, "app")
    folder = FIXTURES / "flyway"

    refused = run(db_url, "migrate", "--dir", str(folder))

    assert refused.returncode == 4, refused.describe()
    assert "app.flyway_schema_history" in refused.error_text()
    assert "public.flyway_schema_history" in refused.error_text()
    assert "MIGRATE_ADOPT_TABLE" in refused.error_text()
    assert not history_exists(db_url)

    chosen = run(db_url, "migrate", "--dir", str(folder), MIGRATE_ADOPT_TABLE="app.flyway_schema_history")

    assert chosen.returncode == 0, chosen.describe()
    assert applied_versions(chosen) == ["1.10", "2", "2.1"]
    assert_adopted_once(db_url, "app.flyway_schema_history", "flyway")


# ---------------------------------------------------------------------------- a shape we cannot read


@pytest.mark.parametrize("column", ["name", "filename"])
def test_tracking_table_of_unknown_shape_is_refused_until_its_column_is_named(
    db_url: str, tmp_path: Path, column: str
) -> None:
    """schema_migrations(id, <name|filename> varchar unique, applied_at): migrate, status and migrate --dry-run
    exit 4 naming the table, its columns and MIGRATE_ADOPT_COLUMN; with it set, adoption works."""
    folder = tmp_path / "migrations"
    write_named(folder, ["001_create_accounts.sql", "002_create_ledger.sql", "003_account_balance.sql"])
    apply_accounts(db_url, 2)
    execute(
        db_url,
        f"CREATE TABLE schema_migrations (id SERIAL PRIMARY KEY, {column} VARCHAR(255) UNIQUE NOT NULL,"
        " applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    )
    execute(
        db_url,
        f"INSERT INTO schema_migrations ({column}, applied_at) VALUES ('001_create_accounts.sql', '2024-03-01 10:00'),"
        " ('002_create_ledger.sql', '2024-03-02 10:00')",
    )
    relations = user_relations(db_url)

    for args in (["migrate"], ["status"], ["migrate", "--dry-run"]):
        result = run(db_url, *args, "--dir", str(folder))
        assert result.returncode == 4, result.describe()
        message = result.error_text()
        assert "public.schema_migrations" in message, message
        assert f"{column} character varying(255)" in message and "applied_at timestamp" in message, message
        assert "MIGRATE_ADOPT_COLUMN" in message, message
        assert applied_versions(result) == []
    assert not history_exists(db_url)
    assert user_relations(db_url) == relations

    adopted = run(db_url, "migrate", "--dir", str(folder), MIGRATE_ADOPT_COLUMN=column)

    assert adopted.returncode == 0, adopted.describe()
    assert applied_versions(adopted) == ["3"]
    assert sources(db_url) == {"1": "adopted:custom", "2": "adopted:custom", "3": "migrate-job"}
    assert history(db_url)["1"]["applied_at"] == datetime(2024, 3, 1, 10, tzinfo=UTC)


def test_legacy_entries_that_name_no_file_are_refused_rather_than_re_applying_everything(
    db_url: str, tmp_path: Path
) -> None:
    """A recognised table none of whose entries names a file (e.g. renamed files) stops with exit 4: re-running
    every migration would be wrong."""
    folder = tmp_path / "migrations"
    write_named(folder, ["001_create_accounts.sql", "002_create_ledger.sql"])
    apply_accounts(db_url, 2)
    execute(db_url, NODE_PG_MIGRATE)
    execute(
        db_url,
        "INSERT INTO pgmigrations (name, run_on)"
        " VALUES ('1600000000000_initial', now()), ('1600000100000_ledger', now())",
    )

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 4, result.describe()
    assert "none of them names a file" in result.error_text() and "public.pgmigrations" in result.error_text()
    assert not history_exists(db_url)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MIGRATE_ADOPT_TABLE": "legacy.nothing_here"}, "MIGRATE_ADOPT_TABLE=legacy.nothing_here: no such table"),
        ({"MIGRATE_ADOPT_COLUMN": "file_name"}, "MIGRATE_ADOPT_COLUMN=file_name: public.pgmigrations has no such"),
        ({"MIGRATE_ADOPT_TABLE": "x;drop"}, "MIGRATE_ADOPT_TABLE"),
    ],
)
def test_adoption_settings_that_do_not_fit_the_database_exit_2(
    db_url: str, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    """A MIGRATE_ADOPT_TABLE that does not exist or a MIGRATE_ADOPT_COLUMN the table lacks: one line, exit 2."""
    folder = tmp_path / "migrations"
    write_named(folder, ["001_create_accounts.sql"])
    execute(db_url, NODE_PG_MIGRATE)

    result = run(db_url, "migrate", "--dir", str(folder), **env)

    assert result.returncode == 2, result.describe()
    assert message in result.error_text()
    assert not history_exists(db_url)
