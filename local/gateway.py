"""A local API Gateway (HTTP API, payload format 2.0) and Lambda Invoke API, in one process.

``make run`` and the integration tests use it to call the functions of ``template.yaml`` the way
AWS would: each function's ``app.py`` is loaded in-process (its ``CodeUri`` folder plays
``/var/task``, the layer's folder ``/opt/python``), each request becomes the exact payload-2.0 event
API Gateway would build, the route's authorizer is emulated, and the handler's answer is mapped
back to HTTP as API Gateway does.

Differences from AWS, on purpose:

- Errors produced by the gateway itself (no route, bad credentials, too large, handler crash) are
  ``application/problem+json`` like the functions' own errors, because the contract says every
  error is. Real HTTP APIs answer those with ``{"message": "..."}``.
- JWT routes take HS256 tokens signed with ``LOCAL_JWT_SECRET``; IAM routes take
  ``Authorization: Bearer <LOCAL_ADMIN_TOKEN>`` instead of SigV4 (see :mod:`local.tokens`).
- One invocation runs at a time (see :meth:`GatewayServer.invoke`); HTTP connections are still
  served concurrently. A handler that outlives its ``Timeout`` is logged, not killed.

Besides the template's routes it serves, locally only: Swagger UI at ``/docs``, and a demo console
at ``/`` (the help article's *Manage AI Credits* and *Manage Plan* screens, static files of
``local/console/``) with the credentials of a demo license at ``/local/demo`` (see
:class:`ConsoleDemo`; ``make run`` provisions the demo). It is the functions' EventBridge too: their
``AWS_ENDPOINT_URL_EVENTBRIDGE`` names this server (unless set already), which answers ``PutEvents``
(``POST /`` with ``X-Amz-Target: AWSEvents.PutEvents``) and lists the events at ``/local/events``
(``?detail_type=`` filters; :mod:`local.eventbridge`).

It listens on a loopback address only (:func:`build_gateway` refuses any other). Against DNS
rebinding, the routes it serves besides the template's (``/local/...``, the Lambda Invoke API,
``/`` (EventBridge's ``POST /`` too), ``/docs``, ``/openapi.json``) answer ``403`` ``forbidden`` to a
request whose ``Host`` is not a loopback name (:func:`local.loopback.is_loopback_host`). The
template's routes do not look at ``Host``, as in AWS: they carry their own credentials, and curl,
the plugin or a proxy may name the server as they like. (Their local credentials have well-known
defaults: set ``LOCAL_JWT_SECRET`` and ``LOCAL_ADMIN_TOKEN`` when the local data matters.)

Everything is logged to stderr through the ``local.gateway`` logger: one access line per request
(method, path without query string, status, duration) and handler tracebacks; never headers or
bodies, which carry license keys and tokens.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import hmac
import html
import importlib.util
import json
import logging
import os
import re
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from pathlib import Path
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

import jwt

from local import REPO_ROOT
from local.cfn import DEFAULT_LOCAL_TABLE, LOCAL_ACCOUNT_ID, FunctionSpec, RouteSpec, functions
from local.eventbridge import EVENTS_ENDPOINT_ENV, PUT_EVENTS_TARGET, EventBridgeError, LocalEventBus
from local.loopback import is_loopback_address, is_loopback_host
from local.tokens import (
    ADMIN_TOKEN_ENV,
    BILLING_ROLE_ARN_ENV,
    BILLING_ROLE_PARAMETER,
    DEFAULT_ADMIN_TOKEN,
    DEFAULT_BILLING_ROLE_ARN,
    DEFAULT_JWT_SECRET,
    JWT_AUDIENCE_ENV,
    JWT_ISSUER_ENV,
    JWT_SECRET_ENV,
    make_portal_token,
)

__all__ = [
    "CONSOLE_DIR",
    "DEMO_PATH",
    "EVENTS_PATH",
    "MAX_BODY_BYTES",
    "ConsoleDemo",
    "DemoSite",
    "GatewayConfigError",
    "GatewayServer",
    "GatewaySettings",
    "LambdaContext",
    "LoadedFunction",
    "build_gateway",
    "build_http_event",
    "describe",
    "serve_forever",
]

logger = logging.getLogger("local.gateway")

#: API Gateway's request payload limit is 10 MB; the local gateway uses 10 MiB.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Lambda's limit for a synchronous invocation's request payload.
MAX_INVOKE_BYTES = 6 * 1024 * 1024
PROBLEM_JSON = "application/problem+json"
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
_FUNCTION_NAME = re.compile(
    r"^(?:(?:arn:aws[a-z-]*:lambda:[a-z0-9-]+:)?\d{12}:function:)?"
    r"(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9_$-]+))?$"
)
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,18}$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Response headers the gateway owns (framing and connection management), as API Gateway does.
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "transfer-encoding", "upgrade"})


class GatewayConfigError(RuntimeError):
    """The template's functions cannot be served together in one process (say why, loudly)."""


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
# Loading the functions
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedFunction:
    """A function whose handler module has been imported in this process."""

    spec: FunctionSpec
    handler: Callable[[Any, Any], Any]
    module_name: str
    region: str

    @property
    def name(self) -> str:
        return self.spec.logical_id

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT_ID}:function:{self.name}"


def _merged_environment(specs: Iterable[FunctionSpec]) -> dict[str, str]:
    """One environment for all functions: they share this process, so they must agree."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for spec in specs:
        for name, value in spec.environment.items():
            if name in merged and merged[name] != value:
                raise GatewayConfigError(
                    f"environment variable {name} is {merged[name]!r} for {owner[name]} but {value!r} for "
                    f"{spec.logical_id}; functions loaded in one process must agree"
                )
            merged[name] = value
            owner.setdefault(name, spec.logical_id)
    return merged


def _layer_paths(specs: Iterable[FunctionSpec], base_dir: Path) -> list[Path]:
    """The folders a Python layer puts on ``sys.path`` (``/opt/python`` in Lambda)."""
    paths: list[Path] = []
    for spec in specs:
        for layer in spec.layers:
            content = (base_dir / layer.content_uri).resolve()
            # With a BuildMethod, `sam build` puts the folder's content under python/; a layer
            # without one is shipped as-is and must already have python/ inside.
            has_build = bool(layer.build_method and layer.build_method.startswith("python"))
            path = content if has_build or not (content / "python").is_dir() else content / "python"
            if path not in paths:
                paths.append(path)
    return paths


def _sibling_modules(code_dir: Path, handler_module: str) -> set[str]:
    top = handler_module.split(".")[0]
    names = {entry.stem for entry in code_dir.glob("*.py")}
    names |= {entry.name for entry in code_dir.iterdir() if (entry / "__init__.py").is_file()}
    return names - {top, "__init__"}


def _load_function(spec: FunctionSpec, base_dir: Path, region: str) -> LoadedFunction:
    code_dir = (base_dir / spec.code_uri).resolve()
    module_path, _, attribute = spec.handler.rpartition(".")
    file = code_dir / (module_path.replace(".", "/") + ".py")
    if not file.is_file():
        file = code_dir / module_path.replace(".", "/") / "__init__.py"
    if not file.is_file():
        raise GatewayConfigError(f"{spec.logical_id}: handler module {module_path!r} not found in {code_dir}")
    # Every function has an app.py: a unique module name keeps them apart in sys.modules (and
    # registering it there lets pydantic/dataclasses resolve the module's annotations).
    module_name = f"lambda_{spec.logical_id}_{module_path.replace('.', '_')}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise GatewayConfigError(f"{spec.logical_id}: cannot load {file}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(code_dir))  # like /var/task: the handler's sibling modules import
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    finally:
        sys.path.remove(str(code_dir))
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise GatewayConfigError(f"{spec.logical_id}: {file} has no callable {attribute!r}")
    return LoadedFunction(spec=spec, handler=handler, module_name=module_name, region=region)


def load_functions(specs: list[FunctionSpec], base_dir: Path = REPO_ROOT) -> dict[str, LoadedFunction]:
    """Import every function's handler, in the environment the template gives it.

    The template's environment variables are set in ``os.environ`` *before* any import (handlers
    read their configuration at import time, as in Lambda). The layer folders go on ``sys.path``.
    """
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    os.environ.update(_merged_environment(specs))
    for path in reversed(_layer_paths(specs, base_dir)):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    siblings: dict[str, str] = {}
    for spec in specs:
        for name in _sibling_modules((base_dir / spec.code_uri).resolve(), spec.handler.rpartition(".")[0]):
            if name in siblings:
                # In Lambda each function has its own /var/task; here sys.modules is shared, so the
                # second function would silently get the first one's module.
                raise GatewayConfigError(
                    f"module {name!r} exists next to the handlers of both {siblings[name]} and "
                    f"{spec.logical_id}; the local gateway loads all functions in one process"
                )
            siblings[name] = spec.logical_id
    return {spec.logical_id: _load_function(spec, base_dir, region) for spec in specs}


# --------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    spec: RouteSpec
    function: LoadedFunction
    segments: tuple[str, ...] = field(default=())

    @classmethod
    def compile(cls, spec: RouteSpec, function: LoadedFunction) -> _Route:
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


# --------------------------------------------------------------------------------------------------
# Events and contexts
# --------------------------------------------------------------------------------------------------


class LambdaContext:
    """What the Lambda Python runtime passes as ``context`` (the attributes Powertools reads)."""

    def __init__(self, function: LoadedFunction, request_id: str) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.spec.memory_size
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + function.spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


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


def _claim_string(value: Any) -> str:
    """A claim as API Gateway's JWT authorizer passes it: every value a string, arrays as ``[a b]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + " ".join(_claim_string(item) for item in value) + "]"
    return json.dumps(value, separators=(",", ":"))


class _Unauthorized(Exception):
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
        raise _Unauthorized("An 'Authorization: Bearer <token>' header is required.")
    return token.strip()


def _jwt_authorizer(authorization: str | None, settings: GatewaySettings) -> dict[str, Any]:
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
        raise _Unauthorized(f"The token has no {exc.claim!r} claim.") from exc
    except jwt.InvalidTokenError as exc:
        detail = next(
            (text for kind, text in _JWT_FAILURES if isinstance(exc, kind)), "The token is invalid."
        )
        raise _Unauthorized(detail) from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise _Unauthorized("The token's 'sub' claim must be a non-empty string.")
    issued_at = claims.get("iat")
    if issued_at is not None:
        if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
            raise _Unauthorized("The token's 'iat' claim must be a number.")
        if issued_at > time.time() + settings.iat_leeway_seconds:
            raise _Unauthorized("The token was issued in the future.")
    return {"jwt": {"claims": {name: _claim_string(value) for name, value in claims.items()}, "scopes": None}}


_LOCAL_ROLE_ID = "AROALOCALBILLINGROLE"  # the unique id IAM would give the role (AROA...)
_LOCAL_SESSION = "local-admin"


def _iam_authorizer(authorization: str | None, settings: GatewaySettings) -> dict[str, Any]:
    """The local stand-in for SigV4: the admin token, compared in constant time. The caller is a
    session of the billing role, as API Gateway describes an assumed role's request."""
    token = _bearer_token(authorization)
    if not hmac.compare_digest(token.encode("utf-8"), settings.admin_token.encode("utf-8")):
        raise _Unauthorized("The admin token is not valid.")
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


class MarshalError(TypeError):
    """The handler returned something that is not JSON (Lambda's ``Runtime.MarshalError``)."""


def _lambda_json(value: Any) -> str:
    """Serialise a handler result as Lambda's Python runtime does (it turns Decimals into numbers)."""

    def decimal_to_number(obj: Any) -> Any:
        if isinstance(obj, decimal.Decimal):
            return int(obj) if obj == obj.to_integral_value() else float(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    try:
        return json.dumps(value, default=decimal_to_number)
    except (TypeError, ValueError) as exc:
        raise MarshalError(f"Unable to marshal response: {exc}") from exc


class _BadFunctionResponse(ValueError):
    """The handler's answer is not something API Gateway could turn into an HTTP response."""


def _http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a handler's (JSON round-tripped) result to HTTP like payload format 2.0 does."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: API Gateway answers 200 with the result as a JSON body (a string result
        # is the body itself).
        text = result if isinstance(result, str) else json.dumps(result)
        return 200, [("Content-Type", "application/json")], text.encode("utf-8")
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _BadFunctionResponse(f"statusCode must be an integer HTTP status, got {status!r}")
    headers: list[tuple[str, str]] = []
    raw_headers = result.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise _BadFunctionResponse("headers must be an object")
    for name, value in raw_headers.items():
        text = "true" if value is True else "false" if value is False else str(value)
        if any(char in f"{name}{text}" for char in "\r\n") or not name:
            raise _BadFunctionResponse(f"header {name!r} has an invalid name or value")
        if name.lower() not in _HOP_BY_HOP:
            headers.append((name, text))
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list) or not all(
        isinstance(c, str) and "\n" not in c and "\r" not in c for c in cookies
    ):
        raise _BadFunctionResponse("cookies must be a list of strings")
    headers += [("Set-Cookie", cookie) for cookie in cookies]
    body = result.get("body")
    if body is None:
        return status, headers, b""
    if not isinstance(body, str):
        raise _BadFunctionResponse(f"body must be a string, got {type(body).__name__}")
    if result.get("isBase64Encoded") is True:
        try:
            return status, headers, base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise _BadFunctionResponse("isBase64Encoded is true but body is not base64") from exc
    return status, headers, body.encode("utf-8")


def _lambda_error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The body Lambda returns for an unhandled exception in a Python function."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }


# --------------------------------------------------------------------------------------------------
# Execution environments: worker processes, like Lambda's
# --------------------------------------------------------------------------------------------------

#: How many invocations run at once (Lambda's concurrency), each in its own process.
DEFAULT_CONCURRENCY = 4


class FunctionError(Exception):
    """The handler raised: ``payload`` is Lambda's error body, built in the worker."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


_ENVIRONMENT: dict[str, LoadedFunction] = {}


def _start_environment(specs: list[FunctionSpec], base_dir: Path, environ: dict[str, str]) -> None:
    """A worker's cold start: the environment of the gateway, then every handler imported once."""
    os.environ.update(environ)
    _ENVIRONMENT.update(load_functions(specs, base_dir))


def _warm(_: int) -> int:
    return os.getpid()


def _invoke_in_environment(name: str, event: Any, request_id: str) -> tuple[str, Any]:
    """Run one invocation in this worker; the outcome travels back as plain data."""
    function = _ENVIRONMENT[name]
    context = LambdaContext(function, request_id)
    started = time.monotonic()
    try:
        result = function.handler(event, context)
    except Exception as exc:  # reported to the caller as Lambda does, and printed here
        traceback.print_exc()
        return "error", _lambda_error_payload(exc, request_id)
    finally:
        elapsed = time.monotonic() - started
        if elapsed > function.spec.timeout:
            logger.warning(
                "%s ran %.1fs, past its Timeout of %ss: Lambda would have stopped it",
                function.name,
                elapsed,
                function.spec.timeout,
            )
    try:
        return "ok", _lambda_json(result)
    except MarshalError as exc:
        return "marshal_error", str(exc)


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class GatewayServer(ThreadingHTTPServer):
    """The HTTP server; built by :func:`build_gateway`."""

    daemon_threads = True
    # A deep accept backlog: bursts of concurrent clients (tests use 64+) are queued, not refused.
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        loaded: dict[str, LoadedFunction],
        routes: list[_Route],
        settings: GatewaySettings,
        table_name: str,
        *,
        base_dir: Path = REPO_ROOT,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.functions = loaded
        self.routes = routes
        self.settings = settings
        self.table_name = table_name
        #: The demo license the console at ``/`` shows (registered with ``PUT /local/demo``).
        self.console_demo: ConsoleDemo | None = None
        #: The events the functions put (``PutEvents``), listed at ``/local/events``.
        self.event_bus = LocalEventBus()
        self._environments: ProcessPoolExecutor | None = None
        # Bound first: the functions' EventBridge endpoint is this server's address.
        super().__init__(address, _RequestHandler)
        environ = {EVENTS_ENDPOINT_ENV: self.base_url, **os.environ}
        # Lambda runs one invocation at a time per execution environment, each its own process,
        # and Powertools keeps per-invocation state in module globals (the resolver's
        # current_event, the metric set, the logger's keys). So do we: `concurrency` worker
        # processes, each importing every handler once, each running one invocation at a time;
        # concurrent requests really reach DynamoDB concurrently.
        self.concurrency = concurrency
        self._environments = ProcessPoolExecutor(
            max_workers=concurrency,
            mp_context=get_context("spawn"),  # never fork a process that runs threads
            initializer=_start_environment,
            initargs=([function.spec for function in loaded.values()], base_dir, environ),
        )
        warm: list[Future[int]] = [self._environments.submit(_warm, index) for index in range(concurrency)]
        self._warming = warm

    def server_close(self) -> None:
        super().server_close()
        if self._environments is not None:  # None when binding the address failed
            self._environments.shutdown(wait=False, cancel_futures=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), i.e. a DNS lookup: not needed here.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def base_url(self) -> str:
        return f"http://{self.server_name}:{self.server_port}"

    def match(self, method: str, raw_path: str) -> tuple[_Route, dict[str, str]] | None:
        """The most specific route for ``method`` on ``raw_path`` (API Gateway's selection order)."""
        segments = raw_path.split("/")[1:]
        candidates = [
            (route, parameters)
            for route in self.routes
            if (parameters := route.match(method, segments)) is not None
        ]
        return min(candidates, key=lambda candidate: candidate[0].specificity()) if candidates else None

    def find_function(self, name: str) -> LoadedFunction | None:
        """A function by logical id, ``Name:$LATEST``, or ARN ending in ``:function:<Name>``."""
        found = _FUNCTION_NAME.match(name)
        if found is None or found["qualifier"] not in (None, "$LATEST"):
            return None
        return self.functions.get(found["name"])

    def invoke(self, function: LoadedFunction | str, event: Any, request_id: str | None = None) -> Any:
        """Call a handler as Lambda would and return its result round-tripped through JSON.

        Exceptions from the handler propagate; a result that is not JSON raises
        :class:`MarshalError`; a handler's exception comes back as :class:`FunctionError`.
        Functions are named by logical id (or ARN) or passed loaded.
        """
        if isinstance(function, str):
            found = self.find_function(function)
            if found is None:
                raise KeyError(f"no function {function!r}")
            function = found
        assert self._environments is not None, "the server is not bound"
        outcome, payload = self._environments.submit(
            _invoke_in_environment, function.name, event, request_id or str(uuid.uuid4())
        ).result()
        if outcome == "error":
            raise FunctionError(payload)
        if outcome == "marshal_error":
            raise MarshalError(payload)
        return json.loads(payload)

    def wait_until_warm(self) -> None:
        """Block until every execution environment has had its cold start."""
        for future in self._warming:
            future.result()


# -- the API's documentation: Swagger UI over the committed openapi.json -------------------------


def _swagger_asset(name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        from aws_lambda_powertools.event_handler.openapi import swagger_ui

        return (Path(swagger_ui.__file__).parent / name).read_bytes()

    return read


def _openapi_document() -> bytes:
    return (REPO_ROOT / "openapi.json").read_bytes()


def _swagger_page() -> bytes:
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    page = generate_swagger_html(
        _openapi_document().decode("utf-8"),
        "/docs/swagger-ui-bundle.min.js",  # Powertools ships the assets: no CDN needed
        "/docs/swagger-ui.min.css",
        "/docs",
        None,
    )
    return page.replace("<body>", "<body>\n" + _docs_links(), 1).encode("utf-8")


#: The repository's documentation (``docs/*.md``), served as plain text at ``/local/docs/<page>.md``
#: (local only, like every ``/local/...`` path) and linked above Swagger UI.
DOCS_DIR = REPO_ROOT / "docs"
DOCS_PAGES_PREFIX = "/local/docs/"
_DOCS_PAGE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.md", re.IGNORECASE)


def docs_page(raw_path: str) -> Path | None:
    """The file of ``docs/`` that ``raw_path`` names (``/local/docs/api.md``), or None: only a plain
    file name (no ``/``, ``..``, ``%`` or other characters) of a Markdown file that is in ``docs/``."""
    name = raw_path.removeprefix(DOCS_PAGES_PREFIX)
    if name == raw_path or not _DOCS_PAGE_NAME.fullmatch(name):
        return None
    pages = {page.name: page for page in DOCS_DIR.glob("*.md") if page.is_file()}
    return pages.get(name)


def _docs_links() -> str:
    names = sorted(
        (page.name for page in DOCS_DIR.glob("*.md")), key=lambda name: (name != "README.md", name)
    )
    links = " | ".join(
        f'<a href="{DOCS_PAGES_PREFIX}{html.escape(name)}">{html.escape(name)}</a>' for name in names
    )
    style = "font-family: sans-serif; padding: 8px 20px"
    return f'<nav id="docs-pages" style="{style}">Documentation: {links}</nav>'


#: Served by the local gateway only (not routes of template.yaml): path -> (content type, body).
_DOCS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "/docs": ("text/html; charset=utf-8", _swagger_page),
    "/openapi.json": ("application/json", _openapi_document),
    "/docs/swagger-ui-bundle.min.js": ("text/javascript", _swagger_asset("swagger-ui-bundle.min.js")),
    "/docs/swagger-ui.min.css": ("text/css", _swagger_asset("swagger-ui.min.css")),
}


# -- the demo console: the help article's two screens over this gateway's API (local only) --------

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
#: The demo's credentials for the console; a local path, never a route of template.yaml.
DEMO_PATH = "/local/demo"
#: The events the functions put on EventBridge (local only).
EVENTS_PATH = "/local/events"
#: EventBridge's JSON protocol (requests and answers).
_AMZ_JSON = "application/x-amz-json-1.1"
#: Path -> (file of CONSOLE_DIR, content type). A fixed list: nothing else of the folder is served.
_CONSOLE_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/local/console/console.css": ("console.css", "text/css; charset=utf-8"),
    "/local/console/console.js": ("console.js", "text/javascript; charset=utf-8"),
}
# The browser holds the page to this gateway: nothing from elsewhere (it works offline), no inline
# script or style.
_CONSOLE_HEADERS = (
    ("Cache-Control", "no-cache"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


@dataclass(frozen=True)
class DemoSite:
    """One activated site of the demo license and the token its plugin would hold."""

    site: str
    environment: str
    activation_token: str = field(repr=False)


@dataclass(frozen=True)
class ConsoleDemo:
    """The demo license the console shows, as registered with ``PUT /local/demo`` (admin token).

    ``GET /local/demo`` answers :meth:`credentials`: what the page needs to play the portal (a portal
    JWT for the account, minted on each request so it never runs out) and the plugin of each site
    (its activation token). Only on this machine's loopback address.
    """

    license_id: str
    account_id: str
    sites: tuple[DemoSite, ...]

    @classmethod
    def from_json(cls, document: Any) -> ConsoleDemo:
        """Parse ``{license_id, account_id, sites: [{site, environment, activation_token}]}``; a
        ValueError names the member that is wrong (never its value: it may be a token)."""
        if not isinstance(document, dict):
            raise ValueError("the body must be a JSON object")
        for name in ("license_id", "account_id"):
            if not isinstance(document.get(name), str) or not 0 < len(document[name]) <= 256:
                raise ValueError(f"{name!r} must be a string of 1 to 256 characters")
        raw_sites = document.get("sites")
        if not isinstance(raw_sites, list) or not raw_sites:
            raise ValueError("'sites' must be a non-empty list")
        sites = []
        for index, raw in enumerate(raw_sites):
            members = ("site", "environment", "activation_token")
            if not isinstance(raw, dict) or not all(isinstance(raw.get(m), str) and raw[m] for m in members):
                raise ValueError(f"sites[{index}] must have the strings {', '.join(members)}")
            sites.append(DemoSite(raw["site"], raw["environment"], raw["activation_token"]))
        return cls(document["license_id"], document["account_id"], tuple(sites))

    def to_json(self) -> dict[str, Any]:
        """The registration body (``from_json`` reads it back)."""
        return {
            "license_id": self.license_id,
            "account_id": self.account_id,
            "sites": [
                {"site": s.site, "environment": s.environment, "activation_token": s.activation_token}
                for s in self.sites
            ],
        }

    def credentials(self, settings: GatewaySettings) -> dict[str, Any]:
        """What ``GET /local/demo`` answers: the registration plus a fresh portal JWT (one hour)."""
        return {**self.to_json(), "portal_token": settings.portal_token(self.account_id)}


class _RequestHandler(BaseHTTPRequestHandler):
    server: GatewayServer
    protocol_version = "HTTP/1.1"  # keep-alive, like API Gateway
    server_version = "ai-credits-local-gateway"
    sys_version = ""
    timeout = 60  # seconds a connection may sit idle or send slowly before it is closed

    _status: int | None = None

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and delayed
        # ACKs hold every response ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        started = time.perf_counter()
        self._status = None
        try:
            self._dispatch()
        finally:
            self._log_access(started)

    def _log_access(self, started: float) -> None:
        """The access line: method, path without the query string (it may carry secrets), status."""
        logger.info(
            "%s %s %s %.1fms",
            self.command,
            self.path.partition("?")[0],
            self._status if self._status is not None else "-",
            (time.perf_counter() - started) * 1000,
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) goes through the router too and gets its 404, as
        # an HTTP API answers it, instead of http.server's 501.
        if name.startswith("do_"):
            return self.do_GET
        raise AttributeError(name)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The access line is written by do_GET (without the query string); nothing here."""

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        logger.warning(format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors found by http.server (bad request line, URI or headers too long...)."""
        status = HTTPStatus(code)
        code_name = re.sub(r"[^a-z]+", "_", status.phrase.lower()).strip("_")
        self._send(code, [], problem(code, explain or message or status.phrase, code_name), close=True)
        # do_GET did not run, so this is the access line (the path may be unparsed: not logged).
        logger.info("%s - %d", getattr(self, "command", None) or "-", code)

    def _send(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        content_type: str | None = PROBLEM_JSON,
        close: bool = False,
    ) -> None:
        self._status = status
        self.send_response(status)
        header_names = set()
        for name, value in headers:
            header_names.add(name.lower())
            self.send_header(name, value)
        if content_type and body and "content-type" not in header_names:
            self.send_header("Content-Type", content_type)
        bodyless = status in (204, 304) or status < 200
        if not bodyless:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")  # also sets self.close_connection
        self.end_headers()
        if not bodyless and getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    def _problem(
        self,
        status: int,
        detail: str,
        code: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        close: bool = False,
    ) -> None:
        self._send(status, headers, problem(status, detail, code), close=close)

    def _body_length(self) -> int | None:
        """The declared body length, or None after answering 411/413/400 (connection closed).

        Checked before ``100 Continue`` is sent, so a client that waits for it never uploads a
        body that would be refused.
        """
        if self.headers.get("Transfer-Encoding") is not None:
            # API Gateway needs the length up front; so does this gateway (no chunked decoding).
            self._problem(411, "Send the body with a Content-Length header.", "length_required", close=True)
            return None
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not lengths:
            return 0  # HTTP/1.1: no Content-Length and no Transfer-Encoding means no body
        length_text = lengths.pop()
        if lengths or not _CONTENT_LENGTH.match(length_text):
            self._problem(400, "Invalid Content-Length header.", "bad_request", close=True)
            return None
        length = int(length_text)
        limit = self.server.settings.max_body_bytes
        if length > limit:
            detail = f"The request body is {length} bytes; the limit is {limit} bytes."
            self._problem(413, detail, "payload_too_large", close=True)
            self._discard(length)
            return None
        return length

    def _discard(self, length: int, seconds: float = 2.0) -> None:
        """After a 413, read (and drop) what the client is still sending, for a short while: closing
        with unread data makes the kernel reset the connection, and the client would see that
        instead of the 413."""
        deadline = time.monotonic() + seconds
        remaining = min(length, 4 * self.server.settings.max_body_bytes)
        try:
            while remaining > 0 and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(remaining, 1 << 20))
                if not chunk:
                    return
                remaining -= len(chunk)
        except OSError:  # timeout or reset: the connection is being closed anyway
            return

    def handle_expect_100(self) -> bool:
        started = time.perf_counter()
        self._status = None
        if self._body_length() is None:
            self._log_access(started)
            return False  # answered already; http.server then skips do_<METHOD>
        return super().handle_expect_100()

    def _read_body(self) -> bytes | None:
        """The request body, or None after an error answer (411/413/400) or a vanished client."""
        length = self._body_length()
        if length is None:
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            self.close_connection = True  # the client went away mid-body: nobody to answer
            return None
        return body

    # -- requests -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        raw_query = raw_query.partition("#")[0]
        if raw_path.startswith(("http://", "https://")):  # absolute-form request target
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        request_id = str(uuid.uuid4())
        body = self._read_body()
        if body is None:
            return
        if self._local_only(raw_path) and not self._host_is_loopback():
            detail = (
                "This local-only route answers requests for a loopback Host only "
                "(localhost, 127.0.0.1 or [::1], with the port)."
            )
            self._problem(403, detail, "forbidden")
            return
        if (
            self.command in ("GET", "HEAD")
            and raw_path in _DOCS
            and self.server.match("GET", raw_path) is None
        ):
            self._send(
                200, [("Cache-Control", "no-cache")], _DOCS[raw_path][1](), content_type=_DOCS[raw_path][0]
            )
            return
        page = docs_page(raw_path) if self.command in ("GET", "HEAD") else None
        if page is not None and self.server.match("GET", raw_path) is None:
            headers = [("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")]
            self._send(200, headers, page.read_bytes(), content_type="text/plain; charset=utf-8")
            return
        if raw_path == DEMO_PATH and self.server.match(self.command, raw_path) is None:
            self._console_demo(body)
            return
        if raw_path == EVENTS_PATH and self.server.match(self.command, raw_path) is None:
            self._local_events(raw_query)
            return
        target = self.headers.get("X-Amz-Target")
        if (
            self.command == "POST"
            and raw_path == "/"
            and target is not None
            and self.server.match("POST", raw_path) is None
        ):
            self._eventbridge(target, body, request_id)
            return
        if (
            self.command in ("GET", "HEAD")
            and raw_path in _CONSOLE_FILES
            and self.server.match("GET", raw_path) is None
        ):
            file_name, content_type = _CONSOLE_FILES[raw_path]
            # Read on every request: an edit of the page shows on the next reload.
            self._send(
                200, _CONSOLE_HEADERS, (CONSOLE_DIR / file_name).read_bytes(), content_type=content_type
            )
            return
        invoke_path = _INVOKE_PATH.match(raw_path)
        if self.command == "POST" and invoke_path is not None:
            self._invoke_api(unquote(invoke_path["name"]), raw_query, body, request_id)
            return
        found = self.server.match(self.command, raw_path)
        if found is None:
            # A real HTTP API answers {"message":"Not Found"}, also for a known path with another
            # method; the contract wants problem+json for every error.
            self._problem(404, f"No route for {self.command} {raw_path}.", "not_found")
            return
        route, path_parameters = found
        try:
            authorizer = self._authorize(route.spec)
        except _Unauthorized as exc:
            # Real HTTP APIs answer {"message":"Unauthorized"} when their authorizer rejects a
            # request; the functions' own 401s are problem+json, so locally both look alike.
            self._problem(401, exc.detail, "unauthorized", headers=[("WWW-Authenticate", "Bearer")])
            return
        event = build_http_event(
            method=self.command,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=self.headers.items(),
            body=body,
            route_key=route.spec.route_key,
            path_parameters=path_parameters,
            source_ip=self.client_address[0],
            request_id=request_id,
            authorizer=authorizer,
            protocol=self.request_version,
            server_port=self.server.server_port,
        )
        try:
            result = self.server.invoke(route.function, event, request_id)
            status, headers, response_body = _http_response(result)
        except Exception:  # the one legitimate catch-all: a crash becomes a 500
            # API Gateway answers 500 {"message":"Internal Server Error"} when the function fails.
            logger.exception(
                "%s failed on %s %s (request %s)", route.function.name, self.command, raw_path, request_id
            )
            self._problem(500, "The function failed; see the gateway's log.", "internal_error")
            return
        self._send(status, [*headers, ("apigw-requestid", request_id)], response_body, content_type=None)

    def _local_only(self, raw_path: str) -> bool:
        """Whether ``raw_path`` is a route of this gateway rather than of the template: ``/local/...``
        (whatever follows), the Lambda Invoke API, the console page (``/``, which EventBridge's
        ``POST /`` shares) and the docs."""
        if any(path == "/local" or path.startswith("/local/") for path in (raw_path, unquote(raw_path))):
            return True
        if _INVOKE_PATH.match(raw_path):
            return True
        own_pages = raw_path in _DOCS or raw_path in _CONSOLE_FILES
        return own_pages and self.server.match("GET", raw_path) is None

    def _host_is_loopback(self) -> bool:
        """Exactly one ``Host`` header, naming the loopback (DNS-rebinding protection)."""
        hosts = self.headers.get_all("Host") or []
        return len(hosts) == 1 and is_loopback_host(hosts[0])

    def _console_demo(self, body: bytes) -> None:
        """``GET /local/demo``: the demo's credentials for the console; ``PUT``: register the demo.
        Both for a loopback ``Host`` only (checked by ``_dispatch``)."""
        if self.command in ("GET", "HEAD"):
            demo = self.server.console_demo
            if demo is None:
                detail = "No demo license is registered: make run provisions one (PUT /local/demo)."
                self._problem(404, detail, "not_found")
                return
            document = json.dumps(demo.credentials(self.server.settings)).encode("utf-8")
            self._send(200, [("Cache-Control", "no-store")], document, content_type="application/json")
            return
        if self.command != "PUT":
            detail = f"{DEMO_PATH} takes GET (the console) and PUT (registering the demo)."
            self._problem(405, detail, "method_not_allowed", headers=[("Allow", "GET, HEAD, PUT")])
            return
        try:
            _iam_authorizer(self.headers.get("Authorization"), self.server.settings)
        except _Unauthorized as exc:
            self._problem(401, exc.detail, "unauthorized", headers=[("WWW-Authenticate", "Bearer")])
            return
        try:
            demo = ConsoleDemo.from_json(json.loads(body))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
            self._problem(422, f"Not a demo registration: {exc}.", "validation_error")
            return
        self.server.console_demo = demo
        self._send(204, [], b"")

    def _local_events(self, raw_query: str) -> None:
        """``GET /local/events[?detail_type=...]``: the events the functions put, oldest first.
        For a loopback ``Host`` only (checked by ``_dispatch``)."""
        if self.command not in ("GET", "HEAD"):
            detail = f"{EVENTS_PATH} takes GET (the events the functions put, oldest first)."
            self._problem(405, detail, "method_not_allowed", headers=[("Allow", "GET, HEAD")])
            return
        detail_type = dict(parse_qsl(raw_query)).get("detail_type")
        document = json.dumps({"events": self.server.event_bus.events(detail_type)}).encode("utf-8")
        self._send(200, [("Cache-Control", "no-store")], document, content_type="application/json")

    def _eventbridge(self, target: str, body: bytes, request_id: str) -> None:
        """EventBridge's JSON 1.1 API at ``POST /``: ``PutEvents`` only (SigV4 is not checked).
        For a loopback ``Host`` only (checked by ``_dispatch``)."""
        headers = [("x-amzn-RequestId", request_id)]
        try:
            if target != PUT_EVENTS_TARGET:
                raise EventBridgeError("UnknownOperationException", f"{target} is not served locally.")
            try:
                request = json.loads(body)
            except ValueError as exc:  # includes UnicodeDecodeError
                raise EventBridgeError("SerializationException", "The body is not JSON.") from exc
            answer = self.server.event_bus.put_events(request)
        except EventBridgeError as exc:
            self._send(400, headers, json.dumps(exc.to_json()).encode("utf-8"), content_type=_AMZ_JSON)
            return
        self._send(200, headers, json.dumps(answer).encode("utf-8"), content_type=_AMZ_JSON)

    def _authorize(self, route: RouteSpec) -> dict[str, Any] | None:
        authorization = self.headers.get("Authorization")
        if route.auth == "jwt":
            return _jwt_authorizer(authorization, self.server.settings)
        if route.auth == "iam":
            return _iam_authorizer(authorization, self.server.settings)
        return None

    def _lambda_error(self, status: int, error_type: str, message: str, request_id: str) -> None:
        body = json.dumps({"Type": "User", "message": message}).encode("utf-8")
        headers = [("x-amzn-ErrorType", error_type), ("x-amzn-RequestId", request_id)]
        self._send(status, headers, body, content_type="application/json")

    def _invoke_api(self, name: str, raw_query: str, body: bytes, request_id: str) -> None:
        """``POST /2015-03-31/functions/{FunctionName}/invocations`` (SigV4 is not checked)."""
        qualifier = dict(parse_qsl(raw_query)).get("Qualifier")
        function = self.server.find_function(name if qualifier is None else f"{name}:{qualifier}")
        if function is None:
            region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
            arn = f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{name}"
            self._lambda_error(404, "ResourceNotFoundException", f"Function not found: {arn}", request_id)
            return
        if len(body) > MAX_INVOKE_BYTES:
            message = (
                f"Request must be smaller than {MAX_INVOKE_BYTES} bytes for the InvokeFunction operation"
            )
            self._lambda_error(413, "RequestTooLargeException", message, request_id)
            return
        invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            self._lambda_error(400, "InvalidParameterValueException", "Invalid InvocationType", request_id)
            return
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:  # includes UnicodeDecodeError
            message = f"Could not parse request body into json: {type(exc).__name__}"
            self._lambda_error(400, "InvalidRequestContentException", message, request_id)
            return
        headers = [("X-Amz-Executed-Version", "$LATEST"), ("x-amzn-RequestId", request_id)]
        if invocation_type == "DryRun":
            self._send(204, headers, b"")
            return
        try:
            payload = json.dumps(self.server.invoke(function, event, request_id)).encode("utf-8")
        except MarshalError as exc:
            logger.error(
                "%s returned a result that is not JSON (request %s): %s", function.name, request_id, exc
            )
            error = {
                "errorMessage": str(exc),
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
                "stackTrace": [],
            }
            payload = json.dumps(error).encode("utf-8")
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        except Exception as exc:  # reported to the caller like Lambda does, and logged
            logger.exception("%s failed (request %s)", function.name, request_id)
            error_body = (
                exc.payload if isinstance(exc, FunctionError) else _lambda_error_payload(exc, request_id)
            )
            payload = json.dumps(error_body).encode("utf-8")
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        if invocation_type == "Event":
            # Lambda would queue it and answer at once; running it first keeps local runs simple.
            self._send(202, headers, b"")
            return
        self._send(200, headers, payload, content_type="application/json")


# --------------------------------------------------------------------------------------------------
# Building and serving
# --------------------------------------------------------------------------------------------------


def build_gateway(
    template: Mapping[str, Any],
    host: str = "127.0.0.1",
    port: int = 3000,
    settings: GatewaySettings | None = None,
    *,
    base_dir: Path = REPO_ROOT,
    table_name: str | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
    concurrency: int | None = None,
) -> GatewayServer:
    """Load every function of ``template`` and bind the gateway to ``host:port`` (0 = any free port).

    ``host`` must be an IPv4 loopback address (127.x.y.z): the local server is never reachable from
    another machine. ``base_dir`` is the folder ``CodeUri``/``ContentUri`` are relative to (the
    template's folder); ``table_name`` is what ``!Ref <the table>`` becomes (default env
    ``TABLE_NAME``, else ``ai-credits-local``); ``settings`` default to
    :meth:`GatewaySettings.from_env`. The template parameter ``BillingRoleArn`` is
    ``settings.billing_role_arn`` unless ``parameter_overrides`` name it. The server is bound but
    not serving: call :func:`serve_forever` or ``server.serve_forever()`` in a thread.
    """
    if not (is_loopback_address(host) and "." in host):
        raise GatewayConfigError(f"the local gateway listens on an IPv4 loopback address only, not {host!r}")
    settings = settings or GatewaySettings.from_env()
    concurrency = concurrency or int(os.environ.get("LOCAL_LAMBDA_CONCURRENCY", DEFAULT_CONCURRENCY))
    table_name = table_name or os.environ.get("TABLE_NAME") or DEFAULT_LOCAL_TABLE
    overrides = {BILLING_ROLE_PARAMETER: settings.billing_role_arn, **(parameter_overrides or {})}
    specs = functions(template, table_name=table_name, parameter_overrides=overrides)
    loaded = load_functions(specs, base_dir)
    routes: list[_Route] = []
    seen: dict[str, str] = {}
    for spec in specs:
        for route_spec in spec.routes:
            if route_spec.route_key in seen:
                raise GatewayConfigError(
                    f"route {route_spec.route_key} is claimed by both {seen[route_spec.route_key]} "
                    f"and {spec.logical_id}"
                )
            seen[route_spec.route_key] = spec.logical_id
            routes.append(_Route.compile(route_spec, loaded[spec.logical_id]))
    return GatewayServer(
        (host, port), loaded, routes, settings, table_name, base_dir=base_dir, concurrency=concurrency
    )


def describe(server: GatewayServer) -> str:
    """What the server serves, for humans: routes, invoke endpoint, database, local credentials."""
    base = server.base_url
    lines = [f"AI Credits local gateway on {base}", "", "Routes (payload format 2.0):"]
    for route in sorted(server.routes, key=lambda r: (r.spec.path, r.spec.method)):
        lines.append(
            f"  {route.spec.method:<7} {base}{route.spec.path}  [{route.spec.auth}] -> {route.function.name}"
        )
    lines += ["", f"API documentation: {base}/docs (Swagger UI), {base}/openapi.json"]
    lines += [
        "",
        f"Lambda Invoke API: POST {base}/2015-03-31/functions/<FunctionName>/invocations"
        f" ({server.concurrency} execution environments)",
    ]
    for function in server.functions.values():
        schedules = ", ".join(f"{s.name}: {s.expression}" for s in function.spec.schedules)
        streams = ", ".join(f"{s.name}: batches of {s.batch_size}" for s in function.spec.streams)
        lines.append(
            f"  {function.name}"
            + (f"  (scheduled in AWS: {schedules})" if schedules else "")
            + (f"  (reads the table's stream: {streams})" if streams else "")
        )
    lines += [
        "",
        f"EventBridge: PutEvents at POST {base}/ (the functions' ${EVENTS_ENDPOINT_ENV}),"
        f" the events at {base}{EVENTS_PATH}",
    ]
    endpoint = (
        os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        or "AWS's default endpoint (AWS_ENDPOINT_URL_DYNAMODB unset!)"
    )
    lines += ["", f"DynamoDB: {endpoint}, table {server.table_name}", "", "Local credentials:"]
    settings = server.settings
    secret_note = "the documented default" if settings.jwt_secret == DEFAULT_JWT_SECRET else "set"
    admin_note = "the documented default" if settings.admin_token == DEFAULT_ADMIN_TOKEN else "set"
    lines.append(f"  [jwt]  Authorization: Bearer <HS256 JWT signed with ${JWT_SECRET_ENV} ({secret_note})>")
    lines.append("         make one: .venv/bin/python -m local.tokens <account-id>")
    if settings.jwt_audience or settings.jwt_issuer:
        lines.append(f"         checked too: ${JWT_AUDIENCE_ENV}, ${JWT_ISSUER_ENV}")
    lines.append(f"  [iam]  Authorization: Bearer ${ADMIN_TOKEN_ENV} ({admin_note})")
    lines.append(
        f"         a session of the billing role {settings.billing_role_arn} (${BILLING_ROLE_ARN_ENV})"
    )
    lines += ["", f"Demo console: {base}/  (Manage AI Credits and Manage Plan; local only)"]
    demo = server.console_demo
    if demo is None:
        lines.append(f"  no demo license registered (PUT {DEMO_PATH})")
    else:
        lines.append(f"  demo license {demo.license_id} of account {demo.account_id}, activated on:")
        lines += [f"    {site.site} ({site.environment})" for site in demo.sites]
        lines.append(f"  the page takes its portal JWT and activation tokens from GET {base}{DEMO_PATH}")
    return "\n".join(lines)


def serve_forever(
    server: GatewayServer, *, announce: bool = True, before_close: Callable[[], None] | None = None
) -> None:
    """Print :func:`describe` to stderr and serve until ``server.shutdown()`` or an exception
    (KeyboardInterrupt) ends it; ``before_close`` is called (e.g. to stop what invokes functions
    besides the routes), then the socket and the execution environments are closed.

    When the program has not configured logging, the access lines and tracebacks go to stderr.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # a no-op when logging is set up
    if announce:
        print(describe(server), file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.25)
    finally:
        try:
            if before_close is not None:
                before_close()
        finally:
            server.server_close()
