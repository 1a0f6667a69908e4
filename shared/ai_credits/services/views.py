"""The answers several use cases share: a license's summary and its *Manage AI Credits* view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ai_credits import rules
from ai_credits.domain import Grant, License, Site
from ai_credits.models import CreditsView, LicenseSummary, ProvisionResponse


def renewed_license(license_: License) -> License:
    """The license as its pending renewal will leave it (itself when none is pending)."""
    renewal = license_.renewal
    if renewal is None:
        return license_
    return replace(
        license_,
        term_start=renewal.term_start,
        term_end=renewal.term_end,
        credits_total=renewal.credits_total,
        unallocated=renewal.unallocated,
        needs_allocation=renewal.needs_allocation,
        renewal=None,
    )


def settled(license_: License, sites: list[Site]) -> tuple[License, list[Site]]:
    """What a reader is shown of a license and its sites: never a half-renewed license.

    While a renewal moves the sites into the next term a batch at a time, every site is shown
    in the new term: a site not moved yet with the allocation the renewal decided for it and
    nothing used (an inactive one not at all: it leaves with its term).
    """
    renewal = license_.renewal
    if renewal is None:
        return license_, sites
    shown = []
    for site in sites:
        if site.term_start == renewal.term_start:
            shown.append(site)
        elif site.active:
            allocated = renewal.allocations.get(site.site, 0)
            shown.append(
                replace(
                    site,
                    allocated=allocated,
                    used=0,
                    held=0,
                    remaining=allocated,
                    term_start=renewal.term_start,
                )
            )
    return renewed_license(license_), shown


def summary(license_: License, now: str) -> LicenseSummary:
    return LicenseSummary(
        license_id=license_.license_id,
        plan=license_.plan,
        status=rules.license_status(license_, now),
        term_start=license_.term_start,
        term_end=license_.term_end,
        credits_total=license_.credits_total,
        allocated=license_.allocated,
        unallocated=license_.unallocated,
    )


def credits_view(
    license_: License,
    sites: list[Site],
    grants: list[Grant],
    now: str,
    applied: Mapping[str, int] | None = None,
) -> CreditsView:
    """The *Manage AI Credits* figures: ``allocated`` sums every listed site, active or not;
    the grants of the term with what is left of each by rule 10.

    ``applied``: the allocations written since ``sites`` were read (site -> its new allocation;
    ``remaining`` follows), so that an Apply answers from its read without copying its sites.
    """
    applied = applied or {}
    license_, sites = settled(license_, sites)
    rows = [
        _site_row(site, applied.get(site.site), license_.low_balance_percent)
        for site in sorted(sites, key=lambda site: site.site)
    ]
    # The rows are validated into CreditsSite models by CreditsView itself (one pass, in pydantic-core);
    # a handler that answers this model as it is (Apply) has them validated only here.
    return CreditsView(
        **summary(license_, now).model_dump(exclude={"allocated"}),
        allocated=sum(row["allocated"] for row in rows),
        needs_allocation=license_.needs_allocation,
        low_balance_percent=license_.low_balance_percent,
        carried_over=license_.carried_over,
        alerts=rules.license_alerts(license_, now),
        grants=_grant_rows(license_, grants, sum(site.used for site in sites)),
        sites=rows,
    )


def _site_row(site: Site, applied: int | None, low_balance_percent: int) -> dict[str, Any]:
    """One site's row of the view. ``applied``: its allocation written since it was read (None:
    none), shown with the ``remaining`` that follows from it; taken as figures rather than on a
    copy of the site (``dataclasses.replace`` per site was a large part of an Apply's answer)."""
    allocated, remaining = site.allocated, site.remaining
    if applied is not None:
        allocated, remaining = applied, applied - site.used - site.held
    return {
        "site": site.site,
        "environment": site.environment,
        "network": site.network,
        "active": site.active,
        "allocated": allocated,
        "used": site.used,
        "held": site.held,
        "remaining": remaining,
        "activated_at": site.activated_at,
        "alerts": rules.balance_alerts(site.active, allocated, remaining, low_balance_percent),
    }


def term_credits(license_: License) -> int:
    """The term's own credits (an item older than the field: what is not a grant's)."""
    if license_.term_credits is not None:
        return license_.term_credits
    return license_.credits_total - license_.carried_over - license_.granted


def _grant_rows(license_: License, grants: list[Grant], used: int) -> list[dict[str, Any]]:
    of_term = [grant for grant in grants if grant.term_start == license_.term_start]
    remaining = rules.grant_remaining(term_credits(license_), license_.term_end, of_term, used)
    return [
        {
            "grant_id": grant.grant_id,
            "credits": grant.credits,
            "remaining": remaining[grant.grant_id],
            "expires_at": grant.expires_at,
            "granted_at": grant.granted_at,
            "reason": grant.reason,
        }
        for grant in rules.spending_order(license_.term_end, of_term)
    ]


def license_view(license_: License, sites: list[Site], grants: list[Grant], now: str) -> ProvisionResponse:
    """Billing's view of a license: the *Manage AI Credits* figures plus the plan's fields."""
    return ProvisionResponse(
        **credits_view(license_, sites, grants, now).model_dump(),
        account_id=license_.account_id,
        site_limit=license_.site_limit,
        credits_per_term=license_.credits_per_term,
        term_months=license_.term_months,
        expires_at=license_.expires_at,
    )
