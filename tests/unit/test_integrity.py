"""The migrate-job.sum format (job.integrity): rendering, parsing and comparing, table-driven, no database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from job import integrity, source
from job.errors import SourceError
from job.integrity import Entry, SumFile

A = "a" * 64
B = "b" * 64
C = "c" * 64
DIR = Path("db/migrations")
SUM = DIR / integrity.SUM_FILE


def sumfile(*entries: Entry) -> SumFile:
    return SumFile(integrity.total(entries), tuple(entries))


def test_render_is_the_documented_format() -> None:
    """Header line, `total sha256:` over the file lines (each ending in LF), then one `<file> sha256:<hex>` per file."""
    items = [Entry("0001_a.sql", A), Entry("0001_a_rollback.sql", B)]
    text = integrity.render(items)
    lines = text.split("\n")
    assert lines[0] == integrity.HEADER and lines[0].startswith("# migrate-job.sum v1")
    expected_total = hashlib.sha256(f"0001_a.sql sha256:{A}\n0001_a_rollback.sql sha256:{B}\n".encode()).hexdigest()
    assert lines[1:] == [
        f"total sha256:{expected_total}",
        f"0001_a.sql sha256:{A}",
        f"0001_a_rollback.sql sha256:{B}",
        "",
    ]
    assert "\r" not in text and text.endswith("\n")


def test_render_then_parse_round_trips_also_with_crlf_and_spaces_in_names() -> None:
    """What `hash` writes parses back to the same lines, also after a CRLF checkout; names may contain spaces."""
    items = [Entry("1_add users.sql", A), Entry("repeatable/R__view.sql", B)]
    text = integrity.render(items)
    for variant in (text, text.replace("\n", "\r\n")):
        parsed = integrity.parse(SUM, variant)
        assert parsed == sumfile(*items)


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("", 1, "no `total sha256:…` line"),
        (f"# migrate-job.sum v1\n0001_a.sql sha256:{A}\n", 1, "no `total sha256:…` line"),
        (f"total sha256:{A}\n0001_a.sql {A}\n", 2, "not a migrate-job.sum line"),
        (f"total sha256:{A}\n0001_a.sql sha256:{A[:-1]}\n", 2, "not a migrate-job.sum line"),
        (f"total sha256:{A}\n0001_a.sql sha256:{A.upper()}\n", 2, "not a migrate-job.sum line"),
        (f"total sha256:{A}\nsha256:{A}\n", 2, "not a migrate-job.sum line"),
        (f"total sha256:{A}\n0001_a.sql sha256:{A}\n0001_a.sql sha256:{B}\n", 3, "listed twice (also line 2)"),
        (f"<<<<<<< HEAD\ntotal sha256:{A}\n=======\ntotal sha256:{B}\n>>>>>>> b\n", 1, "merge conflict marker"),
        (f"total sha256:{A}\n0001_a.sql sha256:{A}\n=======\n", 3, "merge conflict marker"),
        (f"# migrate-job.sum v2: newer\ntotal sha256:{A}\n", 1, "format v2 is not v1"),
    ],
)
def test_parse_refuses_what_is_not_a_sum_file(text: str, line: int, why: str) -> None:
    """A malformed or conflicted sum file is an error naming `file:line` and saying to run `hash` (exit 4)."""
    with pytest.raises(SourceError) as caught:
        integrity.parse(SUM, text)
    assert caught.value.message.startswith(f"{SUM}:{line}: ")
    assert why in caught.value.message
    assert "run `migrate-job hash`" in caught.value.message
    assert caught.value.fields["line"] == line


def test_parse_ignores_comments_and_blank_lines() -> None:
    """Comment lines (`#`) and blank lines carry no files."""
    text = f"# a note\n\ntotal sha256:{integrity.total([Entry('1_a.sql', A)])}\n# another\n1_a.sql sha256:{A}\n\n"
    assert integrity.parse(SUM, text) == sumfile(Entry("1_a.sql", A))


RECORDED = (Entry("1_a.sql", A), Entry("2_b.sql", B), Entry("3_c.sql", C))


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (list(RECORDED), []),
        ([*RECORDED, Entry("4_d.sql", A)], [("added", "4_d.sql", f"{DIR}/4_d.sql: added since `migrate-job hash`")]),
        (
            [RECORDED[0], Entry("2_b.sql", C), RECORDED[2]],
            [("edited", "2_b.sql", f"{DIR}/2_b.sql: edited since `migrate-job hash`")],
        ),
        ([RECORDED[0], RECORDED[2]], [("removed", "2_b.sql", f"{DIR}/2_b.sql: removed since `migrate-job hash`")]),
        (
            [RECORDED[0], RECORDED[2], RECORDED[1]],
            [("reordered", "3_c.sql", "3_c.sql now runs before 2_b.sql")],
        ),
        (
            [Entry("1_a.sql", B), RECORDED[1], Entry("4_d.sql", C)],
            [
                ("edited", "1_a.sql", "1_a.sql: edited"),
                ("added", "4_d.sql", "4_d.sql: added"),
                ("removed", "3_c.sql", "3_c.sql: removed"),
            ],
        ),
    ],
    ids=["same", "added", "edited", "removed", "reordered", "several"],
)
def test_compare_names_each_change(current: list[Entry], expected: list[tuple[str, str, str]]) -> None:
    """Files added, edited, removed since `hash`, and a changed apply order, are each one change naming the file."""
    changes = integrity.compare(DIR, SUM, sumfile(*RECORDED), current)
    assert [(c.kind, c.path) for c in changes] == [(kind, path) for kind, path, _ in expected]
    for change, (_, _, text) in zip(changes, expected, strict=True):
        assert text in change.message


def test_compare_detects_a_sum_file_whose_lines_do_not_match_its_total() -> None:
    """Lines merged from two branches (each line right, the total from one side) are reported, not trusted."""
    branch = SumFile(integrity.total(RECORDED[:2]), RECORDED)  # the total of one branch, the lines of both
    changes = integrity.compare(DIR, SUM, branch, list(RECORDED))
    assert [c.kind for c in changes] == ["total"]
    assert "its total does not match its lines" in changes[0].message
    assert "run `migrate-job hash`" in changes[0].message


def test_summary_names_the_files_and_the_hint() -> None:
    """The one-line error names each changed file (at most five, then a count) and says to run `hash`."""
    current = [Entry("1_a.sql", B), *(Entry(f"{i}_x.sql", A) for i in range(4, 10))]
    changes = integrity.compare(DIR, SUM, sumfile(*RECORDED), current)
    text = integrity.summary(SUM, changes)
    assert text.startswith(f"{SUM} does not match the migrations: 1_a.sql edited, 4_x.sql added, 5_x.sql added,")
    assert "4 more file(s)" in text  # 6 added and 2 removed: 9 files, 5 named
    assert text.endswith("if the change is intended, run `migrate-job hash` and commit migrate-job.sum")


def _write(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


@pytest.mark.parametrize(
    ("files", "lines"),
    [
        (
            {"2_b.sql": b"SELECT 2;", "10_c.sql": b"SELECT 10;", "1_a.sql": b"SELECT 1;"},
            ["1_a.sql", "2_b.sql", "10_c.sql"],
        ),
        (
            {"1_a.sql": b"SELECT 1;", "1_a_rollback.sql": b"SELECT 0;", "2_b.sql": b"SELECT 2;"},
            ["1_a.sql", "1_a_rollback.sql", "2_b.sql"],
        ),
        (
            {"1_a.up.sql": b"SELECT 1;", "1_a.down.sql": b"", "2_b.up.sql": b"SELECT 2;", "2_b.down.sql": b""},
            ["1_a.up.sql", "1_a.down.sql", "2_b.up.sql", "2_b.down.sql"],
        ),
        (
            {"V1__a.sql": b"SELECT 1;", "U1__a.sql": b"SELECT 0;", "R__view.sql": b"SELECT 9;", "V2__b.sql": b""},
            ["V1__a.sql", "U1__a.sql", "V2__b.sql", "R__view.sql"],
        ),
        ({"1_a.sql": b"SELECT 1;\n-- DOWN\nSELECT 0;\n"}, ["1_a.sql"]),
    ],
    ids=["numeric order", "rollback files", "golang", "flyway", "markers"],
)
def test_entries_follow_the_apply_order_with_each_down_after_its_up(
    tmp_path: Path, files: dict[str, bytes], lines: list[str]
) -> None:
    """One line per file in the order migrate applies them, each separate down file right after its up file."""
    folder = _write(tmp_path / "m", files)
    items = integrity.entries(folder, source.load(folder))
    assert [e.path for e in items] == lines
    for e in items:
        assert e.checksum == source.checksum((folder / e.path).read_bytes())


def test_entries_checksums_ignore_a_bom_and_crlf_like_the_history(tmp_path: Path) -> None:
    """A checkout with CRLF line endings or a BOM (up and down files) gives the same lines as the LF original."""
    lf = _write(tmp_path / "lf", {"1_a.sql": b"SELECT 1;\nSELECT 2;\n", "1_a_rollback.sql": b"SELECT 0;\n"})
    crlf = _write(
        tmp_path / "crlf", {"1_a.sql": b"\xef\xbb\xbfSELECT 1;\r\nSELECT 2;\r\n", "1_a_rollback.sql": b"SELECT 0;\r\n"}
    )
    assert integrity.entries(lf, source.load(lf)) == integrity.entries(crlf, source.load(crlf))
    assert integrity.entries(lf, source.load(lf))[0].checksum == source.load(lf)[0].checksum


def test_the_sum_file_is_not_a_migration(tmp_path: Path) -> None:
    """migrate-job.sum in the folder is skipped by the loader (not a .sql file) and not listed in itself."""
    folder = _write(tmp_path / "m", {"1_a.sql": b"SELECT 1;"})
    (folder / integrity.SUM_FILE).write_text(integrity.render(integrity.entries(folder, source.load(folder))))
    migrations = source.load(folder)
    assert [m.filename for m in migrations] == ["1_a.sql"]
    assert [e.path for e in integrity.entries(folder, migrations)] == ["1_a.sql"]
