"""What a run tells its reader: run.finished counts, the early log format, status via the schema file, summaries."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from job.apply import Outcome
from job.cli import _counts, _create_name, build_parser
from job.commands import RunState
from job.config import early_log_format
from job.errors import ConfigError
from job.plan import StatusRow
from job.report import github_summary, status_json, status_table
from job.source import Migration, load


@pytest.fixture
def migrations(tmp_path: Path) -> list[Migration]:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name in ("0001_a.sql", "0002_b.sql", "0003_c.sql"):
        (folder / name).write_text("-- UP\nSELECT 1;\n-- DOWN\nSELECT 2;\n")
    return load(folder)


def outcomes(ms: list[Migration]) -> list[Outcome]:
    return [Outcome(m, 5) for m in ms]


def test_counts_of_migrate(migrations: list[Migration]) -> None:
    """migrate: applied and what is still pending (e.g. after a failure or a validation error)."""
    state = RunState(applied=outcomes(migrations[:1]), pending=list(migrations))
    assert _counts("migrate", state) == {"applied": 1, "pending": 2}
    assert _counts("migrate", RunState(pending=list(migrations))) == {"applied": 0, "pending": 3}


@pytest.mark.parametrize("command", ["rollback", "reset"])
def test_counts_of_rollback(migrations: list[Migration], command: str) -> None:
    """rollback / reset: rolled_back (never applied=) and what is left to roll back."""
    state = RunState(rolled_back=outcomes(migrations[2:]), to_roll_back=list(reversed(migrations)))
    assert _counts(command, state) == {"rolled_back": 1, "pending": 2}


def test_counts_of_refresh(migrations: list[Migration]) -> None:
    """refresh: rolled back and re-applied."""
    state = RunState(
        rolled_back=outcomes(migrations),
        to_roll_back=list(migrations),
        applied=outcomes(migrations[:2]),
        pending=list(migrations),
    )
    assert _counts("refresh", state) == {"rolled_back": 3, "applied": 2, "pending": 1}


def test_counts_before_settings_exist() -> None:
    """A configuration error (no state yet) reports zero counts of the command's kind."""
    assert _counts("rollback", None) == {"rolled_back": 0, "pending": 0}
    assert _counts("migrate", None) == {"applied": 0, "pending": 0}


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, None, "auto"),
        (None, "console", "console"),
        (None, "JSON", "json"),
        ("json", "console", "json"),
        ("console", "json", "console"),
        (None, "yaml", "auto"),
    ],
)
def test_early_log_format(monkeypatch: pytest.MonkeyPatch, flag: str | None, env: str | None, expected: str) -> None:
    """Before settings exist, errors use --log-format, else MIGRATE_LOG_FORMAT, else auto (invalid → auto)."""
    if env is None:
        monkeypatch.delenv("MIGRATE_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("MIGRATE_LOG_FORMAT", env)
    assert early_log_format(flag) == expected


def parse_create(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["create", *argv])


@pytest.mark.parametrize(
    ("argv", "name"),
    [(["add_x"], "add_x"), (["--name", "add_x"], "add_x"), (["add_x", "--name", "add_x"], "add_x")],
)
def test_create_name_positional_or_option(argv: list[str], name: str) -> None:
    """`create NAME` and `create --name NAME` (the Python manager's form) are the same."""
    assert _create_name(parse_create(*argv)) == name


@pytest.mark.parametrize("argv", [[], ["a", "--name", "b"]])
def test_create_name_missing_or_twice(argv: list[str]) -> None:
    """No name, or two different names, is a usage error."""
    with pytest.raises(ConfigError):
        _create_name(parse_create(*argv))


def test_create_options_parse() -> None:
    """--timestamp / --sequential exclude each other; --style and --dry-run are accepted."""
    args = parse_create("x", "--timestamp", "--style", "rollback", "--dry-run")
    assert (args.version_style, args.style, args.dry_run) == ("timestamp", "rollback", True)
    with pytest.raises(SystemExit):
        parse_create("x", "--timestamp", "--sequential")


def test_repair_takes_dry_run() -> None:
    """`repair --dry-run` parses (it used to exit 2)."""
    assert build_parser().parse_args(["repair", "--dry-run"]).dry_run is True


def test_status_shows_schema_file_rows_as_pending() -> None:
    """A migration the schema file will record shows `pending (schema file)`; JSON keeps state pending + via."""
    rows = [StatusRow("1", "a", "pending", via="schema file"), StatusRow("2", "b", "pending")]
    lines = status_table(rows).splitlines()
    assert lines[1].split()[:5] == ["1", "a", "pending", "(schema", "file)"]
    assert lines[2].split() == ["2", "b", "pending"]
    doc: dict[str, Any] = json.loads(status_json(rows, {}))
    assert [(m["state"], m["via"]) for m in doc["migrations"]] == [("pending", "schema file"), ("pending", None)]


def test_github_summary_of_a_rollback(migrations: list[Migration]) -> None:
    """A rollback's step summary lists the migrations rolled back; a refresh lists both tables."""
    undone = github_summary("rollback", 0, [], None, rolled_back=outcomes(migrations[2:]))
    assert "Rolled back:" in undone and "| 3 | c | 0003_c.sql | 5 ms |" in undone
    assert "No migrations were applied" not in undone
    both = github_summary("refresh", 0, outcomes(migrations), None, rolled_back=outcomes(migrations))
    assert both.index("Rolled back:") < both.index("Applied:")
    assert github_summary("migrate", 0, [], None).endswith("No migrations were applied.\n")
