"""Holds (rule 11) through the holds function, on moto: place, capture, release, read, expiry;
``held`` in every view with ``allocated = used + held + remaining``."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from ai_credits import store
from ai_credits.services import operator
from tests.handlers.conftest import hold_event, invoke, make_event, renew, sweep_holds

NOW = "2026-12-04T12:00:00Z"  # the handlers read the clock; expiry is tested through the sweeper's "now"


@pytest.fixture
def holds(table):
    class Holds:
        def place(self, token: str, hold_id: str, amount: int, **fields: Any):
            return invoke("hold_create", make_event("hold_create", body={"hold_id": hold_id, "amount": amount, **fields},
                                                    token=token))  # fmt: skip

        def capture(self, token: str, hold_id: str, amount: int, subsite_url: str | None = None):
            return invoke(
                "hold_capture", hold_event("hold_capture", token, hold_id, {"amount": amount}, subsite_url)
            )

        def release(self, token: str, hold_id: str, subsite_url: str | None = None):
            return invoke("hold_release", hold_event("hold_release", token, hold_id, subsite_url=subsite_url))

        def get(self, token: str, hold_id: str, subsite_url: str | None = None):
            return invoke("hold_get", hold_event("hold_get", token, hold_id, subsite_url=subsite_url))

    return Holds()


@pytest.fixture
def token(provision, activate):
    provision("lic-h", license_key="key-h-secret", expires_at="2029-01-01T00:00:00Z")
    return activate("key-h-secret", "shop.example.org").body["activation_token"]


def _site(balance, token):
    return balance(token).body["site"]


def test_a_hold_reserves_credits_that_nothing_else_can_spend(token, holds, balance, consume):
    placed = holds.place(token, "call-1", 600)

    assert placed.status == 201
    assert {k: placed.body[k] for k in ("hold_id", "amount", "remaining", "replayed")} == {
        "hold_id": "call-1", "amount": 600, "remaining": 400, "replayed": False,
    }  # fmt: skip
    site = _site(balance, token)
    assert (site["allocated"], site["used"], site["held"], site["remaining"]) == (1000, 0, 600, 400)
    assert consume(token, 401).code == "insufficient_credits"
    assert holds.place(token, "call-2", 401).code == "insufficient_credits"
    assert _site(balance, token)["held"] == 600, "a refused hold holds nothing"


def test_the_same_hold_again_is_its_first_answer_and_a_used_id_is_a_conflict(token, holds, consume):
    first = holds.place(token, "call-1", 100)
    again = holds.place(token, "call-1", 100)

    assert (again.status, again.body) == (200, {**first.body, "replayed": True})
    assert holds.place(token, "call-1", 101).code == "idempotency_conflict"
    assert consume(token, 100, "call-1").code == "idempotency_conflict", "one namespace with consumes"
    assert consume(token, 5, "spent").status == 200
    assert holds.place(token, "spent", 5).code == "idempotency_conflict"


def test_a_capture_charges_what_it_cost_like_a_consume_and_gives_back_the_rest(
    token, holds, balance, consume
):
    holds.place(token, "call-1", 300, feature="rewrite")

    captured = holds.capture(token, "call-1", 120)

    assert (captured.status, captured.body) == (
        200, {"hold_id": "call-1", "captured": 120, "released": 180, "remaining": 880, "replayed": False},
    )  # fmt: skip
    site = _site(balance, token)
    assert (site["used"], site["held"], site["remaining"]) == (120, 0, 880)
    [entry] = [entry for entry in store.ledger_entries("lic-h") if entry["request_id"] == "call-1"]
    assert (entry["type"], entry["amount"], entry["feature"]) == ("consume", 120, "rewrite")
    assert holds.capture(token, "call-1", 120).body == {**captured.body, "replayed": True}
    assert holds.capture(token, "call-1", 121).code == "idempotency_conflict"
    assert holds.release(token, "call-1").code == "hold_captured"
    assert holds.get(token, "call-1").body["status"] == "captured"
    assert operator.audit(["lic-h"]) == {}


def test_a_capture_of_0_charges_nothing_and_writes_no_consume(token, holds, balance):
    holds.place(token, "call-0", 50)

    answer = holds.capture(token, "call-0", 0)

    assert (answer.body["captured"], answer.body["released"], answer.body["remaining"]) == (0, 50, 1000)
    assert [entry["type"] for entry in store.ledger_entries("lic-h")] == ["hold"]
    assert _site(balance, token)["used"] == 0


def test_a_capture_above_the_held_amount_is_a_422_and_changes_nothing(token, holds, table):
    holds.place(token, "call-1", 50)
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]

    answer = holds.capture(token, "call-1", 51)

    assert (answer.status, answer.code) == (422, "validation_error")
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == items


def test_a_release_gives_everything_back_once_and_a_capture_after_it_is_hold_expired(token, holds, balance):
    holds.place(token, "call-1", 70)

    released = holds.release(token, "call-1")

    assert (released.status, released.body) == (200, {"hold_id": "call-1", "released": 70, "remaining": 1000})
    assert holds.release(token, "call-1").body == released.body, "again: the same answer"
    assert holds.capture(token, "call-1", 10).code == "hold_expired"
    assert holds.get(token, "call-1").body["status"] == "released"
    assert _site(balance, token)["held"] == 0


def test_an_unknown_hold_is_404_and_a_bad_token_401(token, holds):
    assert holds.capture(token, "never", 1).code == "not_found"
    assert holds.release(token, "never").code == "not_found"
    assert holds.get(token, "never").code == "not_found"
    assert holds.place(token + "x", "call-1", 1).code == "unauthorized"
    assert holds.get(token + "x", "never").code == "unauthorized"


def test_the_sweeper_releases_expired_holds_once_and_a_later_capture_is_hold_expired(token, holds, balance):
    placed = holds.place(token, "call-1", 200, ttl_seconds=60)
    holds.place(token, "call-2", 100, ttl_seconds=3600)

    first = sweep_holds({"time": placed.body["expires_at"]})
    second = sweep_holds({"time": placed.body["expires_at"]})

    assert (first["released"], second["released"]) == (1, 0), "exactly once"
    assert _site(balance, token)["held"] == 100
    assert holds.capture(token, "call-1", 1).code == "hold_expired"
    assert holds.get(token, "call-1").body["status"] == "expired"
    assert operator.audit(["lic-h"]) == {}


def test_deactivation_releases_the_sites_open_holds(token, holds, deactivate, activate, portal):
    holds.place(token, "call-1", 300)

    assert deactivate(token).status == 204

    view = portal("get_credits", "acct-1", "lic-h").body
    assert (view["unallocated"], view["sites"][0]["held"]) == (1000, 0)
    again = activate("key-h-secret", "shop.example.org").body["activation_token"]
    assert holds.get(again, "call-1").body["status"] == "released"
    assert holds.capture(again, "call-1", 1).code == "hold_expired"
    assert operator.audit(["lic-h"]) == {}


def test_a_renewal_releases_the_ended_terms_holds(token, holds, balance):
    holds.place(token, "call-1", 300)

    renew({"license_id": "lic-h", "time": "2027-11-01T01:00:00Z"})

    site = _site(balance, token)
    assert (site["allocated"], site["held"], site["remaining"]) == (1000, 0, 1000)
    assert holds.get(token, "call-1").body["status"] == "released"
    assert holds.capture(token, "call-1", 1).code == "hold_expired"
    [record] = [entry for entry in store.ledger_entries("lic-h") if entry["type"] == "expiry_sites"]
    assert record["sites"] == {"shop.example.org": 1000}, "held credits expire with the term"


def test_apply_cannot_allocate_held_credits_away(provision, activate, portal, holds):
    provision("lic-ha", license_key="key-ha-secret", plan="multi-site", site_limit=2)
    token = activate("key-ha-secret", "a.example.org").body["activation_token"]
    portal("put_allocations", "acct-1", "lic-ha", {"allocations": {"a.example.org": 500}})
    holds.place(token, "call-1", 400)

    refused = portal("put_allocations", "acct-1", "lic-ha", {"allocations": {"a.example.org": 399}})
    fits = portal("put_allocations", "acct-1", "lic-ha", {"allocations": {"a.example.org": 450}})

    assert (refused.status, refused.code, refused.body["used"], refused.body["held"]) == (
        409,
        "below_used",
        0,
        400,
    )
    site = fits.body["sites"][0]
    assert (site["allocated"], site["held"], site["remaining"]) == (450, 400, 50)


def test_on_a_network_hold_ids_are_per_sub_site_and_need_the_sub_site_when_ambiguous(
    provision, activate, holds
):
    provision("lic-hn", license_key="key-hn-secret")
    token = activate("key-hn-secret", "net.example.org", network=True).body["activation_token"]
    holds.place(token, "call-1", 10, subsite_url="blog.net.example.org")
    holds.place(token, "call-1", 20, subsite_url="shop.net.example.org")

    assert holds.get(token, "call-1").status == 422
    shop = holds.get(token, "call-1", subsite_url="shop.net.example.org")
    assert (shop.status, shop.body["amount"]) == (200, 20)
    assert holds.capture(token, "call-1", 5, subsite_url="blog.net.example.org").body["released"] == 5


@pytest.mark.parametrize(
    "body",
    [
        {"hold_id": "h", "amount": 0},
        {"hold_id": "h", "amount": 1_000_001},
        {"hold_id": "h", "amount": "5"},
        {"hold_id": "h h", "amount": 5},
        {"hold_id": "h", "amount": 5, "ttl_seconds": 0},
        {"hold_id": "h", "amount": 5, "ttl_seconds": 3601},
        {"hold_id": "h", "amount": 5, "feature": "x" * 65},
        {"amount": 5},
    ],
    ids=["zero", "too much", "a string", "bad id", "ttl 0", "ttl over an hour", "long feature", "no id"],
)
def test_a_bad_hold_is_a_422_and_holds_nothing(token, table, body):
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]

    answer = invoke("hold_create", make_event("hold_create", body=body, token=token))

    assert (answer.status, answer.code) == (422, "validation_error")
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == items


@pytest.mark.parametrize("amount", [-1, 1_000_001, "3", 2.5])
def test_a_bad_capture_is_a_422_and_changes_nothing(token, holds, table, amount):
    holds.place(token, "call-1", 50)
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]

    answer = invoke("hold_capture", hold_event("hold_capture", token, "call-1", {"amount": amount}))

    assert (answer.status, answer.code) == (422, "validation_error")
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == items
