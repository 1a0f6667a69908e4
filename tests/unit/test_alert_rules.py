"""Rule 13 (alerts) as pure functions: a site's low/exhausted state, the license's notices."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ai_credits import rules
from ai_credits.domain import License, Site

NOW = "2026-12-04T12:00:00Z"
LICENSE = License(
    license_id="lic-1", account_id="a", plan="multi-site", site_limit=3, credits_per_term=1000, term_months=12,
    term_start="2026-11-01T00:00:00Z", term_end="2027-11-01T00:00:00Z", expires_at="2027-11-01T00:00:00Z",
    credits_total=1000, unallocated=0, needs_allocation=False, key_hash="h", version=1,
)  # fmt: skip


def site(allocated: int, used: int, held: int = 0, active: bool = True) -> Site:
    return Site("lic-1", "a.com", "live", False, active, allocated=allocated, used=used, held=held,
                remaining=allocated - used - held, activated_at="t")  # fmt: skip


@pytest.mark.parametrize(
    ("site_", "percent", "alerts"),
    [
        (site(100, 0), 20, []),
        (site(100, 79), 20, []),
        (site(100, 80), 20, [{"code": "credits_low", "threshold_percent": 20}]),  # 20 <= 20% of 100
        (site(100, 99), 20, [{"code": "credits_low", "threshold_percent": 20}]),
        (site(100, 100), 20, [{"code": "credits_exhausted"}]),  # exhausted is not also low
        (site(100, 60, held=40), 20, [{"code": "credits_exhausted"}]),  # held credits are not left
        (site(100, 95), 0, []),  # 0 turns "low" off
        (site(100, 100), 0, [{"code": "credits_exhausted"}]),
        (site(0, 0), 20, []),  # nothing allocated: neither
        (site(100, 100, active=False), 20, []),  # only active sites have alerts
        (site(7, 6), 20, [{"code": "credits_low", "threshold_percent": 20}]),  # 1 <= 1.4
        (site(7, 5), 20, []),  # 2 > 1.4
    ],
)
def test_rule13_site_alerts(site_, percent, alerts):
    assert rules.site_alerts(site_, percent) == alerts


@pytest.mark.parametrize(
    ("changes", "alerts"),
    [
        ({}, []),
        ({"needs_allocation": True}, [{"code": "allocation_needed"}]),
        ({"expires_at": "2026-12-01T00:00:00Z"}, [{"code": "license_expired"}]),
        (
            {"expires_at": "2026-12-18T12:00:00Z"},
            [{"code": "license_expiring", "expires_at": "2026-12-18T12:00:00Z"}],
        ),
        ({"expires_at": "2026-12-18T12:00:01Z"}, []),
        (
            {"needs_allocation": True, "expires_at": "2026-12-10T00:00:00Z"},
            [
                {"code": "allocation_needed"},
                {"code": "license_expiring", "expires_at": "2026-12-10T00:00:00Z"},
            ],
        ),
    ],
    ids=[
        "none",
        "allocation needed",
        "expired",
        "expiring: 14 days",
        "a second after 14 days",
        "in order",
    ],
)
def test_license_alerts(changes, alerts):
    assert rules.license_alerts(replace(LICENSE, **changes), NOW) == alerts
