"""Pure tests of job.targets: targets files in three formats, their errors, catalog rows, and shards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from job.config import load_settings
from job.errors import ConfigError
from job.targets import Target, from_rows, parse, select_shard, shard_of, shard_spec, unique

TOML = """
[[targets]]
id = "eu-1"
url_env = "EU1_URL"

[[targets]]
id = "us-1"
secret_id = "prod/us-1/db"

[[targets]]
id = "ap-1"
parameter = "/prod/ap-1/url"
schema = "tenant_ap"

[[targets]]
id = "iam-1"
iam = true
host = "db.example.com"
port = 5432
dbname = "app"
user = "migrator"

[[discover]]
secrets_prefix = "prod/tenants/"

[[discover]]
schemas_query = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant_%'"
url_env = "EU1_URL"
"""


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets; EU1_URL names a database with a password."""
    for key in list(os.environ):
        if key.startswith(("MIGRATE_", "PG")) or key in ("DATABASE_URL", "JOB_COMPLETION_INDEX"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("EU1_URL", "postgresql://app:s3cret-pw@eu1.example.com/app")


def same_in_every_format(tmp_path: Path, data: dict[str, object]) -> list[tuple[list[Target], object]]:
    import yaml

    out = []
    for name, text in (("t.json", json.dumps(data)), ("t.yaml", yaml.safe_dump(data))):
        path = tmp_path / name
        path.write_text(text)
        out.append(parse(path, text))
    return out  # type: ignore[return-value]


def test_a_toml_targets_file_declares_every_connection_source(tmp_path: Path) -> None:
    """url_env, secret_id, parameter, IAM and a tenant schema each become a target; discover entries are kept."""
    path = tmp_path / "targets.toml"
    targets, discover = parse(path, TOML)
    by_id = {t.id: t for t in targets}
    assert by_id["eu-1"].url is not None and "s3cret-pw" in by_id["eu-1"].url.get_secret_value()
    assert by_id["us-1"].secret_id == "prod/us-1/db"
    assert (by_id["ap-1"].parameter, by_id["ap-1"].schema) == ("/prod/ap-1/url", "tenant_ap")
    assert (by_id["iam-1"].iam, by_id["iam-1"].host, by_id["iam-1"].port) == (True, "db.example.com", 5432)
    assert [d.secrets_prefix for d in discover] == ["prod/tenants/", None]
    assert discover[1].schemas_query and discover[1].url_env == "EU1_URL"
    assert "s3cret-pw" not in repr(by_id["eu-1"])


def test_yaml_and_json_targets_files_read_the_same(tmp_path: Path) -> None:
    """The same fleet written as YAML or JSON gives the same targets as TOML."""
    import tomllib

    data = tomllib.loads(TOML)
    expected = parse(tmp_path / "t.toml", TOML)
    for parsed in same_in_every_format(tmp_path, data):
        assert parsed == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[targets]]\nurl_env = 'EU1_URL'\n", "every target needs an `id`"),
        ("[[targets]]\nid = 'a'\nurl_env = 'NOT_SET_ANYWHERE'\n", "$NOT_SET_ANYWHERE is not set"),
        ("[[targets]]\nid = 'a'\nurl = 'postgresql://x'\n", "unknown key 'url'"),
        ("[[targets]]\nid = 'a'\nsecret_id = 's'\nparameter = 'p'\n", "give one of url_env, secret_id"),
        ("[[targets]]\nid = 'a'\nschema = 'bad-name'\n", "not a plain SQL identifier"),
        ("[[targets]]\nid = 'a'\nport = 'x'\n", "`port` must be a TCP port number"),
        ("[[discover]]\nschemas = ['a']\nsecrets_prefix = 'p'\n", "exactly one of"),
        ("[[discover]]\nsecrets_tag = 'novalue'\n", "`secrets_tag` must be KEY=VALUE"),
        ("targets = 3\n", "`targets` must be a list"),
        ("[fleet]\nx = 1\n", "unknown top-level key 'fleet'"),
        ("[[targets]\n", "not valid TOML"),
    ],
)
def test_a_bad_targets_file_is_one_line_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake in a targets file is a ConfigError (exit 2) that names the file, the entry and the key."""
    path = tmp_path / "targets.toml"
    with pytest.raises(ConfigError) as info:
        parse(path, text)
    assert message in info.value.message
    assert str(path) in info.value.message
    assert "\n" not in info.value.message


def test_a_password_in_a_bad_file_is_never_echoed(tmp_path: Path) -> None:
    """An error about a target whose URL holds a password does not print the URL."""
    path = tmp_path / "targets.toml"
    with pytest.raises(ConfigError) as info:
        parse(path, "[[targets]]\nid = 'a'\nurl_env = 'EU1_URL'\nsecret_id = 'x'\n")
    assert "s3cret-pw" not in info.value.message


def test_duplicate_ids_name_both_places() -> None:
    """The same target id twice (file and discovery) is refused, naming where each came from."""
    with pytest.raises(ConfigError) as info:
        unique([Target("a", origin="file: targets[0]"), Target("a", origin="schemas query")])
    assert "file: targets[0]" in info.value.message and "schemas query" in info.value.message


def test_catalog_rows_become_targets() -> None:
    """A catalog query's rows (id, dsn | secret_id, schema) become targets."""
    rows: list[dict[str, str | None]] = [
        {"id": "t1", "dsn": "postgresql://a@h/db1", "schema": None},
        {"id": "t2", "secret_id": "prod/t2", "schema": "tenant_2"},
    ]
    t1, t2 = from_rows(rows, "catalog")
    assert t1.url is not None and t1.url.get_secret_value() == "postgresql://a@h/db1"
    assert (t2.secret_id, t2.schema) == ("prod/t2", "tenant_2")
    with pytest.raises(ConfigError, match="must return columns id"):
        from_rows([{"name": "x"}], "catalog")


def test_target_settings_replace_the_connection_and_the_tenant() -> None:
    """A target's settings keep the job's settings but take its own connection and tenant schema."""
    base = load_settings(database_url="postgresql://base@h/db", lock_timeout="2s")
    tenant = Target("acme", schema="tenant_acme").settings(base)
    assert tenant.database_url is not None and tenant.database_url.get_secret_value() == "postgresql://base@h/db"
    assert (tenant.tenant_schema, tenant.history_schema, tenant.lock_timeout) == ("tenant_acme", "tenant_acme", 2.0)
    secret = Target("us-1", secret_id="prod/us-1").settings(base)
    assert (secret.database_url, secret.database_secret_id, secret.connection_source) == (None, "prod/us-1", "secret")


IDS = [f"tenant_{n:03d}" for n in range(200)]


@pytest.mark.parametrize("shards", [1, 2, 4, 7])
def test_shards_cover_every_target_exactly_once(shards: int) -> None:
    """The union of shards 0..N-1 is every target, each in exactly one shard."""
    targets = [Target(i) for i in IDS]
    seen = [t.id for index in range(shards) for t in select_shard(targets, (index, shards))]
    assert sorted(seen) == sorted(IDS)


def test_shard_assignment_is_stable() -> None:
    """A target's shard depends only on its id: adding targets never moves the others."""
    before = {i: shard_of(i, 4) for i in IDS}
    more = [*IDS, "new-a", "new-b"]
    assert {i: shard_of(i, 4) for i in more if i in before} == before
    assert len({shard_of(i, 4) for i in IDS}) == 4  # the hash spreads them


def test_shard_spec_from_flag_or_indexed_job() -> None:
    """--shard I/N, or JOB_COMPLETION_INDEX with MIGRATE_FLEET_SHARDS; inconsistent values are exit 2."""
    assert shard_spec(load_settings(fleet_shard="2/4")) == (2, 4)
    assert shard_spec(load_settings(fleet_shards=4, job_completion_index=3)) == (3, 4)
    assert shard_spec(load_settings()) is None
    with pytest.raises(ConfigError, match="JOB_COMPLETION_INDEX is not"):
        shard_spec(load_settings(fleet_shards=4))
    with pytest.raises(ConfigError, match="not below"):
        shard_spec(load_settings(fleet_shards=4, job_completion_index=4))
    with pytest.raises(ConfigError, match="--shard"):
        load_settings(fleet_shard="4/4")
