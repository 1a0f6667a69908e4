"""Licenses of any size, on DynamoDB Local (it conserves exactly under concurrency; moto does not).

- A renewal of a license with 1,000 sites, stopped after any one of its writes (a crash) and run
  again, renews exactly once: every site moves once, the ledger records every site's end of term
  once, and the audit finds no drift.
- Consumes racing a renewal are counted exactly: in the ended term's record or in the new term.
- While a renewal is under way, readers see the new term for the whole license; a site spends
  the credits of the term it is in.
- Concurrent activations of different sites of one license never retry against each other, and
  exactly ``site_limit`` live activations succeed at the limit's edge.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ai_credits import store
from ai_credits.errors import ActivationLimitReached, Unavailable
from ai_credits.models import ActivationRequest, ConsumeRequest, ProvisionRequest
from ai_credits.services import billing, operator, plugin, portal, renewal

ACCOUNT = "acct-large"
TERM_START, TERM_END, NEXT_END = "2026-11-01T00:00:00Z", "2027-11-01T00:00:00Z", "2028-11-01T00:00:00Z"
PAID = "2029-01-01T00:00:00Z"
NOW = "2026-12-01T00:00:00Z"  # during the first term
RENEWAL_TIME = "2027-11-01T01:00:00Z"
SITES = 1000
CREDITS = 100_000
WRITES = frozenset({"TransactWriteItems", "UpdateItem", "PutItem", "DeleteItem", "BatchWriteItem"})


class Crash(BaseException):
    """The process stops right after a write DynamoDB applied (no handler may catch it)."""


@pytest.fixture
def writes(ddb_local_env: str) -> Iterator[dict[str, Any]]:
    """Counts the DynamoDB writes of this process; ``crash_after`` = n stops it after the n-th."""
    state: dict[str, Any] = {"count": 0, "crash_after": None}

    def after(model: Any, **_: Any) -> None:
        if model.name in WRITES:
            state["count"] += 1
            if state["crash_after"] is not None and state["count"] == state["crash_after"]:
                state["crash_after"] = None
                raise Crash(f"crashed after write {state['count']}")

    events = store.client().meta.events
    events.register("after-call.dynamodb", after)
    yield state
    events.unregister("after-call.dynamodb", after)


def _site(index: int) -> str:
    return f"site{index:04d}.example.org"


def _provision(license_id: str, sites: int, plan: str = "multi-site", site_limit: int | None = None) -> str:
    key = f"key-{license_id}"
    request = ProvisionRequest(
        license_key=key, account_id=ACCOUNT, plan=plan, site_limit=site_limit or max(sites, 1),
        credits_per_term=CREDITS, term_start=TERM_START, term_end=TERM_END, expires_at=PAID,
        activations=[{"site_url": _site(index), "environment": "production"} for index in range(sites)],
    )  # fmt: skip
    billing.provision_license(license_id, request, NOW)
    return key


def _large_license(sites: int = SITES) -> tuple[str, str, dict[str, str]]:
    """A multi-site license with ``sites`` imported live sites, 98 of them with credits and
    three of those with a token and some credits spent."""
    license_id = f"lic-large-{uuid.uuid4().hex[:12]}"
    key = _provision(license_id, sites)
    portal.apply_allocations(
        ACCOUNT, license_id, {_site(index): 10 * (index + 1) for index in range(98)}, NOW
    )
    tokens = {}
    for index in (0, 50, 97):
        activation = plugin.activate(
            ActivationRequest(license_key=key, site_url=_site(index), environment="production"), NOW
        )
        tokens[_site(index)] = f"Bearer {activation.response.activation_token}"
        plugin.consume(tokens[_site(index)], ConsumeRequest(amount=index + 1, request_id="before"), NOW)
    return license_id, key, tokens


def _expiry_records(license_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries = store.ledger_entries(license_id)
    return (
        [entry for entry in entries if entry["type"] == "expiry"],
        [entry for entry in entries if entry["type"] == "expiry_sites"],
    )


def _check_renewed_once(license_id: str, before: list[Any], unallocated_before: int) -> None:
    license_, sites = store.get_license_with_sites(license_id)
    assert license_ is not None and license_.renewal is None
    assert (license_.term_start, license_.term_end) == (TERM_END, NEXT_END)
    assert (license_.credits_total, license_.unallocated, license_.needs_allocation) == (
        CREDITS,
        CREDITS,
        True,
    )
    assert (license_.live_active, license_.site_items) == (SITES, SITES)
    assert len(sites) == SITES and {site.term_start for site in sites} == {TERM_END}
    assert all((site.allocated, site.used, site.remaining) == (0, 0, 0) for site in sites)

    [expiry], site_records = _expiry_records(license_id)
    recorded = Counter(name for record in site_records for name in record["used"])
    assert recorded == Counter({site.site: 1 for site in before}), "every site's end of term, once"
    used = {name: used for record in site_records for name, used in record["used"].items()}
    assert used == {site.site: site.used for site in before}
    unused = sum(site.remaining for site in before)
    assert expiry["expired"] == unallocated_before + unused
    assert operator.audit([license_id]) == {}


def _renewal_writes(sites: int) -> int:
    """begin + one transaction per batch of sites + finish."""
    return 1 + -(-sites // store.ROLL_BATCH) + 1


@pytest.mark.parametrize("crash_after", range(1, _renewal_writes(SITES) + 1))
def test_a_renewal_of_1000_sites_stopped_after_any_write_is_finished_once_by_the_next_run(
    writes, crash_after
):
    # Given a license of 1,000 sites, some with credits and some spent
    license_id, _, _ = _large_license()
    license_, before = store.get_license_with_sites(license_id)
    assert license_ is not None

    # When its renewal stops right after its n-th write, and the next run comes
    writes["count"], writes["crash_after"] = 0, crash_after
    with pytest.raises(Crash):
        renewal.renew_license(license_id, RENEWAL_TIME)
    outcome = renewal.renew_license(license_id, RENEWAL_TIME)

    # Then the license is renewed once, whatever write the first run stopped after
    assert outcome == ("not_due" if crash_after == _renewal_writes(SITES) else "renewed")
    _check_renewed_once(license_id, before, license_.unallocated)
    assert renewal.renew_license(license_id, "2027-11-01T02:00:00Z") == "not_due"


def test_a_renewal_of_1000_sites_makes_few_requests(writes, dynamodb_local_calls):
    license_id, _, _ = _large_license()
    license_, before = store.get_license_with_sites(license_id)
    assert license_ is not None
    dynamodb_local_calls.clear()

    assert renewal.renew_license(license_id, RENEWAL_TIME) == "renewed"

    assert dynamodb_local_calls["TransactWriteItems"] == _renewal_writes(SITES) - 1
    assert dynamodb_local_calls["UpdateItem"] == 1
    _check_renewed_once(license_id, before, license_.unallocated)


def test_consumes_racing_a_renewal_are_each_counted_once_in_one_term(ddb_local_env):
    # Given a 1,000-site license whose three spending sites keep consuming
    license_id, _, tokens = _large_license()
    stop, answers = threading.Event(), []

    def spend(site: str) -> None:
        for number in range(10_000):
            if stop.is_set():
                return
            request = ConsumeRequest(amount=1, request_id=f"race-{number}")
            try:
                answers.append((site, plugin.consume(tokens[site], request, NOW)))
            except Unavailable:  # fenced for a moment: a 503 charges nothing
                answers.append((site, None))
            except Exception as error:  # insufficient credits: the old term's pool ran dry
                answers.append((site, error))

    # When the renewal runs while they spend
    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        spenders = [pool.submit(spend, site) for site in tokens]
        assert renewal.renew_license(license_id, RENEWAL_TIME) == "renewed"
        stop.set()
        for spender in spenders:
            spender.result()

    # Then every charge is in exactly one term: the ended term's record or the new term's used
    charged = Counter(
        site for site, answer in answers if answer is not None and not isinstance(answer, Exception)
    )
    assert sum(charged.values()) > 0
    _, site_records = _expiry_records(license_id)
    old_used = {name: used for record in site_records for name, used in record["used"].items()}
    _, sites = store.get_license_with_sites(license_id)
    new_used = {site.site: site.used for site in sites}
    for index, site in zip((0, 50, 97), tokens, strict=True):
        assert old_used[site] + new_used[site] == (index + 1) + charged[site], site
    assert operator.audit([license_id]) == {}


def test_readers_see_the_new_term_while_a_renewal_is_under_way_and_sites_spend_their_own_term(writes):
    # Given a single-site license with its live site and 200 staging sites, whose renewal
    # stopped after its first batch of sites (begin, then one batch)
    license_id = f"lic-midway-{uuid.uuid4().hex[:12]}"
    key = f"key-{license_id}"
    request = ProvisionRequest(
        license_key=key, account_id=ACCOUNT, plan="single-site", site_limit=20, credits_per_term=CREDITS,
        term_start=TERM_START, term_end=TERM_END, expires_at=PAID,
    )  # fmt: skip
    billing.provision_license(license_id, request, NOW)
    live = plugin.activate(
        ActivationRequest(license_key=key, site_url="zzz-live.org", environment="production"), NOW
    )
    live_token = f"Bearer {live.response.activation_token}"
    staging = [f"staging-{index:03d}.example.org" for index in range(200)]
    staging_tokens = [
        f"Bearer {plugin.activate(ActivationRequest(license_key=key, site_url=site, environment='staging'), NOW).response.activation_token}"
        for site in staging
    ]
    plugin.consume(live_token, ConsumeRequest(amount=100, request_id="old-term"), NOW)
    writes["count"], writes["crash_after"] = 0, 2
    with pytest.raises(Crash):
        renewal.renew_license(license_id, RENEWAL_TIME)
    license_, sites = store.get_license_with_sites(license_id)
    assert license_ is not None and license_.renewal is not None
    moved = {site.site for site in sites if site.term_start == TERM_END}
    assert staging[0] in moved and "zzz-live.org" not in moved  # sorted: the live site is last

    # Then the portal sees the new term everywhere: the live site with the whole balance again
    view = portal.license_credits(ACCOUNT, license_id, NOW)
    assert (view.term_start, view.credits_total, view.unallocated) == (TERM_END, CREDITS, 0)
    rows = {row.site: row for row in view.sites}
    assert (rows["zzz-live.org"].allocated, rows["zzz-live.org"].used) == (CREDITS, 0)
    assert view.allocated + view.unallocated == view.credits_total
    # ... a moved site's balance shows the new term, a site not moved yet its own (old) term
    assert plugin.balance(staging_tokens[0], NOW).license.term_start == TERM_END
    old = plugin.balance(live_token, NOW)
    assert (old.license.term_start, old.site.used, old.site.remaining) == (TERM_START, 100, CREDITS - 100)
    # ... the site not moved yet spends the old term's credits, and writes that change the
    # license's totals wait
    assert (
        plugin.consume(live_token, ConsumeRequest(amount=5, request_id="late"), NOW).remaining
        == CREDITS - 105
    )
    with pytest.raises(Unavailable):
        portal.apply_allocations(ACCOUNT, license_id, {staging[0]: 0}, NOW)

    # When the next run finishes the renewal
    assert renewal.renew_license(license_id, RENEWAL_TIME) == "renewed"

    # Then the late consume is in the ended term's record, and the live site starts afresh
    _, site_records = _expiry_records(license_id)
    assert {name: used for record in site_records for name, used in record["used"].items()}[
        "zzz-live.org"
    ] == 105
    fresh = plugin.balance(live_token, NOW)
    assert (fresh.license.term_start, fresh.site.allocated, fresh.site.used) == (TERM_END, CREDITS, 0)
    assert operator.audit([license_id]) == {}


def _activate_concurrently(key: str, sites: list[str]) -> list[Any]:
    barrier = threading.Barrier(len(sites))

    def activate(site: str) -> Any:
        barrier.wait()
        try:
            return plugin.activate(
                ActivationRequest(license_key=key, site_url=site, environment="production"), NOW
            )
        except ActivationLimitReached as refused:
            return refused

    with ThreadPoolExecutor(max_workers=len(sites)) as pool:
        return list(pool.map(activate, sites))


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every back-off of a retried decision (``store.back_off``), by attempt."""
    seen: list[int] = []
    original = store.back_off

    def record(attempt: int) -> None:
        seen.append(attempt)
        original(attempt)

    monkeypatch.setattr(store, "back_off", record)
    return seen


def test_16_concurrent_activations_of_different_sites_all_succeed_at_the_first_try(ddb_local_env, retries):
    license_id = f"lic-rollout-{uuid.uuid4().hex[:12]}"
    key = _provision(license_id, 0, site_limit=300)

    results = _activate_concurrently(key, [f"agency-{index}.org" for index in range(16)])

    assert all(result.created for result in results)
    assert retries == [], "no activation retried against another"
    license_ = store.get_license(license_id)
    assert license_ is not None and (license_.live_active, license_.site_items) == (16, 16)


def test_16_concurrent_activations_at_the_limits_edge_activate_exactly_site_limit(ddb_local_env):
    license_id = f"lic-edge-{uuid.uuid4().hex[:12]}"
    key = _provision(license_id, 0, site_limit=8)

    results = _activate_concurrently(key, [f"edge-{index}.org" for index in range(16)])

    assert sum(1 for result in results if isinstance(result, ActivationLimitReached)) == 8
    assert sum(1 for result in results if not isinstance(result, Exception)) == 8
    license_, sites = store.get_license_with_sites(license_id)
    assert license_ is not None and license_.live_active == 8 and len(sites) == 8
    assert operator.audit([license_id]) == {}
