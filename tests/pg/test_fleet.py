"""Fleets on a real PostgreSQL: many databases and tenant schemas in one run, through the CLI.

Targets are databases (named by `url_env` in a targets file) and tenant schemas of one database (found by a
query). Every check looks at each target's own history afterwards: each migration applied exactly once.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.pg import cli
from tests.pg.cli import query, write
from tests.pg.runner import Jobs, wait_until
from tests.pgutil import PgServer, new_database

pytestmark = pytest.mark.pg

MIGRATIONS: dict[str, str | bytes] = {
    "1_accounts.sql": "CREATE TABLE accounts (id int PRIMARY KEY, email text);\n",
    "2_seed.sql": "INSERT INTO accounts VALUES (1, 'a@example.com');\nSELECT pg_sleep(0.05);\n",
    "3_index.sql": "CREATE INDEX accounts_email ON accounts (email);\n",
}
TENANTS_QUERY = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' ORDER BY 1"
DISCOVER_TENANTS = (
    '[[discover]]\nschemas_query = """' + TENANTS_QUERY.replace("\\", "\\\\") + '"""\nurl_env = "TENANTS_URL"\n'
)


def make_tenants(url: str, count: int) -> list[str]:
    names = [f"tenant_{n:02d}" for n in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return names


def tenant_fleet(tmp_path: Path, db_url: str, count: int, **extra: str) -> tuple[Path, list[str], dict[str, str]]:
    """A migrations folder and a targets file discovering `count` tenant schemas in db_url's database."""
    folder = write(tmp_path / "migrations", MIGRATIONS)
    tenants = make_tenants(db_url, count)
    targets = tmp_path / "targets.toml"
    targets.write_text(DISCOVER_TENANTS)
    env = {"TENANTS_URL": db_url, "MIGRATE_DIR": str(folder), "MIGRATE_FLEET_TARGETS": str(targets), **extra}
    return folder, tenants, env


def tenant_history(url: str, tenant: str) -> list[tuple[str, str]]:
    """(version, status) of a tenant's history; [] when the tenant never got a history table."""
    if query(url, "SELECT to_regclass(%s)", (f"{tenant}.migrate_job_history",)) == [(None,)]:
        return []
    rows = query(
        url,
        f"SELECT version, status FROM {sql.Identifier(tenant).as_string(None)}.migrate_job_history ORDER BY version",
    )
    return [(str(v), str(s)) for v, s in rows]


def applied_by_target(logs: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((str(e["target"]), str(e["version"])) for e in logs if e.get("event") == "migration.applied")


def fleet(*args: str, env: dict[str, str], timeout: float = 300) -> cli.Result:
    return cli.run_cli("fleet", *args, env=cli.clean_env(None, **env), timeout=timeout)


def report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_forty_databases_and_twenty_tenants_migrate_in_parallel_exactly_once(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """60 targets (40 databases + 20 schemas of one database) all migrate, each migration once, then a no-op."""
    folder = write(tmp_path / "migrations", MIGRATIONS)
    with ExitStack() as stack:
        urls = [stack.enter_context(new_database(pg_server)) for _ in range(41)]
        tenants_url, databases = urls[0], urls[1:]
        tenants = make_tenants(tenants_url, 20)
        lines = [f'[[targets]]\nid = "db-{n:02d}"\nurl_env = "DB_{n:02d}"\n' for n in range(40)]
        lines.append(DISCOVER_TENANTS)
        targets = tmp_path / "targets.toml"
        targets.write_text("\n".join(lines))
        env = {f"DB_{n:02d}": url for n, url in enumerate(databases)}
        env |= {"TENANTS_URL": tenants_url, "MIGRATE_DIR": str(folder)}

        report_file = tmp_path / "report.json"
        result = fleet(
            "migrate", "--targets", str(targets), "--parallel", "8", "--report-file", str(report_file), env=env
        )

        assert result.returncode == 0, result.describe()
        ids = [f"db-{n:02d}" for n in range(40)] + tenants
        counts = applied_by_target(result.logs)
        assert counts == Counter({(t, v): 1 for t in ids for v in ("1", "2", "3")})
        finished = {e["target"]: e for e in result.events("target.finished")}
        assert sorted(finished) == sorted(ids)
        assert all(
            (e["exit_code"], e["version_before"], e["version_after"]) == (0, None, "3") for e in finished.values()
        )
        for url in databases:
            assert [str(v) for (v,) in query(url, "SELECT version FROM migrate_job_history ORDER BY 1")] == [
                "1",
                "2",
                "3",
            ]
        for tenant in tenants:
            assert tenant_history(tenants_url, tenant) == [("1", "applied"), ("2", "applied"), ("3", "applied")]
        assert query(tenants_url, "SELECT to_regclass('public.accounts')") == [(None,)]  # files stay schema-agnostic
        assert report(report_file)["summary"]["succeeded"] == 60

        again = fleet("migrate", "--targets", str(targets), "--parallel", "8", env=env)

        assert again.returncode == 0, again.describe()
        assert applied_by_target(again.logs) == Counter()


def test_a_broken_target_fails_alone_and_the_report_names_it(db_url: str, tmp_path: Path) -> None:
    """One tenant whose schema conflicts with migration 1 fails; the others succeed; exit 8; report says why.
    (MIGRATE_ALLOW_NON_EMPTY: the hand-made table would otherwise be refused before anything runs.)"""
    _, tenants, env = tenant_fleet(tmp_path, db_url, 6)
    env = {**env, "MIGRATE_ALLOW_NON_EMPTY": "true"}
    query(db_url, "CREATE TABLE tenant_03.accounts (other int)")
    report_file = tmp_path / "report.json"

    result = fleet("migrate", "--parallel", "3", "--report-file", str(report_file), env=env)

    assert result.returncode == 8, result.describe()
    body = report(report_file)
    assert body["summary"]["failed_targets"] == ["tenant_03"]
    by_id = {t["id"]: t for t in body["targets"]}
    assert by_id["tenant_03"]["exit_code"] == 1 and "42P07" in by_id["tenant_03"]["error"]
    assert all(by_id[t]["state"] == "succeeded" for t in tenants if t != "tenant_03")
    [failed] = result.events("migration.failed")
    assert failed["target"] == "tenant_03"
    assert "tenant_03" in result.events("fleet.failed")[0]["error"]
    assert tenant_history(db_url, "tenant_03") == []


def test_a_failed_canary_stops_the_fleet_before_the_rest(db_url: str, tmp_path: Path) -> None:
    """--canary 2: a failure among the first two targets (by id) stops the run; the rest are not started."""
    _, tenants, env = tenant_fleet(tmp_path, db_url, 6)
    query(db_url, "CREATE TABLE tenant_01.accounts (other int)")
    report_file = tmp_path / "report.json"

    result = fleet("migrate", "--canary", "2", "--parallel", "4", "--report-file", str(report_file), env=env)

    assert result.returncode == 8, result.describe()
    states = {t["id"]: t["state"] for t in report(report_file)["targets"]}
    assert states == {"tenant_00": "succeeded", "tenant_01": "failed"} | {t: "not_started" for t in tenants[2:]}
    for tenant in tenants[2:]:
        assert query(db_url, f"SELECT to_regclass('{tenant}.migrate_job_history')") == [(None,)]


def test_max_failures_stops_starting_targets(db_url: str, tmp_path: Path) -> None:
    """--max-failures 1 --parallel 1: after the first failure no other target starts."""
    _, _tenants, env = tenant_fleet(tmp_path, db_url, 4)
    query(db_url, "CREATE TABLE tenant_00.accounts (other int)")

    result = fleet("migrate", "--max-failures", "1", "--parallel", "1", env=env)

    assert result.returncode == 8, result.describe()
    assert [e["target"] for e in result.events("target.finished")] == ["tenant_00"]
    assert result.events("fleet.finished")[0]["not_started"] == 3


def test_two_fleet_runs_at_once_never_apply_a_target_twice(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """Two fleet processes over the same targets: both exit 0, every migration of every target applied once."""
    _, tenants, env = tenant_fleet(tmp_path, db_url, 10)
    first = jobs.start(None, "fleet", "migrate", "--parallel", "4", **env)
    second = jobs.start(None, "fleet", "migrate", "--parallel", "4", **env)

    assert first.wait(timeout=300) == 0, first.describe()
    assert second.wait(timeout=300) == 0, second.describe()

    both = applied_by_target(first.logs()) + applied_by_target(second.logs())
    assert both == Counter({(t, v): 1 for t in tenants for v in ("1", "2", "3")})
    for tenant in tenants:
        assert [v for v, _ in tenant_history(db_url, tenant)] == ["1", "2", "3"]


def test_sigkill_mid_fleet_then_a_rerun_completes_every_target(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """A fleet killed with SIGKILL leaves each target at a migration boundary; the rerun finishes all of them."""
    folder, tenants, env = tenant_fleet(tmp_path, db_url, 12)
    write(folder, {"2_seed.sql": "INSERT INTO accounts VALUES (1, 'a');\nSELECT pg_sleep(0.3);\n"})
    killed = jobs.start(None, "fleet", "migrate", "--parallel", "3", **env)
    killed.wait_for_event("target.finished", timeout=120)

    killed.proc.kill()
    killed.wait(timeout=10)
    rerun = jobs.start(None, "fleet", "migrate", "--parallel", "3", **env)

    assert rerun.wait(timeout=300) == 0, rerun.describe()
    both = applied_by_target(killed.logs()) + applied_by_target(rerun.logs())
    assert all(n == 1 for n in both.values()), both
    for tenant in tenants:
        assert tenant_history(db_url, tenant) == [("1", "applied"), ("2", "applied"), ("3", "applied")]
        assert query(db_url, f"SELECT count(*) FROM {tenant}.accounts") == [(1,)]


def test_four_indexed_job_pods_cover_every_target_exactly_once(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """JOB_COMPLETION_INDEX=0..3 with MIGRATE_FLEET_SHARDS=4: every target migrated by exactly one process."""
    _, tenants, env = tenant_fleet(tmp_path, db_url, 16)
    pods = [
        jobs.start(None, "fleet", "migrate", JOB_COMPLETION_INDEX=str(i), MIGRATE_FLEET_SHARDS="4", **env)
        for i in range(4)
    ]
    for pod in pods:
        assert pod.wait(timeout=300) == 0, pod.describe()

    owners = {e["target"]: i for i, pod in enumerate(pods) for e in pod.events("target.finished")}
    assert sorted(owners) == tenants
    per_pod = [sum(1 for i in owners.values() if i == n) for n in range(4)]
    assert sum(per_pod) == 16 and [pod.event("fleet.shard")["shard"] for pod in pods] == [0, 1, 2, 3]
    assert applied_by_target([e for pod in pods for e in pod.logs()]) == Counter(
        {(t, v): 1 for t in tenants for v in ("1", "2", "3")}
    )


def test_sigterm_cancels_running_targets_and_reports_the_rest(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """SIGTERM mid-fleet: running targets rolled back and unlocked, others not started; exit 143."""
    folder, tenants, env = tenant_fleet(tmp_path, db_url, 8)
    write(folder, {"2_seed.sql": "INSERT INTO accounts VALUES (1, 'a');\nSELECT pg_sleep(60);\n"})
    report_file = tmp_path / "report.json"
    job = jobs.start(None, "fleet", "migrate", "--parallel", "2", "--report-file", str(report_file), **env)
    wait_until(
        lambda: len(query(db_url, "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")) == 2,
        60,
        "two targets to sleep in migration 2",
        on_timeout=job.describe,
    )

    job.send(signal.SIGTERM)

    assert job.wait(timeout=30) == 143, job.describe()
    states = Counter(t["state"] for t in report(report_file)["targets"])
    assert states == Counter({"interrupted": 2, "not_started": 6})
    assert cli.wait_until_no_runner_left(db_url) == ([], [])
    for tenant in tenants:
        assert [v for v, _ in tenant_history(db_url, tenant)] in ([], ["1"])
    interrupted = [t["id"] for t in report(report_file)["targets"] if t["state"] == "interrupted"]
    for tenant in interrupted:
        assert tenant_history(db_url, tenant) == [("1", "applied")]  # migration 2 was rolled back


def test_at_most_max_per_host_targets_use_one_server_at_once(db_url: str, tmp_path: Path, jobs: Jobs) -> None:
    """--parallel 6 --max-per-host 2 on one server: never more than 2 runner sessions at a time."""
    folder, _tenants, env = tenant_fleet(tmp_path, db_url, 6)
    write(folder, {"2_seed.sql": "INSERT INTO accounts VALUES (1, 'a');\nSELECT pg_sleep(0.4);\n"})
    job = jobs.start(None, "fleet", "migrate", "--parallel", "6", "--max-per-host", "2", **env)
    peak = 0
    while job.returncode is None:
        rows = query(  # active: a closed session may linger a moment in pg_stat_activity, idle, while it exits
            db_url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'migrate-job:migrate%'"
            " AND state = 'active'",
        )
        peak = max(peak, int(rows[0][0]))
        time.sleep(0.02)

    assert job.wait(timeout=10) == 0, job.describe()
    assert 1 <= peak <= 2


def test_fleet_status_validate_and_wait_for_version(db_url: str, tmp_path: Path) -> None:
    """`fleet status` lists each target's version and pending count; validate and wait-for-version pass after."""
    _, tenants, env = tenant_fleet(tmp_path, db_url, 3)
    before = fleet("status", env=env)
    assert before.returncode == 0, before.describe()
    lines = {line.split()[0]: line.split() for line in before.stdout.splitlines()[1:]}
    assert sorted(lines) == tenants and all(cells[1] == "3" for cells in lines.values())  # 3 pending

    assert fleet("migrate", env=env).returncode == 0
    after = fleet("status", env=env)
    assert {line.split()[0]: line.split()[1] for line in after.stdout.splitlines()[1:]} == dict.fromkeys(tenants, "3")
    assert fleet("validate", env=env).returncode == 0
    waited = fleet("wait-for-version", "3", "--timeout", "10s", env=env)
    assert waited.returncode == 0, waited.describe()
    late = fleet("wait-for-version", "4", "--timeout", "1s", env=env)
    assert late.returncode == 4, late.describe()  # every target: not reached → the shared code


def test_target_passwords_never_appear(pg_server: PgServer, tmp_path: Path) -> None:
    """A target whose URL carries a password: not in the logs, the report or the error of a failure."""
    folder = write(tmp_path / "migrations", MIGRATIONS)
    with new_database(pg_server) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS fleet_pw; CREATE ROLE fleet_pw LOGIN SUPERUSER PASSWORD 'Fl33t-s3cret'")
        secret_url = url.replace("postgres@", "fleet_pw:Fl33t-s3cret@", 1)
        targets = tmp_path / "targets.toml"
        targets.write_text('[[targets]]\nid = "ok"\nurl_env = "OK_URL"\n[[targets]]\nid = "bad"\nurl_env = "BAD_URL"\n')
        bad_url = secret_url.rsplit("/", 1)[0] + "/no_such_database_here"
        env = {"OK_URL": secret_url, "BAD_URL": bad_url, "MIGRATE_DIR": str(folder), "MIGRATE_CONNECT_TIMEOUT": "2s"}
        report_file = tmp_path / "report.json"

        result = fleet("migrate", "--targets", str(targets), "--report-file", str(report_file), env=env)

        assert result.returncode == 8, result.describe()
        assert "Fl33t-s3cret" not in result.output
        assert "Fl33t-s3cret" not in report_file.read_text()
        query(url, "DROP OWNED BY fleet_pw")
