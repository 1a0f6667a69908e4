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
class PendingRenewal:
    """A renewal that has begun and not yet finished: the next term as it was decided.

    While it is pending, the sites move to the new term one batch at a time (each site's
    ``term_start`` says which term its counters belong to); readers show the new term for
    every site, and writes that change the license's totals wait (503) until it finishes.
    ``allocations`` lists the new term's non-zero allocations (the others are 0) and a single-site
    license's live site even at 0 (the carried credits go to it). Credits carried
    over (rule 10) are not in these figures: they depend on what the ended term's sites spend
    until they move, so ``finish`` adds them, exactly, when every site has moved.
    """

    from_term: str
    term_start: str
    term_end: str
    credits_total: int
    unallocated: int
    needs_allocation: bool
    allocations: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Grant:
    """Credits added to a license outside its plan (a top-up, a goodwill credit), rule 9.

    ``credits`` is what it brought into the term ``term_start`` (granted in it, or carried into it
    by rule 10); ``expires_at`` None: usable until the end of the term it was granted in.
    """

    grant_id: str
    credits: int
    expires_at: str | None
    granted_at: str
    reason: str | None
    term_start: str
    body_hash: str = ""


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
    credits_total: int  # the current term's: term_credits + carried_over + granted
    unallocated: int
    needs_allocation: bool
    key_hash: str
    version: int
    # Counters the database's conditions keep (never Python): active live sites (at most
    # ``site_limit``), active staging/development sites (at most ``NONLIVE_PER_LIVE *
    # site_limit``) and site items of the current term (active or not).
    live_active: int = 0
    nonlive_active: int = 0
    site_items: int = 0
    renewal: PendingRenewal | None = None
    # What ``credits_total`` is made of (rule 10): the term's own credits (``credits_per_term``
    # when it started), the grants' credits carried into it, and the grants applied during it.
    term_credits: int | None = None  # None on items older than the field: all of credits_total
    carried_over: int = 0
    granted: int = 0
    low_balance_percent: int = 20  # rule 13's threshold (0: no "low" alert)
    counters_stored: bool = True  # False: an item older than the counters (see store.migrate_counters)

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
    remaining: int  # allocated - used - held
    activated_at: str
    token_hash: str | None = None
    held: int = 0  # reserved by open holds (rule 11)
    activation: int = 0  # counts its re-activations: a hold of an earlier one was released
    expires_at: str = ""  # the license's, copied so that a consume checks it in the site item
    term_start: str = ""  # the term its counters belong to ("" on items older than the field)
    consume_fence: str = ""  # consumes wait until then (a renewal or deactivation settling)


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
    remaining_after: int | None = None  # the first answer's ``remaining``, kept for replays
    term_start: str | None = None  # the site's term it was charged in (None: older entries)


@dataclass(frozen=True, slots=True)
class LicenseListing:
    """What an account's list of licenses shows of each (the account index's projection)."""

    license_id: str
    plan: Plan
    term_end: str
    expires_at: str
    credits_total: int
    unallocated: int
