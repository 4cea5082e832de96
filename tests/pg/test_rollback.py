"""Going back: rollback/reset/refresh, the production guard on them, baselines and the schema file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import cli
from tests.pg.cli import Result, execute, query, raw_schema_dump, schema_dump, user_relations
from tests.pg.cli import applied_versions as applied
from tests.pg.cli import history_by_version as history
from tests.pg.cli import migrate_unattended as migrate
from tests.pg.cli import run_unattended as run
from tests.pgutil import PgServer, new_database

pytestmark = pytest.mark.pg

# ---------------------------------------------------------------------------- helpers


def snapshot(db_url: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """Schema and history, to show that a command changed nothing."""
    return schema_dump(db_url), history(db_url)


def rolled_back(result: Result) -> list[str]:
    return [str(e["version"]) for e in result.events("migration.rolled_back")]


@pytest.fixture
def other_db_url(pg_server: PgServer) -> Iterator[str]:
    """A second empty database on the same server (to build reference schemas)."""
    with new_database(pg_server) as url:
        yield url


# A small library schema in five migrations with UP/DOWN sections.
LIBRARY: list[tuple[str, str, str]] = [
    (
        "0001_create_authors.sql",
        "CREATE TABLE authors (\n    id bigserial PRIMARY KEY,\n    name text NOT NULL\n);",
        "DROP TABLE authors;",
    ),
    (
        "0002_create_books.sql",
        "CREATE TABLE books (\n    id bigserial PRIMARY KEY,\n"
        "    author_id bigint NOT NULL REFERENCES authors (id),\n    title text NOT NULL\n);\n"
        "CREATE INDEX books_author_id_idx ON books (author_id);",
        "DROP TABLE books;",
    ),
    (
        "0003_book_isbn.sql",
        "ALTER TABLE books ADD COLUMN isbn text;\nALTER TABLE books ADD CONSTRAINT books_isbn_key UNIQUE (isbn);",
        "ALTER TABLE books DROP COLUMN isbn;",
    ),
    (
        "0004_create_reviews.sql",
        "CREATE TABLE reviews (\n    id bigserial PRIMARY KEY,\n"
        "    book_id bigint NOT NULL REFERENCES books (id) ON DELETE CASCADE,\n"
        "    stars smallint NOT NULL CHECK (stars BETWEEN 1 AND 5)\n);",
        "DROP TABLE reviews;",
    ),
    (
        "0005_book_ratings_view.sql",
        "CREATE VIEW book_ratings AS\nSELECT b.id AS book_id, b.title, avg(r.stars) AS rating, count(r.id) AS reviews\n"
        "  FROM books b LEFT JOIN reviews r ON r.book_id = b.id\n GROUP BY b.id, b.title;",
        "DROP VIEW book_ratings;",
    ),
]
NO_DOWN = ""


def write_library(folder: Path, *, downs: dict[str, str] | None = None, count: int = 5) -> Path:
    """The LIBRARY migrations in `folder`; `downs` replaces DOWN sections by file name ("" = no DOWN)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, up, down in LIBRARY[:count]:
        down = (downs or {}).get(name, down)
        text = f"-- UP\n{up}\n" + (f"\n-- DOWN\n{down}\n" if down else "")
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def schema_of_first_three() -> str:
    """A squashed schema file covering migrations 1-3, as a team would hand-write it."""
    return "-- migrate-job: baseline 3\n-- Squashed schema of migrations 0001-0003.\n\n" + "\n\n".join(
        up for _, up, _ in LIBRARY[:3]
    )


# ---------------------------------------------------------------------------- rollback selections


def test_rollback_undoes_only_the_last_migrate_run(db_url: str, tmp_path: Path) -> None:
    """Two migrate runs (--target 2, then the rest): `rollback` undoes only the second run's migrations."""
    folder = write_library(tmp_path / "migrations")
    first = migrate(db_url, folder, "--target", "2")
    assert first.returncode == 0, first.describe()
    after_first = schema_dump(db_url)
    second = migrate(db_url, folder)
    assert second.returncode == 0, second.describe()
    assert {v: r["batch"] for v, r in history(db_url).items()} == {"1": 1, "2": 1, "3": 2, "4": 2, "5": 2}

    result = run(db_url, "rollback", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["5", "4", "3"]
    assert sorted(history(db_url)) == ["1", "2"]
    assert schema_dump(db_url) == after_first


def test_rollback_steps_undoes_the_last_n_migrations(db_url: str, tmp_path: Path) -> None:
    """`rollback --steps 2` undoes the two newest migrations, whatever batch they were in."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder, "--target", "3").returncode == 0
    after_three = schema_dump(db_url)
    assert migrate(db_url, folder).returncode == 0

    result = run(db_url, "rollback", "--steps", "2", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["5", "4"]
    assert sorted(history(db_url)) == ["1", "2", "3"]
    assert schema_dump(db_url) == after_three


def test_rollback_to_version_undoes_everything_above_it(db_url: str, tmp_path: Path) -> None:
    """`rollback --to 2` undoes every migration above version 2, newest first."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder, "--target", "2").returncode == 0
    after_two = schema_dump(db_url)
    assert migrate(db_url, folder).returncode == 0

    result = run(db_url, "rollback", "--to", "2", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["5", "4", "3"]
    assert sorted(history(db_url)) == ["1", "2"]
    assert schema_dump(db_url) == after_two


@pytest.mark.parametrize("name", ["book_isbn", "0003_book_isbn.sql", "3"])
def test_rollback_name_undoes_just_that_migration(db_url: str, tmp_path: Path, name: str) -> None:
    """`rollback --name` (migration name, file name or version) undoes that one migration and nothing else."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder).returncode == 0

    result = run(db_url, "rollback", "--name", name, "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["3"]
    assert sorted(history(db_url)) == ["1", "2", "4", "5"]
    columns = query(db_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'books'")
    assert "isbn" not in {c[0] for c in columns}
    status = run(db_url, "status", "--format", "json", "--dir", str(folder))
    assert status.returncode == 0, status.describe()
    states = {m["version"]: m["state"] for m in json.loads(status.stdout)["migrations"]}
    assert states == {"1": "applied", "2": "applied", "3": "pending", "4": "applied", "5": "applied"}


def test_a_migration_rolled_back_by_name_is_reapplied_by_the_next_migrate(db_url: str, tmp_path: Path) -> None:
    """After `rollback --name 3` with 4 and 5 still applied, validate, `migrate --dry-run` and `migrate` re-apply
    3 without --allow-out-of-order (the user took it back to fix it); a new file below the highest applied
    version is still out of order."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder).returncode == 0
    assert run(db_url, "rollback", "--name", "3", "--dir", str(folder)).returncode == 0

    assert run(db_url, "validate", "--dir", str(folder)).returncode == 0
    dry = run(db_url, "migrate", "--dry-run", "--dir", str(folder))
    assert dry.returncode == 0 and "-- 3 book_isbn" in dry.stdout, dry.describe()
    result = migrate(db_url, folder)
    assert result.returncode == 0, result.describe()
    assert applied(result) == ["3"]
    (event,) = result.events("plan.reapplying")
    assert event["versions"] == ["3"]
    assert sorted(history(db_url)) == ["1", "2", "3", "4", "5"]

    (folder / "0000_early.sql").write_text("CREATE TABLE early (id int);\n", encoding="utf-8")  # never applied
    late = migrate(db_url, folder)
    assert late.returncode == 4, late.describe()
    assert "is pending but 5 is already applied" in late.stdout, late.describe()


def test_rollback_of_an_edited_migration_runs_but_warns(db_url: str, tmp_path: Path) -> None:
    """A file edited after it was applied is still rolled back (an emergency must not be blocked), with one
    `rollback.edited` warning naming it; validate keeps reporting the edit."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder).returncode == 0
    path = folder / "0005_book_ratings_view.sql"
    path.write_text(path.read_text(encoding="utf-8") + "\n-- reviewed\n", encoding="utf-8")
    assert run(db_url, "validate", "--dir", str(folder)).returncode == 4

    result = run(db_url, "rollback", "--steps", "1", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["5"]
    (warning,) = result.events("rollback.edited")
    assert (warning["version"], warning["file"], warning["level"]) == ("5", str(path), "warning")


def test_reset_rolls_back_everything(db_url: str, tmp_path: Path) -> None:
    """`reset` runs every down, newest first; only the (empty) history table and its audit table remain."""
    folder = write_library(tmp_path / "migrations")
    empty = schema_dump(db_url)
    assert migrate(db_url, folder, "--target", "2").returncode == 0
    assert migrate(db_url, folder).returncode == 0

    result = run(db_url, "reset", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["5", "4", "3", "2", "1"]
    assert history(db_url) == {}
    assert user_relations(db_url) == cli.OWN_RELATIONS
    assert schema_dump(db_url) == empty


def test_refresh_rebuilds_the_same_schema(db_url: str, tmp_path: Path) -> None:
    """`refresh` rolls everything back and re-applies it; the schema ends up exactly as before."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder).returncode == 0
    before = schema_dump(db_url)

    result = run(db_url, "refresh", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    assert rolled_back(result) == ["5", "4", "3", "2", "1"]
    assert applied(result) == ["1", "2", "3", "4", "5"]
    assert sorted(history(db_url)) == ["1", "2", "3", "4", "5"]
    assert {r["status"] for r in history(db_url).values()} == {"applied"}
    assert schema_dump(db_url) == before


# ---------------------------------------------------------------------------- failures


def test_failing_down_stops_with_that_migration_still_applied(db_url: str, tmp_path: Path) -> None:
    """A down that fails exits 1: it is rolled back and stays applied; the ones already undone stay undone."""
    downs = {"0004_create_reviews.sql": "DROP TABLE reviews;\nDROP TABLE review_votes;"}
    folder = write_library(tmp_path / "migrations", downs=downs)
    assert migrate(db_url, folder).returncode == 0

    result = run(db_url, "rollback", "--steps", "3", "--dir", str(folder))

    assert result.returncode == 1, result.describe()
    assert rolled_back(result) == ["5"]
    assert "0004_create_reviews.sql" in result.output
    assert "review_votes" in result.output
    rows = history(db_url)
    assert sorted(rows) == ["1", "2", "3", "4"]
    assert rows["4"]["status"] == "applied"
    relations = user_relations(db_url)
    assert "public.reviews" in relations, "the failed down's first statement must have been rolled back"
    assert "public.book_ratings" not in relations
    columns = query(db_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'books'")
    assert "isbn" in {c[0] for c in columns}


@pytest.mark.parametrize("command", [["rollback", "--steps", "3"], ["reset"], ["rollback", "--to", "1"]])
def test_selection_with_a_migration_without_down_changes_nothing(
    db_url: str, tmp_path: Path, command: list[str]
) -> None:
    """When a selected migration has no down, exit 4 naming its file, before anything is rolled back."""
    folder = write_library(tmp_path / "migrations", downs={"0003_book_isbn.sql": NO_DOWN})
    assert migrate(db_url, folder).returncode == 0
    before = snapshot(db_url)

    result = run(db_url, *command, "--dir", str(folder))

    assert result.returncode == 4, result.describe()
    assert "0003_book_isbn.sql" in result.output
    assert "no down" in result.output
    assert rolled_back(result) == []
    assert snapshot(db_url) == before


# ---------------------------------------------------------------------------- dry runs and the production guard


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["rollback", "--dry-run"], ["-- roll back 3 book_isbn", "ALTER TABLE books DROP COLUMN isbn;"]),
        (["reset", "--dry-run"], ["-- roll back 3 book_isbn", "-- roll back 1 create_authors", "DROP TABLE authors;"]),
        (["baseline", "--version", "5", "--dry-run"], ["would record 4 create_reviews", "would record 5"]),
    ],
)
def test_dry_run_prints_what_would_happen_and_changes_nothing(
    db_url: str, tmp_path: Path, command: list[str], expected: list[str]
) -> None:
    """`--dry-run` of rollback, reset and baseline prints the plan and leaves schema and history untouched."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder, "--target", "3").returncode == 0
    before = snapshot(db_url)

    result = run(db_url, *command, "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    for text in expected:
        assert text in result.stdout, result.describe()
    assert snapshot(db_url) == before


# The test server has no TLS (production defaults to sslmode=verify-full) and no backup target.
PRODUCTION = {"MIGRATE_ENV": "production", "MIGRATE_SSLMODE": "disable", "MIGRATE_BACKUP": "none"}
DESTRUCTIVE = [["rollback"], ["rollback", "--steps", "1"], ["reset"], ["refresh"], ["baseline", "--version", "5"]]


@pytest.mark.parametrize("command", DESTRUCTIVE)
def test_production_guard_refuses_destructive_commands_without_confirmation(
    db_url: str, tmp_path: Path, command: list[str]
) -> None:
    """With MIGRATE_ENV=production and no confirmation, destructive commands exit 7 and change nothing."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder, "--target", "3").returncode == 0
    before = snapshot(db_url)

    result = run(db_url, *command, "--dir", str(folder), **PRODUCTION)

    assert result.returncode == 7, result.describe()
    assert "production guard" in result.output
    assert snapshot(db_url) == before


@pytest.mark.parametrize(
    ("command", "confirm_flag", "confirm_env", "left"),
    [
        (["rollback"], ["--yes"], {}, []),
        (["reset"], [], {"MIGRATE_CONFIRM_PRODUCTION": "yes"}, []),
        (["refresh"], ["--yes"], {}, ["1", "2", "3", "4", "5"]),
        (["baseline", "--version", "5"], [], {"MIGRATE_CONFIRM_PRODUCTION": "yes"}, ["1", "2", "3", "4", "5"]),
    ],
)
def test_production_guard_proceeds_when_confirmed(
    db_url: str,
    tmp_path: Path,
    command: list[str],
    confirm_flag: list[str],
    confirm_env: dict[str, str],
    left: list[str],
) -> None:
    """With MIGRATE_ENV=production, `--yes` or MIGRATE_CONFIRM_PRODUCTION=yes lets the command proceed."""
    folder = write_library(tmp_path / "migrations")
    assert migrate(db_url, folder, "--target", "3").returncode == 0

    result = run(db_url, *command, *confirm_flag, "--dir", str(folder), **PRODUCTION, **confirm_env)

    assert result.returncode == 0, result.describe()
    assert sorted(history(db_url)) == left


# ---------------------------------------------------------------------------- baselines and the schema file


def test_baseline_records_existing_schema_then_migrate_applies_the_rest(db_url: str, tmp_path: Path) -> None:
    """`baseline --version 3` on a database that has that schema records 1-3 (source baseline); migrate runs 4+."""
    folder = write_library(tmp_path / "migrations")
    for _, up, _ in LIBRARY[:3]:
        execute(db_url, up)

    result = run(db_url, "baseline", "--version", "3", "--dir", str(folder))

    assert result.returncode == 0, result.describe()
    rows = history(db_url)
    assert {v: (r["source"], r["status"]) for v, r in rows.items()} == {
        v: ("baseline", "applied") for v in ("1", "2", "3")
    }

    after = migrate(db_url, folder)

    assert after.returncode == 0, after.describe()
    assert applied(after) == ["4", "5"]
    assert {v: r["source"] for v, r in history(db_url).items()} == {
        "1": "baseline",
        "2": "baseline",
        "3": "baseline",
        "4": "migrate-job",
        "5": "migrate-job",
    }


def test_schema_file_is_loaded_on_an_empty_database(db_url: str, other_db_url: str, tmp_path: Path) -> None:
    """On an empty database schema.sql is loaded, 1-3 recorded (source schema), 4-5 applied: same schema as 1-5."""
    folder = write_library(tmp_path / "migrations")
    (folder / "schema.sql").write_text(schema_of_first_three(), encoding="utf-8")
    reference = write_library(tmp_path / "reference")
    assert migrate(other_db_url, reference).returncode == 0

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    assert len(result.events("schema.loaded")) == 1
    assert applied(result) == ["4", "5"]
    assert {v: r["source"] for v, r in history(db_url).items()} == {
        "1": "schema",
        "2": "schema",
        "3": "schema",
        "4": "migrate-job",
        "5": "migrate-job",
    }
    assert schema_dump(db_url) == schema_dump(other_db_url)
    rerun = migrate(db_url, folder)
    assert rerun.returncode == 0 and applied(rerun) == [], rerun.describe()


def test_schema_file_is_ignored_on_a_database_that_has_tables(db_url: str, tmp_path: Path) -> None:
    """On a database that already has a table, schema.sql is ignored: migrate refuses the unrecorded table
    (exit 4); with MIGRATE_ALLOW_NON_EMPTY migrations 1-5 run normally."""
    folder = write_library(tmp_path / "migrations")
    (folder / "schema.sql").write_text(schema_of_first_three(), encoding="utf-8")
    execute(db_url, "CREATE TABLE app_settings (key text PRIMARY KEY, value text NOT NULL)")
    refused = migrate(db_url, folder)
    assert refused.returncode == 4 and "already has tables (app_settings)" in refused.stdout, refused.describe()

    result = migrate(db_url, folder, MIGRATE_ALLOW_NON_EMPTY="true")

    assert result.returncode == 0, result.describe()
    assert result.events("schema.loaded") == []
    assert len(result.events("schema.ignored")) == 1
    assert applied(result) == ["1", "2", "3", "4", "5"]
    assert {r["source"] for r in history(db_url).values()} == {"migrate-job"}


def test_schema_file_from_pg_dump_does_not_break_later_migrations(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    """A real `pg_dump --schema-only` as schema.sql (it empties search_path) loads; later unqualified names work."""
    reference = write_library(tmp_path / "reference")
    assert migrate(other_db_url, reference, "--target", "3").returncode == 0
    dumped = raw_schema_dump(other_db_url)
    assert "set_config('search_path', '', false)" in dumped
    folder = write_library(tmp_path / "migrations")
    (folder / "schema.sql").write_text("-- migrate-job: baseline 3\n" + dumped, encoding="utf-8")

    result = migrate(db_url, folder)

    assert result.returncode == 0, result.describe()
    assert len(result.events("schema.loaded")) == 1
    assert applied(result) == ["4", "5"]
    assert {v: r["source"] for v, r in history(db_url).items()}["3"] == "schema"
    assert {"public.reviews", "public.book_ratings"} <= user_relations(db_url)
    assert migrate(other_db_url, reference).returncode == 0
    assert schema_dump(db_url) == schema_dump(other_db_url)
