"""Pure tests of job.source: layouts, ordering, sections, directives, checksums. No database."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from job.errors import SourceError
from job.source import Directives, Migration, Version, load

CREATE = "create table t (a int);\n"


def make_dir(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write `files` into a fresh migrations folder under root and return it."""
    folder = root / "migrations"
    folder.mkdir()
    for name, body in files.items():
        path = folder / name
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_bytes(body.encode("utf-8"))
    return folder


def load_one(root: Path, name: str, body: str | bytes) -> Migration:
    """Load a folder holding a single migration file and return that migration."""
    (m,) = load(make_dir(root, {name: body}))
    return m


def texts(m: Migration, direction: str = "up") -> list[str]:
    section = m.up if direction == "up" else m.down
    assert section is not None
    return [s.text for s in section.statements]


# ---------------------------------------------------------------------------- names and ordering


@pytest.mark.parametrize(
    ("names", "expected_keys"),
    [
        (["10_b.sql", "9_a.sql", "1_c.sql"], ["1", "9", "10"]),
        (["10_b.sql", "0002_a.sql", "0001_z.sql"], ["1", "2", "10"]),
        (["0010_b.sql", "0009_a.sql"], ["9", "10"]),
        (["2-second.sql", "1-first.sql"], ["1", "2"]),
        (["20240101120000_b.sql", "20231231235959_a.sql"], ["20231231235959", "20240101120000"]),
        (["20240101_120000_b.sql", "20240101_090000_a.sql"], ["20240101090000", "20240101120000"]),
        (["20240101120000_b.sql", "20240101_110000_a.sql"], ["20240101110000", "20240101120000"]),
        (["10_c.up.sql", "9_b.up.sql", "1_a.up.sql"], ["1", "9", "10"]),
        (
            ["V1.10__c.sql", "V1.9__b.sql", "V1__a.sql", "V2__d.sql", "R__views.sql", "R__a_funcs.sql"],
            ["1", "1.9", "1.10", "2", "R__a_funcs", "R__views"],
        ),
        (["V2_1__b.sql", "V2__a.sql", "V10__c.sql"], ["2", "2.1", "10"]),
    ],
)
def test_ordering_is_numeric(tmp_path: Path, names: list[str], expected_keys: list[str]) -> None:
    """Migrations are ordered by numeric version (9 before 10), Flyway repeatables last by name."""
    folder = make_dir(tmp_path, dict.fromkeys(names, "select 1;\n"))
    assert [m.key for m in load(folder)] == expected_keys


@pytest.mark.parametrize(
    ("filename", "version", "name", "layout"),
    [
        ("0001_create_users.sql", "1", "create_users", "numbered"),
        ("1-create-users.sql", "1", "create-users", "numbered"),
        ("20240101120000_add_index.sql", "20240101120000", "add_index", "numbered"),
        ("20240101_120000_add_index.sql", "20240101120000", "add_index", "numbered"),
        ("3_add_col.up.sql", "3", "add_col", "golang"),
        ("V1__init.sql", "1", "init", "flyway"),
        ("V1.1__more.sql", "1.1", "more", "flyway"),
        ("V2_1__more.sql", "2.1", "more", "flyway"),
    ],
)
def test_file_name_parsing(tmp_path: Path, filename: str, version: str, name: str, layout: str) -> None:
    """The version, name and layout are read from the file name."""
    m = load_one(tmp_path, filename, "select 1;\n")
    assert str(m.version) == version
    assert m.key == version
    assert m.name == name
    assert m.layout == layout
    assert m.filename == filename
    assert not m.repeatable


def test_flyway_repeatable(tmp_path: Path) -> None:
    """A Flyway R__ file is repeatable: no version, keyed by name."""
    m = load_one(tmp_path, "R__views.sql", "create or replace view v as select 1;\n")
    assert m.version is None
    assert m.repeatable
    assert m.key == "R__views"
    assert m.layout == "flyway"


# ---------------------------------------------------------------------------- sections and markers


@pytest.mark.parametrize(
    ("body", "up", "down"),
    [
        ("-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\n", ["create table t (a int)"], ["drop table t"]),
        ("-- up\ncreate table t (a int);\n-- down\ndrop table t;\n", ["create table t (a int)"], ["drop table t"]),
        ("--Up\ncreate table t (a int);\n--Down\ndrop table t;\n", ["create table t (a int)"], ["drop table t"]),
        (
            "  -- Up  \ncreate table t (a int);\n\t-- dOwN\ndrop table t;\n",
            ["create table t (a int)"],
            ["drop table t"],
        ),
        (
            "-- migrate:up\ncreate table t (a int);\n\n-- migrate:down\ndrop table t;\n",
            ["create table t (a int)"],
            ["drop table t"],
        ),
        (
            "-- MIGRATE:UP\ncreate table t (a int);\n-- Migrate:Down\ndrop table t;\n",
            ["create table t (a int)"],
            ["drop table t"],
        ),
        ("-- DOWN\ndrop table t;\n-- UP\ncreate table t (a int);\n", ["create table t (a int)"], ["drop table t"]),
        ("-- UP\ncreate table t (a int);\n", ["create table t (a int)"], None),
        ("create table t (a int);\n-- DOWN\ndrop table t;\n", ["create table t (a int)"], ["drop table t"]),
        (
            "-- update users\nupdate t set a = 1;\n-- Up to now this was manual\nselect 1;\n",
            ["update t set a = 1", "select 1"],
            None,
        ),
        ("-- Down the road we drop this\nselect 1;\n", ["select 1"], None),
        ("-- upgrade the data\nselect 1;\n-- downgrade is manual\nselect 2;\n", ["select 1", "select 2"], None),
        ("-- up: creates t\nselect 1;\n", ["select 1"], None),
        (
            "create table t (a int);\ninsert into t values (1);\n",
            ["create table t (a int)", "insert into t values (1)"],
            None,
        ),
        (
            "-- UP\ncreate table t (a int);\n-- DOWN -- reverses the above\ndrop table t;\n",
            ["create table t (a int)"],
            ["drop table t"],
        ),
    ],
)
def test_up_down_markers(tmp_path: Path, body: str, up: list[str], down: list[str] | None) -> None:
    """`-- UP`/`-- DOWN` and dbmate markers split the file in any case; ordinary comments are not markers."""
    m = load_one(tmp_path, "0001_t.sql", body)
    assert texts(m) == up
    if down is None:
        assert m.down is None
    else:
        assert texts(m, "down") == down


def test_markers_in_crlf_file(tmp_path: Path) -> None:
    """A file saved with Windows line endings still has its `-- UP`/`-- DOWN` markers recognised."""
    body = b"-- UP\r\ncreate table t (a int);\r\n-- DOWN\r\ndrop table t;\r\n"
    m = load_one(tmp_path, "0001_t.sql", body)
    assert texts(m) == ["create table t (a int)"]
    assert texts(m, "down") == ["drop table t"]


def test_second_up_marker_is_an_error(tmp_path: Path) -> None:
    """Two `-- UP` markers in one file are rejected with the line of the second one."""
    folder = make_dir(tmp_path, {"0001_t.sql": "-- UP\nselect 1;\n-- UP\nselect 2;\n"})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert "0001_t.sql:3" in info.value.message


@pytest.mark.parametrize(
    ("body", "up_tx", "down_tx", "transactional"),
    [
        (
            "-- migrate:up transaction:false\ncreate index concurrently i on t (a);\n"
            "-- migrate:down transaction:false\ndrop index concurrently i;\n",
            False,
            False,
            False,
        ),
        (
            "-- migrate:up transaction:false\ncreate table t (a int);\n-- migrate:down\ndrop table t;\n",
            False,
            None,
            False,
        ),
        (
            "-- migrate:up\ncreate table t (a int);\n-- migrate:down transaction:false\ndrop table t;\n",
            None,
            False,
            True,
        ),
        ("-- migrate:up transaction:true\ncreate table t (a int);\n", True, None, True),
    ],
)
def test_dbmate_transaction_option(
    tmp_path: Path, body: str, up_tx: bool | None, down_tx: bool | None, transactional: bool
) -> None:
    """dbmate's `transaction:false` on a marker line is read and decides the UP mode."""
    m = load_one(tmp_path, "20240101120000_t.sql", body)
    assert m.up.transaction is up_tx
    if down_tx is not None or m.down is not None:
        assert m.down is not None
        assert m.down.transaction is down_tx
    assert m.transactional is transactional


def test_statement_offsets_are_relative_to_file(tmp_path: Path) -> None:
    """Statements of both sections report their line in the whole file, including the DOWN section."""
    body = (
        "-- migrate-job: lock_timeout=10s\n"  # 1
        "-- UP\n"  # 2
        "insert into t values ('héllo');\n"  # 3
        "\n"  # 4
        "  create index i on t (a);\n"  # 5
        "-- DOWN\n"  # 6
        "delete from t where a = 'ü';\n"  # 7
        "\n"  # 8
        "drop index i;\n"  # 9
    )
    m = load_one(tmp_path, "0001_t.sql", body)
    assert m.down is not None
    up = [m.up.location(s.offset) for s in m.up.statements]
    down = [m.down.location(s.offset) for s in m.down.statements]
    assert up == [(3, 1), (5, 3)]
    assert down == [(7, 1), (9, 1)]
    for section in (m.up, m.down):
        for s in section.statements:
            assert body[s.offset : s.offset + len(s.text)] == s.text


def test_syntax_error_in_down_section_names_file_line(tmp_path: Path) -> None:
    """A syntax error in the DOWN section is reported at its line and column in the file."""
    body = "-- UP\nselect 1;\n-- DOWN\nselect 1;\n  selec 2;\n"
    m = load_one(tmp_path, "0001_t.sql", body)
    assert m.down is not None
    with pytest.raises(SourceError) as info:
        _ = m.down.statements
    assert "0001_t.sql:5:3" in info.value.message
    assert info.value.fields["line"] == 5
    assert info.value.fields["column"] == 3


# ---------------------------------------------------------------------------- companion down files


@pytest.mark.parametrize(
    ("files", "down_file"),
    [
        ({"0001_t.sql": CREATE, "0001_t_rollback.sql": "drop table t;\n"}, "0001_t_rollback.sql"),
        ({"0001_t.sql": CREATE, "0001_t.rollback.sql": "drop table t;\n"}, "0001_t.rollback.sql"),
        ({"1_t.up.sql": CREATE, "1_t.down.sql": "drop table t;\n"}, "1_t.down.sql"),
        ({"V1__t.sql": CREATE, "U1__t.sql": "drop table t;\n"}, "U1__t.sql"),
    ],
)
def test_separate_down_files(tmp_path: Path, files: dict[str, str | bytes], down_file: str) -> None:
    """`_rollback.sql`, golang `.down.sql` and Flyway `U` files become the DOWN section of their version."""
    (m,) = load(make_dir(tmp_path, files))
    assert m.key == "1"
    assert m.down is not None
    assert m.down.path.name == down_file
    assert texts(m, "down") == ["drop table t"]
    assert texts(m) == ["create table t (a int)"]


@pytest.mark.parametrize(
    "files",
    [
        {"0001_t.sql": CREATE, "0002_t_rollback.sql": "drop table t;\n"},
        {"1_t.up.sql": CREATE, "2_t.down.sql": "drop table t;\n"},
        {"V1__t.sql": CREATE, "U2__t.sql": "drop table t;\n"},
    ],
)
def test_orphan_down_file_is_an_error(tmp_path: Path, files: dict[str, str | bytes]) -> None:
    """A down file without its up migration is rejected, naming the down file."""
    down_name = next(n for n in files if n.startswith(("0002", "2_", "U2")))
    with pytest.raises(SourceError) as info:
        load(make_dir(tmp_path, files))
    assert down_name in info.value.message


def test_down_section_and_down_file_is_an_error(tmp_path: Path) -> None:
    """A file with a `-- DOWN` section and a separate rollback file is ambiguous and rejected."""
    files: dict[str, str | bytes] = {
        "0001_t.sql": "-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\n",
        "0001_t_rollback.sql": "drop table t;\n",
    }
    with pytest.raises(SourceError) as info:
        load(make_dir(tmp_path, files))
    assert "0001_t.sql" in info.value.message
    assert "0001_t_rollback.sql" in info.value.message


# ---------------------------------------------------------------------------- folder errors


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("1_a.sql", "001_b.sql"),
        ("0002_a.sql", "2-b.sql"),
        ("20240101120000_a.sql", "20240101_120000_b.sql"),
        ("1_a.up.sql", "01_b.up.sql"),
        ("V1__a.sql", "V1.0__b.sql"),
        ("V2.1__a.sql", "V2_1__b.sql"),
    ],
)
def test_duplicate_versions_name_both_files(tmp_path: Path, first: str, second: str) -> None:
    """Two files with the same version are rejected, and the message names both files."""
    folder = make_dir(tmp_path, {first: "select 1;\n", second: "select 2;\n"})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert first in info.value.message
    assert second in info.value.message
    assert "duplicate" in info.value.message


@pytest.mark.parametrize(
    "bad",
    ["create_users.sql", "V__x.sql", "R1__x.sql", "x_0002.sql", "V1_x.sql"],
)
def test_unparseable_name_names_the_file(tmp_path: Path, bad: str) -> None:
    """A .sql file whose name is not a migration name is rejected, naming the file."""
    folder = make_dir(tmp_path, {"0001_ok.sql": "select 1;\n", bad: "select 2;\n"})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert bad in info.value.message
    assert info.value.fields["file"].endswith(bad)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"select '\xff';\n", 1),
        (b"select 1;\nselect 2;\nselect '\xe9t\xe9';\n", 3),
        (b"-- UP\nselect 1;\n-- DOWN\n-- caf\xe9\nselect 2;\n", 4),
    ],
)
def test_non_utf8_file_names_file_and_line(tmp_path: Path, data: bytes, line: int) -> None:
    """A file that is not UTF-8 is rejected with its name and the line of the first bad byte."""
    folder = make_dir(tmp_path, {"0001_latin1.sql": data})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert f"0001_latin1.sql:{line}:" in info.value.message
    assert info.value.fields["line"] == line


@pytest.mark.parametrize(
    "names",
    [
        ["0001_a.sql", "V2__b.sql"],
        ["1_a.up.sql", "2_b.sql"],
        ["V1__a.sql", "2_b.up.sql"],
    ],
)
def test_mixed_layouts_are_an_error(tmp_path: Path, names: list[str]) -> None:
    """A folder mixing numbered, golang-migrate and Flyway names is rejected."""
    folder = make_dir(tmp_path, dict.fromkeys(names, "select 1;\n"))
    with pytest.raises(SourceError) as info:
        load(folder)
    assert "mixed" in info.value.message


@pytest.mark.parametrize(
    ("layout", "names", "wrong"),
    [
        ("flyway", ["0001_a.sql"], "0001_a.sql"),
        ("golang", ["0001_a.sql"], "0001_a.sql"),
        ("numbered", ["V1__a.sql"], "V1__a.sql"),
        ("numbered", ["1_a.up.sql"], "1_a.up.sql"),
    ],
)
def test_forced_layout_mismatch(tmp_path: Path, layout: str, names: list[str], wrong: str) -> None:
    """MIGRATE_FORMAT forcing a layout rejects files of another layout, naming the file and the setting."""
    folder = make_dir(tmp_path, dict.fromkeys(names, "select 1;\n"))
    with pytest.raises(SourceError) as info:
        load(folder, layout=layout)
    assert wrong in info.value.message
    assert f"MIGRATE_FORMAT={layout}" in info.value.message


@pytest.mark.parametrize(
    ("layout", "names"),
    [
        ("numbered", ["0001_a.sql", "0002_b.sql"]),
        ("golang", ["1_a.up.sql", "1_a.down.sql"]),
        ("flyway", ["V1__a.sql", "R__b.sql"]),
    ],
)
def test_forced_layout_match(tmp_path: Path, layout: str, names: list[str]) -> None:
    """Forcing the layout the folder already uses loads it normally."""
    folder = make_dir(tmp_path, dict.fromkeys(names, "select 1;\n"))
    assert all(m.layout == layout for m in load(folder, layout=layout))


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    """A migrations folder that does not exist is a SourceError naming it."""
    with pytest.raises(SourceError) as info:
        load(tmp_path / "nope")
    assert "nope" in info.value.message


def test_schema_and_non_sql_files_are_ignored(tmp_path: Path) -> None:
    """schema.sql, hidden files and non-.sql files in the folder are not migrations."""
    files: dict[str, str | bytes] = {
        "0001_a.sql": "select 1;\n",
        "schema.sql": "this is a schema dump, not a migration",
        ".0002_hidden.sql": "select 2;\n",
        "README.md": "docs",
    }
    migrations = load(make_dir(tmp_path, files))
    assert [m.filename for m in migrations] == ["0001_a.sql"]


def test_empty_folder_loads_nothing(tmp_path: Path) -> None:
    """An empty migrations folder has no migrations (and is not an error)."""
    assert load(make_dir(tmp_path, {})) == []


# ---------------------------------------------------------------------------- directives


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("-- migrate-job: transaction=off lock_timeout=10s", Directives(False, "10s", None)),
        ("-- migrate-job: transaction=on", Directives(True, None, None)),
        ("-- migrate-job: transaction=auto", Directives(None, None, None)),
        ("-- migrate-job: transaction=false", Directives(False, None, None)),
        ("-- migrate-job: no-transaction", Directives(False, None, None)),
        ("-- migrate-job: statement_timeout=1min", Directives(None, None, "1min")),
        ("-- migrate-job: statement-timeout=30s lock-timeout=500ms", Directives(None, "500ms", "30s")),
        ("--migrate-job:transaction=OFF", Directives(False, None, None)),
        ("-- MIGRATE-JOB: Transaction=Off", Directives(False, None, None)),
        ("-- a plain comment", Directives()),
    ],
)
def test_directives(tmp_path: Path, header: str, expected: Directives) -> None:
    """`-- migrate-job: key=value` lines set the transaction mode and timeouts of a file."""
    m = load_one(tmp_path, "0001_t.sql", f"{header}\n{CREATE}")
    assert m.directives == expected


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("-- migrate-job: isolation=serializable\nselect 1;\n", 1),
        ("select 1;\n\n-- migrate-job: transaction=off retries=3\n", 3),
        ("select 1;\n-- migrate-job: transaction\n", 2),
        ("-- UP\nselect 1;\n-- DOWN\n-- migrate-job: bogus=1\nselect 2;\n", 4),
    ],
)
def test_unknown_directive_names_file_and_line(tmp_path: Path, body: str, line: int) -> None:
    """An unknown or malformed directive is rejected with `file:line`."""
    folder = make_dir(tmp_path, {"0001_t.sql": body})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert f"0001_t.sql:{line}:" in info.value.message
    assert info.value.fields["line"] == line


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("-- migrate-job: lock_timeout=soon\nselect 1;\n", 1),
        ("select 1;\n-- migrate-job: statement_timeout=5parsecs\n", 2),
        ("select 1;\n\n-- migrate-job: lock_timeout=-1s\n", 3),
    ],
)
def test_invalid_timeout_directive_is_a_source_error(tmp_path: Path, body: str, line: int) -> None:
    """A directive timeout that is not a duration is rejected when the file is read, with file:line."""
    folder = make_dir(tmp_path, {"0001_t.sql": body})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert f"0001_t.sql:{line}" in info.value.message


def test_bad_transaction_value_is_an_error(tmp_path: Path) -> None:
    """`transaction=` accepts only on/off/auto (and synonyms); anything else names the file."""
    folder = make_dir(tmp_path, {"0001_t.sql": "-- migrate-job: transaction=maybe\nselect 1;\n"})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert "0001_t.sql" in info.value.message


# ---------------------------------------------------------------------------- transactional


@pytest.mark.parametrize(
    ("body", "transactional"),
    [
        (CREATE, True),
        ("create index i on t (a);\n", True),
        ("alter type mood add value 'meh';\n", True),
        ("create index concurrently i on t (a);\n", False),
        ("select 1;\nvacuum t;\n", False),
        ("-- migrate-job: transaction=off\ncreate table t (a int);\n", False),
        ("-- migrate-job: transaction=on\ncreate index concurrently i on t (a);\n", True),
        ("-- migrate-job: transaction=auto\ncreate index concurrently i on t (a);\n", False),
        ("-- UP\ncreate table t (a int);\n-- DOWN\ndrop index concurrently i;\n", True),
    ],
)
def test_transactional_auto_and_forced(tmp_path: Path, body: str, transactional: bool) -> None:
    """A migration runs in a transaction unless its UP section cannot, or a directive decides."""
    m = load_one(tmp_path, "0001_t.sql", body)
    assert m.transactional is transactional


# ---------------------------------------------------------------------------- checksum


@pytest.mark.parametrize(
    "data",
    [
        b"select 1;\n",
        b"select 1;\r\n",
        b"select 1;\r",
        "\ufeffselect 'é';\n".encode(),
        "\ufeffselect 'é';\r\n".encode(),
        b"-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\n",
        b"-- UP\r\ncreate table t (a int);\n-- DOWN\r\ndrop table t;\r\n",
    ],
)
def test_checksum_is_sha256_of_normalised_content(tmp_path: Path, data: bytes) -> None:
    """The checksum is the SHA-256 of the file without a BOM and with CRLF/CR line endings as LF."""
    m = load_one(tmp_path, "0001_t.sql", data)
    normalised = data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert m.checksum == hashlib.sha256(normalised).hexdigest()


@pytest.mark.parametrize(
    ("stored_form", "checkout"),
    [
        (b"select 1;\r\n", b"select 1;\n"),
        (b"select 1;\n", b"select 1;\r\n"),
        (b"\xef\xbb\xbfselect 1;\n", b"select 1;\n"),
        (b"select 1;\n", b"\xef\xbb\xbfselect 1;\r\n"),
        (b"\xef\xbb\xbfselect 1;\r\n", b"\xef\xbb\xbfselect 1;\r\n"),
        (b"-- a\r\nselect 1;\n", b"-- a\r\nselect 1;\n"),  # mixed endings: the exact raw bytes
    ],
)
def test_old_raw_byte_checksums_still_match(tmp_path: Path, stored_form: bytes, checkout: bytes) -> None:
    """A history row holding the raw-byte SHA-256 of the same content (any line endings, BOM) still matches."""
    m = load_one(tmp_path, "0001_t.sql", checkout)
    old = hashlib.sha256(stored_form).hexdigest()
    assert m.checksum_matches(old)
    assert m.checksum_matches(m.checksum)


def test_edited_content_does_not_match_old_checksums(tmp_path: Path) -> None:
    """A real edit matches neither the new nor any old-style checksum."""
    m = load_one(tmp_path, "0001_t.sql", b"select 2;\r\n")
    assert not m.checksum_matches(hashlib.sha256(b"select 1;\r\n").hexdigest())
    assert not m.checksum_matches(None)


def test_checksum_changes_with_whitespace(tmp_path: Path) -> None:
    """Any edit, even whitespace, changes the checksum."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = load_one(tmp_path / "a", "0001_t.sql", b"select 1;\n")
    b = load_one(tmp_path / "b", "0001_t.sql", b"select 1; \n")
    assert a.checksum != b.checksum


def test_bom_is_not_part_of_the_sql(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark is stripped before markers and statements are read."""
    m = load_one(tmp_path, "0001_t.sql", "\ufeff-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\n".encode())
    assert texts(m) == ["create table t (a int)"]
    assert texts(m, "down") == ["drop table t"]


# ---------------------------------------------------------------------------- Version


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1", "2"),
        ("9", "10"),
        ("0002", "10"),
        ("1.9", "1.10"),
        ("1", "1.1"),
        ("1.0", "1.0.1"),
        ("1.9", "2"),
        ("2_1", "2.2"),
        ("20231231235959", "20240101120000"),
    ],
)
def test_version_ordering(low: str, high: str) -> None:
    """Versions compare part by part as integers (1.10 after 1.9, 10 after 9)."""
    a, b = Version.parse(low), Version.parse(high)
    assert a < b
    assert b > a
    assert a <= b
    assert a != b
    assert sorted([b, a]) == [a, b]


@pytest.mark.parametrize(
    ("left", "right"),
    [("1", "1.0"), ("1", "1.0.0"), ("0001", "1"), ("2.1", "2_1"), ("1.10", "1.10.0")],
)
def test_version_equality(left: str, right: str) -> None:
    """Trailing zero parts and leading zeros do not make a different version (1 == 1.0)."""
    a, b = Version.parse(left), Version.parse(right)
    assert a == b
    assert hash(a) == hash(b)
    assert not a < b
    assert not b < a
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", "1"), ("0002", "2"), ("1.10", "1.10"), ("2_1", "2.1"), ("1.0", "1.0"), (" 7 ", "7")],
)
def test_version_str(text: str, expected: str) -> None:
    """str(Version) is the dotted integer form used as the history key."""
    assert str(Version.parse(text)) == expected


@pytest.mark.parametrize("text", ["", "a", "v1", "1.a", "1..2", "1.", "-1", "1 2"])
def test_version_parse_rejects_non_numbers(text: str) -> None:
    """Only dot/underscore-separated digits are versions."""
    with pytest.raises(ValueError, match="not a version"):
        Version.parse(text)


def test_version_not_equal_to_string() -> None:
    """A Version never equals a plain string, so keys cannot be confused silently."""
    assert Version.parse("1") != "1"


# ---------------------------------------------------------------------------- other tools' markers

GOOSE = """-- +goose Up
-- +goose StatementBegin
create function f() returns int language plpgsql as $$ begin return 1; end $$;
-- +goose StatementEnd
create table t (a int);

-- +goose Down
drop table t;
drop function f();
"""


@pytest.mark.parametrize(
    ("body", "up", "down"),
    [
        (GOOSE, ["create function f", "create table t (a int)"], ["drop table t", "drop function f()"]),
        ("-- +goose up\nselect 1;\n-- +goose down\nselect 2;\n", ["select 1"], ["select 2"]),
        ("-- +goose Up\nselect 1;\n", ["select 1"], None),
        ("-- +migrate Up\nselect 1;\n-- +migrate Down\nselect 2;\n", ["select 1"], ["select 2"]),
        (
            "-- +migrate Up\n-- +migrate StatementBegin\nselect 1;\n-- +migrate StatementEnd\n-- +migrate Down\n",
            ["select 1"],
            [],
        ),
    ],
)
def test_goose_and_sql_migrate_markers(tmp_path: Path, body: str, up: list[str], down: list[str] | None) -> None:
    """goose's `-- +goose Up/Down` and sql-migrate's `-- +migrate Up/Down` split the file; StatementBegin/End are ok."""
    m = load_one(tmp_path, "00001_t.sql", body)
    assert [t[: len(u)] for t, u in zip(texts(m), up, strict=True)] == up
    if down is None:
        assert m.down is None
    else:
        assert [t[: len(d)] for t, d in zip(texts(m, "down"), down, strict=True)] == down


@pytest.mark.parametrize(
    ("body", "transactional", "source"),
    [
        ("-- +goose NO TRANSACTION\n-- +goose Up\nselect 1;\n-- +goose Down\nselect 2;\n", False, "+goose"),
        ("-- +goose no transaction\n-- +goose up\nselect 1;\n", False, "+goose"),
        ("-- postgres-migrations disable-transaction\ncreate index concurrently i on t (a);\n", False, "postgres"),
        ("-- postgres-migrations disable-transaction\ncreate table t (a int);\n", False, "postgres"),
        ("-- +goose NO TRANSACTION\n-- migrate-job: transaction=on\n-- +goose Up\nselect 1;\n", True, None),
        ("-- +goose Up\nselect 1;\n", True, None),
    ],
)
def test_other_tools_no_transaction_directives(
    tmp_path: Path, body: str, transactional: bool, source: str | None
) -> None:
    """goose's NO TRANSACTION and postgres-migrations' disable-transaction run the file outside a transaction."""
    m = load_one(tmp_path, "0001_t.sql", body)
    assert m.transactional is transactional
    reason = m.non_transactional_reason
    assert (reason is None) == (source is None)
    if source is not None:
        assert reason is not None and source in reason


def test_goose_no_transaction_applies_to_down(tmp_path: Path) -> None:
    """goose's NO TRANSACTION covers both the Up and the Down section."""
    from job.statements import section_transactional

    m = load_one(
        tmp_path, "0001_t.sql", "-- +goose NO TRANSACTION\n-- +goose Up\nselect 1;\n-- +goose Down\nselect 2;\n"
    )
    assert m.down is not None
    assert section_transactional(m, m.down) is False


def test_sql_migrate_notransaction_option(tmp_path: Path) -> None:
    """sql-migrate's `-- +migrate Up notransaction` runs that section outside a transaction."""
    from job.statements import section_transactional

    body = "-- +migrate Up notransaction\nselect 1;\n-- +migrate Down\nselect 2;\n"
    m = load_one(tmp_path, "0001_t.sql", body)
    assert m.down is not None
    assert (m.transactional, section_transactional(m, m.down)) == (False, True)
    assert m.non_transactional_reason == "-- +migrate Up notransaction"


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("-- +foo Up\nselect 1;\n-- +foo Down\ndrop table t;\n", 1),
        ("select 1;\n-- +dbtool down\ndrop table t;\n", 2),
        ("select 1;\n--- DOWN\ndrop table t;\n", 2),
        ("select 1;\n---- down ----\ndrop table t;\n", 2),
        ("select 1;\n-- migrate: down\ndrop table t;\n", 2),
        ("select 1;\n-- migrate down\ndrop table t;\n", 2),
        ("select 1;\n-- migration: rollback\ndrop table t;\n", 2),
        ("select 1;\n--DOWN:\ndrop table t;\n", 2),
        ("select 1;\n-- DOWN:\ndrop table t;\n", 2),
        ("select 1;\n-- [down]\ndrop table t;\n", 2),
        ("select 1;\n-- === DOWN ===\ndrop table t;\n", 2),
        ("select 1;\n-- Down migration\ndrop table t;\n", 2),
        ("select 1;\n-- DOWN (rollback)\ndrop table t;\n", 2),
        ("-- UP:\nselect 1;\n", 1),
        ("-- +goose Up\nselect 1;\n-- +goose Dwn\ndrop table t;\n", 3),
        ("-- +goose Up\n-- +goose ENVSUB ON\nselect '${X}';\n", 2),
        ("-- +migrate Up fast\nselect 1;\n", 1),
        ("-- postgres-migrations ignore\nselect 1;\n", 1),
    ],
)
def test_unknown_markers_are_refused(tmp_path: Path, body: str, line: int) -> None:
    """A line that looks like a section marker migrate-job does not understand is refused with file:line."""
    folder = make_dir(tmp_path, {"0001_t.sql": body})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert f"0001_t.sql:{line}:" in info.value.message
    assert info.value.fields["line"] == line


@pytest.mark.parametrize(
    "comment",
    [
        "-- Nothing to undo",
        "-- shut down the old trigger",
        "-- Down the road we drop this",
        "-- up: creates t",
        "-- Rollback for migration 005_add_analytics_table.sql",
        "-- rollback: drop table t",
        "-- Update schema_migrations is handled automatically by migrate-db.sh",
        "-- download counts per day",
        "-- +1 for keeping this small",
        "-- see +goose docs: we used goose before",
        "-- migrations are applied in order",
        "-- upgrade the data",
        "-- postgres-migrations is the tool we used",
        "----------------------------------------",
    ],
)
def test_ordinary_comments_are_not_markers(tmp_path: Path, comment: str) -> None:
    """Comments that merely mention up, down, undo or a tool are ordinary comments: the file is all UP."""
    m = load_one(tmp_path, "0001_t.sql", f"{comment}\ncreate table t (a int);\n")
    assert texts(m) == ["create table t (a int)"]
    assert m.down is None


# ---------------------------------------------------------------------------- MIGRATE_FILENAME_PATTERN / MIGRATE_ORDER

STAGE = r"migration-(?P<name>[a-z]+)-(?P<version>\d{4})-\d{8}\.sql"
DATED = r"(?P<version>\d{4}-\d{2}-\d{2}_[a-z0-9_]+)\.sql"
DIRECTED = r"(?P<version>\d+)-(?P<name>[a-z_]+)\.(?P<direction>[a-z]+)\.sql"


@pytest.mark.parametrize(
    ("pattern", "order", "names", "expected"),
    [
        (
            STAGE,
            "numeric",
            ["migration-schema-0010-20240301.sql", "migration-data-0002-20240115.sql", "README.md", "schema.sql"],
            [("2", "data"), ("10", "schema")],
        ),
        (
            DATED,
            "lexical",
            ["2024-02-01_add_email.sql", "2024-01-15_add_users.sql", "2024-01-15_add_teams.sql"],
            [
                ("2024-01-15_add_teams", "2024-01-15_add_teams"),
                ("2024-01-15_add_users", "2024-01-15_add_users"),
                ("2024-02-01_add_email", "2024-02-01_add_email"),
            ],
        ),
        (
            r"(?P<version>[A-Za-z0-9]+)__(?P<name>.+)\.sql",
            "lexical",
            ["b__x.sql", "B__y.sql", "a__z.sql", "10__w.sql", "9__v.sql"],
            [("10", "w"), ("9", "v"), ("B", "y"), ("a", "z"), ("b", "x")],
        ),
        (
            DIRECTED,
            "numeric",
            ["1-users.apply.sql", "1-users.undo.sql", "2-teams.up.sql", "2-teams.rollback.sql"],
            [("1", "users"), ("2", "teams")],
        ),
    ],
)
def test_filename_pattern(
    tmp_path: Path, pattern: str, order: str, names: list[str], expected: list[tuple[str, str]]
) -> None:
    """A pattern's version/name/direction groups name the migrations; order is numeric or by bytes."""
    folder = make_dir(tmp_path, {n: f"select '{n}';\n" for n in names})
    migrations = load(folder, pattern=pattern, order=order)
    assert [(m.key, m.name) for m in migrations] == expected
    assert all(m.layout == "pattern" for m in migrations)


def test_filename_pattern_direction_gives_the_down_file(tmp_path: Path) -> None:
    """A `direction` of down (or rollback, undo, revert) makes the file the down of its version."""
    folder = make_dir(tmp_path, {"1-users.up.sql": "create table u (a int);\n", "1-users.undo.sql": "drop table u;\n"})
    (m,) = load(folder, pattern=DIRECTED)
    assert m.down is not None
    assert m.down.path.name == "1-users.undo.sql"
    assert [s.text for s in m.down.statements] == ["drop table u"]


def test_filename_pattern_without_name_group_uses_the_stem(tmp_path: Path) -> None:
    """Without a `name` group the migration's name is the file name without .sql."""
    folder = make_dir(tmp_path, {"v0003-prod.sql": "select 1;\n"})
    (m,) = load(folder, pattern=r"v(?P<version>\d+)-.*\.sql")
    assert (m.key, m.name) == ("3", "v0003-prod")


@pytest.mark.parametrize(
    ("pattern", "order", "files", "bad_file", "words"),
    [
        (STAGE, "numeric", ["migration-data-0001-20240101.sql", "0002_other.sql"], "0002_other.sql", [STAGE]),
        (DATED, "numeric", ["2024-01-15_add_users.sql"], "2024-01-15_add_users.sql", ["MIGRATE_ORDER=lexical"]),
        (DIRECTED, "numeric", ["1-users.sideways.sql"], "1-users.sideways.sql", ["'sideways'", "rollback"]),
        (r"(?P<version>\d*)_x\.sql", "numeric", ["_x.sql"], "_x.sql", ["matched nothing"]),
    ],
)
def test_filename_pattern_bad_files(
    tmp_path: Path, pattern: str, order: str, files: list[str], bad_file: str, words: list[str]
) -> None:
    """A .sql file the pattern does not name (or names badly) is an error naming the file (and the pattern)."""
    folder = make_dir(tmp_path, dict.fromkeys(files, "select 1;\n"))
    with pytest.raises(SourceError) as info:
        load(folder, pattern=pattern, order=order)
    assert info.value.message.startswith(f"{folder / bad_file}: ")
    for word in words:
        assert word in info.value.message


@pytest.mark.parametrize("pattern", ["(?P<version>\\d+", "(?P<v>\\d+)\\.sql", "\\d+\\.sql"])
def test_unusable_filename_pattern_is_a_config_error(tmp_path: Path, pattern: str) -> None:
    """An invalid regex, or one without a `version` group, is a configuration error (exit 2) naming the setting."""
    from job.errors import ConfigError, ExitCode

    folder = make_dir(tmp_path, {"1.sql": "select 1;\n"})
    with pytest.raises(ConfigError) as info:
        load(folder, pattern=pattern)
    assert "MIGRATE_FILENAME_PATTERN" in info.value.message
    assert info.value.exit_code == ExitCode.CONFIG


def test_lexical_order_for_built_in_layouts(tmp_path: Path) -> None:
    """MIGRATE_ORDER=lexical orders numbered files by their version text as written (10 before 9)."""
    folder = make_dir(tmp_path, dict.fromkeys(["9_b.sql", "10_a.sql", "0011_c.sql"], "select 1;\n"))
    assert [m.key for m in load(folder, order="lexical")] == ["0011", "10", "9"]


@pytest.mark.parametrize(
    ("low", "high"),
    [("2024-01-15", "2024-02-01"), ("10", "9"), ("B", "a"), ("a", "b"), ("a", "ab"), ("Z", "é")],
)
def test_lexical_versions_compare_by_bytes(low: str, high: str) -> None:
    """Lexical versions compare as UTF-8 byte strings and are shown as written."""
    assert Version.lexical(low) < Version.lexical(high)
    assert low.encode() < high.encode()
    assert str(Version.lexical(low)) == low


# ---------------------------------------------------------------------------- unreadable files


def _dangling(folder: Path) -> Path:
    link = folder / "0001_x.sql"
    link.symlink_to(folder / "missing-volume" / "0001_x.sql")
    return link


def _loop(folder: Path) -> Path:
    link = folder / "0001_x.sql"
    (folder / "0001_y.link").symlink_to(link)
    link.symlink_to(folder / "0001_y.link")
    return link


def _directory(folder: Path) -> Path:
    path = folder / "0001_x.sql"
    path.mkdir()
    return path


def _fifo(folder: Path) -> Path:
    path = folder / "0001_x.sql"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_dangling, "symbolic link to nothing"),
        (_loop, "not accessible"),
        (_directory, "directory"),
        (_fifo, "not a regular file"),
    ],
)
def test_unreadable_migration_file_is_an_error(tmp_path: Path, make: Any, why: str) -> None:
    """A .sql entry that cannot be read as a file (dangling link, loop, directory, FIFO) is an error naming it."""
    folder = make_dir(tmp_path, {"0002_later.sql": "select 2;\n"})
    bad = make(folder)
    with pytest.raises(SourceError) as info:
        load(folder)
    assert info.value.message.startswith(f"{bad}: cannot read this migration file")
    assert why in info.value.message


def test_read_error_is_an_error(tmp_path: Path) -> None:
    """A file whose read fails (here /proc/self/mem: EIO, even for root) is an error naming it with the reason."""
    folder = make_dir(tmp_path, {})
    (folder / "0001_x.sql").symlink_to("/proc/self/mem")
    with pytest.raises(SourceError) as info:
        load(folder)
    assert info.value.message == f"{folder / '0001_x.sql'}: cannot read this migration file: Input/output error"


def test_unreadable_down_file_is_an_error(tmp_path: Path) -> None:
    """A golang-migrate down file that is a dangling symlink is an error naming it, not a missing down."""
    folder = make_dir(tmp_path, {"1_x.up.sql": "select 1;\n"})
    (folder / "1_x.down.sql").symlink_to(folder / "gone.sql")
    with pytest.raises(SourceError) as info:
        load(folder)
    assert "1_x.down.sql: cannot read this migration file" in info.value.message


# ---------------------------------------------------------------------------- repeatables in every layout


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (paths relative to the folder, e.g. `repeatable/views.sql`) into a fresh migrations folder."""
    folder = root / "migrations"
    folder.mkdir()
    for name, body in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("names", "keys", "layout"),
    [
        (["R__views.sql", "0002_b.sql", "0001_a.sql", "R__funcs.sql"], ["1", "2", "R__funcs", "R__views"], "numbered"),
        (["2-b.sql", "R__views.sql", "1-a.sql"], ["1", "2", "R__views"], "numbered"),
        (
            ["20240101120000_a.sql", "20240101_130000_b.sql", "R__v.sql"],
            ["20240101120000", "20240101130000", "R__v"],
            "numbered",
        ),
        (["1_a.up.sql", "1_a.down.sql", "R__views.sql", "10_b.up.sql"], ["1", "10", "R__views"], "golang"),
        (["V1__a.sql", "R__views.sql"], ["1", "R__views"], "flyway"),
        (["0001_a.sql", "0001_a_rollback.sql", "R__views.sql"], ["1", "R__views"], "numbered"),
        (["R__views.sql"], ["R__views"], "flyway"),
    ],
)
def test_r_files_are_repeatables_in_every_layout(
    tmp_path: Path, names: list[str], keys: list[str], layout: str
) -> None:
    """R__name.sql beside numbered, golang-migrate or Flyway files is a repeatable, run last by name, of that layout."""
    migrations = load(make_dir(tmp_path, dict.fromkeys(names, "select 1;\n")))
    assert [m.key for m in migrations] == keys
    assert {m.layout for m in migrations} == {layout}
    assert [m.repeatable for m in migrations] == [k.startswith("R__") for k in keys]


@pytest.mark.parametrize(
    ("files", "keys", "names"),
    [
        (
            {"0001_a.sql": "", "repeatable/views.sql": "", "repeatable/funcs.sql": ""},
            ["1", "R__funcs", "R__views"],
            ["a", "funcs", "views"],
        ),
        ({"0001_a.sql": "", "repeatable/R__views.sql": ""}, ["1", "R__views"], ["a", "views"]),
        (
            {"0001_a.sql": "", "R__b.sql": "", "repeatable/a.sql": "", "repeatable/c.sql": ""},
            ["1", "R__a", "R__b", "R__c"],
            ["a", "a", "b", "c"],
        ),
        ({"1_a.up.sql": "", "repeatable/0001_views.sql": ""}, ["1", "R__0001_views"], ["a", "0001_views"]),
        ({"repeatable/views.sql": ""}, ["R__views"], ["views"]),
        (
            {"0001_a.sql": "", "repeatable/.hidden.sql": "", "repeatable/README.md": "", "repeatable/old/x.sql": ""},
            ["1"],
            ["a"],
        ),
    ],
)
def test_repeatable_folder(tmp_path: Path, files: dict[str, str], keys: list[str], names: list[str]) -> None:
    """Every *.sql of a repeatable/ subfolder is a repeatable named by its stem (an R__ prefix dropped), run by name."""
    folder = make_tree(tmp_path, {k: v or "select 1;\n" for k, v in files.items()})
    migrations = load(folder)
    assert [m.key for m in migrations] == keys
    assert [m.name for m in migrations] == names
    assert all(m.repeatable for m in migrations if m.key.startswith("R__"))


def test_repeatable_folder_files_take_the_folder_layout(tmp_path: Path) -> None:
    """A repeatable/ file beside golang-migrate files is of the golang layout (so `create` sees one layout)."""
    migrations = load(make_tree(tmp_path, {"1_a.up.sql": "select 1;\n", "repeatable/views.sql": "select 1;\n"}))
    assert [m.layout for m in migrations] == ["golang", "golang"]
    assert migrations[1].path == tmp_path / "migrations" / "repeatable" / "views.sql"


@pytest.mark.parametrize(
    ("files", "bad", "other"),
    [
        ({"0001_a.sql": "", "R__views.sql": "", "repeatable/views.sql": ""}, "repeatable/views.sql", "R__views.sql"),
        (
            {"repeatable/R__views.sql": "", "repeatable/views.sql": ""},
            "repeatable/views.sql",
            "repeatable/R__views.sql",
        ),
    ],
)
def test_repeatable_defined_twice_is_an_error(tmp_path: Path, files: dict[str, str], bad: str, other: str) -> None:
    """The same repeatable name from two files is refused naming both files."""
    folder = make_tree(tmp_path, {k: "select 1;\n" for k in files})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert info.value.message == f"{folder / bad}: repeatable migration 'views' is defined twice (also {other})"


@pytest.mark.parametrize(
    ("names", "layout"),
    [
        (["0001_a.sql", "R__b.sql"], "numbered"),
        (["1_a.up.sql", "R__b.sql"], "golang"),
        (["R__b.sql"], "golang"),
    ],
)
def test_forced_layout_accepts_r_files(tmp_path: Path, names: list[str], layout: str) -> None:
    """MIGRATE_FORMAT=numbered/golang accepts R__ files beside the layout's files."""
    migrations = load(make_dir(tmp_path, dict.fromkeys(names, "select 1;\n")), layout=layout)
    assert {m.layout for m in migrations} == {layout}


@pytest.mark.parametrize(
    "names",
    [
        ["0001_a.sql", "V2__b.sql", "R__c.sql"],
        ["1_a.up.sql", "2_b.sql", "R__c.sql"],
    ],
)
def test_r_files_do_not_hide_a_mixed_folder(tmp_path: Path, names: list[str]) -> None:
    """A folder mixing versioned layouts is still refused when it also has R__ files."""
    with pytest.raises(SourceError, match="mixed migration layouts"):
        load(make_dir(tmp_path, dict.fromkeys(names, "select 1;\n")))


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("-- UP\ncreate view v as select 1;\n-- DOWN\ndrop view v;\n", 3),
        ("-- migrate:up\ncreate view v as select 1;\n\n-- migrate:down\ndrop view v;\n", 4),
        ("-- +goose Up\ncreate view v as select 1;\n-- +goose Down\ndrop view v;\n", 3),
        ("create view v as select 1;\n-- DOWN\n", 2),
    ],
)
@pytest.mark.parametrize("name", ["R__views.sql", "repeatable/views.sql"])
def test_repeatable_with_a_down_section_is_an_error(tmp_path: Path, name: str, body: str, line: int) -> None:
    """A down section in a repeatable is refused with file:line: a repeatable is never rolled back."""
    folder = make_tree(tmp_path, {"0001_a.sql": "select 1;\n", name: body})
    with pytest.raises(SourceError) as info:
        load(folder)
    assert info.value.message.startswith(f"{folder / name}:{line}: ")
    assert "repeatable migration cannot have" in info.value.message


@pytest.mark.parametrize(
    ("body", "statements", "transactional"),
    [
        ("-- UP\ncreate view v as select 1;\n", ["create view v as select 1"], True),
        ("-- migrate:up\nselect 1;\nselect 2;\n", ["select 1", "select 2"], True),
        ("-- migrate:up transaction:false\nselect 1;\n", ["select 1"], False),
        ("-- migrate-job: transaction=off\nselect 1;\n", ["select 1"], False),
        ("create index concurrently i on t (a);\n", ["create index concurrently i on t (a)"], False),
        ("-- +goose NO TRANSACTION\nselect 1;\n", ["select 1"], False),
    ],
)
@pytest.mark.parametrize("name", ["R__views.sql", "repeatable/views.sql"])
def test_repeatable_markers_directives_and_transactions(
    tmp_path: Path, name: str, body: str, statements: list[str], transactional: bool
) -> None:
    """A repeatable keeps UP markers, directives and the transactional/non-transactional detection."""
    folder = make_tree(tmp_path, {"0001_a.sql": "select 1;\n", name: body})
    rep = load(folder)[-1]
    assert rep.key == "R__views"
    assert texts(rep) == statements
    assert rep.transactional is transactional
    assert rep.down is None


@pytest.mark.parametrize(
    ("files", "bad"),
    [
        (["1_a.up.sql", "R__views.up.sql"], "R__views.up.sql"),
        (["1_a.up.sql", "R__views.down.sql"], "R__views.down.sql"),
        (["0001_a.sql", "R__views.sql", "R__views_rollback.sql"], "R__views_rollback.sql"),
        (["0001_a.sql", "repeatable/views.down.sql"], "repeatable/views.down.sql"),
    ],
)
def test_repeatable_named_like_a_down_file_is_an_error(tmp_path: Path, files: list[str], bad: str) -> None:
    """`R__x.down.sql` / `R__x_rollback.sql` beside numbered or golang files is refused: it would run as an up."""
    folder = make_tree(tmp_path, dict.fromkeys(files, "select 1;\n"))
    with pytest.raises(SourceError) as info:
        load(folder)
    assert info.value.message.startswith(f"{folder / bad}: a repeatable migration has no up/down pair")
    expected = "rename it to R__views.sql" if bad.endswith(".up.sql") else "remove it"
    assert info.value.message.endswith(expected)


def test_flyway_repeatable_may_end_in_rollback(tmp_path: Path) -> None:
    """In a Flyway folder `R__x_rollback.sql` is an ordinary repeatable (Flyway's own meaning)."""
    migrations = load(make_dir(tmp_path, dict.fromkeys(["V1__a.sql", "R__audit_rollback.sql"], "select 1;\n")))
    assert [m.key for m in migrations] == ["1", "R__audit_rollback"]


@pytest.mark.parametrize(
    "extra",
    [
        "beforeMigrate.sql",
        "afterMigrate.sql",
        "afterMigrate__grant.sql",
        "beforeEachMigrate.sql",
        "afterEachMigrate__log.sql",
        "afterMigrateError.sql",
        "callbacks/beforeMigrate.sql",
        "callbacks/anything.sql",
    ],
)
@pytest.mark.parametrize("pattern", [None, r"(?P<version>\d+)_(?P<name>.+)\.sql"])
def test_callbacks_are_not_migrations(tmp_path: Path, extra: str, pattern: str | None) -> None:
    """Flyway-named callback files and a callbacks/ subfolder are left out of the migrations."""
    folder = make_tree(tmp_path, {"0001_a.sql": "select 1;\n", extra: "not sql at all"})
    assert [m.key for m in load(folder, pattern=pattern)] == ["1"]


@pytest.mark.parametrize(
    ("order", "names", "keys"),
    [
        (
            "numeric",
            ["2-b.sql", "10-c.sql", "R__views.sql", "repeatable/funcs.sql"],
            ["2", "10", "R__funcs", "R__views"],
        ),
        ("lexical", ["2-b.sql", "10-c.sql", "R__views.sql"], ["10", "2", "R__views"]),
    ],
)
def test_filename_pattern_with_repeatables(tmp_path: Path, order: str, names: list[str], keys: list[str]) -> None:
    """R__ files and a repeatable/ folder beside MIGRATE_FILENAME_PATTERN files are repeatables (numeric or lexical)."""
    folder = make_tree(tmp_path, dict.fromkeys(names, "select 1;\n"))
    migrations = load(folder, pattern=r"(?P<version>\d+)-(?P<name>.+)\.sql", order=order)
    assert [m.key for m in migrations] == keys
    assert {m.layout for m in migrations} == {"pattern"}


def test_filename_pattern_that_matches_r_files_leaves_them_repeatable(tmp_path: Path) -> None:
    """A pattern broad enough to match R__views.sql does not make it a version: the R__ form wins."""
    folder = make_dir(tmp_path, dict.fromkeys(["a__x.sql", "R__views.sql"], "select 1;\n"))
    migrations = load(folder, pattern=r"(?P<version>[A-Za-z]+)__(?P<name>.+)\.sql", order="lexical")
    assert [(m.key, m.repeatable) for m in migrations] == [("a", False), ("R__views", True)]


def test_unreadable_repeatable_folder_entry_is_an_error(tmp_path: Path) -> None:
    """A *.sql entry of repeatable/ that is not a readable file (a dangling symlink) is an error naming it."""
    folder = make_tree(tmp_path, {"0001_a.sql": "select 1;\n"})
    (folder / "repeatable").mkdir()
    (folder / "repeatable" / "views.sql").symlink_to(tmp_path / "gone.sql")
    with pytest.raises(SourceError) as info:
        load(folder)
    assert info.value.message.startswith(f"{folder / 'repeatable' / 'views.sql'}: cannot read this migration file")
