"""What each change record of the table means for usage, the statement and events
(``ai_credits.changes``): table-driven, on hand-made records in the Lambda event's shape."""

from __future__ import annotations

from typing import Any

import pytest

from ai_credits import changes
from ai_credits.store import to_item

T0 = "2026-11-01T00:00:00Z"
T1 = "2027-11-01T00:00:00Z"


def record(
    new: dict[str, Any] | None, old: dict[str, Any] | None = None, event_id: str = "e-1"
) -> dict[str, Any]:
    image = new or old or {}
    dynamodb: dict[str, Any] = {
        "Keys": to_item({"pk": image["pk"], "sk": image["sk"]}),
        "SequenceNumber": "100",
        "ApproximateCreationDateTime": 1796400000,  # 2026-12-04T...
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        dynamodb["NewImage"] = to_item(new)
    if old is not None:
        dynamodb["OldImage"] = to_item(old)
    name = "INSERT" if old is None else "MODIFY" if new is not None else "REMOVE"
    return {"eventID": event_id, "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": dynamodb}


def derive(
    new: dict[str, Any] | None, old: dict[str, Any] | None = None, event_id: str = "e-1"
) -> changes.Derived:
    return changes.derive(changes.decode(record(new, old, event_id)))


def site(**fields: Any) -> dict[str, Any]:
    return {
        "pk": "LICENSE#lic-1",
        "sk": "SITE#a.com",
        "type": "site",
        "license_id": "lic-1",
        "site": "a.com",
        "active": True,
        "allocated": 100,
        "used": 0,
        "remaining": 100,
        "held": 0,
        "term_start": T0,
        **fields,
    }


def charged(used: int, remaining: int, rev: int, feature: str = "rewrite", **fields: Any) -> dict[str, Any]:
    return site(
        used=used,
        remaining=remaining,
        rev=rev,
        charged_feature=feature,
        charged_subsite=fields.pop("subsite", ""),
        charged_at="2026-12-04T10:00:00Z",
        **fields,
    )


def license_item(**fields: Any) -> dict[str, Any]:
    return {
        "pk": "LICENSE#lic-1",
        "sk": "LICENSE",
        "type": "license",
        "license_id": "lic-1",
        "account_id": "acct-1",
        "term_start": T0,
        "term_end": T1,
        "expires_at": T1,
        "credits_total": 1000,
        "term_credits": 1000,
        "carried_over": 0,
        "needs_allocation": False,
        "gsi3pk": "TERM_END#1",
        **fields,
    }


# -- usage contributions ------------------------------------------------------------------


def test_a_charge_contributes_its_credits_one_request_and_its_feature():
    (contribution,) = derive(charged(5, 95, rev=1), site()).contributions
    assert contribution == changes.Contribution("lic-1", T0, "a.com", "2026-12-04", 1, 5, 1, "rewrite", None)


def test_a_refund_contributes_negative_credits_and_no_request():
    (contribution,) = derive(charged(2, 98, rev=2), charged(5, 95, rev=1)).contributions
    assert (contribution.credits, contribution.requests, contribution.rev) == (-3, 0, 2)


def test_a_subsite_charge_names_the_subsite():
    (contribution,) = derive(charged(5, 95, rev=1, subsite="blog.a.com", network=True), site()).contributions
    assert contribution.subsite == "blog.a.com"


@pytest.mark.parametrize(
    ("new", "old", "why"),
    [
        (site(allocated=200, remaining=200), site(), "an allocation changed: no rev"),
        (site(held=10, remaining=90, rev=1), site(rev=1), "a hold: rev unchanged"),
        (
            site(used=0, remaining=100, rev=3, term_start=T1),
            charged(5, 95, rev=3),
            "a renewal moved the site",
        ),
        (site(), None, "an activation"),
    ],
)
def test_writes_that_do_not_charge_contribute_nothing(new, old, why):
    assert derive(new, old).contributions == [], why


# -- events of a site ---------------------------------------------------------------------


def site_events(new: dict[str, Any], old: dict[str, Any], percent: int = 20) -> list[changes.Event]:
    derived = derive(new, old)
    return [event for transition in derived.transitions for event in changes.site_events(transition, percent)]


def test_falling_to_the_threshold_from_above_is_credits_low():
    (event,) = site_events(charged(80, 20, rev=1), site())
    assert event.detail_type == "Credits Low"
    assert event.detail == {
        "site": "a.com",
        "term_start": T0,
        "allocated": 100,
        "remaining": 20,
        "threshold_percent": 20,
    }


def test_a_fall_straight_to_zero_is_one_credits_exhausted():
    (event,) = site_events(charged(100, 0, rev=1), site())
    assert (event.detail_type, event.detail) == (
        "Credits Exhausted",
        {"site": "a.com", "term_start": T0, "allocated": 100},
    )


@pytest.mark.parametrize(
    ("new", "old", "percent", "why"),
    [
        (charged(85, 15, rev=2), charged(80, 20, rev=1), 20, "already low"),
        (charged(70, 30, rev=1), site(), 20, "still above the threshold"),
        (charged(90, 10, rev=1), site(), 0, "low_balance_percent 0 turns it off"),
        (charged(100, 0, rev=2, active=False), charged(90, 10, rev=1, active=False), 20, "an inactive site"),
        (site(allocated=0, remaining=0), site(allocated=0, remaining=0, held=0), 20, "nothing allocated"),
        (charged(90, 10, rev=2), charged(100, 0, rev=1), 20, "a refund from exhausted: from below"),
    ],
)
def test_no_event_without_a_transition_from_above(new, old, percent, why):
    assert site_events(new, old, percent) == [], why


def test_the_event_id_is_the_same_on_every_delivery_and_differs_by_change_and_type():
    first = site_events(charged(100, 0, rev=1), site())[0]
    again = site_events(charged(100, 0, rev=1), site())[0]
    assert first.event_id == again.event_id
    assert (
        changes.event_id(changes.decode(record(site(), event_id="e-2")), "Credits Exhausted")
        != first.event_id
    )
    assert changes.event_id(changes.decode(record(site(), event_id="e-1")), "Credits Low") != first.event_id


# -- the license, grants and the ledger ---------------------------------------------------


def test_provisioning_starts_the_statement_with_the_terms_credits():
    derived = derive(license_item())
    assert [(entry.type, entry.credits, entry.term_start) for entry in derived.entries] == [
        ("term", 1000, T0)
    ]
    assert derived.events == []


def test_a_renewal_writes_term_and_carry_over_and_announces_the_new_term():
    old = license_item(renewed_at="2026-11-01T00:10:00Z")
    new = license_item(
        term_start=T1,
        term_end="2028-11-01T00:00:00Z",
        credits_total=1300,
        carried_over=300,
        needs_allocation=True,
        renewed_at="2027-11-01T00:10:00Z",
    )
    derived = derive(new, old)
    assert [(entry.type, entry.credits, entry.at) for entry in derived.entries] == [
        ("term", 1000, "2027-11-01T00:10:00Z"),
        ("carry_over", 300, "2027-11-01T00:10:00Z"),
    ]
    assert {event.detail_type: event.detail for event in derived.events} == {
        "License Renewed": {
            "term_start": T1,
            "term_end": "2028-11-01T00:00:00Z",
            "credits_total": 1300,
            "carried_over": 300,
        },
        "Allocation Needed": {"term_start": T1, "credits_total": 1300},
    }
    assert {event.account_id for event in derived.events} == {"acct-1"}


def test_needs_allocation_becoming_true_is_allocation_needed_once():
    assert [
        event.detail_type for event in derive(license_item(needs_allocation=True), license_item()).events
    ] == ["Allocation Needed"]
    assert (
        derive(license_item(needs_allocation=True, version=3), license_item(needs_allocation=True)).events
        == []
    )


def test_leaving_the_renewal_index_is_license_expired():
    new = {key: value for key, value in license_item().items() if key != "gsi3pk"}
    (event,) = derive(new, license_item()).events
    assert (event.detail_type, event.detail) == ("License Expired", {"expires_at": T1})


def test_a_grant_is_a_statement_entry_and_credits_granted():
    grant = {
        "pk": "LICENSE#lic-1",
        "sk": "GRANT#g-1",
        "type": "grant",
        "license_id": "lic-1",
        "grant_id": "g-1",
        "credits": 500,
        "granted": 500,
        "granted_at": "2026-12-01T00:00:00Z",
        "term_start": T0,
        "expires_at": "2028-12-01T00:00:00Z",
    }
    derived = derive(grant)
    assert [(entry.type, entry.credits, entry.grant_id) for entry in derived.entries] == [
        ("grant", 500, "g-1")
    ]
    (event,) = derived.events
    assert (event.detail_type, event.detail) == (
        "Credits Granted",
        {"grant_id": "g-1", "credits": 500, "expires_at": "2028-12-01T00:00:00Z"},
    )
    carried = derive({**grant, "credits": 200, "term_start": T1}, grant)
    assert (carried.entries, carried.events) == ([], [])


def ledger(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "pk": "LEDGER#lic-1",
        "sk": f"CONSUME#a.com#{fields.get('request_id', 'r-1')}",
        "type": kind,
        "license_id": "lic-1",
        "site": "a.com",
        "request_id": "r-1",
        "at": "2026-12-04T10:00:00Z",
        "term_start": T0,
        **fields,
    }


def test_consumes_captures_and_refunds_are_entries_once_each():
    consume = derive(ledger("consume", amount=5, feature="rewrite")).entries
    assert [(entry.type, entry.credits, entry.feature, entry.at) for entry in consume] == [
        ("consume", -5, "rewrite", "2026-12-04T10:00:00Z")
    ]
    answer_recorded = derive(ledger("consume", amount=5, remaining_after=95), ledger("consume", amount=5))
    assert answer_recorded.entries == []
    hold = ledger("hold", amount=8, hold_status="open")
    assert derive(hold).entries == []
    capture = derive(ledger("consume", amount=6, captured_at="2026-12-04T10:05:00Z"), hold).entries
    assert [(entry.type, entry.credits, entry.at) for entry in capture] == [
        ("consume", -6, "2026-12-04T10:05:00Z")
    ]
    assert derive(ledger("hold", amount=8, hold_status="released"), hold).entries == []
    refund = ledger("refund", refunded=4, sk="REFUND#a.com#r-1")
    assert [(entry.type, entry.credits) for entry in derive(refund).entries] == [("refund", 4)]


def test_an_expiry_record_is_a_negative_entry_of_the_ended_term():
    record_ = {
        "pk": "LEDGER#lic-1",
        "sk": f"EXPIRY#{T0}",
        "type": "expiry",
        "license_id": "lic-1",
        "term_start": T0,
        "expired": 700,
        "at": "2027-11-01T00:10:00Z",
    }
    assert [(entry.type, entry.credits, entry.term_start) for entry in derive(record_).entries] == [
        ("expiry", -700, T0)
    ]
    assert derive({**record_, "expired": 0}).entries == []


def test_entries_of_one_instant_sort_newest_first_as_a_renewal_happens():
    at = "2027-11-01T00:10:00Z"
    entries = [
        changes.StatementEntry("lic-1", at, kind, 1, T1, source=kind.upper())
        for kind in ("expiry", "term", "carry_over")
    ]
    newest_first = sorted(entries, key=lambda entry: entry.sort_key, reverse=True)
    assert [entry.type for entry in newest_first] == ["carry_over", "term", "expiry"]


def test_an_import_that_needs_an_allocation_announces_it_at_once():
    (event,) = derive(license_item(needs_allocation=True)).events
    assert (event.detail_type, event.detail) == (
        "Allocation Needed",
        {"term_start": T0, "credits_total": 1000},
    )
