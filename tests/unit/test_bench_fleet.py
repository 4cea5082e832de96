"""The benchmark's fleet scenario (bench/fleet.py): the targets file, the shell loop and the report, pure."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from bench.fleet import (
    URLS_VAR,
    FleetRun,
    Side,
    env_name,
    fleet_goals,
    fleet_section,
    loop_script,
    target_env,
    targets_toml,
)
from job import targets as job_targets


def _run(fleet_wall: float, loop_wall: float, rss_mb: float = 62.0) -> FleetRun:
    fleet = Side(
        walls=(fleet_wall, fleet_wall + 0.5), cpus=(2.0, 2.2), rss_mb=rss_mb, round_trips=(1600,), connections=100
    )
    loop = Side(walls=(loop_wall,), cpus=(60.0,), rss_mb=55.0, round_trips=(1600,), connections=100)
    return FleetRun(databases=100, migrations=20, parallel=10, rtt_ms=10, fleet=fleet, loop=loop, target_ms=(300, 500))


def test_targets_file_lists_every_database_by_its_own_url_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated targets file is one the fleet command itself accepts: one target per database, in order."""
    text = targets_toml(3)
    assert [t["url_env"] for t in tomllib.loads(text)["targets"]] == [env_name(0), env_name(1), env_name(2)]
    urls = ["postgresql://a/x", "postgresql://a/y", "postgresql://a/z"]
    for name, url in target_env(urls).items():
        monkeypatch.setenv(name, url)
    found, discover = job_targets.parse(tmp_path / "targets.toml", text)
    assert [t.id for t in found] == ["db-0000", "db-0001", "db-0002"]
    assert [t.url.get_secret_value() if t.url else None for t in found] == urls
    assert discover == []


def test_target_env_names_match_the_targets_file() -> None:
    """Database i's URL is in the variable the targets file names for target i."""
    assert target_env(["u0", "u1"]) == {env_name(0): "u0", env_name(1): "u1"}


def test_loop_runs_the_command_once_per_url_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    """The shell loop runs the CLI once per URL, with DATABASE_URL set, and exits with the first failure's code."""
    fake = tmp_path / "fake-cli"
    fake.write_text('#!/bin/sh\necho "$DATABASE_URL $*" >> "$OUT"\n[ "$DATABASE_URL" != bad ] || exit 5\n')
    fake.chmod(0o755)
    script = tmp_path / "loop.sh"
    script.write_text(loop_script([str(fake)], "/m dir"), encoding="utf-8")
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "OUT": str(out), URLS_VAR: "one two"}
    assert subprocess.run(["bash", str(script)], env=env, check=False).returncode == 0
    assert out.read_text().splitlines() == ["one migrate --dir /m dir", "two migrate --dir /m dir"]
    out.unlink()
    env[URLS_VAR] = "one bad three"
    assert subprocess.run(["bash", str(script)], env=env, check=False).returncode == 5
    assert out.read_text().splitlines() == ["one migrate --dir /m dir", "bad migrate --dir /m dir"]


@pytest.mark.parametrize(
    ("fleet_wall", "loop_wall", "rss_mb", "verdicts"),
    [
        (4.0, 72.0, 62.0, ["PASS", "PASS", "PASS"]),
        (4.0, 32.0, 62.0, ["PASS", "PASS", "PASS"]),  # exactly 8×
        (4.0, 31.9, 62.0, ["**FAIL**", "PASS", "PASS"]),
        (4.0, 72.0, 150.0, ["PASS", "**FAIL**", "PASS"]),
    ],
)
def test_goals(fleet_wall: float, loop_wall: float, rss_mb: float, verdicts: list[str]) -> None:
    """The fleet must be at least 8× faster than the loop (medians) and stay under 150 MB peak RSS."""
    run = _run(fleet_wall - 0.25, loop_wall, rss_mb)  # median of (w, w + 0.5) = w + 0.25
    assert [g.verdict for g in fleet_goals(run)] == verdicts


def test_section_shows_speedup_rate_and_round_trips() -> None:
    """The report names wall times, the speed-up, targets per minute, round trips per database and the goals."""
    lines, goals = fleet_section(_run(3.75, 72.0), how_created="Fresh databases.")
    text = "\n".join(lines)
    assert lines[0] == "## Fleet: 100 databases × 20 migrations through 10 ms RTT\n"
    assert "| wall, 100 databases | **4.000 s** | 72.00 s | **18.0×** |" in text
    assert "| targets per minute | **1500** | 83 | — |" in text
    assert "| round trips, whole run (per database) | 1600 (16.0) | 1600 (16.0) | 1.00× |" in text
    assert "| one target's duration in the fleet (report file, last run): median / max | 400 / 500 ms |" in text
    assert "Fresh databases." in text
    assert goals[0].measured == "72.00 s ÷ 4.000 s = 18.0×"
