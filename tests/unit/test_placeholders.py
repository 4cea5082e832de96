"""Pure tests of `${name}` placeholders (job.source) and of finding and checking callbacks (job.callbacks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from job import callbacks
from job.config import load_settings
from job.errors import SourceError
from job.source import Placeholders, callback_event, load, substitute

BUILTINS = {"schema": "tenant_7", "database": "app", "user": "migrator", "table": "migrate_job_history"}


def ph(values: dict[str, str] | None = None, mode: str = "auto") -> Placeholders:
    return Placeholders(values or {}, BUILTINS.get, mode)


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("select 1", {}, "select 1"),
        ("create schema ${app_schema}", {"app_schema": "app"}, "create schema app"),
        (
            "grant usage on schema ${App_Schema} to ${role}",
            {"app_schema": "a", "role": "r"},
            "grant usage on schema a to r",
        ),
        ("${migrate-job:schema}.t", {}, "tenant_7.t"),
        ("${flyway:defaultSchema}.t by ${flyway:user} in ${flyway:database}", {}, "tenant_7.t by migrator in app"),
        ("-- ${migrate-job:filename}", {}, "-- 0001_x.sql"),
        ("select '${x}${x}'", {"x": "ab"}, "select 'abab'"),
        ("select '$x' || '{y}' || '$${z}'", {"z": "1"}, "select '$x' || '{y}' || '$1'"),
    ],
)
def test_placeholders_are_replaced(text: str, values: dict[str, str], expected: str) -> None:
    """Defined values (names case-insensitive), built-ins and Flyway's built-in names are replaced."""
    assert substitute(Path("0001_x.sql"), text, ph(values)) == expected


def test_an_undefined_placeholder_names_file_line_and_how_to_define_it() -> None:
    """`${nope}` without a value is a one-line error with file:line, the setting to set and the way out."""
    with pytest.raises(SourceError) as info:
        substitute(Path("m/0002_y.sql"), "select 1;\n\nselect ${app-role};\n", ph({"x": "1"}))
    message = info.value.message
    assert message.startswith("m/0002_y.sql:3: undefined placeholder ${app-role}")
    assert "MIGRATE_PLACEHOLDER_APP_ROLE" in message and "placeholders=off" in message


@pytest.mark.parametrize(
    ("mode", "values", "directive", "expected"),
    [
        ("auto", {}, None, False),
        ("auto", {"a": "1"}, None, True),
        ("on", {}, None, True),
        ("off", {"a": "1"}, None, False),
        ("off", {}, True, True),
        ("auto", {"a": "1"}, False, False),
    ],
)
def test_when_replacement_applies(mode: str, values: dict[str, str], directive: bool | None, expected: bool) -> None:
    """auto: when something is defined; on/off; a file's `placeholders=on|off` directive wins."""
    assert ph(values, mode).applies(directive) is expected


def test_the_checksum_is_of_the_file_as_written(tmp_path: Path) -> None:
    """Changing a placeholder's value does not make an applied file look edited."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("create schema ${s};\n")
    (one,) = load(folder, placeholders=ph({"s": "first"}))
    (two,) = load(folder, placeholders=ph({"s": "second"}))
    assert one.checksum == two.checksum
    assert [s.text for s in one.up.statements] == ["create schema first"]
    assert [s.text for s in two.up.statements] == ["create schema second"]


def test_a_file_can_turn_replacement_off(tmp_path: Path) -> None:
    """`-- migrate-job: placeholders=off` keeps `${...}` as written (e.g. in a function body)."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("-- migrate-job: placeholders=off\nselect '${kept}';\n")
    (m,) = load(folder, placeholders=ph({"other": "1"}))
    assert [s.text for s in m.up.statements] == ["select '${kept}'"]


def test_placeholders_come_from_the_config_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[placeholders] in migrate.toml (shared and per environment), MIGRATE_PLACEHOLDER_<NAME> over them."""
    for key in list(os.environ):
        if key.startswith("MIGRATE_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "migrate.toml").write_text(
        "[placeholders]\napp_schema = 'app'\nrole = 'app_rw'\n[env.uat.placeholders]\nrole = 'uat_rw'\n"
    )
    monkeypatch.setenv("MIGRATE_PLACEHOLDER_APP_SCHEMA", "from_env")
    monkeypatch.setenv("MIGRATE_PLACEHOLDER_DB_PASSWORD", "s3cret!")
    settings = load_settings(env="uat")
    assert settings.placeholders == {"app_schema": "from_env", "role": "uat_rw", "db_password": "s3cret!"}
    assert "s3cret!" in settings.secrets()  # a secret-looking name: redacted from logs and dry runs


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("beforeMigrate.sql", "beforeMigrate"),
        ("afterMigrate__grant_app.sql", "afterMigrate"),
        ("afterMigrateError.sql", "afterMigrateError"),
        ("beforeEachMigrate__role.sql", "beforeEachMigrate"),
        ("beforeClean.sql", "beforeClean"),
        ("V1__beforeMigrate.sql", None),
        ("0001_after_migrate.sql", None),
        ("afterMigrateX.sql", None),
    ],
)
def test_callback_file_names(name: str, event: str | None) -> None:
    """Flyway's callback names (`<event>.sql`, `<event>__<description>.sql`) are callbacks, not migrations."""
    assert callback_event(name) == event


def test_callbacks_are_found_in_the_folder_and_callbacks_subfolder(tmp_path: Path) -> None:
    """Both places count, in name order per event; other Flyway events are listed as ignored."""
    folder = tmp_path / "m"
    (folder / "callbacks").mkdir(parents=True)
    (folder / "0001_a.sql").write_text("select 1;\n")
    (folder / "afterMigrate__b.sql").write_text("select 'b';\n")
    (folder / "callbacks" / "afterMigrate__a.sql").write_text("select 'a';\n")
    (folder / "callbacks" / "beforeEachMigrate.sql").write_text("set role app;\n")
    (folder / "beforeInfo.sql").write_text("select 1;\n")
    found = callbacks.load(folder)
    assert [c.path.name for c in found.of("afterMigrate")] == ["afterMigrate__a.sql", "afterMigrate__b.sql"]
    assert [c.path.name for c in found.of("beforeEachMigrate")] == ["beforeEachMigrate.sql"]
    assert [p.name for p in found.ignored] == ["beforeInfo.sql"]
    assert [m.filename for m in load(folder)] == ["0001_a.sql"]  # callbacks are not migrations


@pytest.mark.parametrize(
    ("name", "body", "words"),
    [
        ("beforeMigrate.sql", "select from;\n", "syntax error"),
        ("afterMigrate.sql", "begin;\nselect 1;\ncommit;\n", "cannot control transactions"),
        ("beforeEachMigrate.sql", "create index concurrently i on t (a);\n", "inside each migration's transaction"),
    ],
)
def test_a_bad_callback_is_refused_with_file_and_line(tmp_path: Path, name: str, body: str, words: str) -> None:
    """A callback that does not parse, controls transactions, or cannot join a migration's transaction: exit 4."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / name).write_text(body)
    with pytest.raises(SourceError) as info:
        callbacks.load(folder)
    assert words in info.value.message and str(folder / name) in info.value.message
