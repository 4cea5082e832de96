"""Big migrations: a message of tens of megabytes is sent whole (regression: it used to hang half-sent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.pg


def _run(db_url: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MIGRATE_", "DATABASE_URL"))}
    env.update(DATABASE_URL=db_url, MIGRATE_DIR=str(folder), MIGRATE_LOG_FORMAT="json")
    # A hang would hit this generous bound instead of blocking the suite forever.
    return subprocess.run(
        [sys.executable, "-m", "job", "migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_twenty_megabyte_migration_applies(db_url: str, tmp_path: Path) -> None:
    """A 20 MB data migration (one message larger than any socket buffer) is sent whole and committed."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_t.sql").write_text("CREATE TABLE blob (id int PRIMARY KEY, body text);\n")
    row = "x" * 1000
    inserts = "".join(f"INSERT INTO blob VALUES ({i}, '{row}');\n" for i in range(20_000))
    (folder / "0002_data.sql").write_text(inserts)
    assert (folder / "0002_data.sql").stat().st_size > 20_000_000
    result = _run(db_url, folder)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM blob").fetchone() == (20_000,)


def test_single_transaction_of_many_big_migrations(db_url: str, tmp_path: Path) -> None:
    """--single-transaction sends every pending migration in one message, however large, all or nothing."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_t.sql").write_text("CREATE TABLE blob (id int PRIMARY KEY, body text);\n")
    row = "y" * 1000
    for n in range(2, 7):
        body = "".join(f"INSERT INTO blob VALUES ({n * 10_000 + i}, '{row}');\n" for i in range(4_000))
        (folder / f"{n:04d}_data.sql").write_text(body)
    result = _run(db_url, folder, "--single-transaction")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM blob").fetchone() == (20_000,)
        assert conn.execute("SELECT count(*) FROM migrate_job_history").fetchone() == (6,)
