"""local/apigw.py on its own: the payload-2.0 event, route selection, the authorizers and the
mapping of a function's result to HTTP, as API Gateway's HTTP API does them (no server, no process)."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from local.apigw import (
    BadFunctionResponse,
    GatewaySettings,
    Route,
    Unauthorized,
    build_http_event,
    http_response,
    iam_authorizer,
    jwt_authorizer,
    problem,
    select_route,
)
from local.cfn import LOCAL_ACCOUNT_ID, FunctionSpec, RouteSpec
from local.environments import GatewayConfigError, LoadedFunction

SECRET = "unit-test-secret"
SETTINGS = GatewaySettings(jwt_secret=SECRET, admin_token="admin-token")
#: 25 Nov 2026, 09:00:00.25 UTC.
NOW = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC).timestamp() + 0.25


def _event(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": "POST",
        "raw_path": "/v1/licenses/lic%201/consume",
        "raw_query": "a=1&b=&a=2",
        "headers": [("Host", "localhost:3000"), ("User-Agent", "wp/6.7"), ("Content-Type", "text/plain")],
        "body": b"",
        "route_key": "POST /v1/licenses/{license_id}/consume",
        "path_parameters": {"license_id": "lic 1"},
        "source_ip": "127.0.0.1",
        "request_id": "req-1",
        "authorizer": None,
        "server_port": 3000,
        "now": NOW,
    }
    return build_http_event(**{**request, **overrides})


# -- the event ----------------------------------------------------------------------------------


def test_the_event_keeps_the_raw_path_and_query_and_splits_the_query() -> None:
    event = _event()

    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/licenses/{license_id}/consume"
    assert event["rawPath"] == "/v1/licenses/lic%201/consume"
    assert event["rawQueryString"] == "a=1&b=&a=2"
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["pathParameters"] == {"license_id": "lic 1"}


def test_headers_are_lower_cased_joined_and_forwarded() -> None:
    headers = [("Host", "localhost:3000"), ("X-Tag", "a"), ("x-tag", "b"), ("X-Forwarded-For", "10.0.0.1")]

    event = _event(headers=headers)

    assert event["headers"] == {
        "host": "localhost:3000",
        "x-tag": "a,b",
        "x-forwarded-for": "10.0.0.1, 127.0.0.1",
        "x-forwarded-port": "3000",
        "x-forwarded-proto": "http",
    }


def test_cookie_headers_become_the_cookies_list() -> None:
    event = _event(headers=[("Cookie", "a=1; b=2"), ("cookie", " c=3 ;")])

    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_the_request_context_describes_the_request() -> None:
    authorizer = {"jwt": {"claims": {"sub": "acct"}, "scopes": None}}

    context = _event(authorizer=authorizer)["requestContext"]

    assert context == {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": "local",
        "authorizer": authorizer,
        "domainName": "localhost",
        "domainPrefix": "localhost",
        "http": {
            "method": "POST",
            "path": "/v1/licenses/lic%201/consume",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "wp/6.7",
        },
        "requestId": "req-1",
        "routeKey": "POST /v1/licenses/{license_id}/consume",
        "stage": "$default",
        "time": "25/Nov/2026:09:00:00 +0000",
        "timeEpoch": int(NOW) * 1000 + 250,
    }


@pytest.mark.parametrize(
    ("host", "domain", "prefix"),
    [
        ("api.example.com:3000", "api.example.com", "api"),
        ("[::1]:3000", "[::1]", "[::1]"),
        ("127.0.0.1", "127.0.0.1", "127"),
    ],
)
def test_the_domain_name_is_the_host_without_its_port(host: str, domain: str, prefix: str) -> None:
    context = _event(headers=[("Host", host)])["requestContext"]

    assert (context["domainName"], context["domainPrefix"]) == (domain, prefix)


def test_optional_members_are_left_out_when_empty() -> None:
    event = _event(headers=[], raw_query="", path_parameters={})

    assert not {"cookies", "queryStringParameters", "pathParameters", "body"} & event.keys()
    assert "authorizer" not in event["requestContext"]
    assert event["requestContext"]["domainName"] == "localhost"
    assert event["isBase64Encoded"] is False


def test_a_utf8_body_is_text_and_any_other_body_base64() -> None:
    text = _event(body="héllo".encode())
    binary = _event(body=b"\xff\x00\x01")

    assert (text["body"], text["isBase64Encoded"]) == ("héllo", False)
    assert (binary["body"], binary["isBase64Encoded"]) == (base64.b64encode(b"\xff\x00\x01").decode(), True)


# -- routes -------------------------------------------------------------------------------------


def _function(name: str = "Fn") -> LoadedFunction:
    spec = FunctionSpec(logical_id=name, code_uri=".", handler="app.handler", environment={}, routes=[])
    return LoadedFunction(spec=spec, handler=print, module_name="m", region="us-east-1")


def _routes(*keys: str) -> list[Route]:
    routes = []
    for key in keys:
        method, path = key.split(" ")
        routes.append(Route.compile(RouteSpec(method, path, "none"), _function()))
    return routes


def _selected(routes: list[Route], method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
    found = select_route(routes, method, raw_path)
    return None if found is None else (found[0].spec.route_key, found[1])


def test_path_parameters_are_url_decoded() -> None:
    routes = _routes("GET /v1/licenses/{license_id}/sites/{site}")

    found = _selected(routes, "GET", "/v1/licenses/lic%201/sites/a%2Fb")

    assert found == ("GET /v1/licenses/{license_id}/sites/{site}", {"license_id": "lic 1", "site": "a/b"})


def test_the_most_specific_route_is_selected() -> None:
    routes = _routes(
        "ANY /pets/{proxy+}", "GET /pets/{id}", "GET /pets/dog", "ANY /pets/{id}", "ANY $default"
    )

    assert _selected(routes, "GET", "/pets/dog") == ("GET /pets/dog", {})
    assert _selected(routes, "GET", "/pets/7") == ("GET /pets/{id}", {"id": "7"})
    assert _selected(routes, "DELETE", "/pets/7") == ("ANY /pets/{id}", {"id": "7"})
    assert _selected(routes, "GET", "/pets/a/b") == ("ANY /pets/{proxy+}", {"proxy": "a/b"})
    assert _selected(routes, "GET", "/elsewhere") == ("$default", {})


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [("POST", "/pets/7"), ("GET", "/pets"), ("GET", "/pets/"), ("GET", "/pets/7/toys"), ("GET", "/Pets/7")],
)
def test_no_route_without_the_method_or_every_segment(method: str, raw_path: str) -> None:
    assert select_route(_routes("GET /pets/{id}"), method, raw_path) is None


def test_a_greedy_parameter_needs_a_segment() -> None:
    routes = _routes("GET /files/{path+}")

    assert select_route(routes, "GET", "/files/") is None
    assert select_route(routes, "GET", "/files") is None


@pytest.mark.parametrize(
    ("path", "message"),
    [("pets", "must start with /"), ("/pets/{rest+}/toys", "must be the last segment")],
)
def test_routes_the_template_cannot_have_are_refused(path: str, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message):
        Route.compile(RouteSpec("GET", path, "none"), _function())


# -- settings -----------------------------------------------------------------------------------


def test_settings_come_from_the_environment_with_documented_defaults() -> None:
    environ = {
        "LOCAL_JWT_SECRET": "s",
        "LOCAL_JWT_AUDIENCE": "portal",
        "LOCAL_JWT_ISSUER": "https://id.example",
        "LOCAL_ADMIN_TOKEN": "t",
        "BILLING_ROLE_ARN": "arn:aws:iam::111122223333:role/Billing",
    }

    assert GatewaySettings.from_env({}) == GatewaySettings()
    assert GatewaySettings.from_env(environ) == GatewaySettings(
        jwt_secret="s",
        jwt_audience="portal",
        jwt_issuer="https://id.example",
        admin_token="t",
        billing_role_arn="arn:aws:iam::111122223333:role/Billing",
    )


# -- the JWT authorizer -------------------------------------------------------------------------


#: How far in the future the "not yet" claims are: the cases are built when the module is
#: collected, minutes before they run in a whole ``make test``.
DAY = 86_400


def _token(secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "acct-1", "iat": now, "exp": now + 3600, **claims}, secret, algorithm=algorithm)


def test_a_valid_token_passes_its_claims_as_strings() -> None:
    token = _token(scope=["read", "write"], admin=True, plan={"tier": 2})

    authorizer = jwt_authorizer(f"Bearer {token}", SETTINGS)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert authorizer == {
        "jwt": {
            "claims": {
                "sub": "acct-1",
                "iat": str(claims["iat"]),
                "exp": str(claims["exp"]),
                "scope": "[read write]",
                "admin": "true",
                "plan": '{"tier":2}',
            },
            "scopes": None,
        }
    }


def test_audience_and_issuer_are_checked_when_configured() -> None:
    settings = GatewaySettings(jwt_secret=SECRET, jwt_audience="portal", jwt_issuer="https://id.example")

    authorizer = jwt_authorizer(f"Bearer {settings.portal_token('acct-2')}", settings)

    assert authorizer["jwt"]["claims"]["aud"] == "portal"
    assert authorizer["jwt"]["claims"]["iss"] == "https://id.example"


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "An 'Authorization: Bearer <token>' header is required."),
        ("Bearer ", "An 'Authorization: Bearer <token>' header is required."),
        (f"Basic {_token()}", "An 'Authorization: Bearer <token>' header is required."),
        (f"Bearer {_token(exp=int(time.time()) - 1)}", "The token has expired."),
        (f"Bearer {_token(nbf=int(time.time()) + DAY)}", "The token is not valid yet."),
        (f"Bearer {_token(secret='another-secret')}", "The token's signature does not verify."),
        (f"Bearer {_token(algorithm='HS512')}", "Only HS256 tokens are accepted."),
        (f"Bearer {_token(iat=int(time.time()) + DAY)}", "The token was issued in the future."),
        (f"Bearer {_token(iat='yesterday')}", "The token's 'iat' claim must be a number."),
        (f"Bearer {_token(sub='')}", "The token's 'sub' claim must be a non-empty string."),
        ("Bearer not.a.jwt", "The token is malformed."),
    ],
)
def test_bad_credentials_are_refused_with_a_reason(authorization: str | None, detail: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        jwt_authorizer(authorization, SETTINGS)

    assert refused.value.detail == detail


def test_a_token_without_exp_is_refused() -> None:
    token = jwt.encode({"sub": "acct-1"}, SECRET, algorithm="HS256")

    with pytest.raises(Unauthorized) as refused:
        jwt_authorizer(f"Bearer {token}", SETTINGS)

    assert refused.value.detail == "The token has no 'exp' claim."


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"aud": "someone-else", "iss": "https://id.example"}, "The token's audience is not accepted."),
        ({"aud": "portal", "iss": "https://elsewhere.example"}, "The token's issuer is not accepted."),
        ({"iss": "https://id.example"}, "The token has no 'aud' claim."),
    ],
)
def test_the_wrong_audience_or_issuer_is_refused(claims: dict[str, str], detail: str) -> None:
    settings = GatewaySettings(jwt_secret=SECRET, jwt_audience="portal", jwt_issuer="https://id.example")

    with pytest.raises(Unauthorized) as refused:
        jwt_authorizer(f"Bearer {_token(**claims)}", settings)

    assert refused.value.detail == detail


# -- the IAM authorizer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role_arn", "user_arn"),
    [
        (
            "arn:aws:iam::111122223333:role/ai-credits/BillingRole",
            "arn:aws:sts::111122223333:assumed-role/BillingRole/local-admin",
        ),
        ("arn:aws:iam::111122223333:user/billing", "arn:aws:iam::111122223333:user/billing"),
    ],
)
def test_the_admin_token_is_a_session_of_the_billing_role(role_arn: str, user_arn: str) -> None:
    settings = GatewaySettings(admin_token="admin-token", billing_role_arn=role_arn)

    authorizer = iam_authorizer("bearer admin-token", settings)

    assert authorizer == {
        "iam": {
            "accessKey": "ASIALOCAL",
            "accountId": LOCAL_ACCOUNT_ID,
            "callerId": "AROALOCALBILLINGROLE:local-admin",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": user_arn,
            "userId": "AROALOCALBILLINGROLE:local-admin",
        }
    }


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "An 'Authorization: Bearer <token>' header is required."),
        ("admin-token", "An 'Authorization: Bearer <token>' header is required."),
        ("Bearer admin-token-2", "The admin token is not valid."),
        (f"Bearer {_token()}", "The admin token is not valid."),
    ],
)
def test_anything_but_the_admin_token_is_refused(authorization: str | None, detail: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        iam_authorizer(authorization, SETTINGS)

    assert refused.value.detail == detail


# -- responses ----------------------------------------------------------------------------------


def test_a_full_result_becomes_status_headers_cookies_and_body() -> None:
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Flag": True, "X-Count": 3, "Connection": "close"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": '{"ok": true}',
        "isBase64Encoded": False,
    }

    assert http_response(result) == (
        201,
        [
            ("Content-Type", "application/json"),
            ("X-Flag", "true"),
            ("X-Count", "3"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2"),
        ],
        b'{"ok": true}',
    )


def test_a_base64_body_is_decoded_and_no_body_is_empty() -> None:
    encoded = {"statusCode": 200, "body": base64.b64encode(b"\xff\x00").decode(), "isBase64Encoded": True}

    assert http_response(encoded) == (200, [], b"\xff\x00")
    assert http_response({"statusCode": 204}) == (204, [], b"")


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ("plain text", b"plain text"),
        ({"credits": 5}, b'{"credits": 5}'),
        ([1, 2], b"[1, 2]"),
        (None, b"null"),
    ],
)
def test_a_result_without_status_code_is_a_200_json_body(result: Any, body: bytes) -> None:
    assert http_response(result) == (200, [("Content-Type", "application/json")], body)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"statusCode": "200"}, "statusCode must be an integer HTTP status"),
        ({"statusCode": True}, "statusCode must be an integer HTTP status"),
        ({"statusCode": 600}, "statusCode must be an integer HTTP status"),
        ({"statusCode": 200, "headers": ["X-A: 1"]}, "headers must be an object"),
        ({"statusCode": 200, "headers": {"X-A": "1\r\nX-B: 2"}}, "header 'X-A' has an invalid name or value"),
        ({"statusCode": 200, "headers": {"": "1"}}, "header '' has an invalid name or value"),
        ({"statusCode": 200, "cookies": "a=1"}, "cookies must be a list of strings"),
        ({"statusCode": 200, "cookies": ["a=1\nb=2"]}, "cookies must be a list of strings"),
        ({"statusCode": 200, "body": {"a": 1}}, "body must be a string, got dict"),
        ({"statusCode": 200, "body": "*", "isBase64Encoded": True}, "isBase64Encoded is true but body"),
    ],
)
def test_a_malformed_result_is_refused(result: dict[str, Any], message: str) -> None:
    # The gateway answers it like a crashed function (500 internal_error, see test_gateway.py).
    with pytest.raises(BadFunctionResponse, match=re.escape(message)):
        http_response(result)


def test_the_gateways_own_errors_are_problem_documents() -> None:
    document = json.loads(problem(404, "No route for GET /x.", "not_found", path="/x"))

    assert document == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "No route for GET /x.",
        "code": "not_found",
        "path": "/x",
    }
