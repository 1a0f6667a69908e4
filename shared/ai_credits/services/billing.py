"""Billing's use case: ``PUT /v1/admin/licenses/{license_id}`` creates or updates a license."""

from __future__ import annotations

from dataclasses import replace

from ai_credits import rules, store
from ai_credits.credentials import hash_license_key
from ai_credits.domain import License, Site
from ai_credits.errors import ActivationLimitReached, LicenseKeyInUse, field_error
from ai_credits.models import ProvisionRequest, ProvisionResponse
from ai_credits.services import fences
from ai_credits.services.inputs import site_key
from ai_credits.services.retry import retry_on_stale
from ai_credits.services.views import license_view


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
    license_, sites = store.get_license_with_sites(license_id)
    assert license_ is not None  # written just above; deletes do not exist
    return created, license_view(license_, sites, now)


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
    )
    store.write_license_update(
        existing,
        updated,
        [_imported_site(existing.license_id, site, 0, existing.term_start, now) for site in new_sites],
        existing_sites,
    )
