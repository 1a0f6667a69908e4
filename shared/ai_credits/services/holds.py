"""The plugin's holds (rule 11): reserve credits before an AI call whose cost is known only
afterwards, capture what it cost, give back the rest; forgotten holds expire by themselves.

A hold is written under conditions on the site and the hold's entry (``store.write_hold`` /
``write_capture`` / ``write_release``): the site's ``remaining`` as expected (so every answer is
exact), its activation and term (a deactivation or a renewal released the holds placed before
it), the token, the hold still open. The expected values come from what this execution
environment knows (the site as last read and its ``remaining`` as last seen, ``ConsumeMemory``;
the holds it placed, ``KnownHolds``): when that is current, a hold, a capture or a release is one
request. When it is missing or stale (the write is refused), they are decided on one strongly
consistent read of the site and the entry. A write that loses a race is decided again on fresh
values; a write that answered 503 is repeated by the client with the same ``hold_id`` and answers
its true outcome (the entry says what happened).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from ai_credits import rules, store
from ai_credits.clock import format_timestamp, parse_timestamp
from ai_credits.credentials import ActivationToken
from ai_credits.domain import Site
from ai_credits.errors import (
    HoldCaptured,
    HoldExpired,
    IdempotencyConflict,
    LicenseExpired,
    NotFound,
    field_error,
)
from ai_credits.models import (
    CaptureRequest,
    CaptureResponse,
    HoldRequest,
    HoldResponse,
    HoldView,
    ReleaseResponse,
)
from ai_credits.services.inputs import authenticate, bad_token, site_key
from ai_credits.services.plugin import CONSUME_MEMORY, refusal_of
from ai_credits.services.retry import Stale, retry_on_stale

BUSY = "the site is being changed concurrently; retry shortly"

HoldKey = tuple[str, str, str, str | None]  # license id, site, hold id, sub-site


class KnownHolds:
    """The holds this execution environment placed and that are still open as far as it knows,
    so that their capture or release needs no read. Bounded: emptied when full."""

    MAX_HOLDS = 10_000

    def __init__(self) -> None:
        self._holds: dict[HoldKey, store.Hold] = {}

    def remember(self, license_id: str, hold: store.Hold) -> None:
        if len(self._holds) >= self.MAX_HOLDS:
            self._holds.clear()
        self._holds[(license_id, hold.site, hold.hold_id, hold.subsite)] = hold

    def get(self, key: HoldKey) -> store.Hold | None:
        return self._holds.get(key)

    def forget(self, key: HoldKey | None = None) -> None:
        if key is None:
            self._holds.clear()
        else:
            self._holds.pop(key, None)


KNOWN_HOLDS = KnownHolds()


def _known(
    token: ActivationToken, hold_id: str, subsite: str | None, now: str
) -> tuple[Site, store.Hold] | None:
    """The site and the open hold as this environment knows them, when it knows both and the
    hold is still for the site as known (else None: read first)."""
    site = CONSUME_MEMORY.known_site((token.license_id, token.site))
    hold = KNOWN_HOLDS.get((token.license_id, token.site, hold_id, subsite))
    if site is None or hold is None or not token.matches(site.token_hash):
        return None
    if hold.status != "open" or hold.expires_at <= now or not _placed_on(hold, site):
        return None
    return site, hold


def _saw(token: ActivationToken, site: Site, remaining: int) -> None:
    CONSUME_MEMORY.saw((token.license_id, token.site), remaining, site.term_start)


def _body_hash(request: HoldRequest, subsite: str | None) -> str:
    body = {
        "amount": request.amount,
        "ttl": request.ttl_seconds,
        "feature": request.feature,
        "subsite": subsite,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _subsite(subsite_url: str | None, field: tuple[str, ...]) -> str | None:
    return site_key(subsite_url, field) if subsite_url else None


def _site(token: ActivationToken, site: Site | None) -> Site:
    """The token's site, or 401 (as a consume answers a bad token)."""
    if site is None or not site.active or not token.matches(site.token_hash):
        raise bad_token()
    return site


def status_of(hold: store.Hold, site: Site | None, now: str) -> str:
    """What a hold is now: as written, except an open one whose site moved on (a deactivation or
    a renewal released it) is ``released`` and one past its time is ``expired`` (the sweeper
    closes it within a minute)."""
    if hold.status != "open":
        return hold.status
    if site is None or not _placed_on(hold, site):
        return "released"
    if hold.expires_at <= now:
        return "expired"
    return "open"


def _placed_on(hold: store.Hold, site: Site) -> bool:
    return site.active and site.activation == hold.activation and site.term_start == hold.term_start


def place_hold(authorization: str | None, request: HoldRequest, now: str) -> tuple[bool, HoldResponse]:
    """``POST /v1/holds``: ``True`` when placed now (201), ``False`` for the same request again
    (the first answer, replayed). Refused like a consume: 401, 403, 402 (nothing held)."""
    token = authenticate(authorization)
    subsite = _subsite(request.subsite_url, ("body", "subsite_url"))
    body_hash = _body_hash(request, subsite)
    expires_at = format_timestamp(parse_timestamp(now) + timedelta(seconds=request.ttl_seconds))

    def place(site: Site) -> HoldResponse | None:
        """Write the hold on ``site`` as expected; None when the write was refused."""
        placed = store.Hold(
            hold_id=request.hold_id,
            site=site.site,
            subsite=subsite,
            held=request.amount,
            feature=request.feature,
            body_hash=body_hash,
            expires_at=expires_at,
            status="open",
            term_start=site.term_start,
            activation=site.activation,
            remaining_after=site.remaining - request.amount,
        )
        try:
            store.write_hold(token.license_id, site, token.secret_hash, placed, now)
        except store.Cancelled:
            return None
        _saw(token, site, placed.remaining_after)
        KNOWN_HOLDS.remember(token.license_id, placed)
        return HoldResponse(
            hold_id=request.hold_id,
            amount=request.amount,
            expires_at=expires_at,
            remaining=placed.remaining_after,
            replayed=False,
        )

    def attempt(number: int) -> tuple[bool, HoldResponse]:
        known = CONSUME_MEMORY.known_site((token.license_id, token.site)) if number == 0 else None
        if (
            known is not None
            and token.matches(known.token_hash)
            and refusal_of(known, request.amount, subsite is not None, now) is None
            and (answer := place(known)) is not None
        ):
            return True, answer
        read, hold, consumed = store.read_for_hold(token.license_id, token.site, request.hold_id, subsite)
        site = _site(token, read)
        CONSUME_MEMORY.read((token.license_id, token.site), site)
        if consumed:
            raise IdempotencyConflict(f"hold_id {request.hold_id!r} was already used by a consume")
        if hold is not None:
            if hold.body_hash != body_hash:
                raise IdempotencyConflict(
                    f"hold_id {request.hold_id!r} was already used with a different body"
                )
            return False, HoldResponse(
                hold_id=hold.hold_id,
                amount=hold.held,
                expires_at=hold.expires_at,
                remaining=hold.remaining_after,
                replayed=True,
            )
        refusal = refusal_of(site, request.amount, subsite is not None, now)
        if refusal is not None:
            raise refusal
        answer = place(site)
        if answer is None:
            raise Stale("the site or the id changed since they were read")
        return True, answer

    return retry_on_stale(attempt, BUSY)


def _find(token: ActivationToken, hold_id: str, subsite_url: str | None) -> tuple[Site, store.Hold]:
    """The site and the hold the request names, or 401 / 404 / 422 (a network's hold id open on
    several sub-sites needs ``?subsite_url=``). One read; a network's hold named without its
    sub-site is looked for among the site's entries first (a Query)."""
    subsite = _subsite(subsite_url, ("query", "subsite_url"))
    read, hold, _ = store.read_for_hold(token.license_id, token.site, hold_id, subsite)
    site = _site(token, read)
    if hold is None and subsite_url is None and site.network:
        subsites = store.hold_subsites(token.license_id, token.site, hold_id)
        if len(subsites) > 1:
            raise field_error(
                ("query", "subsite_url"), "ambiguous_hold", f"hold {hold_id!r} exists on several sub-sites"
            )
        if subsites:
            read, hold, _ = store.read_for_hold(token.license_id, token.site, hold_id, subsites[0])
            site = _site(token, read)
    if hold is None:
        raise NotFound(f"no hold {hold_id!r} on this site")
    CONSUME_MEMORY.read((token.license_id, token.site), site)
    return site, hold


def capture_hold(
    authorization: str | None, hold_id: str, subsite_url: str | None, request: CaptureRequest, now: str
) -> CaptureResponse:
    """``POST /v1/holds/{hold_id}/capture``: charge what the call cost (like a consume with
    ``request_id = hold_id``), give back the rest. The same amount again: the first answer;
    another: 409; after the hold was released or expired: 409 ``hold_expired``."""
    token = authenticate(authorization)
    subsite = _subsite(subsite_url, ("query", "subsite_url"))

    def capture(site: Site, hold: store.Hold) -> CaptureResponse | None:
        """Capture ``hold`` on ``site`` as expected; None when the write was refused."""
        try:
            store.write_capture(token.license_id, site, token.secret_hash, hold, request.amount, now)
        except store.Cancelled:
            return None
        released = hold.held - request.amount
        _saw(token, site, site.remaining + released)
        KNOWN_HOLDS.forget((token.license_id, hold.site, hold.hold_id, hold.subsite))
        return CaptureResponse(
            hold_id=hold_id,
            captured=request.amount,
            released=released,
            remaining=site.remaining + released,
            replayed=False,
        )

    def attempt(number: int) -> CaptureResponse:
        known = _known(token, hold_id, subsite, now) if number == 0 else None
        if (
            known is not None
            and not rules.is_expired(known[0].expires_at, now)
            and request.amount <= known[1].held
            and (answer := capture(*known)) is not None
        ):
            return answer
        site, hold = _find(token, hold_id, subsite_url)
        if hold.status == "captured":
            if hold.captured != request.amount:
                raise IdempotencyConflict(f"hold {hold_id!r} was captured with another amount")
            return CaptureResponse(
                hold_id=hold_id,
                captured=hold.captured or 0,
                released=hold.released or 0,
                remaining=hold.answer_remaining if hold.answer_remaining is not None else site.remaining,
                replayed=True,
            )
        if rules.is_expired(site.expires_at, now):
            raise LicenseExpired(f"the license expired at {site.expires_at}")
        if status_of(hold, site, now) != "open":
            raise HoldExpired(f"hold {hold_id!r} was released or expired")
        if request.amount > hold.held:
            raise field_error(
                ("body", "amount"), "more_than_held", f"{request.amount} is more than the {hold.held} held"
            )
        answer = capture(site, hold)
        if answer is None:
            raise Stale("the site or the hold changed since they were read")
        return answer

    return retry_on_stale(attempt, BUSY)


def release_hold(
    authorization: str | None, hold_id: str, subsite_url: str | None, now: str
) -> ReleaseResponse:
    """``DELETE /v1/holds/{hold_id}``: give the held credits back. Again: the same answer; after
    a capture: 409 ``hold_captured``."""
    token = authenticate(authorization)
    subsite = _subsite(subsite_url, ("query", "subsite_url"))

    def release(site: Site | None, hold: store.Hold, status: str) -> bool:
        """Close ``hold`` (its credits back to ``site`` as expected, when given); False when the
        write was refused."""
        try:
            store.write_release(token.license_id, site, hold, status, now, token.secret_hash)
        except store.Cancelled:
            return False
        if site is not None:
            _saw(token, site, site.remaining + hold.held)
        KNOWN_HOLDS.forget((token.license_id, hold.site, hold.hold_id, hold.subsite))
        return True

    def attempt(number: int) -> ReleaseResponse:
        known = _known(token, hold_id, subsite, now) if number == 0 else None
        if known is not None and release(known[0], known[1], "released"):
            site, hold = known
            return ReleaseResponse(hold_id=hold_id, released=hold.held, remaining=site.remaining + hold.held)
        site, hold = _find(token, hold_id, subsite_url)
        if hold.status == "captured":
            raise HoldCaptured(f"hold {hold_id!r} was captured")
        if hold.status != "open":
            remaining = hold.answer_remaining if hold.answer_remaining is not None else site.remaining
            return ReleaseResponse(hold_id=hold_id, released=hold.released or hold.held, remaining=remaining)
        status = status_of(hold, site, now)
        placed_on = site if status != "released" else None
        if not release(placed_on, hold, "expired" if status == "expired" else "released"):
            raise Stale("the site or the hold changed since they were read")
        remaining = site.remaining + hold.held if placed_on is not None else site.remaining
        return ReleaseResponse(hold_id=hold_id, released=hold.held, remaining=remaining)

    return retry_on_stale(attempt, BUSY)


def get_hold(authorization: str | None, hold_id: str, subsite_url: str | None, now: str) -> HoldView:
    """``GET /v1/holds/{hold_id}``."""
    token = authenticate(authorization)
    site, hold = _find(token, hold_id, subsite_url)
    status = status_of(hold, site, now)
    return HoldView(
        hold_id=hold_id,
        amount=hold.held,
        status=status,
        expires_at=hold.expires_at,
        captured=hold.captured if status == "captured" else None,
        feature=hold.feature,
    )


def sweep_expired_holds(now: str) -> int:
    """Release every open hold past its ``expires_at`` (the hold sweeper, every minute), exactly
    once even when sweeps overlap; the number this sweep closed."""
    return sum(1 for hold in store.expired_holds(now) if store.expire_hold(hold))
