"""The portal's use cases (JWT; the license must belong to the caller's account)."""

from __future__ import annotations

from dataclasses import replace

from ai_credits import rules, store
from ai_credits.domain import Grant, License, Site
from ai_credits.errors import BelowUsed, LicenseExpired, NotFound, OverAllocation, field_error
from ai_credits.models import CreditsView, LicenseList, LicenseListItem
from ai_credits.services import fences, plugin
from ai_credits.services.inputs import site_key
from ai_credits.services.retry import retry_on_stale
from ai_credits.services.views import credits_view

MAX_APPLY_SITES = 98  # one transaction: the license item + 98 sites, with room to spare


def _owned_license(account_id: str, license_id: str) -> tuple[License, list[Site], list[Grant]]:
    """The license, its sites and grants, or 404 — the same 404 whether it is missing or another
    account's."""
    license_, sites, grants = store.get_license_view(license_id)
    if license_ is None or license_.account_id != account_id:
        raise NotFound(f"no license {license_id!r} in this account")
    return license_, sites, grants


def list_licenses(account_id: str, now: str) -> LicenseList:
    """``GET /v1/licenses``."""
    listings = sorted(store.licenses_of_account(account_id), key=lambda listing: listing.license_id)
    return LicenseList(
        licenses=[
            LicenseListItem(
                license_id=listing.license_id,
                plan=listing.plan,
                status="expired" if rules.is_expired(listing.expires_at, now) else "active",
                term_end=listing.term_end,
                credits_total=listing.credits_total,
                unallocated=listing.unallocated,
            )
            for listing in listings
        ]
    )


def license_credits(account_id: str, license_id: str, now: str) -> CreditsView:
    """``GET /v1/licenses/{license_id}/credits``: the *Manage AI Credits* screen."""
    return credits_view(*_owned_license(account_id, license_id), now)


def _requested_allocations(allocations: dict[str, int]) -> dict[str, int]:
    if len(allocations) > MAX_APPLY_SITES:
        raise field_error(
            ("body", "allocations"),
            "too_many_sites",
            f"at most {MAX_APPLY_SITES} sites per Apply ({len(allocations)} given); apply in several steps",
        )
    requested: dict[str, int] = {}
    for raw, allocation in allocations.items():
        site = site_key(raw, ("body", "allocations", raw))
        if site in requested:
            raise field_error(("body", "allocations", raw), "duplicate_site", f"{site} is named twice")
        requested[site] = allocation
    return requested


def apply_allocations(account_id: str, license_id: str, allocations: dict[str, int], now: str) -> CreditsView:
    """``PUT /v1/licenses/{license_id}/allocations``: *Apply*, all or nothing.

    Decided on one read, written in one transaction whose conditions re-check everything; if a
    concurrent change made the write fail, decide again on fresh values (so two portal tabs
    can never together exceed ``credits_total``, and the error the loser sees is current).
    """
    requested = _requested_allocations(allocations)

    def attempt(_: int) -> CreditsView:
        license_, sites, grants = _owned_license(account_id, license_id)
        if rules.is_expired(license_.expires_at, now):
            raise LicenseExpired(f"the license expired at {license_.expires_at}")
        fences.refuse_while_renewing(license_)
        by_site = {site.site: site for site in sites}
        try:
            plan = rules.plan_allocations(license_.unallocated, by_site, requested)
        except rules.InactiveSite as error:
            raise NotFound(f"{error.site} is not an active site of this license") from None
        except rules.BelowUsedSite as error:
            raise BelowUsed(
                f"{error.site} already used {error.used} and holds {error.held} credits this term",
                site=error.site,
                used=error.used,
                held=error.held,
            ) from None
        except rules.OverAllocated as error:
            raise OverAllocation(
                f"{error.requested} credits asked for these sites, {error.available} available",
                available=error.available,
                requested=error.requested,
            ) from None
        changes = [store.AllocationChange(site, old, new) for site, old, new in plan.changes]
        store.write_allocations(license_, changes, now)
        delta = sum(change.new_allocated - change.old_allocated for change in changes)
        applied = {change.site: change.new_allocated for change in changes}
        updated = replace(license_, unallocated=license_.unallocated - delta, needs_allocation=False)
        return credits_view(updated, sites, grants, now, applied)

    return retry_on_stale(
        attempt,
        "the license is being changed concurrently; retry shortly",
        retried=(store.AllocationRefused,),
    )


def deactivate_site(account_id: str, license_id: str, site_url: str, now: str) -> CreditsView:
    """``POST /v1/licenses/{license_id}/deactivations``: the customer removes a site (a lost
    site, a staging copy that is gone). As the plugin's deactivation: the site's allocation
    shrinks to what it used, its token stops working; 404 for a site that is not active."""
    site = site_key(site_url, ("body", "site_url"))
    _owned_license(account_id, license_id)
    plugin.deactivate_site(license_id, site, now)
    return license_credits(account_id, license_id, now)
