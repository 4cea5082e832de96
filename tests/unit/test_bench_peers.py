"""The peers' migration files (bench/peers.py): the generated migrations in node-pg-migrate's and dbmate's formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import peers
from bench.generate import migration_parts, migration_texts

# The markers as the tools find them: node-pg-migrate's createMigrationCommentRegex, dbmate's up/down regexes.
NODE_UP = re.compile(r"^\s*--[\s-]*up\s+migration", re.IGNORECASE | re.MULTILINE)
NODE_DOWN = re.compile(r"^\s*--[\s-]*down\s+migration", re.IGNORECASE | re.MULTILINE)
DBMATE_UP = re.compile(r"^--\s*migrate:up(.*)$", re.MULTILINE)
DBMATE_DOWN = re.compile(r"^--\s*migrate:down(.*)$", re.MULTILINE)


@pytest.mark.parametrize(
    ("number", "title", "name"),
    [
        (1, "table_1", "20240101000001_table_1.sql"),
        (59, "index_59", "20240101000059_index_59.sql"),
        (60, "column_60", "20240101000100_column_60.sql"),
        (200, "function_200", "20240101000320_function_200.sql"),
        (86_400, "insert_86400", "20240102000000_insert_86400.sql"),
    ],
)
def test_timestamp_names(number: int, title: str, name: str) -> None:
    """Migration k is named with a 14-digit timestamp k seconds after 2024-01-01 (dbmate's `new` format)."""
    assert peers.timestamp_name(number, title) == name


def test_names_sort_in_migration_order() -> None:
    """Both peers order files by their numeric prefix: the names keep the generated order, as text and as numbers."""
    names = [name for name, _ in peers.peer_files(peers.DBMATE, migration_parts(300))]
    assert names == sorted(names)
    assert [int(n.split("_")[0]) for n in names] == sorted(int(n.split("_")[0]) for n in names)


def test_node_pg_migrate_file_runs_the_same_up_sql() -> None:
    """Each node-pg-migrate file has one Up and one Down marker; its up section is the generated up SQL."""
    for m, (_, text) in zip(
        migration_parts(50), peers.peer_files(peers.NODE_PG_MIGRATE, migration_parts(50)), strict=True
    ):
        ups, downs = list(NODE_UP.finditer(text)), list(NODE_DOWN.finditer(text))
        assert len(ups) == len(downs) == 1
        up_section = text[ups[0].start() : downs[0].start()]
        assert m.up in up_section
        assert up_section.replace(m.up, "").strip() == "-- Up Migration"
        assert text[downs[0].start() :].strip().removeprefix("-- Down Migration").strip() == m.down.strip()


def test_dbmate_file_runs_the_same_up_sql() -> None:
    """Each dbmate file has one migrate:up and one migrate:down marker, around the generated up and down SQL."""
    for m, (_, text) in zip(migration_parts(50), peers.peer_files(peers.DBMATE, migration_parts(50)), strict=True):
        ups, downs = list(DBMATE_UP.finditer(text)), list(DBMATE_DOWN.finditer(text))
        assert len(ups) == len(downs) == 1
        assert ups[0][1] == downs[0][1] == ""  # no options: each migration in its own transaction
        assert text[ups[0].end() : downs[0].start()].strip() == m.up.strip()
        assert text[downs[0].end() :].strip() == m.down.strip()


def test_peers_get_the_same_migrations_as_migrate_job() -> None:
    """The up SQL of every peer file is the SQL of migrate-job's (and psql's) generated file with the same number."""
    ours = migration_texts(40)
    for tool in peers.FORMATS:
        theirs = peers.peer_files(tool, migration_parts(40))
        assert len(theirs) == len(ours)
        for (our_name, our_text), (their_name, their_text), m in zip(ours, theirs, migration_parts(40), strict=True):
            assert our_name.endswith(f"_{m.title}.sql") and their_name.endswith(f"_{m.title}.sql")
            assert m.up in our_text and m.up in their_text


def test_write_peer_migrations(tmp_path: Path) -> None:
    """write_peer_migrations writes one file per migration, in the tool's format, and returns their paths."""
    paths = peers.write_peer_migrations(tmp_path / "dbmate", peers.DBMATE, 12, seed=3)
    assert [p.name for p in paths] == sorted(p.name for p in (tmp_path / "dbmate").iterdir())
    assert len(paths) == 12
    assert paths[0].read_text(encoding="utf-8") == peers.dbmate_text(migration_parts(12, seed=3)[0])


@pytest.mark.parametrize(
    ("machine", "package"),
    [("x86_64", "@dbmate/linux-x64"), ("aarch64", "@dbmate/linux-arm64"), ("armv7l", "@dbmate/linux-arm")],
)
def test_dbmate_package(machine: str, package: str) -> None:
    """dbmate's binary is taken from the npm package of this machine's architecture."""
    assert peers.dbmate_package(machine) == package


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:5432/db", "postgresql://postgres@127.0.0.1:5432/db?sslmode=disable"),
        ("postgresql://h/db?application_name=x", "postgresql://h/db?application_name=x&sslmode=disable"),
    ],
)
def test_dbmate_url_disables_tls(url: str, expected: str) -> None:
    """dbmate is told sslmode=disable (lib/pq would require TLS, which the throwaway server lacks)."""
    assert peers.with_sslmode_disable(url) == expected


def test_commands_keep_the_tools_defaults(tmp_path: Path) -> None:
    """The peers run as a user runs them: node-pg-migrate `up`, dbmate `migrate` without the schema dump."""
    npm = peers.Peer(peers.NODE_PG_MIGRATE, "9.0.0", tmp_path / "node-pg-migrate", "pgmigrations")
    dbm = peers.Peer(peers.DBMATE, "2.36.0", tmp_path / "dbmate", "schema_migrations")
    assert npm.command(tmp_path / "m") == [
        str(tmp_path / "node-pg-migrate"),
        "up",
        "--migrations-dir",
        str(tmp_path / "m"),
    ]
    assert dbm.command(tmp_path / "m")[-2:] == ["--no-dump-schema", "migrate"]
    assert npm.env("postgresql://h/db") == {"DATABASE_URL": "postgresql://h/db"}
    assert dbm.env("postgresql://h/db") == {"DATABASE_URL": "postgresql://h/db?sslmode=disable"}


def test_pins_digest_changes_with_the_pins() -> None:
    """The install is redone when package.json or the lockfile changes, and only then."""
    assert peers.pins_digest([b"a", b"b"]) == peers.pins_digest([b"a", b"b"])
    assert peers.pins_digest([b"a", b"b"]) != peers.pins_digest([b"a", b"c"])
    assert peers.pins_digest([b"ab", b""]) != peers.pins_digest([b"a", b"b"])


def test_pinned_versions() -> None:
    """bench/npm pins node-pg-migrate 9 with pg, and dbmate, exactly."""
    deps = json.loads((peers.NPM_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    assert deps["node-pg-migrate"].startswith("9.")
    assert set(deps) == {"node-pg-migrate", "pg", "dbmate"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in deps.values())
    lock = json.loads((peers.NPM_DIR / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"][""]["dependencies"] == deps
