"""The pure rules, table-driven: no DynamoDB, no clock."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ai_credits import rules
from ai_credits.clock import add_months, format_timestamp, parse_timestamp
from ai_credits.credentials import (
    TOKEN_SECRET_BYTES,
    bearer_token,
    hash_license_key,
    new_activation_token,
    parse_activation_token,
)
from ai_credits.domain import License, Site

LICENSE = License(
    license_id="lic-1",
    account_id="acct-1",
    plan="single-site",
    site_limit=1,
    credits_per_term=1000,
    term_months=12,
    term_start="2026-11-01T00:00:00Z",
    term_end="2027-11-01T00:00:00Z",
    expires_at="2027-11-01T00:00:00Z",
    credits_total=1000,
    unallocated=1000,
    needs_allocation=False,
    key_hash="h",
    version=1,
)


def _site(
    name: str, environment: str = "live", active: bool = True, allocated: int = 0, used: int = 0
) -> Site:
    return Site(
        license_id="lic-1", site=name, environment=environment, network=False, active=active,
        allocated=allocated, used=used, remaining=allocated - used if active else 0, activated_at="t",
    )  # fmt: skip


ONE_LIVE = replace(LICENSE, unallocated=0, live_active=1, site_items=1)
ONE_STAGING = replace(LICENSE, nonlive_active=1, site_items=1)


@pytest.mark.parametrize(
    ("license_", "previous", "environment", "created", "auto_allocate", "sets_needs_allocation"),
    [
        pytest.param(LICENSE, None, "live", True, 1000, False, id="rule1: first live site takes everything"),
        pytest.param(LICENSE, None, "staging", True, 0, False, id="rule1: staging starts at 0"),
        pytest.param(LICENSE, None, "development", True, 0, False, id="rule1: development starts at 0"),
        pytest.param(
            replace(LICENSE, unallocated=400, site_items=1), _site("a.com", active=False, allocated=600, used=600),
            "live", True, 400, False, id="rule1: reactivated live site takes the unallocated rest",
        ),
        pytest.param(
            replace(LICENSE, needs_allocation=True),
            None, "live", True, 0, False, id="rule7: nothing automatic while the customer must allocate",
        ),
        pytest.param(
            replace(LICENSE, plan="multi-site", site_limit=3),
            None, "live", True, 0, True, id="rule2: first multi-site activation needs allocation",
        ),
        pytest.param(
            replace(LICENSE, plan="multi-site", site_limit=3, live_active=1, site_items=1),
            None, "live", True, 0, False, id="rule2: later multi-site activations leave the flag",
        ),
        pytest.param(
            ONE_STAGING, _site("a.com", "staging"),
            "live", False, 1000, False, id="a staging site turning live is rule 1's live site",
        ),
    ],
)  # fmt: skip
def test_plan_activation(license_, previous, environment, created, auto_allocate, sets_needs_allocation):
    plan = rules.plan_activation(license_, previous, environment, network=False)

    assert (plan.created, plan.auto_allocate, plan.sets_needs_allocation, plan.rotate_only) == (
        created,
        auto_allocate,
        sets_needs_allocation,
        False,
    )


def test_an_active_site_activated_again_as_it_is_only_rotates_its_token():
    plan = rules.plan_activation(ONE_LIVE, _site("a.com"), "live", network=False)

    assert plan.rotate_only and not plan.created
    assert (plan.live_delta, plan.nonlive_delta, plan.auto_allocate) == (0, 0, 0)


@pytest.mark.parametrize(
    ("previous", "environment", "deltas"),
    [
        (None, "live", (1, 0)),
        (None, "staging", (0, 1)),
        (_site("a.com", "staging"), "live", (1, -1)),
        (_site("a.com", "live"), "development", (-1, 1)),
        (_site("a.com", "staging"), "development", (0, 0)),
        (_site("a.com", "live", active=False), "live", (1, 0)),
    ],
)
def test_the_counters_move_by_what_the_site_was_and_becomes(previous, environment, deltas):
    license_ = replace(LICENSE, site_limit=2, live_active=1, nonlive_active=1, needs_allocation=True)

    plan = rules.plan_activation(license_, previous, environment, network=False)

    assert (plan.live_delta, plan.nonlive_delta) == deltas


@pytest.mark.parametrize(
    ("license_", "previous", "environment"),
    [
        (ONE_LIVE, None, "live"),
        (replace(ONE_LIVE, nonlive_active=10), None, "staging"),
        (replace(ONE_LIVE, nonlive_active=10), None, "development"),
        (replace(LICENSE, site_limit=3, nonlive_active=30), None, "staging"),
        (replace(ONE_LIVE, nonlive_active=1), _site("s.a.com", "staging"), "live"),
    ],
    ids=[
        "live beyond site_limit",
        "staging beyond 10x",
        "development beyond 10x",
        "10x of 3",
        "turning live",
    ],
)
def test_a_new_activation_beyond_its_limit_is_refused(license_, previous, environment):
    with pytest.raises(rules.ActivationLimit):
        rules.plan_activation(license_, previous, environment, network=False)


@pytest.mark.parametrize(
    ("license_", "previous", "environment"),
    [
        (ONE_LIVE, _site("a.com"), "live"),
        (ONE_LIVE, None, "staging"),
        (replace(ONE_LIVE, nonlive_active=9), None, "staging"),
        (replace(LICENSE, live_active=0, site_items=1), _site("a.com", active=False), "live"),
        (replace(ONE_LIVE, nonlive_active=10), _site("s.a.com", "staging"), "development"),
    ],
    ids=["the same live site", "staging beside a live site", "the 10th staging site", "live after deactivation",
         "staging to development at the cap"],
)  # fmt: skip
def test_the_limits_count_only_other_active_sites(license_, previous, environment):
    rules.plan_activation(license_, previous, environment, network=False)


def _imported(*pairs):
    return [rules.ImportedSite(site, environment, network=False) for site, environment in pairs]


@pytest.mark.parametrize(
    ("plan", "sites", "allocations", "needs_allocation"),
    [
        ("single-site", [], {}, False),
        ("single-site", [("a.com", "live")], {"a.com": 1000}, False),
        ("single-site", [("a.com", "live"), ("s.a.com", "staging")], {"a.com": 0, "s.a.com": 0}, True),
        ("single-site", [("a.com", "live"), ("a.local", "development")], {"a.com": 0, "a.local": 0}, True),
        ("single-site", [("s.a.com", "staging")], {"s.a.com": 0}, False),
        ("multi-site", [("a.com", "live")], {"a.com": 0}, True),
        ("multi-site", [("a.com", "live"), ("b.com", "live")], {"a.com": 0, "b.com": 0}, True),
    ],
)
def test_rule7_import_allocations(plan, sites, allocations, needs_allocation):
    assert rules.import_allocations(plan, 1000, _imported(*sites)) == (allocations, needs_allocation)


@pytest.mark.parametrize(
    ("expires_at", "now", "expired"),
    [
        ("2027-01-01T00:00:00Z", "2026-12-31T23:59:59Z", False),
        ("2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z", True),
        ("2027-01-01T00:00:00Z", "2027-01-01T00:00:01Z", True),
    ],
)
def test_rule8_expiry(expires_at, now, expired):
    assert rules.is_expired(expires_at, now) is expired
    assert rules.license_status(replace(LICENSE, expires_at=expires_at), now) == (
        "expired" if expired else "active"
    )


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        ("2026-01-31T00:00:00Z", 1, "2026-02-28T00:00:00Z"),
        ("2028-01-31T00:00:00Z", 1, "2028-02-29T00:00:00Z"),
        ("2026-11-25T09:00:00Z", 12, "2027-11-25T09:00:00Z"),
        ("2026-12-15T00:00:00Z", 1, "2027-01-15T00:00:00Z"),
        ("2026-03-31T10:30:00Z", 25, "2028-04-30T10:30:00Z"),
    ],
)
def test_calendar_months(start, months, end):
    assert format_timestamp(add_months(parse_timestamp(start), months)) == end


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("2026-11-25T09:00:00Z", "2026-11-25T09:00:00Z"),
        ("2026-11-25T10:00:00+01:00", "2026-11-25T09:00:00Z"),
        ("2026-11-25T09:00:00.999Z", "2026-11-25T09:00:00Z"),
    ],
)
def test_timestamps_normalize_to_utc_seconds(text, normalized):
    assert format_timestamp(parse_timestamp(text)) == normalized


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError):
        parse_timestamp("2026-11-25T09:00:00")
    with pytest.raises(ValueError):
        format_timestamp(datetime(2026, 11, 25))
    assert format_timestamp(datetime(2026, 11, 25, tzinfo=UTC)) == "2026-11-25T00:00:00Z"


# -- credentials -------------------------------------------------------------------------------


def test_a_token_names_its_activation_and_only_its_hash_is_kept():
    token, token_hash = new_activation_token("lic-1", "example.com/blog")

    parsed = parse_activation_token(token)

    assert parsed is not None
    assert (parsed.license_id, parsed.site) == ("lic-1", "example.com/blog")
    assert parsed.matches(token_hash)
    assert token_hash not in token
    assert not parsed.matches(new_activation_token("lic-1", "example.com/blog")[1])
    assert not parsed.matches(None)


def test_tokens_carry_at_least_128_random_bits_and_differ():
    assert TOKEN_SECRET_BYTES * 8 >= 128
    assert len({new_activation_token("lic-1", "a.com")[0] for _ in range(100)}) == 100


@pytest.mark.parametrize(
    "token",
    ["", "act1", "act1..", "act2.bGljLTEfYS5jb20.AAAA", "act1.!!!.AAAA", "act1.bGljLTE.AAAA", "x" * 2000],
)
def test_malformed_tokens_are_rejected(token):
    assert parse_activation_token(token) is None


def test_a_tampered_secret_does_not_match():
    token, token_hash = new_activation_token("lic-1", "a.com")
    prefix, activation, secret = token.split(".")
    tampered = parse_activation_token(f"{prefix}.{activation}.{secret[::-1]}")
    assert tampered is None or not tampered.matches(token_hash)


def _respelled(text: str, index: int, alphabet_step: int) -> str:
    """``text`` with the base64url character at ``index`` moved ``alphabet_step`` places."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    moved = alphabet[(alphabet.index(text[index]) + alphabet_step) % 64]
    return text[:index] + moved + text[index + 1 :]


def test_a_token_has_one_spelling_only():
    """The secret's 43 characters carry 2 unused bits: a last character differing only there
    decodes to the same secret with a lenient decoder. Such a spelling, or characters outside
    base64url that a lenient decoder skips, is not a token."""
    token, token_hash = new_activation_token("lic-1", "a.com")
    prefix, activation, secret = token.split(".")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(secret[-1])
    same_bytes = _respelled(secret, len(secret) - 1, 1 if last % 4 == 0 else -1)  # only the unused bits
    assert base64.urlsafe_b64decode(same_bytes + "=") == base64.urlsafe_b64decode(secret + "=")
    for spelling in (
        f"{prefix}.{activation}.{same_bytes}",
        f"{prefix}.{activation}.{secret[:20]}%{secret[20:]}",
        f"{prefix}.{activation}.{secret[:20]}+{secret[21:]}",
        f"{prefix}.{activation[:4]}!{activation[4:]}.{secret}",
    ):
        assert parse_activation_token(spelling) is None, spelling
    parsed = parse_activation_token(token)
    assert parsed is not None and parsed.matches(token_hash)


@pytest.mark.parametrize(
    ("header", "credentials"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        (None, None),
        ("", None),
    ],
)
def test_bearer_token(header, credentials):
    assert bearer_token(header) == credentials


def test_license_key_hashes_are_stable_and_not_the_key():
    assert hash_license_key("K-1") == hash_license_key("K-1")
    assert hash_license_key("K-1") != hash_license_key("K-2")
    assert "K-1" not in hash_license_key("K-1")
