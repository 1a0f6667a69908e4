"""Billing's use case: ``PUT /v1/admin/licenses/{license_id}`` creates or updates a license."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from ai_credits import rules, store
from ai_credits.credentials import hash_license_key
from ai_credits.domain import Grant, LedgerConsume, License, Site
from ai_credits.errors import (
    ActivationLimitReached,
    IdempotencyConflict,
    LicenseExpired,
    LicenseKeyInUse,
    NotFound,
    TermEnded,
    field_error,
)
from ai_credits.models import (
    CreditsView,
    GrantRequest,
    ProvisionRequest,
    ProvisionResponse,
    RefundRequest,
    RefundResponse,
)
from ai_credits.services import fences
from ai_credits.services.inputs import site_key
from ai_credits.services.retry import Stale, retry_on_stale
from ai_credits.services.views import credits_view, license_view


def _imported_sites(request: ProvisionRequest) -> list[rules.ImportedSite]:
    imported: dict[str, rules.ImportedSite] = {}
    for index, activation in enumerate(request.activations or []):
        field = ("body", "activations", str(index), "site_url")
        site = site_key(activation.site_url, field)
        if site in imported:
            raise field_error(field, "duplicate_site", f"{site} is listed twice")
        environment = rules.classify_environment(site, activation.environment)
        imported[site] = rules.ImportedSite(site=site, environment=environment, network=activation.network)
    return list(imported.values())


def _check_import_limit(
    sites: list[rules.ImportedSite], site_limit: int, live_active: int = 0, nonlive_active: int = 0
) -> None:
    """Imports count against the limits like activations (``rules.plan_activation``)."""
    live = live_active + sum(1 for site in sites if site.environment == "live")
    nonlive = nonlive_active + sum(1 for site in sites if site.environment != "live")
    if live > site_limit:
        raise ActivationLimitReached(
            f"{live} live activations exceed the license's site_limit of {site_limit}"
        )
    if nonlive > rules.nonlive_limit(site_limit):
        raise ActivationLimitReached(
            f"{nonlive} staging/development activations exceed {rules.nonlive_limit(site_limit)}"
            f" ({rules.NONLIVE_PER_LIVE} per live site allowed)"
        )


def _check_term(request: ProvisionRequest) -> None:
    if request.term_end <= request.term_start:
        raise field_error(("body", "term_end"), "term_order", "term_end must be after term_start")


def _grant_hash(request: GrantRequest) -> str:
    canonical = json.dumps(
        {"credits": request.credits, "expires_at": request.expires_at, "reason": request.reason},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def grant_credits(license_id: str, request: GrantRequest, now: str) -> tuple[bool, CreditsView]:
    """``POST /v1/admin/licenses/{license_id}/grants``: add credits to the current term, exactly
    once per ``grant_id`` (rule 9; ``True`` when applied now, ``False`` for the same body again).

    Another body under a used ``grant_id`` is a 409, an expired license a 403, a license in the
    middle of its renewal a 503 (repeat it: it applies once).
    """
    body_hash = _grant_hash(request)

    def replayed(grant: Grant) -> None:
        if grant.body_hash != body_hash:
            raise IdempotencyConflict(f"grant_id {request.grant_id!r} was already used with a different body")

    def attempt(_: int) -> tuple[bool, CreditsView]:
        license_, sites, grants = store.get_license_view(license_id)
        if license_ is None:
            raise NotFound(f"no license {license_id!r}")
        earlier = next((grant for grant in grants if grant.grant_id == request.grant_id), None)
        if earlier is not None:
            replayed(earlier)
            return False, credits_view(license_, sites, grants, now)
        if rules.is_expired(license_.expires_at, now):
            raise LicenseExpired(f"the license expired at {license_.expires_at}")
        fences.refuse_while_renewing(license_)
        grant = Grant(
            grant_id=request.grant_id,
            credits=request.credits,
            expires_at=request.expires_at,
            granted_at=now,
            reason=request.reason,
            term_start=license_.term_start,
            body_hash=body_hash,
        )
        target = rules.grant_target(license_, sites)
        try:
            store.write_grant(license_, grant, target, now)
        except store.GrantExists as exists:
            replayed(exists.grant)
            raise Stale("granted meanwhile: answer from a fresh read") from exists
        # The answer from the read and what the write changed (no second read).
        credits = request.credits
        granted = replace(
            license_,
            credits_total=license_.credits_total + credits,
            granted=license_.granted + credits,
            unallocated=license_.unallocated + (0 if target is not None else credits),
        )
        shown = [
            replace(site, allocated=site.allocated + credits, remaining=site.remaining + credits)
            if target is not None and site.site == target.site
            else site
            for site in sites
        ]
        return True, credits_view(granted, shown, [*grants, grant], now)

    return retry_on_stale(
        attempt,
        "the license is being changed concurrently; retry shortly",
        retried=(store.StaleLicense, store.SiteChanged, Stale),
    )


def provision_license(license_id: str, request: ProvisionRequest, now: str) -> tuple[bool, ProvisionResponse]:
    """Create or update a license (``True`` when created). Imports activations by rule 7.

    An update never loses usage or allocations: counters and sites stay; a new
    ``credits_per_term`` applies from the next term; ``term_start``/``term_end`` are taken only
    while the stored term is the same one (the renew function owns terms); activations not yet
    known are added with 0 credits.
    """
    _check_term(request)
    imported = _imported_sites(request)
    key_hash = hash_license_key(request.license_key)

    def attempt(_: int) -> bool:
        existing, existing_sites = store.get_license_with_sites(license_id)
        try:
            if existing is None:
                _create_license(license_id, request, key_hash, imported, now)
                return True
            _update_license(existing, existing_sites, request, key_hash, imported, now)
            return False
        except store.KeyTaken:
            raise LicenseKeyInUse("another license already holds this license key") from None

    created = retry_on_stale(
        attempt, "the license is being changed concurrently; retry shortly", retried=(store.StaleLicense,)
    )
    license_, sites, grants = store.get_license_view(license_id)
    assert license_ is not None  # written just above; deletes do not exist
    return created, license_view(license_, sites, grants, now)


def _imported_site(
    license_id: str, site: rules.ImportedSite, allocated: int, term_start: str, now: str
) -> Site:
    return Site(
        license_id=license_id,
        site=site.site,
        environment=site.environment,
        network=site.network,
        active=True,
        allocated=allocated,
        used=0,
        remaining=allocated,
        activated_at=now,
        term_start=term_start,
    )


def _create_license(
    license_id: str, request: ProvisionRequest, key_hash: str, imported: list[rules.ImportedSite], now: str
) -> None:
    _check_import_limit(imported, request.site_limit)
    allocations, needs_allocation = rules.import_allocations(request.plan, request.credits_per_term, imported)
    license_ = License(
        license_id=license_id,
        account_id=request.account_id,
        plan=request.plan,
        site_limit=request.site_limit,
        credits_per_term=request.credits_per_term,
        term_months=request.term_months,
        term_start=request.term_start,
        term_end=request.term_end,
        expires_at=request.expires_at,
        credits_total=request.credits_per_term,
        unallocated=request.credits_per_term - sum(allocations.values()),
        needs_allocation=needs_allocation,
        key_hash=key_hash,
        version=1,
        low_balance_percent=request.low_balance_percent,
    )
    sites = [
        _imported_site(license_id, site, allocations[site.site], request.term_start, now) for site in imported
    ]
    store.write_new_license(license_, sites)


def _update_license(
    existing: License,
    existing_sites: list[Site],
    request: ProvisionRequest,
    key_hash: str,
    imported: list[rules.ImportedSite],
    now: str,
) -> None:
    fences.refuse_while_renewing(existing)
    if not existing.counters_stored:
        store.migrate_counters(existing)
    known = {site.site for site in existing_sites}
    new_sites = [site for site in imported if site.site not in known]
    if new_sites:
        _check_import_limit(new_sites, request.site_limit, existing.live_active, existing.nonlive_active)
    same_term = request.term_start == existing.term_start
    updated = replace(
        existing,
        account_id=request.account_id,
        plan=request.plan,
        site_limit=request.site_limit,
        credits_per_term=request.credits_per_term,
        term_months=request.term_months,
        term_end=request.term_end if same_term else existing.term_end,
        expires_at=request.expires_at,
        key_hash=key_hash,
        low_balance_percent=request.low_balance_percent,
    )
    store.write_license_update(
        existing,
        updated,
        [_imported_site(existing.license_id, site, 0, existing.term_start, now) for site in new_sites],
        existing_sites,
    )


def refund(license_id: str, request: RefundRequest, now: str) -> tuple[bool, RefundResponse]:
    """``POST /v1/admin/licenses/{license_id}/refunds``: give back the credits of a charged
    consume (or capture), rule 12 — in its own term only, at most what it charged, exactly once
    (``True`` when refunded now; the same body again answers the first answer, replayed)."""
    site = site_key(request.site_url, ("body", "site_url"))
    subsite = site_key(request.subsite_url, ("body", "subsite_url")) if request.subsite_url else None

    def answer(refunded: int, remaining: int, replayed: bool) -> RefundResponse:
        return RefundResponse(
            request_id=request.request_id,
            site=site,
            refunded=refunded,
            remaining=remaining,
            replayed=replayed,
        )

    def attempt(_: int) -> tuple[bool, RefundResponse]:
        license_, current, consume, earlier = store.read_for_refund(
            license_id, site, request.request_id, subsite
        )
        if license_ is None or consume is None:
            raise NotFound(f"no consume {request.request_id!r} of {site} on license {license_id!r}")
        amount = consume.amount if request.amount is None else request.amount
        if earlier is not None:
            if earlier.refunded != amount:
                raise IdempotencyConflict(f"consume {request.request_id!r} was refunded with another amount")
            return False, answer(earlier.refunded, earlier.remaining, True)
        if amount > consume.amount:
            raise field_error(
                ("body", "amount"),
                "more_than_charged",
                f"{amount} is more than the {consume.amount} it charged",
            )
        term = consume.term_start if consume.term_start is not None else _term_of(consume, license_)
        if current is None or current.term_start != term:
            raise TermEnded(f"consume {request.request_id!r} was made in an earlier term")
        if not current.active:
            fences.refuse_while_renewing(license_)
        try:
            store.write_refund(license_, current, consume, amount, request.reason, now)
        except store.Cancelled as cancelled:
            raise Stale("the site or the refund changed since they were read") from cancelled
        return True, answer(amount, current.remaining + amount if current.active else 0, False)

    return retry_on_stale(attempt, "the site is being changed concurrently; retry shortly")


def _term_of(consume: LedgerConsume, license_: License) -> str:
    """The term of a consume recorded before entries carried it: the license's current one when
    it was made in it (a site item of that time has no ``term_start`` either), else an ended one."""
    return "" if consume.at >= license_.term_start else "ended"
