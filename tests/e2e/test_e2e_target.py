"""The e2e tier itself, without AWS (nothing leaves 127.0.0.1): finding the target (a stack's
``ApiUrl`` on moto's CloudFormation, the ``E2E_BASE_URL`` override, what is missing), SigV4 on the
admin calls, the portal cases' skip, the credentials handover, and a smoke run of ``make e2e``'s
path against the local gateway."""

from __future__ import annotations

import datetime
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.credentials import Credentials

from tests.e2e import plugin
from tests.e2e import target as target_module
from tests.e2e.target import ID_PREFIX, SigV4Admin, Target, TargetError, jwt_subject, resolve_target
from tests.integration.client import Api, BearerAuth

REPO = Path(__file__).resolve().parents[2]
API_URL = "https://abc123.execute-api.eu-west-3.amazonaws.com"


def _environ(**variables: str) -> dict[str, str]:
    """The tests' environment (no shared AWS files, no IMDS) with fake credentials and ``variables``."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "E2E_", "STACK_NAME"))
    }
    missing = str(Path(os.environ["AWS_CONFIG_FILE"]))
    environ.update(
        AWS_CONFIG_FILE=missing,
        AWS_SHARED_CREDENTIALS_FILE=missing,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ACCESS_KEY_ID="AKIDE2ETEST",
        AWS_SECRET_ACCESS_KEY="e2e-secret",
        AWS_REGION="eu-west-3",
    )
    environ.update(variables)
    return environ


class StubbedStacks:
    """CloudFormation for :func:`resolve_target`, on botocore's Stubber (nothing leaves the
    process): stack ``ai-credits-e2e`` exists in eu-west-3 only; ``regions`` are the regions of the
    clients made, ``asked`` the stacks described."""

    def __init__(self) -> None:
        self.regions: list[str] = []
        self.asked: list[str] = []

    def client(self, session: Any, region: str | None, credentials: Any) -> Any:
        from botocore.stub import Stubber

        client = original_cloudformation_client(session, region, credentials)
        self.regions.append(client.meta.region_name)
        stubber = Stubber(client)
        found = client.meta.region_name == "eu-west-3"
        if found:
            stack = {
                "StackName": "ai-credits-e2e",
                "CreationTime": datetime.datetime(2026, 1, 1),
                "StackStatus": "UPDATE_COMPLETE",
                "Outputs": [
                    {"OutputKey": "TableName", "OutputValue": "ai-credits"},
                    {"OutputKey": "ApiUrl", "OutputValue": API_URL},
                ],
            }
            stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "ai-credits-e2e"})
        else:
            stubber.add_client_error(
                "describe_stacks", "ValidationError", "Stack with id ai-credits-e2e does not exist", 400
            )
        stubber.activate()
        client.meta.events.register("before-parameter-build.cloudformation.DescribeStacks", self._record)
        return client

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.asked.append(params["StackName"])


original_cloudformation_client = target_module.cloudformation_client


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> StubbedStacks:
    stacks = StubbedStacks()
    monkeypatch.setattr(target_module, "cloudformation_client", stacks.client)
    return stacks


# -- the target -------------------------------------------------------------------------------------


def test_the_base_url_is_the_stacks_api_url_output_in_the_region_of_the_environment(
    cloudformation: StubbedStacks,
):
    target = resolve_target(_environ(STACK_NAME="ai-credits-e2e"))
    assert (target.kind, target.base_url, target.id_prefix) == ("stack", API_URL, ID_PREFIX)
    assert (cloudformation.regions, cloudformation.asked) == (["eu-west-3"], ["ai-credits-e2e"])
    assert isinstance(target.admin, SigV4Admin)
    assert (target.admin.region, target.admin.credentials.access_key) == ("eu-west-3", "AKIDE2ETEST")
    assert target.portal_token is None
    # AWS_DEFAULT_REGION when AWS_REGION is not set
    environ = _environ(STACK_NAME="ai-credits-e2e", AWS_DEFAULT_REGION="eu-west-3")
    del environ["AWS_REGION"]
    assert resolve_target(environ).base_url == API_URL
    assert cloudformation.regions[-1] == "eu-west-3"


def test_a_stack_missing_in_the_region_is_a_clear_error(cloudformation: StubbedStacks):
    with pytest.raises(
        TargetError, match=r"cannot describe stack 'ai-credits-e2e' in eu-west-1: .*does not exist"
    ):
        resolve_target(_environ(STACK_NAME="ai-credits-e2e", AWS_REGION="eu-west-1"))


def test_e2e_base_url_overrides_the_stack_output(cloudformation: StubbedStacks):
    target = resolve_target(_environ(STACK_NAME="ai-credits-e2e", E2E_BASE_URL="https://api.example.com/v/"))
    assert target.base_url == "https://api.example.com/v"
    assert cloudformation.asked == []
    assert isinstance(target.admin, SigV4Admin)
    api = target.api
    assert (api.scheme, api.host, api.port, api.base_path) == ("https", "api.example.com", 443, "/v")


def test_missing_stack_name_credentials_or_region_say_what_to_set():
    with pytest.raises(TargetError, match=r"needs STACK_NAME=.*or E2E_BASE_URL="):
        resolve_target(_environ())
    no_credentials = _environ(STACK_NAME="s")
    del no_credentials["AWS_ACCESS_KEY_ID"], no_credentials["AWS_SECRET_ACCESS_KEY"]
    with pytest.raises(TargetError, match=r"no AWS credentials found.*execute-api:Invoke"):
        resolve_target(no_credentials)
    no_region = _environ(STACK_NAME="s")
    del no_region["AWS_REGION"]
    with pytest.raises(TargetError, match=r"no AWS region: set AWS_REGION"):
        resolve_target(no_region)


def test_the_portal_account_is_the_tokens_sub_unless_e2e_account_id_names_it(
    portal_token: Any,
):
    token = portal_token("acct-from-sub")
    assert jwt_subject(token) == "acct-from-sub"
    base = {"E2E_BASE_URL": "https://api.example.com", "E2E_PORTAL_TOKEN": token}
    assert resolve_target(_environ(**base)).account_id == "acct-from-sub"
    assert resolve_target(_environ(**base, E2E_ACCOUNT_ID="acct-named")).account_id == "acct-named"
    assert resolve_target(_environ(E2E_BASE_URL="https://api.example.com")).account_id == "e2e-account"
    with pytest.raises(TargetError, match="no 'sub' claim"):
        resolve_target(_environ(**base | {"E2E_PORTAL_TOKEN": "not-a-jwt"}))


def test_the_portal_cases_are_skipped_without_a_portal_token():
    target = Target("stack", "https://api.example.com", BearerAuth("x"), None, "e2e-account")
    with pytest.raises(pytest.skip.Exception, match="E2E_PORTAL_TOKEN is not set"):
        plugin.portal_token_or_skip(target)
    with_token = Target("stack", "https://api.example.com", BearerAuth("x"), "a.b.c", "acct")
    assert plugin.portal_token_or_skip(with_token) == "a.b.c"


def test_without_a_portal_token_the_portal_cases_report_the_skip_reason():
    environ = _environ(E2E_TARGET="stack", E2E_BASE_URL="http://127.0.0.1:9", E2E_ADMIN_TOKEN="x")
    done = _pytest(
        environ, "-q", "-rs", "-m", "e2e", "-k", "portal_lists or ledger", "tests/e2e/test_e2e_cases.py"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b2 skipped\b", done.stdout) and "E2E_PORTAL_TOKEN is not set" in done.stdout, (
        done.stdout
    )


# -- SigV4 ------------------------------------------------------------------------------------------

SIGNED = re.compile(
    r"AWS4-HMAC-SHA256 Credential=AKIDE2ETEST/(\d{8})/eu-west-3/execute-api/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})"
)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth

    moment = datetime.datetime(2026, 11, 5, 12, 30, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)


def _sign(body: bytes, **credentials: Any) -> dict[str, str]:
    signer = SigV4Admin(Credentials("AKIDE2ETEST", "e2e-secret", **credentials), "eu-west-3")
    url = f"{API_URL}/v1/admin/licenses/e2e-lic-1"
    return signer.headers("PUT", url, body, {"content-type": "application/json"})


def test_an_admin_request_is_signed_for_execute_api_and_its_body(frozen_clock: None):
    signed = _sign(b'{"credits_per_term": 1}')
    match = SIGNED.fullmatch(signed["Authorization"])
    assert match, signed
    assert match[1] == "20261105" and signed["X-Amz-Date"] == "20261105T123000Z"
    assert match[2].split(";") == ["content-type", "host", "x-amz-date"]
    assert SIGNED.fullmatch(_sign(b'{"credits_per_term": 1}')["Authorization"])[3] == match[3]  # type: ignore[index]
    assert SIGNED.fullmatch(_sign(b'{"credits_per_term": 2}')["Authorization"])[3] != match[3]  # type: ignore[index]
    with_token = _sign(b"{}", token="session-token")
    assert with_token["X-Amz-Security-Token"] == "session-token"
    assert "x-amz-security-token" in SIGNED.fullmatch(with_token["Authorization"])[2]  # type: ignore[index]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_what_the_client_sends_is_what_was_signed():
    """The signature a server recomputes from the request it received (host with its port, path
    under the base URL's, body) equals the one sent."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    credentials = Credentials("AKIDE2ETEST", "e2e-secret")
    try:
        base = f"http://127.0.0.1:{server.server_port}/prod"
        api = Api(base, admin=SigV4Admin(credentials, "eu-west-3"), id_prefix=ID_PREFIX)
        assert api.provision("e2e-lic-1").status == 201
    finally:
        server.shutdown()
        server.server_close()
    method, path, headers, body = _Recorder.seen[-1]
    assert (method, path, headers["host"]) == (
        "PUT",
        "/prod/v1/admin/licenses/e2e-lic-1",
        f"127.0.0.1:{server.server_port}",
    )
    match = SIGNED.fullmatch(headers["authorization"])
    assert match, headers
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{path}",
        data=body,
        headers={name: headers[name] for name in match[2].split(";")},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(credentials, "execute-api", "eu-west-3")
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    assert match[3] == expected
    assert b'"account_id": "acct-1"' in body


# -- the handover and the smoke run --------------------------------------------------------------


def _pytest(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_make_e2e_stops_with_one_line_when_stack_name_is_missing():
    done = _pytest(_environ(E2E_TARGET="stack"), "-q", "-m", "e2e", "tests/e2e/test_e2e_cases.py")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "ERROR: e2e: make e2e needs STACK_NAME=" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_the_real_credentials_reach_the_target_before_the_tests_fake_ones_replace_them():
    """The plugin resolves the stack before tests/conftest.py installs ``testing``/us-east-1."""
    environ = _environ(
        E2E_TARGET="stack", E2E_BASE_URL="https://api.example.com", AWS_ACCESS_KEY_ID="AKIDHANDOVER"
    )
    done = _pytest(environ, "--collect-only", "-m", "e2e", "tests/e2e/test_e2e_cases.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "e2e target (cases marked e2e): E2E_BASE_URL https://api.example.com at https://api.example.com; "
        "admin calls SigV4-signed for eu-west-3 with access key ...OVER; no E2E_PORTAL_TOKEN"
    ) in done.stdout


@pytest.mark.integration
def test_smoke_the_e2e_path_runs_cases_against_the_local_gateway(gateway: str, portal_token: Any):
    """``make e2e``'s path (E2E_TARGET=stack, ids under ``e2e-``) with E2E_BASE_URL at the local
    gateway, which takes its admin bearer token in place of SigV4."""
    environ = _environ(
        E2E_TARGET="stack",
        E2E_BASE_URL=gateway,
        E2E_ADMIN_TOKEN="local-admin-token",
        E2E_PORTAL_TOKEN=portal_token("e2e-smoke-account"),
    )
    done = _pytest(
        environ,
        "-m",
        "e2e",
        "-k",
        "walk_through or portal_lists",
        "tests/integration/test_api.py",
        "tests/e2e/test_e2e_cases.py",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b2 passed, \d+ deselected\b", done.stdout), done.stdout
    assert f"E2E_BASE_URL {gateway} at {gateway}" in done.stdout
    # What it provisioned is under the e2e- prefix and the token's account.
    listed = Api(gateway).licenses(portal_token("e2e-smoke-account")).body["licenses"]
    assert listed and all(entry["license_id"].startswith(ID_PREFIX) for entry in listed)
