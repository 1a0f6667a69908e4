"""template.yaml through the tools that deploy it, offline: cfn-lint, ``sam validate --lint``, and
SAM's own transform (the IAM roles it generates hold nothing more than the template asks).

cfn-lint runs through its Python API (a dev dependency). The SAM CLI cannot share the project's
environment (its aws-sam-translator pins another pydantic than the layer's): it is found as
``$SAM_CLI``, else the one ``make sam`` installs in ``.venv-sam``, else ``sam`` on the PATH, and
the transform runs with the Python next to it. ``sam build`` runs too: the layer is built by
``shared/Makefile`` (arm64 wheels for python3.12, from PyPI), so no python3.12 or Docker is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file

from local import cfn
from local.layer import RUNTIME_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# What SAM adds to every function's role: logs (basic execution) and X-Ray (Tracing: Active).
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# What SAM adds for a DynamoDB event: reading the stream (its event source mapping reads it with the
# function's role).
STREAM_READ_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole"

# Run by the SAM CLI's Python: template.yaml transformed (local code folders as S3 URIs, managed
# policy names resolved without IAM), the roles' managed policies and statements as JSON.
_TRANSFORM = r"""
import json, re, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class ManagedPolicies:
    def load(self):
        return json.loads(sys.argv[2])

text = re.sub(r"(CodeUri|ContentUri): \S+", r"\1: s3://bucket/key.zip", open(sys.argv[1]).read())
resources = transform(yaml_parse(text), {}, ManagedPolicies())["Resources"]
roles = {
    logical_id: {
        "managed": resource["Properties"].get("ManagedPolicyArns", []),
        "statements": [
            [statement["Action"], statement["Resource"]]
            for policy in resource["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
        ],
    }
    for logical_id, resource in resources.items()
    if resource["Type"] == "AWS::IAM::Role"
}
print(json.dumps(roles))
"""


def _sam_cli() -> Path | None:
    candidates = [os.environ.get("SAM_CLI"), str(ROOT / ".venv-sam" / "bin" / "sam"), shutil.which("sam")]
    return next((Path(path) for path in candidates if path and os.access(path, os.X_OK)), None)


@pytest.fixture(scope="module")
def sam() -> Path:
    found = _sam_cli()
    assert found is not None, "no SAM CLI: `make sam` installs it (make test does), or set SAM_CLI"
    return found


def _sam_environment() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(ROOT)),
        "LANG": "C.UTF-8",
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_cfn_lint_finds_nothing_not_even_a_warning() -> None:
    matches = lint_file(TEMPLATE)

    assert [f"{match.rule.id} {match.message} (line {match.linenumber})" for match in matches] == []


def _run_sam(sam: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(sam), *arguments, "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        env=_sam_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_sam_validate_lint_passes(sam: Path) -> None:
    result = _run_sam(sam, "validate", "--lint")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_the_roles_sam_generates_hold_nothing_more_than_the_template_asks(sam: Path) -> None:
    """Each function's role: its inline ``Policies`` statements (tests/test_template.py checks them
    against the requests it makes), logs, X-Ray, and for the renew function sending a failed run
    to the dead-letter queue; for the stream function, reading the stream and sending a batch it
    gave up to its queue. The schedules' roles: invoking their function (and for the renewal's,
    the queue; the hold sweeper's has none: the next sweep supersedes a lost one). The optional
    webhook's role: calling the webhook."""
    python = sam.parent / "python"
    if not os.access(python, os.X_OK):
        pytest.skip(f"no Python next to {sam} to run SAM's transform with")
    result = subprocess.run(
        [str(python), "-c", _TRANSFORM, str(TEMPLATE), json.dumps(MANAGED_POLICIES)],
        env=_sam_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    roles: dict[str, Any] = json.loads(result.stdout)
    template = cfn.load_template(TEMPLATE)
    queue = {"Fn::GetAtt": ["RenewalDeadLetterQueue", "Arn"]}
    failure_queue = {"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}
    sent_by = {"RenewFunction": queue, "StreamFunction": failure_queue}

    functions = {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    expected = {
        f"{logical_id}Role": {
            "managed": sorted(MANAGED_POLICIES.values())
            + ([STREAM_READ_POLICY] if logical_id == "StreamFunction" else []),
            "statements": [
                [statement["Action"], statement["Resource"]]
                for policy in properties["Policies"]
                for statement in policy["Statement"]
            ]
            + ([["sqs:SendMessage", sent_by[logical_id]]] if logical_id in sent_by else []),
        }
        for logical_id, properties in functions.items()
    }
    # The schedules invoke the functions' alias "live" (AutoPublishAlias): the SnapStart version.
    expected["RenewFunctionHourlyRole"] = {
        "managed": [],
        "statements": [
            ["lambda:InvokeFunction", {"Ref": "RenewFunctionAliaslive"}],
            ["sqs:SendMessage", queue],
        ],
    }
    expected["HoldSweeperFunctionEveryMinuteRole"] = {
        "managed": [],
        "statements": [["lambda:InvokeFunction", {"Ref": "HoldSweeperFunctionAliaslive"}]],
    }
    expected["EventsWebhookRole"] = {
        "managed": [],
        "statements": [["events:InvokeApiDestination", {"Fn::GetAtt": ["EventsWebhookDestination", "Arn"]}]],
    }

    def comparable(role: dict[str, Any]) -> tuple[list[str], list[str]]:
        return sorted(role["managed"]), sorted(
            json.dumps(statement, sort_keys=True) for statement in role["statements"]
        )

    assert {name: comparable(role) for name, role in roles.items()} == {
        name: comparable(role) for name, role in expected.items()
    }


def test_sam_build_lays_out_every_function_and_the_layer(sam: Path, tmp_path: Path) -> None:
    """``sam build`` (the step before ``sam deploy``) on this machine: each function is its
    ``app.py``; the layer is ``python/`` with the ``ai_credits`` package and exactly the pinned
    requirements, built for arm64 and python3.12, without the Lambda runtime's own packages."""
    build = tmp_path / "build"
    result = _run_sam(sam, "build", "--build-dir", str(build))
    assert result.returncode == 0, result.stdout + result.stderr

    template = cfn.load_template(TEMPLATE)
    for function in cfn.functions(template, "table"):
        files = sorted(path.name for path in (build / function.logical_id).iterdir())
        assert files == ["app.py"], function.logical_id
    layer = build / "RulesLayer" / "python"
    pinned = {
        line.split("==")[0].lower().replace("-", "_")
        for line in (ROOT / "shared" / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    installed = {path.name.split("-")[0].lower() for path in layer.glob("*.dist-info")}
    assert installed == pinned
    assert (layer / "ai_credits" / "store.py").is_file()
    assert not any((layer / name).exists() for name in RUNTIME_PACKAGES)
    native = list(layer.glob("pydantic_core/_pydantic_core.*.so"))
    assert [path.name for path in native] == ["_pydantic_core.cpython-312-aarch64-linux-gnu.so"]
