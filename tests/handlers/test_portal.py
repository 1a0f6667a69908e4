"""The portal on moto: licenses list, Manage AI Credits, Apply (rules 1, 2, 3, 8)."""

from __future__ import annotations

import pytest

from tests.handlers.conftest import invoke, make_event


@pytest.fixture
def multi(provision, activate):
    """A multi-site license of acct-1 with three active sites and one deactivated one."""
    provision("lic-m", license_key="key-m-secret", plan="multi-site", site_limit=3, credits_per_term=1000)
    tokens = {
        site: activate("key-m-secret", site, environment).body["activation_token"]
        for site, environment in [
            ("a.com", "production"),
            ("b.com", "production"),
            ("staging.a.com", "production"),
        ]
    }
    return tokens


def test_licenses_lists_only_the_callers_licenses(provision, portal):
    provision("lic-1", account_id="acct-1")
    provision("lic-2", account_id="acct-1", plan="multi-site", expires_at="2020-01-01T00:00:00Z")
    provision("lic-3", account_id="acct-2")

    answer = portal("list_licenses", "acct-1")

    assert answer.status == 200
    assert answer.body == {
        "licenses": [
            {"license_id": "lic-1", "plan": "single-site", "status": "active", "term_end": "2027-11-01T00:00:00Z",
             "credits_total": 1000, "unallocated": 1000},
            {"license_id": "lic-2", "plan": "multi-site", "status": "expired", "term_end": "2027-11-01T00:00:00Z",
             "credits_total": 1000, "unallocated": 1000},
        ]
    }  # fmt: skip


def test_credits_view_lists_every_site_with_its_figures(multi, portal):
    answer = portal("get_credits", "acct-1", "lic-m")

    assert answer.status == 200
    assert answer.body["needs_allocation"] is True
    assert answer.body["credits_total"] == 1000
    assert [site["site"] for site in answer.body["sites"]] == ["a.com", "b.com", "staging.a.com"]
    staging = answer.body["sites"][2]
    assert staging["environment"] == "staging"
    assert staging["active"] is True
    assert {"allocated", "used", "remaining", "activated_at", "network"} <= set(staging)


def test_another_accounts_license_is_a_404_like_a_missing_one(multi, portal):
    other = portal("get_credits", "acct-2", "lic-m")
    missing = portal("get_credits", "acct-1", "lic-none")

    assert (other.status, other.code) == (404, "not_found")
    assert (missing.status, missing.code) == (404, "not_found")
    assert other.body["detail"].replace("lic-m", "X") == missing.body["detail"].replace("lic-none", "X")
    assert portal("put_allocations", "acct-2", "lic-m", {"allocations": {"a.com": 1}}).status == 404


def test_apply_sets_absolute_allocations_and_clears_needs_allocation(multi, portal, balance):
    answer = portal(
        "put_allocations", "acct-1", "lic-m", {"allocations": {"https://www.a.com/": 600, "b.com": 300}}
    )

    assert answer.status == 200
    sites = {site["site"]: site for site in answer.body["sites"]}
    assert (
        sites["a.com"]["allocated"],
        sites["b.com"]["allocated"],
        sites["staging.a.com"]["allocated"],
    ) == (600, 300, 0)
    assert (answer.body["allocated"], answer.body["unallocated"]) == (900, 100)
    assert answer.body["needs_allocation"] is False
    assert answer.body == portal("get_credits", "acct-1", "lic-m").body
    assert balance(multi["a.com"]).body["site"]["remaining"] == 600


def test_apply_keeps_sites_not_named(multi, portal):
    portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 600, "b.com": 300}})
    answer = portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 100}})
    sites = {site["site"]: site["allocated"] for site in answer.body["sites"]}
    assert sites == {"a.com": 100, "b.com": 300, "staging.a.com": 0}
    assert answer.body["unallocated"] == 600


def test_rule3_apply_beyond_credits_total_is_over_allocation_with_available_and_requested(multi, portal):
    portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 600, "b.com": 300}})

    answer = portal(
        "put_allocations", "acct-1", "lic-m", {"allocations": {"b.com": 350, "staging.a.com": 60}}
    )

    assert (answer.status, answer.code) == (409, "over_allocation")
    assert (answer.body["available"], answer.body["requested"]) == (400, 410)
    assert portal("get_credits", "acct-1", "lic-m").body["unallocated"] == 100


def test_apply_below_what_a_site_used_is_below_used(multi, portal, consume):
    portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 600}})
    consume(multi["a.com"], 250)

    answer = portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 200, "b.com": 10}})

    assert (answer.status, answer.code) == (409, "below_used")
    assert (answer.body["site"], answer.body["used"]) == ("a.com", 250)
    assert portal("get_credits", "acct-1", "lic-m").body["allocated"] == 600


def test_apply_to_a_site_that_is_not_active_is_a_404_checked_before_totals(multi, portal, deactivate):
    deactivate(multi["b.com"])
    for allocations in ({"b.com": 10}, {"unknown.com": 10}, {"a.com": 5000, "unknown.com": 1}):
        answer = portal("put_allocations", "acct-1", "lic-m", {"allocations": allocations})
        assert (answer.status, answer.code) == (404, "not_found"), allocations


def test_rule8_apply_on_an_expired_license_is_a_403(multi, portal, provision):
    provision(
        "lic-m",
        license_key="key-m-secret",
        plan="multi-site",
        site_limit=3,
        expires_at="2020-01-01T00:00:00Z",
    )
    answer = portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 1}})
    assert (answer.status, answer.code) == (403, "license_expired")
    assert portal("get_credits", "acct-1", "lic-m").body["status"] == "expired"


@pytest.mark.parametrize(
    "body",
    [
        {"allocations": {"a.com": -1}},
        {"allocations": {"a.com": 1.5}},
        {"allocations": {"a.com": "1"}},
        {"allocations": {"a.com": True}},
        {"allocations": {"a.com": 1_000_000_001}},
        {"allocations": {"ftp://a.com": 1}},
        {"allocations": {"a.com": 1, "www.a.com": 2}},
        {"allocations": {f"s{index}.com": 0 for index in range(99)}},
        {"allocations": []},
        {},
    ],
)
def test_invalid_apply_bodies_are_a_422_and_change_nothing(multi, portal, body):
    answer = portal("put_allocations", "acct-1", "lic-m", body)
    assert (answer.status, answer.code) == (422, "validation_error")
    assert portal("get_credits", "acct-1", "lic-m").body["allocated"] == 0


def test_rule1_single_site_credits_can_be_moved_to_staging_within_the_total(
    provision, activate, portal, consume
):
    provision("lic-s", license_key="key-s-secret")
    live = activate("key-s-secret", "shop.com").body["activation_token"]
    staging = activate("key-s-secret", "staging.shop.com").body["activation_token"]

    moved = portal(
        "put_allocations", "acct-1", "lic-s", {"allocations": {"shop.com": 900, "staging.shop.com": 100}}
    )

    assert moved.status == 200
    assert consume(staging, 100).status == 200
    assert consume(live, 901).status == 402
    over = portal("put_allocations", "acct-1", "lic-s", {"allocations": {"staging.shop.com": 101}})
    assert over.code == "over_allocation"


def test_portal_routes_need_a_subject(multi):
    event = make_event("get_credits", path_license_id="lic-m")
    event["requestContext"]["authorizer"]["jwt"]["claims"].pop("sub")
    answer = invoke("get_credits", event)
    assert (answer.status, answer.code) == (401, "unauthorized")


def test_apply_requests(multi, portal, dynamodb_calls):
    dynamodb_calls.clear()
    portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 600, "b.com": 300}})
    assert dict(dynamodb_calls) == {"Query": 1, "TransactWriteItems": 1}
