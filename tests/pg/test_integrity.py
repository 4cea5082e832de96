"""CI without a database (`hash`, `validate --offline`), the sum file at deploy time, and `dump`, through the real CLI.

The offline checks run with DATABASE_URL pointing at a listening socket that nobody may connect to: a connection
attempt would be queued by the kernel and found afterwards. `dump` runs against the test server.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from job.errors import ExitCode
from job.integrity import SUM_FILE
from tests.pg import cli
from tests.pg.cli import Result, pg_tool, write

pytestmark = pytest.mark.pg

FILES = {
    "0001_create_users.sql": "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n",
    "0001_create_users_rollback.sql": "DROP TABLE users;\n",
    "0002_create_orders.sql": ("CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));\n"),
    "0002_create_orders_rollback.sql": "DROP TABLE orders;\n",
    "0003_add_note.sql": "ALTER TABLE orders ADD COLUMN note text;\n",
}


@pytest.fixture
def trap() -> Iterator[socket.socket]:
    """A listening socket that is never accepted from: a connection attempt to it stays queued, to be found."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def trap_url(trap: socket.socket) -> str:
    return f"postgresql://app:s3cret-Offline@127.0.0.1:{trap.getsockname()[1]}/app"


def assert_no_connection(trap: socket.socket, result: Result) -> None:
    """Nobody connected to the trap, and the run logged no connection event."""
    with pytest.raises(BlockingIOError):
        conn, _ = trap.accept()
        conn.close()
    assert not [e for e in result.logs if str(e.get("event", "")).startswith("db.")], result.describe()


def offline(trap: socket.socket, folder: Path, *args: str, **env: str) -> Result:
    """`validate --offline --dir FOLDER ARGS` with DATABASE_URL at the trap; asserts it never connected."""
    result = cli.run(trap_url(trap), "validate", "--offline", "--dir", str(folder), *args, cwd=folder.parent, **env)
    assert_no_connection(trap, result)
    return result


def hash_folder(folder: Path, *args: str, **env: str) -> Result:
    """`hash --dir FOLDER` without any database setting; must exit 0."""
    result = cli.run(None, "hash", "--dir", str(folder), *args, cwd=folder.parent, **env)
    assert result.returncode == 0, result.describe()
    return result


def hashed(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    folder = write(tmp_path / "migrations", files or FILES)
    hash_folder(folder)
    return folder


def error_of(result: Result) -> str:
    assert result.returncode == ExitCode.VALIDATION, result.describe()
    return result.error_text()


# ---------------------------------------------------------------------------- hash


def test_hash_writes_one_line_per_file_and_a_total(tmp_path: Path) -> None:
    """`hash` writes <dir>/migrate-job.sum: a header, the total, each file with the checksum the history stores."""
    folder = write(tmp_path / "migrations", FILES)
    result = hash_folder(folder)
    path = folder / SUM_FILE
    data = path.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert lines[0].startswith("# migrate-job.sum v1")
    names = [
        "0001_create_users.sql",
        "0001_create_users_rollback.sql",
        "0002_create_orders.sql",
        "0002_create_orders_rollback.sql",
        "0003_add_note.sql",
    ]
    file_lines = [f"{name} sha256:{cli.sha256(folder / name)}" for name in names]
    assert lines[2:] == file_lines
    total = hashlib.sha256("".join(line + "\n" for line in file_lines).encode()).hexdigest()
    assert lines[1] == f"total sha256:{total}"
    assert f"{path}: 5 file(s), total sha256:{total}" in result.stdout
    assert result.events("sum.written")[0]["files"] == 5


def test_hash_is_deterministic_and_ignores_line_endings(tmp_path: Path) -> None:
    """A second `hash` leaves the file as it is; a CRLF checkout of the same files writes the same bytes."""
    folder = hashed(tmp_path)
    first = (folder / SUM_FILE).read_bytes()
    again = hash_folder(folder)
    assert "(unchanged)" in again.stdout and again.events("sum.unchanged")
    crlf = write(tmp_path / "crlf" / "migrations", {n: t.replace("\n", "\r\n") for n, t in FILES.items()})
    hash_folder(crlf)
    assert (folder / SUM_FILE).read_bytes() == first == (crlf / SUM_FILE).read_bytes()


def test_hash_dry_run_prints_the_file_and_writes_nothing(tmp_path: Path) -> None:
    """`hash --dry-run` prints what it would write; the folder is unchanged."""
    folder = write(tmp_path / "migrations", FILES)
    result = hash_folder(folder, "--dry-run")
    assert not (folder / SUM_FILE).exists()
    hash_folder(folder)
    assert result.stdout == (folder / SUM_FILE).read_text()


def test_hash_refuses_a_folder_that_does_not_parse(tmp_path: Path) -> None:
    """A file name that is not a migration stops `hash` (exit 4, naming it) and writes no sum file."""
    folder = write(tmp_path / "migrations", {**FILES, "notes.sql": "SELECT 1;"})
    result = cli.run(None, "hash", "--dir", str(folder), cwd=tmp_path)
    assert "notes.sql: file name does not parse" in error_of(result)
    assert not (folder / SUM_FILE).exists()


# ---------------------------------------------------------------------------- validate --offline


def test_offline_validate_passes_without_a_database(tmp_path: Path, trap: socket.socket) -> None:
    """A hashed folder passes `validate --offline` (exit 0) without any connection attempt."""
    folder = hashed(tmp_path)
    result = offline(trap, folder)
    assert result.returncode == 0, result.describe()
    assert f"ok: 3 migration(s) match {folder / SUM_FILE}" in result.stdout


def test_offline_validate_needs_no_database_setting(tmp_path: Path) -> None:
    """No DATABASE_URL, no PG* variables: `validate --offline` still runs (CI on a pull request has no secrets)."""
    folder = hashed(tmp_path)
    result = cli.run(None, "validate", "--offline", "--dir", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.describe()


def test_offline_validate_without_a_sum_file_says_to_run_hash(tmp_path: Path, trap: socket.socket) -> None:
    """No migrate-job.sum in the folder: exit 4 saying to run `migrate-job hash`."""
    folder = write(tmp_path / "migrations", FILES)
    text = error_of(offline(trap, folder))
    assert f"{folder / SUM_FILE} not found: run `migrate-job hash` and commit it" in text


def _edit(folder: Path) -> str:
    with (folder / "0002_create_orders.sql").open("a") as f:
        f.write("CREATE INDEX orders_user_idx ON orders (user_id);\n")
    return "0002_create_orders.sql edited"


def _add(folder: Path) -> str:
    (folder / "0004_add_status.sql").write_text("ALTER TABLE orders ADD COLUMN status text;\n")
    return "0004_add_status.sql added"


def _remove(folder: Path) -> str:
    (folder / "0003_add_note.sql").unlink()
    return "0003_add_note.sql removed"


def _edit_down(folder: Path) -> str:
    (folder / "0001_create_users_rollback.sql").write_text("DROP TABLE users CASCADE;\n")
    return "0001_create_users_rollback.sql edited"


@pytest.mark.parametrize("change", [_edit, _add, _remove, _edit_down], ids=["edited", "added", "removed", "down"])
def test_offline_validate_names_each_changed_file(tmp_path: Path, trap: socket.socket, change: object) -> None:
    """A file edited, added or removed since `hash` (a down file too): exit 4 naming it, with the hint to re-hash."""
    folder = hashed(tmp_path)
    assert callable(change)
    expected = change(folder)
    result = offline(trap, folder)
    text = error_of(result)
    assert f"{folder / SUM_FILE} does not match the migrations: {expected}" in text
    assert "if the change is intended, run `migrate-job hash` and commit migrate-job.sum" in text
    name, kind = expected.split()
    assert f"problem: {folder / name}: {kind} since `migrate-job hash`" in result.stdout
    hash_folder(folder)
    assert offline(trap, folder).returncode == 0


def test_offline_validate_reports_every_change_at_once(tmp_path: Path, trap: socket.socket) -> None:
    """Several changes are all named, in one run."""
    folder = hashed(tmp_path)
    expected = [_edit(folder), _add(folder), _remove(folder)]
    result = offline(trap, folder)
    assert f"does not match the migrations: {', '.join(expected)};" in error_of(result)
    assert result.stdout.count("problem: ") == 3


def test_offline_validate_detects_a_changed_order(tmp_path: Path, trap: socket.socket) -> None:
    """The same files applied in another order (here MIGRATE_ORDER=lexical: 10 before 2) fail with exit 4."""
    folder = write(tmp_path / "migrations", {"1_a.sql": "SELECT 1;", "2_b.sql": "SELECT 2;", "10_c.sql": "SELECT 3;"})
    hash_folder(folder)
    assert offline(trap, folder).returncode == 0
    result = offline(trap, folder, MIGRATE_ORDER="lexical")
    text = error_of(result)
    assert "the order changed" in text
    assert "the order of the migrations changed since `migrate-job hash`: 10_c.sql now runs before 2_b.sql" in (
        result.stdout
    )


def test_offline_validate_detects_a_sum_file_merged_from_two_branches(tmp_path: Path, trap: socket.socket) -> None:
    """Two branches each add a migration; a merge that keeps both lines but one total fails, as does a conflict."""
    main = hashed(tmp_path / "main", {**FILES, "0004_a.sql": "SELECT 4;\n"})
    other = hashed(tmp_path / "other", {**FILES, "0005_b.sql": "SELECT 5;\n"})
    (main / "0005_b.sql").write_text("SELECT 5;\n")
    line = next(x for x in (other / SUM_FILE).read_text().splitlines() if x.startswith("0005_b.sql "))
    merged = main / SUM_FILE
    merged.write_text(merged.read_text() + line + "\n")  # each line right, the total of one branch
    result = offline(trap, main)
    assert "its total does not match its lines" in error_of(result)
    assert "edited by hand, or merged from two branches" in result.stdout
    ours, theirs = (main / SUM_FILE).read_text().splitlines(), (other / SUM_FILE).read_text().splitlines()
    conflicted = [ours[0], "<<<<<<< HEAD", ours[1], "=======", theirs[1], ">>>>>>> other", *ours[2:], line]
    merged.write_text("\n".join(conflicted) + "\n")
    text = error_of(offline(trap, main))
    assert f"{merged}:2: a merge conflict marker" in text
    hash_folder(main)
    assert offline(trap, main).returncode == 0


def test_offline_validate_reports_syntax_errors_in_up_and_down_with_file_and_line(
    tmp_path: Path, trap: socket.socket
) -> None:
    """A syntax error in an up file, and one in a down section that migrate itself never parses: exit 4, file:line."""
    files = {
        **FILES,
        "0003_add_note.sql": "ALTER TABLE orders ADD COLUMN note text;\n\nALTER TABLE orders ADD COLUM x text;\n",
        "0004_markers.sql": "-- UP\nCREATE TABLE t (id int);\n-- DOWN\nDROP TABEL t;\n",
    }
    folder = hashed(tmp_path, files)
    result = offline(trap, folder)
    text = error_of(result)
    assert text.startswith(f"validate --offline: {folder / '0003_add_note.sql'}:3:")
    assert "syntax error" in text and "(and 1 more problem(s))" in text
    assert f"problem: {folder / '0004_markers.sql'}:4:" in result.stdout


def test_offline_validate_refuses_a_created_migration_left_empty(tmp_path: Path, trap: socket.socket) -> None:
    """A file `create` wrote and nobody filled in fails CI (exit 4), as it would fail migrate."""
    folder = write(tmp_path / "migrations", FILES)
    created = cli.run(None, "create", "add_things", "--dir", str(folder), cwd=tmp_path)
    assert created.returncode == 0, created.describe()
    hash_folder(folder)
    text = error_of(offline(trap, folder))
    assert "empty migration, created at" in text and "by migrate-job create" in text


LINT_ERROR = "CREATE INDEX orders_note_idx ON orders (note);\n"  # MJ001 on an existing table


def test_offline_validate_fails_on_a_lint_error_and_prints_warnings(tmp_path: Path, trap: socket.socket) -> None:
    """An error-level lint finding fails (exit 4, file:line, rule); warnings alone are printed and pass."""
    folder = hashed(tmp_path, {**FILES, "0004_index.sql": LINT_ERROR})
    result = offline(trap, folder)
    text = error_of(result)
    assert text.startswith(f"validate --offline: {folder / '0004_index.sql'}:1:1: MJ001 ")
    assert "CONCURRENTLY" in text
    warned = hashed(tmp_path / "warned", {**FILES, "0004_drop.sql": "ALTER TABLE orders DROP COLUMN note;\n"})
    ok = offline(trap, warned)
    assert ok.returncode == 0, ok.describe()
    assert f"warning: {warned / '0004_drop.sql'}:1:" in ok.stdout and "MJ007" in ok.stdout
    assert "(1 warning(s))" in ok.stdout


def test_offline_validate_lints_only_above_lint_since(tmp_path: Path, trap: socket.socket) -> None:
    """--lint-since V / MIGRATE_LINT_SINCE: findings in migrations up to V (applied, frozen) do not fail."""
    folder = hashed(tmp_path, {**FILES, "0004_index.sql": LINT_ERROR})
    assert offline(trap, folder, "--lint-since", "4").returncode == 0
    assert offline(trap, folder, MIGRATE_LINT_SINCE="4").returncode == 0
    assert offline(trap, folder, "--lint-since", "3").returncode == ExitCode.VALIDATION
    bad = offline(trap, folder, "--lint-since", "four")
    assert bad.returncode == ExitCode.CONFIG and "MIGRATE_LINT_SINCE" in bad.error_text()


def test_offline_validate_annotates_each_problem_in_github_actions(tmp_path: Path, trap: socket.socket) -> None:
    """GITHUB_ACTIONS=true: one `::error file=…,line=…::` per problem, `::warning` per warning, and a step summary."""
    folder = hashed(tmp_path, {**FILES, "0004_index.sql": LINT_ERROR, "0005_drop.sql": "DROP TABLE orders;\n"})
    _edit(folder)
    summary = tmp_path / "summary.md"
    result = offline(trap, folder, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == ExitCode.VALIDATION
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    edited = f"{folder / '0002_create_orders.sql'}".replace(":", "%3A")
    assert any(a.startswith(f"::error file={edited}::") and "edited since" in a for a in annotations), annotations
    lint = f"{folder / '0004_index.sql'}".replace(":", "%3A")
    assert any(a.startswith(f"::error file={lint},line=1,col=1::") and "MJ001" in a for a in annotations)
    assert any(a.startswith("::warning ") and "MJ008" in a for a in annotations), annotations
    text = summary.read_text()
    assert text.startswith("### ❌ migrate-job validate --offline: exit 4")
    assert "2 problem(s):" in text and "1 warning(s):" in text and "0002_create_orders.sql" in text


def test_offline_validate_reports_a_folder_that_does_not_load(tmp_path: Path, trap: socket.socket) -> None:
    """Duplicate versions (or any file the folder cannot be read with) fail with exit 4 naming the file."""
    folder = hashed(tmp_path)
    (folder / "0003_other.sql").write_text("SELECT 1;\n")
    assert "duplicate version 3" in error_of(offline(trap, folder))


# ---------------------------------------------------------------------------- the sum file at deploy time


def test_migrate_ignores_the_sum_file_outside_production(db_url: str, tmp_path: Path) -> None:
    """migrate-job.sum is not a migration: migrate applies the folder; a stale sum does not stop a developer."""
    folder = hashed(tmp_path)
    _add(folder)
    result = cli.migrate(db_url, folder)
    assert result.returncode == 0, result.describe()
    assert cli.versions(db_url) == ["1", "2", "3", "4"]
    status = cli.run(db_url, "status", "--dir", str(folder), cwd=tmp_path)
    assert SUM_FILE not in status.stdout


PRODUCTION = {"MIGRATE_ENV": "production", "MIGRATE_SSLMODE": "disable", "MIGRATE_BACKUP": "none"}


def test_production_migrate_refuses_a_stale_sum_file_before_connecting(tmp_path: Path, trap: socket.socket) -> None:
    """On production a folder whose sum file does not match is refused (exit 4) before any connection; same for
    --dry-run and refresh (before its reset)."""
    folder = hashed(tmp_path)
    _edit(folder)
    for args in (["migrate", "--yes"], ["migrate", "--dry-run"], ["refresh", "--yes"]):
        result = cli.run(trap_url(trap), *args, "--dir", str(folder), cwd=tmp_path, **PRODUCTION)
        assert_no_connection(trap, result)
        text = error_of(result)
        assert "0002_create_orders.sql edited" in text and "run `migrate-job hash`" in text


def test_production_migrate_applies_a_folder_that_matches_its_sum_file(db_url: str, tmp_path: Path) -> None:
    """On production a folder that matches its sum file migrates as usual."""
    folder = hashed(tmp_path)
    result = cli.migrate(db_url, folder, "--yes", **PRODUCTION)
    assert result.returncode == 0, result.describe()
    assert cli.versions(db_url) == ["1", "2", "3"]


# ---------------------------------------------------------------------------- dump


def dump(db_url: str, cwd: Path, *args: str, **env: str) -> Result:
    return cli.run(db_url, "dump", *args, cwd=cwd, MIGRATE_PG_DUMP=pg_tool("pg_dump"), **env)


def test_dump_prints_the_snapshot_migrate_writes(db_url: str, tmp_path: Path) -> None:
    """`dump` prints the normalised schema to stdout: byte for byte the file migrate writes to MIGRATE_SCHEMA_FILE."""
    folder = write(tmp_path / "migrations", FILES)
    written = tmp_path / "db" / "schema.sql"
    result = cli.migrate(db_url, folder, MIGRATE_SCHEMA_FILE=str(written), MIGRATE_PG_DUMP=pg_tool("pg_dump"))
    assert result.returncode == 0, result.describe()
    printed = dump(db_url, tmp_path)
    assert printed.returncode == 0, printed.describe()
    assert printed.stdout == written.read_text()
    assert "CREATE TABLE public.orders" in printed.stdout and "migrate_job_history" not in printed.stdout
    [event] = printed.events("schema.dumped")
    assert event["file"] == "-" and event["objects"] > 0


def test_dump_writes_the_file_only_when_it_changed(db_url: str, tmp_path: Path) -> None:
    """`dump --file F` writes F; again unchanged; MIGRATE_SCHEMA_FILE is the default; `--file -` prints instead."""
    folder = write(tmp_path / "migrations", FILES)
    assert cli.migrate(db_url, folder).returncode == 0
    target = tmp_path / "db" / "schema.sql"
    first = dump(db_url, tmp_path, "--file", str(target))
    assert first.returncode == 0, first.describe()
    assert first.events("schema.dumped")[0]["changed"] is True and target.read_text().startswith("--")
    again = dump(db_url, tmp_path, MIGRATE_SCHEMA_FILE=str(target))
    assert again.returncode == 0 and again.events("schema.dumped")[0]["changed"] is False
    assert "(unchanged)" in again.stdout
    cli.execute(db_url, "CREATE TABLE by_hand (id int)")
    third = dump(db_url, tmp_path, MIGRATE_SCHEMA_FILE=str(target))
    assert third.events("schema.dumped")[0]["changed"] is True and "by_hand" in target.read_text()
    printed = dump(db_url, tmp_path, "--file", "-", MIGRATE_SCHEMA_FILE=str(tmp_path / "other.sql"))
    assert printed.stdout == target.read_text() and not (tmp_path / "other.sql").exists()


def test_dump_works_on_production_without_confirmation(db_url: str, tmp_path: Path) -> None:
    """`dump` only reads: on production it needs no --yes, takes no backup and changes nothing."""
    folder = write(tmp_path / "migrations", FILES)
    assert cli.migrate(db_url, folder).returncode == 0
    before = cli.snapshot(db_url)
    result = dump(db_url, tmp_path, MIGRATE_ENV="production", MIGRATE_SSLMODE="disable", MIGRATE_BACKUP="pg-dump")
    assert result.returncode == 0, result.describe()
    assert "CREATE TABLE public.users" in result.stdout
    assert not result.events("backup.started") and cli.snapshot(db_url) == before


def test_dump_without_a_usable_pg_dump_exits_2(db_url: str, tmp_path: Path) -> None:
    """A missing pg_dump is said plainly (exit 2, MIGRATE_PG_DUMP named); a snapshot path in MIGRATE_DIR too."""
    missing = cli.run(db_url, "dump", cwd=tmp_path, MIGRATE_PG_DUMP=str(tmp_path / "nowhere" / "pg_dump"))
    assert missing.returncode == ExitCode.CONFIG, missing.describe()
    assert "pg_dump not found" in missing.error_text() and "MIGRATE_PG_DUMP" in missing.error_text()
    folder = write(tmp_path / "migrations", FILES)
    inside = dump(db_url, tmp_path, "--file", str(folder / "schema_dump.sql"), "--dir", str(folder))
    assert inside.returncode == ExitCode.CONFIG, inside.describe()
    assert "write the snapshot outside MIGRATE_DIR" in inside.error_text()
    assert not (folder / "schema_dump.sql").exists()


def test_the_example_migrations_match_their_sum_file(trap: socket.socket) -> None:
    """The repository's migrations/ carries a current migrate-job.sum (after changing a file there, run
    `python -m job hash --dir migrations`); its files predating the lint are not linted (--lint-since 7)."""
    result = offline(trap, cli.ROOT / "migrations", "--lint-since", "7")
    assert result.returncode == 0, result.describe()
