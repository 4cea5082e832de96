"""What the job tells its orchestrator: Kubernetes termination message, GitHub step summary and annotations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pg


def _run(db_url: str, folder: Path, tmp_path: Path, *, github: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MIGRATE_", "DATABASE_URL", "GITHUB_"))}
    env.update(
        DATABASE_URL=db_url,
        MIGRATE_DIR=str(folder),
        MIGRATE_LOG_FORMAT="json",
        MIGRATE_TERMINATION_LOG=str(tmp_path / "termination-log"),
    )
    if github:
        env.update(GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    return subprocess.run(
        [sys.executable, "-m", "job", "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_users.sql").write_text("CREATE TABLE users (id int PRIMARY KEY);\n")
    (d / "0002_email.sql").write_text("ALTER TABLE users ADD COLUMN email text;\n")
    return d


def test_github_summary_lists_applied_migrations(db_url: str, folder: Path, tmp_path: Path) -> None:
    """In GitHub Actions a successful run appends a Markdown table of the applied migrations to the step summary."""
    result = _run(db_url, folder, tmp_path, github=True)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "exit 0" in summary and "| version | name | file | duration |" in summary
    assert "| 1 | users | 0001_users.sql |" in summary and "| 2 | email | 0002_email.sql |" in summary
    assert "::error" not in result.stdout
    assert (tmp_path / "termination-log").read_text() == "migrate-job migrate: exit 0: 2 migration(s) applied\n"


def test_failed_migration_gives_annotation_summary_and_termination_message(
    db_url: str, folder: Path, tmp_path: Path
) -> None:
    """A failing migration: `::error file=…,line=…::` on stdout, the error in the summary, one-line termination log."""
    (folder / "0003_broken.sql").write_text(
        "-- backfill\nUPDATE users SET email = 'x';\nSELECT * FROM missing_table;\n"
    )
    result = _run(db_url, folder, tmp_path, github=True)
    assert result.returncode == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert len(annotations) == 1
    assert f"file={folder / '0003_broken.sql'}".replace(":", "%3A") in annotations[0]
    assert ",line=3," in annotations[0] and "missing_table" in annotations[0]
    summary = (tmp_path / "summary.md").read_text()
    assert "exit 1" in summary and "0003_broken.sql:3" in summary
    message = (tmp_path / "termination-log").read_text()
    assert message.count("\n") == 1 and message.startswith("migrate-job migrate: exit 1: ")
    assert "0003_broken.sql:3" in message


def test_outside_github_no_annotations(db_url: str, folder: Path, tmp_path: Path) -> None:
    """Without GITHUB_ACTIONS the job prints no workflow commands and writes no step summary."""
    (folder / "0003_broken.sql").write_text("SELECT * FROM missing_table;\n")
    result = _run(db_url, folder, tmp_path, github=False)
    assert result.returncode == 1
    assert "::error" not in result.stdout
    assert not (tmp_path / "summary.md").exists()
    assert (tmp_path / "termination-log").read_text().startswith("migrate-job migrate: exit 1: ")
