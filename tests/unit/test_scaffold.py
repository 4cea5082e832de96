"""Pure tests of job.scaffold: the files `create` writes in each kind of folder, and untouched templates."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from job import scaffold
from job.source import load

NOW = datetime(2025, 1, 5, 9, 0, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "layouts"

UP_DOWN = "-- UP\nSELECT 1;\n-- DOWN\nSELECT 2;\n"
PLAIN = "SELECT 1;\n"


def folder_of(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def planned(
    tmp_path: Path,
    files: dict[str, str],
    *,
    layout: str = "auto",
    style: str | None = None,
    version_style: str | None = None,
) -> list[scaffold.NewFile]:
    """The files `create add_email` would write in a folder holding `files`."""
    folder = folder_of(tmp_path, files)
    migrations = load(folder, layout=layout)
    families = {m.layout for m in migrations} or ({layout} if layout != "auto" else set())
    conv = scaffold.with_options(
        scaffold.convention(migrations, layout), families, style=style, version_style=version_style
    )
    return scaffold.new_files(folder, "add email", conv, scaffold.next_version(migrations, conv, NOW), NOW)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, ["0001_add_email.sql"]),
        ({"001_a.sql": PLAIN, "002_b.sql": PLAIN}, ["003_add_email.sql"]),
        ({"1_a.sql": PLAIN, "9_b.sql": PLAIN}, ["10_add_email.sql"]),
        ({"0007_a.sql": UP_DOWN}, ["0008_add_email.sql"]),
        ({"0001-a.sql": PLAIN}, ["0002-add-email.sql"]),
        ({"20240101120000_a.sql": UP_DOWN}, ["20250105090000_add_email.sql"]),
        ({"202401011200_a.sql": UP_DOWN}, ["202501050900_add_email.sql"]),
        (
            {"20240101_120000_a.sql": PLAIN, "20240101_120000_a_rollback.sql": PLAIN},
            ["20250105_090000_add_email.sql", "20250105_090000_add_email_rollback.sql"],
        ),
        (
            {"0001_a.sql": PLAIN, "0001_a_rollback.sql": PLAIN, "20240101_120000_b.sql": PLAIN},
            ["20250105_090000_add_email.sql", "20250105_090000_add_email_rollback.sql"],
        ),
        ({"0001_a.sql": PLAIN, "0001_a_rollback.sql": PLAIN}, ["0002_add_email.sql", "0002_add_email_rollback.sql"]),
        ({"0001_a.sql": PLAIN, "0001_a.rollback.sql": PLAIN}, ["0002_add_email.sql", "0002_add_email.rollback.sql"]),
        ({"1_a.up.sql": PLAIN, "1_a.down.sql": PLAIN}, ["2_add_email.up.sql", "2_add_email.down.sql"]),
        ({"000003_a.up.sql": PLAIN}, ["000004_add_email.up.sql", "000004_add_email.down.sql"]),
        (
            {"1500360784_a.up.sql": PLAIN},
            [f"{int(NOW.timestamp())}_add_email.up.sql", f"{int(NOW.timestamp())}_add_email.down.sql"],
        ),
        ({"V1__a.sql": PLAIN, "V1.1__b.sql": PLAIN}, ["V2__add_email.sql"]),
        ({"V1__a.sql": PLAIN, "U1__a.sql": PLAIN}, ["V2__add_email.sql", "U2__add_email.sql"]),
        ({"V20240101120000__a.sql": PLAIN}, ["V20250105090000__add_email.sql"]),
        ({"20990101120000_future.sql": UP_DOWN}, ["20990101120001_add_email.sql"]),  # the clock is behind
        ({"20991231_235959_future.sql": PLAIN}, ["21000101_000000_add_email.sql"]),
    ],
    ids=lambda v: "+".join(v) if isinstance(v, dict) and v else None,
)
def test_new_file_names_follow_the_folder(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    """`create` continues the folder's version style (width, timestamp format) and its up/down file layout."""
    assert [f.path.name for f in planned(tmp_path, files)] == expected


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("numbered", ["0001_add_email.sql"]),
        ("golang", ["000001_add_email.up.sql", "000001_add_email.down.sql"]),
        ("flyway", ["V1__add_email.sql"]),
    ],
)
def test_empty_folder_gets_the_documented_default(tmp_path: Path, layout: str, expected: list[str]) -> None:
    """An empty folder asks nothing: 0001 with markers; MIGRATE_FORMAT=golang / flyway gets their usual first file."""
    assert [f.path.name for f in planned(tmp_path, {}, layout=layout)] == expected


@pytest.mark.parametrize(
    ("files", "style", "version_style", "expected"),
    [
        ({"001_a.sql": UP_DOWN}, None, "timestamp", ["20250105090000_add_email.sql"]),
        ({"20240101_120000_a.sql": PLAIN}, None, "timestamp", ["20250105_090000_add_email.sql"]),
        ({"20240101120000_a.sql": PLAIN}, None, "sequential", ["20240101120001_add_email.sql"]),
        ({}, None, "timestamp", ["20250105090000_add_email.sql"]),
        ({"001_a.sql": UP_DOWN}, "rollback", None, ["002_add_email.sql", "002_add_email_rollback.sql"]),
        ({"001_a.sql": PLAIN, "001_a_rollback.sql": PLAIN}, "markers", None, ["002_add_email.sql"]),
        ({"001_a.sql": UP_DOWN}, "dbmate", None, ["002_add_email.sql"]),
        ({}, "updown", None, ["000001_add_email.up.sql", "000001_add_email.down.sql"]),
        ({}, "flyway", None, ["V1__add_email.sql"]),
        ({}, "rollback", "timestamp", ["20250105090000_add_email.sql", "20250105090000_add_email_rollback.sql"]),
        (
            {"1_a.up.sql": PLAIN},
            "updown",
            "timestamp",
            ["20250105090000_add_email.up.sql", "20250105090000_add_email.down.sql"],
        ),
    ],
)
def test_options_override_the_folder(
    tmp_path: Path, files: dict[str, str], style: str | None, version_style: str | None, expected: list[str]
) -> None:
    """--timestamp / --sequential and --style replace what the folder would choose."""
    made = planned(tmp_path, files, style=style, version_style=version_style)
    assert [f.path.name for f in made] == expected


@pytest.mark.parametrize(
    ("files", "style"),
    [
        ({"001_a.sql": PLAIN}, "updown"),
        ({"001_a.sql": PLAIN}, "flyway"),
        ({"1_a.up.sql": PLAIN}, "markers"),
        ({"V1__a.sql": PLAIN}, "rollback"),
    ],
)
def test_style_that_would_mix_layouts_is_refused(tmp_path: Path, files: dict[str, str], style: str) -> None:
    """A --style whose files would sit next to another layout's (a mixed folder) is refused, saying why."""
    with pytest.raises(scaffold.ScaffoldError, match="mixed folder"):
        planned(tmp_path, files, style=style)


@pytest.mark.parametrize(
    ("text", "markers"),
    [
        (UP_DOWN, ("-- UP", "-- DOWN")),
        ("-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n", ("-- migrate:up", "-- migrate:down")),
        ("-- +migrate Up\nSELECT 1;\n-- +migrate Down\nSELECT 2;\n", ("-- +migrate Up", "-- +migrate Down")),
    ],
)
def test_marker_flavour_of_the_folder_is_kept(tmp_path: Path, text: str, markers: tuple[str, str]) -> None:
    """A folder written with dbmate's or sql-migrate's markers gets new files with the same markers."""
    [made] = planned(tmp_path, {"0001_a.sql": text})
    up, down = markers
    assert f"\n{up}\n" in made.text and f"\n{down}\n" in made.text
    assert made.text.index(up) < made.text.index(down)


def test_unusable_name_is_refused(tmp_path: Path) -> None:
    """A name with no letters or digits cannot become a file name."""
    folder = folder_of(tmp_path, {})
    conv = scaffold.convention([])
    with pytest.raises(scaffold.ScaffoldError, match="not a usable migration name"):
        scaffold.new_files(folder, "--- !", conv, "0001", NOW)


def test_timestamp_below_a_huge_sequential_version_is_refused(tmp_path: Path) -> None:
    """--timestamp in a folder whose numbers exceed any timestamp says to use --sequential."""
    with pytest.raises(scaffold.ScaffoldError, match="--sequential"):
        planned(tmp_path, {"99999999999999999_a.sql": PLAIN}, version_style="timestamp")


# ---------------------------------------------------------------------------- untouched templates


def written(tmp_path: Path, files: dict[str, str], style: str | None = None) -> Path:
    """The folder after `create add_email` wrote its files into it."""
    made = planned(tmp_path, files, style=style)
    for f in made:
        f.path.write_text(f.text, encoding="utf-8")
    return made[0].path.parent


@pytest.mark.parametrize("style", ["markers", "dbmate", "rollback", "updown", "flyway"])
def test_just_created_migration_is_an_untouched_template(tmp_path: Path, style: str) -> None:
    """Every file `create` writes is recognised as still empty, with its creation time."""
    folder = written(tmp_path, {}, style=style)
    [m] = load(folder)
    problem = scaffold.template_problem(m)
    assert problem == (
        f"{m.path}: empty migration, created at 2025-01-05T09:00:00Z by migrate-job create; write its SQL or delete it"
    )


@pytest.mark.parametrize("style", ["markers", "rollback", "updown", "flyway"])
def test_template_with_sql_is_a_migration(tmp_path: Path, style: str) -> None:
    """Once SQL is written into the created file, it is an ordinary migration (the marker line may stay)."""
    folder = written(tmp_path, {}, style=style)
    [m] = load(folder)
    text = m.path.read_text().replace("-- UP\n", "-- UP\nCREATE TABLE t (id int);\n")
    if "-- UP" not in text:
        text += "CREATE TABLE t (id int);\n"
    m.path.write_text(text)
    [m] = load(folder)
    assert scaffold.template_problem(m) is None


def test_created_line_without_the_rest_of_the_template_is_not_enough(tmp_path: Path) -> None:
    """Deleting the `Created by` line makes an intentionally empty migration that applies as a no-op."""
    folder = written(tmp_path, {})
    [m] = load(folder)
    m.path.write_text("\n".join(line for line in m.path.read_text().splitlines() if "Created by" not in line))
    [m] = load(folder)
    assert scaffold.template_problem(m) is None


@pytest.mark.parametrize(("layout", "version"), [("golang", "4"), ("numbered", "4")])
def test_comment_only_migrations_written_by_hand_are_not_templates(tmp_path: Path, layout: str, version: str) -> None:
    """The reserved, comment-only migrations of the fixture folders are not mistaken for templates."""
    folder = tmp_path / layout
    shutil.copytree(FIXTURES / layout, folder)
    migrations = {m.key: m for m in load(folder)}
    assert not migrations[version].up.statements
    assert [m.key for m in migrations.values() if scaffold.template_problem(m)] == []
