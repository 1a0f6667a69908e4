"""The operator's use case: reconcile licenses with their ledgers (``make audit``)."""

from __future__ import annotations

from ai_credits import store
from ai_credits.audit import reconcile


def audit(license_ids: list[str] | None = None) -> dict[str, list[str]]:
    """Reconcile the named licenses (default: every license) with their ledgers: the drifts
    found, by license (an empty dict: no drift)."""
    drift: dict[str, list[str]] = {}
    for license_id in license_ids if license_ids is not None else store.all_license_ids():
        license_, sites = store.get_license_with_sites(license_id)
        if license_ is None:
            drift[license_id] = ["no such license"]
            continue
        problems = reconcile(license_, sites, store.ledger_entries(license_id))
        if problems:
            drift[license_id] = problems
    return drift
