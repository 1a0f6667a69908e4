"""What API Gateway (HTTP API, payload format 2.0) does around a function, without the HTTP server.

Pure functions and data, no sockets and no processes, so each behaviour is unit-tested on its own:
choosing the route for a request (:func:`select_route`), building the payload-2.0 event
(:func:`build_http_event`), the local stand-ins for the JWT and IAM authorizers
(:func:`jwt_authorizer`, :func:`iam_authorizer`, configured by :class:`GatewaySettings`), and
turning a function's result into the HTTP response (:func:`http_response`). :mod:`local.gateway`
serves them over HTTP; the gateway's own errors are :func:`problem` documents.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

import jwt

from local.cfn import LOCAL_ACCOUNT_ID, RouteSpec
from local.environments import GatewayConfigError, LoadedFunction
from local.tokens import (
    ADMIN_TOKEN_ENV,
    BILLING_ROLE_ARN_ENV,
    DEFAULT_ADMIN_TOKEN,
    DEFAULT_BILLING_ROLE_ARN,
    DEFAULT_JWT_SECRET,
    JWT_AUDIENCE_ENV,
    JWT_ISSUER_ENV,
    JWT_SECRET_ENV,
    make_portal_token,
)

__all__ = [
    "MAX_BODY_BYTES",
    "PROBLEM_JSON",
    "BadFunctionResponse",
    "GatewaySettings",
    "Route",
    "Unauthorized",
    "build_http_event",
    "claim_string",
    "http_response",
    "iam_authorizer",
    "jwt_authorizer",
    "problem",
    "select_route",
]

#: API Gateway's request payload limit is 10 MB; the local gateway uses 10 MiB.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: The content type of :func:`problem` documents.
PROBLEM_JSON = "application/problem+json"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Response headers the gateway owns (framing and connection management), as API Gateway does.
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade"})


@dataclass(frozen=True)
class GatewaySettings:
    """Local stand-ins for API Gateway's authorizers, and its limits."""

    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    admin_token: str = DEFAULT_ADMIN_TOKEN
    #: The IAM role billing assumes; the admin token stands for a session of it, and the functions
    #: get it as ``BILLING_ROLE_ARN`` (template parameter ``BillingRoleArn``).
    billing_role_arn: str = DEFAULT_BILLING_ROLE_ARN
    max_body_bytes: int = MAX_BODY_BYTES
    #: ``iat`` may be this far in the future (clock skew between token issuer and gateway).
    iat_leeway_seconds: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Settings from ``LOCAL_JWT_SECRET``, ``LOCAL_JWT_AUDIENCE``, ``LOCAL_JWT_ISSUER``,
        ``LOCAL_ADMIN_TOKEN`` and ``BILLING_ROLE_ARN`` (documented defaults when unset)."""
        env = os.environ if environ is None else environ
        return cls(
            jwt_secret=env.get(JWT_SECRET_ENV) or DEFAULT_JWT_SECRET,
            jwt_audience=env.get(JWT_AUDIENCE_ENV) or None,
            jwt_issuer=env.get(JWT_ISSUER_ENV) or None,
            admin_token=env.get(ADMIN_TOKEN_ENV) or DEFAULT_ADMIN_TOKEN,
            billing_role_arn=env.get(BILLING_ROLE_ARN_ENV) or DEFAULT_BILLING_ROLE_ARN,
        )

    def portal_token(self, sub: str) -> str:
        """A portal JWT for account ``sub`` (valid one hour) that a gateway with these settings accepts."""
        claims: dict[str, Any] = {"aud": self.jwt_audience, "iss": self.jwt_issuer}
        return make_portal_token(
            sub, secret=self.jwt_secret, **{name: value for name, value in claims.items() if value}
        )


# --------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A route of the template, compiled for matching requests to it."""

    spec: RouteSpec
    function: LoadedFunction
    segments: tuple[str, ...] = field(default=())

    @classmethod
    def compile(cls, spec: RouteSpec, function: LoadedFunction) -> Route:
        if spec.path == "$default":
            return cls(spec, function)
        if not spec.path.startswith("/"):
            raise GatewayConfigError(f"{function.name}: route path {spec.path!r} must start with /")
        segments = tuple(spec.path.split("/")[1:])
        for index, segment in enumerate(segments):
            if segment.endswith("+}") and index != len(segments) - 1:
                raise GatewayConfigError(f"{function.name}: greedy {segment} must be the last segment")
        return cls(spec, function, segments)

    def specificity(self) -> tuple[int, ...]:
        """Lower is more specific: literal < {param} < {greedy+} per segment, then method < ANY."""
        if self.spec.path == "$default":
            return (9,)
        ranks = tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in self.segments)
        return (0, *ranks, 1 if self.spec.method == "ANY" else 0)

    def match(self, method: str, path_segments: list[str]) -> dict[str, str] | None:
        """Path parameters (URL-decoded) when this route takes ``method`` on that path, else None."""
        if self.spec.method not in (method, "ANY"):
            return None
        if self.spec.path == "$default":
            return {}
        parameters: dict[str, str] = {}
        for index, template in enumerate(self.segments):
            if template.startswith("{") and template.endswith("+}"):
                rest = path_segments[index:]
                if not rest or not "/".join(rest):
                    return None
                parameters[template[1:-2]] = unquote("/".join(rest))
                return parameters
            if index >= len(path_segments):
                return None
            segment = path_segments[index]
            if template.startswith("{") and template.endswith("}"):
                if not segment:
                    return None
                parameters[template[1:-1]] = unquote(segment)
            elif unquote(segment) != template:
                return None
        return parameters if len(path_segments) == len(self.segments) else None


def select_route(routes: Iterable[Route], method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route for ``method`` on ``raw_path`` (API Gateway's selection order), with
    its path parameters."""
    segments = raw_path.split("/")[1:]
    candidates = [
        (route, parameters) for route in routes if (parameters := route.match(method, segments)) is not None
    ]
    return min(candidates, key=lambda candidate: candidate[0].specificity()) if candidates else None


# --------------------------------------------------------------------------------------------------
# The payload-2.0 event
# --------------------------------------------------------------------------------------------------


def _request_time(epoch: float) -> str:
    """``25/Nov/2026:09:00:00 +0000``; month names fixed, not from the locale as strftime's %b."""
    moment = time.gmtime(epoch)
    return (
        f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:"
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} +0000"
    )


def _host_name(host: str) -> str:
    """The Host header without its port (``localhost`` when absent)."""
    if host.startswith("["):  # [::1]:3000
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host or "localhost"


def build_http_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    route_key: str,
    path_parameters: Mapping[str, str],
    source_ip: str,
    request_id: str,
    authorizer: Mapping[str, Any] | None,
    protocol: str = "HTTP/1.1",
    server_port: int = 3000,
    now: float | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload-2.0 event for one request.

    Header names are lower-cased and repeated headers joined with ``,``; ``Cookie`` headers move to
    ``cookies``; repeated query parameters are joined with ``,``; optional members
    (``cookies``, ``queryStringParameters``, ``pathParameters``, ``body``, ``authorizer``) are left
    out when empty, as API Gateway does. A body that is not UTF-8 is base64-encoded.
    """
    epoch = time.time() if now is None else now
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    # API Gateway adds these for the function (X-Forwarded-For gets the caller appended).
    forwarded_for = joined.get("x-forwarded-for")
    joined["x-forwarded-for"] = f"{forwarded_for}, {source_ip}" if forwarded_for else source_ip
    joined["x-forwarded-port"] = str(server_port)
    joined["x-forwarded-proto"] = "http"
    domain_name = _host_name(joined.get("host", ""))
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    request_context: dict[str, Any] = {
        "accountId": LOCAL_ACCOUNT_ID,
        "apiId": "local",
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".")[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": _request_time(epoch),
        "timeEpoch": int(epoch * 1000),
    }
    if authorizer is not None:
        request_context["authorizer"] = dict(authorizer)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["requestContext"] = request_context
    event["isBase64Encoded"] = False
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


# --------------------------------------------------------------------------------------------------
# Authorizers
# --------------------------------------------------------------------------------------------------


def claim_string(value: Any) -> str:
    """A claim as API Gateway's JWT authorizer passes it: every value a string, arrays as ``[a b]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + " ".join(claim_string(item) for item in value) + "]"
    return json.dumps(value, separators=(",", ":"))


class Unauthorized(Exception):
    """Missing or bad credentials for a route's authorizer; ``detail`` is safe to show the caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


_JWT_FAILURES: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired."),
    (jwt.ImmatureSignatureError, "The token is not valid yet."),
    (jwt.InvalidAlgorithmError, "Only HS256 tokens are accepted."),
    (jwt.InvalidSignatureError, "The token's signature does not verify."),
    (jwt.InvalidAudienceError, "The token's audience is not accepted."),
    (jwt.InvalidIssuerError, "The token's issuer is not accepted."),
    (jwt.DecodeError, "The token is malformed."),
)


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("An 'Authorization: Bearer <token>' header is required.")
    return token.strip()


def jwt_authorizer(authorization: str | None, settings: GatewaySettings) -> dict[str, Any]:
    """Verify a portal token like API Gateway's JWT authorizer; return ``requestContext.authorizer``."""
    token = _bearer_token(authorization)
    required = ["sub", "exp"]
    required += ["aud"] if settings.jwt_audience else []
    required += ["iss"] if settings.jwt_issuer else []
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],  # never "none", never an algorithm the token picks
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=0,
            options={
                "require": required,
                "verify_aud": settings.jwt_audience is not None,
                # iat is checked below with a small leeway (exp/nbf get none).
                "verify_iat": False,
            },
        )
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"The token has no {exc.claim!r} claim.") from exc
    except jwt.InvalidTokenError as exc:
        detail = next(
            (text for kind, text in _JWT_FAILURES if isinstance(exc, kind)), "The token is invalid."
        )
        raise Unauthorized(detail) from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise Unauthorized("The token's 'sub' claim must be a non-empty string.")
    issued_at = claims.get("iat")
    if issued_at is not None:
        if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
            raise Unauthorized("The token's 'iat' claim must be a number.")
        if issued_at > time.time() + settings.iat_leeway_seconds:
            raise Unauthorized("The token was issued in the future.")
    return {"jwt": {"claims": {name: claim_string(value) for name, value in claims.items()}, "scopes": None}}


_LOCAL_ROLE_ID = "AROALOCALBILLINGROLE"  # the unique id IAM would give the role (AROA...)
_LOCAL_SESSION = "local-admin"


def iam_authorizer(authorization: str | None, settings: GatewaySettings) -> dict[str, Any]:
    """The local stand-in for SigV4: the admin token, compared in constant time. The caller is a
    session of the billing role, as API Gateway describes an assumed role's request."""
    token = _bearer_token(authorization)
    if not hmac.compare_digest(token.encode("utf-8"), settings.admin_token.encode("utf-8")):
        raise Unauthorized("The admin token is not valid.")
    return {
        "iam": {
            "accessKey": "ASIALOCAL",
            "accountId": LOCAL_ACCOUNT_ID,
            "callerId": f"{_LOCAL_ROLE_ID}:{_LOCAL_SESSION}",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": _assumed_role_arn(settings.billing_role_arn, _LOCAL_SESSION),
            "userId": f"{_LOCAL_ROLE_ID}:{_LOCAL_SESSION}",
        }
    }


def _assumed_role_arn(role_arn: str, session: str) -> str:
    """The ARN of a session of ``arn:aws:iam::<account>:role/<path/><name>``:
    ``arn:aws:sts::<account>:assumed-role/<name>/<session>`` (without the role's path). Anything
    else is kept as it is (and refused by the function)."""
    found = re.fullmatch(
        r"arn:(?P<partition>[^:]+):iam::(?P<account>[0-9]+):role/(?:.*/)?(?P<name>[^/]+)", role_arn
    )
    if found is None:
        return role_arn
    return f"arn:{found['partition']}:sts::{found['account']}:assumed-role/{found['name']}/{session}"


# --------------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------------


def problem(status: int, detail: str, code: str, **members: Any) -> bytes:
    """An RFC 9457 problem document, shaped like the functions' own errors."""
    document = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **members,
    }
    return json.dumps(document).encode("utf-8")


class BadFunctionResponse(ValueError):
    """The handler's answer is not something API Gateway could turn into an HTTP response."""


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a handler's (JSON round-tripped) result to HTTP like payload format 2.0 does.

    A result API Gateway could not map raises :class:`BadFunctionResponse`; the gateway answers
    it as it answers a crashed function.
    """
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: API Gateway answers 200 with the result as a JSON body (a string result
        # is the body itself).
        text = result if isinstance(result, str) else json.dumps(result)
        return 200, [("Content-Type", "application/json")], text.encode("utf-8")
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise BadFunctionResponse(f"statusCode must be an integer HTTP status, got {status!r}")
    headers: list[tuple[str, str]] = []
    raw_headers = result.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise BadFunctionResponse("headers must be an object")
    for name, value in raw_headers.items():
        text = "true" if value is True else "false" if value is False else str(value)
        if any(char in f"{name}{text}" for char in "\r\n") or not name:
            raise BadFunctionResponse(f"header {name!r} has an invalid name or value")
        if name.lower() not in _HOP_BY_HOP:
            headers.append((name, text))
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list) or not all(
        isinstance(c, str) and "\n" not in c and "\r" not in c for c in cookies
    ):
        raise BadFunctionResponse("cookies must be a list of strings")
    headers += [("Set-Cookie", cookie) for cookie in cookies]
    body = result.get("body")
    if body is None:
        return status, headers, b""
    if not isinstance(body, str):
        raise BadFunctionResponse(f"body must be a string, got {type(body).__name__}")
    if result.get("isBase64Encoded") is True:
        try:
            return status, headers, base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise BadFunctionResponse("isBase64Encoded is true but body is not base64") from exc
    return status, headers, body.encode("utf-8")
