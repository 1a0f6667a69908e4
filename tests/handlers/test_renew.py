"""Renewal (rule 5) and expiry (rule 8) through the renew function, on moto."""

from __future__ import annotations

import pytest

from ai_credits import store
from ai_credits.domain import License, Site
from ai_credits.services import fences as fencing
from ai_credits.services import operator
from tests.handlers.conftest import invoke, make_event, renew, sample_event

TERM_END = "2027-11-01T00:00:00Z"
PAID = "2028-11-01T00:00:00Z"


def _at(time: str) -> dict:
    event = sample_event("renew-scheduled")
    event["time"] = time
    return event


def _sites(portal, license_id):
    answer = portal("get_credits", "acct-1", license_id)
    return answer.body, {site["site"]: site for site in answer.body["sites"]}


def test_rule5_single_site_renewal_gives_the_live_site_the_full_balance_again(
    provision, activate, consume, portal
):
    provision("lic-s", license_key="key-s-secret", expires_at=PAID, credits_per_term=1200)
    live = activate("key-s-secret", "shop.com").body["activation_token"]
    activate("key-s-secret", "staging.shop.com")
    portal("put_allocations", "acct-1", "lic-s", {"allocations": {"shop.com": 900, "staging.shop.com": 100}})
    consume(live, 300)

    result = renew(_at("2027-11-01T01:00:00Z"))

    assert result["renewed"] == ["lic-s"]
    view, sites = _sites(portal, "lic-s")
    assert (view["term_start"], view["term_end"]) == (TERM_END, "2028-11-01T00:00:00Z")
    assert (view["credits_total"], view["unallocated"]) == (1200, 0)
    assert (sites["shop.com"]["allocated"], sites["shop.com"]["used"], sites["shop.com"]["remaining"]) == (
        1200,
        0,
        1200,
    )
    assert sites["staging.shop.com"]["allocated"] == 0


def test_rule5_multi_site_renewal_restarts_allocations_at_zero_and_needs_allocation(
    provision, activate, consume, portal
):
    provision("lic-m", license_key="key-m-secret", plan="multi-site", site_limit=3, expires_at=PAID)
    token = activate("key-m-secret", "a.com").body["activation_token"]
    activate("key-m-secret", "b.com")
    portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 500, "b.com": 400}})
    consume(token, 50)

    renew(_at("2027-11-01T01:00:00Z"))

    view, sites = _sites(portal, "lic-m")
    assert view["needs_allocation"] is True
    assert (view["allocated"], view["unallocated"]) == (0, 1000)
    assert all((site["allocated"], site["used"]) == (0, 0) for site in sites.values())
    assert portal("put_allocations", "acct-1", "lic-m", {"allocations": {"a.com": 700}}).status == 200


def test_the_unused_credits_of_the_ended_term_are_written_to_the_ledger_as_expired(
    provision, activate, consume
):
    provision("lic-e", license_key="key-e-secret", expires_at=PAID)
    token = activate("key-e-secret", "shop.com").body["activation_token"]
    consume(token, 300)

    renew(_at("2027-11-01T01:00:00Z"))

    [expiry] = [entry for entry in store.ledger_entries("lic-e") if entry["type"] == "expiry"]
    [sites] = [entry for entry in store.ledger_entries("lic-e") if entry["type"] == "expiry_sites"]
    assert (expiry["term_start"], expiry["expired"], sites["term_start"], sites["sites"], sites["used"]) == (
        "2026-11-01T00:00:00Z",
        700,
        "2026-11-01T00:00:00Z",
        {"shop.com": 700},
        {"shop.com": 300},
    )


def test_a_renewal_run_twice_refreshes_once(provision, activate, consume, balance):
    provision("lic-2x", license_key="key-2x-secret", expires_at=PAID)
    token = activate("key-2x-secret", "shop.com").body["activation_token"]

    first = renew(_at("2027-11-01T01:00:00Z"))
    consume(token, 10)
    second = renew(_at("2027-11-01T02:00:00Z"))
    single = renew({"license_id": "lic-2x", "time": "2027-11-01T03:00:00Z"})

    assert first["renewed"] == ["lic-2x"]
    assert second["renewed"] == [] and single["not_due"] == ["lic-2x"]
    assert balance(token).body["site"]["used"] == 10


def test_a_license_several_terms_behind_catches_up_to_the_term_containing_now(provision, activate):
    provision("lic-late", license_key="key-late-secret", term_months=1, term_start="2026-11-01T00:00:00Z",
              term_end="2026-12-01T00:00:00Z", expires_at=PAID)  # fmt: skip

    renew(_at("2027-03-15T00:00:00Z"))

    license_ = store.get_license("lic-late")
    assert (license_.term_start, license_.term_end) == ("2027-03-01T00:00:00Z", "2027-04-01T00:00:00Z")


def test_rule8_a_license_not_paid_through_is_marked_expired_not_renewed(
    provision, activate, consume, balance
):
    # The balance and consume calls run on the real clock: this term ends in the past.
    past = {"term_start": "2025-06-01T00:00:00Z", "term_end": "2026-06-01T00:00:00Z"}
    provision("lic-unpaid", license_key="key-unpaid-secret", expires_at="2027-06-01T00:00:00Z", **past)
    token = activate("key-unpaid-secret", "shop.com").body["activation_token"]
    provision("lic-unpaid", license_key="key-unpaid-secret", expires_at="2026-06-01T00:00:00Z", **past)

    result = renew(_at("2026-06-01T01:00:00Z"))

    assert result["expired"] == ["lic-unpaid"]
    assert balance(token).body["license"]["status"] == "expired"
    assert consume(token, 1).code == "license_expired"
    assert renew(_at("2026-06-01T02:00:00Z"))["expired"] == []  # left the renewal index


def test_a_paid_renewal_brings_an_expired_license_back(provision, activate, balance):
    past = {"term_start": "2025-06-01T00:00:00Z", "term_end": "2026-06-01T00:00:00Z"}
    provision("lic-back", license_key="key-back-secret", expires_at="2027-06-01T00:00:00Z", **past)
    token = activate("key-back-secret", "shop.com").body["activation_token"]
    provision("lic-back", license_key="key-back-secret", expires_at="2026-06-01T00:00:00Z", **past)
    renew(_at("2026-06-01T01:00:00Z"))

    provision("lic-back", license_key="key-back-secret", expires_at=PAID, **past)
    result = renew(_at("2026-06-01T02:00:00Z"))

    assert result["renewed"] == ["lic-back"]
    assert balance(token).body["license"]["status"] == "active"


def test_deactivated_sites_leave_the_view_when_their_term_ends(provision, activate, deactivate, portal):
    provision("lic-d", license_key="key-d-secret", expires_at=PAID)
    deactivate(activate("key-d-secret", "old.com").body["activation_token"])
    activate("key-d-secret", "new.com")
    assert set(_sites(portal, "lic-d")[1]) == {"old.com", "new.com"}

    renew(_at("2027-11-01T01:00:00Z"))

    assert set(_sites(portal, "lic-d")[1]) == {"new.com"}


def test_licenses_not_due_are_left_alone(provision):
    provision("lic-current", expires_at=PAID)
    assert "lic-current" not in renew(_at("2027-10-31T23:00:00Z"))["renewed"]
    assert store.get_license("lic-current").term_end == TERM_END


def test_one_failing_license_does_not_stop_the_others(provision, monkeypatch):
    provision("lic-ok", expires_at=PAID)
    provision("lic-broken", expires_at=PAID)
    original = store.begin_renewal

    def failing(read, *args, **kwargs):
        if read.license_id == "lic-broken":
            raise RuntimeError("injected failure")
        return original(read, *args, **kwargs)

    monkeypatch.setattr(store, "begin_renewal", failing)
    result = renew(_at("2027-11-01T01:00:00Z"))

    assert result["renewed"] == ["lic-ok"]
    assert result["failed"] == [{"license_id": "lic-broken", "error": "RuntimeError: injected failure"}]


def test_a_new_credits_per_term_applies_from_the_next_term(provision, activate):
    provision("lic-up", license_key="key-up-secret", expires_at=PAID)
    activate("key-up-secret", "shop.com")
    provision("lic-up", license_key="key-up-secret", expires_at=PAID, credits_per_term=2500)
    assert store.get_license("lic-up").credits_total == 1000

    renew(_at("2027-11-01T01:00:00Z"))

    assert store.get_license("lic-up").credits_total == 2500


@pytest.mark.parametrize("event", [{}, {"time": "2027-11-01T01:00:00Z"}])
def test_the_renew_function_answers_a_report(table, event):
    result = renew(event)
    assert set(result) == {"now", "renewed", "expired", "not_due", "failed"}


def test_renewal_requests_per_license(provision, activate, dynamodb_calls):
    provision("lic-count", license_key="key-count-secret", expires_at=PAID)
    activate("key-count-secret", "shop.com")
    dynamodb_calls.clear()

    renew({"license_id": "lic-count", "time": "2027-11-01T01:00:00Z"})

    # The license and its sites; begin; one batch of sites with its record; the batches'
    # records (for the totals); finish with the license's record.
    assert dict(dynamodb_calls) == {"Query": 2, "UpdateItem": 1, "TransactWriteItems": 2}


def test_a_fenced_pool_answers_503_with_retry_after_and_charges_nothing(
    provision, activate, consume, balance
):
    provision("lic-fence", license_key="key-fence-secret", expires_at=PAID)
    token = activate("key-fence-secret", "shop.com").body["activation_token"]
    store.fence_consumes("lic-fence", ["shop.com"], "2099-01-01T00:00:00Z")

    answer = consume(token, 5)

    assert (answer.status, answer.code) == (503, "unavailable")
    assert answer.headers["retry-after"] == "1"
    assert balance(token).body["site"]["used"] == 0
    assert [entry for entry in store.ledger_entries("lic-fence") if entry["type"] == "consume"] == []


def test_a_lapsed_fence_holds_nothing(provision, activate, consume):
    provision("lic-lapsed", license_key="key-lapsed-secret", expires_at=PAID)
    token = activate("key-lapsed-secret", "shop.com").body["activation_token"]
    store.fence_consumes("lic-lapsed", ["shop.com"], "2020-01-01T00:00:00Z")
    assert consume(token, 5).status == 200


def test_a_renewal_that_keeps_losing_to_consumes_fences_them_and_renews_once(
    provision, activate, consume, monkeypatch
):
    provision("lic-busy", license_key="key-busy-secret", expires_at=PAID)
    token = activate("key-busy-secret", "shop.com").body["activation_token"]
    original, fences, losses = store.roll_sites, [], []

    def busy(*args, **kwargs):
        if len(losses) < fencing.OPTIMISTIC_ATTEMPTS:  # a consume lands between read and write
            losses.append(consume(token, 1, request_id=f"race-{len(losses)}").status)
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "roll_sites", busy)
    real_fence = store.fence_consumes

    def recording_fence(*args, **kwargs):
        fences.append(args)
        return real_fence(*args, **kwargs)

    monkeypatch.setattr(store, "fence_consumes", recording_fence)

    result = renew({"license_id": "lic-busy", "time": "2027-11-01T01:00:00Z"})

    assert result["renewed"] == ["lic-busy"]
    assert losses == [200] * fencing.OPTIMISTIC_ATTEMPTS
    assert len(fences) == 1 and fences[0][1] == ["shop.com"]
    [record] = [entry for entry in store.ledger_entries("lic-busy") if entry["type"] == "expiry_sites"]
    assert record["used"] == {"shop.com": fencing.OPTIMISTIC_ATTEMPTS}, "every racing consume is counted"
    assert consume(token, 5).status == 200, "the renewal's write removed the fence"


@pytest.mark.parametrize("inactive", [2, 140], ids=["a few inactive sites", "more than one batch"])
def test_a_renewal_keeps_the_active_sites_at_used_0_drops_the_inactive_and_counts_what_is_left(
    table, inactive
):
    # Given a license with a live and a staging site active and inactive sites
    sites = [
        Site(license_id="lic-map", site="back.com", environment="live", network=False, active=True,
             allocated=50, used=20, remaining=30, activated_at="2026-11-02T00:00:00Z"),
        Site(license_id="lic-map", site="kept.com", environment="staging", network=True, active=True,
             allocated=50, used=20, remaining=30, activated_at="2026-11-02T00:00:00Z"),
        *(
            Site(license_id="lic-map", site=f"gone{n}.com", environment="staging", network=False, active=False,
                 allocated=n, used=n, remaining=0, activated_at="2026-11-02T00:00:00Z")
            for n in range(inactive)
        ),
    ]  # fmt: skip
    license_ = License(
        license_id="lic-map", account_id="acct-1", plan="multi-site", site_limit=5, credits_per_term=1000,
        term_months=12, term_start="2026-11-01T00:00:00Z", term_end=TERM_END, expires_at=PAID,
        credits_total=1000, unallocated=900 - sum(range(inactive)), needs_allocation=False, key_hash="hash-map",
        version=1,
    )  # fmt: skip
    store.write_new_license(license_, sites)

    # When its term ends
    assert renew(_at("2027-11-01T01:00:00Z"))["renewed"] == ["lic-map"]

    # Then the active sites are left, each at used 0 in the new term, and the counters say so
    renewed, renewed_sites = store.get_license_with_sites("lic-map")
    assert renewed is not None and renewed.renewal is None
    assert (renewed.live_active, renewed.nonlive_active, renewed.site_items) == (1, 1, 2)
    assert {site.term_start for site in renewed_sites} == {renewed.term_start}
    assert {site.site: site.used for site in renewed_sites} == {"back.com": 0, "kept.com": 0}


@pytest.mark.parametrize("between", ["deactivation", "activation", "grant"])
def test_a_write_between_the_renewals_read_and_its_begin_makes_it_decide_again(
    provision, activate, deactivate, monkeypatch, between
):
    # Given a multi-site license of two sites whose term ended
    provision(
        "lic-between", license_key="key-between-secret", plan="multi-site", site_limit=3, expires_at=PAID
    )
    token = activate("key-between-secret", "a.example.org").body["activation_token"]
    activate("key-between-secret", "b.example.org")
    original, done = store.begin_renewal, []

    def after_a_write(read, renewal):
        if not done:  # the write lands after the renewal read the license and its sites
            done.append(between)
            if between == "deactivation":
                assert deactivate(token).status == 204
            elif between == "activation":
                assert activate("key-between-secret", "c.example.org").status == 201
            else:
                body = {"grant_id": "between", "credits": 5, "expires_at": "2099-01-01T00:00:00Z"}
                assert (
                    invoke("grant", make_event("grant", body=body, path_license_id="lic-between")).status
                    == 201
                )
        return original(read, renewal)

    monkeypatch.setattr(store, "begin_renewal", after_a_write)

    # When the renewal runs
    assert renew(_at("2027-11-01T01:00:00Z"))["renewed"] == ["lic-between"]

    # Then it renewed the license as it was after that write: every site moved, counters exact
    license_, sites = store.get_license_with_sites("lic-between")
    assert license_ is not None and {site.term_start for site in sites} == {license_.term_start}
    expected_sites = {"deactivation": 1, "activation": 3, "grant": 2}[between]
    assert (license_.site_items, len(sites)) == (expected_sites, expected_sites)
    assert license_.credits_total == 1000 + (5 if between == "grant" else 0), "the grant carried over"
    assert operator.audit(["lic-between"]) == {}
