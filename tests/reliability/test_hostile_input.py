"""Hostile input, by hand, over HTTP through the local gateway on DynamoDB Local.

Each case gets the contract's answer (API.md, "Errors": status, ``code``, problem+json) and writes
nothing: every item of the licenses involved (license, sites, ledger, key item; all attributes) is
read before and after the request and must be identical, and so must the number of items in the
whole table. That is stronger than "the balance did not move": a token rotation, a version bump,
a ledger entry, or a license or key item created by a refused request all show.

Cases: bodies of several MB (and over API Gateway's 10 MB limit), deeply nested JSON, unicode and
punycode hosts, 10,000 sites in one Apply, negative/float/bool/string/huge amounts, ``NaN`` and
``Infinity``, duplicate JSON keys, wrong content types, a ``request_id`` of 129 characters, portal
JWTs with ``alg: none``/expired/forged, another account's license id, a deactivated site's token,
a forged activation token, bodies that are not UTF-8, and methods the gateway does not route.

Findings (bugs) are ``xfail(strict=True)`` with the reason: they pass once the bug is fixed, and
then the marker must go.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.integration.client import Answer, Api, unique

PROBLEM_JSON = "application/problem+json"
MB = 1_000_000


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(gateway: str) -> Api:
    return Api(gateway)


#: The licenses whose every item is compared before and after a refused request (the module's
#: shared license, and the current test's own one).
WATCHED: dict[str, Licensed] = {}
_COUNT_CHECKED: list[bool] = []


@pytest.fixture
def nothing_written(ddb_local_env: str) -> Callable[[], Any]:
    """``with nothing_written(): <request>`` fails if the request wrote anything.

    Compared before and after: every item (all attributes) of the watched licenses' partitions
    (license, sites, ledger) and their key items, and the number of items in the whole table
    (DynamoDB Local's DescribeTable count is exact and immediate, checked against a COUNT Scan
    here), so an item added or removed anywhere shows too. (A full Scan of a table other suites
    have filled costs seconds per request.)
    """
    from ai_credits import store
    from ai_credits.credentials import hash_license_key

    client = store.client()

    def count() -> int:
        return int(client.describe_table(TableName=ddb_local_env)["Table"]["ItemCount"])

    def scanned_count() -> int:
        kwargs: dict[str, Any] = {"TableName": ddb_local_env, "Select": "COUNT", "ConsistentRead": True}
        total = 0
        while True:
            page = client.scan(**kwargs)
            total += page["Count"]
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    if not _COUNT_CHECKED:  # once per module: a COUNT Scan costs what a full one would
        assert count() == scanned_count(), "DescribeTable's ItemCount is not live here: cannot detect writes"
        _COUNT_CHECKED.append(True)

    def snapshot() -> tuple[int, dict[tuple[str, str], Any]]:
        items: dict[tuple[str, str], Any] = {}
        for license_ in WATCHED.values():
            for pk in (f"LICENSE#{license_.license_id}", f"LEDGER#{license_.license_id}"):
                kwargs: dict[str, Any] = {
                    "TableName": ddb_local_env,
                    "KeyConditionExpression": "pk = :pk",
                    "ExpressionAttributeValues": {":pk": {"S": pk}},
                    "ConsistentRead": True,
                }
                while True:
                    page = client.query(**kwargs)
                    items.update({(item["pk"]["S"], item["sk"]["S"]): item for item in page["Items"]})
                    if "LastEvaluatedKey" not in page:
                        break
                    kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            key = {"pk": {"S": f"KEY#{hash_license_key(license_.license_key)}"}, "sk": {"S": "KEY"}}
            item = client.get_item(TableName=ddb_local_env, Key=key, ConsistentRead=True).get("Item")
            items[(key["pk"]["S"], "KEY")] = item
        return count(), items

    @contextmanager
    def check() -> Iterator[None]:
        assert WATCHED, "no license is watched"
        before_count, before = snapshot()
        assert len(before) >= 3  # at least: the license, its live site, its key item
        yield
        after_count, after = snapshot()
        changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
        assert (after_count - before_count, changed) == (0, []), "a refused request wrote to the table"

    return check


@dataclass
class Licensed:
    """A single-site license with one live site: 1000 credits, all allocated to that site."""

    license_id: str
    license_key: str
    account: str
    portal: str  # the account's portal JWT
    site: str
    token: str


def _new_license(api: Api, portal_token: Callable[..., str]) -> Licensed:
    license_id = unique("hostile")
    key = f"key-{license_id}-{uuid.uuid4().hex}"
    account = unique("acct-hostile")
    assert api.provision(license_id, license_key=key, account_id=account).status == 201
    activation = api.activate(key, f"https://www.{unique('live')}.com/")
    assert activation.status == 201, activation.body
    return Licensed(
        license_id,
        key,
        account,
        portal_token(account),
        activation.body["site"],
        activation.body["activation_token"],
    )


@pytest.fixture(scope="module")
def licensed(api: Api, portal_token: Callable[..., str]) -> Iterator[Licensed]:
    """Shared by the tests whose requests must all be refused (they check that nothing changed)."""
    shared = _new_license(api, portal_token)
    WATCHED[shared.license_id] = shared
    yield shared
    WATCHED.pop(shared.license_id, None)


@pytest.fixture
def fresh(api: Api, portal_token: Callable[..., str], licensed: Licensed) -> Iterator[Licensed]:
    """A license of its own, for a test that changes it (or may, while a bug is open)."""
    own = _new_license(api, portal_token)
    WATCHED[own.license_id] = own
    yield own
    WATCHED.pop(own.license_id, None)


def test_the_write_detector_sees_a_charge_a_rotation_and_a_new_license(
    api: Api, fresh: Licensed, nothing_written: Any
) -> None:
    """The check every other test relies on is not vacuous."""
    with pytest.raises(AssertionError, match="wrote to the table"), nothing_written():
        assert api.consume(fresh.token, 1).status == 200
    with pytest.raises(AssertionError, match="wrote to the table"), nothing_written():
        assert api.activate(fresh.license_key, fresh.site).status == 200  # only the token hash changes
    with pytest.raises(AssertionError, match="wrote to the table"), nothing_written():
        assert api.provision(unique("detector")).status == 201  # items outside the watched licenses


def is_problem(answer: Answer, status: int, code: str) -> None:
    """The contract's error shape: problem+json with the standard members and the code."""
    assert (answer.status, answer.code) == (status, code), (answer.status, answer.body)
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert {"type", "title", "status", "detail", "code"} <= set(answer.body)
    assert answer.body["status"] == status


def send(
    base_url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    """One raw request: exactly these headers (no default Content-Type), this body."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    content_type = response.getheader("content-type", "")
    parsed: Any = data.decode("utf-8", "replace") or None
    if data and "json" in content_type:
        parsed = json.loads(data)
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)


def consume_body(amount: Any = 1, request_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"amount": amount, "request_id": request_id or uuid.uuid4().hex, **fields}


def provision_body(license_key: str, **fields: Any) -> dict[str, Any]:
    return {
        "license_key": license_key,
        "account_id": "acct-hostile",
        "plan": "single-site",
        "site_limit": 1,
        "credits_per_term": 1000,
        "term_start": "2026-11-01T00:00:00Z",
        "term_end": "2027-11-01T00:00:00Z",
        "expires_at": "2027-11-01T00:00:00Z",
        **fields,
    }


def alg_none_jwt(claims: dict[str, Any], alg: str = "none") -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(claims)}."


# --------------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------------


def test_a_body_over_api_gateways_10_mb_limit_is_413_and_charges_nothing(
    gateway: str, licensed: Licensed, nothing_written: Any
) -> None:
    body = json.dumps(consume_body(1, padding="x" * (11 * MB))).encode()
    with nothing_written():
        answer = send(
            gateway,
            "POST",
            "/v1/consume",
            body,
            {"Content-Type": "application/json", "Authorization": f"Bearer {licensed.token}"},
        )
    is_problem(answer, 413, "payload_too_large")


def _big_cases(licensed: Licensed) -> list[tuple[str, str, Any, int, str]]:
    """(method, path, body, status, code) of ~5 MB bodies that the contract refuses."""
    credits = f"/v1/licenses/{licensed.license_id}/allocations"
    return [
        # 5 MB that is not JSON at all.
        ("POST", "/v1/consume", b"{" + b"x" * (5 * MB), 400, "malformed_json"),
        # 5 MB of JSON of the wrong shape.
        ("POST", "/v1/consume", json.dumps([1] * (5 * MB // 3 + 10)).encode(), 422, "validation_error"),
        # A 5 MB string where at most 64 characters are allowed.
        ("POST", "/v1/consume", consume_body(1, feature="f" * (5 * MB)), 422, "validation_error"),
        ("POST", "/v1/activations", {"license_key": "k" * (5 * MB), "site_url": "a.com", "environment": "production"}, 422, "validation_error"),
        ("POST", "/v1/activations", {"license_key": licensed.license_key, "site_url": "a" * (5 * MB), "environment": "production"}, 422, "validation_error"),
        # One 5 MB site URL as an allocation key.
        ("PUT", credits, {"allocations": {"s" * (5 * MB) + ".com": 1}}, 422, "validation_error"),
        ("PUT", f"/v1/admin/licenses/{unique('big')}", provision_body("k" * (5 * MB)), 422, "validation_error"),
    ]  # fmt: skip


BIG = ["not-json", "json-array", "feature", "license-key", "site-url", "allocation-key", "provision-key"]


@pytest.mark.parametrize("index", range(len(BIG)), ids=BIG)
def test_bodies_of_several_mb_are_refused_by_the_function_and_write_nothing(
    gateway: str, licensed: Licensed, admin_headers: dict[str, str], nothing_written: Any, index: int
) -> None:
    method, path, body, status, code = _big_cases(licensed)[index]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert len(raw) >= 5 * MB
    headers = {"Content-Type": "application/json"}
    if path.startswith("/v1/admin/"):
        headers.update(admin_headers)
    elif path.startswith("/v1/licenses/"):
        headers["Authorization"] = f"Bearer {licensed.portal}"
    elif path == "/v1/consume":
        headers["Authorization"] = f"Bearer {licensed.token}"
    with nothing_written():
        answer = send(gateway, method, path, raw, headers)
    is_problem(answer, status, code)


# --------------------------------------------------------------------------------------------------
# Deep nesting
# --------------------------------------------------------------------------------------------------

DEEP = 100_000


@pytest.mark.parametrize(
    "raw",
    [
        "[" * DEEP,
        "[" * DEEP + "]" * DEEP,
        '{"amount": 1, "request_id": "deep", "feature": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}",
        '{"amount": ' + "[" * DEEP + "1" + "]" * DEEP + ', "request_id": "deep"}',
        # In a member the model ignores: still parsed, still refused.
        '{"amount": 1, "request_id": "deep", "extra": ' + "[" * DEEP + "]" * DEEP + "}",
    ],
    ids=[
        "open-brackets",
        "closed-brackets",
        "nested-objects-in-feature",
        "nested-amount",
        "nested-unknown-member",
    ],
)
def test_deeply_nested_json_is_malformed_json_on_consume(
    api: Api, licensed: Licensed, nothing_written: Any, raw: str
) -> None:
    with nothing_written():
        answer = api.call("POST", "/v1/consume", raw=raw, token=licensed.token)
    is_problem(answer, 400, "malformed_json")


def test_deeply_nested_json_is_malformed_json_on_every_body_route(
    api: Api, licensed: Licensed, admin_headers: dict[str, str], nothing_written: Any
) -> None:
    raw = "[" * DEEP + "]" * DEEP
    with nothing_written():
        answers = [
            api.call("POST", "/v1/activations", raw=raw),
            api.call(
                "PUT", f"/v1/licenses/{licensed.license_id}/allocations", raw=raw, token=licensed.portal
            ),
            api.call("PUT", f"/v1/admin/licenses/{unique('deep')}", raw=raw, headers=admin_headers),
        ]
    for answer in answers:
        is_problem(answer, 400, "malformed_json")


# --------------------------------------------------------------------------------------------------
# Unicode and punycode hosts
# --------------------------------------------------------------------------------------------------


def test_a_unicode_host_and_its_punycode_are_one_site(
    api: Api, fresh: Licensed, nothing_written: Any
) -> None:
    first = api.activate(fresh.license_key, "https://bücher.example/", "production")
    assert first.status == 201, first.body
    assert first.body["site"] == "xn--bcher-kva.example"
    assert first.body["environment"] == "development"  # .example is a local name

    for spelling in ("xn--bcher-kva.example", "HTTPS://WWW.BÜCHER.EXAMPLE./", "bücher。example"):
        again = api.activate(fresh.license_key, spelling, "production")
        assert (again.status, again.body["site"]) == (200, "xn--bcher-kva.example"), again.body
    # Each activation rotated the token: only the last one works.
    is_problem(api.balance(first.body["activation_token"]), 401, "unauthorized")
    assert api.balance(again.body["activation_token"]).status == 200

    view = api.credits(fresh.portal, fresh.license_id).body
    assert [site["site"] for site in view["sites"]] == sorted([fresh.site, "xn--bcher-kva.example"])

    # Apply names the site in either spelling; both at once is the same site twice.
    moved = api.apply(fresh.portal, fresh.license_id, {fresh.site: 900, "bücher.example": 100})
    assert moved.status == 200, moved.body
    by_site = {site["site"]: site["allocated"] for site in moved.body["sites"]}
    assert by_site == {fresh.site: 900, "xn--bcher-kva.example": 100}
    with nothing_written():
        twice = api.apply(fresh.portal, fresh.license_id, {"bücher.example": 50, "xn--bcher-kva.example": 50})
    is_problem(twice, 422, "validation_error")


def test_a_unicode_live_host_counts_once_against_the_site_limit(
    api: Api, licensed: Licensed, portal_token: Callable[..., str]
) -> None:
    license_id = unique("idn")
    key = f"key-{license_id}"
    assert api.provision(license_id, license_key=key).status == 201
    name = f"bücher-{uuid.uuid4().hex[:8]}.de"
    first = api.activate(key, f"https://{name}/")
    assert (first.status, first.body["environment"]) == (201, "live"), first.body
    punycode = first.body["site"]
    assert punycode.startswith("xn--") and punycode.endswith(".de")
    # The punycode spelling is the same (live) site, not a second live activation.
    again = api.activate(key, f"http://{punycode}:80")
    assert (again.status, again.body["site"]) == (200, punycode), again.body
    is_problem(api.activate(key, "https://other-live-site.de/"), 409, "activation_limit_reached")


@pytest.mark.parametrize(
    "site_url",
    [
        "https://bü cher.example/",  # a space inside the host
        "https://bücher..example/",  # an empty label
        "https://-bucher.example/",  # a leading hyphen
        "https://" + "ü" * 64 + ".example/",  # a label over 63 characters once encoded
        "https://b\u200bücher.example/",  # a zero-width space
        "https://bücher\u0000.example/",  # NUL
        "https://b\udcfccher.example/",  # a lone surrogate
        "https://xn--.example/",  # an empty punycode label
        "ftp://bücher.example/",  # another scheme
        "https://user@bücher.example/",  # user info
    ],
)
def test_a_malformed_unicode_host_is_a_422_and_writes_nothing(
    api: Api, licensed: Licensed, nothing_written: Any, site_url: str
) -> None:
    body = json.dumps(
        {"license_key": licensed.license_key, "site_url": site_url, "environment": "production"}
    )
    with nothing_written():
        answer = api.call("POST", "/v1/activations", raw=body)
        applied = api.call(
            "PUT",
            f"/v1/licenses/{licensed.license_id}/allocations",
            raw=json.dumps({"allocations": {site_url: 1}}),
            token=licensed.portal,
        )
    is_problem(answer, 422, "validation_error")
    assert answer.body["errors"][0]["loc"] == ["body", "site_url"]
    is_problem(applied, 422, "validation_error")


@pytest.mark.parametrize("site_url", ["https://-bücher.example/", "https://bücher-.example/"])
def test_a_unicode_label_with_a_leading_or_trailing_hyphen_is_a_422(
    api: Api, fresh: Licensed, nothing_written: Any, site_url: str
) -> None:
    with nothing_written():
        answer = api.activate(fresh.license_key, site_url, "staging")
    is_problem(answer, 422, "validation_error")


def test_sharp_s_is_punycoded_not_mapped_to_ss(api: Api, fresh: Licensed) -> None:
    """faß.de and fass.de are two registered domains: the site key is the one browsers and
    WordPress use (WHATWG URL, UTS #46 non-transitional), not IDNA 2003's mapping to ss."""
    answer = api.activate(fresh.license_key, "https://faß.example/", "staging")
    assert answer.status == 201, answer.body
    assert answer.body["site"] == "xn--fa-hia.example"
    other = api.activate(fresh.license_key, "https://fass.example/", "staging")
    assert (other.status, other.body["site"]) == (201, "fass.example"), other.body


# --------------------------------------------------------------------------------------------------
# Apply: 10,000 sites
# --------------------------------------------------------------------------------------------------


def test_ten_thousand_sites_in_one_apply_are_a_422_and_write_nothing(
    api: Api, licensed: Licensed, nothing_written: Any
) -> None:
    allocations = {f"site-{index}.example.com": 0 for index in range(10_000)}
    allocations[licensed.site] = 10
    with nothing_written():
        answer = api.apply(licensed.portal, licensed.license_id, allocations)
    is_problem(answer, 422, "validation_error")
    view = api.credits(licensed.portal, licensed.license_id).body
    assert (view["allocated"], view["unallocated"]) == (1000, 0)


def test_an_apply_naming_one_unknown_site_writes_nothing_for_the_others(
    api: Api, licensed: Licensed, nothing_written: Any
) -> None:
    with nothing_written():
        answer = api.apply(
            licensed.portal, licensed.license_id, {licensed.site: 10, "not-activated.example.com": 0}
        )
    is_problem(answer, 404, "not_found")


# --------------------------------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------------------------------

BAD_AMOUNTS = [
    -1,
    0,
    -0.0,
    1.5,
    1.0,
    5e0,
    True,
    False,
    "5",
    "",
    None,
    [5],
    {"value": 5},
    1_000_001,
    2**63,
    10**30,
    -(10**30),
]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
def test_a_consume_amount_that_is_not_an_integer_in_range_is_a_422(
    api: Api, licensed: Licensed, nothing_written: Any, amount: Any
) -> None:
    with nothing_written():
        answer = api.consume(licensed.token, amount)
    is_problem(answer, 422, "validation_error")
    assert answer.body["errors"][0]["loc"] == ["body", "amount"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "nan", "+1", "01", "0x10", "1_000"])
def test_number_literals_that_are_not_json_are_malformed_json(
    api: Api, licensed: Licensed, nothing_written: Any, literal: str
) -> None:
    raw = f'{{"amount": {literal}, "request_id": "{uuid.uuid4().hex}"}}'
    with nothing_written():
        answer = api.call("POST", "/v1/consume", raw=raw, token=licensed.token)
    is_problem(answer, 400, "malformed_json")


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1e2", "1E0", "1.0e0", "9" * 400, "-" + "9" * 400])
def test_json_numbers_that_are_not_amounts_are_a_422(
    api: Api, licensed: Licensed, nothing_written: Any, literal: str
) -> None:
    """Valid JSON numbers (1e400 is one: Python reads it as inf), but not an integer in range."""
    raw = f'{{"amount": {literal}, "request_id": "{uuid.uuid4().hex}"}}'
    with nothing_written():
        answer = api.call("POST", "/v1/consume", raw=raw, token=licensed.token)
    is_problem(answer, 422, "validation_error")


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_of_5000_digits_is_an_out_of_range_amount(
    api: Api, licensed: Licensed, nothing_written: Any, sign: str
) -> None:
    """Valid JSON longer than Python's int-string limit (4,300 digits): a 422 like any other
    out-of-range amount, not a 400 "not JSON"."""
    raw = f'{{"amount": {sign}{"9" * 5000}, "request_id": "{uuid.uuid4().hex}"}}'
    with nothing_written():
        answer = api.call("POST", "/v1/consume", raw=raw, token=licensed.token)
    is_problem(answer, 422, "validation_error")


@pytest.mark.parametrize(
    "allocation", [-1, 1.5, 1.0, True, "5", None, 1_000_000_001, 2**63, 10**30], ids=repr
)
def test_an_allocation_that_is_not_an_integer_in_range_is_a_422(
    api: Api, licensed: Licensed, nothing_written: Any, allocation: Any
) -> None:
    with nothing_written():
        answer = api.apply(licensed.portal, licensed.license_id, {licensed.site: allocation})
    is_problem(answer, 422, "validation_error")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_allocations_are_malformed_json(
    api: Api, licensed: Licensed, nothing_written: Any, literal: str
) -> None:
    raw = f'{{"allocations": {{"{licensed.site}": {literal}}}}}'
    with nothing_written():
        answer = api.call(
            "PUT", f"/v1/licenses/{licensed.license_id}/allocations", raw=raw, token=licensed.portal
        )
    is_problem(answer, 400, "malformed_json")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("credits_per_term", -1),
        ("credits_per_term", 1.5),
        ("credits_per_term", True),
        ("credits_per_term", "1000"),
        ("credits_per_term", 1_000_000_001),
        ("credits_per_term", 10**30),
        ("site_limit", 0),
        ("site_limit", 1.0),
        ("site_limit", False),
        ("term_months", 0),
        ("term_months", "12"),
    ],
    ids=repr,
)
def test_a_provisioning_amount_out_of_range_is_a_422_and_creates_nothing(
    api: Api, admin_headers: dict[str, str], nothing_written: Any, field: str, value: Any
) -> None:
    license_id = unique("amount")
    body = provision_body(f"key-{license_id}", **{field: value})
    with nothing_written():
        answer = api.call("PUT", f"/v1/admin/licenses/{license_id}", body, headers=admin_headers)
    is_problem(answer, 422, "validation_error")


def test_nan_credits_per_term_is_malformed_json(
    api: Api, admin_headers: dict[str, str], nothing_written: Any
) -> None:
    license_id = unique("nan")
    raw = json.dumps(provision_body(f"key-{license_id}")).replace(
        '"credits_per_term": 1000', '"credits_per_term": NaN'
    )
    assert "NaN" in raw
    with nothing_written():
        answer = api.call("PUT", f"/v1/admin/licenses/{license_id}", raw=raw, headers=admin_headers)
    is_problem(answer, 400, "malformed_json")


# --------------------------------------------------------------------------------------------------
# Duplicate keys
# --------------------------------------------------------------------------------------------------


def test_duplicate_json_keys_are_malformed_json_everywhere(
    api: Api, licensed: Licensed, admin_headers: dict[str, str], nothing_written: Any
) -> None:
    """Two readers of one body must never see two different requests: refused, not "last wins"."""
    request_id = uuid.uuid4().hex
    license_id = unique("dup")
    provision = json.dumps(provision_body(f"key-{license_id}"))[:-1] + ', "credits_per_term": 5}'
    with nothing_written():
        answers = [
            api.call("POST", "/v1/consume", raw=f'{{"amount": 1, "amount": 1000, "request_id": "{request_id}"}}', token=licensed.token),
            api.call("POST", "/v1/consume", raw=f'{{"amount": 1, "request_id": "{request_id}", "request_id": "other"}}', token=licensed.token),
            api.call("POST", "/v1/activations", raw=json.dumps({"license_key": licensed.license_key, "site_url": "dup.example.com", "environment": "production"})[:-1] + ', "site_url": "other.example.com"}'),
            api.call("PUT", f"/v1/licenses/{licensed.license_id}/allocations", raw=f'{{"allocations": {{"{licensed.site}": 1, "{licensed.site}": 2}}}}', token=licensed.portal),
            api.call("PUT", f"/v1/admin/licenses/{license_id}", raw=provision, headers=admin_headers),
        ]  # fmt: skip
    for answer in answers:
        is_problem(answer, 400, "malformed_json")


# --------------------------------------------------------------------------------------------------
# Content types
# --------------------------------------------------------------------------------------------------

# The API takes application/json only (any case, parameters allowed, +json suffixes too): any
# other media type is a 415 problem+json (unsupported_media_type) before the body is parsed; a
# body without a Content-Type is read as JSON.
UNSUPPORTED = [
    "text/plain",
    "application/xml",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]


@pytest.mark.parametrize("content_type", UNSUPPORTED)
def test_a_consume_in_a_wrong_content_type_is_a_4xx_and_charges_nothing(
    gateway: str, licensed: Licensed, nothing_written: Any, content_type: str
) -> None:
    body = json.dumps(consume_body(1)).encode()
    with nothing_written():
        answer = send(
            gateway,
            "POST",
            "/v1/consume",
            body,
            {"Content-Type": content_type, "Authorization": f"Bearer {licensed.token}"},
        )
    assert 400 <= answer.status < 500, (answer.status, answer.body)


def test_a_form_encoded_consume_is_a_415(gateway: str, licensed: Licensed, nothing_written: Any) -> None:
    with nothing_written():
        answer = send(
            gateway,
            "POST",
            "/v1/consume",
            b"amount=1&request_id=form-1",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": f"Bearer {licensed.token}",
            },
        )
    is_problem(answer, 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "text/json"])
def test_a_consume_in_an_unsupported_content_type_is_a_problem(
    gateway: str, licensed: Licensed, content_type: str
) -> None:
    answer = send(
        gateway,
        "POST",
        "/v1/consume",
        json.dumps(consume_body(1)).encode(),
        {"Content-Type": content_type, "Authorization": f"Bearer {licensed.token}"},
    )
    assert 400 <= answer.status < 500
    assert answer.headers["content-type"] == PROBLEM_JSON, answer.body
    assert {"type", "title", "status", "detail", "code"} <= set(answer.body)


def test_an_upper_case_json_media_type_is_json(gateway: str, fresh: Licensed) -> None:
    answer = send(
        gateway,
        "POST",
        "/v1/consume",
        json.dumps(consume_body(1, "upper-case-1")).encode(),
        {"Content-Type": "APPLICATION/JSON", "Authorization": f"Bearer {fresh.token}"},
    )
    assert answer.status == 200 or answer.headers.get("content-type") == PROBLEM_JSON, answer.body


def test_a_consume_without_content_type_is_read_as_json(gateway: str, fresh: Licensed) -> None:
    """A decision, not an accident: plugins built on wp_remote_post often send no Content-Type,
    so a body without one is read as JSON (any other media type is a 415)."""
    answer = send(
        gateway,
        "POST",
        "/v1/consume",
        json.dumps(consume_body(1)).encode(),
        {"Authorization": f"Bearer {fresh.token}"},
    )
    assert answer.status == 200
    assert answer.body["consumed"] == 1


BODY_ROUTES = [
    "POST /v1/consume",
    "POST /v1/activations",
    "PUT /v1/licenses/{id}/allocations",
    "PUT /v1/admin/licenses/{id}",
]


def _body_route(
    route: str, licensed: Licensed, admin_headers: dict[str, str]
) -> tuple[str, str, dict[str, str]]:
    method, path = route.split(" ")
    if path == "/v1/consume":
        return method, path, {"Authorization": f"Bearer {licensed.token}"}
    if path.startswith("/v1/licenses/"):
        return (
            method,
            path.replace("{id}", licensed.license_id),
            {"Authorization": f"Bearer {licensed.portal}"},
        )
    if path.startswith("/v1/admin/"):
        return method, path.replace("{id}", unique("ct")), dict(admin_headers)
    return method, path, {}


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_multipart_without_boundary_is_a_4xx_and_charges_nothing(
    gateway: str, licensed: Licensed, admin_headers: dict[str, str], nothing_written: Any, route: str
) -> None:
    method, path, headers = _body_route(route, licensed, admin_headers)
    with nothing_written():
        answer = send(
            gateway, method, path, b'{"amount": 1}', {**headers, "Content-Type": "multipart/form-data"}
        )
    assert 400 <= answer.status < 500, (answer.status, answer.body)
    assert answer.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_a_body_that_is_not_utf8_is_malformed_json(
    gateway: str, licensed: Licensed, admin_headers: dict[str, str], nothing_written: Any, route: str
) -> None:
    method, path, headers = _body_route(route, licensed, admin_headers)
    with nothing_written():
        answer = send(
            gateway,
            method,
            path,
            b'{"amount": 1, "request_id": "\xff\xfe"}',
            {**headers, "Content-Type": "application/json"},
        )
    is_problem(answer, 400, "malformed_json")


# --------------------------------------------------------------------------------------------------
# request_id
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    ["r" * 129, "", "has space", "slash/inside", "ünïcode", "new\nline", "a" * 10_000, "semi;colon"],
    ids=["129-chars", "empty", "space", "slash", "unicode", "newline", "10k-chars", "semicolon"],
)
def test_a_request_id_outside_the_contract_is_a_422(
    api: Api, licensed: Licensed, nothing_written: Any, request_id: str
) -> None:
    with nothing_written():
        answer = api.call(
            "POST", "/v1/consume", {"amount": 1, "request_id": request_id}, token=licensed.token
        )
    is_problem(answer, 422, "validation_error")
    assert answer.body["errors"][0]["loc"] == ["body", "request_id"]


def test_a_request_id_of_128_characters_is_accepted_exactly_once(api: Api, fresh: Licensed) -> None:
    request_id = ("A-z0.9_:" * 16)[:128]
    first = api.consume(fresh.token, 3, request_id)
    assert first.status == 200, first.body
    assert api.consume(fresh.token, 3, request_id).body == {**first.body, "replayed": True}
    assert api.balance(fresh.token).body["site"]["used"] == 3


def test_a_request_id_of_another_type_is_a_422(api: Api, licensed: Licensed, nothing_written: Any) -> None:
    with nothing_written():
        answers = [
            api.call("POST", "/v1/consume", {"amount": 1, "request_id": value}, token=licensed.token)
            for value in (12345, None, ["a"], {"id": "a"}, True)
        ]
        answers.append(api.call("POST", "/v1/consume", {"amount": 1}, token=licensed.token))
    for answer in answers:
        is_problem(answer, 422, "validation_error")


# --------------------------------------------------------------------------------------------------
# Portal JWTs
# --------------------------------------------------------------------------------------------------


def _bad_jwts(account: str, portal_token: Callable[..., str]) -> dict[str, str]:
    import jwt

    now = int(time.time())
    claims = {"sub": account, "iat": now, "exp": now + 3600}
    valid = portal_token(account)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT: the local secret is short for HS512 (that's the point)
        hs512 = jwt.encode(claims, "local-dev-secret-not-for-production", algorithm="HS512")
    return {
        "alg-none": alg_none_jwt(claims),
        "alg-None": alg_none_jwt(claims, "None"),
        "alg-none-with-signature": alg_none_jwt(claims) + valid.rsplit(".", 1)[1],
        "alg-none-header-on-valid-token": alg_none_jwt({"alg": "none"}).split(".")[0] + "." + valid.split(".", 1)[1],
        "expired": portal_token(account, iat=now - 7200, exp=now - 3600),
        "expired-by-a-second": portal_token(account, exp=now - 1),
        "not-yet-valid": portal_token(account, nbf=now + 3600),
        "issued-in-the-future": portal_token(account, iat=now + 3600, exp=now + 7200),
        "wrong-secret": jwt.encode(claims, "not-the-local-secret-at-all-0123456789", algorithm="HS256"),
        "hs512": hs512,
        "no-exp": jwt.encode({"sub": account}, "local-dev-secret-not-for-production", algorithm="HS256"),
        "no-sub": jwt.encode({"exp": now + 3600}, "local-dev-secret-not-for-production", algorithm="HS256"),
        "empty-sub": portal_token(""),
        "tampered-sub": valid.split(".")[0] + "." + alg_none_jwt({**claims, "sub": "acct-other"}).split(".")[1] + "." + valid.split(".")[2],
        "not-a-jwt": "definitely-not-a-jwt",
        "admin-token": "local-admin-token",
    }  # fmt: skip


BAD_JWT_NAMES = list(_bad_jwts("a", lambda sub, **claims: "x.y.z"))


@pytest.mark.parametrize("name", BAD_JWT_NAMES)
def test_a_bad_portal_jwt_is_401_on_every_portal_route_and_writes_nothing(
    api: Api, licensed: Licensed, portal_token: Callable[..., str], nothing_written: Any, name: str
) -> None:
    token = _bad_jwts(licensed.account, portal_token)[name]
    with nothing_written():
        answers = [
            api.licenses(token),
            api.credits(token, licensed.license_id),
            api.apply(token, licensed.license_id, {licensed.site: 10}),
        ]
    for answer in answers:
        is_problem(answer, 401, "unauthorized")
        assert answer.headers.get("www-authenticate") == "Bearer"


def test_a_portal_jwt_is_not_an_admin_credential(api: Api, licensed: Licensed, nothing_written: Any) -> None:
    license_id = unique("jwt-admin")
    with nothing_written():
        answer = api.call(
            "PUT",
            f"/v1/admin/licenses/{license_id}",
            provision_body(f"key-{license_id}"),
            token=licensed.portal,
        )
        none = api.call(
            "PUT",
            f"/v1/admin/licenses/{license_id}",
            provision_body(f"key-{license_id}"),
            token=alg_none_jwt({"sub": "local-admin", "exp": int(time.time()) + 60}),
        )
    is_problem(answer, 401, "unauthorized")
    is_problem(none, 401, "unauthorized")


# --------------------------------------------------------------------------------------------------
# Another account's license, a deactivated site, forged activation tokens
# --------------------------------------------------------------------------------------------------


def test_another_accounts_license_answers_like_one_that_does_not_exist(
    api: Api, licensed: Licensed, portal_token: Callable[..., str], nothing_written: Any
) -> None:
    intruder = portal_token(unique("acct-intruder"))
    missing = unique("missing")

    def shape(answer: Answer) -> tuple[Any, ...]:
        return (
            answer.status,
            answer.headers["content-type"],
            answer.body["type"],
            answer.body["title"],
            answer.code,
        )

    with nothing_written():
        theirs = api.credits(intruder, licensed.license_id)
        nobody = api.credits(intruder, missing)
        apply_theirs = api.apply(intruder, licensed.license_id, {licensed.site: 0})
        apply_nobody = api.apply(intruder, missing, {licensed.site: 0})
    is_problem(theirs, 404, "not_found")
    assert shape(theirs) == shape(nobody)
    assert theirs.body["detail"].replace(licensed.license_id, "<id>") == nobody.body["detail"].replace(
        missing, "<id>"
    )
    is_problem(apply_theirs, 404, "not_found")
    assert shape(apply_theirs) == shape(apply_nobody)
    listed = api.licenses(intruder)
    assert listed.status == 200 and listed.body == {"licenses": []}


def test_a_deactivated_sites_token_is_401_everywhere_and_charges_nothing(
    api: Api, fresh: Licensed, nothing_written: Any
) -> None:
    assert api.deactivate(fresh.token).status == 204
    with nothing_written():
        answers = [
            api.consume(fresh.token, 1),
            api.balance(fresh.token),
            api.deactivate(fresh.token),
        ]
    for answer in answers:
        is_problem(answer, 401, "unauthorized")
    view = api.credits(fresh.portal, fresh.license_id).body
    assert view["sites"][0]["active"] is False and view["sites"][0]["used"] == 0


def test_a_rotated_token_is_401_and_charges_nothing(api: Api, fresh: Licensed, nothing_written: Any) -> None:
    again = api.activate(fresh.license_key, f"https://{fresh.site}/")
    assert again.status == 200, again.body
    with nothing_written():
        answer = api.consume(fresh.token, 1)
    is_problem(answer, 401, "unauthorized")


def _forged(license_id: str, site: str, secret: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    activation = b64(f"{license_id}\x1f{site}".encode())
    return f"act1.{activation}.{b64(secret)}"


def test_forged_activation_tokens_are_401_and_charge_nothing(
    api: Api, licensed: Licensed, nothing_written: Any
) -> None:
    secret = licensed.token.rsplit(".", 1)[1]
    forged = [
        _forged(licensed.license_id, licensed.site, b"\x00" * 32),  # right site, wrong secret
        _forged(licensed.license_id, "other.example.com", base64.urlsafe_b64decode(secret + "=")),
        _forged("another-license", licensed.site, base64.urlsafe_b64decode(secret + "=")),
        licensed.token[:-1] + ("A" if licensed.token[-1] != "A" else "B"),
        licensed.token + "x" * 2000,
        "act1..",
        "act1.%%%.%%%",
        alg_none_jwt({"sub": licensed.account}),
        "local-admin-token",
    ]
    with nothing_written():
        for token in forged:
            is_problem(api.consume(token, 1), 401, "unauthorized")
            is_problem(api.balance(token), 401, "unauthorized")
            is_problem(api.deactivate(token), 401, "unauthorized")
        for authorization in ("", "Bearer", "Bearer ", f"Basic {licensed.token}", f"bearer{licensed.token}"):
            answer = api.call(
                "POST", "/v1/consume", consume_body(1), headers={"authorization": authorization}
            )
            is_problem(answer, 401, "unauthorized")


# --------------------------------------------------------------------------------------------------
# Paths and methods
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "license_id",
    ["x" * 65, "ünï", "..", "a b", "a%2Fb", "-leading-dash", "a\x00b", "a;b", "' OR 1=1 --"],
    ids=[
        "65-chars",
        "unicode",
        "dotdot",
        "space",
        "encoded-slash",
        "leading-dash",
        "nul",
        "semicolon",
        "sql",
    ],
)
def test_a_hostile_license_id_is_a_4xx_and_creates_nothing(
    api: Api, licensed: Licensed, admin_headers: dict[str, str], nothing_written: Any, license_id: str
) -> None:
    path_id = quote(license_id, safe="%")
    with nothing_written():
        answers = [
            api.call("GET", f"/v1/licenses/{path_id}/credits", token=licensed.portal),
            api.call("PUT", f"/v1/licenses/{path_id}/allocations", {"allocations": {}}, token=licensed.portal),
            api.call("PUT", f"/v1/admin/licenses/{path_id}", provision_body(f"key-{uuid.uuid4().hex}"), headers=admin_headers),
        ]  # fmt: skip
    for answer in answers:
        assert answer.status in (404, 422), (answer.status, answer.body)
        is_problem(answer, answer.status, "not_found" if answer.status == 404 else "validation_error")


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "GET"])
def test_an_unrouted_method_is_a_404_problem(
    api: Api, licensed: Licensed, nothing_written: Any, method: str
) -> None:
    with nothing_written():
        answer = api.call(method, "/v1/consume", consume_body(1), token=licensed.token)
    is_problem(answer, 404, "not_found")


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "FOO"])
def test_a_method_the_gateway_has_no_handler_for_is_refused_like_any_unrouted_method(
    api: Api, licensed: Licensed, method: str
) -> None:
    answer = api.call(method, "/v1/balance", token=licensed.token)
    is_problem(answer, 404, "not_found")
