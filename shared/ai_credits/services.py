"""The use cases: one function each. Load -> decide with ``rules`` -> one conditional write.

Every function takes ``now`` (an RFC 3339 string) instead of reading a clock, raises only
``ai_credits.errors`` exceptions for what the caller did wrong, and never enforces a limit with
a read alone: the write's conditions do (``store``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from ai_credits import rules, store
from ai_credits.clock import format_timestamp, parse_timestamp
from ai_credits.credentials import (
    ActivationToken,
    bearer_token,
    hash_license_key,
    new_activation_token,
    parse_activation_token,
)
from ai_credits.domain import Environment, License, Site, SiteEntry
from ai_credits.errors import (
    ActivationLimitReached,
    BelowUsed,
    IdempotencyConflict,
    InsufficientCredits,
    LicenseExpired,
    LicenseKeyInUse,
    NotFound,
    OverAllocation,
    Unauthorized,
    Unavailable,
    field_error,
)
from ai_credits.models import (
    ActivationRequest,
    ActivationResponse,
    BalanceResponse,
    BalanceSite,
    ConsumeRequest,
    ConsumeResponse,
    CreditsView,
    LicenseList,
    LicenseListItem,
    LicenseSummary,
    ProvisionRequest,
    ProvisionResponse,
    SiteCredits,
)

# A decision made on a read is retried on fresh values this many times when a concurrent
# write got there first (the write's conditions noticed).
STALE_RETRIES = 8


def _site_key(raw: str, field: tuple[str, ...]) -> str:
    try:
        return rules.normalize_site_url(raw)
    except rules.InvalidSiteUrl as error:
        raise field_error(field, "site_url", str(error)) from None


def _authenticate(authorization: str | None) -> ActivationToken:
    """The activation token of an ``Authorization: Bearer <token>`` header, or 401."""
    credentials = bearer_token(authorization)
    token = parse_activation_token(credentials) if credentials else None
    if token is None:
        raise Unauthorized("a valid activation token is required (Authorization: Bearer <token>)")
    return token


def _refuse_bad_token() -> Unauthorized:
    return Unauthorized("the activation token is not valid (revoked, rotated or unknown)")


# -- views --------------------------------------------------------------------------------


def _summary(license_: License, now: str) -> LicenseSummary:
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
    license_: License, sites: list[Site], now: str, applied: Mapping[str, int] | None = None
) -> CreditsView:
    """The *Manage AI Credits* figures: ``allocated`` sums every listed site, active or not.

    ``applied``: the allocations written since ``sites`` were read (site -> its new allocation;
    ``remaining`` follows), so that an Apply answers from its read without copying its sites.
    """
    applied = applied or {}
    rows: list[dict[str, Any]] = []
    for site in sorted(sites, key=lambda site: site.site):
        allocated = applied.get(site.site)
        rows.append(
            {
                "site": site.site,
                "environment": site.environment,
                "network": site.network,
                "active": site.active,
                "allocated": site.allocated if allocated is None else allocated,
                "used": site.used,
                "remaining": site.remaining if allocated is None else allocated - site.used,
                "activated_at": site.activated_at,
            }
        )
    # The rows are validated into CreditsSite models by CreditsView itself (one pass, in pydantic-core).
    return CreditsView(
        **_summary(license_, now).model_dump(exclude={"allocated"}),
        allocated=sum(row["allocated"] for row in rows),
        needs_allocation=license_.needs_allocation,
        sites=rows,
    )


# -- billing: provisioning ----------------------------------------------------------------


def _imported_sites(request: ProvisionRequest) -> list[rules.ImportedSite]:
    imported: dict[str, rules.ImportedSite] = {}
    for index, activation in enumerate(request.activations or []):
        field = ("body", "activations", str(index), "site_url")
        site = _site_key(activation.site_url, field)
        if site in imported:
            raise field_error(field, "duplicate_site", f"{site} is listed twice")
        environment = rules.classify_environment(site, activation.environment)
        imported[site] = rules.ImportedSite(site=site, environment=environment, network=activation.network)
    return list(imported.values())


def _check_import_limit(sites: list[rules.ImportedSite], site_limit: int) -> None:
    live = sum(1 for site in sites if site.environment == "live")
    if live > site_limit:
        raise ActivationLimitReached(
            f"{live} live activations exceed the license's site_limit of {site_limit}"
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
    for attempt in range(STALE_RETRIES):
        existing, existing_sites = store.get_license_with_sites(license_id)
        try:
            if existing is None:
                _create_license(license_id, request, key_hash, imported, now)
                created = True
            else:
                _update_license(existing, existing_sites, request, key_hash, imported, now)
                created = False
        except store.StaleLicense:
            store.back_off(attempt)
            continue
        except store.KeyTaken:
            raise LicenseKeyInUse("another license already holds this license key") from None
        license_, sites = store.get_license_with_sites(license_id)
        assert license_ is not None  # written just above; deletes do not exist
        return created, license_view(license_, sites, now)
    raise Unavailable("the license is being changed concurrently; retry shortly")


def license_view(license_: License, sites: list[Site], now: str) -> ProvisionResponse:
    """Billing's view of a license: the *Manage AI Credits* figures plus the plan's fields."""
    return ProvisionResponse(
        **credits_view(license_, sites, now).model_dump(),
        account_id=license_.account_id,
        site_limit=license_.site_limit,
        credits_per_term=license_.credits_per_term,
        term_months=license_.term_months,
        expires_at=license_.expires_at,
    )


def _imported_site(license_id: str, site: rules.ImportedSite, allocated: int, now: str) -> Site:
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
        sites={site.site: SiteEntry(site.environment, site.network, active=True) for site in imported},
    )
    sites = [_imported_site(license_id, site, allocations[site.site], now) for site in imported]
    store.write_new_license(license_, sites)


def _update_license(
    existing: License,
    existing_sites: list[Site],
    request: ProvisionRequest,
    key_hash: str,
    imported: list[rules.ImportedSite],
    now: str,
) -> None:
    new_sites = [site for site in imported if site.site not in existing.sites]
    live_after = existing.live_active + sum(1 for site in new_sites if site.environment == "live")
    if new_sites and live_after > request.site_limit:
        raise ActivationLimitReached(
            f"{live_after} live activations would exceed the license's site_limit of {request.site_limit}"
        )
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
        sites={
            **existing.sites,
            **{site.site: SiteEntry(site.environment, site.network, active=True) for site in new_sites},
        },
    )
    store.write_license_update(
        existing,
        updated,
        [_imported_site(existing.license_id, site, 0, now) for site in new_sites],
        [site.site for site in existing_sites],
    )


# -- plugin: activation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activation:
    created: bool
    response: ActivationResponse


def activate(request: ActivationRequest, now: str) -> Activation:
    """``POST /v1/activations``: activate a site, or rotate the token of an active one."""
    site = _site_key(request.site_url, ("body", "site_url"))
    environment = rules.classify_environment(site, request.environment)
    license_ = store.find_license_by_key_hash(hash_license_key(request.license_key))
    if license_ is None:
        raise NotFound("no license has this license key")
    for attempt in range(STALE_RETRIES):
        if rules.is_expired(license_.expires_at, now):
            raise LicenseExpired(f"the license expired at {license_.expires_at}")
        try:
            return _activate_on(license_, site, environment, request.network, now)
        except store.StaleLicense as stale:
            if stale.current is None or stale.current.key_hash != license_.key_hash:
                raise NotFound("no license has this license key") from None
            license_ = stale.current
            store.back_off(attempt)
        except store.ConditionFailed:
            # The site was deactivated or the license changed between the read and the write.
            refreshed = store.get_license(license_.license_id)
            if refreshed is None:
                raise NotFound("no license has this license key") from None
            license_ = refreshed
            store.back_off(attempt)
    raise Unavailable("the license is being changed concurrently; retry shortly")


def _activate_on(
    license_: License, site: str, environment: Environment, network: bool, now: str
) -> Activation:
    try:
        plan = rules.plan_activation(license_, site, environment, network)
    except rules.ActivationLimit as error:
        raise ActivationLimitReached(str(error)) from None
    token, token_hash = new_activation_token(license_.license_id, site)
    previous = license_.sites.get(site)
    if previous is not None and previous.active and plan.entry == previous and not plan.changes_license:
        rotated = store.rotate_token(license_.license_id, site, token_hash, now)
        return Activation(created=False, response=_activation_response(token, rotated))

    updated = replace(
        license_,
        unallocated=license_.unallocated - plan.auto_allocate,
        needs_allocation=plan.needs_allocation,
        sites={**license_.sites, site: plan.entry},
    )
    if previous is not None and previous.active:
        # Same site, but its environment or network changed: the license records it too.
        store.write_activation(
            license_,
            updated,
            _site_placeholder(license_, site, environment, network, token_hash, now),
            True,
            now,
        )
        current = store.get_site(license_.license_id, site)
        assert current is not None
        return Activation(created=False, response=_activation_response(token, current))

    used = previous.used if previous is not None else 0
    allocated = used + plan.auto_allocate if previous is not None else plan.auto_allocate
    activated = Site(
        license_id=license_.license_id,
        site=site,
        environment=environment,
        network=network,
        active=True,
        allocated=allocated,
        used=used,
        remaining=allocated - used,
        activated_at=now,
        token_hash=token_hash,
    )
    store.write_activation(license_, updated, activated, previous is not None, now)
    return Activation(created=True, response=_activation_response(token, activated))


def _site_placeholder(
    license_: License, site: str, environment: Environment, network: bool, token_hash: str, now: str
) -> Site:
    """The fields an update of an existing site sets (its counters are changed relatively)."""
    return Site(
        license_id=license_.license_id,
        site=site,
        environment=environment,
        network=network,
        active=True,
        allocated=0,
        used=0,
        remaining=0,
        activated_at=now,
        token_hash=token_hash,
    )


def _activation_response(token: str, site: Site) -> ActivationResponse:
    return ActivationResponse(
        activation_token=token,
        site=site.site,
        environment=site.environment,
        network=site.network,
        license_id=site.license_id,
        credits=SiteCredits(allocated=site.allocated, used=site.used, remaining=site.remaining),
    )


def deactivate(authorization: str | None, now: str) -> None:
    """``DELETE /v1/activations/current``: the rest of the allocation returns to ``unallocated``.

    The write requires the site's counters as read; if consumes keep moving them (a network's
    sub-sites spending), after a few tries the site's consumes are held off for a moment.
    """
    token = _authenticate(authorization)
    for attempt in range(STALE_RETRIES + OPTIMISTIC_ATTEMPTS):
        license_, site = store.get_license_and_site(token.license_id, token.site)
        if license_ is None or site is None or not site.active or not token.matches(site.token_hash):
            raise _refuse_bad_token()
        if attempt == OPTIMISTIC_ATTEMPTS:
            store.fence_consumes(token.license_id, [site.site], _fence_until(now))
            continue
        previous = license_.sites[site.site]
        updated = replace(
            license_,
            unallocated=license_.unallocated + site.remaining,
            sites={**license_.sites, site.site: replace(previous, active=False, used=site.used)},
        )
        try:
            store.write_deactivation(license_, updated, site, now)
            return
        except (store.StaleLicense, store.ConditionFailed):
            store.back_off(attempt)
            continue
    raise Unavailable("the site is being changed concurrently; retry shortly")


# -- plugin: balance ----------------------------------------------------------------------


def balance(authorization: str | None, now: str) -> BalanceResponse:
    """``GET /v1/balance``: one strongly consistent read of the license and the site."""
    token = _authenticate(authorization)
    license_, site = store.get_license_and_site(token.license_id, token.site)
    if license_ is None or site is None or not site.active or not token.matches(site.token_hash):
        raise _refuse_bad_token()
    return BalanceResponse(
        license=_summary(license_, now),
        site=BalanceSite(
            site=site.site,
            environment=site.environment,
            network=site.network,
            allocated=site.allocated,
            used=site.used,
            remaining=site.remaining,
        ),
        needs_allocation=license_.needs_allocation,
    )


def etag_of(body: dict[str, Any]) -> str:
    """A strong ETag of a JSON body: equal figures, equal tag."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


# -- plugin: consume ----------------------------------------------------------------------


def _body_hash(amount: int, feature: str | None, subsite: str | None) -> str:
    canonical = json.dumps({"amount": amount, "feature": feature, "subsite": subsite}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(slots=True)
class _SiteMemory:
    remaining: int | None = None  # the last ``remaining`` seen
    read_first_until: float = 0.0  # a guess from memory went stale: read first until then
    contended_until: float = 0.0  # guesses went stale twice in a row: do not guess until then


class ConsumeMemory:
    """What one execution environment remembers of the sites it charged, per (license id, site).

    A consume sends the last ``remaining`` seen as its compare-and-set guess. A stale guess costs
    a request, never a wrong answer (the write's condition compares it with the item). When a
    guess from memory goes stale (the site's requests also reach other environments), this
    environment reads before charging that site for ``READ_FIRST_SECONDS``: a read is cheaper than
    a refused write. When guesses go stale twice in one request (other environments spending at
    the same moment), it stops guessing for ``CONTENTION_SECONDS``: guessing would only add
    refused writes to a hot item. Bounded: emptied when full.
    """

    READ_FIRST_SECONDS = 60.0
    CONTENTION_SECONDS = 2.0
    MAX_SITES = 10_000

    def __init__(self) -> None:
        self._sites: dict[tuple[str, str], _SiteMemory] = {}

    def _site(self, key: tuple[str, str]) -> _SiteMemory:
        site = self._sites.get(key)
        if site is None:
            if len(self._sites) >= self.MAX_SITES:
                self._sites.clear()
            site = self._sites[key] = _SiteMemory()
        return site

    def contended(self, key: tuple[str, str]) -> bool:
        site = self._sites.get(key)
        return site is not None and time.monotonic() < site.contended_until

    def guess(self, key: tuple[str, str]) -> int | None:
        """The ``remaining`` to guess without reading, or None: read first."""
        site = self._sites.get(key)
        if site is None or time.monotonic() < site.read_first_until:
            return None
        return site.remaining

    def saw(self, key: tuple[str, str], remaining: int | None) -> None:
        self._site(key).remaining = remaining

    def stale(self, key: tuple[str, str]) -> None:
        self._site(key).read_first_until = time.monotonic() + self.READ_FIRST_SECONDS

    def contention(self, key: tuple[str, str]) -> None:
        self._site(key).contended_until = time.monotonic() + self.CONTENTION_SECONDS

    def forget(self) -> None:
        self._sites.clear()


CONSUME_MEMORY = ConsumeMemory()
# Compare-and-set attempts of one consume before it charges with ``remaining >= amount``.
CAS_ATTEMPTS = 2


def forget_seen_balances() -> None:
    """Forget every site seen (as a new execution environment would)."""
    CONSUME_MEMORY.forget()


def consume(authorization: str | None, request: ConsumeRequest, now: str) -> ConsumeResponse:
    """``POST /v1/consume``: spend exactly once per ``request_id``.

    One TransactWriteItems charges the site and writes the ledger entry (the idempotency record,
    with the answer) as a compare-and-set on the site's ``remaining`` (``ConsumeMemory``): the
    guess being right, the answer needs no read. Refused, the transaction reports the items as
    they were: a bad token, an expired license, too few credits, a used ``request_id`` or a stale
    guess are told apart without reading, and a stale guess is retried with the value it
    returned. Without a guess, one strongly consistent BatchGetItem of the site and the ledger
    entry comes first (it alone answers a replay or a bad token).

    Requests: 1 with a current guess; 2 with a read first or a stale guess. Under contention
    (stale twice in a row), the charge with ``remaining >= amount``, a read of ``remaining``
    and a write of the answer to the ledger entry (3).
    """
    token = _authenticate(authorization)
    subsite = _site_key(request.subsite_url, ("body", "subsite_url")) if request.subsite_url else None
    body_hash = _body_hash(request.amount, request.feature, subsite)
    entry: dict[str, Any] = {
        "site": token.site,
        "request_id": request.request_id,
        "amount": request.amount,
        "body_hash": body_hash,
        "at": now,
        "feature": request.feature,
        "subsite": subsite,
    }
    key = (token.license_id, token.site)
    memory = CONSUME_MEMORY

    def charge(expected: int | None) -> store.ConsumeRefused | None:
        refused = store.charge(
            token.license_id,
            token.site,
            token.secret_hash,
            request.amount,
            request.request_id,
            entry,
            now,
            network_only=subsite is not None,
            expected_remaining=expected,
        )
        if refused is not None and refused.site_failed:
            memory.saw(key, int(refused.site["remaining"]) if refused.site is not None else None)
        return refused

    if not memory.contended(key):
        guess = memory.guess(key)
        from_memory = guess is not None
        if guess is None:
            site, used_entry = store.read_for_consume(token.license_id, token.site, request.request_id)
            memory.saw(key, int(site["remaining"]) if site is not None else None)
            if site is None or not token.matches(site.get("token_hash")) or used_entry is not None:
                refusal = store.ConsumeRefused(site_failed=True, site=site, entry=used_entry)
                return _explain_refusal(token, request, refusal, body_hash, now)
            guess = int(site["remaining"])
        for attempt in range(CAS_ATTEMPTS):
            refused = charge(guess)
            if refused is None:
                memory.saw(key, guess - request.amount)
                return _charged(request, guess - request.amount)
            if not _stale_guess(token, request, refused, guess, now):
                return _explain_refusal(token, request, refused, body_hash, now)
            if attempt == 0 and from_memory:
                memory.stale(key)
            assert refused.site is not None
            guess = int(refused.site["remaining"])
        memory.contention(key)
    refused = charge(None)
    if refused is not None:
        return _explain_refusal(token, request, refused, body_hash, now)
    remaining = store.site_remaining(token.license_id, token.site)
    memory.saw(key, remaining)
    # The first answer is kept with its ledger entry, so that a replay repeats it exactly.
    store.record_answer(token.license_id, token.site, request.request_id, remaining)
    return _charged(request, remaining)


def _charged(request: ConsumeRequest, remaining: int) -> ConsumeResponse:
    return ConsumeResponse(
        request_id=request.request_id, consumed=request.amount, remaining=remaining, replayed=False
    )


def _stale_guess(
    token: ActivationToken, request: ConsumeRequest, refused: store.ConsumeRefused, guess: int, now: str
) -> bool:
    """Whether the charge failed only because the site's ``remaining`` was not ``guess``: every
    other condition held (token, expiry, fence, network, the request_id unused) and the site
    still has enough."""
    site = refused.site
    return (
        refused.entry is None
        and site is not None
        and token.matches(site.get("token_hash"))
        and not rules.is_expired(site["expires_at"], now)
        and site.get("consume_fence", "") <= now
        and (request.subsite_url is None or bool(site.get("network", False)))
        and int(site["remaining"]) >= request.amount
        and int(site["remaining"]) != guess
    )


def _explain_refusal(
    token: ActivationToken,
    request: ConsumeRequest,
    refused: store.ConsumeRefused,
    body_hash: str,
    now: str,
) -> ConsumeResponse:
    site = refused.site
    if refused.site_failed and (site is None or not token.matches(site.get("token_hash"))):
        raise _refuse_bad_token()
    if refused.entry is not None:
        # The token matched (the site's condition passed, or failed for another reason).
        if refused.entry.get("body_hash") != body_hash:
            raise IdempotencyConflict(
                f"request_id {request.request_id!r} was already used with a different body"
            )
        remaining = refused.entry.get("remaining_after")
        if remaining is None:  # the first answer was not recorded (yet): the balance now
            remaining = (
                site["remaining"] if site is not None else store.site_remaining(token.license_id, token.site)
            )
        return ConsumeResponse(
            request_id=request.request_id,
            consumed=refused.entry["amount"],
            remaining=remaining,
            replayed=True,
        )
    assert site is not None
    if site.get("consume_fence", "") > now:
        raise Unavailable("the license is being renewed; retry in a second", retry_after=1)
    if rules.is_expired(site["expires_at"], now):
        raise LicenseExpired(f"the license expired at {site['expires_at']}")
    if request.subsite_url is not None and not site.get("network", False):
        raise field_error(
            ("body", "subsite_url"), "not_a_network", "subsite_url is only for a network-activated Multisite"
        )
    raise InsufficientCredits(
        f"{request.amount} credits asked, {site['remaining']} remaining", remaining=site["remaining"]
    )


# -- portal -------------------------------------------------------------------------------

MAX_APPLY_SITES = 98  # one transaction: the license item + 98 sites, with room to spare


def _owned_license(account_id: str, license_id: str) -> tuple[License, list[Site]]:
    """The license and its sites, or 404 — the same 404 whether it is missing or another account's."""
    license_, sites = store.get_license_with_sites(license_id)
    if license_ is None or license_.account_id != account_id:
        raise NotFound(f"no license {license_id!r} in this account")
    return license_, sites


def list_licenses(account_id: str, now: str) -> LicenseList:
    """``GET /v1/licenses``."""
    items = sorted(store.licenses_of_account(account_id), key=lambda item: item["license_id"])
    return LicenseList(
        licenses=[
            LicenseListItem(
                license_id=item["license_id"],
                plan=item["plan"],
                status="expired" if rules.is_expired(item["expires_at"], now) else "active",
                term_end=item["term_end"],
                credits_total=item["credits_total"],
                unallocated=item["unallocated"],
            )
            for item in items
        ]
    )


def license_credits(account_id: str, license_id: str, now: str) -> CreditsView:
    """``GET /v1/licenses/{license_id}/credits``: the *Manage AI Credits* screen."""
    license_, sites = _owned_license(account_id, license_id)
    return credits_view(license_, sites, now)


def _requested_allocations(allocations: dict[str, int]) -> dict[str, int]:
    if len(allocations) > MAX_APPLY_SITES:
        raise field_error(
            ("body", "allocations"),
            "too_many_sites",
            f"at most {MAX_APPLY_SITES} sites per Apply ({len(allocations)} given); apply in several steps",
        )
    requested: dict[str, int] = {}
    for raw, allocation in allocations.items():
        site = _site_key(raw, ("body", "allocations", raw))
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
    for attempt in range(STALE_RETRIES):
        license_, sites = _owned_license(account_id, license_id)
        if rules.is_expired(license_.expires_at, now):
            raise LicenseExpired(f"the license expired at {license_.expires_at}")
        by_site = {site.site: site for site in sites}
        try:
            plan = rules.plan_allocations(license_.unallocated, by_site, requested)
        except rules.InactiveSite as error:
            raise NotFound(f"{error.site} is not an active site of this license") from None
        except rules.BelowUsedSite as error:
            raise BelowUsed(
                f"{error.site} already used {error.used} credits this term", site=error.site, used=error.used
            ) from None
        except rules.OverAllocated as error:
            raise OverAllocation(
                f"{error.requested} credits asked for these sites, {error.available} available",
                available=error.available,
                requested=error.requested,
            ) from None
        changes = [store.AllocationChange(site, old, new) for site, old, new in plan.changes]
        try:
            store.write_allocations(license_, changes, now)
        except store.AllocationRefused:
            store.back_off(attempt)
            continue
        delta = sum(change.new_allocated - change.old_allocated for change in changes)
        applied = {change.site: change.new_allocated for change in changes}
        updated = replace(license_, unallocated=license_.unallocated - delta, needs_allocation=False)
        return credits_view(updated, sites, now, applied)
    raise Unavailable("the license is being changed concurrently; retry shortly")


# -- scheduler: renewal -------------------------------------------------------------------


# Optimistic attempts before a write that needs settled counters holds consumes off a moment.
OPTIMISTIC_ATTEMPTS = 3
FENCE_SECONDS = 10


def _fence_until(wall_now: str) -> str:
    return format_timestamp(parse_timestamp(wall_now) + timedelta(seconds=FENCE_SECONDS))


def renew_license(license_id: str, now: str, wall_now: str | None = None) -> str:
    """Renew one license if its term has ended: ``renewed``, ``expired`` or ``not_due``.

    Exactly once per term: the write applies only to the version read, so a second run that
    overlaps finds the term moved on and answers ``not_due``. The write also requires every
    site's ``used`` to be the one read (so the expired credits it records are exact): when
    consumes keep changing them, after a few tries the renewal fences consumes off for at most
    ``FENCE_SECONDS`` (they answer 503 with Retry-After meanwhile) and writes on settled
    figures. ``now`` is the renewal's time (the schedule's); ``wall_now`` the real clock, for
    the fence's lease.
    """
    wall_now = wall_now or now
    for attempt in range(STALE_RETRIES + OPTIMISTIC_ATTEMPTS):
        license_, sites = store.get_license_with_sites(license_id)
        if license_ is None:
            raise NotFound(f"no license {license_id!r}")
        if license_.term_end > now:
            return "not_due"
        try:
            if not rules.should_renew(license_, now):
                store.mark_expired(license_)
                return "expired"
            if attempt >= OPTIMISTIC_ATTEMPTS:
                active = [site.site for site in sites if site.active]
                store.fence_consumes(license_id, active, _fence_until(wall_now), license_.version)
                license_, sites = store.get_license_with_sites(license_id)
                assert license_ is not None
            _write_renewal(license_, sites, now)
            return "renewed"
        except store.StaleLicense:
            store.back_off(attempt)
            continue
    raise Unavailable(f"license {license_id!r} kept changing during its renewal")


def _write_renewal(license_: License, sites: list[Site], now: str) -> None:
    renewal = rules.plan_renewal(license_, sites, now)
    active = {site.site: site for site in sites if site.active}
    renewed = replace(
        license_,
        term_start=renewal.term_start,
        term_end=renewal.term_end,
        credits_total=license_.credits_per_term,
        unallocated=renewal.unallocated,
        needs_allocation=renewal.needs_allocation,
        sites={
            site: entry if entry.used == 0 else replace(entry, used=0)
            for site, entry in license_.sites.items()
            if site in active
        },
    )
    unused = {site.site: site.remaining for site in active.values()}
    expiry_entry = {
        "term_start": license_.term_start,
        "term_end": license_.term_end,
        "credits_total": license_.credits_total,
        "unallocated": license_.unallocated,
        "sites": unused,  # per active site: the credits that expire
        "used": {site.site: site.used for site in sites},  # per site of the term, for audits
        "expired": license_.unallocated + sum(unused.values()),
        "at": now,
    }
    store.write_renewal(
        license_,
        renewed,
        [store.RenewedSite(site, renewal.allocations[name]) for name, site in active.items()],
        [site for site in sites if not site.active],
        expiry_entry,
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
        except Exception as error:
            report.failed.append({"license_id": license_id, "error": f"{type(error).__name__}: {error}"})
            continue
        getattr(report, outcome).append(license_id)
    return report


# -- operator: audit ----------------------------------------------------------------------


def audit(license_ids: list[str] | None = None) -> dict[str, list[str]]:
    """Reconcile the named licenses (default: every license) with their ledgers: the drifts
    found, by license (an empty dict: no drift)."""
    from ai_credits.audit import reconcile

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
