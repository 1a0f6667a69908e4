"""Handler tests: each function's ``lambda_handler`` called with the events of ``events/`` on moto.

moto is fine for behaviour, never for concurrency (it is not atomic under parallel requests):
races run against DynamoDB Local in ``tests/integration``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_modules: dict[str, ModuleType] = {}


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/app.py`` as Lambda would (module ``app`` of its CodeUri),
    under a unique name so the functions' ``app`` modules do not collide."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(
            f"handler_{name}_app", ROOT / "functions" / name / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


class LambdaContext:
    function_name = "test-function"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/test-function"
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


def sample_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json``."""
    return copy.deepcopy(json.loads((ROOT / "events" / f"{name}.json").read_text()))


def make_event(
    name: str,
    *,
    body: Any = ...,
    raw_body: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    path_license_id: str | None = None,
) -> dict[str, Any]:
    """``events/<name>.json`` with its body, token or headers replaced."""
    event = sample_event(name)
    if body is not ...:
        event["body"] = json.dumps(body)
    if raw_body is not None:
        event["body"] = raw_body
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    if headers:
        event["headers"].update(headers)
    if path_license_id is not None:
        event["pathParameters"]["license_id"] = path_license_id
        path = event["routeKey"].split(" ", 1)[1].replace("{license_id}", path_license_id)
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    return event


def hold_event(
    name: str, token: str, hold_id: str, body: Any = ..., subsite_url: str | None = None
) -> dict[str, Any]:
    """``events/<name>.json`` of a route on ``/v1/holds/{hold_id}``, for ``hold_id`` (and
    ``?subsite_url=``)."""
    event = make_event(name, body=body, token=token)
    path = event["routeKey"].split(" ", 1)[1].replace("{hold_id}", hold_id)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"hold_id": hold_id}
    event["rawQueryString"] = f"subsite_url={subsite_url}" if subsite_url is not None else ""
    event.pop("queryStringParameters", None)
    if subsite_url is not None:
        event["queryStringParameters"] = {"subsite_url": subsite_url}
    return event


FUNCTION_OF_EVENT = {
    "provision": "provision",
    "activate": "activate",
    "deactivate": "activate",
    "get_balance": "get_balance",
    "consume": "consume",
    "list_licenses": "licenses",
    "get_credits": "licenses",
    "put_allocations": "allocate",
    "portal_deactivate": "allocate",
    "grant": "provision",
    "refund": "provision",
    "hold_create": "holds",
    "hold_capture": "holds",
    "hold_release": "holds",
    "hold_get": "holds",
    "sweep_holds-scheduled": "sweep_holds",
    "get_usage": "get_balance",
    "license_usage": "licenses",
    "license_ledger": "licenses",
}


def invoke(event_name: str, event: dict[str, Any]) -> Answer:
    response = load_function(FUNCTION_OF_EVENT[event_name]).lambda_handler(event, LambdaContext())
    headers = {name.lower(): value for name, value in response.get("headers", {}).items()}
    raw = response.get("body") or ""
    return Answer(response["statusCode"], headers, json.loads(raw) if raw else None)


@pytest.fixture
def table(moto_table: str) -> Iterator[str]:
    """The moto table, with the rules package's cached client rebuilt for it."""
    from ai_credits import store

    store.reset_clients()
    yield moto_table
    store.reset_clients()


@pytest.fixture
def dynamodb_calls(table: str) -> Iterator[Counter[str]]:
    """Counts DynamoDB requests by operation (a botocore event hook: counts, not timings)."""
    from ai_credits import store

    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    store.client().meta.events.register("before-call.dynamodb", count)
    yield calls
    store.client().meta.events.unregister("before-call.dynamodb", count)


LICENSE_TEMPLATE: dict[str, Any] = {
    "account_id": "acct-1",
    "plan": "single-site",
    "site_limit": 1,
    "credits_per_term": 1000,
    "term_months": 12,
    "term_start": "2026-11-01T00:00:00Z",
    "term_end": "2027-11-01T00:00:00Z",
    "expires_at": "2027-11-01T00:00:00Z",
}


@pytest.fixture
def provision(table: str) -> Callable[..., Answer]:
    """Provision a license through the billing function: ``provision("lic-1", plan=...)``."""

    def _provision(license_id: str, license_key: str | None = None, **fields: Any) -> Answer:
        body = {**LICENSE_TEMPLATE, "license_key": license_key or f"key-{license_id}-secret", **fields}
        return invoke("provision", make_event("provision", body=body, path_license_id=license_id))

    return _provision


@pytest.fixture
def activate(table: str) -> Callable[..., Answer]:
    def _activate(license_key: str, site_url: str, environment: str = "production", **fields: Any) -> Answer:
        body = {"license_key": license_key, "site_url": site_url, "environment": environment, **fields}
        return invoke("activate", make_event("activate", body=body))

    return _activate


@pytest.fixture
def consume(table: str) -> Callable[..., Answer]:
    def _consume(token: str, amount: Any, request_id: str = "req-1", **fields: Any) -> Answer:
        body = {"amount": amount, "request_id": request_id, **fields}
        return invoke("consume", make_event("consume", body=body, token=token))

    return _consume


@pytest.fixture
def balance(table: str) -> Callable[..., Answer]:
    def _balance(token: str, **headers: str) -> Answer:
        return invoke(
            "get_balance", make_event("get_balance", token=token, headers=headers or {"if-none-match": ""})
        )

    return _balance


@pytest.fixture
def deactivate(table: str) -> Callable[[str], Answer]:
    def _deactivate(token: str) -> Answer:
        return invoke("deactivate", make_event("deactivate", token=token))

    return _deactivate


@pytest.fixture
def portal(table: str) -> Callable[..., Answer]:
    """Call a portal route as account ``account``: ``portal("get_credits", "acct-1", "lic-1")``."""

    def _portal(event_name: str, account: str, license_id: str | None = None, body: Any = ...) -> Answer:
        event = make_event(event_name, body=body, path_license_id=license_id)
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = account
        return invoke(event_name, event)

    return _portal


def renew(event: dict[str, Any]) -> dict[str, Any]:
    """Invoke the renew function as EventBridge Scheduler or the Lambda Invoke API does."""
    result: dict[str, Any] = load_function("renew").lambda_handler(event, LambdaContext())
    return result


def sweep_holds(event: dict[str, Any]) -> dict[str, Any]:
    """Invoke the hold sweeper as EventBridge Scheduler or the Lambda Invoke API does."""
    result: dict[str, Any] = load_function(FUNCTION_OF_EVENT["sweep_holds-scheduled"]).lambda_handler(
        event, LambdaContext()
    )
    return result
