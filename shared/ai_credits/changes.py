"""What the table's change stream says happened: pure functions from DynamoDB Streams records
(``NEW_AND_OLD_IMAGES``) to the data derived from them, off the request path (API.md, "Usage
and events").

Three kinds of derived data, each with its own exactly-once argument:

- **Usage contributions** come from the site items. Every write that changes a site's ``used``
  (a consume, a capture, a refund) also bumps the site's ``rev`` and says what the change was
  for (``charged_feature``, ``charged_subsite``, ``charged_at``: ``store.charge_marks``). A
  contribution is the change of ``used`` between the old and the new image, numbered by ``rev``.
  The records of one item arrive in order (DynamoDB Streams orders them per item; Lambda reads
  a shard in order, a parent shard before its children), and a rollup only ever receives the
  contributions of one site item, so it keeps the last ``rev`` it applied and skips the rest.
- **Statement entries** come from the ledger items (consumes, captures, refunds, expiries), the
  grants and the license item (a term's credits, the carry-over). Each has a key derived from the
  item it comes from: writing it again writes the same item.
- **Events** are the contract's transitions (``Credits Low`` ...), each with an ``event_id``
  derived from the stream record and the event's type: the same on every delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ai_credits.clock import format_timestamp
from ai_credits.store import OTHER_FEATURE, from_item

# Newest first, entries of one instant read: the new term's carry-over, its credits, then what
# expired of the term before (the order in which a renewal happens, reversed).
_RANK = {"expiry": "0", "term": "1", "carry_over": "2"}
_EVENT_NAMESPACE = uuid.UUID("6f2b8f0e-2f57-4a8e-9d55-0c7f6c0a1e11")


@dataclass(frozen=True)
class Change:
    """One stream record, decoded: ``new``/``old`` are the images as plain values (None when
    absent), ``created`` the record's approximate creation time."""

    event_id: str
    sequence: str
    name: str
    keys: dict[str, str]
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    created: str

    @property
    def image(self) -> dict[str, Any]:
        return self.new or self.old or {}


@dataclass(frozen=True)
class Contribution:
    """One change of a site's ``used`` (negative for a refund), for the usage rollups."""

    license_id: str
    term_start: str
    site: str
    day: str
    rev: int
    credits: int
    requests: int
    feature: str
    subsite: str | None

    @property
    def rollup(self) -> tuple[str, str, str, str]:
        return (self.license_id, self.term_start, self.site, self.day)


@dataclass(frozen=True)
class StatementEntry:
    """One line of a license's statement (API.md, the ledger route). ``source`` names the item
    it comes from, unique per entry of the license."""

    license_id: str
    at: str
    type: str
    credits: int
    term_start: str
    source: str
    site: str | None = None
    subsite: str | None = None
    request_id: str | None = None
    grant_id: str | None = None
    feature: str | None = None
    sequence: str = ""  # of the stream record: orders the entries of one second as written

    @property
    def sort_key(self) -> str:
        return f"{self.at}#{_RANK.get(self.type, '1')}#{self.sequence:0>40}#{self.source}"

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"at": self.at, "type": self.type, "credits": self.credits}
        for name in ("site", "subsite", "request_id", "grant_id", "feature"):
            if (value := getattr(self, name)) is not None:
                entry[name] = value
        entry["term_start"] = self.term_start
        return entry


@dataclass(frozen=True)
class Event:
    """An event for the bus; ``account_id`` is None until the license is looked up."""

    detail_type: str
    license_id: str
    event_id: str
    at: str
    detail: dict[str, Any]
    account_id: str | None = None

    def full_detail(self, account_id: str) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "license_id": self.license_id,
            "account_id": account_id,
            "at": self.at,
            **self.detail,
        }


@dataclass(frozen=True)
class SiteBalance:
    allocated: int
    remaining: int
    active: bool


@dataclass(frozen=True)
class SiteTransition:
    """A site whose balance moved: it may have become low or exhausted (rule 13), which depends
    on the license's ``low_balance_percent`` (looked up once per batch)."""

    change: Change
    license_id: str
    site: str
    term_start: str
    at: str
    before: SiteBalance
    after: SiteBalance


@dataclass
class Derived:
    contributions: list[Contribution] = field(default_factory=list)
    entries: list[StatementEntry] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    transitions: list[SiteTransition] = field(default_factory=list)


def decode(record: Mapping[str, Any]) -> Change:
    """A Lambda DynamoDB Streams record as a :class:`Change`."""
    dynamodb = record["dynamodb"]
    new, old = dynamodb.get("NewImage"), dynamodb.get("OldImage")
    created = datetime.fromtimestamp(float(dynamodb.get("ApproximateCreationDateTime", 0)), UTC)
    return Change(
        event_id=record["eventID"],
        sequence=dynamodb["SequenceNumber"],
        name=record["eventName"],
        keys={name: value["S"] for name, value in dynamodb["Keys"].items()},
        new=from_item(_repaired(new)) if new else None,
        old=from_item(_repaired(old)) if old else None,
        created=format_timestamp(created.replace(microsecond=0)),
    )


def _repaired(image: Mapping[str, Any]) -> dict[str, Any]:
    """The image with DynamoDB Local's way of streaming an empty map (``{}`` instead of
    ``{"M": {}}``) read as the empty map it is, at any depth."""

    def attribute(value: Mapping[str, Any]) -> Mapping[str, Any]:
        if not value:
            return {"M": {}}
        if "M" in value:
            return {"M": {name: attribute(inner) for name, inner in value["M"].items()}}
        if "L" in value:
            return {"L": [attribute(inner) for inner in value["L"]]}
        return value

    return {name: attribute(value) for name, value in image.items()}


def derive(change: Change) -> Derived:
    """Everything one change contributes, by the kind of item it is."""
    derived = Derived()
    kind = change.image.get("type")
    if kind == "site":
        _from_site(change, derived)
    elif kind == "license":
        _from_license(change, derived)
    elif kind == "grant" and change.name == "INSERT":
        _from_grant(change, derived)
    elif kind in ("consume", "hold", "refund", "expiry"):
        _from_ledger(change, derived)
    derived.entries = [replace(entry, sequence=change.sequence) for entry in derived.entries]
    return derived


def event_id(change: Change, detail_type: str) -> str:
    """Stable per change and type: the stream record's id is the same on every delivery."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{change.event_id}/{detail_type}"))


def _event(change: Change, detail_type: str, license_id: str, at: str, detail: dict[str, Any]) -> Event:
    account_id = change.image.get("account_id") if change.image.get("type") == "license" else None
    return Event(detail_type, license_id, event_id(change, detail_type), at, detail, account_id)


def _from_site(change: Change, derived: Derived) -> None:
    new, old = change.new, change.old
    if new is None:
        return
    term_start = new.get("term_start") or ""
    rev = new.get("rev")
    same_term = old is not None and (old.get("term_start") or "") == term_start
    if rev is not None and (old is None or old.get("rev") != rev) and (old is None or same_term):
        credits = new["used"] - (old["used"] if old else 0)
        if credits and term_start:
            derived.contributions.append(
                Contribution(
                    license_id=new["license_id"],
                    term_start=term_start,
                    site=new["site"],
                    day=new["charged_at"][:10],
                    rev=rev,
                    credits=credits,
                    requests=1 if credits > 0 else 0,
                    feature=new.get("charged_feature") or OTHER_FEATURE,
                    subsite=new.get("charged_subsite") or None,
                )
            )
    if old is not None and same_term and new.get("remaining") != old.get("remaining"):
        charged = rev is not None and old.get("rev") != rev
        derived.transitions.append(
            SiteTransition(
                change=change,
                license_id=new["license_id"],
                site=new["site"],
                term_start=term_start,
                at=new["charged_at"] if charged else change.created,
                before=_balance(old),
                after=_balance(new),
            )
        )


def _balance(image: Mapping[str, Any]) -> SiteBalance:
    return SiteBalance(image.get("allocated", 0), image.get("remaining", 0), bool(image.get("active")))


def _state(balance: SiteBalance, low_balance_percent: int) -> str:
    """Rule 13's state of a site: ``exhausted``, ``low`` or ``ok`` (or ``none``: no alerts)."""
    if not balance.active or balance.allocated <= 0:
        return "none"
    if balance.remaining == 0:
        return "exhausted"
    if low_balance_percent and balance.remaining * 100 <= balance.allocated * low_balance_percent:
        return "low"
    return "ok"


def site_events(transition: SiteTransition, low_balance_percent: int) -> list[Event]:
    """``Credits Exhausted`` when ``remaining`` reaches 0 from above (``allocated > 0``);
    ``Credits Low`` when it falls to or below the threshold from above it (a fall straight to
    0 is only exhausted)."""
    after = _state(transition.after, low_balance_percent)
    before = transition.before
    common = {"site": transition.site, "term_start": transition.term_start}
    if after == "exhausted" and before.remaining > 0:
        detail = {**common, "allocated": transition.after.allocated}
        return [_event(transition.change, "Credits Exhausted", transition.license_id, transition.at, detail)]
    if after == "low" and _state(before, low_balance_percent) == "ok":
        detail = {
            **common,
            "allocated": transition.after.allocated,
            "remaining": transition.after.remaining,
            "threshold_percent": low_balance_percent,
        }
        return [_event(transition.change, "Credits Low", transition.license_id, transition.at, detail)]
    return []


def _from_license(change: Change, derived: Derived) -> None:
    new, old = change.new, change.old
    if new is None:
        return
    license_id = new["license_id"]
    renewed = old is not None and new.get("renewed_at") and new.get("renewed_at") != old.get("renewed_at")
    if old is None or renewed:
        at: str = new["renewed_at"] if renewed else change.created
        derived.entries.append(
            StatementEntry(
                license_id,
                at,
                "term",
                new.get("term_credits", new["credits_total"]),
                new["term_start"],
                source=f"TERM#{new['term_start']}",
            )
        )
        if new.get("carried_over"):
            derived.entries.append(
                StatementEntry(
                    license_id,
                    at,
                    "carry_over",
                    new["carried_over"],
                    new["term_start"],
                    source=f"CARRY#{new['term_start']}",
                )
            )
    if renewed:
        detail = {
            "term_start": new["term_start"],
            "term_end": new["term_end"],
            "credits_total": new["credits_total"],
            "carried_over": new.get("carried_over", 0),
        }
        derived.events.append(_event(change, "License Renewed", license_id, new["renewed_at"], detail))
    if new.get("needs_allocation") and (old is None or not old.get("needs_allocation") or renewed):
        detail = {"term_start": new["term_start"], "credits_total": new["credits_total"]}
        at = new["renewed_at"] if renewed else change.created
        derived.events.append(_event(change, "Allocation Needed", license_id, at, detail))
    if old is not None and "gsi3pk" in old and "gsi3pk" not in new:
        derived.events.append(
            _event(change, "License Expired", license_id, change.created, {"expires_at": new["expires_at"]})
        )


def _from_grant(change: Change, derived: Derived) -> None:
    grant = change.image
    credits = grant.get("granted", grant["credits"])
    derived.entries.append(
        StatementEntry(
            grant["license_id"],
            grant["granted_at"],
            "grant",
            credits,
            grant["term_start"],
            source=f"GRANT#{grant['grant_id']}",
            grant_id=grant["grant_id"],
        )
    )
    detail = {"grant_id": grant["grant_id"], "credits": credits, "expires_at": grant.get("expires_at")}
    derived.events.append(_event(change, "Credits Granted", grant["license_id"], grant["granted_at"], detail))


def _from_ledger(change: Change, derived: Derived) -> None:
    new, old = change.new, change.old
    if new is None:
        return
    source = change.keys["sk"]
    common: dict[str, Any] = {
        "site": new.get("site"),
        "subsite": new.get("subsite"),
        "request_id": new.get("request_id"),
        "feature": new.get("feature"),
    }
    kind = new["type"]
    if kind == "consume" and (old is None or old.get("type") == "hold"):
        at = new["at"] if old is None else new.get("captured_at", change.created)
        derived.entries.append(
            StatementEntry(
                new["license_id"],
                at,
                "consume",
                -new["amount"],
                new.get("term_start") or "",
                source,
                **common,
            )
        )
    elif kind == "refund" and old is None:
        derived.entries.append(
            StatementEntry(
                new["license_id"],
                new["at"],
                "refund",
                new["refunded"],
                new.get("term_start") or "",
                source,
                **common,
            )
        )
    elif kind == "expiry" and old is None and new.get("expired"):
        derived.entries.append(
            StatementEntry(new["license_id"], new["at"], "expiry", -new["expired"], new["term_start"], source)
        )
