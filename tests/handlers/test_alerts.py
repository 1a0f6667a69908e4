"""Rule 13's alerts in the balance (the plugin's admin notices) and the credits view, and the
license's ``low_balance_percent`` setting (provisioning replaces it; omitted: 20)."""

from __future__ import annotations

import pytest

PAID = "2029-01-01T00:00:00Z"


@pytest.fixture
def token(provision, activate):
    provision("lic-al", license_key="key-al-secret", credits_per_term=100, expires_at=PAID)
    return activate("key-al-secret", "shop.example.org").body["activation_token"]


def test_the_balance_shows_low_then_exhausted(token, consume, balance):
    assert balance(token).body["alerts"] == []

    consume(token, 80)
    low = balance(token).body["alerts"]
    consume(token, 20, request_id="req-2")
    exhausted = balance(token).body["alerts"]

    assert low == [{"code": "credits_low", "threshold_percent": 20}]
    assert exhausted == [{"code": "credits_exhausted"}]


def test_the_threshold_is_the_licenses_setting_and_0_turns_low_off(
    provision, token, consume, balance, portal
):
    consume(token, 60)
    assert balance(token).body["alerts"] == []

    answer = provision("lic-al", license_key="key-al-secret", credits_per_term=100, expires_at=PAID,
                       low_balance_percent=50)  # fmt: skip
    assert answer.body["low_balance_percent"] == 50
    assert balance(token).body["alerts"] == [{"code": "credits_low", "threshold_percent": 50}]

    provision(
        "lic-al", license_key="key-al-secret", credits_per_term=100, expires_at=PAID, low_balance_percent=0
    )
    assert balance(token).body["alerts"] == []
    provision("lic-al", license_key="key-al-secret", credits_per_term=100, expires_at=PAID)  # omitted: 20
    assert portal("get_credits", "acct-1", "lic-al").body["low_balance_percent"] == 20


@pytest.mark.parametrize("percent", [-1, 101, "20", 2.5])
def test_a_threshold_out_of_range_is_a_422(provision, percent):
    answer = provision("lic-bad", low_balance_percent=percent)
    assert (answer.status, answer.code) == (422, "validation_error")


def test_the_credits_view_has_license_alerts_on_top_and_site_alerts_per_site(
    provision, activate, consume, portal
):
    provision("lic-av", license_key="key-av-secret", plan="multi-site", site_limit=2, expires_at=PAID)
    token = activate("key-av-secret", "a.example.org").body["activation_token"]
    activate("key-av-secret", "b.example.org")
    needs = portal("get_credits", "acct-1", "lic-av").body
    portal("put_allocations", "acct-1", "lic-av", {"allocations": {"a.example.org": 10, "b.example.org": 10}})
    consume(token, 10)

    view = portal("get_credits", "acct-1", "lic-av").body

    assert (needs["alerts"], view["alerts"]) == ([{"code": "allocation_needed"}], [])
    assert {site["site"]: site["alerts"] for site in view["sites"]} == {
        "a.example.org": [{"code": "credits_exhausted"}],
        "b.example.org": [],
    }


def test_an_expired_license_says_so_in_the_balance(provision, activate, balance):
    provision("lic-ex", license_key="key-ex-secret", expires_at=PAID)
    token = activate("key-ex-secret", "shop.example.org").body["activation_token"]
    provision("lic-ex", license_key="key-ex-secret", expires_at="2026-01-01T00:00:00Z")

    assert balance(token).body["alerts"] == [{"code": "license_expired"}]
