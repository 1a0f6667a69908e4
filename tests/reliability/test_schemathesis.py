"""Property-based conformance: schemathesis drives every operation of ``openapi.json`` against the
local gateway (payload 2.0, on DynamoDB Local), valid and invalid inputs, with and without
credentials, and checks each answer against the document.

Checks on every response: no 5xx, a status the operation documents, the documented content type
and headers, the documented body schema; on negative (schema-violating) inputs, a 4xx refusal; and
``ignored_auth``: once an operation answers 2xx with its credentials, the same request without
them and with made-up ones must be refused (401/403).

Credentials come from an auth provider that knows which scheme each operation declares: a portal
JWT for an account that owns a provisioned license, the local admin token, and an activation token
of a site of that license (``DELETE /v1/activations/current`` gets a fresh activation each time,
so the other plugin routes keep a working token). Negative cases may drop or garble the
``Authorization`` header: schemathesis then sends no credentials of ours.

A second pass runs the portal routes on the license the account owns (generated ``license_id``s
almost never exist, so without it ``GET .../credits`` and *Apply* would only ever answer 404).

Besides the generated cases, schemathesis' coverage phase (built at collection) sends boundary
values, missing required parts, other content types and methods the operation does not have.

Bounded: ``MAX_EXAMPLES`` generated cases per operation and pass, derandomized, no shrinking, no
deadline (~700 requests); traffic goes to the gateway on 127.0.0.1 only.

Three findings would fail every run, so their cases are set aside here (counted in ``SKIPPED``)
and each has its own strict xfail in test_hostile_input.py: methods the gateway has no handler
for (501), bodies that are not UTF-8 (500), ``multipart/form-data`` without a boundary (500).
openapi.json's bodies for 204/304 are dropped before loading (xfail at the end of this file).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import CoverageScenario, coverage_scenario
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local.tokens import DEFAULT_ADMIN_TOKEN, DEFAULT_JWT_SECRET, make_portal_token
from tests.integration.client import Api

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.json"
MAX_EXAMPLES = 30

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]

# What the fuzzing works on; fixed at import (the schema's parameters are), provisioned by `world`.
RUN = uuid.uuid4().hex[:10]
ACCOUNT = f"acct-st-{RUN}"
LICENSE_ID = f"lic-st-{RUN}"
LICENSE_KEY = f"key-st-{RUN}-{uuid.uuid4().hex}"


class World:
    """The credentials the auth provider hands out, filled in by the ``world`` fixture."""

    def __init__(self) -> None:
        self.base_url = ""
        self.plugin_token = ""
        self.lock = threading.Lock()
        self.deactivated = 0
        self.provisions = 0
        self.activations = 0
        self.grants = 0
        self.refunds = 0
        self.holds = 0
        self.cases: Counter[str] = Counter()
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.modes: Counter[str] = Counter()


WORLD = World()
SKIPPED: Counter[str] = Counter()
#: The methods local/gateway.py has a do_<METHOD> for; others get http.server's 501.
GATEWAY_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
PLUGIN_TOKEN = "@plugin-token@"
FRESH_TOKEN = "@fresh-staging-token@"


#: Statuses that never carry a body (RFC 9110); openapi.json gives them one, see the xfail below.
BODYLESS = ("204", "304")


def bodyless_with_content(document: dict[str, Any]) -> list[str]:
    """``"METHOD path status"`` of every 204/304 response the document gives a body."""
    return [
        f"{method.upper()} {path} {status}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status in BODYLESS and "content" in response
    ]


def _document() -> dict[str, Any]:
    """openapi.json, minus the body it wrongly documents for 204/304 (reported, xfail below):
    with it, every correct bodiless answer would be a "missing Content-Type" failure."""
    document = json.loads(OPENAPI.read_text())
    for operations in document["paths"].values():
        for operation in operations.values():
            for status in BODYLESS:
                operation["responses"].get(status, {}).pop("content", None)
    return document


def _load(**parameters: Any) -> Any:
    schema = schemathesis.openapi.from_dict(_document())
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
    )
    if parameters:
        schema.config.update(parameters=parameters)
    return schema


schema = _load()
owned = _load(license_id=LICENSE_ID).include(path_regex=r"^/v1/licenses/\{license_id\}/")


@schema.auth(refresh_interval=None)
class _Credentials:
    """The credential the operation's declared security scheme asks for."""

    def get(self, case: Any, ctx: Any) -> str | None:
        security = case.operation.definition.raw.get("security") or []
        scheme = next(iter(security[0]), None) if security else None
        if scheme == "portalJwt":
            return make_portal_token(ACCOUNT, secret=DEFAULT_JWT_SECRET)
        if scheme == "admin":
            return DEFAULT_ADMIN_TOKEN
        if scheme == "activationToken":
            # Cases are also built while pytest collects (coverage phase), before the gateway
            # runs: a placeholder, swapped for a real token just before the call.
            deactivation = (case.operation.method.upper(), case.operation.path) == (
                "DELETE",
                "/v1/activations/current",
            )
            return FRESH_TOKEN if deactivation else PLUGIN_TOKEN
        return None

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


owned.auth(refresh_interval=None)(_Credentials)


def _fresh_staging_token() -> str:
    """A new staging activation of the license (staging sites do not count against site_limit)."""
    with WORLD.lock:
        WORLD.deactivated += 1
        number = WORLD.deactivated
    answer = Api(WORLD.base_url).activate(LICENSE_KEY, f"https://staging.st{number}-{RUN}.com/", "staging")
    assert answer.status == 201, answer.body
    return answer.body["activation_token"]


@pytest.fixture(scope="module")
def world(gateway: str) -> World:
    api = Api(gateway)
    answer = api.provision(
        LICENSE_ID,
        license_key=LICENSE_KEY,
        account_id=ACCOUNT,
        plan="single-site",
        site_limit=20,  # room for the staging sites the deactivation cases activate (10 per live one)
        credits_per_term=1_000_000_000,
        expires_at="2099-01-01T00:00:00Z",
    )
    assert answer.status == 201, answer.body
    activation = api.activate(LICENSE_KEY, f"https://live-{RUN}.example.com/", "production")
    assert activation.status == 201, activation.body
    WORLD.base_url = gateway
    WORLD.plugin_token = activation.body["activation_token"]
    return WORLD


@pytest.fixture(scope="module")
def session() -> Any:
    with requests.Session() as http:
        http.trust_env = False  # never a proxy: the gateway is on 127.0.0.1
        yield http


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _use_the_license_key(case: Any, world: World) -> None:
    """Every other valid activation body names the provisioned license's key.

    A generated key never matches a license, so without this every activation would be a 404
    and the 201/200 bodies would never be checked. Generated sites are staging, development or
    (live) refused with 409: the live site, whose token the other operations use, is not touched.
    """
    if case.operation.path != "/v1/activations" or not isinstance(case.body, dict):
        return
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    with world.lock:
        world.activations += 1
        if world.activations % 2:
            return
    case.body["license_key"] = LICENSE_KEY


def _order_the_term(case: Any, world: World) -> None:
    """Every other valid provisioning body gets a real, ordered term.

    The schema can only say "a string of at most 40 characters" for a timestamp, and cannot say
    that ``term_end`` follows ``term_start``: left alone, no generated license would ever be
    created, and neither the 201/200 bodies nor ``ignored_auth`` on the admin route would be
    checked. The other half keeps the generated strings (they must be 422s, never 5xx).
    """
    if case.operation.path != "/v1/admin/licenses/{license_id}" or not isinstance(case.body, dict):
        return
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    with world.lock:
        world.provisions += 1
        if world.provisions % 2:
            return
    case.body.update(term_start="2026-11-01T00:00:00Z", term_end="2027-11-01T00:00:00Z")
    case.body["expires_at"] = "2027-11-01T00:00:00Z"


def _every_other_positive(case: Any, world: World, path: str, counter: str) -> bool:
    if case.operation.path != path or not isinstance(case.body, dict):
        return False
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return False
    with world.lock:
        setattr(world, counter, getattr(world, counter) + 1)
        return getattr(world, counter) % 2 == 0


def _grant_on_the_license(case: Any, world: World) -> None:
    """Every other valid grant goes to the provisioned license (a generated ``license_id``
    almost never exists), with no generated ``expires_at`` (rarely an RFC 3339 date-time)."""
    if _every_other_positive(case, world, "/v1/admin/licenses/{license_id}/grants", "grants"):
        case.path_parameters = {**(case.path_parameters or {}), "license_id": LICENSE_ID}
        case.body.pop("expires_at", None)


def _refund_a_charge(case: Any, world: World) -> None:
    """Every other valid refund names a consume made for it just before (a generated
    ``request_id`` never names one): the live site spends 2 credits, the refund gives back at
    most that."""
    if not _every_other_positive(case, world, "/v1/admin/licenses/{license_id}/refunds", "refunds"):
        return
    request_id = f"st-refund-{RUN}-{world.refunds}"
    answer = Api(world.base_url).consume(world.plugin_token, 2, request_id)
    assert answer.status == 200, answer.body
    case.path_parameters = {**(case.path_parameters or {}), "license_id": LICENSE_ID}
    case.body.update(site_url=f"https://live-{RUN}.example.com/", request_id=request_id)
    case.body.pop("subsite_url", None)
    if "amount" in case.body:
        case.body["amount"] = 1


def _hold_first(case: Any, world: World) -> None:
    """Every other valid capture, release or read of a hold names one placed just before (a
    generated ``hold_id`` names none): a hold of the most a capture may ask, on the live site."""
    if not case.operation.path.startswith("/v1/holds/{hold_id}"):
        return
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    with world.lock:
        world.holds += 1
        if world.holds % 2:
            return
    hold_id = (case.path_parameters or {}).get("hold_id")
    if isinstance(hold_id, str):
        Api(world.base_url).hold(world.plugin_token, hold_id, 1_000_000)
        case.query = {name: value for name, value in (case.query or {}).items() if name != "subsite_url"}


def _run(case: Any, world: World, session: Any) -> None:
    assert world.base_url.startswith("http://127.0.0.1:")
    if case.method.upper() not in GATEWAY_METHODS:
        # TRACE, QUERY...: the local gateway answers 501 (a finding of its own, see
        # test_hostile_input.py::test_a_method_the_gateway_has_no_handler_for_is_refused_like_any_unrouted_method).
        SKIPPED[f"method {case.method.upper()}"] += 1
        return
    if isinstance(case.body, bytes) and not _is_utf8(case.body):
        # A body that is not UTF-8 reaches the function base64-encoded and crashes it (500): a
        # finding, see test_hostile_input.py::test_a_body_that_is_not_utf8_is_malformed_json.
        SKIPPED["body not UTF-8"] += 1
        return
    if coverage_scenario(case) == CoverageScenario.MALFORMED_CONTENT_TYPE:
        # `Content-Type: multipart/form-data` without a boundary crashes every body route (500): a
        # finding, see test_hostile_input.py::test_multipart_without_boundary_is_a_4xx_and_charges_nothing.
        SKIPPED["multipart/form-data without boundary"] += 1
        return
    _order_the_term(case, world)
    _use_the_license_key(case, world)
    _grant_on_the_license(case, world)
    _refund_a_charge(case, world)
    _hold_first(case, world)
    authorization = (case.headers or {}).get("Authorization", "")
    if authorization.endswith(PLUGIN_TOKEN):
        case.headers["Authorization"] = f"Bearer {world.plugin_token}"
    elif authorization.endswith(FRESH_TOKEN):
        case.headers["Authorization"] = f"Bearer {_fresh_staging_token()}"
    response = case.call_and_validate(base_url=world.base_url, session=session, checks=CHECKS)
    label = f"{case.method.upper()} {case.operation.path}"
    with world.lock:
        world.cases[label] += 1
        world.statuses[label][response.status_code] += 1
        world.modes[case.meta.generation.mode.value if case.meta else "explicit"] += 1


FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case: Any, world: World, session: Any) -> None:
    _run(case, world, session)


@owned.parametrize()
@FUZZ
def test_portal_operations_on_an_owned_license_conform(case: Any, world: World, session: Any) -> None:
    _run(case, world, session)


def test_the_fuzzing_reached_every_operation_and_both_sides_of_auth(world: World) -> None:
    """Not vacuous: every operation was called, secured ones both with and without valid
    credentials, and every operation got at least one 2xx whose body was checked."""
    if not world.cases:
        pytest.skip("run with the schemathesis tests above (they record what they exercised)")
    document = json.loads(OPENAPI.read_text())
    operations = {
        f"{method.upper()} {path}": operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    summary = {label: dict(sorted(world.statuses[label].items())) for label in operations}
    print(f"\nschemathesis: {sum(world.cases.values())} cases, {dict(world.modes)}, skipped {dict(SKIPPED)}")
    for label, statuses in summary.items():
        print(f"  {label}: {world.cases[label]} cases, statuses {statuses}")
    for label, operation in operations.items():
        statuses = world.statuses[label]
        assert world.cases[label] >= MAX_EXAMPLES, (label, world.cases[label])
        assert any(200 <= status < 300 for status in statuses), (label, statuses)
        assert any(400 <= status < 500 for status in statuses), (label, statuses)
        if operation["security"]:
            assert statuses[401] > 0, (label, statuses)
    assert world.modes["positive"] > 0 and world.modes["negative"] > 0
    # Methods the operations do not have were tried as well (the coverage phase).
    assert sum(count for label, count in world.cases.items() if label not in operations) > 0


def test_bodyless_statuses_are_documented_without_a_body() -> None:
    assert bodyless_with_content(json.loads(OPENAPI.read_text())) == []
