"""The fleet scenario of the benchmark (issue 12): pure parts — the targets file, the shell loop, the report.

bench/run.py creates D fresh databases per run, all reached through the latency proxy, and applies the same
generated migrations to them two ways:

- `migrate-job fleet migrate --parallel P --targets targets.toml`: one process, the targets file lists every
  database with its own `url_env` (the URLs are in the environment, as a deploy job gets them);
- a shell loop running `migrate-job migrate` once per database, one after the other (what teams do today):
  `for url in $BENCH_FLEET_URLS; do DATABASE_URL="$url" migrate-job migrate --dir X || exit $?; done`.

This module writes those two inputs and formats what was measured; it does no I/O.
"""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.compare import Goal, seconds

SPEEDUP_GOAL = 8.0  # the fleet's wall time, as a fraction of the loop's: at least 8× faster
RSS_GOAL_MB = 150.0  # peak RSS of the fleet process
URLS_VAR = "BENCH_FLEET_URLS"


def env_name(index: int) -> str:
    """The environment variable holding database `index`'s URL (the targets file's `url_env`)."""
    return f"BENCH_FLEET_DB_{index:04d}"


def target_id(index: int) -> str:
    return f"db-{index:04d}"


def targets_toml(count: int) -> str:
    """A targets file listing `count` databases, each by its own `url_env`."""
    blocks = [f'[[targets]]\nid = "{target_id(i)}"\nurl_env = "{env_name(i)}"\n' for i in range(count)]
    return "# bench/run.py: the fleet scenario (generated)\n\n" + "\n".join(blocks)


def target_env(urls: Sequence[str]) -> dict[str, str]:
    """The environment of the fleet run: one variable per database, as named in the targets file."""
    return {env_name(i): url for i, url in enumerate(urls)}


def loop_script(cli: Sequence[str], folder: str) -> str:
    """The shell loop: `migrate-job migrate` once per URL of $BENCH_FLEET_URLS, stopping at the first failure."""
    command = shlex.join([*cli, "migrate", "--dir", folder])
    return f'set -u\nfor url in ${URLS_VAR}; do\n  DATABASE_URL="$url" {command} || exit $?\ndone\n'


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Side:
    """One way of migrating the fleet, over its runs (medians; peak RSS is the maximum over runs)."""

    walls: tuple[float, ...]
    cpus: tuple[float, ...]
    rss_mb: float
    round_trips: tuple[int, ...]
    connections: int

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)

    @property
    def round_trip(self) -> int:
        return int(statistics.median(self.round_trips)) if self.round_trips else -1


@dataclass(frozen=True)
class FleetRun:
    """What the fleet scenario measured: the fleet command and the shell loop on `databases` databases."""

    databases: int
    migrations: int
    parallel: int
    rtt_ms: float
    fleet: Side
    loop: Side
    target_ms: tuple[int, ...] = ()  # each target's duration_ms in the fleet's report file (last run)
    cli: str = "migrate-job"

    @property
    def speedup(self) -> float:
        return self.loop.wall / self.fleet.wall if self.fleet.wall > 0 else float("inf")

    def per_minute(self, side: Side) -> float:
        return self.databases / side.wall * 60 if side.wall > 0 else float("inf")


def fleet_goals(run: FleetRun) -> list[Goal]:
    """The benchmark goals of issue 12 (never gating: bench/run.py prints them)."""
    return [
        Goal(
            f"fleet --parallel {run.parallel} ≥ {SPEEDUP_GOAL:g}× faster than the shell loop",
            f"{seconds(run.loop.wall)} ÷ {seconds(run.fleet.wall)} = {run.speedup:.1f}×",
            run.speedup >= SPEEDUP_GOAL,
        ),
        Goal(
            f"peak RSS of the fleet process < {RSS_GOAL_MB:g} MB",
            f"{run.fleet.rss_mb:.1f} MB",
            run.fleet.rss_mb < RSS_GOAL_MB,
        ),
        Goal(
            "targets per minute reported",
            f"{run.per_minute(run.fleet):.0f}/min (loop: {run.per_minute(run.loop):.0f}/min)",
            True,
        ),
    ]


def _runs(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def fleet_section(run: FleetRun, *, how_created: str) -> tuple[list[str], list[Goal]]:
    """Markdown lines of the fleet section and its goals."""
    d, f, lp = run.databases, run.fleet, run.loop
    out: list[str] = []
    w = out.append
    w(f"## Fleet: {d} databases × {run.migrations} migrations through {run.rtt_ms:g} ms RTT\n")
    w(
        f"`{run.cli} fleet migrate --parallel {run.parallel} --targets targets.toml` (one `url_env` per database) "
        f"against a shell loop running `{run.cli} migrate` once per database, one after the other "
        f"(`for url in $URLS; do DATABASE_URL=$url {run.cli} migrate || exit; done`), every database reached "
        f"through the proxy. {how_created} Fleet: median of {len(f.walls)} run(s); loop: median of "
        f"{len(lp.walls)} run(s) (`--fleet-loop-repeat`). Peak RSS: the fleet "
        "process; for the loop the largest single `migrate-job migrate` (GNU time reports the maximum over "
        "the shell's children).\n"
    )
    w(f"| measure | fleet `--parallel {run.parallel}` | shell loop | loop ÷ fleet |")
    w("|---|---:|---:|---:|")
    w(f"| wall, {d} databases | **{seconds(f.wall)}** | {seconds(lp.wall)} | **{run.speedup:.1f}×** |")
    w(f"| targets per minute | **{run.per_minute(f):.0f}** | {run.per_minute(lp):.0f} | — |")
    w(f"| wall per database | {seconds(f.wall / d)} | {seconds(lp.wall / d)} | {run.speedup:.1f}× |")
    w(f"| CPU user+sys, whole run | {seconds(f.cpu)} | {seconds(lp.cpu)} | {_ratio(lp.cpu, f.cpu)} |")
    w(f"| peak RSS | {f.rss_mb:.1f} MB (one process) | {lp.rss_mb:.1f} MB (largest run) | — |")
    w(
        f"| round trips, whole run (per database) | {f.round_trip} ({f.round_trip / d:.1f}) | "
        f"{lp.round_trip} ({lp.round_trip / d:.1f}) | {_ratio(lp.round_trip, f.round_trip)} |"
    )
    w(f"| connections | {f.connections} | {lp.connections} | — |")
    if run.target_ms:
        ms = sorted(run.target_ms)
        w(
            f"| one target's duration in the fleet (report file, last run): median / max | "
            f"{statistics.median(ms):.0f} / {ms[-1]:.0f} ms | — | — |"
        )
    w(f"| runs (s) | {_runs(f.walls)} | {_runs(lp.walls)} | — |")
    w("")
    goal_list = fleet_goals(run)
    w("Goals of issue 12 (benchmark, not gating):\n")
    w("| goal | measured | result |")
    w("|---|---|:---:|")
    for g in goal_list:
        w(f"| {g.name} | {g.measured} | {g.verdict} |")
    w("")
    return out, goal_list


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else "—"
