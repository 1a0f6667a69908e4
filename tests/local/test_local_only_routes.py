"""The local server against DNS rebinding: it listens on 127.0.0.1 only, and its local-only routes
(``/local/...``, the Lambda Invoke API, the console and the docs) answer ``403 forbidden`` to a
``Host`` that is not a loopback name, without running anything. The template's routes do not look at
``Host`` (as in AWS).

Through the session's gateway (the real functions on DynamoDB Local), like tests/integration.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from local.apigw import GatewaySettings
from local.cfn import load_template
from local.environments import GatewayConfigError
from local.gateway import build_gateway
from tests.integration.client import Answer, Api, unique
from tests.serving import served

pytestmark = pytest.mark.integration

RENEW_PATH = "/2015-03-31/functions/RenewFunction/invocations"
REBOUND_HOSTS = ["evil.example", "evil.example:3000", "127.0.0.1.nip.io:3000", "localhost.evil.example"]


@pytest.fixture(scope="module")
def api(gateway: str) -> Api:
    return Api(gateway)


@pytest.fixture(scope="module")
def port(gateway: str) -> int:
    port = urlsplit(gateway).port
    assert port is not None
    return port


def assert_forbidden(answer: Answer) -> None:
    assert (answer.status, answer.code) == (403, "forbidden"), answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert set(answer.body) == {"type", "title", "status", "detail", "code"}
    assert answer.body["status"] == 403


def raw_request(port: int, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send bytes as they are (no Host added); the status and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def term_of(api: Api, owner: str, license_id: str) -> tuple[str, str]:
    answer = api.credits(owner, license_id)
    assert answer.status == 200, answer.body
    return answer.body["term_start"], answer.body["term_end"]


# -- the Lambda Invoke API ------------------------------------------------------------------------


@pytest.mark.parametrize("host", REBOUND_HOSTS)
def test_a_rebound_host_cannot_invoke_a_function_and_nothing_runs(
    api: Api, port: int, portal_token: Callable[..., str], host: str
) -> None:
    # Given a license whose term ended, so that a renewal would change it
    account = unique("acct")
    license_id = unique("lic")
    provisioned = api.provision(
        license_id,
        account_id=account,
        term_start="2012-01-01T00:00:00Z",
        term_end="2013-01-01T00:00:00Z",
        expires_at="2030-01-01T00:00:00Z",
    )
    assert provisioned.status == 201, provisioned.body
    owner = portal_token(account)
    event = {"license_id": license_id, "time": "2013-01-01T00:10:00Z"}

    # When a page rebound to 127.0.0.1 asks the Invoke API to run the renewal
    refused = api.call("POST", RENEW_PATH, event, headers={"Host": host})

    # Then it is refused and the renewal did not run
    assert_forbidden(refused)
    assert term_of(api, owner, license_id) == ("2012-01-01T00:00:00Z", "2013-01-01T00:00:00Z")

    # While the same request for a loopback Host renews the license
    renewed = api.call("POST", RENEW_PATH, event, headers={"Host": f"localhost:{port}"})
    assert renewed.status == 200, renewed.body
    assert renewed.body["renewed"] == [license_id]
    assert term_of(api, owner, license_id) == ("2013-01-01T00:00:00Z", "2014-01-01T00:00:00Z")


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost", "LOCALHOST:{port}", "[::1]:{port}"])
def test_a_loopback_host_invokes(api: Api, port: int, host: str) -> None:
    # A scheduled run "in 2000": every license of the shared table has a later term_end.
    answer = api.call(
        "POST", RENEW_PATH, {"time": "2000-01-01T00:00:00Z"}, headers={"Host": host.format(port=port)}
    )

    assert answer.status == 200, answer.body
    assert "x-amz-function-error" not in answer.headers
    assert (answer.body["renewed"], answer.body["failed"]) == ([], [])


def test_an_invocation_without_host_or_with_two_hosts_is_refused(port: int) -> None:
    body = json.dumps({"license_id": unique("lic-none")}).encode()
    request = f"POST {RENEW_PATH} HTTP/1.0\r\nContent-Length: {len(body)}\r\n".encode()

    no_host = raw_request(port, request + b"\r\n" + body)
    two_hosts = raw_request(port, request + b"Host: localhost\r\nHost: evil.example\r\n\r\n" + body)

    for status, problem in (no_host, two_hosts):
        assert (status, problem["code"]) == (403, "forbidden")


# -- /local/..., the console and the docs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/local/demo"),
        ("PUT", "/local/demo"),
        ("GET", "/local/events"),
        ("GET", "/local/console/console.js"),
        ("GET", "/local/anything/else"),
        ("GET", "/%6cocal/demo"),
        ("GET", "/"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ],
)
@pytest.mark.parametrize("host", REBOUND_HOSTS[:2])
def test_local_only_routes_refuse_a_rebound_host(api: Api, method: str, path: str, host: str) -> None:
    assert_forbidden(
        api.call(method, path, headers={"Host": host, "Authorization": "Bearer local-admin-token"})
    )


def test_a_rebound_host_cannot_register_a_demo(api: Api, port: int) -> None:
    registration = {
        "license_id": unique("lic-evil"),
        "account_id": "acct-evil",
        "sites": [{"site": "evil.example", "environment": "live", "activation_token": "evil"}],
    }

    refused = api.call(
        "PUT", "/local/demo", registration, headers={"Host": "evil.example"}, token="local-admin-token"
    )

    assert_forbidden(refused)
    registered = api.call("GET", "/local/demo", headers={"Host": f"127.0.0.1:{port}"})
    assert registered.status in (200, 404), registered.body
    assert registered.status == 404 or registered.body["license_id"] != registration["license_id"]


@pytest.mark.parametrize("path", ["/local/console/console.js", "/", "/docs", "/openapi.json"])
def test_local_only_routes_serve_a_loopback_host(api: Api, port: int, path: str) -> None:
    assert api.call("GET", path, headers={"Host": f"localhost:{port}"}).status == 200


def test_the_templates_routes_do_not_look_at_host(api: Api, portal_token: Callable[..., str]) -> None:
    # As in AWS: a proxy or the plugin may name the server as it likes; the route's own
    # credentials decide.
    answer = api.call(
        "GET", "/v1/licenses", headers={"Host": "evil.example"}, token=portal_token(unique("acct"))
    )

    assert answer.status == 200, answer.body


# -- listening on 127.0.0.1 only -------------------------------------------------------------------


def _non_loopback_addresses() -> list[str]:
    addresses: set[str] = set()
    with contextlib.suppress(OSError):
        addresses |= {
            str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        }
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        addresses.add(probe.getsockname()[0])
    return sorted(a for a in addresses if not ipaddress.ip_address(a).is_loopback and a != "0.0.0.0")


def test_the_server_is_not_reachable_on_another_address_of_this_machine(port: int) -> None:
    addresses = _non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no address besides the loopback")
    for address in addresses:
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=5):
            pass


def test_the_listening_socket_is_bound_to_127_0_0_1(port: int) -> None:
    proc_net_tcp = Path("/proc/net/tcp")
    if not proc_net_tcp.exists():
        pytest.skip("no /proc/net/tcp here")
    listening = [
        line.split()[1]
        for line in proc_net_tcp.read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port  # 0A: LISTEN
    ]
    assert listening == [f"0100007F:{port:04X}"]  # 127.0.0.1, little-endian


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.168.1.10", "localhost", "::1", "::"])
def test_the_gateway_refuses_to_listen_anywhere_but_on_an_ipv4_loopback_address(host: str) -> None:
    with pytest.raises(GatewayConfigError, match="loopback"):
        build_gateway({"Resources": {}}, host, 0, GatewaySettings())


# -- the admin token stands for a session of the billing role --------------------------------------

ADMIN_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  BillingRoleArn:
    Type: String
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  AdminFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: admin/
      Handler: app.lambda_handler
      Runtime: python3.12
      Environment:
        Variables:
          BILLING_ROLE_ARN: !Ref BillingRoleArn
      Events:
        Put:
          Type: HttpApi
          Properties: {Path: /v1/admin/things, Method: PUT, Auth: {Authorizer: AWS_IAM}}
"""

ADMIN_APP = """
import json, os

def lambda_handler(event, context):
    iam = event["requestContext"]["authorizer"]["iam"]
    body = {"billing_role_arn": os.environ["BILLING_ROLE_ARN"], "user_arn": iam["userArn"]}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
"""


def test_the_functions_get_the_billing_role_the_admin_token_stands_for(tmp_path: Path) -> None:
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "app.py").write_text(textwrap.dedent(ADMIN_APP))
    (tmp_path / "template.yaml").write_text(ADMIN_TEMPLATE)
    settings = GatewaySettings(billing_role_arn="arn:aws:iam::210987654321:role/billing/ops/Billing-Export")
    template = load_template(tmp_path / "template.yaml")
    with served(
        lambda: build_gateway(template, "127.0.0.1", 0, settings, base_dir=tmp_path, concurrency=1)
    ) as server:
        answer = Api(server.base_url).call(
            "PUT", "/v1/admin/things", {}, headers={"authorization": f"Bearer {settings.admin_token}"}
        )

    assert answer.status == 200, answer.body
    assert answer.body == {
        "billing_role_arn": "arn:aws:iam::210987654321:role/billing/ops/Billing-Export",
        "user_arn": "arn:aws:sts::210987654321:assumed-role/Billing-Export/local-admin",
    }
