"""Switching from another tool: its tracking table is adopted so only truly pending files run.

Each test builds the legacy tracking table with the rows that tool leaves behind, plus the schema
objects of the migrations it already applied, then runs the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.pg import cli
from tests.pg.cli import FIXTURES, applied_versions, execute, history_exists, query
from tests.pg.cli import history_by_version as history
from tests.pg.cli import run_unattended as run

pytestmark = pytest.mark.pg

# ---------------------------------------------------------------------------- helpers


def legacy_rows(db_url: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table))).fetchall()


def user_relations(db_url: str) -> set[str]:
    """User relations other than migrate-job's history table and its index."""
    return cli.user_relations(db_url, without_history=True)


def status_json(db_url: str, folder: Path) -> dict[str, dict[str, Any]]:
    result = run(db_url, "status", "--format", "json", "--dir", str(folder))
    assert result.returncode == 0, result.describe()
    return {str(m["version"]): m for m in json.loads(result.stdout)["migrations"]}


def status_table(db_url: str, folder: Path) -> dict[str, list[str]]:
    """`status` (table) parsed: version -> the cells of its line; the header must have a SOURCE column."""
    result = run(db_url, "status", "--dir", str(folder))
    assert result.returncode == 0, result.describe()
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[-1] == "SOURCE", result.stdout
    return {line.split()[0]: line.split() for line in lines[1:] if line.strip() and "  " in line}


def sources(rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {v: str(r["source"]) for v, r in rows.items()}


# Four small migrations a team might have written; tests name and mark them the way each tool does.
ACCOUNTS: list[tuple[str, str, str]] = [
    (
        "create_accounts",
        "CREATE TABLE accounts (\n    id bigserial PRIMARY KEY,\n    email text NOT NULL UNIQUE\n);",
        "DROP TABLE accounts;",
    ),
    (
        "create_ledger",
        "CREATE TABLE ledger_entries (\n    id bigserial PRIMARY KEY,\n"
        "    account_id bigint NOT NULL REFERENCES accounts (id),\n    amount_cents bigint NOT NULL,\n"
        "    booked_at timestamptz NOT NULL DEFAULT now()\n);",
        "DROP TABLE ledger_entries;",
    ),
    (
        "account_balance",
        "CREATE FUNCTION account_balance(p_account bigint) RETURNS bigint\nLANGUAGE sql STABLE AS $$\n"
        "    SELECT coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries WHERE account_id = p_account;\n$$;",
        "DROP FUNCTION account_balance(bigint);",
    ),
    (
        "ledger_booked_at_index",
        "CREATE INDEX ledger_entries_booked_at_idx ON ledger_entries (booked_at);",
        "DROP INDEX ledger_entries_booked_at_idx;",
    ),
]


def write_accounts(folder: Path, prefixes: list[str], *, dbmate: bool = False) -> list[Path]:
    """The first len(prefixes) ACCOUNTS migrations as `<prefix>_<name>.sql` with UP/DOWN sections."""
    folder.mkdir(parents=True, exist_ok=True)
    up_marker, down_marker = ("-- migrate:up", "-- migrate:down") if dbmate else ("-- UP", "-- DOWN")
    paths = []
    for prefix, (name, up, down) in zip(prefixes, ACCOUNTS, strict=False):
        path = folder / f"{prefix}_{name}.sql"
        path.write_text(f"{up_marker}\n{up}\n\n{down_marker}\n{down}\n", encoding="utf-8")
        paths.append(path)
    return paths


def apply_accounts(db_url: str, count: int) -> None:
    """The schema objects of the first `count` ACCOUNTS migrations, as the previous tool left them."""
    for _, up, _ in ACCOUNTS[:count]:
        execute(db_url, up)


def run_fixture_files(db_url: str, layout: str, names: list[str]) -> None:
    for name in names:
        execute(db_url, (FIXTURES / layout / name).read_text(encoding="utf-8"))


GOLANG_LEGACY = "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)"
GOLANG_APPLIED = ["1_create_users.up.sql", "2_create_teams.up.sql", "3_create_memberships.up.sql"]

FLYWAY_LEGACY = """
CREATE TABLE flyway_schema_history (
    installed_rank integer NOT NULL PRIMARY KEY,
    version        varchar(50),
    description    varchar(200) NOT NULL,
    type           varchar(20) NOT NULL,
    script         varchar(1000) NOT NULL,
    checksum       integer,
    installed_by   varchar(100) NOT NULL,
    installed_on   timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL,
    success        boolean NOT NULL
);
CREATE INDEX flyway_schema_history_s_idx ON flyway_schema_history (success);
"""


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def flyway_crc(path: Path) -> int:
    """Flyway's checksum of a file: CRC32 over its lines without terminators (BOM dropped), signed 32-bit."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    crc = 0
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        crc = zlib.crc32(line, crc)
    return crc - 2**32 if crc >= 2**31 else crc


def flyway_legacy(db_url: str, *, failed_last: bool = False, folder: Path = FIXTURES / "flyway") -> None:
    """A database Flyway baselined at 1 and then migrated to 1.9, with the repeatable view applied.

    The checksums are the ones Flyway stored for the files in `folder` as they were then."""
    run_fixture_files(
        db_url,
        "flyway",
        ["V1__create_products.sql", "V1.1__create_categories.sql", "V1.9__price_history.sql", "R__product_catalog.sql"],
    )
    execute(db_url, FLYWAY_LEGACY)
    execute(
        db_url,
        "INSERT INTO flyway_schema_history"
        " (installed_rank, version, description, type, script, checksum, installed_by, installed_on,"
        "  execution_time, success) VALUES"
        " (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'deploy',"
        "  '2023-01-10 09:00:00', 0, true),"
        " (2, '1.1', 'create categories', 'SQL', 'V1.1__create_categories.sql', %s, 'deploy',"
        "  '2023-02-01 10:00:00', 41, true),"
        " (3, '1.9', 'price history', 'SQL', 'V1.9__price_history.sql', %s, 'deploy',"
        "  '2023-03-01 10:00:00', 57, true),"
        " (4, NULL, 'product catalog', 'SQL', 'R__product_catalog.sql', %s, 'deploy',"
        "  '2023-03-01 10:00:01', 12, true)",
        tuple(
            flyway_crc(folder / name)
            for name in ("V1.1__create_categories.sql", "V1.9__price_history.sql", "R__product_catalog.sql")
        ),
    )
    if failed_last:
        execute(
            db_url,
            "INSERT INTO flyway_schema_history"
            " (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)"
            " VALUES (5, '1.10', 'price history index', 'SQL', 'V1.10__price_history_index.sql', 77, 'deploy',"
            " 3, false)",
        )


# ---------------------------------------------------------------------------- golang-migrate


def test_golang_migrate_version_adopts_every_version_up_to_it(db_url: str) -> None:
    """golang-migrate at version 3 (clean): versions 1-3 are adopted, only 4-10 run, the legacy table is kept."""
    folder = FIXTURES / "golang"
    run_fixture_files(db_url, "golang", GOLANG_APPLIED)
    execute(db_url, GOLANG_LEGACY)
    execute(db_url, "INSERT INTO schema_migrations (version, dirty) VALUES (3, false)")
    legacy_before = legacy_rows(db_url, "schema_migrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == [str(n) for n in range(4, 11)]
    adopted = result.events("history.adopted")
    assert len(adopted) == 1 and adopted[0]["tool"] == "golang-migrate"
    rows = history(db_url)
    assert sources(rows) == {
        **{str(n): "adopted:golang-migrate" for n in range(1, 4)},
        **{str(n): "migrate-job" for n in range(4, 11)},
    }
    assert {r["status"] for r in rows.values()} == {"applied"}
    assert legacy_rows(db_url, "schema_migrations") == legacy_before
    table = status_table(db_url, folder)
    assert [table[str(n)][-1] for n in range(1, 11)] == ["adopted:golang-migrate"] * 3 + ["migrate-job"] * 7
    assert all(table[str(n)][2] == "applied" for n in range(1, 11))
    validate = run(db_url, "validate", "--dir", str(folder))
    assert validate.returncode == 0, validate.describe()
    rerun = run(db_url, "migrate", "--dir", str(folder))
    assert rerun.returncode == 0 and applied_versions(rerun) == [], rerun.describe()


def test_golang_migrate_dirty_version_stops_with_an_explanation(db_url: str) -> None:
    """golang-migrate left version 3 dirty: exit 4 explaining it, nothing applied and nothing recorded."""
    run_fixture_files(db_url, "golang", GOLANG_APPLIED)
    execute(db_url, GOLANG_LEGACY)
    execute(db_url, "INSERT INTO schema_migrations (version, dirty) VALUES (3, true)")
    relations = user_relations(db_url)

    result = run(db_url, "migrate", "--dir", str(FIXTURES / "golang"))

    assert result.returncode == 4, result.describe()
    assert "dirty" in result.output
    assert "public.schema_migrations" in result.output
    assert applied_versions(result) == []
    assert history(db_url) == {}
    assert user_relations(db_url) == relations
    assert legacy_rows(db_url, "schema_migrations") == [(3, True)]


def test_status_before_the_first_migrate_shows_what_would_be_adopted_without_writing(db_url: str) -> None:
    """`status` on a golang-migrate database lists versions 1-3 as adopted and 4-10 pending, creating nothing."""
    folder = FIXTURES / "golang"
    run_fixture_files(db_url, "golang", GOLANG_APPLIED)
    execute(db_url, GOLANG_LEGACY)
    execute(db_url, "INSERT INTO schema_migrations (version, dirty) VALUES (3, false)")

    table = status_table(db_url, folder)
    listed = status_json(db_url, folder)

    assert {v: cells[2] for v, cells in table.items()} == {
        **{str(n): "applied" for n in range(1, 4)},
        **{str(n): "pending" for n in range(4, 11)},
    }
    assert [table[str(n)][-1] for n in range(1, 4)] == ["adopted:golang-migrate"] * 3
    assert {v: (m["state"], m["source"]) for v, m in listed.items()} == {
        **{str(n): ("applied", "adopted:golang-migrate") for n in range(1, 4)},
        **{str(n): ("pending", None) for n in range(4, 11)},
    }
    assert not history_exists(db_url), "status must be read-only"
    assert legacy_rows(db_url, "schema_migrations") == [(3, False)]


# ---------------------------------------------------------------------------- schema_migrations variants


def test_dbmate_versions_are_adopted_one_by_one(db_url: str, tmp_path: Path) -> None:
    """dbmate's schema_migrations(version varchar) rows adopt exactly those timestamped files; the rest run."""
    folder = tmp_path / "db" / "migrations"
    stamps = ["20240105093000", "20240112140000", "20240301081500", "20240302120000"]
    write_accounts(folder, stamps, dbmate=True)
    apply_accounts(db_url, 2)
    execute(db_url, "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
    execute(db_url, "INSERT INTO schema_migrations (version) VALUES ('20240105093000'), ('20240112140000')")
    legacy_before = legacy_rows(db_url, "schema_migrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == stamps[2:]
    assert sources(history(db_url)) == {
        stamps[0]: "adopted:dbmate",
        stamps[1]: "adopted:dbmate",
        stamps[2]: "migrate-job",
        stamps[3]: "migrate-job",
    }
    assert legacy_rows(db_url, "schema_migrations") == legacy_before
    assert {v: cells[-1] for v, cells in status_table(db_url, folder).items()} == sources(history(db_url))


def test_schema_migrations_with_description_and_applied_at_is_adopted_keeping_dates(
    db_url: str, tmp_path: Path
) -> None:
    """schema_migrations(version, description, applied_at) rows are adopted with their original applied_at."""
    folder = tmp_path / "migrations"
    write_accounts(folder, ["0001", "0002", "0003", "0004"])
    apply_accounts(db_url, 3)
    execute(
        db_url,
        "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, description text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())",
    )
    execute(
        db_url,
        "INSERT INTO schema_migrations VALUES (1, 'create accounts', '2023-05-01 10:00:00+00'),"
        " (2, 'create ledger', '2023-05-08 10:00:00+00'), (3, 'account balance', '2023-06-01 10:00:00+00')",
    )
    legacy_before = legacy_rows(db_url, "schema_migrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["4"]
    rows = history(db_url)
    assert sources(rows) == {"1": "adopted:generic", "2": "adopted:generic", "3": "adopted:generic", "4": "migrate-job"}
    assert rows["1"]["applied_at"] == datetime(2023, 5, 1, 10, tzinfo=UTC)
    assert rows["3"]["applied_at"] == datetime(2023, 6, 1, 10, tzinfo=UTC)
    assert legacy_rows(db_url, "schema_migrations") == legacy_before
    assert {v: cells[-1] for v, cells in status_table(db_url, folder).items()} == sources(rows)


SEED_000_INIT = """
CREATE TABLE schema_migrations (
    version integer PRIMARY KEY,
    description varchar(255),
    applied_at timestamptz DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO schema_migrations (version, description) VALUES (1, 'Initial schema');
"""


def test_a_database_created_by_init_sql_with_version_1_and_no_file_1_migrates(db_url: str, tmp_path: Path) -> None:
    """Seed 000: `init.sql` builds a new database and records version 1 (no `001_*.sql` in the folder): the
    folder's 002… are all pending, and status, migrate and a second migrate work without any setting."""
    folder = tmp_path / "migrations"
    write_accounts(folder, ["002", "003", "004"])
    execute(db_url, SEED_000_INIT)
    legacy_before = legacy_rows(db_url, "schema_migrations")

    assert {v: r["state"] for v, r in status_json(db_url, folder).items()} == {
        "2": "pending",
        "3": "pending",
        "4": "pending",
    }
    result = run(db_url, "migrate", "--dir", str(folder))
    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["2", "3", "4"]
    assert run(db_url, "migrate", "--dir", str(folder)).returncode == 0
    assert sorted(history(db_url)) == ["2", "3", "4"]
    assert legacy_rows(db_url, "schema_migrations") == legacy_before


@pytest.mark.parametrize(
    ("prefixes", "rows"),
    [
        pytest.param(["002", "004"], "(3, 'gone')", id="inside the folder's range"),
        pytest.param(
            ["20240101120000", "20240102120000"],
            "(1, 'create accounts'), (2, 'create ledger')",
            id="the same migrations renumbered as timestamps",
        ),
    ],
)
def test_legacy_versions_that_match_nothing_are_still_refused_unless_just_below_the_folder(
    db_url: str, tmp_path: Path, prefixes: list[str], rows: str
) -> None:
    """Only versions ending right below the folder's first file count as the database's initial schema: a
    legacy version inside the folder's range that names no file (a renamed or deleted file), or versions far
    below it (files renumbered as timestamps), still stop the switch (exit 4): nothing is re-applied."""
    folder = tmp_path / "migrations"
    write_accounts(folder, prefixes)
    execute(db_url, SEED_000_INIT.replace("(1, 'Initial schema')", rows))
    result = run(db_url, "migrate", "--dir", str(folder))
    assert result.returncode == 4, result.describe()
    assert "none of them names a file" in result.error_text(), result.describe()
    assert not history_exists(db_url)


def test_schema_migrations_naming_files_is_adopted_with_and_without_extension(db_url: str, tmp_path: Path) -> None:
    """schema_migrations(migration_name, checksum, applied_at) names files with or without .sql; both adopt.

    Its checksum column holds the SHA-256 (or MD5) of each file, as the seed's migration_manager.py writes it."""
    folder = tmp_path / "migrations"
    write_accounts(folder, ["0001", "0002", "0003", "0004"])
    apply_accounts(db_url, 2)
    execute(
        db_url,
        "CREATE TABLE schema_migrations (migration_name text PRIMARY KEY, checksum text,"
        " applied_at timestamptz NOT NULL DEFAULT now())",
    )
    execute(
        db_url,
        "INSERT INTO schema_migrations VALUES ('0001_create_accounts.sql', %s, '2023-05-01 10:00:00+00'),"
        " ('0002_create_ledger', %s, '2023-05-02 10:00:00+00')",
        (cli.sha256(folder / "0001_create_accounts.sql"), md5(folder / "0002_create_ledger.sql")),
    )
    legacy_before = legacy_rows(db_url, "schema_migrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["3", "4"]
    rows = history(db_url)
    assert sources(rows) == {"1": "adopted:named", "2": "adopted:named", "3": "migrate-job", "4": "migrate-job"}
    assert legacy_rows(db_url, "schema_migrations") == legacy_before
    assert {v: cells[-1] for v, cells in status_table(db_url, folder).items()} == sources(rows)


# ---------------------------------------------------------------------------- batches


def _batches_legacy(db_url: str, folder: Path, files: int) -> None:
    """Three migrations applied by a batch-based tool: 0001+0002 in batch 1, 0003 in batch 2."""
    write_accounts(folder, ["0001", "0002", "0003", "0004"][:files])
    apply_accounts(db_url, 3)
    execute(
        db_url,
        "CREATE TABLE _migrations (id serial PRIMARY KEY, name text NOT NULL, batch integer NOT NULL,"
        " executed_at timestamptz NOT NULL DEFAULT now())",
    )
    execute(
        db_url,
        "INSERT INTO _migrations (name, batch, executed_at) VALUES"
        " ('0001_create_accounts.sql', 1, '2023-09-01 08:00:00+00'),"
        " ('0002_create_ledger.sql', 1, '2023-09-01 08:00:01+00'),"
        " ('0003_account_balance', 2, '2023-10-15 08:00:00+00')",
    )


def test_batches_are_kept_so_rollback_undoes_the_legacy_last_batch(db_url: str, tmp_path: Path) -> None:
    """_migrations batches are adopted as batches: with nothing new, `rollback` undoes exactly legacy batch 2."""
    folder = tmp_path / "migrations"
    _batches_legacy(db_url, folder, files=3)
    legacy_before = legacy_rows(db_url, "_migrations")

    adopt = run(db_url, "migrate", "--dir", str(folder))

    assert adopt.returncode == 0, adopt.describe()
    assert applied_versions(adopt) == []
    rows = history(db_url)
    assert {v: (r["source"], r["batch"]) for v, r in rows.items()} == {
        "1": ("adopted:batches", 1),
        "2": ("adopted:batches", 1),
        "3": ("adopted:batches", 2),
    }
    assert {v: cells[-1] for v, cells in status_table(db_url, folder).items()} == sources(rows)

    rollback = run(db_url, "rollback", "--dir", str(folder))

    assert rollback.returncode == 0, rollback.describe()
    assert [e["version"] for e in rollback.events("migration.rolled_back")] == ["3"]
    assert sorted(history(db_url)) == ["1", "2"]
    assert query(db_url, "SELECT to_regprocedure('account_balance(bigint)') IS NULL")[0][0]
    assert {"public.accounts", "public.ledger_entries"} <= user_relations(db_url)
    assert legacy_rows(db_url, "_migrations") == legacy_before


def test_new_migrations_after_adopting_batches_form_their_own_batch(db_url: str, tmp_path: Path) -> None:
    """After adoption a migrate run is a new batch: rollback undoes it first, the next rollback legacy batch 2."""
    folder = tmp_path / "migrations"
    _batches_legacy(db_url, folder, files=4)
    legacy_before = legacy_rows(db_url, "_migrations")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["4"]
    rows = history(db_url)
    assert {v: (r["source"], r["batch"]) for v, r in rows.items()} == {
        "1": ("adopted:batches", 1),
        "2": ("adopted:batches", 1),
        "3": ("adopted:batches", 2),
        "4": ("migrate-job", 3),
    }

    first = run(db_url, "rollback", "--dir", str(folder))
    assert first.returncode == 0, first.describe()
    assert [e["version"] for e in first.events("migration.rolled_back")] == ["4"]
    assert sorted(history(db_url)) == ["1", "2", "3"]

    second = run(db_url, "rollback", "--dir", str(folder))
    assert second.returncode == 0, second.describe()
    assert [e["version"] for e in second.events("migration.rolled_back")] == ["3"]
    assert sorted(history(db_url)) == ["1", "2"]
    assert legacy_rows(db_url, "_migrations") == legacy_before


# ---------------------------------------------------------------------------- Flyway


def test_flyway_history_with_baseline_and_repeatable_is_adopted(db_url: str) -> None:
    """flyway_schema_history (baseline 1, 1.1, 1.9, R__) is adopted; only 1.10, 2 and 2.1 run, the view stays."""
    folder = FIXTURES / "flyway"
    flyway_legacy(db_url)
    legacy_before = legacy_rows(db_url, "flyway_schema_history")

    result = run(db_url, "migrate", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ["1.10", "2", "2.1"]
    rows = history(db_url)
    assert sources(rows) == {
        "1": "adopted:flyway",
        "1.1": "adopted:flyway",
        "1.9": "adopted:flyway",
        "R__product_catalog": "adopted:flyway",
        "1.10": "migrate-job",
        "2": "migrate-job",
        "2.1": "migrate-job",
    }
    assert rows["1.1"]["applied_at"] is not None
    assert legacy_rows(db_url, "flyway_schema_history") == legacy_before
    assert query(db_url, "SELECT to_regclass('product_catalog') IS NOT NULL")[0][0]
    table = status_table(db_url, folder)
    assert {v: cells[-1] for v, cells in table.items()} == sources(rows)
    rerun = run(db_url, "migrate", "--dir", str(folder))
    assert rerun.returncode == 0 and applied_versions(rerun) == [], rerun.describe()


def test_flyway_failed_migration_stops_the_switch(db_url: str) -> None:
    """A flyway_schema_history row with success = false: exit 4 naming it, nothing applied or recorded."""
    flyway_legacy(db_url, failed_last=True)
    relations = user_relations(db_url)

    result = run(db_url, "migrate", "--dir", str(FIXTURES / "flyway"))

    assert result.returncode == 4, result.describe()
    assert "V1.10__price_history_index.sql" in result.output
    assert "failed" in result.output
    assert applied_versions(result) == []
    assert history(db_url) == {}
    assert user_relations(db_url) == relations
