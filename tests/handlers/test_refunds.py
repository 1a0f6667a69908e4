"""Refunds (rule 12) through the billing function, on moto: once, at most what was charged, in the
consume's own term only; an inactive site's refund goes back to ``unallocated``."""

from __future__ import annotations

import boto3
import pytest

from ai_credits import store
from ai_credits.services import operator
from tests.handlers.conftest import invoke, make_event, renew

PAID = "2029-11-01T00:00:00Z"


@pytest.fixture
def refund(table):
    def _refund(license_id: str, site_url: str, request_id: str = "req-1", **fields):
        body = {"site_url": site_url, "request_id": request_id, **fields}
        return invoke("refund", make_event("refund", body=body, path_license_id=license_id))

    return _refund


@pytest.fixture
def spent(provision, activate, consume):
    """lic-r: a single-site license whose live site charged 40 credits (req-1)."""
    provision("lic-r", license_key="key-r-secret", expires_at=PAID)
    token = activate("key-r-secret", "shop.example.org").body["activation_token"]
    assert consume(token, 40, "req-1").status == 200
    return token


def test_a_refund_gives_the_charge_back_to_the_site_once(spent, refund, balance, consume):
    answer = refund("lic-r", "https://www.shop.example.org/", reason="the rewrite failed")

    assert (answer.status, answer.body) == (
        201,
        {
            "request_id": "req-1",
            "site": "shop.example.org",
            "refunded": 40,
            "remaining": 1000,
            "replayed": False,
        },
    )
    assert balance(spent).body["site"]["used"] == 0
    replay = consume(spent, 40, "req-1")
    assert (replay.body["replayed"], replay.body["remaining"]) == (True, 960), "the consume's first answer"
    assert operator.audit(["lic-r"]) == {}


def test_the_same_refund_again_answers_the_first_answer_and_another_amount_is_a_conflict(
    spent, refund, table
):
    first = refund("lic-r", "shop.example.org", amount=15)
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]

    again = refund("lic-r", "shop.example.org", amount=15)
    other = refund("lic-r", "shop.example.org")  # all it charged: 40

    assert (first.status, again.status) == (201, 200)
    assert again.body == {**first.body, "replayed": True}
    assert (other.status, other.code) == (409, "idempotency_conflict")
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == items, "nothing written"


@pytest.mark.parametrize(
    ("site_url", "request_id", "fields", "status", "code"),
    [
        ("shop.example.org", "req-1", {"amount": 41}, 422, "validation_error"),
        ("shop.example.org", "req-1", {"amount": 0}, 422, "validation_error"),
        ("shop.example.org", "req-9", {}, 404, "not_found"),
        ("other.example.org", "req-1", {}, 404, "not_found"),
        ("shop.example.org", "req-1", {"subsite_url": "blog.shop.example.org"}, 404, "not_found"),
        ("shop.example.org", "req 1", {}, 422, "validation_error"),
    ],
    ids=["more than charged", "zero", "unknown consume", "another site", "another sub-site", "bad id"],
)
def test_bad_refunds_are_refused_and_change_nothing(
    spent, refund, table, site_url, request_id, fields, status, code
):
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]

    answer = refund("lic-r", site_url, request_id, **fields)

    assert (answer.status, answer.code) == (status, code)
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == items


def test_a_consume_of_an_earlier_term_cannot_be_refunded(spent, refund):
    renew({"license_id": "lic-r", "time": "2027-11-01T01:00:00Z"})

    answer = refund("lic-r", "shop.example.org")

    assert (answer.status, answer.code) == (409, "term_ended")


def test_a_deactivated_sites_refund_returns_to_unallocated(spent, refund, deactivate, portal):
    assert deactivate(spent).status == 204

    answer = refund("lic-r", "shop.example.org", amount=10)

    assert (answer.status, answer.body["remaining"]) == (201, 0)
    view = portal("get_credits", "acct-1", "lic-r").body
    [site] = view["sites"]
    assert (site["allocated"], site["used"], view["unallocated"]) == (30, 30, 970)
    assert operator.audit(["lic-r"]) == {}


def test_a_refund_lowers_what_the_term_used_before_rule_10_decides_the_carry_over(spent, refund, consume):
    invoke("grant", make_event("grant", body={"grant_id": "g", "credits": 500, "expires_at": "2028-11-01T00:00:00Z"},
                               path_license_id="lic-r"))  # fmt: skip
    assert consume(spent, 1000, "req-2").status == 200  # 1,040 used: 40 of the grant
    refund("lic-r", "shop.example.org", "req-2", amount=100)  # 940 used: none of the grant

    renew({"license_id": "lic-r", "time": "2027-11-01T01:00:00Z"})

    license_ = store.get_license("lic-r")
    assert license_ is not None and (license_.carried_over, license_.credits_total) == (500, 1500)
