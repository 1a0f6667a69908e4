"""The plugin's use cases: activate, deactivate, balance (the refresh icon) and consume."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from typing import Any

from ai_credits import rules, store
from ai_credits.credentials import (
    ActivationToken,
    hash_license_key,
    legacy_license_key_hash,
    new_activation_token,
)
from ai_credits.domain import Environment, License, Site
from ai_credits.errors import (
    ActivationLimitReached,
    DomainError,
    IdempotencyConflict,
    InsufficientCredits,
    LicenseExpired,
    NotFound,
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
    SiteCredits,
)
from ai_credits.services import fences
from ai_credits.services.inputs import authenticate, bad_token, site_key
from ai_credits.services.retry import STALE_RETRIES, Stale, retry_on_stale
from ai_credits.services.views import renewed_license, summary

# -- plugin: activation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activation:
    created: bool
    response: ActivationResponse


def activate(request: ActivationRequest, now: str) -> Activation:
    """``POST /v1/activations``: activate a site, or rotate the token of an active one.

    Decided on the license (found by its key) and the site as last seen, written under
    conditions on both (``store.write_activation``). The site is first assumed new; a write
    refused because it exists returns it, and the decision is made again on it. Activations of
    different sites change the license's counters, never its version, so they do not retry
    against each other: a write fails only when its own assumptions broke.
    """
    site = site_key(request.site_url, ("body", "site_url"))
    environment = rules.classify_environment(site, request.environment)
    license_ = find_license(request.license_key)
    if license_ is None:
        raise NotFound("no license has this license key")
    read, previous, site_read = license_, None, False

    def attempt(_: int) -> Activation:
        nonlocal read, previous, site_read
        if rules.is_expired(read.expires_at, now):
            raise LicenseExpired(f"the license expired at {read.expires_at}")
        fences.refuse_while_renewing(read)
        try:
            if not read.counters_stored:
                store.migrate_counters(read)
            try:
                return _activate_on(read, previous, site, environment, request.network, now)
            except ActivationLimitReached:
                if site_read:
                    raise
                # Assumed new, the site would be beyond a limit: it may be an active one already.
                previous, site_read = store.get_site(read.license_id, site), True
                return _activate_on(read, previous, site, environment, request.network, now)
        except store.StaleLicense as stale:
            if stale.current is None or stale.current.key_hash != read.key_hash:
                raise NotFound("no license has this license key") from None
            read = stale.current
            raise
        except store.SiteChanged as changed:
            previous, site_read = changed.current, True
            raise

    return retry_on_stale(
        attempt,
        "the license is being changed concurrently; retry shortly",
        retried=(store.StaleLicense, store.SiteChanged),
    )


def find_license(license_key: str) -> License | None:
    """The license a key unlocks: by its current (peppered) hash, else by the hash of the
    scheme before it, which keeps working until billing next provisions that key."""
    for key_hash in (hash_license_key(license_key), legacy_license_key_hash(license_key)):
        license_ = store.find_license_by_key_hash(key_hash)
        if license_ is not None:
            return license_
    return None


def _activate_on(
    license_: License, previous: Site | None, site: str, environment: Environment, network: bool, now: str
) -> Activation:
    try:
        plan = rules.plan_activation(license_, previous, environment, network)
    except rules.ActivationLimit as error:
        raise ActivationLimitReached(str(error)) from None
    token, token_hash = new_activation_token(license_.license_id, site)
    if plan.rotate_only:
        assert previous is not None
        rotated = store.rotate_token(license_.license_id, previous, token_hash, now)
        return Activation(created=False, response=_activation_response(token, rotated))
    used = previous.used if previous is not None else 0
    allocated = (previous.allocated if previous is not None else 0) + plan.auto_allocate
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
        term_start=license_.term_start,
    )
    store.write_activation(license_, plan, activated, previous, now)
    if previous is not None and previous.active:
        # Same site, but its environment or network changed: its counters are as they are.
        current = store.get_site(license_.license_id, site)
        assert current is not None
        return Activation(created=False, response=_activation_response(token, current))
    return Activation(created=True, response=_activation_response(token, activated))


def _activation_response(token: str, site: Site) -> ActivationResponse:
    return ActivationResponse(
        activation_token=token,
        site=site.site,
        environment=site.environment,
        network=site.network,
        license_id=site.license_id,
        credits=SiteCredits(
            allocated=site.allocated, used=site.used, held=site.held, remaining=site.remaining
        ),
    )


def deactivate(authorization: str | None, now: str) -> None:
    """``DELETE /v1/activations/current``: the rest of the allocation returns to ``unallocated``."""
    token = authenticate(authorization)
    deactivate_site(token.license_id, token.site, now, token)


def deactivate_site(license_id: str, site_name: str, now: str, token: ActivationToken | None = None) -> None:
    """Deactivate a site: by the plugin (its ``token``) or the portal (no token; the caller
    checked the license's owner). 401 for a bad token, 404 for a site that is not active.

    The write requires the site's counters as read; if consumes keep moving them (a network's
    sub-sites spending), after a few tries the site's consumes are held off for a moment.
    """

    def attempt(number: int) -> None:
        license_, site = store.get_license_and_site(license_id, site_name)
        if token is not None and (
            license_ is None or site is None or not site.active or not token.matches(site.token_hash)
        ):
            raise bad_token()
        if license_ is None or site is None or not site.active:
            raise NotFound(f"{site_name} is not an active site of this license")
        fences.refuse_while_renewing(license_)
        if not license_.counters_stored:
            store.migrate_counters(license_)
        if number == fences.OPTIMISTIC_ATTEMPTS:
            store.fence_consumes(license_id, [site.site], fences.fence_until(now))
            raise Stale("fenced: decide again on settled counters")
        store.write_deactivation(license_, site, now, site.token_hash if token is not None else None)

    retry_on_stale(
        attempt,
        "the site is being changed concurrently; retry shortly",
        attempts=STALE_RETRIES + fences.OPTIMISTIC_ATTEMPTS,
    )


# -- plugin: balance ----------------------------------------------------------------------


def balance(authorization: str | None, now: str) -> BalanceResponse:
    """``GET /v1/balance``: one strongly consistent read of the license and the site."""
    token = authenticate(authorization)
    license_, site = store.get_license_and_site(token.license_id, token.site)
    if license_ is None or site is None or not site.active or not token.matches(site.token_hash):
        raise bad_token()
    if license_.renewal is not None and site.term_start == license_.renewal.term_start:
        license_ = renewed_license(license_)  # the site moved on: show the term it is in
    return BalanceResponse(
        license=summary(license_, now),
        site=BalanceSite(
            site=site.site,
            environment=site.environment,
            network=site.network,
            allocated=site.allocated,
            used=site.used,
            held=site.held,
            remaining=site.remaining,
        ),
        needs_allocation=license_.needs_allocation,
        alerts=rules.site_alerts(site, license_.low_balance_percent) + rules.license_alerts(license_, now),
    )


def etag_of(body: dict[str, Any]) -> str:
    """A strong ETag of a JSON body: equal figures, equal tag."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


# -- plugin: consume ----------------------------------------------------------------------


def _body_hash(amount: int, feature: str | None, subsite: str | None) -> str:
    """What a replay of a ``request_id`` must repeat: the hint ``expected_remaining`` is not
    part of it (a retry sends the ``remaining`` it last saw, which may have changed)."""
    canonical = json.dumps({"amount": amount, "feature": feature, "subsite": subsite}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(slots=True)
class _SiteMemory:
    remaining: int | None = None  # the last ``remaining`` seen
    term: str | None = None  # the last ``term_start`` seen ("": an item older than the field)
    read_first_until: float = 0.0  # a guess from memory went stale: read first until then
    contended_until: float = 0.0  # guesses went stale twice in a row: do not guess until then
    read: Site | None = None  # the site as last read (its activation, token, network: for holds)


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
        self._license_terms: dict[str, str] = {}  # license id -> the last term seen of any site

    def _site(self, key: tuple[str, str]) -> _SiteMemory:
        site = self._sites.get(key)
        if site is None:
            if len(self._sites) >= self.MAX_SITES:
                self._sites.clear()
                self._license_terms.clear()
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

    def term(self, key: tuple[str, str]) -> str | None:
        """The site's term as last seen, else the term last seen of another site of its license
        (the sites of a license are in its term but during a renewal), else None: read first.
        A wrong term is refused like a stale ``remaining``, and the refusal tells the right one."""
        site = self._sites.get(key)
        if site is not None and site.term is not None:
            return site.term
        return self._license_terms.get(key[0])

    def saw(self, key: tuple[str, str], remaining: int | None, term: str | None = None) -> None:
        site = self._site(key)
        site.remaining = remaining
        if term is not None:
            site.term = term
            self._license_terms[key[0]] = term

    def read(self, key: tuple[str, str], site: Site) -> None:
        """A read of the site: its figures to guess with, the rest for a hold's write."""
        self.saw(key, site.remaining, site.term_start)
        self._site(key).read = site

    def known_site(self, key: tuple[str, str]) -> Site | None:
        """The site as last read, with the ``remaining`` and term last seen, when there is a
        current guess (else None: read first). A hold, a capture or a release writes with it as
        the compare-and-set's expected values."""
        site = self._sites.get(key)
        guess, term = self.guess(key), self.term(key)
        if site is None or site.read is None or guess is None or term is None or self.contended(key):
            return None
        return replace(site.read, remaining=guess, term_start=term)

    def stale(self, key: tuple[str, str]) -> None:
        self._site(key).read_first_until = time.monotonic() + self.READ_FIRST_SECONDS

    def contention(self, key: tuple[str, str]) -> None:
        self._site(key).contended_until = time.monotonic() + self.CONTENTION_SECONDS

    def forget(self) -> None:
        self._sites.clear()
        self._license_terms.clear()


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
    entry comes first (it alone answers a replay or a bad token). The plugin's optional hint,
    ``expected_remaining``, is a guess like the environment's (``_first_guess``).

    Requests: 1 with a current guess; 2 with a read first or a stale guess. Under contention
    (stale twice in a row), the charge with ``remaining >= amount``, a read of ``remaining``
    and a write of the answer to the ledger entry (3).
    """
    token = authenticate(authorization)
    subsite = site_key(request.subsite_url, ("body", "subsite_url")) if request.subsite_url else None
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

    def charge(expected: int | None, term: str) -> store.ConsumeRefused | None:
        refused = store.charge(
            token.license_id,
            token.site,
            token.secret_hash,
            request.amount,
            request.request_id,
            entry,
            now,
            subsite,
            term,
            expected_remaining=expected,
        )
        if refused is not None and refused.site_failed:
            site = refused.site
            memory.saw(key, site.remaining if site else None, site.term_start if site else None)
        return refused

    def read_first() -> tuple[Site | None, store.ConsumeRefused | None]:
        site, used_entry = store.read_for_consume(token.license_id, token.site, request.request_id, subsite)
        if site is not None:
            memory.read(key, site)
        else:
            memory.saw(key, None)
        if site is None or not token.matches(site.token_hash) or used_entry is not None:
            return site, store.ConsumeRefused(site_failed=True, site=site, entry=used_entry)
        return site, None

    if not memory.contended(key):
        guess, term = _first_guess(memory, key, request.expected_remaining)
        from_memory = request.expected_remaining is None and guess is not None and term is not None
        if guess is None or term is None:
            site, refusal = read_first()
            if refusal is not None:
                return _explain_refusal(token, request, refusal, body_hash, now)
            assert site is not None
            guess, term = site.remaining, site.term_start
        for attempt in range(CAS_ATTEMPTS):
            refused = charge(guess, term)
            if refused is None:
                memory.saw(key, guess - request.amount)
                return _charged(request, guess - request.amount)
            if not _stale_guess(token, request, refused, guess, term, now):
                return _explain_refusal(token, request, refused, body_hash, now)
            if attempt == 0 and from_memory:
                memory.stale(key)
            assert refused.site is not None
            guess, term = refused.site.remaining, refused.site.term_start
        memory.contention(key)
    term = memory.term(key)
    if term is None:
        site, refusal = read_first()
        if refusal is not None:
            return _explain_refusal(token, request, refusal, body_hash, now)
        assert site is not None
        term = site.term_start
    refused = charge(None, term)
    if refused is not None and refused.site is not None and refused.site.term_start != term:
        # The site moved into its next term (a renewal) since it was last seen: charge that one.
        refused = charge(None, refused.site.term_start)
    if refused is not None:
        return _explain_refusal(token, request, refused, body_hash, now)
    remaining = store.site_remaining(token.license_id, token.site)
    memory.saw(key, remaining)
    # The first answer is kept with its ledger entry, so that a replay repeats it exactly.
    store.record_answer(token.license_id, token.site, request.request_id, subsite, remaining)
    return _charged(request, remaining)


def _first_guess(
    memory: ConsumeMemory, key: tuple[str, str], hint: int | None
) -> tuple[int | None, str | None]:
    """The compare-and-set's first guess of the site's ``remaining`` and term (None: read first).

    The plugin's hint (the ``remaining`` of its previous answer) wins over the environment's
    memory, even while that memory says to read first: a site's requests land on any
    environment, so an environment holds the current figure about one time in as many as serve
    the site, while the plugin saw the last answer unless another of its requests (or another
    sub-site of a network) spent since. A wrong hint costs the refused write, whose refusal
    brings the current figure (as a stale memory does); it never marks the memory stale. The
    term always comes from the environment: an environment that never saw the site's license
    reads first, hint or not.
    """
    term = memory.term(key)
    return (memory.guess(key) if hint is None else hint), term


def _charged(request: ConsumeRequest, remaining: int) -> ConsumeResponse:
    return ConsumeResponse(
        request_id=request.request_id, consumed=request.amount, remaining=remaining, replayed=False
    )


def _stale_guess(
    token: ActivationToken,
    request: ConsumeRequest,
    refused: store.ConsumeRefused,
    guess: int,
    term: str,
    now: str,
) -> bool:
    """Whether the charge failed only because the site's ``remaining`` was not ``guess`` or its
    term not ``term``: every other condition held (token, expiry, fence, network, the request_id
    unused) and the site still has enough."""
    site = refused.site
    return (
        refused.entry is None
        and site is not None
        and token.matches(site.token_hash)
        and not rules.is_expired(site.expires_at, now)
        and site.consume_fence <= now
        and (request.subsite_url is None or site.network)
        and site.remaining >= request.amount
        and (site.remaining != guess or site.term_start != term)
    )


def _explain_refusal(
    token: ActivationToken,
    request: ConsumeRequest,
    refused: store.ConsumeRefused,
    body_hash: str,
    now: str,
) -> ConsumeResponse:
    site = refused.site
    if refused.site_failed and (site is None or not token.matches(site.token_hash)):
        raise bad_token()
    if refused.entry is not None:
        # The token matched (the site's condition passed, or failed for another reason).
        if refused.entry.body_hash != body_hash:
            raise IdempotencyConflict(
                f"request_id {request.request_id!r} was already used with a different body"
            )
        remaining = refused.entry.remaining_after
        if remaining is None:  # the first answer was not recorded (yet): the balance now
            remaining = (
                site.remaining if site is not None else store.site_remaining(token.license_id, token.site)
            )
        return ConsumeResponse(
            request_id=request.request_id,
            consumed=refused.entry.amount,
            remaining=remaining,
            replayed=True,
        )
    assert site is not None
    raise refusal_of(site, request.amount, request.subsite_url is not None, now) or InsufficientCredits(
        f"{request.amount} credits asked, {site.remaining} remaining", remaining=site.remaining
    )


def refusal_of(site: Site, amount: int, for_a_subsite: bool, now: str) -> DomainError | None:
    """Why the site cannot spend ``amount`` now (a consume's or a hold's answer), or None."""
    if site.consume_fence > now:
        return Unavailable("the license is being renewed; retry in a second", retry_after=1)
    if rules.is_expired(site.expires_at, now):
        return LicenseExpired(f"the license expired at {site.expires_at}")
    if for_a_subsite and not site.network:
        return field_error(
            ("body", "subsite_url"), "not_a_network", "subsite_url is only for a network-activated Multisite"
        )
    if amount > site.remaining:
        return InsufficientCredits(
            f"{amount} credits asked, {site.remaining} remaining", remaining=site.remaining
        )
    return None
