"""The scheduler's use case: renew every license whose term has ended (rule 5)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ai_credits import rules, store
from ai_credits.domain import Grant, License, PendingRenewal, Site
from ai_credits.errors import NotFound
from ai_credits.services import fences
from ai_credits.services.retry import STALE_RETRIES, retry_on_stale
from ai_credits.services.views import term_credits


def renew_license(license_id: str, now: str, wall_now: str | None = None) -> str:
    """Renew one license if its term has ended: ``renewed``, ``expired`` or ``not_due``.

    A renewal works for any number of sites, in steps that can each be repeated, so a run that
    stops anywhere is finished by the next one (the hourly schedule, or a retry):
    1. ``begin``: the next term, decided on one read (rule 5), is recorded on the license, once
       per term (the license's version). Writes that change the license's totals wait (503).
    2. ``roll``: the sites move into the new term in transactions of ``store.ROLL_BATCH``, each
       site once (its ``term_start``), each batch with the ledger record of what its sites leave
       (their ``used`` and ``remaining`` must be the ones read: consumes racing the renewal are
       counted exactly; after a few tries the batch's consumes are fenced for a moment). A site
       spends the credits of the term it is in, the old one until it moves, then the new one.
    3. ``finish``: the license enters the new term with the record of its totals, once.
    Readers see the new term throughout (``views.settled``). ``now`` is the renewal's time (the
    schedule's); ``wall_now`` the real clock, for the fences' lease.
    """
    lease_from = wall_now or now

    def attempt(_: int) -> str:
        license_, sites, grants = store.get_license_view(license_id)
        if license_ is None:
            raise NotFound(f"no license {license_id!r}")
        if license_.renewal is None:
            if license_.term_end > now:
                return "not_due"
            if not rules.should_renew(license_, now):
                store.mark_expired(license_)
                return "expired"
            if not license_.counters_stored:
                store.migrate_counters(license_)
            renewal = _decide(license_, sites, now)
            store.begin_renewal(license_, renewal)
            license_ = replace(license_, renewal=renewal, version=license_.version + 1)
        _roll(license_, sites, now, lease_from)
        _finish(license_, sites, grants, now)
        return "renewed"

    return retry_on_stale(
        attempt, f"license {license_id!r} kept changing during its renewal", retried=(store.StaleLicense,)
    )


def _decide(license_: License, sites: list[Site], now: str) -> PendingRenewal:
    renewal = rules.plan_renewal(license_, sites, now)
    return PendingRenewal(
        from_term=license_.term_start,
        term_start=renewal.term_start,
        term_end=renewal.term_end,
        credits_total=license_.credits_per_term,
        unallocated=renewal.unallocated,
        needs_allocation=renewal.needs_allocation,
        # The non-zero allocations, and the live site's even at 0 (credits_per_term 0): _finish
        # gives it the carried credits.
        allocations={
            site: credits
            for site, credits in renewal.allocations.items()
            if credits or site == renewal.live_site
        },
    )


def _roll(license_: License, sites: list[Site], now: str, lease_from: str) -> None:
    renewal = license_.renewal
    assert renewal is not None
    ended = sorted(
        (site for site in sites if site.term_start != renewal.term_start), key=lambda site: site.site
    )
    for start in range(0, len(ended), store.ROLL_BATCH):
        _roll_batch(license_.license_id, renewal, ended[start : start + store.ROLL_BATCH], now, lease_from)


def _roll_batch(
    license_id: str, renewal: PendingRenewal, batch: list[Site], now: str, lease_from: str
) -> None:
    """One batch, retried on the sites as the refusal returned them; sites another run moved
    (or dropped) meanwhile leave the batch."""
    pending = {site.site: site for site in batch}

    def attempt(number: int) -> None:
        if not pending:
            return
        if number == fences.OPTIMISTIC_ATTEMPTS:
            active = [name for name, site in pending.items() if site.active]
            if active:
                store.fence_consumes(license_id, active, fences.fence_until(lease_from))
        try:
            store.roll_sites(license_id, renewal, sorted(pending.values(), key=lambda site: site.site), now)
        except store.RollRefused as refused:
            for name, current in refused.sites.items():
                if current is None or current.term_start == renewal.term_start:
                    del pending[name]
                else:
                    pending[name] = current
            raise

    retry_on_stale(
        attempt,
        f"license {license_id!r}: its sites kept changing during the renewal",
        attempts=STALE_RETRIES + fences.OPTIMISTIC_ATTEMPTS,
        retried=(store.RollRefused,),
    )


def _finish(license_: License, sites: list[Site], grants: list[Grant], now: str) -> None:
    """The ended term's figures are exact once every site moved (the batches' records): rule 10
    decides what carries over from them, and the finish writes it with the new term."""
    renewal = license_.renewal
    assert renewal is not None
    records = store.expiry_records(license_.license_id, renewal.from_term)
    used = sum(sum(record.get("used", {}).values()) for record in records)
    unused = sum(sum(record.get("sites", {}).values()) for record in records)
    carried = rules.carry_over(
        term_credits(license_),
        license_.term_end,
        [grant for grant in grants if grant.term_start == renewal.from_term],
        used,
        renewal.term_start,
    )
    # Rule 1 on the carried credits: a single-site license's live site gets them too. Its
    # allocations name that site only (_decide), even when the term's own credits are 0.
    live_site = next(iter(renewal.allocations), None) if license_.plan == "single-site" else None
    store.finish_renewal(
        license_,
        sum(1 for site in sites if site.active),
        {
            "term_start": license_.term_start,
            "term_end": license_.term_end,
            "credits_total": license_.credits_total,
            "unallocated": license_.unallocated,
            "used_total": used,
            "carried_over": carried,
            "expired": license_.unallocated + unused - sum(carried.values()),
            "site_records": len(records),
            "at": now,
        },
        carried,
        live_site,
    )


@dataclass
class RenewalReport:
    now: str
    renewed: list[str]
    expired: list[str]
    not_due: list[str]
    failed: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "renewed": self.renewed,
            "expired": self.expired,
            "not_due": self.not_due,
            "failed": self.failed,
        }


def renew_due(now: str, license_ids: list[str] | None = None, wall_now: str | None = None) -> RenewalReport:
    """Renew every license whose term ended (or the ones named). One failing license is
    reported and does not stop the others."""
    report = RenewalReport(now=now, renewed=[], expired=[], not_due=[], failed=[])
    for license_id in license_ids if license_ids is not None else store.licenses_due(now):
        try:
            outcome = renew_license(license_id, now, wall_now)
        except Exception as error:  # reported per license; the run goes on with the others
            report.failed.append({"license_id": license_id, "error": f"{type(error).__name__}: {error}"})
            continue
        getattr(report, outcome).append(license_id)
    return report
