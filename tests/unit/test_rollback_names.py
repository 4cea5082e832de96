"""Pure tests of job.plan.rollback_plan's `--name`: every way the seeds name a migration, and ambiguity."""

from __future__ import annotations

from pathlib import Path

import pytest

from job.errors import ValidationFailed
from job.plan import Applied, names_of, rollback_plan
from job.source import Migration, load

DOWN = "-- UP\nSELECT 1;\n-- DOWN\nSELECT 2;\n"


def folder(tmp_path: Path, names: list[str]) -> list[Migration]:
    d = tmp_path / "migrations"
    d.mkdir()
    separate_downs = any(n.endswith(("_rollback.sql", ".down.sql")) or n.startswith("U") for n in names)
    for name in names:
        (d / name).write_text("SELECT 1;\n" if separate_downs else DOWN)  # a down section or a down file
    return load(d)


def applied(migrations: list[Migration]) -> list[Applied]:
    return [Applied(m.key, m.name, m.checksum, "applied", batch=1) for m in migrations]


SEED_004 = [
    "20241227_100000_create_users.sql",
    "20241227_100000_create_users_rollback.sql",
    "20250105_090000_add_new_field.sql",
    "20250105_090000_add_new_field_rollback.sql",
]


@pytest.mark.parametrize(
    "name",
    [
        "20250105_090000_add_new_field",
        "20250105_090000_add_new_field.sql",
        "add_new_field",
        "20250105090000",
        "20250105_090000",
        " add_new_field ",
    ],
)
def test_seed_004_names(tmp_path: Path, name: str) -> None:
    """The stem, the file name, the name and the version (stored or as written) all select the same migration."""
    migrations = folder(tmp_path, SEED_004)
    chosen = rollback_plan(migrations, applied(migrations), name=name)
    assert [m.key for m in chosen] == ["20250105090000"]


@pytest.mark.parametrize(
    ("files", "name", "version"),
    [
        (["0003_book_isbn.sql"], "0003", "3"),
        (["0003_book_isbn.sql"], "3", "3"),
        (["1_create_users.up.sql", "1_create_users.down.sql"], "1_create_users", "1"),
        (["1_create_users.up.sql", "1_create_users.down.sql"], "1_create_users.up.sql", "1"),
        (["V1.1__create_categories.sql", "U1.1__create_categories.sql"], "V1.1__create_categories", "1.1"),
        (["V1.1__create_categories.sql", "U1.1__create_categories.sql"], "1.1", "1.1"),
    ],
)
def test_other_layouts(tmp_path: Path, files: list[str], name: str, version: str) -> None:
    """golang-migrate and Flyway stems and versions select their migration too."""
    migrations = folder(tmp_path, files)
    assert [m.key for m in rollback_plan(migrations, applied(migrations), name=name)] == [version]


def test_names_of_a_timestamped_migration(tmp_path: Path) -> None:
    """names_of lists what --name accepts for a migration."""
    [m] = folder(tmp_path, ["20250105_090000_add_new_field.sql"])
    assert names_of(m) >= {
        "20250105090000",
        "20250105_090000",
        "add_new_field",
        "20250105_090000_add_new_field",
        "20250105_090000_add_new_field.sql",
    }


def test_two_migrations_with_the_same_name_are_ambiguous(tmp_path: Path) -> None:
    """A name two applied migrations share is refused, listing both with their versions."""
    migrations = folder(tmp_path, ["0002_add_index.sql", "0005_add_index.sql"])
    with pytest.raises(ValidationFailed) as exc:
        rollback_plan(migrations, applied(migrations), name="add_index")
    assert "2 applied migrations match: 0005_add_index.sql (5), 0002_add_index.sql (2)" in exc.value.message
    assert rollback_plan(migrations, applied(migrations), name="0002_add_index")[0].key == "2"


def test_same_name_once_applied_is_not_ambiguous(tmp_path: Path) -> None:
    """Only applied migrations count: a pending namesake does not make the name ambiguous."""
    migrations = folder(tmp_path, ["0002_add_index.sql", "0005_add_index.sql"])
    chosen = rollback_plan(migrations, applied(migrations[:1]), name="add_index")
    assert [m.key for m in chosen] == ["2"]


def test_unknown_name_is_refused(tmp_path: Path) -> None:
    """A name no applied migration has is refused with one line."""
    migrations = folder(tmp_path, SEED_004)
    with pytest.raises(ValidationFailed, match="no applied migration has that name, file name or version"):
        rollback_plan(migrations, applied(migrations), name="add_old_field")
