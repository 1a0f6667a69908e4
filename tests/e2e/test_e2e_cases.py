"""Black-box cases beyond tests/integration/test_api.py's plugin path, over HTTP only: holds,
grants and refunds, the portal's views and *Apply*, usage and the ledger.

They run on the local gateway in ``make test`` and on a deployed stack under ``make e2e`` (ids
start with ``e2e-`` there; the portal cases need ``E2E_PORTAL_TOKEN``). Usage and the ledger are
derived from the table's stream, which the test gateway does not run and a stack runs seconds
later: their shapes and refusals are checked here, their figures in tests/integration.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.client import Answer, Api, unique

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def api(target_api: Api) -> Api:
    return target_api


def _is_problem(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.body["status"] == status


def _license(api: Api, **fields: Any) -> tuple[str, str]:
    """A new license of the target's account: ``(license_id, license_key)``."""
    license_id = api.unique("lic")
    key = f"key-{license_id}"
    answer = api.provision(license_id, license_key=key, **fields)
    assert answer.status == 201, answer.body
    return license_id, key


def _activate(api: Api, key: str, site_url: str, environment: str = "production") -> tuple[str, str]:
    """``(activation token, site)``."""
    answer = api.activate(key, site_url, environment)
    assert answer.status == 201, answer.body
    return answer.body["activation_token"], answer.body["site"]


def _site(api: Api, token: str) -> dict[str, Any]:
    answer = api.balance(token)
    assert answer.status == 200, answer.body
    site: dict[str, Any] = answer.body["site"]
    return site


def test_a_hold_reserves_then_capture_charges_and_release_returns(api: Api):
    _, key = _license(api, credits_per_term=100)
    token, _ = _activate(api, key, f"{unique('holds')}.com")

    held = api.hold(token, "h-1", 30, feature="chat")
    assert (held.status, held.body["remaining"], held.body["replayed"]) == (201, 70, False), held.body
    again = api.hold(token, "h-1", 30, feature="chat")
    assert (again.status, again.body["replayed"]) == (200, True)
    _is_problem(api.hold(token, "h-1", 31, feature="chat"), 409, "idempotency_conflict")
    assert (_site(api, token)["held"], _site(api, token)["remaining"]) == (30, 70)

    captured = api.capture(token, "h-1", 12)
    assert captured.status == 200, captured.body
    assert (captured.body["captured"], captured.body["released"], captured.body["remaining"]) == (12, 18, 88)
    assert api.call("GET", "/v1/holds/h-1", token=token).body["status"] == "captured"
    _is_problem(api.release(token, "h-1"), 409, "hold_captured")

    assert api.hold(token, "h-2", 50).status == 201
    released = api.release(token, "h-2")
    assert (released.status, released.body["released"], released.body["remaining"]) == (200, 50, 88)
    _is_problem(api.capture(token, "h-2", 1), 409, "hold_expired")
    _is_problem(api.capture(token, "h-none", 1), 404, "not_found")
    _is_problem(api.hold(token, "h-3", 89), 402, "insufficient_credits")
    assert (_site(api, token)["used"], _site(api, token)["held"]) == (12, 0)


def test_a_grant_adds_credits_exactly_once(api: Api):
    license_id, key = _license(api, credits_per_term=100)
    token, _ = _activate(api, key, f"{unique('grants')}.com")

    granted = api.grant(license_id, "g-1", 50, reason="goodwill")
    assert (granted.status, granted.body["credits_total"]) == (201, 150), granted.body
    replay = api.grant(license_id, "g-1", 50, reason="goodwill")
    assert (replay.status, replay.body["credits_total"]) == (200, 150), replay.body
    _is_problem(api.grant(license_id, "g-1", 60, reason="goodwill"), 409, "idempotency_conflict")
    _is_problem(api.grant(api.unique("lic"), "g-1", 50), 404, "not_found")
    _is_problem(api.grant(license_id, "g-2", 0), 422, "validation_error")
    assert api.balance(token).body["license"]["credits_total"] == 150


def test_a_refund_gives_a_consume_back_exactly_once(api: Api):
    license_id, key = _license(api, credits_per_term=100)
    token, site = _activate(api, key, f"https://{unique('refunds')}.com/")
    assert api.consume(token, 30, "r-1").body["remaining"] == 70

    refunded = api.refund(license_id, site, "r-1", reason="the AI call failed")
    assert refunded.status == 201, refunded.body
    assert refunded.body == {
        "request_id": "r-1",
        "site": site,
        "refunded": 30,
        "remaining": 100,
        "replayed": False,
    }
    again = api.refund(license_id, site, "r-1", reason="the AI call failed")
    assert (again.status, again.body["replayed"], again.body["remaining"]) == (200, True, 100)
    _is_problem(api.refund(license_id, site, "r-none"), 404, "not_found")
    assert _site(api, token)["used"] == 0


def test_the_portal_lists_shows_and_applies(api: Api, portal_jwt: str):
    license_id, key = _license(api, credits_per_term=1000)
    name = unique("portal")
    live, live_site = _activate(api, key, f"https://www.{name}.com/")
    staging, staging_site = _activate(api, key, f"staging.{name}.com", "staging")

    listed = api.licenses(portal_jwt)
    assert listed.status == 200, listed.body
    assert license_id in {entry["license_id"] for entry in listed.body["licenses"]}
    view = api.credits(portal_jwt, license_id)
    assert (view.status, view.body["credits_total"], view.body["unallocated"]) == (200, 1000, 0), view.body

    applied = api.apply(portal_jwt, license_id, {live_site: 700, staging_site: 300})
    assert applied.status == 200, applied.body
    assert {site["site"]: site["allocated"] for site in applied.body["sites"]} == {
        live_site: 700,
        staging_site: 300,
    }
    assert (_site(api, live)["remaining"], _site(api, staging)["remaining"]) == (700, 300)
    over = api.apply(portal_jwt, license_id, {live_site: 1000})
    _is_problem(over, 409, "over_allocation")
    assert (over.body["available"], over.body["requested"]) == (700, 1000)  # staging keeps its 300

    # Another account's license answers exactly like a missing one.
    other_id, _ = _license(api, account_id=api.unique("acct-other"))
    _is_problem(api.credits(portal_jwt, other_id), 404, "not_found")
    _is_problem(api.credits(portal_jwt, api.unique("lic")), 404, "not_found")
    # No JWT: the authorizer (a deployed stack's answers in its own shape) refuses.
    assert api.licenses(None).status == 401


def test_usage_and_the_ledger_answer_over_http(api: Api, portal_jwt: str):
    license_id, key = _license(api, credits_per_term=100)
    token, site = _activate(api, key, f"{unique('usage')}.com")
    assert api.consume(token, 5, "u-1", feature="rewrite").status == 200

    usage = api.call("GET", "/v1/usage", token=token)
    assert usage.status == 200, usage.body
    assert usage.body["site"] == site and isinstance(usage.body["credits"], int)

    report = api.call("GET", f"/v1/licenses/{license_id}/usage?granularity=month", token=portal_jwt)
    assert report.status == 200, report.body
    assert (report.body["license_id"], report.body["granularity"]) == (license_id, "month")
    assert isinstance(report.body["sites"], list) and isinstance(report.body["buckets"], list)
    _is_problem(
        api.call("GET", f"/v1/licenses/{license_id}/usage?granularity=week", token=portal_jwt),
        422,
        "validation_error",
    )

    ledger = api.call("GET", f"/v1/licenses/{license_id}/ledger?limit=10", token=portal_jwt)
    assert ledger.status == 200, ledger.body
    assert isinstance(ledger.body["entries"], list) and "next_cursor" in ledger.body
    _is_problem(
        api.call("GET", f"/v1/licenses/{license_id}/ledger?cursor=not-a-cursor", token=portal_jwt),
        422,
        "validation_error",
    )
