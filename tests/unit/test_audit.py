"""The audit's checker finds each kind of drift, and nothing on consistent figures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ai_credits.audit import reconcile
from ai_credits.domain import License, Site

LICENSE = License(
    license_id="lic-1", account_id="a", plan="single-site", site_limit=1, credits_per_term=1000, term_months=12,
    term_start="2026-11-01T00:00:00Z", term_end="2027-11-01T00:00:00Z", expires_at="2028-01-01T00:00:00Z",
    credits_total=1000, unallocated=200, needs_allocation=False, key_hash="h", version=3,
    live_active=1, nonlive_active=1, site_items=2,
)  # fmt: skip
SITES = [
    Site("lic-1", "a.com", "live", False, True, allocated=700, used=30, remaining=670, activated_at="t"),
    Site("lic-1", "s.a.com", "staging", False, True, allocated=100, used=0, remaining=100, activated_at="t"),
]
LEDGER = [
    {"type": "consume", "site": "a.com", "amount": 20, "sk": "CONSUME#a.com#1"},
    {"type": "consume", "site": "a.com", "amount": 10, "sk": "CONSUME#a.com#2"},
    {"type": "consume", "site": "old.com", "amount": 5, "sk": "CONSUME#old.com#1"},
    {"type": "consume", "site": "a.com", "amount": 40, "sk": "CONSUME#a.com#0"},
    {"type": "expiry", "unallocated": 0, "expired": 960},
    {"type": "expiry_sites", "used": {"a.com": 40, "old.com": 5}, "sites": {"a.com": 960}},
]


def test_consistent_figures_have_no_drift():
    assert reconcile(LICENSE, SITES, LEDGER) == []


@pytest.mark.parametrize(
    ("license_", "sites", "ledger", "finding"),
    [
        (replace(LICENSE, unallocated=300), SITES, LEDGER, "credits_total"),
        (replace(LICENSE, unallocated=-1, credits_total=799), SITES, LEDGER, "< 0"),
        (LICENSE, [replace(SITES[0], remaining=671), SITES[1]], LEDGER, "remaining 671"),
        (LICENSE, [replace(SITES[0], used=701, remaining=-1), SITES[1]], LEDGER, "outside"),
        (LICENSE, SITES[:1], LEDGER, "counters"),
        (replace(LICENSE, nonlive_active=2), SITES, LEDGER, "counters"),
        (LICENSE, SITES, LEDGER[1:], "ledger consumed 50 != used over its terms 70"),
        (LICENSE, SITES, [*LEDGER, {"type": "consume", "site": "s.a.com", "amount": 1}], "s.a.com"),
        (LICENSE, SITES, [*LEDGER, {"type": "consume", "site": "a.com", "amount": 0}], "bad amount"),
    ],
)  # fmt: skip
def test_each_drift_is_found(license_, sites, ledger, finding):
    assert any(finding in problem for problem in reconcile(license_, sites, ledger))
