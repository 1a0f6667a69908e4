"""Licenses of any size through the functions (moto): limits kept by counters, imports of many
sites, the portal's removal of a site, provisioning that repairs the sites' copies, and license
items written before the counters existed."""

from __future__ import annotations

import boto3
import pytest

from ai_credits import store
from ai_credits.errors import Unavailable
from tests.handlers.conftest import make_event

PAID = "2028-11-01T00:00:00Z"


def _sites(answer):
    return {site["site"]: site for site in answer.body["sites"]}


# -- the staging/development cap ----------------------------------------------------------


def test_staging_and_development_activations_are_capped_at_10_per_allowed_live_site(provision, activate):
    provision("lic-cap", license_key="key-cap-secret", plan="multi-site", site_limit=2)
    for index in range(20):
        environment = "staging" if index % 2 else "development"
        assert activate("key-cap-secret", f"copy{index}.example.org", environment).status == 201

    refused = activate("key-cap-secret", "copy20.example.org", "staging")
    local = activate("key-cap-secret", "localhost:8080/copy21", "production")  # a local host: not live

    assert (refused.status, refused.code) == (409, "activation_limit_reached")
    assert (local.status, local.code) == (409, "activation_limit_reached")
    assert activate("key-cap-secret", "shop.example.org").status == 201, "live sites count apart"


def test_a_deactivated_copy_frees_its_place_under_the_cap(provision, activate, deactivate):
    provision("lic-cap2", license_key="key-cap2-secret", plan="multi-site", site_limit=1)
    tokens = [
        activate("key-cap2-secret", f"copy{index}.example.org", "staging").body["activation_token"]
        for index in range(10)
    ]
    assert activate("key-cap2-secret", "copy10.example.org", "staging").status == 409

    assert deactivate(tokens[0]).status == 204

    assert activate("key-cap2-secret", "copy10.example.org", "staging").status == 201


# -- imports of many sites ----------------------------------------------------------------


def _imports(count: int, environment: str = "production") -> list[dict[str, str]]:
    return [
        {"site_url": f"imported{index:03d}.example.org", "environment": environment} for index in range(count)
    ]


def test_a_license_imported_with_250_sites_has_them_all_and_counts_them(provision):
    answer = provision("lic-250", plan="multi-site", site_limit=300, activations=_imports(250))

    assert answer.status == 201
    assert len(answer.body["sites"]) == 250 and answer.body["needs_allocation"] is True
    license_ = store.get_license("lic-250")
    assert license_ is not None and (license_.live_active, license_.site_items) == (250, 250)


def test_an_import_stopped_between_its_transactions_is_completed_by_billings_retry(provision, monkeypatch):
    original, calls = store.add_sites, []

    def stopping(read, sites):
        calls.append(len(sites))
        original(read, sites[: store._SITES_PER_WRITE])  # one more transaction, then no answer
        raise Unavailable("the database did not answer in time")

    monkeypatch.setattr(store, "add_sites", stopping)
    first = provision("lic-part", plan="multi-site", site_limit=400, activations=_imports(300))
    monkeypatch.setattr(store, "add_sites", original)

    assert first.status == 503
    assert len(store.get_license_with_sites("lic-part")[1]) < 300
    again = provision("lic-part", plan="multi-site", site_limit=400, activations=_imports(300))
    assert again.status == 200 and len(again.body["sites"]) == 300
    license_ = store.get_license("lic-part")
    assert license_ is not None and (license_.live_active, license_.site_items) == (300, 300)


def test_an_import_beyond_the_site_limit_is_refused_whole(provision):
    provision("lic-over", plan="multi-site", site_limit=100, activations=_imports(100))

    answer = provision("lic-over", plan="multi-site", site_limit=100, activations=_imports(101))

    assert (answer.status, answer.code) == (409, "activation_limit_reached")
    assert len(store.get_license_with_sites("lic-over")[1]) == 100


# -- the portal removes a site --------------------------------------------------------------


def test_the_portal_removes_a_site_its_credits_return_and_its_token_stops_working(
    provision, activate, consume, portal, balance
):
    provision("lic-rm", license_key="key-rm-secret", plan="multi-site", site_limit=2)
    token = activate("key-rm-secret", "lost.example.org").body["activation_token"]
    portal("put_allocations", "acct-1", "lic-rm", {"allocations": {"lost.example.org": 300}})
    assert consume(token, 40).status == 200

    answer = portal("portal_deactivate", "acct-1", "lic-rm", {"site_url": "https://www.Lost.example.org/"})

    assert answer.status == 200
    site = _sites(answer)["lost.example.org"]
    assert (site["active"], site["allocated"], site["used"], site["remaining"]) == (False, 40, 40, 0)
    assert answer.body["unallocated"] == 960
    assert balance(token).status == 401 and consume(token, 1, request_id="after").status == 401


@pytest.mark.parametrize(
    ("account", "site_url"),
    [("acct-2", "kept.example.org"), ("acct-1", "never.example.org"), ("acct-1", "gone.example.org")],
    ids=["another account's license", "a site never activated", "a site already removed"],
)
def test_the_portal_cannot_remove_what_is_not_an_active_site_of_its_license(
    provision, activate, deactivate, portal, account, site_url, table
):
    provision("lic-rm2", license_key="key-rm2-secret", plan="multi-site", site_limit=3)
    activate("key-rm2-secret", "kept.example.org")
    deactivate(activate("key-rm2-secret", "gone.example.org").body["activation_token"])
    before = boto3.client("dynamodb").scan(TableName=table)["Items"]

    answer = portal("portal_deactivate", account, "lic-rm2", {"site_url": site_url})

    assert (answer.status, answer.code) == (404, "not_found")
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == before, "nothing written"


def test_a_changed_license_key_revokes_nothing_the_portal_removal_does(provision, activate, consume, portal):
    provision("lic-leak", license_key="leaked-key-1", plan="multi-site", site_limit=2)
    token = activate("leaked-key-1", "leaky.example.org").body["activation_token"]
    portal("put_allocations", "acct-1", "lic-leak", {"allocations": {"leaky.example.org": 10}})

    provision("lic-leak", license_key="fresh-key-2", plan="multi-site", site_limit=2)
    assert consume(token, 1).status == 200, "a new key does not cut an activated site off"
    portal("portal_deactivate", "acct-1", "lic-leak", {"site_url": "leaky.example.org"})

    assert consume(token, 1, request_id="after").status == 401


# -- provisioning repairs the sites' copies -------------------------------------------------


def test_a_retried_provisioning_repairs_every_sites_copy_of_expires_at(provision, activate, consume):
    provision("lic-fix", license_key="key-fix-secret", plan="multi-site", site_limit=3, expires_at=PAID)
    tokens = [
        activate("key-fix-secret", f"s{index}.example.org").body["activation_token"] for index in range(3)
    ]
    # Given a shortening that reached the license and one site before it stopped
    shortened = "2026-11-20T00:00:00Z"
    provision("lic-fix", license_key="key-fix-secret", plan="multi-site", site_limit=3, expires_at=shortened)
    for index in (1, 2):
        boto3.client("dynamodb").update_item(
            TableName=store.settings().table_name,
            Key=store.site_key("lic-fix", f"s{index}.example.org"),
            UpdateExpression="SET expires_at = :paid",
            ExpressionAttributeValues={":paid": {"S": PAID}},
        )

    # When billing retries the same provisioning
    provision("lic-fix", license_key="key-fix-secret", plan="multi-site", site_limit=3, expires_at=shortened)

    # Then no site can spend past the shortened expiry
    _, sites = store.get_license_with_sites("lic-fix")
    assert {site.expires_at for site in sites} == {shortened}
    assert [consume(token, 1).code for token in tokens] == ["license_expired"] * 3


# -- license items older than the counters --------------------------------------------------


def test_a_license_item_written_before_the_counters_gets_them_on_its_next_activation(
    provision, activate, table
):
    provision("lic-old", license_key="key-old-secret", plan="multi-site", site_limit=1,
              activations=[{"site_url": "old.example.org", "environment": "production"}])  # fmt: skip
    client = boto3.client("dynamodb")
    client.update_item(  # as the item was written before: a map of its sites, no counters
        TableName=table,
        Key=store.license_key("lic-old"),
        UpdateExpression="SET sites = :sites REMOVE live_active, nonlive_active, site_items",
        ExpressionAttributeValues={
            ":sites": {"M": {"old.example.org": {"M": {
                "environment": {"S": "live"}, "network": {"BOOL": False}, "active": {"BOOL": True},
                "used": {"N": "0"},
            }}}}
        },
    )  # fmt: skip

    assert activate("key-old-secret", "another.example.org").code == "activation_limit_reached"
    assert activate("key-old-secret", "copy.example.org", "staging").status == 201

    item = client.get_item(TableName=table, Key=store.license_key("lic-old"))["Item"]
    assert "sites" not in item
    assert (item["live_active"], item["nonlive_active"], item["site_items"]) == (
        {"N": "1"},
        {"N": "1"},
        {"N": "2"},
    )


def test_the_sample_event_of_the_portals_removal_names_its_route():
    event = make_event("portal_deactivate")
    assert event["routeKey"] == "POST /v1/licenses/{license_id}/deactivations"
