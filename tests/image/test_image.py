"""The container image, built and run for real with podman against a real PostgreSQL.

Run by `make test-image` (which builds the image first); `make test` deselects the `image` marker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.image

IMAGE = os.environ.get("MIGRATE_TEST_IMAGE", "localhost/migrate-job:dev")
REPO = Path(__file__).resolve().parents[2]


def podman(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module", autouse=True)
def image_exists() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make image` (scripts/container-setup.sh) first")
    if podman("image", "exists", IMAGE).returncode != 0:
        pytest.fail(f"image {IMAGE} not built: run `make image` first")


def run_args(db_url: str, *extra: str, name: str | None = None) -> list[str]:
    args = ["run", "--rm", "--read-only", "--network", "host", "-e", f"DATABASE_URL={db_url}"]
    if name:
        args += ["--name", name]
    return [*args, *extra]


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "migrations"
    d.mkdir()
    d.chmod(0o755)
    yield d


def _history(db_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT version, status FROM public.migrate_job_history ORDER BY applied_at").fetchall()
    return [(str(v), str(s)) for v, s in rows]


def test_container_applies_baked_migrations_then_is_a_noop(db_url: str) -> None:
    """The image applies its baked-in /migrations (exit 0); a second run changes nothing (exit 0)."""
    first = podman(*run_args(db_url), IMAGE)
    assert first.returncode == 0, first.stdout + first.stderr
    events = [json.loads(line)["event"] for line in first.stdout.splitlines() if line.startswith("{")]
    assert "migration.applied" in events and events[-1] == "run.finished"
    applied = _history(db_url)
    assert len(applied) == len(list((REPO / "migrations").glob("*.sql")))
    second = podman(*run_args(db_url), IMAGE)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _history(db_url) == applied


def test_container_broken_migration_exits_1(db_url: str, folder: Path) -> None:
    """A failing migration mounted into the container gives exit 1 and leaves no history row."""
    (folder / "0001_ok.sql").write_text("CREATE TABLE ok (id int);\n")
    (folder / "0002_broken.sql").write_text("CREATE TABLE b (id int);\nINSERT INTO missing VALUES (1);\n")
    result = podman(*run_args(db_url, "-v", f"{folder}:/migrations:ro"), IMAGE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _history(db_url) == [("1", "applied")]
    assert "0002_broken.sql:2" in result.stdout


def test_container_runs_as_non_root_with_read_only_root(db_url: str) -> None:
    """The image runs as uid 10001 and works with --read-only (it writes only to /tmp)."""
    who = podman("run", "--rm", "--read-only", "--entrypoint", "id", IMAGE, "-u")
    assert who.stdout.strip() == "10001"
    status = podman(*run_args(db_url), IMAGE, "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["migrations"]


def test_container_pg_dump_present(db_url: str) -> None:
    """The image ships pg_dump of the newest supported PostgreSQL major (17)."""
    out = podman("run", "--rm", "--read-only", "--entrypoint", "pg_dump", IMAGE, "--version")
    assert out.returncode == 0 and " 17." in out.stdout, out.stdout + out.stderr


def test_image_ships_the_rds_ca_bundle() -> None:
    """/etc/ssl/rds/global-bundle.pem holds the Amazon RDS root CAs (for MIGRATE_SSLMODE=verify-full)."""
    out = podman(
        "run",
        "--rm",
        "--read-only",
        "--entrypoint",
        "python3",
        IMAGE,
        "-c",
        "import ssl; c = ssl.create_default_context(cafile='/etc/ssl/rds/global-bundle.pem');"
        "print(len(c.get_ca_certs()))",
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 10


def test_podman_stop_sends_sigterm_and_exits_143(db_url: str, folder: Path) -> None:
    """`podman stop` (SIGTERM) cancels the running migration: exit 143 within the grace period, no trace."""
    (folder / "0001_slow.sql").write_text("CREATE TABLE slow (id int);\nSELECT pg_sleep(60);\n")
    name = f"migrate-job-test-{os.getpid()}"
    proc = subprocess.Popen(
        ["podman", *run_args(db_url, "-v", f"{folder}:/migrations:ro", name=name), IMAGE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            for _ in range(600):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the migration never started")
        podman("stop", "-t", "10", name)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out + err
    assert '"run.interrupted"' in out
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('slow')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
