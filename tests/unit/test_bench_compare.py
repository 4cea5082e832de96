"""The benchmark's side-by-side table and the goals of issue 13 (bench/compare.py): pure formatting."""

from __future__ import annotations

import pytest

from bench.compare import Figures, cell, goals, seconds, side_by_side

MJ = Figures(apply_direct=0.9, apply_proxy=1.4, noop=0.30, round_trips=13, cpu=0.50, rss_mb=56.0)
NPM = Figures(apply_direct=1.2, apply_proxy=6.0, noop=0.35, round_trips=410, cpu=0.45, rss_mb=75.0)


@pytest.mark.parametrize(
    ("value", "base", "text"),
    [
        (None, 1.0, "—"),
        (1.5, None, "1.500 s"),
        (3.0, 1.5, "3.000 s (2.00×)"),
        (0.75, 1.5, "0.750 s (0.50×)"),
        (2.0, 0.0, "2.000 s"),
        (2.0, -0.1, "2.000 s"),
        (-0.1, 1.0, "-0.100 s"),
        (12.345, 1.0, "12.35 s (12.35×)"),
    ],
)
def test_cell(value: float | None, base: float | None, text: str) -> None:
    """A cell is the value with its ratio to migrate-job's; no ratio for the base itself or a base ≤ 0."""
    assert cell(value, base, seconds) == text


def test_side_by_side_rows_and_ratios() -> None:
    """One column per tool; every peer figure carries its ratio to migrate-job's (the first column)."""
    lines = side_by_side(
        [("migrate-job", MJ), ("node-pg-migrate", NPM), ("psql", Figures(1.0, 5.0))], count=200, rtt_ms=10
    )
    assert lines[0] == "| measure | migrate-job | node-pg-migrate | psql |"
    assert lines[1] == "|---|---:|---:|---:|"
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[2:]}
    assert rows["apply 200, through 10 ms RTT: wall"].endswith("| 1.400 s | 6.000 s (4.29×) | 5.000 s (3.57×) |")
    assert rows["round trips, apply 200 (whole run)"].endswith("| 13 | 410 (31.54×) | — |")
    assert rows["round trips per migration"].endswith("| 0.065 | 2.050 (31.54×) | — |")
    assert rows["no-op run (200 applied), direct: wall"].endswith("| 0.300 s | 0.350 s (1.17×) | — |")
    assert rows["added by the latency (proxied − direct)"].endswith("| 0.500 s | 4.800 s (9.60×) | 4.000 s (8.00×) |")
    assert len(rows) == 8


def test_goals_pass_and_fail() -> None:
    """Each goal is judged against node-pg-migrate's figures of the same run."""
    result = {g.name.split(",")[0].split(" ")[0]: g for g in goals(MJ, NPM, count=200, rtt_ms=10, noop_installed=True)}
    verdicts = [g.verdict for g in goals(MJ, NPM, count=200, rtt_ms=10, noop_installed=True)]
    assert verdicts == ["PASS", "PASS", "**FAIL**", "PASS"]
    assert result["apply"].measured == "1.400 s ≤ 0.35 × 6.000 s = 2.100 s (0.23×)"
    assert result["CPU"].measured == "0.500 s ≤ 0.450 s (1.11×)"


def test_round_trip_goal_is_twenty_in_all() -> None:
    """More than 20 round trips for the whole apply fails the first goal."""
    many = Figures(apply_direct=0.9, apply_proxy=1.4, noop=0.3, round_trips=21, cpu=0.4)
    assert goals(many, NPM, count=200, rtt_ms=10, noop_installed=True)[0].verdict == "**FAIL**"
    exact = Figures(apply_direct=0.9, apply_proxy=1.4, noop=0.3, round_trips=20, cpu=0.4)
    assert goals(exact, NPM, count=200, rtt_ms=10, noop_installed=True)[0].verdict == "PASS"


def test_goals_not_measured_without_peers_or_wheel() -> None:
    """Without the peers (or without the installed wheel) the goals that need them say "not measured"."""
    no_peers = goals(MJ, None, count=200, rtt_ms=10, noop_installed=True)
    assert [g.verdict for g in no_peers] == ["PASS", "not measured", "not measured", "not measured"]
    assert no_peers[1].measured == "not measured (--no-peers)"
    no_wheel = goals(MJ, NPM, count=200, rtt_ms=10, noop_installed=False)
    assert no_wheel[3].verdict == "not measured"
    assert no_wheel[3].measured == "not measured (--no-wheel)"
