"""Pure parts of adoption and history repair: tool recognition, legacy checksums, planning repairs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from job import source
from job.adopt import _Matcher, _tool, flyway_checksum, legacy_checksum
from job.errors import ValidationFailed
from job.plan import Applied
from job.repair import Fix, plan_fixes
from job.report import audit_summary

# ---------------------------------------------------------------------------- which tool wrote the table


@pytest.mark.parametrize(
    ("table", "columns", "siblings", "tool"),
    [
        ("schema_migrations", ["version", "dirty"], [], "golang-migrate"),
        ("schema_migrations", ["version"], [], "dbmate"),
        ("schema_migrations", ["version"], ["ar_internal_metadata"], "rails"),
        ("schema_migrations", ["version", "description", "applied_at"], [], "generic"),
        ("schema_migrations", ["id", "migration_name", "checksum", "applied_at"], [], "named"),
        ("schema_migrations", ["id", "name", "applied_at"], [], None),
        ("schema_migrations", ["id", "filename", "applied_at"], [], None),
        ("_migrations", ["id", "name", "batch", "executed_at"], [], "batches"),
        ("knex_migrations", ["id", "name", "batch", "migration_time"], [], "knex"),
        ("pgmigrations", ["id", "name", "run_on"], [], "node-pg-migrate"),
        ("migrations", ["id", "name", "hash", "executed_at"], [], "postgres-migrations"),
        ("migrations", ["id", "migration", "batch"], [], None),
        (
            "_prisma_migrations",
            [
                "id",
                "checksum",
                "finished_at",
                "migration_name",
                "logs",
                "rolled_back_at",
                "started_at",
                "applied_steps_count",
            ],
            [],
            "prisma",
        ),
        ("changes", ["change_id", "script_hash", "change", "project", "note", "committed_at"], [], "sqitch"),
        ("changes", ["id", "what"], [], None),
        ("flyway_schema_history", ["installed_rank", "version", "script", "checksum", "success"], [], "flyway"),
    ],
)
def test_tool_is_recognised_from_table_name_and_columns(
    table: str, columns: list[str], siblings: list[str], tool: str | None
) -> None:
    """Each tool's tracking table is told apart by its name and column set; an unknown shape is None."""
    assert _tool(table, dict.fromkeys(columns, "text"), frozenset(siblings)) == tool


# ---------------------------------------------------------------------------- Flyway's checksum

# Files of navikt/lydia-api and the checksums Flyway recorded for them in that project's flyway_schema_history.
FLYWAY_KNOWN = [
    ("drop index idx_orgnr_virksomhet;", 1323783627),
    ("alter table virksomhet add column navn varchar not null default '';", 60790216),
]


@pytest.mark.parametrize(("text", "expected"), FLYWAY_KNOWN)
def test_flyway_checksum_matches_values_flyway_recorded(text: str, expected: int) -> None:
    """flyway_checksum gives exactly the integer Flyway stored for the same script."""
    assert flyway_checksum(text.encode()) == expected


@pytest.mark.parametrize(
    "variant",
    [
        b"CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n",
        b"CREATE TABLE a (id int);\r\nCREATE TABLE b (id int);\r\n",
        b"\xef\xbb\xbfCREATE TABLE a (id int);\nCREATE TABLE b (id int);",
        b"CREATE TABLE a (id int);\rCREATE TABLE b (id int);",
    ],
)
def test_flyway_checksum_ignores_line_endings_and_bom(variant: bytes) -> None:
    """Like Flyway, the checksum does not change with LF/CRLF/CR line endings, a final newline or a BOM."""
    assert flyway_checksum(variant) == flyway_checksum(b"CREATE TABLE a (id int);\nCREATE TABLE b (id int);")


def test_flyway_checksum_is_a_signed_32_bit_integer() -> None:
    """A CRC32 above 2^31 is stored by Flyway as a negative int; so is ours."""
    values = [flyway_checksum(f"SELECT {n};".encode()) for n in range(200)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values)


def test_flyway_checksum_changes_when_a_line_changes() -> None:
    """An edited statement (not just whitespace at line ends) changes the checksum."""
    assert flyway_checksum(b"SELECT 1;\n") != flyway_checksum(b"SELECT 2;\n")


# ---------------------------------------------------------------------------- legacy checksums of files


@pytest.fixture
def migration(tmp_path: Path) -> source.Migration:
    (tmp_path / "1_create_accounts.sql").write_bytes(b"CREATE TABLE accounts (id int);\r\n")
    return source.load(tmp_path)[0]


def _digests(data: bytes, name: str) -> dict[str, str]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha256_lf": hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest(),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha1_name": hashlib.sha1(name.encode() + data, usedforsecurity=False).hexdigest(),
    }


@pytest.mark.parametrize(
    ("tool", "kind"),
    [
        ("named", "sha256"),
        ("named", "md5"),
        ("prisma", "sha256"),
        ("prisma", "sha256_lf"),
        ("postgres-migrations", "sha1_name"),
    ],
)
def test_matching_legacy_checksum_records_the_files_own(migration: source.Migration, tool: str, kind: str) -> None:
    """A legacy checksum that matches the file (in that tool's algorithm) is replaced by migrate-job's own."""
    stored = _digests(migration.path.read_bytes(), migration.path.name)[kind]
    assert legacy_checksum(tool, stored, migration) == migration.checksum


@pytest.mark.parametrize("tool", ["named", "prisma", "postgres-migrations", "flyway"])
def test_mismatching_legacy_checksum_is_kept_tagged_so_the_file_shows_as_edited(
    migration: source.Migration, tool: str
) -> None:
    """A legacy checksum that does not match is kept as `<tool>:<value>`, which never equals the file's."""
    recorded = legacy_checksum(tool, "12345", migration)
    assert recorded == f"{tool}:12345"
    assert recorded != migration.checksum


def test_flyway_row_checksum_is_compared_with_flyways_crc(migration: source.Migration) -> None:
    """Flyway's integer checksum of the unchanged file adopts with the file's own checksum."""
    crc = flyway_checksum(migration.path.read_bytes())
    assert legacy_checksum("flyway", crc, migration) == migration.checksum
    assert legacy_checksum("flyway", crc + 1, migration) == f"flyway:{crc + 1}"


@pytest.mark.parametrize("stored", [None, "", "  "])
def test_no_legacy_checksum_means_nothing_to_compare(migration: source.Migration, stored: str | None) -> None:
    """A row without a checksum (Flyway baseline, Java migrations) adopts with the file's own checksum."""
    assert legacy_checksum("named", stored, migration) == migration.checksum


# ---------------------------------------------------------------------------- matching legacy entries to files


def test_legacy_entries_match_by_version_file_name_stem_script_suffix_and_change_name(tmp_path: Path) -> None:
    """Legacy tables name migrations in many ways; each finds the same file, an unknown name finds none."""
    for name in ("0001_create_accounts.sql", "0002_create-ledger.sql", "20240301081500_add_index.sql"):
        (tmp_path / name).write_text("SELECT 1;\n", encoding="utf-8")
    match = _Matcher(source.load(tmp_path))
    cases = {
        "1": "1",
        "0001": "1",
        "0001_create_accounts.sql": "1",
        "0001_create_accounts": "1",
        "0001_create_accounts.js": "1",
        "create_accounts": "1",
        "0002_create-ledger.ts": "2",
        "create-ledger": "2",
        "20240301081500": "20240301081500",
        "20240301081500_add_index.js": "20240301081500",
    }
    for text, version in cases.items():
        found = match(text)
        assert found is not None and found.key == version, text
    assert match("no_such_change") is None


# ---------------------------------------------------------------------------- repair --accept-checksum/--forget-missing


def _applied(version: str, name: str, checksum: str | None, status: str = "applied") -> Applied:
    return Applied(version=version, name=name, checksum=checksum, status=status)


@pytest.fixture
def two(tmp_path: Path) -> list[source.Migration]:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n", encoding="utf-8")
    (tmp_path / "0002_b.sql").write_text("SELECT 2;\n", encoding="utf-8")
    return source.load(tmp_path)


def test_accept_checksum_plans_the_new_checksum_of_an_edited_file(two: list[source.Migration]) -> None:
    """--accept-checksum of an edited applied file plans old -> new; by version or file name."""
    history = [_applied("1", "a", "old"), _applied("2", "b", two[1].checksum)]
    for wanted in ("1", "0001_a.sql", "0001_a"):
        fixes = plan_fixes(two, history, accept=[wanted], forget=[])
        assert fixes == [Fix("accept-checksum", "1", "a", "old", two[0].checksum, str(two[0].path))]


def test_accept_checksum_of_an_unchanged_file_changes_nothing(two: list[source.Migration]) -> None:
    """A file whose checksum already matches needs no change."""
    assert plan_fixes(two, [_applied("2", "b", two[1].checksum)], accept=["2"], forget=[]) == []


@pytest.mark.parametrize(
    ("history", "accept", "forget", "message"),
    [
        ([], ["1"], [], "no migration with that version or name is recorded as applied"),
        ([_applied("1", "a", "x", "failed")], ["1"], [], "is failed, not applied"),
        ([_applied("3", "c", "x")], ["3"], [], "is gone"),
        ([_applied("1", "a", "x")], [], ["1"], "still exists"),
        ([], [], ["9"], "no migration with that version or name is recorded as applied"),
    ],
)
def test_repair_refuses_what_it_cannot_do(
    two: list[source.Migration], history: list[Applied], accept: list[str], forget: list[str], message: str
) -> None:
    """Unknown versions, failed entries, a gone file to accept or an existing file to forget: exit 4, one line."""
    with pytest.raises(ValidationFailed, match=message):
        plan_fixes(two, history, accept=accept, forget=forget)


def test_forget_missing_plans_dropping_the_row_of_a_gone_file(two: list[source.Migration]) -> None:
    """--forget-missing of an applied version without a file plans dropping its row."""
    fixes = plan_fixes(two, [_applied("3", "c", "x")], accept=[], forget=["3"])
    assert fixes == [Fix("forget-missing", "3", "c", "x")]
    assert "forget version 3" in fixes[0].describe()


# ---------------------------------------------------------------------------- audit summaries


@pytest.mark.parametrize(
    ("event", "detail", "expected"),
    [
        (
            "adopted",
            {"table": "public._migrations", "tool": "batches", "count": 3, "modified": ["2"]},
            "from public._migrations (batches): 3 row(s); edited since: 2",
        ),
        (
            "rolled_back",
            {"applied_at": "2024-05-01T10:00:00+00:00", "applied_by": "ci"},
            "was applied 2024-05-01T10:00:00 by ci",
        ),
        ("checksum_accepted", {"old_checksum": "abc", "checksum": "def"}, "checksum abc -> def"),
        ("baselined", {"versions": ["1", "2"]}, "2 version(s)"),
        ("repaired", {"mode": "resume"}, "mode resume"),
    ],
)
def test_audit_summary_says_what_changed(event: str, detail: dict[str, object], expected: str) -> None:
    """`status --all` shows one readable line per audit event."""
    assert audit_summary(event, detail) == expected
