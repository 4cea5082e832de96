"""Pure tests of job.source: layouts, ordering, sections, directives, checksums. No database."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
        "\ufeffselect 'é';\n".encode(),
        b"-- UP\ncreate table t (a int);\n-- DOWN\ndrop table t;\n",
    ],
)
def test_checksum_is_sha256_of_bytes(tmp_path: Path, data: bytes) -> None:
    """The checksum is the SHA-256 of the file's exact bytes (line endings and BOM included)."""
    m = load_one(tmp_path, "0001_t.sql", data)
    assert m.checksum == hashlib.sha256(data).hexdigest()


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
