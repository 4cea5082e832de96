"""The side-by-side table and the goals of issue 13: pure formatting of the medians bench/run.py measured.

Every figure of a peer is shown with its ratio to migrate-job's (the first column): `6.54 s (4.73×)` is
4.73 times migrate-job's figure, so above 1× migrate-job is the lower (better) one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

ROUND_TRIP_GOAL = 20  # round trips for the whole apply of the transactional migrations
PROXY_RATIO_GOAL = 0.35  # apply through the RTT proxy, as a share of node-pg-migrate's in the same run


@dataclass(frozen=True)
class Figures:
    """One tool's medians in one run (None: not measured, or not meaningful for that tool)."""

    apply_direct: float | None = None
    apply_proxy: float | None = None
    noop: float | None = None
    round_trips: int | None = None
    cpu: float | None = None
    rss_mb: float | None = None


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    passed: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "not measured"
        return "PASS" if self.passed else "**FAIL**"


def seconds(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.2f} s"


def cell(value: float | None, base: float | None, fmt: Callable[[float], str]) -> str:
    """`value` formatted, with its ratio to `base` when both are known (base None: the base column itself)."""
    if value is None:
        return "—"
    if base is None or base <= 0 or value < 0:  # the base column, or no meaningful ratio (a latency lost in noise)
        return fmt(value)
    return f"{fmt(value)} ({value / base:.2f}×)"


def _latency(f: Figures) -> float | None:
    if f.apply_proxy is None or f.apply_direct is None:
        return None
    return f.apply_proxy - f.apply_direct


def _per_migration(count: int) -> Callable[[Figures], float | None]:
    return lambda f: None if f.round_trips is None else f.round_trips / count


def side_by_side(columns: Sequence[tuple[str, Figures]], *, count: int, rtt_ms: float) -> list[str]:
    """Markdown lines of the table: one column per tool, the first (migrate-job) is the base of the ratios."""
    rows: list[tuple[str, Callable[[Figures], float | None], Callable[[float], str]]] = [
        (f"apply {count}, direct: wall", lambda f: f.apply_direct, seconds),
        (f"apply {count}, through {rtt_ms:g} ms RTT: wall", lambda f: f.apply_proxy, seconds),
        ("added by the latency (proxied − direct)", _latency, seconds),
        (f"no-op run ({count} applied), direct: wall", lambda f: f.noop, seconds),
        (f"round trips, apply {count} (whole run)", lambda f: f.round_trips, lambda x: f"{x:.0f}"),
        ("round trips per migration", _per_migration(count), lambda x: f"{x:.3f}"),
        (f"CPU user+sys, apply {count} direct", lambda f: f.cpu, seconds),
        ("peak RSS, apply (max over runs)", lambda f: f.rss_mb, lambda x: f"{x:.1f} MB"),
    ]
    out = [
        "| measure | " + " | ".join(title for title, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    base = columns[0][1]
    for name, get, fmt in rows:
        cells = [cell(get(base), None, fmt)]
        cells += [cell(get(fig), get(base), fmt) for _, fig in columns[1:]]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def goals(mj: Figures, npm: Figures | None, *, count: int, rtt_ms: float, noop_installed: bool) -> list[Goal]:
    """The goals of issue 13 for migrate-job's figures against node-pg-migrate's in the same run."""
    out = [
        Goal(
            f"round trips, apply {count} transactional migrations (whole run) ≤ {ROUND_TRIP_GOAL}",
            "not measured" if mj.round_trips is None else str(mj.round_trips),
            None if mj.round_trips is None else mj.round_trips <= ROUND_TRIP_GOAL,
        )
    ]
    missing = "not measured (--no-peers)" if npm is None else "not measured"
    peer = npm or Figures()
    if mj.apply_proxy is not None and peer.apply_proxy is not None:
        bound = PROXY_RATIO_GOAL * peer.apply_proxy
        measured = (
            f"{seconds(mj.apply_proxy)} ≤ {PROXY_RATIO_GOAL} × {seconds(peer.apply_proxy)} = {seconds(bound)} "
            f"({mj.apply_proxy / peer.apply_proxy:.2f}×)"
        )
        out.append(
            Goal(
                f"apply {count} @ {rtt_ms:g} ms RTT ≤ {PROXY_RATIO_GOAL} × node-pg-migrate's",
                measured,
                mj.apply_proxy <= bound,
            )
        )
    else:
        out.append(Goal(f"apply {count} @ {rtt_ms:g} ms RTT ≤ {PROXY_RATIO_GOAL} × node-pg-migrate's", missing, None))
    out.append(_not_above(f"CPU user+sys, apply {count} direct ≤ node-pg-migrate's", mj.cpu, peer.cpu, missing))
    noop_name = "no-op wall (non-editable install, its entry point) ≤ node-pg-migrate's no-op"
    if not noop_installed:
        out.append(Goal(noop_name, "not measured (--no-wheel)", None))
    else:
        out.append(_not_above(noop_name, mj.noop, peer.noop, missing))
    return out


def _not_above(name: str, mine: float | None, theirs: float | None, missing: str) -> Goal:
    if mine is None or theirs is None:
        return Goal(name, missing, None)
    ratio = f" ({mine / theirs:.2f}×)" if theirs else ""
    return Goal(name, f"{seconds(mine)} ≤ {seconds(theirs)}{ratio}", mine <= theirs)
