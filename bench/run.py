"""migrate-job benchmark: round trips, latency, no-op cost, planning, memory; beside node-pg-migrate, dbmate, psql.

    python bench/run.py [--count 200] [--rtt-ms 10] [--repeat 5] [--plan-files 10000] [--output bench/RESULTS.md]
                        [--no-peers] [--no-wheel] [--no-fleet] [--fleet-databases 100] [--fleet-count 20]
                        [--fleet-parallel 10] [--fleet-loop-repeat 1] [--strict]

Starts a throwaway PostgreSQL (job.devserver, in a temp dir, always stopped at the end) and the
latency proxy (bench/proxy.py), creates a fresh database for every measured apply, and prints a
Markdown report (also written to --output). Scenarios:

 1. migrate-job apply of N generated migrations, direct: wall time, peak RSS
 2. the same through the proxy (RTT = --rtt-ms): wall time, round trips, round trips per migration
 3. a no-op run (N applied, nothing pending), direct: wall time; boto3 must not be imported
 4. --single-transaction through the proxy at N=50 and N=N: round trips (must not depend on N)
 5. psql baseline: one psql session, each file wrapped in BEGIN/\\i/COMMIT, direct and proxied
 6. planning --plan-files files in-process: job.source.load + job.plan.build_plan vs as many history rows
 7. CLI import time (python -X importtime -c "import job.cli")
 8. robustness check (not a target): one --large-mb migration, sent as one message, must finish
 9. the peers (bench/peers.py; --no-peers to leave them out): node-pg-migrate and dbmate, installed from
    npm into .dev/bench-peers on the first run, apply the same N migrations in their own file formats,
    direct and proxied, and a no-op run; psql's figures come from scenario 5
10. migrate-job as a user installs it (bench/wheel.py; --no-wheel to leave it out): a wheel of the checkout
    in the venv .dev/bench-venv, its `migrate-job` entry point: apply direct and proxied, and the no-op run
11. a fleet (bench/fleet.py; --no-fleet to leave it out): --fleet-databases fresh databases × --fleet-count
    migrations, all through the proxy: `migrate-job fleet migrate --parallel P` (one process, a targets file)
    against a shell loop running `migrate-job migrate` once per database; the installed wheel when there is one

Timed scenarios run --repeat times (interleaved, so load on a shared machine hits all of them
alike) and report the median; every repeat is listed at the end of the report. The report prints
PASS/FAIL for the targets and for the goals of issue 13 (against node-pg-migrate in the same run); the
exit code is 0 whenever the benchmark ran (--strict: 1 when a target or goal fails).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` and `job` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from bench import fleet as fleet_tools
from bench import peers as peer_tools
from bench import wheel
from bench.compare import Figures, Goal, goals, side_by_side
from bench.generate import generate, generate_large
from bench.peers import Peer
from bench.proxy import DelayProxy, Stats
from job import devserver

ROOT = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT = 600.0


# ---------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Proc:
    """One finished process: exit code, wall and CPU (user+sys) seconds, peak RSS (KiB), output."""

    rc: int
    wall: float
    cpu: float
    maxrss_kb: int
    stdout: str
    stderr: str


GNU_TIME = Path("/usr/bin/time")


def rss_method() -> str:
    if GNU_TIME.exists():
        return "GNU time's %M (maximum resident set size of the process)"
    return "psutil polling every 2 ms (may miss short peaks)"


def run_proc(
    cmd: Sequence[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = PROCESS_TIMEOUT
) -> Proc:
    """Run `cmd`, measuring wall time, CPU time (wait4) and peak RSS.

    Peak RSS is not taken from wait4/RUSAGE_CHILDREN of our own child: Linux carries the forking
    process's high-water RSS across exec, so any child of this (large) process would report at
    least our RSS. GNU time is a small process in between; without it, psutil polls the RSS.
    """
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        gnu = GNU_TIME.exists()
        full = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *cmd] if gnu else list(cmd)
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(full, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            peak, status, usage = _wait(proc, poll_rss=not gnu, timeout=timeout)
            wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if gnu:
            lines = rss_file.read_text().split()
            peak = int(lines[-1]) if lines and lines[-1].isdigit() else 0
        return Proc(
            proc.returncode,
            wall,
            usage.ru_utime + usage.ru_stime,
            peak,
            out_path.read_bytes().decode("utf-8", "replace"),
            err_path.read_bytes().decode("utf-8", "replace"),
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """After the timeout: SIGTERM to the measured command, SIGKILL 10 s later (also to GNU time, 15 s)."""
    targets = _children(proc.pid) or [proc.pid]  # under GNU time: the command, so time still reports
    for pid in targets:
        _signal(pid, signal.SIGTERM)

    def kill_targets() -> None:
        for pid in targets:
            _signal(pid, signal.SIGKILL)

    threading.Timer(10.0, kill_targets).start()
    threading.Timer(15.0, _signal, args=(proc.pid, signal.SIGKILL)).start()


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def _wait(proc: subprocess.Popen[bytes], *, poll_rss: bool, timeout: float) -> tuple[int, int, Any]:
    """Reap `proc` with wait4, stopping it after `timeout`: (peak RSS KiB if polled, status, rusage)."""
    if not poll_rss:
        killer = threading.Timer(timeout, _stop, args=(proc,))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        return 0, status, usage
    psutil: Any = importlib.import_module("psutil")  # only without GNU time; untyped
    peak = 0
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return peak, status, usage
        if time.monotonic() > deadline:
            _stop(proc)
            deadline = float("inf")
        with contextlib.suppress(Exception):
            peak = max(peak, int(ps.memory_info().rss) // 1024)
        time.sleep(0.002)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def check(p: Proc, what: str) -> Proc:
    if p.rc != 0:
        raise RuntimeError(f"{what} exited {p.rc}\n--- stdout\n{_tail(p.stdout)}\n--- stderr\n{_tail(p.stderr)}")
    return p


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment without anything that would point migrate-job or psql elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIGRATE_", "PG", "AWS_")) and k not in ("DATABASE_URL", "GITHUB_ACTIONS", "PYTHONPATH")
    }
    env.update(extra)
    return env


# `python -m job` runs from a temp dir: without this, `job` would be whatever the venv's editable install points at
# (the main checkout), not the checkout this benchmark is in.
CHECKOUT_ENV = {"PYTHONPATH": str(ROOT)}

# ---------------------------------------------------------------------------- the bench


@dataclass
class Sample:
    wall: float
    cpu: float = 0.0
    maxrss_kb: int = 0
    round_trips: int | None = None
    stats: Stats | None = None


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def walls(self) -> list[float]:
        return [s.wall for s in self.samples]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls())

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss_mb(self) -> float:
        return max(s.maxrss_kb for s in self.samples) / 1024

    @property
    def round_trips(self) -> int:
        counts = [s.round_trips for s in self.samples if s.round_trips is not None]
        return int(statistics.median(counts)) if counts else -1

    @property
    def round_trip_range(self) -> tuple[int, int]:
        counts = [s.round_trips for s in self.samples if s.round_trips is not None]
        return (min(counts), max(counts)) if counts else (-1, -1)

    @property
    def last_stats(self) -> Stats | None:
        return next((s.stats for s in reversed(self.samples) if s.stats is not None), None)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.count: int = args.count
        self.delay = args.rtt_ms / 2000
        self.cli: list[str] = args.cli.split() if args.cli else [sys.executable, "-m", "job"]
        self.server: devserver.DevServer | None = None
        self.proxy: DelayProxy | None = None
        self.psql = ""
        self.results: dict[str, Any] = {}
        self.series: dict[str, Series] = {}
        self.term_log = work / "termination.log"
        self.peers: list[Peer] = []
        self.peer_folders: dict[str, Path] = {}
        self.installed: list[str] = []  # the wheel's entry point, when installed

    # -- infrastructure --------------------------------------------------------------

    def admin_url(self) -> str:
        assert self.server is not None
        return self.server.url("postgres")

    def fresh_db(self, label: str) -> str:
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return name

    def url(self, db: str, *, proxied: bool) -> str:
        assert self.server is not None and self.proxy is not None
        port = self.proxy.port if proxied else self.server.port
        return f"postgresql://postgres@127.0.0.1:{port}/{db}"

    def history_count(self, db: str) -> int:
        with psycopg.connect(self.url(db, proxied=False)) as conn:
            row = conn.execute("SELECT count(*) FROM public.migrate_job_history WHERE status = 'applied'").fetchone()
        return int(row[0]) if row else 0

    def job_env(
        self, db: str, *, proxied: bool, extra: dict[str, str] | None = None, checkout: bool = True
    ) -> dict[str, str]:
        """migrate-job's environment; `checkout`: import `job` from this checkout (not for the installed wheel)."""
        env = clean_env(
            {
                "DATABASE_URL": self.url(db, proxied=proxied),
                "MIGRATE_LOG_FORMAT": "json",
                "MIGRATE_ENV": "dev",
                "MIGRATE_CONNECT_TIMEOUT": "20s",
                "MIGRATE_TERMINATION_LOG": str(self.term_log),
                **(CHECKOUT_ENV if checkout and not self.args.cli else {}),
            }
        )
        for key, value in (extra or {}).items():
            if value:
                env[key] = value
            else:
                env.pop(key, None)
        return env

    @contextmanager
    def counting(self, proxied: bool) -> Iterator[list[Stats]]:
        """Reset the proxy's counters before, snapshot them after (when proxied)."""
        box: list[Stats] = []
        if proxied:
            assert self.proxy is not None
            self.proxy.reset()
        yield box
        if proxied:
            assert self.proxy is not None
            box.append(self.proxy.snapshot())

    # -- measurements ----------------------------------------------------------------

    def migrate(
        self,
        folder: Path,
        db: str,
        *,
        proxied: bool,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cli: Sequence[str] = (),
    ) -> Sample:
        cmd = [*(cli or self.cli), "migrate", "--dir", str(folder), *extra]
        with self.counting(proxied) as box:
            run_env = self.job_env(db, proxied=proxied, extra=env, checkout=not cli)
            p = check(run_proc(cmd, run_env, cwd=self.work), "migrate-job")
        stats = box[0] if box else None
        return Sample(p.wall, p.cpu, p.maxrss_kb, stats.round_trips if stats else None, stats)

    def psql_apply(self, script: Path, db: str, *, proxied: bool) -> Sample:
        cmd = [self.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(db, proxied=proxied), "-f", str(script)]
        with self.counting(proxied) as box:
            p = check(run_proc(cmd, clean_env({}), cwd=self.work), "psql")
        stats = box[0] if box else None
        return Sample(p.wall, p.cpu, p.maxrss_kb, stats.round_trips if stats else None, stats)

    def peer_run(self, peer: Peer, db: str, *, proxied: bool) -> Sample:
        """One `up`/`migrate` of the peer on its folder: an apply on a fresh database, a no-op after one."""
        cmd = peer.command(self.peer_folders[peer.key])
        with self.counting(proxied) as box:
            p = check(run_proc(cmd, clean_env(peer.env(self.url(db, proxied=proxied))), cwd=self.work), peer.key)
        stats = box[0] if box else None
        return Sample(p.wall, p.cpu, p.maxrss_kb, stats.round_trips if stats else None, stats)

    def peer_count(self, peer: Peer, db: str) -> int:
        with psycopg.connect(self.url(db, proxied=False)) as conn:
            query = sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(peer.history_table))
            row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def prepare_tools(self) -> None:
        """Install the peers and the wheel (the only network use: npm and PyPI, on the first run)."""
        if self.args.peers:
            started = time.monotonic()
            self.peers = peer_tools.install(self.args.peers_dir, log)
            self.results["peers_install_s"] = time.monotonic() - started
            for peer in self.peers:
                folder = self.work / f"{peer.key}_{self.count}"
                peer_tools.write_peer_migrations(folder, peer.key, self.count, seed=self.args.seed)
                self.peer_folders[peer.key] = folder
        if self.args.wheel:
            started = time.monotonic()
            entry, pins = wheel.install(ROOT, self.args.venv, log)
            self.installed = [str(entry)]
            self.results["wheel_pins"] = pins
            self.results["wheel_install_s"] = time.monotonic() - started

    def apply_round(self, r: int, folder: Path, script: Path) -> str:
        """One repeat of every apply, interleaved; the database of migrate-job's direct apply (for no-ops)."""
        n, args = self.count, self.args
        log(f"repeat {r + 1}/{args.repeat}: apply {n} direct")
        db = self.fresh_db("direct")
        self.add("apply_direct", self.migrate(folder, db, proxied=False))
        if (applied := self.history_count(db)) != n:
            raise RuntimeError(f"direct apply recorded {applied} migrations, expected {n}")
        noop_db = db
        log(f"repeat {r + 1}/{args.repeat}: apply {n} through the proxy")
        db = self.fresh_db("proxy")
        self.add("apply_proxy", self.migrate(folder, db, proxied=True))
        if (applied := self.history_count(db)) != n:
            raise RuntimeError(f"proxied apply recorded {applied} migrations, expected {n}")
        if not args.skip_psql:
            log(f"repeat {r + 1}/{args.repeat}: psql baseline direct and through the proxy")
            self.add("psql_direct", self.psql_apply(script, self.fresh_db("psql"), proxied=False))
            self.add("psql_proxy", self.psql_apply(script, self.fresh_db("psqlproxy"), proxied=True))
        if self.installed:
            log(f"repeat {r + 1}/{args.repeat}: installed wheel, direct and through the proxy")
            for proxied, key in ((False, "installed_direct"), (True, "installed_proxy")):
                db = self.fresh_db(key.split("_")[1])
                self.add(key, self.migrate(folder, db, proxied=proxied, cli=self.installed))
                if (applied := self.history_count(db)) != n:
                    raise RuntimeError(f"installed migrate-job recorded {applied} migrations, expected {n}")
        for peer in self.peers:
            log(f"repeat {r + 1}/{args.repeat}: {peer.key}, direct and through the proxy")
            for proxied in (False, True):
                db = self.fresh_db(peer.key.replace("-", ""))
                self.add(f"{peer.key}_{'proxy' if proxied else 'direct'}", self.peer_run(peer, db, proxied=proxied))
                if (applied := self.peer_count(peer, db)) != n:
                    raise RuntimeError(f"{peer.key} recorded {applied} migrations, expected {n}")
                if not proxied:
                    self.results[f"{peer.key}_noop_db"] = db
        return noop_db

    def add(self, key: str, sample: Sample) -> Sample:
        self.series.setdefault(key, Series()).samples.append(sample)
        return sample

    def run(self) -> None:
        args = self.args
        n = self.count
        bindir = devserver.find_bindir(Path(args.bindir) if args.bindir else None)
        self.psql = str(bindir / "psql")
        self.results["load_before"] = os.getloadavg()

        folder = self.work / f"migrations_{n}"
        generate(folder, n, seed=args.seed)
        small_n = min(50, n)
        small = self.work / f"migrations_small_{small_n}"
        generate(small, small_n, seed=args.seed)
        script = self.work / "psql_apply.sql"
        script.write_text(
            "".join(f"BEGIN;\n\\i '{p}'\nCOMMIT;\n" for p in sorted(folder.glob("*.sql"))), encoding="utf-8"
        )

        self.prepare_tools()
        self.server = devserver.create(self.work / "pgdata", bindir=bindir)
        self.server.start()
        self.proxy = DelayProxy(self.server.host, self.server.port, delay=self.delay)
        self.proxy.start()
        with psycopg.connect(self.admin_url()) as conn:
            row = conn.execute("SELECT current_setting('server_version')").fetchone()
            self.results["pg_version"] = str(row[0]) if row else "?"
        log(f"PostgreSQL {self.results['pg_version']} on port {self.server.port}, proxy on {self.proxy.port}")
        self.results["calibration"] = self.calibrate()

        # 1, 2, 5, 9, 10: applies, interleaved per repeat
        noop_db = ""
        for r in range(args.repeat):
            noop_db = self.apply_round(r, folder, script)

        # 3, 9, 10: no-op runs on the last direct databases, interleaved
        log("no-op runs")
        for _ in range(max(args.repeat, 9)):
            self.add("noop_direct", self.migrate(folder, noop_db, proxied=False))
            if self.installed:
                self.add("noop_installed", self.migrate(folder, noop_db, proxied=False, cli=self.installed))
            for peer in self.peers:
                self.add(f"{peer.key}_noop", self.peer_run(peer, self.results[f"{peer.key}_noop_db"], proxied=False))
        self.add("noop_proxy", self.migrate(folder, noop_db, proxied=True))
        # Bytecode: the inherited environment may set PYTHONDONTWRITEBYTECODE (job/ is then compiled at
        # every start). Also measured: every module cached (warm PYTHONPYCACHEPREFIX), and none cached
        # (an empty PYTHONPYCACHEPREFIX that is never written: what an image without __pycache__ does).
        cached = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(self.work / "pycache")}
        self.migrate(folder, noop_db, proxied=False, env=cached)  # warm-up: writes the cache
        nocache = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(self.work / "no-pycache")}
        for _ in range(args.repeat):
            self.add("noop_pyc_cached", self.migrate(folder, noop_db, proxied=False, env=cached))
            self.add("noop_no_pyc", self.migrate(folder, noop_db, proxied=False, env=nocache))
        self.results["dontwritebytecode"] = os.environ.get("PYTHONDONTWRITEBYTECODE", "")
        self.results["noop_modules"] = self.noop_modules(folder, noop_db)
        self.results["noop_importtime"] = self.noop_importtime(folder, noop_db)

        # 4: --single-transaction at two sizes
        for size, where in ((small_n, small), (n, folder)):
            log(f"--single-transaction with {size} migrations through the proxy")
            for _ in range(args.repeat):
                db = self.fresh_db(f"single{size}")
                self.add(f"single_{size}", self.migrate(where, db, proxied=True, extra=["--single-transaction"]))
                if (applied := self.history_count(db)) != size:
                    raise RuntimeError(f"--single-transaction recorded {applied}, expected {size}")
        self.results["single_sizes"] = (small_n, n)

        # 11: a fleet, the fleet command against a shell loop
        if args.fleet:
            self.fleet_scenario()

        if args.large_mb > 0:
            log(f"one {args.large_mb:g} MB migration (timeout {args.large_timeout:g} s)")
            self.results["large"] = self.large_migration()

        # 6: planning
        log(f"planning {args.plan_files} files in-process")
        self.results["planning"] = self.planning(args.plan_files)

        # 7: import time
        log("CLI import time")
        self.results["import"] = self.import_time()
        self.results["load_after"] = os.getloadavg()

    # -- 11: the fleet -----------------------------------------------------------------

    def fleet_databases(self, label: str) -> list[str]:
        """`--fleet-databases` fresh, empty databases (a file copy of template0: about 20 ms each here)."""
        assert self.server is not None
        names = [f"bench_{label}_{i:04d}" for i in range(self.args.fleet_databases)]
        with psycopg.connect(self.admin_url(), autocommit=True) as admin:
            strategy = sql.SQL(" STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else "")
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)) + strategy)
        return names

    def fleet_done(self, names: Sequence[str], what: str) -> None:
        """Every database must have all the migrations applied; then it is dropped (the server stays small)."""
        count = self.args.fleet_count
        for name in names:
            if (applied := self.history_count(name)) != count:
                raise RuntimeError(f"{what}: {name} recorded {applied} migrations, expected {count}")
        with psycopg.connect(self.admin_url(), autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))

    def fleet_env(self, extra: dict[str, str]) -> dict[str, str]:
        cli = self.installed or self.cli
        env = self.job_env("postgres", proxied=True, extra={"DATABASE_URL": ""}, checkout=cli is self.cli)
        env.update(extra)
        return env

    def fleet_run(self, folder: Path, targets_file: Path, names: Sequence[str], report_file: Path) -> Sample:
        """`migrate-job fleet migrate --parallel P` over the targets file, every database through the proxy."""
        cli = self.installed or self.cli
        cmd = [*cli, "fleet", "migrate", "--dir", str(folder), "--targets", str(targets_file)]
        cmd += ["--parallel", str(self.args.fleet_parallel), "--report-file", str(report_file)]
        urls = [self.url(name, proxied=True) for name in names]
        with self.counting(True) as box:
            p = check(run_proc(cmd, self.fleet_env(fleet_tools.target_env(urls)), cwd=self.work), "fleet migrate")
        return Sample(p.wall, p.cpu, p.maxrss_kb, box[0].round_trips, box[0])

    def fleet_loop(self, script: Path, names: Sequence[str]) -> Sample:
        """The shell loop: `migrate-job migrate` once per database, one after the other."""
        urls = " ".join(self.url(name, proxied=True) for name in names)
        env = self.fleet_env({fleet_tools.URLS_VAR: urls})
        with self.counting(True) as box:
            p = check(run_proc(["bash", str(script)], env, cwd=self.work), "shell loop")
        return Sample(p.wall, p.cpu, p.maxrss_kb, box[0].round_trips, box[0])

    def fleet_scenario(self) -> None:
        """The fleet command against the shell loop, each on fresh databases, interleaved per repeat."""
        a = self.args
        folder = self.work / f"fleet_migrations_{a.fleet_count}"
        generate(folder, a.fleet_count, seed=a.seed)
        targets_file = self.work / "targets.toml"
        targets_file.write_text(fleet_tools.targets_toml(a.fleet_databases), encoding="utf-8")
        script = self.work / "loop.sh"
        script.write_text(fleet_tools.loop_script(self.installed or self.cli, str(folder)), encoding="utf-8")
        report_file = self.work / "fleet-report.json"
        d = a.fleet_databases
        for r in range(max(a.repeat, a.fleet_loop_repeat)):
            if r < a.repeat:
                log(f"fleet {r + 1}/{a.repeat}: {d} databases, fleet migrate --parallel {a.fleet_parallel}")
                names = self.fleet_databases("fleet")
                self.add("fleet", self.fleet_run(folder, targets_file, names, report_file))
                self.fleet_done(names, "fleet migrate")
            if r < a.fleet_loop_repeat:
                log(f"fleet {r + 1}/{a.fleet_loop_repeat}: {d} databases, a shell loop of migrate-job migrate")
                names = self.fleet_databases("loop")
                self.add("fleet_loop", self.fleet_loop(script, names))
                self.fleet_done(names, "shell loop")
        report = json.loads(report_file.read_text(encoding="utf-8"))
        self.results["fleet_target_ms"] = tuple(int(t["duration_ms"]) for t in report["targets"])

    def calibrate(self, pings: int = 50) -> dict[str, Any]:
        """Self-check of the proxy: `pings` × SELECT 1 must count `pings` round trips (+ connect,
        terminate); and the latency it really adds per round trip (asyncio timers overshoot a little,
        more on a loaded machine)."""
        assert self.proxy is not None
        times = {}
        stats: Stats | None = None
        for proxied in (False, True):
            with self.counting(proxied) as box, psycopg.connect(self.url("postgres", proxied=proxied)) as conn:
                conn.autocommit = True
                conn.execute("SELECT 1", prepare=False)  # no auto-prepare: it costs psycopg one more round trip
                started = time.perf_counter()
                for _ in range(pings):
                    conn.execute("SELECT 1", prepare=False)
                times[proxied] = (time.perf_counter() - started) / pings
            if box:
                stats = box[0]
        assert stats is not None
        overhead = ("ssl-request", "gssenc-request", "startup", "auth", "terminate")
        select_rt = sum(1 for e in stats.events if e.label not in overhead) - 1  # minus the warm-up SELECT 1
        return {
            "pings": pings,
            "counted": select_rt,
            "total": stats.round_trips,
            "labels": dict(stats.by_label()),
            "direct_ms": times[False] * 1000,
            "proxied_ms": times[True] * 1000,
            "added_ms": (times[True] - times[False]) * 1000,
        }

    def large_migration(self) -> dict[str, Any]:
        """One big migration (sent as one message): does it finish? (robustness check, not a target)"""
        folder = self.work / "large"
        path = generate_large(folder, self.args.large_mb, seed=self.args.seed)
        db = self.fresh_db("large")
        cmd = [*self.cli, "migrate", "--dir", str(folder)]
        p = run_proc(cmd, self.job_env(db, proxied=False), cwd=self.work, timeout=self.args.large_timeout)
        with psycopg.connect(self.url(db, proxied=False)) as conn:
            row = conn.execute(
                "SELECT string_agg(status, ',') FROM public.migrate_job_history WHERE version = '1'"
            ).fetchone()
        interrupted = any('"run.interrupted"' in line for line in p.stdout.splitlines())
        return {
            "mb": path.stat().st_size / 1e6,
            "rc": p.rc,
            "wall": p.wall,
            "timeout": self.args.large_timeout,
            "history": (row[0] if row and row[0] else "no row"),
            "interrupted_logged": interrupted,
        }

    def noop_modules(self, folder: Path, db: str) -> dict[str, Any]:
        """Run the no-op migrate in a python -c that then reports what it imported."""
        code = (
            "import json, sys\n"
            "import job.cli\n"
            f"rc = job.cli.main(['migrate', '--dir', {str(folder)!r}])\n"
            "mods = sorted(sys.modules)\n"
            "print('BENCH-MODULES ' + json.dumps({'rc': rc, 'boto3': 'boto3' in sys.modules, "
            "'botocore': 'botocore' in sys.modules, 'pglast': 'pglast' in sys.modules, 'count': len(mods)}), "
            "file=sys.stderr)\n"
        )
        p = check(run_proc([sys.executable, "-c", code], self.job_env(db, proxied=False), cwd=self.work), "no-op -c")
        line = next(x for x in p.stderr.splitlines() if x.startswith("BENCH-MODULES "))
        data: dict[str, Any] = json.loads(line.split(" ", 1)[1])
        if data["rc"] != 0:
            raise RuntimeError(f"no-op run exited {data['rc']}")
        return data

    def noop_importtime(self, folder: Path, db: str) -> dict[str, Any]:
        cmd = [sys.executable, "-X", "importtime", "-m", "job", "migrate", "--dir", str(folder)]
        p = check(run_proc(cmd, self.job_env(db, proxied=False), cwd=self.work), "no-op -X importtime")
        rows = parse_importtime(p.stderr)
        top = [r for r in rows if r[3] == 0]
        heavy = sorted(top, key=lambda r: -r[2])[:10]
        return {
            "total_ms": sum(r[2] for r in top) / 1000,
            "modules": len(rows),
            "boto": [r[0] for r in rows if r[0].split(".")[0] in ("boto3", "botocore")],
            "heaviest": [(name, cum / 1000) for name, _, cum, _ in heavy],
        }

    def planning(self, files: int) -> dict[str, Any]:
        from job import plan, source
        from job.plan import Applied

        folder = self.work / f"plan_{files}"
        generate(folder, files, seed=self.args.seed, down=True)
        when = dt.datetime.now(dt.UTC)
        rows = []
        for path in sorted(folder.glob("*.sql")):
            digits, _, rest = path.stem.partition("_")
            rows.append(
                Applied(
                    version=str(int(digits)),
                    name=rest,
                    checksum=hashlib.sha256(path.read_bytes()).hexdigest(),
                    status="applied",
                    applied_at=when,
                    execution_ms=3,
                    applied_by="bench",
                    batch=1,
                )
            )
        loads, plans, cpus = [], [], []
        for _ in range(self.args.repeat):
            c0 = time.process_time()
            t0 = time.perf_counter()
            migrations = source.load(folder)
            t1 = time.perf_counter()
            result = plan.build_plan(migrations, rows)
            t2 = time.perf_counter()
            cpus.append(time.process_time() - c0)
            if result.pending or result.problems or len(migrations) != files:
                raise RuntimeError(
                    f"planning: {len(migrations)} files, {len(result.pending)} pending, {len(result.problems)} problems"
                )
            loads.append(t1 - t0)
            plans.append(t2 - t1)
        totals = [a + b for a, b in zip(loads, plans, strict=True)]
        return {
            "files": files,
            "total": statistics.median(totals),
            "load": statistics.median(loads),
            "plan": statistics.median(plans),
            "cpu": statistics.median(cpus),
            "all": totals,
            "bytes": sum(p.stat().st_size for p in folder.glob("*.sql")),
        }

    def import_time(self) -> dict[str, Any]:
        env = clean_env(CHECKOUT_ENV)
        runs = max(self.args.repeat, 5)
        cum, walls, bare = [], [], []
        for _ in range(runs):
            p = check(run_proc([sys.executable, "-X", "importtime", "-c", "import job.cli"], env), "importtime")
            rows = parse_importtime(p.stderr)
            cum.append(sum(c for name, _, c, level in rows if level == 0 and name in ("job", "job.cli")) / 1000)
            walls.append(check(run_proc([sys.executable, "-c", "import job.cli"], env), "import job.cli").wall)
            bare.append(check(run_proc([sys.executable, "-c", "pass"], env), "python -c pass").wall)
        return {
            "importtime_ms": statistics.median(cum),
            "wall": statistics.median(walls),
            "bare_wall": statistics.median(bare),
        }


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, nesting level) for each `-X importtime` line."""
    rows = []
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            rows.append((m[4], int(m[1]), int(m[2]), (len(m[3]) - 1) // 2))
    return rows


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- report


def machine(results: dict[str, Any]) -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": f"{os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        "memory": _mem_total(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": str(results.get("pg_version", "?")),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": "start {} / end {}".format(
            " ".join(f"{x:.2f}" for x in results.get("load_before", ())),
            " ".join(f"{x:.2f}" for x in results.get("load_after", ())),
        ),
    }


def _mem_total() -> str:
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def _s(x: float) -> str:
    return f"{x:.3f} s" if x < 10 else f"{x:.2f} s"


def phase_of(label: str, *, per_statement: bool) -> str:
    """Group round-trip labels: one line per kind of message (not per migration)."""
    if label in ("ssl-request", "gssenc-request", "startup", "auth"):
        return f"connect: {label}"
    if label.startswith(("query: BEGIN; SET LOCAL", "query: BEGIN; RESET ALL")):
        return (
            "migrations: one message of `BEGIN; RESET …; set_config …; <file>; lock check; INSERT history; COMMIT` each"
        )
    if per_statement and label.startswith(("query: ", "parse: ")):
        kind, _, text = label.partition(": ")
        if text.startswith("--"):
            return f"{kind}: a migration's SQL (starts with a comment)"
        words = text.rstrip(";").split()
        take = 1
        if words and words[0].upper() in ("CREATE", "ALTER", "DROP", "COMMENT"):
            take = 4 if len(words) > 1 and words[1].upper() == "OR" else 2
        return f"{kind}: {' '.join(words[:take])}" + (" …" if len(words) > take else "")
    return label


def breakdown(stats: Stats | None, *, per_statement: bool) -> list[tuple[str, int]]:
    if stats is None:
        return []
    counts: Counter[str] = Counter()
    order: dict[str, int] = {}
    for i, e in enumerate(stats.events):
        key = phase_of(e.label, per_statement=per_statement)
        counts[key] += 1
        order.setdefault(key, i)
    return sorted(counts.items(), key=lambda kv: order[kv[0]])


def figures(s: dict[str, Series], direct: str, proxy: str, noop: str | None) -> Figures:
    """A tool's medians from its series (apply direct, apply through the proxy, no-op)."""
    d, p = s.get(direct), s.get(proxy)
    no = s.get(noop) if noop else None
    return Figures(
        apply_direct=d.wall if d else None,
        apply_proxy=p.wall if p else None,
        noop=no.wall if no else None,
        round_trips=p.round_trips if p else None,
        cpu=d.cpu if d else None,
        rss_mb=max(x.rss_mb for x in (d, p) if x is not None) if d or p else None,
    )


def _shown(path: str) -> str:
    """A path under the checkout, relative to it (the report names no absolute paths of this machine)."""
    return os.path.relpath(path, ROOT) if Path(path).is_relative_to(ROOT) else path


def side_by_side_section(bench: Bench) -> tuple[list[str], list[Goal]]:
    """The peers table, how each tool ran, migrate-job installed vs checkout, and the goals of issue 13."""
    a, s, n = bench.args, bench.series, bench.count
    installed = bool(bench.installed)
    checkout = figures(s, "apply_direct", "apply_proxy", "noop_direct")
    mine = figures(s, "installed_direct", "installed_proxy", "noop_installed") if installed else checkout
    title = "migrate-job (installed wheel)" if installed else "migrate-job (checkout, `python -m job`)"
    theirs = {p.key: figures(s, f"{p.key}_direct", f"{p.key}_proxy", f"{p.key}_noop") for p in bench.peers}
    cols: list[tuple[str, Figures]] = [(title, mine), *((p.title, theirs[p.key]) for p in bench.peers)]
    if "psql_direct" in s:
        cols.append(("psql, one session", figures(s, "psql_direct", "psql_proxy", None)))
    npm = theirs.get(peer_tools.NODE_PG_MIGRATE)
    out: list[str] = []
    w = out.append
    peers = ", ".join(p.title for p in bench.peers) or "no peers (--no-peers)"
    w(f"## Apply {n} pending transactional migrations, side by side: migrate-job, {peers}, psql\n")
    w(
        "The same generated migrations (bench/generate.py), each tool in its own file format, on a fresh database "
        "per apply. `(r×)` = the tool's figure ÷ migrate-job's (above 1×: migrate-job's is lower). The no-op run "
        f"runs the tool again on a database with all {n} applied.\n"
    )
    out.extend(side_by_side(cols, count=n, rtt_ms=a.rtt_ms))
    w("")
    how = [
        f"- {title}: "
        + (
            f"`{_shown(bench.installed[0])} migrate` (a wheel of the checkout, `pip install`ed into its own venv "
            "with the same dependency versions; bytecode compiled by pip)"
            if installed
            else "`python -m job migrate` from the checkout"
        ),
        *(f"- {p.title}: {p.describe()}" for p in bench.peers),
        "- psql: one `psql -X -v ON_ERROR_STOP=1 -f` session running `BEGIN; \\i file; COMMIT;` per file "
        "(no history table, no lock, no checks; no no-op run)",
    ]
    out.extend(how)
    w("")
    if installed:
        w(
            "migrate-job as installed (the first column) vs the editable checkout (`python -m job`, as in the "
            "targets below):\n"
        )
        out.extend(side_by_side([("installed wheel", mine), ("checkout", checkout)], count=n, rtt_ms=a.rtt_ms))
        w("")
    goal_list = goals(mine, npm, count=n, rtt_ms=a.rtt_ms, noop_installed=installed)
    w("## Goals of issue 13 (against node-pg-migrate in the same run)\n")
    w("| goal | measured | result |")
    w("|---|---|:---:|")
    for g in goal_list:
        w(f"| {g.name} | {g.measured} | {g.verdict} |")
    w("")
    return out, goal_list


FLEET_CREATED = (
    "Each run gets fresh databases: `CREATE DATABASE … TEMPLATE template0 STRATEGY FILE_COPY` (about 20 ms each "
    "on this throwaway server, fsync off; not timed), checked afterwards (every database has every migration "
    "applied) and dropped."
)


def fleet_run(bench: Bench) -> fleet_tools.FleetRun:
    """The fleet scenario's figures from its two series."""
    a, s = bench.args, bench.series

    def side(key: str) -> fleet_tools.Side:
        ser = s[key]
        last = ser.last_stats
        return fleet_tools.Side(
            walls=tuple(ser.walls()),
            cpus=tuple(x.cpu for x in ser.samples),
            rss_mb=ser.rss_mb,
            round_trips=tuple(x.round_trips for x in ser.samples if x.round_trips is not None),
            connections=last.connections if last else 0,
        )

    cli = _shown(bench.installed[0]) if bench.installed else "python -m job"
    return fleet_tools.FleetRun(
        databases=a.fleet_databases,
        migrations=a.fleet_count,
        parallel=a.fleet_parallel,
        rtt_ms=a.rtt_ms,
        fleet=side("fleet"),
        loop=side("fleet_loop"),
        target_ms=tuple(bench.results.get("fleet_target_ms", ())),
        cli=cli,
    )


def report(bench: Bench) -> tuple[str, bool]:
    a = bench.args
    r = bench.results
    s = bench.series
    n = bench.count
    rtt = a.rtt_ms / 1000
    m = machine(r)
    out: list[str] = []
    w = out.append

    direct, proxied = s["apply_direct"], s["apply_proxy"]
    noop = s["noop_direct"]
    small_n, big_n = r["single_sizes"]
    single_small, single_big = s[f"single_{small_n}"], s[f"single_{big_n}"]
    psql_p = s.get("psql_proxy")
    plan = r["planning"]
    imp = r["import"]
    mods = r["noop_modules"]
    noop_imp = r["noop_importtime"]

    w("# migrate-job benchmark\n")
    w(f"`python bench/run.py --count {n} --rtt-ms {a.rtt_ms:g} --repeat {a.repeat} --plan-files {a.plan_files}`\n")
    w("| machine | |\n|---|---|")
    for k, v in m.items():
        w(f"| {k} | {v} |")
    w("")
    w(
        f"Each timed value is the median of {a.repeat} runs (no-op: {len(noop.samples)} runs), interleaved. The "
        "machine is shared with other engineers' test runs; the load average above and the per-run values at "
        "the end show how noisy it was. Round trips are counted by bench/proxy.py (a client send after the "
        f"server has spoken = 1, per connection, summed); latency = {a.rtt_ms:g} ms RTT "
        f"({a.rtt_ms / 2:g} ms each way per chunk). Peak RSS: {rss_method()}.\n"
    )

    text, goal_list = side_by_side_section(bench)
    out.extend(text)

    # targets
    rt_per = proxied.round_trips / n
    lo, hi = proxied.round_trip_range
    bound = 1.2 * (n * rtt + direct.wall)
    rss = max(direct.rss_mb, proxied.rss_mb)
    boto = mods["boto3"] or mods["botocore"] or bool(noop_imp["boto"])
    targets: list[tuple[str, str, bool]] = [
        (
            f"round trips per migration, apply {n} (proxied)",
            f"{rt_per:.3f} ({proxied.round_trips} total; runs {lo}–{hi}) ≤ 1.1",
            rt_per <= 1.1,
        ),
        (
            f"wall through {a.rtt_ms:g} ms RTT ≤ 1.2 × ({n} × RTT + direct wall)",
            f"{_s(proxied.wall)} ≤ 1.2 × ({_s(n * rtt)} + {_s(direct.wall)}) = {_s(bound)}",
            proxied.wall <= bound,
        ),
        (
            "no-op run wall (direct)",
            f"{_s(noop.wall)} ≤ 0.4 s (runs {min(noop.walls()):.3f}–{max(noop.walls()):.3f} s; CPU {_s(noop.cpu)})",
            noop.wall <= 0.4,
        ),
        (
            "no-op run does not import boto3",
            f"boto3 imported: {mods['boto3']}, botocore: {mods['botocore']}",
            not boto,
        ),
        (
            "CLI import time measured",
            f"`import job.cli`: {imp['importtime_ms']:.1f} ms (-X importtime); process "
            f"{_s(imp['wall'])} vs bare python {_s(imp['bare_wall'])}; whole no-op run imports "
            f"{noop_imp['total_ms']:.0f} ms",
            True,
        ),
        (
            f"planning {plan['files']} files (load + build_plan, in-process)",
            f"{_s(plan['total'])} < 1 s (load {_s(plan['load'])}, plan {_s(plan['plan'])}; CPU {_s(plan['cpu'])})",
            plan["total"] < 1.0,
        ),
        (f"peak RSS, apply {n}", f"{rss:.1f} MB < 80 MB", rss < 80),
        (
            "--single-transaction round trips independent of N",
            f"N={small_n}: {single_small.round_trips}, N={big_n}: {single_big.round_trips}",
            single_small.round_trips == single_big.round_trips
            and single_small.round_trip_range[0] == single_small.round_trip_range[1] == single_big.round_trip_range[1],
        ),
    ]
    ok = all(t[2] for t in targets) and all(g.passed is not False for g in goal_list)
    w("## Targets\n")
    w("| target | measured | result |")
    w("|---|---|:---:|")
    for name, measured, passed in targets:
        w(f"| {name} | {measured} | {'PASS' if passed else '**FAIL**'} |")
    w("")
    fleet_goals: list[Goal] = []
    if "fleet" in s and "fleet_loop" in s:
        text, fleet_goals = fleet_tools.fleet_section(fleet_run(bench), how_created=FLEET_CREATED)
        out.extend(text)
        ok = ok and all(g.passed is not False for g in fleet_goals)

    w("## Other measurements\n")
    w("| measure | value |")
    w("|---|---:|")
    dwb = r.get("dontwritebytecode") or "unset"
    for key, what in (
        ("noop_direct", f"no-op, inherited environment (PYTHONDONTWRITEBYTECODE={dwb})"),
        ("noop_pyc_cached", "no-op, every module's bytecode cached (warm PYTHONPYCACHEPREFIX)"),
        ("noop_no_pyc", "no-op, no bytecode cache at all (like an image without `__pycache__`)"),
    ):
        w(f"| {what}: wall / CPU | {_s(s[key].wall)} / {_s(s[key].cpu)} |")
    w(f"| no-op run through {a.rtt_ms:g} ms RTT: wall | {_s(s['noop_proxy'].wall)} |")
    w(f"| no-op run: round trips | {s['noop_proxy'].round_trips} |")
    w(f"| no-op run: modules in sys.modules after main() | {mods['count']} (pglast: {mods['pglast']}) |")
    for size, ser in ((small_n, single_small), (big_n, single_big)):
        w(
            f"| --single-transaction N={size} through {a.rtt_ms:g} ms RTT: wall / round trips "
            f"| {_s(ser.wall)} / {ser.round_trips} |"
        )
    cal = r["calibration"]
    w(
        f"| proxy self-check: {cal['pings']} × `SELECT 1` on one connection | counted {cal['counted']} "
        f"(+1 warm-up, +{cal['total'] - cal['counted'] - 1} connect/terminate) |"
    )
    w(
        f"| latency the proxy really adds per round trip (nominal {a.rtt_ms:g} ms) | {cal['added_ms']:.2f} ms "
        f"({cal['proxied_ms']:.2f} vs {cal['direct_ms']:.2f} ms per `SELECT 1`) |"
    )
    w(f"| planning: files / bytes | {plan['files']} / {plan['bytes'] / 1e6:.1f} MB |")
    w(f"| `python -c 'import job.cli'` wall / bare `python -c pass` | {_s(imp['wall'])} / {_s(imp['bare_wall'])} |")
    w("")
    large = r.get("large")
    if large:
        w("Robustness check (not a target): one large migration, sent as one message, direct.\n")
        if large["rc"] == 0:
            verdict = f"applied in {_s(large['wall'])} (history: {large['history']})"
        else:
            verdict = (
                f"**did not finish**: stopped after {large['timeout']:g} s, exit {large['rc']}, "
                f"run.interrupted logged: {large['interrupted_logged']}; history afterwards: **{large['history']}** "
                "(the client waits for the reply while part of the one message is still unsent in libpq's "
                "buffer: job.db.run_script sends with send_query and then only fetches, it never flushes)"
            )
        w(f"| migration size | result |\n|---|---|\n| {large['mb']:.1f} MB | {verdict} |\n")
    w("Heaviest imports of the no-op run (`python -X importtime -m job migrate`, cumulative):\n")
    w("| module | ms |\n|---|---:|")
    for name, ms in noop_imp["heaviest"]:
        w(f"| {name} | {ms:.1f} |")
    w("")

    w("## Where the round trips go (through the proxy, last run)\n")
    sections = [
        (f"migrate-job apply {n}", proxied.last_stats, False),
        ("migrate-job no-op", s["noop_proxy"].last_stats, False),
        (f"migrate-job --single-transaction N={big_n}", single_big.last_stats, False),
    ]
    for peer in bench.peers:
        sections.append((f"{peer.title} apply {n}", s[f"{peer.key}_proxy"].last_stats, True))
    if psql_p:
        sections.append((f"psql baseline apply {n}", psql_p.last_stats, True))
    for title, stats, per_stmt in sections:
        if stats is None:
            continue
        w(
            f"**{title}**: {stats.round_trips} round trips over {stats.connections} connection(s) "
            f"({', '.join(str(v) for v in stats.per_connection.values())})\n"
        )
        w("| what the client sent | round trips |\n|---|---:|")
        for label, count in breakdown(stats, per_statement=per_stmt):
            w(f"| {label.replace('|', '/')} | {count} |")
        w("")

    w("## Every run\n")
    w("| scenario | wall (s) | CPU (s) | round trips | peak RSS (MB) |\n|---|---|---|---|---|")
    for key, ser in s.items():
        walls = ", ".join(f"{x:.3f}" for x in ser.walls())
        rts = ", ".join(str(x.round_trips) for x in ser.samples if x.round_trips is not None) or "—"
        rsss = ", ".join(f"{x.maxrss_kb / 1024:.1f}" for x in ser.samples)
        cpus = ", ".join(f"{x.cpu:.3f}" for x in ser.samples)
        w(f"| {key} | {walls} | {cpus} | {rts} | {rsss} |")
    w(f"| planning {plan['files']} files | {', '.join(f'{x:.3f}' for x in plan['all'])} | — | — | — |")
    w("")
    verdicts = Counter(g.verdict for g in goal_list)
    w(
        f"Overall: {'all targets PASS' if all(t[2] for t in targets) else 'some targets FAIL'}; goals of issue 13: "
        + ", ".join(f"{count} {verdict.strip('*')}" for verdict, count in verdicts.items())
        + (
            "; fleet goals of issue 12: "
            + ", ".join(
                f"{count} {verdict.strip('*')}" for verdict, count in Counter(g.verdict for g in fleet_goals).items()
            )
            if fleet_goals
            else ""
        )
        + "."
    )
    return "\n".join(out) + "\n", ok


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="migrations to apply (default 200)")
    parser.add_argument("--rtt-ms", type=float, default=10.0, help="round-trip time added by the proxy (default 10)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timed scenario; the median counts (default 5)")
    parser.add_argument("--plan-files", type=int, default=10_000, help="files for the planning benchmark")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated migrations")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md", help="report file")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--skip-psql", action="store_true", help="no psql baseline")
    parser.add_argument(
        "--large-mb", type=float, default=24.0, help="size of the one-large-migration check in MB (0: skip)"
    )
    parser.add_argument("--large-timeout", type=float, default=30.0, help="seconds before that check is stopped")
    parser.add_argument("--bindir", help="PostgreSQL bin directory (default: job.devserver.find_bindir())")
    parser.add_argument("--cli", help="command to run migrate-job (default: this python -m job)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (data, migrations, logs)")
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="node-pg-migrate and dbmate side by side (default on; installed from npm on the first run)",
    )
    parser.add_argument(
        "--peers-dir", type=Path, default=ROOT / ".dev" / "bench-peers", help="where npm installs the peers"
    )
    parser.add_argument(
        "--wheel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run migrate-job as a user installs it: a wheel of the checkout in its own venv (default on)",
    )
    parser.add_argument("--venv", type=Path, default=ROOT / ".dev" / "bench-venv", help="the venv of that install")
    parser.add_argument(
        "--fleet",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the fleet scenario: `fleet migrate --parallel P` against a shell loop of `migrate` (default on)",
    )
    parser.add_argument("--fleet-databases", type=int, default=100, help="databases of the fleet (default 100)")
    parser.add_argument("--fleet-count", type=int, default=20, help="migrations per fleet database (default 20)")
    parser.add_argument("--fleet-parallel", type=int, default=10, help="fleet migrate --parallel (default 10)")
    parser.add_argument(
        "--fleet-loop-repeat", type=int, default=1, help="runs of the shell loop (default 1: about a minute each)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target or goal fails")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be at least 1")
    if min(args.fleet_databases, args.fleet_count, args.fleet_parallel, args.fleet_loop_repeat) < 1:
        parser.error("--fleet-databases, --fleet-count, --fleet-parallel and --fleet-loop-repeat must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="migrate-job-bench-"))
    bench = Bench(args, work)
    started = time.monotonic()
    try:
        bench.run()
    except (peer_tools.PeersUnavailable, wheel.WheelUnavailable) as exc:
        log(str(exc))
        return 2
    finally:
        if bench.proxy is not None:
            bench.proxy.stop()
        if bench.server is not None:
            try:
                bench.server.stop()
            except devserver.DevServerError as exc:
                log(f"could not stop the server: {exc}")
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text, ok = report(bench)
    text += f"\nBenchmark runtime: {time.monotonic() - started:.0f} s.\n"
    sys.stdout.write(text)
    if not args.no_write:
        args.output.write_text(text, encoding="utf-8")
        log(f"wrote {args.output}")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
