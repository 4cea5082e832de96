"""The `migrate-job` process itself (job.cli.entry): output complete, exit codes kept, GC back on for the run.

entry() leaves the interpreter with os._exit once stdout and stderr are flushed, so these run it as a
real process, as a user or an orchestrator does.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from job import __version__, cli


def _run(*args: str, cwd: Path, stdout: int | object = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(cli.__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "job", *args],
        cwd=cwd,
        env=env,
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
    )


def test_output_to_a_file_is_complete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Redirected to a file (block-buffered), the whole --help text is there: nothing lost at the fast exit."""
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    expected = capsys.readouterr().out
    out = tmp_path / "help.txt"
    with out.open("w") as fh:
        proc = _run("--help", cwd=tmp_path, stdout=fh)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == expected
    assert len(expected) > 8192  # more than one buffer's worth


def test_exit_codes_of_argparse_are_kept(tmp_path: Path) -> None:
    """--version exits 0 with the version; an unknown argument exits 2 with the usage on stderr."""
    version = _run("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout.strip()) == (0, f"migrate-job {__version__}")
    bad = _run("status", "--no-such-flag", cwd=tmp_path)
    assert bad.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in bad.stderr


def test_a_command_writes_its_files_and_exits_with_its_code(tmp_path: Path) -> None:
    """`create` through the process: the file is written and closed, its path printed, exit 0."""
    proc = _run("create", "add_users", "--dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    created = tmp_path / "0001_add_users.sql"
    assert proc.stdout.strip() == str(created)
    assert created.read_text().strip()


def test_garbage_collection_is_back_on_for_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up runs without the cyclic GC; the command itself runs with it on (start-up's objects frozen)."""

    class Exited(Exception):
        pass

    seen: dict[str, bool] = {}
    real_main = cli.main

    def main_with_probe(argv: list[str] | None = None, *, _after_startup: object = None) -> int:
        assert callable(_after_startup)
        seen["off_at_start"] = not gc.isenabled()

        def probe() -> None:
            _after_startup()
            seen["on_for_the_run"] = gc.isenabled()
            seen["startup_frozen"] = gc.get_freeze_count() > 0

        return real_main(["create", "x", "--dir", str(tmp_path)], _after_startup=probe)

    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(cli, "main", main_with_probe)
    monkeypatch.setattr(os, "_exit", fake_exit)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # main() installs its own
    try:
        with pytest.raises(Exited) as exc:
            cli.entry()
    finally:
        gc.unfreeze()
        gc.enable()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert exc.value.args == (0,)
    assert seen == {"off_at_start": True, "on_for_the_run": True, "startup_frozen": True}
