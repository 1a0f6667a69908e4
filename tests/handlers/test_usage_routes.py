"""The usage and ledger routes' answers to bad input, missing credentials and other accounts
(the figures themselves come from the stream: tests/integration/test_usage_stream.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.handlers.conftest import invoke, make_event


def _portal(event_name: str, query: dict[str, str] | None = None, account: str = "acct-1") -> Any:
    event = make_event(event_name, path_license_id="lic-1")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = account
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in (query or {}).items())
    event["queryStringParameters"] = query or {}
    if not query:
        event.pop("queryStringParameters")
    return invoke(event_name, event)


@pytest.fixture
def license_1(provision):
    assert provision("lic-1").status == 201


@pytest.mark.parametrize(
    "query",
    [
        {"from": "2026-12-04"},
        {"from": "yesterday"},
        {"to": "2026-W01-1T00:00:00Z"},
        {"to": "2026-12-04T10:00:00"},
        {"from": "2026-12-04T10:00:00Z", "to": "2026-12-04T10:00:00Z"},
        {"from": "2026-12-05T00:00:00Z", "to": "2026-12-04T00:00:00Z"},
        {"from": "2025-01-01T00:00:00Z", "to": "2026-02-05T00:00:01Z"},
        {"granularity": "week"},
        {"granularity": ""},
    ],
)
def test_bad_usage_ranges_are_a_422(license_1, query):
    answer = _portal("license_usage", query)
    assert (answer.status, answer.code) == (422, "validation_error"), answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.body["errors"]


def test_a_range_of_400_days_and_a_month_granularity_are_answered(license_1):
    query = {"from": "2025-01-01T00:00:00Z", "to": "2026-02-05T00:00:00Z", "granularity": "month"}
    answer = _portal("license_usage", query)
    assert answer.status == 200, answer.body
    assert {name: answer.body[name] for name in ("license_id", "from", "to", "granularity")} == {
        "license_id": "lic-1",
        "from": "2025-01-01T00:00:00Z",
        "to": "2026-02-05T00:00:00Z",
        "granularity": "month",
    }
    assert (answer.body["credits"], answer.body["sites"], answer.body["buckets"]) == (0, [], [])


def test_the_default_range_is_the_term_so_far(license_1):
    body = _portal("license_usage").body
    assert body["from"] == "2026-11-01T00:00:00Z" and body["to"] > body["from"]


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", "1.5"])
def test_a_ledger_limit_out_of_1_to_500_is_a_422(license_1, limit):
    answer = _portal("license_ledger", {"limit": limit})
    assert (answer.status, answer.code) == (422, "validation_error"), answer.body


def test_an_empty_statement_is_one_page_without_cursor(license_1):
    assert _portal("license_ledger", {"limit": "500"}).body == {"entries": [], "next_cursor": None}


@pytest.mark.parametrize("event_name", ["license_usage", "license_ledger"])
def test_another_accounts_license_is_not_found(license_1, event_name):
    answer = _portal(event_name, account="acct-2")
    assert (answer.status, answer.code) == (404, "not_found")


@pytest.mark.parametrize("authorization", [None, "Bearer act1.bad.token", "Basic abc"])
def test_the_plugins_usage_needs_its_activation_token(license_1, authorization):
    event = make_event("get_usage")
    if authorization is None:
        event["headers"].pop("authorization")
    else:
        event["headers"]["authorization"] = authorization
    answer = invoke("get_usage", event)
    assert (answer.status, answer.code) == (401, "unauthorized")


def test_a_site_without_usage_has_an_empty_usage_of_its_term(license_1, activate):
    token = activate("key-lic-1-secret", "https://www.example.com").body["activation_token"]
    answer = invoke("get_usage", make_event("get_usage", token=token))
    assert answer.status == 200
    assert answer.body == {
        "site": "example.com",
        "term_start": "2026-11-01T00:00:00Z",
        "term_end": "2027-11-01T00:00:00Z",
        "credits": 0,
        "requests": 0,
        "features": {},
        "days": [],
    }
