"""A local API Gateway (HTTP API, payload format 2.0) and Lambda Invoke API: the HTTP server.

``make run`` and the integration tests use it to call the functions of ``template.yaml`` the way
AWS would: each function's ``app.py`` is loaded in worker processes that play Lambda's execution
environments (its ``CodeUri`` folder plays ``/var/task``, the layer's folder ``/opt/python``;
:mod:`local.environments`), each request becomes the exact payload-2.0 event API Gateway would
build, the route's authorizer is emulated, and the handler's answer is mapped back to HTTP as API
Gateway does (:mod:`local.apigw`).

Differences from AWS, on purpose:

- Errors produced by the gateway itself (no route, bad credentials, too large, handler crash) are
  ``application/problem+json`` like the functions' own errors, because the contract says every
  error is. Real HTTP APIs answer those with ``{"message": "..."}``.
- JWT routes take HS256 tokens signed with ``LOCAL_JWT_SECRET``; IAM routes take
  ``Authorization: Bearer <LOCAL_ADMIN_TOKEN>`` instead of SigV4 (see :mod:`local.tokens`).
- Each execution environment runs one invocation at a time (see :meth:`GatewayServer.invoke`);
  HTTP connections are served concurrently. A handler that outlives its ``Timeout`` is logged, not
  killed.

Besides the template's routes it serves, locally only (:mod:`local.pages`): Swagger UI at
``/docs``, and a demo console at ``/`` (the help article's *Manage AI Credits* and *Manage Plan*
screens, static files of ``local/console/``) with the credentials of a demo license at
``/local/demo`` (see :class:`local.pages.ConsoleDemo`; ``make run`` provisions the demo). It is the
functions' EventBridge too: their ``AWS_ENDPOINT_URL_EVENTBRIDGE`` names this server (unless set
already), which answers ``PutEvents`` (``POST /`` with ``X-Amz-Target: AWSEvents.PutEvents``) and
lists the events at ``/local/events`` (``?detail_type=`` filters; :mod:`local.eventbridge`).

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

import json
import logging
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from local import REPO_ROOT
from local.apigw import (
    PROBLEM_JSON,
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
from local.cfn import DEFAULT_LOCAL_TABLE, LOCAL_ACCOUNT_ID, RouteSpec, functions
from local.environments import (
    DEFAULT_CONCURRENCY,
    ExecutionEnvironments,
    FunctionError,
    GatewayConfigError,
    LoadedFunction,
    MarshalError,
    lambda_error_payload,
    load_functions,
)
from local.eventbridge import EVENTS_ENDPOINT_ENV, PUT_EVENTS_TARGET, EventBridgeError, LocalEventBus
from local.loopback import is_loopback_address, is_loopback_host
from local.pages import (
    CONSOLE_DIR,
    CONSOLE_FILES,
    CONSOLE_HEADERS,
    DEMO_PATH,
    DOCS_FILES,
    ConsoleDemo,
    docs_page,
)
from local.tokens import (
    ADMIN_TOKEN_ENV,
    BILLING_ROLE_ARN_ENV,
    BILLING_ROLE_PARAMETER,
    DEFAULT_ADMIN_TOKEN,
    DEFAULT_JWT_SECRET,
    JWT_AUDIENCE_ENV,
    JWT_ISSUER_ENV,
    JWT_SECRET_ENV,
)

__all__ = [
    "EVENTS_PATH",
    "GatewayServer",
    "build_gateway",
    "describe",
    "serve_forever",
]

logger = logging.getLogger("local.gateway")

#: Lambda's limit for a synchronous invocation's request payload.
MAX_INVOKE_BYTES = 6 * 1024 * 1024
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
_FUNCTION_NAME = re.compile(
    r"^(?:(?:arn:aws[a-z-]*:lambda:[a-z0-9-]+:)?\d{12}:function:)?"
    r"(?P<name>[A-Za-z0-9_-]+)(?::(?P<qualifier>[A-Za-z0-9_$-]+))?$"
)
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,18}$")
#: The events the functions put on EventBridge (local only).
EVENTS_PATH = "/local/events"
#: EventBridge's JSON protocol (requests and answers).
_AMZ_JSON = "application/x-amz-json-1.1"


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
        routes: list[Route],
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
        self._environments: ExecutionEnvironments | None = None
        # Bound first: the functions' EventBridge endpoint is this server's address.
        super().__init__(address, _RequestHandler)
        environ = {EVENTS_ENDPOINT_ENV: self.base_url, **os.environ}
        self.concurrency = concurrency
        specs = [function.spec for function in loaded.values()]
        self._environments = ExecutionEnvironments(specs, base_dir, environ, concurrency)

    def server_close(self) -> None:
        super().server_close()
        if self._environments is not None:  # None when binding the address failed
            self._environments.shutdown()

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), i.e. a DNS lookup: not needed here.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def base_url(self) -> str:
        return f"http://{self.server_name}:{self.server_port}"

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        """The most specific route for ``method`` on ``raw_path`` (API Gateway's selection order)."""
        return select_route(self.routes, method, raw_path)

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
        return self._environments.invoke(function.name, event, request_id or str(uuid.uuid4()))

    def wait_until_warm(self) -> None:
        """Block until every execution environment has had its cold start."""
        assert self._environments is not None, "the server is not bound"
        self._environments.wait_until_warm()


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
            and raw_path in DOCS_FILES
            and self.server.match("GET", raw_path) is None
        ):
            content_type, read = DOCS_FILES[raw_path]
            self._send(200, [("Cache-Control", "no-cache")], read(), content_type=content_type)
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
            and raw_path in CONSOLE_FILES
            and self.server.match("GET", raw_path) is None
        ):
            file_name, content_type = CONSOLE_FILES[raw_path]
            # Read on every request: an edit of the page shows on the next reload.
            self._send(
                200, CONSOLE_HEADERS, (CONSOLE_DIR / file_name).read_bytes(), content_type=content_type
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
        except Unauthorized as exc:
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
            status, headers, response_body = http_response(result)
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
        own_pages = raw_path in DOCS_FILES or raw_path in CONSOLE_FILES
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
            iam_authorizer(self.headers.get("Authorization"), self.server.settings)
        except Unauthorized as exc:
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
            return jwt_authorizer(authorization, self.server.settings)
        if route.auth == "iam":
            return iam_authorizer(authorization, self.server.settings)
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
                exc.payload if isinstance(exc, FunctionError) else lambda_error_payload(exc, request_id)
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
    routes: list[Route] = []
    seen: dict[str, str] = {}
    for spec in specs:
        for route_spec in spec.routes:
            if route_spec.route_key in seen:
                raise GatewayConfigError(
                    f"route {route_spec.route_key} is claimed by both {seen[route_spec.route_key]} "
                    f"and {spec.logical_id}"
                )
            seen[route_spec.route_key] = spec.logical_id
            routes.append(Route.compile(route_spec, loaded[spec.logical_id]))
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
