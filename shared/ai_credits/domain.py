"""The records the services work with: plain, immutable values, free of DynamoDB types.

``store`` builds them from items; ``rules`` decides with them; handlers render them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Plan = Literal["single-site", "multi-site"]
Environment = Literal["live", "staging", "development"]
Status = Literal["active", "expired"]


@dataclass(frozen=True, slots=True)
class SiteEntry:
    """What the license item remembers of each of its sites (its ``sites`` map).

    Activation reads only the license item, so the facts a decision needs live there:
    whether the site is active, its environment (for the live count), its network flag and,
    for an inactive site, the ``used`` frozen at deactivation (an inactive site cannot spend).
    """

    environment: Environment
    network: bool
    active: bool
    used: int = 0


@dataclass(frozen=True, slots=True)
class License:
    license_id: str
    account_id: str
    plan: Plan
    site_limit: int
    credits_per_term: int  # what the *next* term starts with
    term_months: int
    term_start: str
    term_end: str
    expires_at: str
    credits_total: int  # what the current term started with
    unallocated: int
    needs_allocation: bool
    key_hash: str
    version: int
    sites: dict[str, SiteEntry] = field(default_factory=dict)

    @property
    def live_active(self) -> int:
        return sum(1 for entry in self.sites.values() if entry.active and entry.environment == "live")

    @property
    def allocated(self) -> int:
        return self.credits_total - self.unallocated


@dataclass(frozen=True, slots=True)
class Site:
    license_id: str
    site: str
    environment: Environment
    network: bool
    active: bool
    allocated: int
    used: int
    remaining: int
    activated_at: str
    token_hash: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerConsume:
    """The immutable record of one consume: also its idempotency record."""

    site: str
    request_id: str
    amount: int
    body_hash: str
    at: str
    feature: str | None = None
    subsite: str | None = None
