"""The command line: every flag that names a setting reaches the settings; help documents exit codes."""

from __future__ import annotations

import argparse

import pytest

from job.cli import _SETTING_ARGS, COMMANDS, build_parser
from job.config import Settings


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        found.add(action.dest)
        if isinstance(action.choices, dict):
            for sub in action.choices.values():
                found |= _dests(sub)
    return found


def test_every_setting_flag_is_passed_to_settings() -> None:
    """A flag whose name is a setting (e.g. --lock-timeout, --env, --yes) is never silently ignored."""
    missing = sorted(d for d in _dests(build_parser()) if d in Settings.model_fields and d not in _SETTING_ARGS)
    assert missing == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`migrate-job COMMAND --help` works for every command and lists the exit codes."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "exit codes" in capsys.readouterr().out


def test_main_help_lists_settings_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`migrate-job --help` documents the exit codes and the environment settings."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for text in ("143", "MIGRATE_LOCK_TIMEOUT", "DATABASE_URL", "MIGRATE_BACKUP"):
        assert text in out


def test_flags_override_settings() -> None:
    """Flags given on the command line end up in the parsed namespace under the setting's name."""
    args = build_parser().parse_args(["migrate", "--lock-timeout", "200ms", "--yes", "--env", "production"])
    assert (args.lock_timeout, args.confirm_production, args.env) == ("200ms", True, "production")
