"""The local gateway (local/gateway.py) behaves like API Gateway's HTTP API and Lambda's Invoke API.

These tests serve a tiny throwaway template and functions written to ``tmp_path`` (so they do not
depend on the real functions), plus a few checks of local/cfn.py against the real template.yaml
and of ``ensure_table`` on DynamoDB Local.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest

from local.apigw import MAX_BODY_BYTES, GatewaySettings
from local.cfn import ensure_table, functions, load_template, table_create_kwargs, table_ttl_attribute
from local.environments import GatewayConfigError
from local.gateway import GatewayServer, build_gateway, describe
from local.tokens import DEFAULT_ADMIN_TOKEN, DEFAULT_JWT_SECRET, make_portal_token

# --------------------------------------------------------------------------------------------------
# A throwaway application
# --------------------------------------------------------------------------------------------------

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  LogLevel:
    Type: String
    Default: DEBUG
Globals:
  Function:
    Runtime: python3.12
    Handler: app.lambda_handler
    MemorySize: 256
    Timeout: 5
    Layers:
      - !Ref EchoLayer
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        ECHO_LOG_LEVEL: !Ref LogLevel
        ECHO_ARN: !Sub arn:aws:echo:${AWS::Region}:${AWS::AccountId}:thing/${Table}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
  EchoLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
    Metadata:
      BuildMethod: python3.12
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        EnableIamAuthorizer: true
        DefaultAuthorizer: Portal
        Authorizers:
          Portal:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: https://issuer.example/
              audience: [echo]
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/echo/
      Events:
        GetItem:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: "/v1/items/{item_id}", Method: GET, Auth: {Authorizer: NONE}}
        PostItems:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /v1/items, Method: POST, Auth: {Authorizer: NONE}}
        Me:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /v1/me, Method: GET}
        Admin:
          Type: HttpApi
          Properties:
            {ApiId: !Ref Api, Path: "/v1/admin/things/{thing_id}", Method: PUT, Auth: {Authorizer: AWS_IAM}}
  ShapesFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/shapes/
      Events:
        Shape:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: "/v1/shapes/{kind}", Method: GET, Auth: {Authorizer: NONE}}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/boom/
      Events:
        Boom:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /v1/boom, Method: POST, Auth: {Authorizer: NONE}}
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/tick/
      Events:
        Hourly:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
"""

ECHO_APP = """
import hashlib, json, os
import echo_test_layer
from helpers import describe_context

def lambda_handler(event, context):
    body = event.get("body")
    if body is not None and len(body) > 1000:
        event["body"] = {"length": len(body), "sha256": hashlib.sha256(body.encode()).hexdigest()}
    env = {name: os.environ[name] for name in ("TABLE_NAME", "ECHO_LOG_LEVEL", "ECHO_ARN")}
    payload = {"event": event, "context": describe_context(context), "env": env,
               "layer": echo_test_layer.MARK}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(payload)}
"""

ECHO_HELPERS = """
def describe_context(context):
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""

SHAPES_APP = """
import base64

def lambda_handler(event, context):
    kind = event["pathParameters"]["kind"]
    if kind == "binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if kind == "plain":
        return {"hello": "world"}
    if kind == "string":
        return "just text"
    if kind == "cookies":
        return {"statusCode": 201, "cookies": ["a=1; Path=/", "b=2"], "body": "ok",
                "headers": {"x-count": 2, "Connection": "upgrade-me-not"}}
    if kind == "empty":
        return {"statusCode": 204}
    if kind == "bad":
        return {"statusCode": "two hundred"}
    if kind == "not-json":
        return {"statusCode": 200, "body": object()}
    raise ValueError(kind)
"""

BOOM_APP = """
def lambda_handler(event, context):
    raise RuntimeError("kaboom")
"""

TICK_APP = """
from decimal import Decimal

def lambda_handler(event, context):
    if event.get("fail"):
        raise ValueError("tick failed on purpose")
    if event.get("not_json"):
        return {"value": {1, 2}}
    return {"ticked": event.get("n"), "event": event, "amount": Decimal("2"), "ratio": Decimal("0.5")}
"""


def write_app(root: Path) -> Path:
    files = {
        "template.yaml": TEMPLATE,
        "layer/echo_test_layer.py": 'MARK = "from-the-layer"\n',
        "functions/echo/app.py": ECHO_APP,
        "functions/echo/helpers.py": ECHO_HELPERS,
        "functions/shapes/app.py": SHAPES_APP,
        "functions/boom/app.py": BOOM_APP,
        "functions/tick/app.py": TICK_APP,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "template.yaml"


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("echo-app")
    write_app(root)
    return root


@pytest.fixture(scope="module")
def server(app_dir: Path) -> Iterator[GatewayServer]:
    saved_environ = dict(os.environ)
    gateway = build_gateway(
        load_template(app_dir / "template.yaml"),
        "127.0.0.1",
        0,
        GatewaySettings(),
        base_dir=app_dir,
        table_name="echo-table",
    )
    thread = threading.Thread(target=gateway.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield gateway
    gateway.shutdown()
    gateway.server_close()
    thread.join(timeout=10)
    os.environ.clear()
    os.environ.update(saved_environ)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    server: GatewayServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    """One request with full control over repeated headers and raw bytes (http.client, no proxy)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers or []:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def echoed(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    return reply.json()


def assert_problem(reply: Reply, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    assert reply.header("Content-Type") == "application/problem+json"
    document = reply.json()
    assert document["status"] == status
    assert document["code"] == code
    assert document["type"] == "about:blank"
    assert document["title"] and document["detail"]
    return document


# --------------------------------------------------------------------------------------------------
# Payload format 2.0
# --------------------------------------------------------------------------------------------------


def test_get_builds_the_payload_v2_event_api_gateway_would(server: GatewayServer) -> None:
    before_ms = int(time.time() * 1000)
    reply = call(
        server,
        "GET",
        "/v1/items/abc%20d?x=1&x=2&y=&z=a%2Bb",
        headers=[
            ("X-Custom", "a"),
            ("x-custom", "b"),
            ("User-Agent", "tests/1.0"),
            ("Cookie", "c1=v1; c2=v2"),
        ],
    )
    payload = echoed(reply)
    event = payload["event"]

    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v1/items/{item_id}"
    assert event["rawPath"] == "/v1/items/abc%20d"
    assert event["rawQueryString"] == "x=1&x=2&y=&z=a%2Bb"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "", "z": "a+b"}
    assert event["pathParameters"] == {"item_id": "abc d"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-custom"] == "a,b"
    assert event["headers"]["user-agent"] == "tests/1.0"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert "stageVariables" not in event

    context = event["requestContext"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "local"
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"] == "127"
    assert context["http"] == {
        "method": "GET",
        "path": "/v1/items/abc%20d",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1.0",
    }
    assert context["routeKey"] == "GET /v1/items/{item_id}"
    assert context["stage"] == "$default"
    assert uuid.UUID(context["requestId"])
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", context["time"])
    assert before_ms <= context["timeEpoch"] <= int(time.time() * 1000)
    assert "authorizer" not in context
    assert reply.header("apigw-requestid") == context["requestId"]


def test_optional_members_are_absent_when_empty(server: GatewayServer) -> None:
    event = echoed(call(server, "GET", "/v1/items/1"))["event"]

    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event
    assert "cookies" not in event
    assert "body" not in event


def test_handler_runs_with_the_template_environment_layer_and_a_lambda_context(server: GatewayServer) -> None:
    payload = echoed(call(server, "GET", "/v1/items/1"))

    assert payload["env"] == {
        "TABLE_NAME": "echo-table",
        "ECHO_LOG_LEVEL": "DEBUG",
        "ECHO_ARN": "arn:aws:echo:us-east-1:123456789012:thing/echo-table",
    }
    assert payload["layer"] == "from-the-layer"
    context = payload["context"]
    assert context["function_name"] == "EchoFunction"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"
    assert context["memory_limit_in_mb"] == 256
    assert context["log_group_name"] == "/aws/lambda/EchoFunction"
    assert context["aws_request_id"] == payload["event"]["requestContext"]["requestId"]
    assert 0 < context["remaining_ms"] <= 5000


def test_utf8_body_is_text_and_other_bytes_are_base64(server: GatewayServer) -> None:
    text_event = echoed(call(server, "POST", "/v1/items", '{"name": "café"}'.encode()))["event"]
    binary = b"\xff\x00\xfe\x80"
    binary_event = echoed(call(server, "POST", "/v1/items", binary))["event"]

    assert text_event["body"] == '{"name": "café"}'
    assert text_event["isBase64Encoded"] is False
    assert binary_event["isBase64Encoded"] is True
    assert base64.b64decode(binary_event["body"]) == binary


# --------------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing-here"),
        ("DELETE", "/v1/items/1"),  # known path, other method: HTTP APIs answer 404 too
        ("GET", "/v1/items"),
        ("GET", "/v1/items/"),  # a path parameter never matches an empty segment
        ("GET", "/v1/items/1/more"),
        ("GET", "/v1/items/1/"),
        ("POST", "/2015-03-31/functions"),
    ],
)
def test_unknown_routes_are_404_problems(server: GatewayServer, method: str, path: str) -> None:
    document = assert_problem(call(server, method, path), 404, "not_found")

    assert document["title"] == "Not Found"


def test_404_on_head_has_no_body(server: GatewayServer) -> None:
    reply = call(server, "HEAD", "/v1/nothing-here")

    assert reply.status == 404
    assert reply.body == b""


# --------------------------------------------------------------------------------------------------
# Authorizers
# --------------------------------------------------------------------------------------------------


def test_jwt_route_passes_the_claims_as_strings(server: GatewayServer) -> None:
    token = make_portal_token("acct-1", secret=DEFAULT_JWT_SECRET, groups=["a", "b"], admin=False, level=3)

    event = echoed(call(server, "GET", "/v1/me", headers=[("Authorization", f"Bearer {token}")]))["event"]

    authorizer = event["requestContext"]["authorizer"]
    assert authorizer["jwt"]["scopes"] is None
    claims = authorizer["jwt"]["claims"]
    assert claims["sub"] == "acct-1"
    assert claims["groups"] == "[a b]"
    assert claims["admin"] == "false"
    assert claims["level"] == "3"
    assert claims["exp"] == str(jwt.decode(token, options={"verify_signature": False})["exp"])
    assert event["headers"]["authorization"] == f"Bearer {token}"


def _unsigned_token(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


NOW = int(time.time())
BAD_TOKENS = {
    "wrong secret": lambda: make_portal_token("acct-1", secret="another-secret-that-is-long-enough!"),
    "alg none": lambda: _unsigned_token({"sub": "acct-1", "exp": NOW + 3600}),
    "alg HS512": lambda: jwt.encode(
        {"sub": "acct-1", "exp": NOW + 3600}, DEFAULT_JWT_SECRET * 2, algorithm="HS512"
    ),
    "expired": lambda: make_portal_token("acct-1", secret=DEFAULT_JWT_SECRET, exp=int(time.time()) - 1),
    "missing sub": lambda: jwt.encode({"exp": NOW + 3600}, DEFAULT_JWT_SECRET, algorithm="HS256"),
    "empty sub": lambda: make_portal_token("", secret=DEFAULT_JWT_SECRET),
    "missing exp": lambda: jwt.encode({"sub": "acct-1"}, DEFAULT_JWT_SECRET, algorithm="HS256"),
    "not yet valid": lambda: make_portal_token(
        "acct-1", secret=DEFAULT_JWT_SECRET, nbf=int(time.time()) + 60
    ),
    "issued in the future": lambda: make_portal_token(
        "acct-1", secret=DEFAULT_JWT_SECRET, iat=int(time.time()) + 60
    ),
    "garbage": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_jwt_route_rejects_bad_tokens(server: GatewayServer, case: str) -> None:
    token = BAD_TOKENS[case]()

    reply = call(server, "GET", "/v1/me", headers=[("Authorization", f"Bearer {token}")])

    assert_problem(reply, 401, "unauthorized")
    assert reply.header("WWW-Authenticate") == "Bearer"


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic dXNlcjpwYXNz", f"Bearer {DEFAULT_ADMIN_TOKEN}"]
)
def test_jwt_route_requires_a_bearer_jwt(server: GatewayServer, authorization: str | None) -> None:
    headers = [] if authorization is None else [("Authorization", authorization)]

    assert_problem(call(server, "GET", "/v1/me", headers=headers), 401, "unauthorized")


def test_jwt_allows_a_little_clock_skew_on_iat_only(server: GatewayServer) -> None:
    token = make_portal_token("acct-1", secret=DEFAULT_JWT_SECRET, iat=int(time.time()) + 2)

    assert call(server, "GET", "/v1/me", headers=[("Authorization", f"Bearer {token}")]).status == 200


def test_jwt_audience_and_issuer_are_checked_when_configured(app_dir: Path) -> None:
    settings = GatewaySettings(jwt_audience="ai-credits", jwt_issuer="https://auth.example.com/")
    gateway = build_gateway(
        load_template(app_dir / "template.yaml"), "127.0.0.1", 0, settings, base_dir=app_dir
    )
    thread = threading.Thread(target=gateway.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        good = make_portal_token(
            "acct-1", secret=DEFAULT_JWT_SECRET, aud="ai-credits", iss="https://auth.example.com/"
        )
        wrong_aud = make_portal_token(
            "acct-1", secret=DEFAULT_JWT_SECRET, aud="other", iss="https://auth.example.com/"
        )
        no_iss = make_portal_token("acct-1", secret=DEFAULT_JWT_SECRET, aud="ai-credits")

        def status(token: str) -> int:
            return call(gateway, "GET", "/v1/me", headers=[("Authorization", f"Bearer {token}")]).status

        assert (status(good), status(wrong_aud), status(no_iss)) == (200, 401, 401)
    finally:
        gateway.shutdown()
        gateway.server_close()


def test_admin_route_takes_the_admin_token(server: GatewayServer) -> None:
    reply = call(
        server,
        "PUT",
        "/v1/admin/things/t-1",
        b"{}",
        headers=[("Authorization", f"Bearer {DEFAULT_ADMIN_TOKEN}")],
    )

    event = echoed(reply)["event"]
    assert event["routeKey"] == "PUT /v1/admin/things/{thing_id}"
    assert event["pathParameters"] == {"thing_id": "t-1"}
    # A session of the billing role (DEFAULT_BILLING_ROLE_ARN), as API Gateway describes an
    # assumed role's SigV4 request.
    assert event["requestContext"]["authorizer"] == {
        "iam": {
            "accessKey": "ASIALOCAL",
            "accountId": "123456789012",
            "callerId": "AROALOCALBILLINGROLE:local-admin",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": "arn:aws:sts::123456789012:assumed-role/ai-credits-billing/local-admin",
            "userId": "AROALOCALBILLINGROLE:local-admin",
        }
    }


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        f"Basic {DEFAULT_ADMIN_TOKEN}",
        "Bearer " + DEFAULT_ADMIN_TOKEN + "x",
        "portal-jwt",
    ],
)
def test_admin_route_rejects_anything_else(server: GatewayServer, authorization: str | None) -> None:
    if authorization == "portal-jwt":
        authorization = f"Bearer {make_portal_token('acct-1', secret=DEFAULT_JWT_SECRET)}"
    headers = [] if authorization is None else [("Authorization", authorization)]

    assert_problem(call(server, "PUT", "/v1/admin/things/t-1", b"{}", headers=headers), 401, "unauthorized")


# --------------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------------


def test_base64_response_bodies_are_decoded(server: GatewayServer) -> None:
    reply = call(server, "GET", "/v1/shapes/binary")

    assert reply.status == 200
    assert reply.header("Content-Type") == "application/octet-stream"
    assert reply.body == bytes(range(256))


@pytest.mark.parametrize(("kind", "body"), [("plain", {"hello": "world"}), ("string", None)])
def test_results_without_status_code_are_200_json(server: GatewayServer, kind: str, body: Any) -> None:
    reply = call(server, "GET", f"/v1/shapes/{kind}")

    assert reply.status == 200
    assert reply.header("Content-Type") == "application/json"
    assert reply.body == (b"just text" if body is None else json.dumps(body).encode())


def test_cookies_become_set_cookie_and_framing_headers_are_the_gateways(server: GatewayServer) -> None:
    reply = call(server, "GET", "/v1/shapes/cookies")

    assert reply.status == 201
    assert [value for name, value in reply.headers if name.lower() == "set-cookie"] == ["a=1; Path=/", "b=2"]
    assert reply.header("x-count") == "2"
    assert reply.header("Connection") != "upgrade-me-not"
    assert reply.body == b"ok"


def test_204_has_no_body(server: GatewayServer) -> None:
    reply = call(server, "GET", "/v1/shapes/empty")

    assert (reply.status, reply.body, reply.header("Content-Length")) == (204, b"", None)


@pytest.mark.parametrize("kind", ["bad", "not-json", "unknown"])
def test_unusable_results_and_crashes_are_500_problems(server: GatewayServer, kind: str) -> None:
    assert_problem(call(server, "GET", f"/v1/shapes/{kind}"), 500, "internal_error")


def test_handler_exception_is_a_500_problem_and_logged_without_secrets(
    server: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="local.gateway")

    reply = call(
        server,
        "POST",
        "/v1/boom?license_key=query-secret",
        b'{"license_key": "body-secret"}',
        headers=[("Authorization", "Bearer header-secret")],
    )

    assert_problem(reply, 500, "internal_error")
    # The access line is written by the server thread just after the answer: wait for it.
    deadline = time.monotonic() + 5
    while not re.search(r"POST /v1/boom 500 \d+\.\dms", caplog.text) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert re.search(r"POST /v1/boom 500 \d+\.\dms", caplog.text)
    assert "RuntimeError: kaboom" in caplog.text
    assert "BoomFunction" in caplog.text
    for secret in ("query-secret", "body-secret", "header-secret"):
        assert secret not in caplog.text


# --------------------------------------------------------------------------------------------------
# Limits and framing
# --------------------------------------------------------------------------------------------------


def test_oversize_body_is_413_before_it_is_uploaded(server: GatewayServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/items")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()  # headers only: the answer must not wait for 10 MiB
        response = connection.getresponse()
        reply = Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()

    assert_problem(reply, 413, "payload_too_large")


def test_oversize_body_sent_in_full_still_gets_the_413(server: GatewayServer) -> None:
    assert_problem(call(server, "POST", "/v1/items", b"x" * (MAX_BODY_BYTES + 1)), 413, "payload_too_large")


def test_body_at_the_limit_is_accepted(server: GatewayServer) -> None:
    body = b"a" * MAX_BODY_BYTES

    event = echoed(call(server, "POST", "/v1/items", body))["event"]

    assert event["body"] == {"length": MAX_BODY_BYTES, "sha256": hashlib.sha256(body).hexdigest()}


def _raw_exchange(server: GatewayServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_chunked_bodies_are_411_problems(server: GatewayServer) -> None:
    raw = _raw_exchange(
        server,
        b"POST /v1/items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )

    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411 ")
    assert b"Content-Type: application/problem+json" in head
    assert json.loads(body)["code"] == "length_required"


def test_keep_alive_connections_serve_several_requests(server: GatewayServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        statuses = []
        for path in ("/v1/items/1", "/v1/nothing", "/v1/items/2"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()

    assert statuses == [200, 404, 200]


def test_64_concurrent_requests_each_get_their_own_answer(server: GatewayServer) -> None:
    count = 64
    barrier = threading.Barrier(count)

    def one(index: int) -> tuple[int, str]:
        barrier.wait(timeout=30)
        reply = call(server, "GET", f"/v1/items/item-{index}?i={index}")
        event = echoed(reply)["event"]
        assert event["queryStringParameters"] == {"i": str(index)}
        return index, event["pathParameters"]["item_id"]

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(one, range(count)))

    assert results == [(index, f"item-{index}") for index in range(count)]


# --------------------------------------------------------------------------------------------------
# Lambda Invoke API
# --------------------------------------------------------------------------------------------------


def invoke(
    server: GatewayServer, name: str, body: bytes, headers: list[tuple[str, str]] | None = None
) -> Reply:
    return call(server, "POST", f"/2015-03-31/functions/{name}/invocations", body, headers)


def test_invoke_api_runs_a_function_and_returns_its_json(server: GatewayServer) -> None:
    reply = invoke(server, "TickFunction", b'{"n": 3}')

    assert reply.status == 200
    assert reply.header("X-Amz-Executed-Version") == "$LATEST"
    assert reply.header("X-Amz-Function-Error") is None
    # Lambda's runtime serialises Decimal (what DynamoDB returns) as a JSON number.
    assert reply.json() == {"ticked": 3, "event": {"n": 3}, "amount": 2, "ratio": 0.5}


@pytest.mark.parametrize(
    "name",
    [
        "arn:aws:lambda:us-east-1:123456789012:function:TickFunction",
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3ATickFunction",
        "TickFunction:$LATEST",
    ],
)
def test_invoke_api_accepts_arns_and_latest(server: GatewayServer, name: str) -> None:
    reply = invoke(server, name, b"")

    assert reply.status == 200
    assert reply.json()["event"] == {}  # an empty body is the event {}


def test_invoke_api_unknown_function_is_lambdas_404(server: GatewayServer) -> None:
    reply = invoke(server, "NoSuchFunction", b"{}")

    assert reply.status == 404
    assert reply.header("x-amzn-ErrorType") == "ResourceNotFoundException"
    assert reply.json() == {
        "Type": "User",
        "message": "Function not found: arn:aws:lambda:us-east-1:123456789012:function:NoSuchFunction",
    }


def test_invoke_api_reports_handler_errors_like_lambda(server: GatewayServer) -> None:
    reply = invoke(server, "TickFunction", b'{"fail": true}')

    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    error = reply.json()
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "tick failed on purpose"
    assert any("tick failed on purpose" in line or "lambda_handler" in line for line in error["stackTrace"])


def test_invoke_api_reports_results_that_are_not_json(server: GatewayServer) -> None:
    reply = invoke(server, "TickFunction", b'{"not_json": true}')

    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.json()["errorType"] == "Runtime.MarshalError"


def test_invoke_api_rejects_a_body_that_is_not_json(server: GatewayServer) -> None:
    reply = invoke(server, "TickFunction", b"{nope")

    assert reply.status == 400
    assert reply.header("x-amzn-ErrorType") == "InvalidRequestContentException"


def test_invoke_api_works_with_boto3(server: GatewayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # How `aws lambda invoke --endpoint-url` reaches it: a signed request (signature not checked).
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.base_url)
    client = boto3.client("lambda")

    response = client.invoke(FunctionName="TickFunction", Payload=b'{"n": 7}')

    assert response["StatusCode"] == 200
    assert json.loads(response["Payload"].read())["ticked"] == 7


def test_describe_lists_routes_and_never_secret_values(server: GatewayServer) -> None:
    text = describe(server)

    assert f"PUT     {server.base_url}/v1/admin/things/{{thing_id}}  [iam] -> EchoFunction" in text
    assert "[jwt] -> EchoFunction" in text
    assert "/2015-03-31/functions/<FunctionName>/invocations" in text
    assert "TickFunction  (scheduled in AWS: Hourly: rate(1 hour))" in text
    assert "LOCAL_JWT_SECRET" in text and "LOCAL_ADMIN_TOKEN" in text
    assert DEFAULT_JWT_SECRET not in text and DEFAULT_ADMIN_TOKEN not in text


def test_functions_that_disagree_on_an_environment_variable_fail_loudly(tmp_path: Path) -> None:
    write_app(tmp_path)
    template_path = tmp_path / "template.yaml"
    template = load_template(template_path)
    template["Resources"]["BoomFunction"]["Properties"]["Environment"] = {
        "Variables": {"ECHO_LOG_LEVEL": "ERROR"}
    }

    with pytest.raises(GatewayConfigError, match="ECHO_LOG_LEVEL"):
        build_gateway(template, "127.0.0.1", 0, GatewaySettings(), base_dir=tmp_path)


# --------------------------------------------------------------------------------------------------
# The real template and DynamoDB Local
# --------------------------------------------------------------------------------------------------


def test_table_create_kwargs_follow_template_yaml(template: dict[str, Any]) -> None:
    kwargs = table_create_kwargs(template, "some-table")

    assert kwargs["TableName"] == "some-table"
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert kwargs["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    indexes = {index["IndexName"]: index for index in kwargs["GlobalSecondaryIndexes"]}
    assert set(indexes) >= {"gsi1", "gsi2", "gsi3"}
    assert all("ProjectionType" in index["Projection"] for index in indexes.values())
    assert "ProvisionedThroughput" not in kwargs
    for deployment_only in ("DeletionProtectionEnabled", "SSESpecification", "TimeToLiveSpecification"):
        assert deployment_only not in kwargs
    defined = {attribute["AttributeName"] for attribute in kwargs["AttributeDefinitions"]}
    used = {key["AttributeName"] for index in [kwargs, *indexes.values()] for key in index["KeySchema"]}
    assert defined == used
    assert table_ttl_attribute(template) == "ttl"


def test_real_template_admin_route_is_iam_and_plugin_routes_are_open(template: dict[str, Any]) -> None:
    routes = {route.route_key: route.auth for spec in functions(template) for route in spec.routes}

    assert routes["PUT /v1/admin/licenses/{license_id}"] == "iam"
    assert routes["POST /v1/activations"] == "none"


def test_ensure_table_creates_the_table_on_dynamodb_local_and_is_idempotent(
    ddb_local_env: str, template: dict[str, Any]
) -> None:
    client = boto3.client("dynamodb")  # AWS_ENDPOINT_URL_DYNAMODB points at DynamoDB Local
    name = f"ensure-{uuid.uuid4().hex[:12]}"
    try:
        ensure_table(client, name, template)
        ensure_table(client, name, template)

        table = client.describe_table(TableName=name)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} >= {"gsi1", "gsi2", "gsi3"}
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    finally:
        client.delete_table(TableName=name)


def test_ensure_table_survives_two_concurrent_creators(ddb_local_env: str, template: dict[str, Any]) -> None:
    name = f"race-{uuid.uuid4().hex[:12]}"
    barrier = threading.Barrier(2)

    def create() -> None:
        client = boto3.client("dynamodb")
        barrier.wait(timeout=10)
        ensure_table(client, name, template)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(create), pool.submit(create)]:
                future.result()
    finally:
        boto3.client("dynamodb").delete_table(TableName=name)
