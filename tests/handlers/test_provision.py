"""Billing: PUT /v1/admin/licenses/{license_id}, including rule 7 (the rollout of existing customers)."""

from __future__ import annotations

import json

import pytest

from tests.handlers.conftest import LICENSE_TEMPLATE, invoke, make_event


def test_given_a_new_license_when_provisioned_then_201_with_its_figures_and_never_the_key(provision):
    answer = provision("lic-new", license_key="AGG-SECRET-KEY-1234")

    assert answer.status == 201
    assert answer.body["license_id"] == "lic-new"
    assert answer.body["credits_total"] == 1000
    assert answer.body["unallocated"] == 1000
    assert answer.body["allocated"] == 0
    assert answer.body["status"] == "active"
    assert answer.body["needs_allocation"] is False
    assert "AGG-SECRET-KEY-1234" not in json.dumps(answer.body)


def test_given_an_existing_license_when_provisioned_again_then_200(provision):
    provision("lic-again")
    assert provision("lic-again").status == 200


def test_the_key_is_stored_only_as_a_hash(provision, table):
    import boto3

    provision("lic-hash", license_key="AGG-PLAIN-KEY-5678")
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert items
    assert "AGG-PLAIN-KEY-5678" not in json.dumps(items)


def test_an_update_keeps_usage_and_a_new_credits_per_term_waits_for_the_next_term(
    provision, activate, consume
):
    provision("lic-upd", license_key="key-upd-secret")
    token = activate("key-upd-secret", "example.com").body["activation_token"]
    assert consume(token, 40).status == 200

    answer = provision("lic-upd", license_key="key-upd-secret", credits_per_term=5000)

    assert answer.status == 200
    assert answer.body["credits_per_term"] == 5000
    assert answer.body["credits_total"] == 1000
    [site] = answer.body["sites"]
    assert (site["allocated"], site["used"], site["remaining"]) == (1000, 40, 960)


def test_a_license_key_held_by_another_license_is_refused(provision):
    provision("lic-a", license_key="shared-key-123")
    answer = provision("lic-b", license_key="shared-key-123")
    assert (answer.status, answer.code) == (409, "license_key_in_use")


def test_a_rotated_key_unlocks_the_license_and_the_old_one_no_longer_does(provision, activate):
    provision("lic-rot", license_key="old-key-secret")
    provision("lic-rot", license_key="new-key-secret")

    assert activate("old-key-secret", "example.com").status == 404
    assert activate("new-key-secret", "example.com").status == 201


# -- rule 7 ---------------------------------------------------------------------------------


def _sites(answer):
    return {site["site"]: site for site in answer.body["sites"]}


def test_rule7_a_sole_live_site_follows_rule1(provision):
    answer = provision(
        "lic-r7a", activations=[{"site_url": "https://www.shop.com/", "environment": "production"}]
    )

    assert answer.status == 201
    assert _sites(answer)["shop.com"]["allocated"] == 1000
    assert answer.body["unallocated"] == 0
    assert answer.body["needs_allocation"] is False


def test_rule7_single_site_with_live_and_staging_gets_no_automatic_allocation(provision):
    answer = provision(
        "lic-r7b",
        activations=[
            {"site_url": "shop.com", "environment": "production"},
            {"site_url": "staging.shop.com", "environment": "production"},
        ],
    )

    sites = _sites(answer)
    assert sites["shop.com"]["allocated"] == 0
    assert sites["staging.shop.com"]["environment"] == "staging"
    assert sites["staging.shop.com"]["allocated"] == 0
    assert answer.body["unallocated"] == 1000
    assert answer.body["needs_allocation"] is True


def test_rule7_a_needs_allocation_license_gives_nothing_to_its_live_site_on_reactivation(provision, activate):
    provision(
        "lic-r7c",
        license_key="key-r7c-secret",
        activations=[
            {"site_url": "shop.com", "environment": "production"},
            {"site_url": "shop.local", "environment": "local"},
        ],
    )
    answer = activate("key-r7c-secret", "https://shop.com")

    assert answer.status == 200  # imported as active: the plugin only gets its token
    assert answer.body["credits"] == {"allocated": 0, "used": 0, "held": 0, "remaining": 0}


def test_rule7_multi_site_import_waits_for_the_customer(provision):
    answer = provision(
        "lic-r7d",
        plan="multi-site",
        site_limit=5,
        activations=[{"site_url": "a.com", "environment": "production"}],
    )
    assert _sites(answer)["a.com"]["allocated"] == 0
    assert answer.body["needs_allocation"] is True


def test_rule7_an_import_with_more_live_sites_than_the_limit_is_refused_and_writes_nothing(
    provision, activate
):
    answer = provision(
        "lic-r7e",
        license_key="key-r7e-secret",
        activations=[
            {"site_url": "a.com", "environment": "production"},
            {"site_url": "b.com", "environment": "production"},
        ],
    )
    assert (answer.status, answer.code) == (409, "activation_limit_reached")
    assert activate("key-r7e-secret", "a.com").status == 404


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("plan", "enterprise"),
        ("credits_per_term", 5.0),
        ("credits_per_term", "5"),
        ("credits_per_term", True),
        ("credits_per_term", -1),
        ("credits_per_term", 1_000_000_001),
        ("site_limit", 0),
        ("term_start", "2026-11-01"),
        ("term_start", "2026-11-01T00:00:00"),
        ("expires_at", "tomorrow"),
        ("term_months", 0),
        ("account_id", ""),
        ("activations", [{"site_url": "ftp://a.com", "environment": "production"}]),
        ("activations", [{"site_url": "a.com", "environment": "prod"}]),
        (
            "activations",
            [
                {"site_url": "a.com", "environment": "production"},
                {"site_url": "https://www.a.com/", "environment": "staging"},
            ],
        ),
        ("term_end", "2026-10-01T00:00:00Z"),
        ("surprise", 1),
    ],
)
def test_an_invalid_field_is_a_422_and_writes_nothing(provision, activate, field, value):
    answer = provision("lic-bad", license_key="key-bad-secret", **{field: value})

    assert (answer.status, answer.code) == (422, "validation_error")
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.body["errors"]
    assert activate("key-bad-secret", "a.com").status == 404


def test_a_missing_field_is_a_422(table):
    body = {key: value for key, value in LICENSE_TEMPLATE.items() if key != "plan"} | {
        "license_key": "k-12345678"
    }
    answer = invoke("provision", make_event("provision", body=body, path_license_id="lic-missing"))
    assert (answer.status, answer.code) == (422, "validation_error")
    assert any(error["loc"][-1] == "plan" for error in answer.body["errors"])


def test_a_malformed_body_is_a_400(table):
    answer = invoke("provision", make_event("provision", raw_body="{not json", path_license_id="lic-x"))
    assert (answer.status, answer.code) == (400, "malformed_json")


def test_an_invalid_license_id_in_the_path_is_a_422(provision):
    answer = provision("bad id!")
    assert (answer.status, answer.code) == (422, "validation_error")


def test_timestamps_are_stored_in_utc(provision):
    answer = provision("lic-tz", term_start="2026-11-01T02:00:00+02:00")
    assert answer.body["term_start"] == "2026-11-01T00:00:00Z"
