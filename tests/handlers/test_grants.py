"""Grants (rule 9) and carry-over at renewal (rule 10) through the functions, on moto."""

from __future__ import annotations

import boto3
import pytest

from ai_credits import store
from ai_credits.services import operator
from tests.handlers.conftest import invoke, make_event, renew

PAID = "2029-11-01T00:00:00Z"
TWO_YEARS = "2028-11-01T00:00:00Z"  # the license's terms: 2026-11-01 .. 2027-11-01 .. 2028-11-01


@pytest.fixture
def grant(table):
    def _grant(license_id: str, grant_id: str = "topup-1", credits: int = 500, **fields):
        body = {"grant_id": grant_id, "credits": credits, **fields}
        return invoke("grant", make_event("grant", body=body, path_license_id=license_id))

    return _grant


def _site(answer, name):
    return next(site for site in answer.body["sites"] if site["site"] == name)


def test_a_grant_adds_its_credits_to_the_term_unallocated_on_a_multi_site_license(provision, grant):
    provision("lic-g", plan="multi-site", site_limit=3, expires_at=PAID)

    answer = grant("lic-g", expires_at=TWO_YEARS, reason="Top-up pack 500")

    assert answer.status == 201
    assert (answer.body["credits_total"], answer.body["unallocated"], answer.body["carried_over"]) == (
        1500,
        1500,
        0,
    )
    assert answer.body["grants"] == [
        {"grant_id": "topup-1", "credits": 500, "remaining": 500, "expires_at": TWO_YEARS,
         "granted_at": answer.body["grants"][0]["granted_at"], "reason": "Top-up pack 500"}
    ]  # fmt: skip


def test_rule9_a_single_site_licenses_live_site_gets_the_grant_at_once(provision, activate, grant, balance):
    provision("lic-g1", license_key="key-g1-secret", expires_at=PAID)
    token = activate("key-g1-secret", "shop.example.org").body["activation_token"]

    answer = grant("lic-g1", credits=250)

    assert (answer.body["credits_total"], answer.body["unallocated"]) == (1250, 0)
    assert balance(token).body["site"]["allocated"] == 1250


def test_rule9_a_single_site_license_that_needs_allocation_keeps_the_grant_unallocated(provision, grant):
    provision("lic-g7", activations=[  # rule 7: a live and a staging site, the customer allocates
        {"site_url": "shop.example.org", "environment": "production"},
        {"site_url": "staging.shop.example.org", "environment": "staging"},
    ])  # fmt: skip

    answer = grant("lic-g7", credits=250)

    assert (answer.body["needs_allocation"], answer.body["unallocated"]) == (True, 1250)
    assert _site(answer, "shop.example.org")["allocated"] == 0


def test_a_grant_is_applied_once_per_grant_id(provision, grant, table):
    provision("lic-g2", plan="multi-site", site_limit=3)
    first = grant("lic-g2", credits=100)
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]

    again = grant("lic-g2", credits=100)
    other = grant("lic-g2", credits=101)

    assert (first.status, again.status) == (201, 200)
    assert again.body["credits_total"] == 1100
    assert (other.status, other.code) == (409, "idempotency_conflict")
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == items, "nothing written"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"credits": 0}, 422, "validation_error"),
        ({"credits": 1_000_000_001}, 422, "validation_error"),
        ({"credits": "5"}, 422, "validation_error"),
        ({"grant_id": "has space"}, 422, "validation_error"),
        ({"reason": "x" * 201}, 422, "validation_error"),
        ({"expires_at": "2028-11-01"}, 422, "validation_error"),
    ],
)
def test_bad_grants_are_refused_and_change_nothing(provision, grant, table, fields, status, code):
    provision("lic-bad", plan="multi-site", site_limit=3)
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]

    answer = grant("lic-bad", **fields)

    assert (answer.status, answer.code) == (status, code)
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == items


def test_a_grant_on_an_expired_or_unknown_license_is_refused(provision, grant):
    provision("lic-old", plan="multi-site", site_limit=3, expires_at="2026-11-15T00:00:00Z")

    assert grant("lic-old").code == "license_expired"
    assert grant("lic-none").code == "not_found"


def test_rule10_the_worked_example_carries_300_into_a_term_of_1300(
    provision, activate, consume, grant, balance
):
    # 1,000 a term plus a grant of 500 that expires in two years; 1,200 used this term
    provision("lic-w", license_key="key-w-secret", expires_at=PAID)
    token = activate("key-w-secret", "shop.example.org").body["activation_token"]
    grant("lic-w", credits=500, expires_at=TWO_YEARS)
    assert consume(token, 1200).status == 200

    assert renew({"license_id": "lic-w", "time": "2027-11-01T01:00:00Z"})["renewed"] == ["lic-w"]

    # The next term starts with 1,300, all on the single-site license's live site (rule 1)
    view = balance(token).body
    assert (view["license"]["credits_total"], view["site"]["allocated"], view["site"]["used"]) == (
        1300,
        1300,
        0,
    )
    license_, _, grants = store.get_license_view("lic-w")
    assert license_ is not None and (license_.carried_over, license_.term_credits, license_.granted) == (
        300,
        1000,
        0,
    )
    assert [(item.grant_id, item.credits, item.term_start) for item in grants] == [
        ("topup-1", 300, "2027-11-01T00:00:00Z")
    ]
    [expiry] = [entry for entry in store.ledger_entries("lic-w") if entry["type"] == "expiry"]
    assert (expiry["carried_over"], expiry["expired"], expiry["used_total"]) == ({"topup-1": 300}, 0, 1200)
    assert operator.audit(["lic-w"]) == {}


@pytest.mark.parametrize("credits_per_term", [0, 1000])
def test_rule10_a_single_site_license_of_any_term_credits_carries_onto_its_live_site(
    provision, activate, grant, balance, credits_per_term
):
    """Rule 1 on the carried credits, also when the plan's own credits are 0 (a license sold for
    top-ups only): the live site was activated after a staging site, and gets them all."""
    provision("lic-0", license_key="key-0-secret", expires_at=PAID, credits_per_term=credits_per_term)
    assert activate("key-0-secret", "staging.example.org", "staging").status == 201
    token = activate("key-0-secret", "shop.example.org").body["activation_token"]
    grant("lic-0", credits=5, expires_at=TWO_YEARS)

    assert renew({"license_id": "lic-0", "time": "2027-11-01T01:00:00Z"})["renewed"] == ["lic-0"]

    view = balance(token).body
    assert (view["license"]["credits_total"], view["license"]["unallocated"]) == (credits_per_term + 5, 0)
    assert (view["site"]["site"], view["site"]["allocated"]) == ("shop.example.org", credits_per_term + 5)
    assert operator.audit(["lic-0"]) == {}


def test_rule10_grants_of_several_expiries_carry_only_what_outlives_the_next_term(
    provision, activate, consume, grant, portal
):
    provision("lic-s", license_key="key-s-secret", plan="multi-site", site_limit=2, expires_at=PAID)
    token = activate("key-s-secret", "a.example.org").body["activation_token"]
    grant("lic-s", "goodwill", 200)  # no expiry: ends with this term
    grant("lic-s", "spring", 300, expires_at="2027-05-01T00:00:00Z")  # within this term
    grant("lic-s", "long", 400, expires_at=TWO_YEARS)
    grant("lic-s", "longer", 400, expires_at="2029-01-01T00:00:00Z")
    portal("put_allocations", "acct-1", "lic-s", {"allocations": {"a.example.org": 2000}})
    assert consume(token, 1700).status == 200  # 1000 own, 200 goodwill, 300 spring, 200 of long

    renew({"license_id": "lic-s", "time": "2027-11-01T01:00:00Z"})

    answer = portal("get_credits", "acct-1", "lic-s")
    assert (answer.body["credits_total"], answer.body["carried_over"], answer.body["unallocated"]) == (
        1600,
        600,
        1600,
    )
    assert [(row["grant_id"], row["credits"], row["remaining"]) for row in answer.body["grants"]] == [
        ("long", 200, 200),
        ("longer", 400, 400),
    ]
    assert operator.audit(["lic-s"]) == {}


def test_rule9_a_live_site_activated_while_a_grant_is_decided_still_gets_it(
    provision, activate, grant, monkeypatch
):
    provision("lic-race", license_key="key-race-secret", expires_at=PAID)
    original, done = store.write_grant, []

    def after_an_activation(read, *args, **kwargs):
        if not done:  # the live site activates after the grant read the license
            done.append(activate("key-race-secret", "shop.example.org").status)
        return original(read, *args, **kwargs)

    monkeypatch.setattr(store, "write_grant", after_an_activation)

    answer = grant("lic-race", credits=250)

    assert done == [201]
    assert (answer.body["unallocated"], _site(answer, "shop.example.org")["allocated"]) == (0, 1250)
