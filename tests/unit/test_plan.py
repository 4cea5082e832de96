"""Pure tests of job.plan.build_plan: files vs. a hand-built history. No database."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from job.errors import ValidationFailed
from job.plan import Applied, Plan, build_plan, rollback_plan
from job.source import Migration, load

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_migrations(root: Path, names: list[str]) -> list[Migration]:
    """Write one small migration per name (distinct contents) and load the folder."""
    folder = root / "migrations"
    folder.mkdir()
    for i, name in enumerate(names):
        (folder / name).write_text(f"create table t{i} (a int);\n", encoding="utf-8")
    return load(folder)


def applied(m: Migration, **changes: object) -> Applied:
    """A history row recording `m` as applied with its current checksum (fields overridable)."""
    fields: dict[str, object] = {
        "version": m.key,
        "name": m.name,
        "checksum": m.checksum,
        "status": "applied",
        "applied_at": WHEN,
        "execution_ms": 12,
        "applied_by": "ci",
        "batch": 1,
    }
    fields.update(changes)
    return Applied(**fields)  # type: ignore[arg-type]


def by_version(ms: list[Migration]) -> dict[str, Migration]:
    return {m.key: m for m in ms}


def pending_keys(plan: Plan) -> list[str]:
    return [m.key for m in plan.pending]


def states(plan: Plan) -> list[tuple[str, str]]:
    return [(r.version, r.state) for r in plan.rows]


# ---------------------------------------------------------------------------- pending / applied


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], []),
        (["0001_a.sql"], ["1"]),
        (["10_c.sql", "9_b.sql", "0002_a.sql"], ["2", "9", "10"]),
        (["V1.10__c.sql", "V1.9__b.sql", "V1__a.sql"], ["1", "1.9", "1.10"]),
    ],
)
def test_everything_pending_on_empty_history(tmp_path: Path, names: list[str], expected: list[str]) -> None:
    """With no history every migration is pending, in numeric order, and nothing is wrong."""
    plan = build_plan(make_migrations(tmp_path, names), [])
    assert plan.ok
    assert plan.problems == ()
    assert pending_keys(plan) == expected
    assert states(plan) == [(v, "pending") for v in expected]


@pytest.mark.parametrize(
    ("done", "expected_pending"),
    [
        ([], ["1", "2", "9", "10"]),
        (["1"], ["2", "9", "10"]),
        (["1", "2"], ["9", "10"]),
        (["1", "2", "9"], ["10"]),
        (["1", "2", "9", "10"], []),
    ],
)
def test_applied_and_pending_split(tmp_path: Path, done: list[str], expected_pending: list[str]) -> None:
    """Applied versions are skipped; the rest are pending in order."""
    ms = make_migrations(tmp_path, ["0001_a.sql", "0002_b.sql", "0009_c.sql", "0010_d.sql"])
    index = by_version(ms)
    plan = build_plan(ms, [applied(index[v]) for v in done])
    assert plan.ok
    assert pending_keys(plan) == expected_pending
    expected_states = [(v, "applied" if v in done else "pending") for v in ["1", "2", "9", "10"]]
    assert states(plan) == expected_states


# ---------------------------------------------------------------------------- problems


def test_modified_file_is_a_problem_naming_the_file(tmp_path: Path) -> None:
    """An applied file whose checksum changed is reported as modified, naming the file."""
    ms = make_migrations(tmp_path, ["0001_a.sql", "0002_b.sql"])
    index = by_version(ms)
    plan = build_plan(ms, [applied(index["1"], checksum="0" * 64), applied(index["2"])])
    assert not plan.ok
    (problem,) = plan.problems
    assert problem.kind == "modified"
    assert problem.version == "1"
    assert "0001_a.sql" in problem.message
    assert pending_keys(plan) == []
    assert states(plan) == [("1", "modified"), ("2", "applied")]


@pytest.mark.parametrize(
    ("checksum", "verify", "source"),
    [
        ("0" * 64, False, "migrate-job"),
        (None, True, "migrate-job"),
        ("0" * 64, True, "baseline"),
    ],
)
def test_checksum_not_checked(tmp_path: Path, checksum: str | None, verify: bool, source: str) -> None:
    """No modified problem when checks are off, the history has no checksum, or the row is a baseline."""
    ms = make_migrations(tmp_path, ["0001_a.sql"])
    plan = build_plan(ms, [applied(ms[0], checksum=checksum, source=source)], verify_checksums=verify)
    assert plan.ok
    assert states(plan) == [("1", "applied")]


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    """A version in the history whose file is gone is reported as missing."""
    ms = make_migrations(tmp_path, ["0001_a.sql"])
    gone = Applied(version="2", name="dropped_file", checksum="f" * 64, status="applied", applied_at=WHEN)
    plan = build_plan(ms, [applied(ms[0]), gone])
    assert not plan.ok
    (problem,) = plan.problems
    assert problem.kind == "missing"
    assert problem.version == "2"
    assert "2" in problem.message
    assert "dropped_file" in problem.message
    assert states(plan) == [("1", "applied"), ("2", "missing")]


def test_missing_baseline_row_is_not_a_problem(tmp_path: Path) -> None:
    """A baseline history row has no file by design and is shown as applied."""
    ms = make_migrations(tmp_path, ["0002_a.sql"])
    base = Applied(version="1", name="baseline", checksum=None, status="applied", source="baseline")
    plan = build_plan(ms, [base])
    assert plan.ok
    assert states(plan) == [("1", "applied"), ("2", "pending")]


@pytest.mark.parametrize(
    ("status", "done", "error", "words"),
    [
        ("failed", 2, "42P07: relation exists", ["failed", "statement 3", "42P07: relation exists"]),
        ("failed", None, None, ["failed", "unknown statement"]),
        ("running", 0, None, ["interrupted", "statement 1"]),
    ],
)
def test_failed_or_running_entry_needs_repair(
    tmp_path: Path, status: str, done: int | None, error: str | None, words: list[str]
) -> None:
    """A failed or interrupted entry blocks the plan with a message naming the file and `repair`."""
    ms = make_migrations(tmp_path, ["0001_a.sql", "0002_b.sql"])
    index = by_version(ms)
    row = applied(index["1"], status=status, statements_done=done, error=error, kind="non_transactional")
    plan = build_plan(ms, [row])
    assert not plan.ok
    (problem,) = plan.problems
    assert problem.kind == "failed"
    assert problem.version == "1"
    assert "repair" in problem.message
    assert "0001_a.sql" in problem.message
    for word in words:
        assert word in problem.message
    assert "1" not in pending_keys(plan)
    assert states(plan)[0] == ("1", "failed")


def test_failed_entry_without_file_names_history_name(tmp_path: Path) -> None:
    """A failed entry whose file is gone still yields a repair problem naming the recorded name."""
    ms = make_migrations(tmp_path, ["0001_a.sql"])
    row = Applied(version="2", name="gone_one", checksum=None, status="failed", statements_done=0)
    plan = build_plan(ms, [applied(ms[0]), row])
    (problem,) = plan.problems
    assert problem.kind == "failed"
    assert "gone_one" in problem.message
    assert "repair" in problem.message


@pytest.mark.parametrize(
    ("done", "late", "allow", "problem_versions"),
    [
        (["1", "3"], ["2"], False, ["2"]),
        (["1", "3"], ["2"], True, []),
        (["3"], ["1", "2"], False, ["1", "2"]),
        (["3"], ["1", "2"], True, []),
        (["1", "2"], ["3"], False, []),
    ],
)
def test_out_of_order(
    tmp_path: Path, done: list[str], late: list[str], allow: bool, problem_versions: list[str]
) -> None:
    """A pending version below the highest applied one is a problem unless out-of-order is allowed."""
    ms = make_migrations(tmp_path, ["0001_a.sql", "0002_b.sql", "0003_c.sql"])
    index = by_version(ms)
    plan = build_plan(ms, [applied(index[v]) for v in done], allow_out_of_order=allow)
    assert [p.version for p in plan.problems] == problem_versions
    for p in plan.problems:
        assert p.kind == "out_of_order"
        assert index[p.version].filename in p.message
    assert pending_keys(plan) == late


@pytest.mark.parametrize(
    ("taken_back", "problem_versions"),
    [((), ["1", "2"]), (("2",), ["1"]), (("1", "2"), [])],
)
def test_taken_back_versions_are_not_out_of_order(
    tmp_path: Path, taken_back: tuple[str, ...], problem_versions: list[str]
) -> None:
    """A pending version `rollback` took back (later ones still applied) is re-applied, not out of order."""
    ms = make_migrations(tmp_path, ["0001_a.sql", "0002_b.sql", "0003_c.sql"])
    plan = build_plan(ms, [applied(by_version(ms)["3"])], taken_back=taken_back)
    assert [p.version for p in plan.problems] == problem_versions
    assert pending_keys(plan) == ["1", "2"]


# ---------------------------------------------------------------------------- target


@pytest.mark.parametrize(
    ("target", "done", "pending", "skipped"),
    [
        ("2", [], ["1", "2"], ["3", "10"]),
        ("2.0", [], ["1", "2"], ["3", "10"]),
        ("0002", [], ["1", "2"], ["3", "10"]),
        ("3", ["1"], ["2", "3"], ["10"]),
        ("9", [], ["1", "2", "3"], ["10"]),
        ("10", [], ["1", "2", "3", "10"], []),
        ("1", ["1", "2"], [], ["3", "10"]),
    ],
)
def test_target_excludes_later_versions(
    tmp_path: Path, target: str, done: list[str], pending: list[str], skipped: list[str]
) -> None:
    """--target applies versions up to and including the target; later ones are left for later."""
    ms = make_migrations(tmp_path, ["0001_a.sql", "0002_b.sql", "0003_c.sql", "0010_d.sql"])
    index = by_version(ms)
    plan = build_plan(ms, [applied(index[v]) for v in done], target=target)
    assert plan.ok
    assert pending_keys(plan) == pending
    assert [m.key for m in plan.skipped_after_target] == skipped
    assert [r.version for r in plan.rows] == ["1", "2", "3", "10"]


@pytest.mark.parametrize("target", ["latest", "v2", "", "2024-01-01"])
def test_non_numeric_target_is_a_problem(tmp_path: Path, target: str) -> None:
    """A --target that is not a version number is reported as a problem."""
    ms = make_migrations(tmp_path, ["0001_a.sql"])
    plan = build_plan(ms, [], target=target)
    assert not plan.ok
    assert [p.kind for p in plan.problems] == ["unknown_target"]


# ---------------------------------------------------------------------------- status rows


def test_status_rows_states_sorted_numerically(tmp_path: Path) -> None:
    """Status shows one row per version, numerically sorted, with applied/pending/failed/missing/modified."""
    ms = make_migrations(tmp_path, ["0001_a.sql", "0002_b.sql", "0009_c.sql", "0010_d.sql", "0011_e.sql", "0100_f.sql"])
    index = by_version(ms)
    history = [
        applied(index["10"]),
        applied(index["2"], checksum="e" * 64),
        applied(index["1"]),
        applied(index["9"], status="failed", statements_done=1, error="boom"),
        Applied(version="20", name="removed", checksum="d" * 64, status="applied"),
    ]
    plan = build_plan(ms, history, allow_out_of_order=True)
    assert states(plan) == [
        ("1", "applied"),
        ("2", "modified"),
        ("9", "failed"),
        ("10", "applied"),
        ("11", "pending"),
        ("20", "missing"),
        ("100", "pending"),
    ]
    assert sorted(p.kind for p in plan.problems) == ["failed", "missing", "modified"]
    row = plan.rows[0]
    assert row.name == "a"
    assert row.applied_at == WHEN
    assert row.execution_ms == 12
    assert row.file is not None
    assert row.file.endswith("0001_a.sql")
    failed = plan.rows[2]
    assert failed.error == "boom"


def test_status_rows_flyway_repeatables_last(tmp_path: Path) -> None:
    """Repeatable migrations come after every versioned row in status."""
    ms = make_migrations(tmp_path, ["V1__a.sql", "R__views.sql", "V1.10__c.sql", "V1.9__b.sql", "R__funcs.sql"])
    plan = build_plan(ms, [])
    assert [r.version for r in plan.rows] == ["1", "1.9", "1.10", "R__funcs", "R__views"]
    assert pending_keys(plan) == ["1", "1.9", "1.10", "R__funcs", "R__views"]


@pytest.mark.parametrize(
    ("recorded", "rerun"),
    [
        ("same", False),
        ("changed", True),
    ],
)
def test_repeatable_reruns_when_changed(tmp_path: Path, recorded: str, rerun: bool) -> None:
    """A repeatable migration runs again when its checksum changed, without a modified problem."""
    ms = make_migrations(tmp_path, ["V1__a.sql", "R__views.sql"])
    index = by_version(ms)
    rep = index["R__views"]
    checksum = rep.checksum if recorded == "same" else "c" * 64
    plan = build_plan(ms, [applied(index["1"]), applied(rep, checksum=checksum)])
    assert plan.ok
    assert pending_keys(plan) == (["R__views"] if rerun else [])


def test_status_has_one_row_per_version_for_changed_repeatable(tmp_path: Path) -> None:
    """A changed repeatable migration appears once in status (as pending), not twice."""
    ms = make_migrations(tmp_path, ["V1__a.sql", "R__views.sql"])
    index = by_version(ms)
    plan = build_plan(ms, [applied(index["1"]), applied(index["R__views"], checksum="c" * 64)])
    versions = [r.version for r in plan.rows]
    assert len(versions) == len(set(versions)), versions
    assert states(plan) == [("1", "applied"), ("R__views", "pending")]


# ---------------------------------------------------------------------------- old-style checksums


def write_files(root: Path, files: dict[str, bytes]) -> list[Migration]:
    folder = root / "migrations"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return load(folder)


@pytest.mark.parametrize(
    ("applied_bytes", "checkout"),
    [
        (b"create table t (a int);\r\n", b"create table t (a int);\r\n"),
        (b"create table t (a int);\r\n", b"create table t (a int);\n"),
        (b"\xef\xbb\xbfcreate table t (a int);\n", b"create table t (a int);\r\n"),
    ],
)
def test_raw_byte_checksum_validates_and_is_upgraded(tmp_path: Path, applied_bytes: bytes, checkout: bytes) -> None:
    """A row with the old raw-byte checksum of the same content is no problem and is listed for upgrade."""
    (m,) = write_files(tmp_path, {"0001_t.sql": checkout})
    old = hashlib.sha256(applied_bytes).hexdigest()
    assert old != m.checksum
    plan = build_plan([m], [applied(m, checksum=old)])
    assert plan.ok
    assert states(plan) == [("1", "applied")]
    assert plan.checksum_upgrades == (("1", m.checksum),)


def test_current_checksum_needs_no_upgrade(tmp_path: Path) -> None:
    """A row that already holds the normalised checksum is left alone."""
    (m,) = write_files(tmp_path, {"0001_t.sql": b"create table t (a int);\r\n"})
    assert build_plan([m], [applied(m)]).checksum_upgrades == ()


def test_edit_is_still_modified(tmp_path: Path) -> None:
    """A file whose content changed is still `modified`, whatever its line endings."""
    (m,) = write_files(tmp_path, {"0001_t.sql": b"create table t (a bigint);\r\n"})
    old = hashlib.sha256(b"create table t (a int);\r\n").hexdigest()
    plan = build_plan([m], [applied(m, checksum=old)])
    assert [p.kind for p in plan.problems] == ["modified"]
    assert plan.checksum_upgrades == ()


def test_repeatable_with_old_checksum_is_not_rerun(tmp_path: Path) -> None:
    """An unchanged repeatable recorded with a raw-byte checksum is not re-applied; its row is upgraded."""
    ms = write_files(tmp_path, {"V1__a.sql": b"select 1;\n", "R__views.sql": b"create view v as select 1;\r\n"})
    index = by_version(ms)
    old = hashlib.sha256(b"create view v as select 1;\r\n").hexdigest()
    plan = build_plan(ms, [applied(index["1"]), applied(index["R__views"], checksum=old)])
    assert pending_keys(plan) == []
    assert plan.checksum_upgrades == (("R__views", index["R__views"].checksum),)


# ---------------------------------------------------------------------------- lexical order


def test_lexical_order_plan(tmp_path: Path) -> None:
    """With lexical versions, pending ones apply in byte order; a lower pending one is out of order."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name in ("2024-01-15_users.sql", "2024-02-01_teams.sql", "2024-01-20_email.sql"):
        (folder / name).write_text(f"select '{name}';\n", encoding="utf-8")
    ms = load(folder, pattern=r"(?P<version>[0-9-]+)_(?P<name>\w+)\.sql", order="lexical")
    index = by_version(ms)
    assert pending_keys(build_plan(ms, [])) == ["2024-01-15", "2024-01-20", "2024-02-01"]
    assert pending_keys(build_plan(ms, [], target="2024-01-20")) == ["2024-01-15", "2024-01-20"]
    plan = build_plan(ms, [applied(index["2024-01-15"]), applied(index["2024-02-01"])])
    assert [p.kind for p in plan.problems] == ["out_of_order"]
    assert states(plan) == [("2024-01-15", "applied"), ("2024-01-20", "pending"), ("2024-02-01", "applied")]


# ---------------------------------------------------------------------------- rollback: empty downs


@pytest.mark.parametrize(
    "files",
    [
        {"1_t.up.sql": b"create table t (a int);\n", "1_t.down.sql": b""},
        {"1_t.up.sql": b"create table t (a int);\n", "1_t.down.sql": b"-- nothing to undo\n"},
        {"0001_t.sql": b"-- UP\ncreate table t (a int);\n-- DOWN\n"},
        {"0001_t.sql": b"-- migrate:up\ncreate table t (a int);\n\n-- migrate:down\n\n"},
        {"0001_t.sql": b"-- +goose Up\ncreate table t (a int);\n-- +goose Down\n-- +goose StatementBegin\n"},
        {"0001_t.sql": b"create table t (a int);\n", "0001_t_rollback.sql": b""},
    ],
)
def test_empty_down_is_an_explicit_no_op(tmp_path: Path, files: dict[str, bytes]) -> None:
    """An empty or comment-only down file or section is rolled back (only its history row goes)."""
    (m,) = write_files(tmp_path, files)
    assert rollback_plan([m], [applied(m)], everything=True) == [m]
    assert m.down is not None and m.down.statements == ()


def test_missing_down_is_still_refused(tmp_path: Path) -> None:
    """A version with no down file or section at all is refused before anything runs."""
    (m,) = write_files(tmp_path, {"0001_t.sql": b"create table t (a int);\n"})
    with pytest.raises(ValidationFailed) as info:
        rollback_plan([m], [applied(m)], everything=True)
    assert "has no down migration" in info.value.message


# ---------------------------------------------------------------------------- repeatables in every layout


def make_tree(root: Path, names: list[str]) -> list[Migration]:
    """Write one small migration per relative path (e.g. `repeatable/views.sql`) and load the folder."""
    folder = root / "migrations"
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"create table t{i} (a int);\n", encoding="utf-8")
    return load(folder)


FOLDERS = {
    "numbered": ["0002_b.sql", "R__views.sql", "0001_a.sql", "repeatable/funcs.sql"],
    "golang": ["1_a.up.sql", "1_a.down.sql", "2_b.up.sql", "R__views.sql", "repeatable/funcs.sql"],
    "dbmate": ["20240101120000_a.sql", "20240102120000_b.sql", "R__views.sql", "repeatable/funcs.sql"],
}


@pytest.mark.parametrize(
    ("history_of", "pending", "state_of"),
    [
        ({}, ["a", "b", "R__funcs", "R__views"], {}),
        ({"a": "same", "b": "same", "R__funcs": "same", "R__views": "same"}, [], {}),
        ({"a": "same", "b": "same", "R__funcs": "same", "R__views": "changed"}, ["R__views"], {"R__views": "pending"}),
        ({"a": "same", "R__funcs": "changed", "R__views": "changed"}, ["b", "R__funcs", "R__views"], {}),
        ({"a": "same", "b": "same"}, ["R__funcs", "R__views"], {}),
    ],
)
@pytest.mark.parametrize("layout", sorted(FOLDERS))
def test_repeatables_pending_after_versioned_when_new_or_changed(
    tmp_path: Path, layout: str, history_of: dict[str, str], pending: list[str], state_of: dict[str, str]
) -> None:
    """In every layout repeatables run after all pending versioned ones, by name, when new or changed; no problem."""
    ms = make_tree(tmp_path, FOLDERS[layout])
    key = {m.name if not m.repeatable else m.key: m for m in ms}
    history = [
        applied(key[k], checksum=key[k].checksum if how == "same" else "c" * 64) for k, how in history_of.items()
    ]
    plan = build_plan(ms, history)
    assert plan.ok, plan.problems
    assert [m.name if not m.repeatable else m.key for m in plan.pending] == pending
    rows = {r.version: r.state for r in plan.rows}
    assert len(plan.rows) == len(ms)
    for k, state in state_of.items():
        assert rows[k] == state
    assert [r.version for r in plan.rows][-2:] == ["R__funcs", "R__views"]


def test_changed_repeatable_is_pending_but_edited_versioned_is_modified(tmp_path: Path) -> None:
    """`validate` flags an edited versioned file, not a changed repeatable (that one is pending)."""
    ms = make_tree(tmp_path, ["0001_a.sql", "R__views.sql"])
    index = by_version(ms)
    plan = build_plan(ms, [applied(index["1"], checksum="a" * 64), applied(index["R__views"], checksum="b" * 64)])
    assert [(p.kind, p.version) for p in plan.problems] == [("modified", "1")]
    assert states(plan) == [("1", "modified"), ("R__views", "pending")]


def test_failed_repeatable_is_a_failed_problem(tmp_path: Path) -> None:
    """A repeatable recorded as failed (a non-transactional one) stops the plan like any failed migration."""
    ms = make_tree(tmp_path, ["0001_a.sql", "repeatable/views.sql"])
    index = by_version(ms)
    plan = build_plan(ms, [applied(index["1"]), applied(index["R__views"], status="failed", statements_done=1)])
    assert [(p.kind, p.version) for p in plan.problems] == [("failed", "R__views")]


@pytest.mark.parametrize(
    ("kwargs", "chosen"),
    [
        ({}, ["2", "1"]),
        ({"everything": True}, ["2", "1"]),
        ({"steps": 1}, ["2"]),
        ({"name": "b"}, ["2"]),
    ],
)
def test_rollback_never_selects_repeatables(tmp_path: Path, kwargs: dict[str, object], chosen: list[str]) -> None:
    """Rollback and reset choose only versioned migrations; repeatables of the same batch are left alone."""
    ms = make_tree(tmp_path, ["0001_a.sql", "0002_b.sql", "R__views.sql", "repeatable/funcs.sql"])
    ms = [m if m.repeatable else _with_down(m) for m in ms]
    history = [applied(m) for m in ms]
    assert [m.key for m in rollback_plan(ms, history, **kwargs)] == chosen  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["views", "R__views", "R__views.sql", "funcs"])
def test_rollback_by_name_of_a_repeatable_says_why_not(tmp_path: Path, name: str) -> None:
    """`rollback --name` of a repeatable is refused saying it is never rolled back."""
    ms = make_tree(tmp_path, ["0001_a.sql", "R__views.sql", "repeatable/funcs.sql"])
    with pytest.raises(ValidationFailed) as info:
        rollback_plan(ms, [applied(m) for m in ms], name=name)
    assert "is a repeatable migration: it has no down and is never rolled back" in info.value.message


def _with_down(m: Migration) -> Migration:
    """`m` with its up section as a down (rollback_plan only needs one to exist)."""
    from dataclasses import replace

    return replace(m, down=m.up)
