"""The business rules of API.md, as pure functions of plain values.

No I/O, no boto3, no clock: "now" is always an argument. The numbered rules refer to
API.md, "Rules". Site URL normalization and live/staging/development classification are
in ``site_urls`` (re-exported here) because they are long tables, not because they are
different in kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ai_credits.domain import Environment, License, Plan, SiteEntry, Status
from ai_credits.site_urls import InvalidSiteUrl, classify_environment, normalize_site_url

__all__ = [
    "ActivationPlan",
    "ImportedSite",
    "InvalidSiteUrl",
    "classify_environment",
    "import_allocations",
    "is_expired",
    "license_status",
    "normalize_site_url",
    "plan_activation",
]


def is_expired(expires_at: str, now: str) -> bool:
    """Rule 8: a license is expired once ``expires_at`` has passed (timestamps sort as strings)."""
    return expires_at <= now


def license_status(license_: License, now: str) -> Status:
    return "expired" if is_expired(license_.expires_at, now) else "active"


@dataclass(frozen=True, slots=True)
class ActivationPlan:
    """What an activation changes.

    ``created``: the site was not active before (201), else its token is only rotated (200).
    ``auto_allocate``: credits moved from ``unallocated`` to the site (rule 1).
    ``needs_allocation``: the license's flag after the activation.
    """

    created: bool
    auto_allocate: int
    needs_allocation: bool
    entry: SiteEntry

    @property
    def changes_license(self) -> bool:
        return self.created or self.auto_allocate > 0


class ActivationLimit(Exception):
    """A new live activation beyond ``site_limit``."""


def plan_activation(
    license_: License, site: str, environment: Environment, network: bool
) -> ActivationPlan:
    """Decide an activation of ``site`` on ``license_`` (expiry is checked by the caller).

    - Only live activations count against ``site_limit``; re-activating a site that already
      counts never hits the limit.
    - Rule 1: a live site of a single-site license takes every unallocated credit, unless the
      customer must allocate first (rule 7's ``needs_allocation``). Staging and development
      sites start with 0. Rule 2: multi-site licenses never allocate automatically.
    - ``needs_allocation`` is set by the first activation of a multi-site license in a term.
    """
    previous = license_.sites.get(site)
    already_active = previous is not None and previous.active
    counted_before = already_active and previous is not None and previous.environment == "live"
    if environment == "live" and not counted_before and license_.live_active >= license_.site_limit:
        raise ActivationLimit(f"the license allows {license_.site_limit} live site(s)")

    becomes_live = environment == "live" and not counted_before
    auto_allocate = 0
    if license_.plan == "single-site" and becomes_live and not license_.needs_allocation:
        auto_allocate = license_.unallocated

    needs_allocation = license_.needs_allocation
    if license_.plan == "multi-site" and not license_.sites:
        needs_allocation = True

    used = previous.used if previous is not None and not previous.active else 0
    entry = SiteEntry(environment=environment, network=network, active=True, used=used)
    return ActivationPlan(
        created=not already_active,
        auto_allocate=auto_allocate,
        needs_allocation=needs_allocation,
        entry=entry,
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
