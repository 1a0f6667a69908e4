"""The business rules of API.md, as pure functions of plain values.

No I/O, no boto3, no clock: "now" is always an argument. The numbered rules refer to
API.md, "Rules". Site URL normalization and live/staging/development classification are
in ``site_urls`` (re-exported here) because they are long tables, not because they are
different in kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ai_credits.clock import add_months, format_timestamp, parse_timestamp
from ai_credits.domain import Environment, Grant, License, Plan, Site, Status
from ai_credits.site_urls import InvalidSiteUrl, classify_environment, normalize_site_url

__all__ = [
    "ActivationPlan",
    "AllocationPlan",
    "BelowUsedSite",
    "ImportedSite",
    "InactiveSite",
    "InvalidSiteUrl",
    "OverAllocated",
    "Renewal",
    "balance_alerts",
    "carry_over",
    "classify_environment",
    "grant_remaining",
    "grant_target",
    "import_allocations",
    "is_expired",
    "license_alerts",
    "license_status",
    "next_term",
    "nonlive_limit",
    "normalize_site_url",
    "plan_activation",
    "plan_allocations",
    "plan_renewal",
    "should_renew",
    "site_alerts",
]


def is_expired(expires_at: str, now: str) -> bool:
    """Rule 8: a license is expired once ``expires_at`` has passed (timestamps sort as strings)."""
    return expires_at <= now


def license_status(license_: License, now: str) -> Status:
    return "expired" if is_expired(license_.expires_at, now) else "active"


# Staging and development activations a license allows per live one it allows.
NONLIVE_PER_LIVE = 10


def nonlive_limit(site_limit: int) -> int:
    return NONLIVE_PER_LIVE * site_limit


@dataclass(frozen=True, slots=True)
class ActivationPlan:
    """What an activation changes.

    ``created``: the site was not active before (201), else its token is only rotated (200).
    ``rotate_only``: an active site with the same environment and network: only its token changes.
    ``live_delta`` / ``nonlive_delta``: the change of the license's active-site counters; a
    positive one is written under the condition that the counter is below its limit.
    ``auto_allocate``: credits moved from ``unallocated`` to the site (rule 1).
    ``sets_needs_allocation``: the first activation of a multi-site license in its term.
    """

    created: bool
    rotate_only: bool
    live_delta: int
    nonlive_delta: int
    auto_allocate: int
    sets_needs_allocation: bool


class ActivationLimit(Exception):
    """A new live activation beyond ``site_limit``, or a staging/development one beyond
    ``nonlive_limit(site_limit)``."""


def plan_activation(
    license_: License, previous: Site | None, environment: Environment, network: bool
) -> ActivationPlan:
    """Decide an activation of a site on ``license_`` (expiry is checked by the caller);
    ``previous`` is the site's item of this term, if it has one.

    - Only live activations count against ``site_limit``; staging and development ones against
      ``NONLIVE_PER_LIVE * site_limit``; re-activating a site that already counts never hits a limit.
    - Rule 1: a live site of a single-site license takes every unallocated credit, unless the
      customer must allocate first (rule 7's ``needs_allocation``). Staging and development
      sites start with 0. Rule 2: multi-site licenses never allocate automatically.
    - ``needs_allocation`` is set by the first activation of a multi-site license in a term.
    """
    already_active = previous is not None and previous.active
    was_live = already_active and previous is not None and previous.environment == "live"
    was_nonlive = already_active and not was_live
    is_live = environment == "live"
    if (
        already_active
        and previous is not None
        and previous.environment == environment
        and previous.network == network
    ):
        return ActivationPlan(False, True, 0, 0, 0, False)
    live_delta = int(is_live) - int(was_live)
    nonlive_delta = int(not is_live) - int(was_nonlive)
    if live_delta > 0 and license_.live_active >= license_.site_limit:
        raise ActivationLimit(f"the license allows {license_.site_limit} live site(s)")
    limit = nonlive_limit(license_.site_limit)
    if nonlive_delta > 0 and license_.nonlive_active >= limit:
        raise ActivationLimit(f"the license allows {limit} staging or development site(s)")
    auto_allocate = 0
    if license_.plan == "single-site" and live_delta > 0 and not license_.needs_allocation:
        auto_allocate = license_.unallocated
    return ActivationPlan(
        created=not already_active,
        rotate_only=False,
        live_delta=live_delta,
        nonlive_delta=nonlive_delta,
        auto_allocate=auto_allocate,
        sets_needs_allocation=(
            license_.plan == "multi-site" and previous is None and license_.site_items == 0
        ),
    )


@dataclass(frozen=True, slots=True)
class ImportedSite:
    site: str
    environment: Environment
    network: bool


def import_allocations(
    plan: Plan, credits_total: int, sites: Sequence[ImportedSite]
) -> tuple[dict[str, int], bool]:
    """Rule 7: allocations and ``needs_allocation`` for a license imported with activations.

    Rule 1 applies only when the sole activation is one live site: it takes every credit
    (single-site). A single-site license with a live site *and* staging/development sites
    gets nothing until the customer applies an allocation. A multi-site license always
    waits for the customer (rule 2), as after its first activation.
    """
    allocations = {imported.site: 0 for imported in sites}
    if not sites:
        return allocations, False
    if plan == "multi-site":
        return allocations, True
    live_sites = [imported for imported in sites if imported.environment == "live"]
    if len(sites) == 1 and live_sites:
        allocations[live_sites[0].site] = credits_total
        return allocations, False
    return allocations, bool(live_sites)


# -- Apply (the portal's allocations) -----------------------------------------------------


class InactiveSite(Exception):
    """A named site that is not an active activation of the license (404)."""

    def __init__(self, site: str) -> None:
        super().__init__(site)
        self.site = site


class BelowUsedSite(Exception):
    def __init__(self, site: str, used: int, held: int = 0) -> None:
        super().__init__(site)
        self.site, self.used, self.held = site, used, held


class OverAllocated(Exception):
    def __init__(self, available: int, requested: int) -> None:
        super().__init__(f"{requested} > {available}")
        self.available, self.requested = available, requested


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """The sites whose allocation changes: ``(site, old, new)``."""

    changes: tuple[tuple[str, int, int], ...]


def plan_allocations(
    unallocated: int, sites: Mapping[str, Site], requested: Mapping[str, int]
) -> AllocationPlan:
    """Rule 3 for an Apply of absolute allocations (sites not named keep theirs).

    Checked in this order: every named site is an active activation (404), none is set below
    what it used plus what it holds this term (``below_used``), and the named sites' current allocations plus
    ``unallocated`` cover what is asked (``over_allocation``). The database checks the same
    again when writing.
    """
    for site in requested:
        current = sites.get(site)
        if current is None or not current.active:
            raise InactiveSite(site)
    for site, allocation in requested.items():
        if allocation < sites[site].used + sites[site].held:  # held credits cannot be allocated away
            raise BelowUsedSite(site, sites[site].used, sites[site].held)
    available = unallocated + sum(sites[site].allocated for site in requested)
    asked = sum(requested.values())
    if asked > available:
        raise OverAllocated(available, asked)
    return AllocationPlan(
        changes=tuple(
            (site, sites[site].allocated, allocation)
            for site, allocation in sorted(requested.items())
            if allocation != sites[site].allocated
        )
    )


# -- renewal (rule 5) ---------------------------------------------------------------------


def should_renew(license_: License, now: str) -> bool:
    """The term has ended and the license is paid through it (billing extends ``expires_at``)."""
    return license_.term_end <= now and license_.expires_at > license_.term_end


def next_term(term_end: str, term_months: int, now: str) -> tuple[str, str]:
    """The term that contains ``now``: each term starts at the previous ``term_end`` and lasts
    ``term_months`` calendar months, so a license several terms behind catches up at once."""
    start = parse_timestamp(term_end)
    end = add_months(start, term_months)
    while format_timestamp(end) <= now:
        start, end = end, add_months(end, term_months)
    return format_timestamp(start), format_timestamp(end)


@dataclass(frozen=True, slots=True)
class Renewal:
    term_start: str
    term_end: str
    allocations: dict[str, int]  # every active site's allocation in the new term
    unallocated: int
    needs_allocation: bool
    dropped: tuple[str, ...]  # inactive sites: they leave the view when their term ends
    # A single-site license's live site, given the term's credits (rule 1) and, at the finish, the
    # credits carried over (rule 10): None for a multi-site license or one still to allocate.
    live_site: str | None = None


def plan_renewal(license_: License, sites: Sequence[Site], now: str) -> Renewal:
    """Rule 5: the new term starts with ``credits_per_term``, every ``used`` at 0.

    Multi-site: every allocation restarts at 0 and ``needs_allocation`` becomes true when the
    license has activations. Single-site: the live site gets the full balance again, the others
    0 (while the customer still has to allocate under rule 7, nothing is automatic). With more
    than one live site, the one activated first gets it.
    """
    term_start, term_end = next_term(license_.term_end, license_.term_months, now)
    active = sorted((site for site in sites if site.active), key=lambda site: (site.activated_at, site.site))
    allocations = {site.site: 0 for site in active}
    credits = license_.credits_per_term
    needs_allocation = license_.needs_allocation
    live_site = None
    if license_.plan == "multi-site":
        needs_allocation = bool(active)
    elif not needs_allocation:
        live = [site for site in active if site.environment == "live"]
        if live:
            live_site = live[0].site
            allocations[live_site] = credits
    return Renewal(
        term_start=term_start,
        term_end=term_end,
        allocations=allocations,
        unallocated=credits - sum(allocations.values()),
        needs_allocation=needs_allocation,
        dropped=tuple(sorted(site.site for site in sites if not site.active)),
        live_site=live_site,
    )


# -- grants and carry-over (rules 9 and 10) -----------------------------------------------


def ends_with_term(grant: Grant, term_end: str) -> bool:
    """Rule 10: a grant without ``expires_at``, or one not after ``term_end``, ends with the term."""
    return grant.expires_at is None or grant.expires_at <= term_end


def spending_order(term_end: str, grants: Sequence[Grant]) -> list[Grant]:
    """Rule 10: credits that expire first are spent first. The term's own credits come first
    (callers spend them before this list); then the grants that end with the term, then the
    others by ``expires_at``; ties by ``expires_at``, then ``grant_id``."""

    def key(grant: Grant) -> tuple[str, str, str]:
        ends = term_end if ends_with_term(grant, term_end) else grant.expires_at or term_end
        return ends, grant.expires_at or "", grant.grant_id

    return sorted(grants, key=key)


def grant_remaining(term_credits: int, term_end: str, grants: Sequence[Grant], used: int) -> dict[str, int]:
    """What is left of each grant of the term once ``used`` credits (every site of the term,
    active or not) are taken in rule 10's order: the term's own credits first."""
    left = max(0, used - term_credits)
    remaining: dict[str, int] = {}
    for grant in spending_order(term_end, grants):
        spent = min(grant.credits, left)
        left -= spent
        remaining[grant.grant_id] = grant.credits - spent
    return remaining


def carry_over(
    term_credits: int, term_end: str, grants: Sequence[Grant], used: int, next_term_start: str
) -> dict[str, int]:
    """Rule 10 at a renewal: the unspent credits of each grant whose ``expires_at`` is after the
    next term's start carry into it (grants with nothing left are not listed)."""
    remaining = grant_remaining(term_credits, term_end, grants, used)
    return {
        grant.grant_id: remaining[grant.grant_id]
        for grant in grants
        if grant.expires_at is not None and grant.expires_at > next_term_start and remaining[grant.grant_id]
    }


def live_site_of(sites: Sequence[Site]) -> Site | None:
    """A single-site license's live site: its active live site (the one activated first, should
    an import have brought several)."""
    live = sorted(
        (site for site in sites if site.active and site.environment == "live"),
        key=lambda site: (site.activated_at, site.site),
    )
    return live[0] if live else None


def grant_target(license_: License, sites: Sequence[Site]) -> Site | None:
    """Rule 9: a grant's credits go at once to the live site of a single-site license that is
    active and does not need allocation (rule 1); otherwise (None) they wait in ``unallocated``."""
    if license_.plan != "single-site" or license_.needs_allocation:
        return None
    return live_site_of(sites)


# -- alerts (rule 13) ---------------------------------------------------------------------

DEFAULT_LOW_BALANCE_PERCENT = 20
EXPIRING_WITHIN = timedelta(days=14)


def site_alerts(site: Site, low_balance_percent: int) -> list[dict[str, Any]]:
    """Rule 13: an active site is ``credits_exhausted`` when ``allocated > 0`` and nothing
    remains, ``credits_low`` when ``0 < remaining <= allocated * percent / 100`` (0 turns it
    off; exhausted is not also low)."""
    return balance_alerts(site.active, site.allocated, site.remaining, low_balance_percent)


def balance_alerts(
    active: bool, allocated: int, remaining: int, low_balance_percent: int
) -> list[dict[str, Any]]:
    """``site_alerts`` on a site's figures: for a view that shows figures the site item does not
    hold yet (an Apply's answer), without copying the site to hold them."""
    if not active or allocated <= 0:
        return []
    if remaining == 0:
        return [{"code": "credits_exhausted"}]
    if low_balance_percent and remaining * 100 <= allocated * low_balance_percent:
        return [{"code": "credits_low", "threshold_percent": low_balance_percent}]
    return []


def license_alerts(license_: License, now: str) -> list[dict[str, Any]]:
    """The license-level notices, in the contract's order: ``allocation_needed``, then
    ``license_expired`` or ``license_expiring`` (active, ``expires_at`` within 14 days)."""
    alerts: list[dict[str, Any]] = []
    if license_.needs_allocation:
        alerts.append({"code": "allocation_needed"})
    if is_expired(license_.expires_at, now):
        alerts.append({"code": "license_expired"})
    elif license_.expires_at <= format_timestamp(parse_timestamp(now) + EXPIRING_WITHIN):
        alerts.append({"code": "license_expiring", "expires_at": license_.expires_at})
    return alerts
