"""``make run``: DynamoDB Local + the table from template.yaml + the local gateway, until Ctrl-C.

Environment (all optional):

- ``PORT`` (3000): the gateway's port on 127.0.0.1 (it listens there only; its local-only routes
  answer a loopback ``Host`` only: see :mod:`local.loopback`).
- ``TABLE_NAME`` (``ai-credits-local``): the table the functions use.
- ``AWS_ENDPOINT_URL_DYNAMODB``: use that DynamoDB instead of starting DynamoDB Local.
- ``DYNAMODB_LOCAL_PORT`` (8000): where DynamoDB Local listens; its data lives in
  ``.local/dynamodb-data/`` and survives restarts (``make clean`` deletes it).
- ``LOCAL_JWT_SECRET``, ``LOCAL_JWT_AUDIENCE``, ``LOCAL_JWT_ISSUER``, ``LOCAL_ADMIN_TOKEN``,
  ``BILLING_ROLE_ARN`` (the role the admin token stands for, given to the functions as the template
  parameter ``BillingRoleArn``): see :mod:`local.tokens`.
- ``LOCAL_DEMO`` (1): ``0`` skips the demo license of the console.
- ``LOCAL_SCHEDULES`` (1): ``0`` does not fire the template's ``rate()`` schedules (the hold sweeper
  every minute, the renewal hourly: :mod:`local.scheduler`); ``aws lambda invoke`` still runs them.
- ``LOCAL_STREAMS`` (1): ``0`` does not hand the table's stream to the functions with a ``DynamoDB``
  event (:mod:`local.streams`; its checkpoints are kept next to DynamoDB Local's data, so a restart
  resumes where the last run stopped).
- ``AWS_ENDPOINT_URL_EVENTBRIDGE``: the functions' EventBridge; unset, the gateway itself, which keeps
  the events they put (``GET /local/events``). Their ``EVENT_BUS_NAME`` is the template's bus
  (``ai-credits-local``).

Extension point: functions appended to :data:`ON_READY` are called with the gateway once the table
exists and before serving starts. The first one, :func:`serve_demo`, provisions the demo license the
console at ``/`` shows (:data:`DEMO`) through the API, as billing and the plugin would: created on
the first start, reused afterwards (the data persists), its sites activated again on every start
(the activation tokens are returned once, so each start rotates them) and registered with the
gateway (``PUT /local/demo``), which hands them to the page. Nothing secret is printed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from local import REPO_ROOT
from local.apigw import GatewaySettings
from local.cfn import DEFAULT_LOCAL_TABLE, ensure_table, load_template
from local.dynamodb_local import DEFAULT_ROOT, DynamoDBLocalError, start
from local.gateway import GatewayServer, build_gateway, serve_forever
from local.pages import DEMO_PATH, ConsoleDemo, DemoSite
from local.scheduler import Scheduler, scheduled_targets
from local.streams import StreamReader
from local.tokens import BILLING_ROLE_ARN_ENV, DEFAULT_BILLING_ROLE_ARN

__all__ = [
    "DEMO",
    "ON_READY",
    "DemoError",
    "DemoLicense",
    "main",
    "provision_demo",
    "serve_demo",
    "stream_readers",
]

_FAKE_AWS_ENV = {
    # DynamoDB Local accepts any credentials; these keep boto3 from looking for real ones
    # (and from ever asking an instance metadata endpoint).
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

logger = logging.getLogger("local.run")


# --------------------------------------------------------------------------------------------------
# The demo license of the console
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLicense:
    """A multi-site license (so allocation matters) on two live sites and a staging site."""

    license_id: str = "lic-demo-console"
    #: A local demo's key, as well-known as the local admin token; never printed.
    license_key: str = field(default="AGG-DEMO-CONSOLE-0001", repr=False)
    account_id: str = "acct-demo"
    credits_per_term: int = 1000
    site_limit: int = 3
    #: (site URL, the environment WordPress reports), activated in this order.
    sites: tuple[tuple[str, str], ...] = (
        ("https://example.com/", "production"),
        ("https://example.org/", "production"),
        ("https://staging.example.com/", "staging"),
    )
    #: Applied once, when the license is created: a multi-site license allocates nothing by itself.
    initial_allocations: tuple[tuple[str, int], ...] = (
        ("example.com", 500),
        ("example.org", 200),
        ("staging.example.com", 100),
    )


DEMO = DemoLicense()


class DemoError(RuntimeError):
    """The API refused a step of the demo's provisioning (the message has no secret)."""


class _Client:
    """Just enough HTTP for the provisioning: JSON in, (status, JSON) out, no proxy."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)
        try:
            with self._opener.open(request, timeout=30) as response:
                return response.status, _json_or_none(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _json_or_none(error.read())

    def expect(
        self,
        statuses: Collection[int],
        step: str,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        status, answer = self.call(method, path, body, token)
        if status not in statuses:
            # A problem document never carries a key or a token: safe to show.
            problem = answer if isinstance(answer, dict) else {}
            raise DemoError(
                f"{step}: {method} {path} answered {status} {problem.get('code')}: {problem.get('detail')}"
            )
        return status, answer


def _json_or_none(data: bytes) -> Any:
    return json.loads(data) if data else None


def _demo_term(now: datetime) -> tuple[str, str]:
    """The current month's first day and the same day a year later (RFC 3339, UTC)."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        start.replace(year=start.year + 1).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def provision_demo(
    base_url: str,
    settings: GatewaySettings,
    demo: DemoLicense = DEMO,
    *,
    now: datetime | None = None,
) -> tuple[ConsoleDemo, bool]:
    """Make sure ``demo`` exists (through the gateway at ``base_url``), activate its sites and
    register them with the gateway; return what was registered and whether the license was created.

    Idempotent: an existing license is kept as it is (allocations, usage, term); only its sites'
    activation tokens are rotated, the old ones stop working.
    """
    client = _Client(base_url)
    portal_token = settings.portal_token(demo.account_id)
    credits_path = f"/v1/licenses/{quote(demo.license_id, safe='')}"
    status, _ = client.expect(
        {200, 404}, "reading the demo license", "GET", f"{credits_path}/credits", token=portal_token
    )
    created = status == 404
    if created:
        term_start, term_end = _demo_term(now or datetime.now(UTC))
        license_body = {
            "license_key": demo.license_key,
            "account_id": demo.account_id,
            "plan": "multi-site",
            "site_limit": demo.site_limit,
            "credits_per_term": demo.credits_per_term,
            "term_months": 12,
            "term_start": term_start,
            "term_end": term_end,
            "expires_at": term_end,
        }
        admin_path = f"/v1/admin/licenses/{quote(demo.license_id, safe='')}"
        client.expect(
            {200, 201}, "provisioning the demo license", "PUT", admin_path, license_body, settings.admin_token
        )
    sites = []
    for site_url, environment in demo.sites:
        activation = {"license_key": demo.license_key, "site_url": site_url, "environment": environment}
        _, answer = client.expect({200, 201}, f"activating {site_url}", "POST", "/v1/activations", activation)
        sites.append(DemoSite(answer["site"], answer["environment"], answer["activation_token"]))
    if created and demo.initial_allocations:
        allocations = {"allocations": dict(demo.initial_allocations)}
        client.expect(
            {200},
            "allocating the demo's credits",
            "PUT",
            f"{credits_path}/allocations",
            allocations,
            portal_token,
        )
    registered = ConsoleDemo(demo.license_id, demo.account_id, tuple(sites))
    client.expect(
        {204},
        "registering the demo with the gateway",
        "PUT",
        DEMO_PATH,
        registered.to_json(),
        settings.admin_token,
    )
    return registered, created


def serve_demo(server: GatewayServer) -> None:
    """:data:`ON_READY` hook: provision :data:`DEMO` through ``server``'s own API, served for that
    moment from a thread (the hook runs before serving starts). ``LOCAL_DEMO=0`` skips it; a
    refusal is logged and ``make run`` goes on without the demo."""
    if os.environ.get("LOCAL_DEMO", "1") == "0":
        return
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        demo, created = provision_demo(server.base_url, server.settings)
    except (DemoError, OSError) as exc:  # OSError: URLError, a timeout
        logger.error("the console's demo license could not be provisioned: %s", exc)
        return
    finally:
        server.shutdown()
        thread.join()
    logger.info(
        "demo license %s %s; its %d sites activated with fresh tokens",
        demo.license_id,
        "provisioned" if created else "already provisioned (kept as it is)",
        len(demo.sites),
    )


#: Called in order with the server after the table exists, before requests are served.
ON_READY: list[Callable[[GatewayServer], None]] = [serve_demo]


def stream_readers(
    server: GatewayServer, dynamodb: Any, table_name: str, checkpoints: Path
) -> list[StreamReader]:
    """A reader of the table's stream for each ``DynamoDB`` event of the template's functions,
    invoking the function in the gateway's execution environments (with its environment:
    ``TABLE_NAME``, ``EVENT_BUS_NAME``, ``AWS_ENDPOINT_URL_EVENTBRIDGE``), checkpointed in the folder
    ``checkpoints``."""
    return [
        StreamReader.for_table(
            dynamodb,
            table_name,
            functools.partial(server.invoke, function.name),
            stream,
            checkpoint_path=checkpoints / f"stream-{function.name}-{stream.name}.json",
            function_name=function.name,
        )
        for function in server.functions.values()
        for stream in function.spec.streams
    ]


class _Stop(Exception):
    """Raised by the SIGTERM handler to unwind serve_forever like Ctrl-C does."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(
    argv: Sequence[str] | None = None, on_ready: Sequence[Callable[[GatewayServer], None]] = ON_READY
) -> int:
    """Run until Ctrl-C or SIGTERM; DynamoDB Local (when started here) is stopped on the way out."""
    del argv  # configuration comes from the environment, like the functions' own
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in environment..."
    for name, value in _FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)
    # The billing role the admin token stands for; build_gateway hands it to the functions as the
    # template's BillingRoleArn (GatewaySettings.from_env reads it back).
    os.environ.setdefault(BILLING_ROLE_ARN_ENV, DEFAULT_BILLING_ROLE_ARN)
    table_name = os.environ.setdefault("TABLE_NAME", DEFAULT_LOCAL_TABLE)
    port = int(os.environ.get("PORT", "3000"))
    signal.signal(signal.SIGTERM, _raise_stop)
    # Ctrl-C must stop the server even when started from a shell that ignores SIGINT for
    # background jobs (the ignored disposition would be inherited).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    template = load_template()

    import boto3  # after the environment is complete: boto3 reads it when the client is made

    data_path = DEFAULT_ROOT / "dynamodb-data"
    try:
        with contextlib.ExitStack() as stack:
            if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
                ddb_port = int(os.environ.get("DYNAMODB_LOCAL_PORT", "8000"))
                try:
                    dynamodb = stack.enter_context(start(ddb_port, data_path))
                except DynamoDBLocalError as exc:
                    logger.error("%s", exc)
                    return 1
                # boto3 picks this up by itself; nothing passes endpoint_url explicitly.
                os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.endpoint
                logger.info("DynamoDB Local started at %s (data in %s)", dynamodb.endpoint, data_path)
            client = boto3.client("dynamodb")
            ensure_table(client, table_name, template)
            server = build_gateway(template, "127.0.0.1", port, base_dir=REPO_ROOT, table_name=table_name)
            stack.callback(server.server_close)
            for hook in on_ready:
                hook(server)
            # The template's rate() schedules, fired as EventBridge Scheduler would; stopped before
            # the server closes its execution environments.
            specs = [function.spec for function in server.functions.values()]
            scheduler = Scheduler(server.invoke, scheduled_targets(specs))
            if os.environ.get("LOCAL_SCHEDULES", "1") != "0":
                scheduler.start()
            # The table's stream, handed to its functions as Lambda's event source mapping would;
            # stopped the same way.
            readers = stream_readers(server, client, table_name, data_path)
            if os.environ.get("LOCAL_STREAMS", "1") != "0":
                for reader in readers:
                    reader.start()

            def stop_invoking() -> None:
                scheduler.stop()
                for reader in readers:
                    reader.stop()

            serve_forever(server, before_close=stop_invoking)
    except (KeyboardInterrupt, _Stop):
        logger.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
