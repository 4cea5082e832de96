"""What a run loads: a no-op `migrate` (the run every deploy makes) imports only what it uses.

Counted with `python -X importtime`, which lists every module a process imports: a list, not a timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import cli
from tests.pg.cli import migrate, write

pytestmark = pytest.mark.pg

FILES: dict[str, str | bytes] = {
    f"{n:04d}_t{n}.sql": f"CREATE TABLE t{n} (id int PRIMARY KEY);\n" for n in range(1, 21)
}


def imported_by(database_url: str, folder: Path, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "job", *args, "--dir", str(folder)],
        env=cli.clean_env(database_url),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("command", ["migrate", "status"])
def test_a_run_with_nothing_to_apply_loads_no_parser_and_no_aws(db_url: str, tmp_path: Path, command: str) -> None:
    """With every migration applied, migrate and status import neither boto3, pglast nor the apply engine."""
    folder = write(tmp_path / "migrations", FILES)
    assert migrate(db_url, folder).returncode == 0
    modules = imported_by(db_url, folder, command)
    assert "job.commands" in modules  # the list is real
    assert not {"boto3", "botocore", "pglast", "job.apply", "job.script"} & modules


def test_applying_loads_the_parser(db_url: str, tmp_path: Path) -> None:
    """A run with pending migrations parses them first (pglast) and applies them (job.apply)."""
    folder = write(tmp_path / "migrations", FILES)
    modules = imported_by(db_url, folder, "migrate")
    assert {"pglast", "job.apply"} <= modules
    assert not {"boto3", "botocore"} & modules
