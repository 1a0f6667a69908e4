"""Reconcile a license's counters with its ledger: the checker of the reliability tests and of
``make audit``. Pure: it is given what the table holds and returns every drift it finds.

What must hold (API.md, "Words" and rules 3 and 6):
- every site: ``0 <= used <= allocated`` and ``remaining == allocated - used`` (so never below 0);
- the license: ``unallocated >= 0`` and ``unallocated + sum(allocated) == credits_total``, and
  ``credits_total == term_credits + carried_over + granted`` (rule 10);
- the license's counters agree with the site items (active live, active staging/development, all);
- the ledger replayed from zero equals the counters: for every site, the consume entries less
  the refunds add up
  to the ``used`` of its ended terms (recorded in the expiry entries) plus its current ``used``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ai_credits.domain import License, Site


def reconcile(license_: License, sites: Iterable[Site], ledger: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every inconsistency between a license, its sites and its ledger (empty: all is well)."""
    sites = list(sites)
    problems: list[str] = []
    for site in sites:
        if not 0 <= site.used <= site.allocated:
            problems.append(f"{site.site}: used {site.used} outside 0..allocated {site.allocated}")
        if site.remaining != site.allocated - site.used - site.held or site.held < 0:
            problems.append(
                f"{site.site}: remaining {site.remaining} != allocated {site.allocated} - used {site.used}"
                f" - held {site.held}"
            )
    allocated = sum(site.allocated for site in sites)
    if license_.unallocated < 0:
        problems.append(f"unallocated {license_.unallocated} < 0")
    if license_.unallocated + allocated != license_.credits_total:
        total = license_.credits_total
        problems.append(
            f"unallocated {license_.unallocated} + allocated {allocated} != credits_total {total}"
        )
    if license_.term_credits is not None and license_.renewal is None:
        parts = license_.term_credits + license_.carried_over + license_.granted
        if parts != license_.credits_total:
            problems.append(
                f"term_credits {license_.term_credits} + carried_over {license_.carried_over}"
                f" + granted {license_.granted} != credits_total {license_.credits_total}"
            )
    live = sum(1 for site in sites if site.active and site.environment == "live")
    nonlive = sum(1 for site in sites if site.active and site.environment != "live")
    counted = (license_.live_active, license_.nonlive_active, license_.site_items)
    if license_.renewal is None and counted != (live, nonlive, len(sites)):
        problems.append(f"counters live/non-live/sites {counted} != site items {(live, nonlive, len(sites))}")

    consumed: Counter[str] = Counter()
    accounted: Counter[str] = Counter({site.site: site.used for site in sites})
    for entry in ledger:
        if entry.get("type") == "consume":
            if not isinstance(entry.get("amount"), int) or entry["amount"] <= 0:
                problems.append(f"consume entry {entry.get('sk')}: bad amount {entry.get('amount')!r}")
                continue
            consumed[entry["site"]] += entry["amount"]
        elif entry.get("type") == "refund":  # rule 12: the site's used fell by it
            consumed[entry["site"]] -= entry["refunded"]
        elif entry.get("type") in ("expiry", "expiry_sites"):  # a term's end: totals, then per site
            accounted.update(entry.get("used", {}))
    for name in sorted(set(consumed) | set(accounted)):
        if consumed[name] != accounted[name]:
            problems.append(
                f"{name}: ledger consumed {consumed[name]} != used over its terms {accounted[name]}"
            )
    return problems
