"""Usage, the statement and events, derived from DynamoDB Local's real stream by the stream
processor (in this process), against what the requests did.

Each test makes its own licenses, taps the stream from its start (``stream_tap``), and hands the
records to the processor as Lambda's event source mapping would: in batches, in order, and — to
prove exactly-once — again, or cut short by a crash.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from typing import Any

import pytest

from ai_credits import derived, store
from ai_credits.services import renewal
from tests.handlers.conftest import LICENSE_TEMPLATE, Answer, LambdaContext, invoke, load_function, make_event

ACCOUNT = "acct-usage"


def _license(plan: str = "single-site", **fields: Any) -> tuple[str, str]:
    license_id = f"use-{uuid.uuid4().hex[:10]}"
    key = f"key-{license_id}"
    body = {**LICENSE_TEMPLATE, "account_id": ACCOUNT, "license_key": key, "plan": plan, **fields}
    assert invoke("provision", make_event("provision", body=body, path_license_id=license_id)).status == 201
    return license_id, key


def _activate(key: str, site_url: str, **fields: Any) -> str:
    body = {"license_key": key, "site_url": site_url, "environment": "production", **fields}
    answer = invoke("activate", make_event("activate", body=body))
    assert answer.status == 201, answer.body
    return str(answer.body["activation_token"])


def _consume(token: str, amount: int, request_id: str, **fields: Any) -> Answer:
    body = {"amount": amount, "request_id": request_id, **fields}
    return invoke("consume", make_event("consume", body=body, token=token))


def _portal_event(
    event_name: str, license_id: str, query: dict[str, str] | None, headers: dict[str, str]
) -> Any:
    event = make_event(event_name, path_license_id=license_id, headers=headers or None)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = ACCOUNT
    event["queryStringParameters"] = query or {}
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in (query or {}).items())
    if not query:
        event.pop("queryStringParameters")
    return event


def _portal(event_name: str, license_id: str, query: dict[str, str] | None = None, **headers: str) -> Answer:
    return invoke(event_name, _portal_event(event_name, license_id, query, headers))


def _statement_csv(license_id: str) -> tuple[dict[str, str], str]:
    event = _portal_event("license_ledger", license_id, None, {"accept": "text/csv"})
    response = load_function("licenses").lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 200
    return {name.lower(): value for name, value in response["headers"].items()}, response["body"]


def _statement(license_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = _portal(
            "license_ledger", license_id, {"limit": "500", **({"cursor": cursor} if cursor else {})}
        )
        assert answer.status == 200, answer.body
        entries.extend(answer.body["entries"])
        if (cursor := answer.body["next_cursor"]) is None:
            return entries


def _derived_items(license_id: str) -> list[dict[str, Any]]:
    """Every derived item of a license (rollups and statement), for before/after comparisons."""
    rollups = derived.license_rollups(license_id, "", "\uffff")
    return sorted(rollups, key=lambda item: item["sk"]) + list(derived.statement(license_id))


def _used(license_id: str) -> int:
    _, sites = store.get_license_with_sites(license_id)
    return sum(site.used for site in sites)


# -- usage and statement equal the requests -------------------------------------------------


def test_usage_and_the_statement_equal_what_the_requests_did(stream_tap, event_bus):
    # Given a multi-site license with two sites, one of them a network
    license_id, key = _license("multi-site", site_limit=3)
    blog = _activate(key, "https://blog.example.com")
    network = _activate(key, "https://net.example.com", network=True)
    put = _portal_apply(license_id, {"blog.example.com": 300, "net.example.com": 200})
    assert put.status == 200, put.body

    # When they spend, by feature and sub-site, hold and capture, and billing refunds and grants
    for number in range(4):
        assert _consume(blog, 10, f"b-{number}", feature="rewrite").status == 200
    assert _consume(blog, 3, "b-plain").status == 200
    assert (
        _consume(network, 7, "n-1", feature="summary", subsite_url="https://shop.net.example.com").status
        == 200
    )
    assert _consume(network, 5, "n-2", subsite_url="https://news.net.example.com").status == 200
    hold = make_event("hold_create", body={"hold_id": "h-1", "amount": 20, "feature": "rewrite"}, token=blog)
    assert invoke("hold_create", hold).status == 201
    capture = make_event("hold_capture", body={"amount": 12}, token=blog)
    capture["pathParameters"] = {"hold_id": "h-1"}
    capture["rawPath"] = capture["requestContext"]["http"]["path"] = "/v1/holds/h-1/capture"
    assert invoke("hold_capture", capture).status == 200
    refund = {"site_url": "https://blog.example.com", "request_id": "b-1", "amount": 4}
    assert invoke("refund", make_event("refund", body=refund, path_license_id=license_id)).status == 201
    grant = {"grant_id": "g-1", "credits": 500, "reason": 'top-up, "spring"'}
    assert invoke("grant", make_event("grant", body=grant, path_license_id=license_id)).status == 201
    stream_tap.drain()

    # Then the plugin's usage of each site is what it spent, net of the refund
    blog_usage = invoke("get_usage", make_event("get_usage", token=blog))
    assert blog_usage.status == 200
    body = blog_usage.body
    assert (body["credits"], body["requests"]) == (40 + 3 + 12 - 4, 6)
    assert body["features"] == {"rewrite": 40 + 12 - 4, "other": 3}
    assert [day["credits"] for day in body["days"]] == [51] and "subsites" not in body
    net = invoke("get_usage", make_event("get_usage", token=network)).body
    assert (net["credits"], net["requests"], net["features"]) == (12, 2, {"summary": 7, "other": 5})
    assert net["subsites"] == {"shop.net.example.com": 7, "news.net.example.com": 5}

    # And the portal's usage adds them up by site, most first, in one bucket of today
    usage = _portal("license_usage", license_id).body
    assert (usage["credits"], usage["requests"]) == (63, 8)
    assert [(row["site"], row["credits"]) for row in usage["sites"]] == [
        ("blog.example.com", 51),
        ("net.example.com", 12),
    ]
    (bucket,) = usage["buckets"]
    assert bucket["sites"] == {"blog.example.com": 51, "net.example.com": 12}
    assert usage["credits"] == _used(license_id)

    # And the statement has every movement once, newest first, summing to what is left
    entries = _statement(license_id)
    assert Counter(entry["type"] for entry in entries) == Counter(
        {"term": 1, "consume": 8, "refund": 1, "grant": 1}
    )
    assert [entry["at"] for entry in entries] == sorted((entry["at"] for entry in entries), reverse=True)
    credits = _portal("get_credits", license_id).body
    assert sum(entry["credits"] for entry in entries) == credits["credits_total"] - _used(license_id)
    captured = next(entry for entry in entries if entry.get("request_id") == "h-1")
    assert (captured["type"], captured["credits"], captured["feature"]) == ("consume", -12, "rewrite")
    shop = next(entry for entry in entries if entry.get("request_id") == "n-1")
    assert shop["subsite"] == "shop.net.example.com" and shop["site"] == "net.example.com"


def _portal_apply(license_id: str, allocations: dict[str, int]) -> Answer:
    event = make_event("put_allocations", body={"allocations": allocations}, path_license_id=license_id)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = ACCOUNT
    return invoke("put_allocations", event)


def test_a_renewal_ends_the_term_in_the_statement_with_what_expired_and_what_carried_over(
    stream_tap, event_bus
):
    # Given 1,000 a term and a grant of 500 that outlives it; 200 used (of the term's own credits)
    license_id, key = _license(expires_at="2028-11-01T00:00:00Z")
    token = _activate(key, "https://one.example.com")
    grant = {"grant_id": "g-long", "credits": 500, "expires_at": "2029-06-01T00:00:00Z"}
    assert invoke("grant", make_event("grant", body=grant, path_license_id=license_id)).status == 201
    assert _consume(token, 200, "spent").status == 200

    # When the term is renewed
    assert renewal.renew_due("2027-11-01T01:00:00Z", [license_id]).renewed == [license_id]
    stream_tap.drain()

    # Then the statement reads, newest first: the new term, what expired, then the old term's life
    entries = _statement(license_id)
    assert [(entry["type"], entry["credits"]) for entry in entries] == [
        ("carry_over", 500),
        ("term", 1000),
        ("expiry", -800),
        ("consume", -200),
        ("grant", 500),
        ("term", 1000),
    ]
    # And the ended term sums to what it carried over, the new one to credits_total minus used
    by_term: Counter[str] = Counter()
    for entry in entries:
        by_term[entry["term_start"]] += entry["credits"]
    assert by_term == Counter({"2026-11-01T00:00:00Z": 500, "2027-11-01T00:00:00Z": 1500})
    assert _portal("get_credits", license_id).body["credits_total"] - _used(license_id) == 1500

    # And the vendor heard of the renewal once
    renewed = [event for event in event_bus.events(license_id) if event["detail_type"] == "License Renewed"]
    assert [(event["term_start"], event["credits_total"], event["carried_over"]) for event in renewed] == [
        ("2027-11-01T00:00:00Z", 1500, 500)
    ]


# -- exactly once however the stream delivers -----------------------------------------------


def _busy_license(sites: int = 3, consumes: int = 40) -> tuple[str, int]:
    """A multi-site license whose sites spend, get refunds and a grant: records of every kind."""
    license_id, key = _license("multi-site", site_limit=sites, credits_per_term=10_000)
    tokens = [_activate(key, f"https://s{number}.example.com") for number in range(sites)]
    assert (
        _portal_apply(license_id, {f"s{number}.example.com": 1000 for number in range(sites)}).status == 200
    )
    for number in range(consumes):
        feature = ("rewrite", "summary", None)[number % 3]
        extra = {"feature": feature} if feature else {}
        assert _consume(tokens[number % sites], 1 + number % 7, f"c-{number}", **extra).status == 200
    refund = {"site_url": "https://s0.example.com", "request_id": "c-0"}
    assert invoke("refund", make_event("refund", body=refund, path_license_id=license_id)).status == 201
    assert invoke(
        "grant", make_event("grant", body={"grant_id": "g", "credits": 50}, path_license_id=license_id)
    )
    return license_id, _used(license_id)


def test_a_batch_delivered_twice_changes_nothing(stream_tap, event_bus):
    license_id, used = _busy_license()
    records = stream_tap.fetch()
    assert all(report.failed_at is None for report in stream_tap.deliver(records))
    once = _derived_items(license_id)
    events_once = list(event_bus.entries)

    again = stream_tap.deliver(records)  # Lambda retried every batch, say
    stream_tap.deliver(records[len(records) // 3 :], batch_size=7)  # and again, cut differently

    assert _derived_items(license_id) == once
    assert event_bus.entries == events_once, "events already sent are not put again"
    assert sum(report.events_skipped for report in again) == len(events_once)
    assert _portal("license_usage", license_id).body["credits"] == used


class Killed(BaseException):
    """The function's process dying: nothing of the batch after this point happens."""


@pytest.mark.parametrize(
    ("target", "dies_at_call"),
    [
        ("_write_chunk", 2),  # after the first 25 statement entries
        ("apply_contributions", 2),  # after the first rollup
        ("mark_sent", 1),  # after the events were put, before they were marked sent
    ],
)
def test_a_processor_killed_mid_batch_then_redelivered_counts_everything_once(
    stream_tap, event_bus, monkeypatch, target, dies_at_call
):
    license_id, used = _busy_license()
    records = stream_tap.fetch()
    real = getattr(derived, target)
    calls = {"count": 0}

    def dies(*args: Any) -> Any:
        calls["count"] += 1
        if calls["count"] == dies_at_call:
            raise Killed
        return real(*args)

    monkeypatch.setattr(derived, target, dies)
    with pytest.raises(Killed):
        stream_tap.deliver(records, batch_size=len(records))
    monkeypatch.setattr(derived, target, real)

    stream_tap.deliver(records)  # the event source mapping retries the batch

    usage = _portal("license_usage", license_id).body
    assert (usage["credits"], usage["requests"]) == (used, 40)
    entries = _statement(license_id)
    assert Counter(entry["type"] for entry in entries) == Counter(
        {"term": 1, "consume": 40, "refund": 1, "grant": 1}
    )
    events = event_bus.events(license_id)
    distinct = {event["event_id"]: event["detail_type"] for event in events}
    assert Counter(distinct.values()) == Counter({"Allocation Needed": 1, "Credits Granted": 1})
    # at least once: only a death between putting and marking puts an event twice, same id
    assert len(events) == (4 if target == "mark_sent" else 2)


def test_a_failed_step_reports_the_first_record_not_applied_and_the_retry_completes_it(
    stream_tap, event_bus, monkeypatch
):
    from ai_credits.errors import Unavailable

    license_id, used = _busy_license(sites=2, consumes=12)
    records = stream_tap.fetch()
    real = derived.apply_contributions
    throttled = {"done": False}

    def throttled_once(contributions: Any) -> int:
        if not throttled["done"] and contributions[0].site == "s1.example.com":
            throttled["done"] = True
            raise Unavailable("throttled", retry_after=1)
        return real(contributions)

    monkeypatch.setattr(derived, "apply_contributions", throttled_once)
    (report,) = stream_tap.deliver(records, batch_size=len(records))
    assert report.failed_steps == ["usage"]
    sequences = [record["dynamodb"]["SequenceNumber"] for record in records]
    first_s1_charge = next(
        index
        for index, record in enumerate(records)
        if record["dynamodb"]["Keys"]["sk"]["S"] == "SITE#s1.example.com"
        and "rev" in record["dynamodb"].get("NewImage", {})
    )
    assert report.failed_at == sequences[first_s1_charge]
    assert _portal("license_usage", license_id).body["credits"] < used

    # Lambda hands the function that record and every later one again
    (retry,) = stream_tap.deliver(records[first_s1_charge:], batch_size=len(records))
    assert retry.failed_at is None
    assert _portal("license_usage", license_id).body["credits"] == used


# -- events ---------------------------------------------------------------------------------


def _types(event_bus: Any, license_id: str) -> list[str]:
    return [event["detail_type"] for event in event_bus.events(license_id)]


def test_every_event_type_is_emitted_once_per_transition_with_a_stable_id(stream_tap, event_bus):
    # A single-site license spends through its threshold, to 0, gets a grant and spends it all
    spender, key = _license(credits_per_term=100)
    token = _activate(key, "https://spend.example.com")
    for request_id, amount in (("a", 79), ("b", 1), ("c", 5), ("d", 15)):
        assert _consume(token, amount, request_id).status == 200
    assert invoke(
        "grant", make_event("grant", body={"grant_id": "more", "credits": 50}, path_license_id=spender)
    )
    assert _consume(token, 50, "e").status == 200
    # A site that spends everything at once is exhausted, not also low
    at_once, key_2 = _license(credits_per_term=100)
    assert _consume(_activate(key_2, "https://once.example.com"), 100, "all").status == 200
    # A multi-site license needs an allocation, gets one, is renewed (and needs one again)
    multi, key_3 = _license("multi-site", site_limit=2, expires_at="2028-11-01T00:00:00Z")
    _activate(key_3, "https://m.example.com")
    assert _portal_apply(multi, {"m.example.com": 10}).status == 200
    # A license not paid beyond its term expires at its renewal
    unpaid, _ = _license()
    report = renewal.renew_due("2027-11-01T01:00:00Z", [multi, unpaid])
    assert (report.renewed, report.expired) == ([multi], [unpaid])

    records = stream_tap.fetch()
    stream_tap.deliver(records)

    assert _types(event_bus, spender) == [
        "Credits Low",
        "Credits Exhausted",
        "Credits Granted",
        "Credits Exhausted",
    ]
    low = event_bus.events(spender)[0]
    assert {name: low[name] for name in ("site", "allocated", "remaining", "threshold_percent")} == {
        "site": "spend.example.com",
        "allocated": 100,
        "remaining": 20,
        "threshold_percent": 20,
    }
    assert _types(event_bus, at_once) == ["Credits Exhausted"]
    assert _types(event_bus, multi) == ["Allocation Needed", "License Renewed", "Allocation Needed"]
    assert _types(event_bus, unpaid) == ["License Expired"]
    every = [
        event for license_id in (spender, at_once, multi, unpaid) for event in event_bus.events(license_id)
    ]
    assert all(event["account_id"] == ACCOUNT and event["at"] and event["event_id"] for event in every)
    assert len({event["event_id"] for event in every}) == len(every)
    assert {entry["Source"] for entry in event_bus.entries} == {"ai-credits"}

    # Delivered again: nothing new is put, and the ids derived again are the same
    put_before = len(event_bus.entries)
    reports = stream_tap.deliver(records)
    assert len(event_bus.entries) == put_before
    assert sum(report.events_skipped for report in reports) >= len(every)


# -- the statement's pages and CSV ----------------------------------------------------------


def test_pages_return_every_entry_exactly_once_newest_first_and_csv_has_them_all(stream_tap, event_bus):
    license_id, _ = _busy_license(sites=2, consumes=57)
    stream_tap.drain()
    everything = _statement(license_id)
    assert len(everything) == 1 + 57 + 1 + 1

    for limit in (1, 7, 60, 500):
        seen, cursor, pages = [], None, 0
        while True:
            query = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
            body = _portal("license_ledger", license_id, query).body
            pages += 1
            assert len(body["entries"]) <= limit
            seen.extend(body["entries"])
            if (cursor := body["next_cursor"]) is None:
                break
        assert seen == everything, limit
        assert pages == -(-len(everything) // limit), "no empty last page"

    headers, text = _statement_csv(license_id)
    assert headers["content-type"].startswith("text/csv")
    assert headers["content-disposition"] == f'attachment; filename="statement-{license_id}.csv"'
    assert text.startswith("at,type,credits,term_start,site,subsite,request_id,grant_id,feature\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(everything)
    assert [int(row["credits"]) for row in rows] == [entry["credits"] for entry in everything]
    assert [row["request_id"] for row in rows] == [entry.get("request_id", "") for entry in everything]


def test_a_cursor_the_service_did_not_issue_is_a_422(stream_tap, event_bus):
    license_id, _ = _busy_license(sites=1, consumes=5)
    other, _ = _busy_license(sites=1, consumes=2)
    stream_tap.drain()
    cursor = _portal("license_ledger", license_id, {"limit": "2"}).body["next_cursor"]
    body, _, mac = cursor.partition(".")
    tampered = [
        f"{body}.{'0' * len(mac)}",
        f"{body[:-2]}AA.{mac}",
        "not-a-cursor",
        cursor + "x",
    ]
    for bad in tampered:
        answer = _portal("license_ledger", license_id, {"cursor": bad})
        assert (answer.status, answer.code) == (422, "validation_error"), bad
    assert _portal("license_ledger", other, {"cursor": cursor}).status == 422, "another license's cursor"
    assert _portal("license_ledger", license_id, {"cursor": cursor}).status == 200
