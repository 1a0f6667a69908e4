"""The portal and the renewal over HTTP, through the local gateway on DynamoDB Local.

Portal authentication, Apply (rules 1-4, 7, 8) and renewal (rule 5) end to end, then the races
that only a real DynamoDB can show: concurrent Applies, concurrent renewals, a network's sub-sites.

Balance and consume run on the real clock, the renew function on the event's ``time``: licenses
here have terms that end whenever the test needs, and ``expires_at`` far in the future so they
stay usable. The table is shared by the whole session: every id is unique, renewals name their
license, and the one scheduled run looks at a window (2011) that only its own test uses.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import pytest

from ai_credits import store
from local.tokens import make_portal_token
from tests.integration.client import Answer, Api, unique

PAID_UNTIL = "2030-01-01T00:00:00Z"  # later than every term here: renewals are paid, consumes allowed
RENEW_PATH = "/2015-03-31/functions/RenewFunction/invocations"
BARRIER_SECONDS = 30

T = TypeVar("T")


@pytest.fixture(scope="module")
def api(gateway: str) -> Api:
    return Api(gateway)


@pytest.fixture
def account() -> str:
    return unique("acct")


@pytest.fixture
def owner(account: str, portal_token: Callable[..., str]) -> str:
    """The portal JWT of ``account``, the owner of the licenses a test provisions."""
    return portal_token(account)


# -- helpers --------------------------------------------------------------------------------------


def assert_problem(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert {"type", "title", "status", "detail", "code"} <= set(answer.body)
    assert answer.body["status"] == status


def provision(api: Api, account: str, **fields: Any) -> tuple[str, str]:
    """A new license of ``account``: ``(license_id, license_key)``."""
    license_id = unique("lic")
    key = f"key-{license_id}"
    fields = {"expires_at": PAID_UNTIL, **fields}
    answer = api.provision(license_id, license_key=key, account_id=account, **fields)
    assert answer.status == 201, answer.body
    return license_id, key


def activate(api: Api, key: str, site_url: str, environment: str = "production", **fields: Any) -> str:
    """Activate (or re-activate) a site like the plugin does; the activation token."""
    answer = api.activate(key, site_url, environment, **fields)
    assert answer.status in (200, 201), answer.body
    return answer.body["activation_token"]


def view(api: Api, owner: str, license_id: str) -> dict[str, Any]:
    """The *Manage AI Credits* screen."""
    answer = api.credits(owner, license_id)
    assert answer.status == 200, answer.body
    return answer.body


def apply(api: Api, owner: str, license_id: str, allocations: dict[str, int]) -> dict[str, Any]:
    answer = api.apply(owner, license_id, allocations)
    assert answer.status == 200, answer.body
    return answer.body


def figures(credits_view: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """``{site: (allocated, used, remaining)}`` of a credits view."""
    return {
        site["site"]: (site["allocated"], site["used"], site["remaining"]) for site in credits_view["sites"]
    }


def site_figures(api: Api, token: str) -> tuple[int, int, int]:
    """``(allocated, used, remaining)`` as the plugin's refresh icon sees them."""
    answer = api.balance(token)
    assert answer.status == 200, answer.body
    site = answer.body["site"]
    return site["allocated"], site["used"], site["remaining"]


def spend(api: Api, token: str, amount: int) -> int:
    """Consume ``amount``; the site's remaining credits after it."""
    answer = api.consume(token, amount)
    assert answer.status == 200, answer.body
    return answer.body["remaining"]


def renew(api: Api, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke the renew function as EventBridge Scheduler would (Lambda Invoke API)."""
    answer = api.call("POST", RENEW_PATH, event)
    assert answer.status == 200, answer.body
    assert "x-amz-function-error" not in answer.headers, answer.body
    return answer.body


def assert_consistent(credits_view: dict[str, Any]) -> None:
    """The figures add up: allocated = sum of the sites, unallocated = the rest, never below 0."""
    allocated = sum(site["allocated"] for site in credits_view["sites"])
    assert credits_view["allocated"] == allocated
    assert credits_view["unallocated"] == credits_view["credits_total"] - allocated >= 0
    for site in credits_view["sites"]:
        assert site["remaining"] == site["allocated"] - site["used"] >= 0


def expiry_entries(license_id: str) -> list[dict[str, Any]]:
    return [entry for entry in store.ledger_entries(license_id) if entry["type"] == "expiry"]


def expired_per_site(license_id: str) -> dict[str, int]:
    """What expired on each site at the ends of terms (the records of the renewals' batches)."""
    records = [entry for entry in store.ledger_entries(license_id) if entry["type"] == "expiry_sites"]
    return {site: expired for record in records for site, expired in record["sites"].items()}


def all_at_once(arguments: Sequence[T], action: Callable[[T], Any]) -> list[Any]:
    """``[action(argument) for argument in arguments]``, one thread each, all released together."""
    barrier = threading.Barrier(len(arguments))

    def run(argument: T) -> Any:
        barrier.wait(timeout=BARRIER_SECONDS)
        return action(argument)

    with ThreadPoolExecutor(max_workers=len(arguments)) as pool:
        return list(pool.map(run, arguments))


# -- 1. portal authentication ---------------------------------------------------------------------


def _unsigned_token(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_PORTAL_TOKENS: dict[str, Callable[[str], str | None]] = {
    "no token": lambda account: None,
    "bad signature": lambda account: make_portal_token(
        account, secret="not-the-gateways-secret-but-long-enough"
    ),
    "alg none": lambda account: _unsigned_token({"sub": account, "exp": int(time.time()) + 3600}),
    "expired": lambda account: make_portal_token(account, exp=int(time.time()) - 60),
}


@pytest.mark.parametrize("case", list(BAD_PORTAL_TOKENS))
def test_portal_routes_refuse_a_missing_or_bad_jwt_with_401(api: Api, account: str, owner: str, case: str):
    # Given a license of the account the bad token claims to be
    license_id, key = provision(api, account)
    activate(api, key, f"{unique('shop')}.com")
    before = view(api, owner, license_id)
    token = BAD_PORTAL_TOKENS[case](account)

    # When the portal is called with it
    answers = [
        api.licenses(token),
        api.credits(token, license_id),
        api.apply(token, license_id, {before["sites"][0]["site"]: 1}),
    ]

    # Then every route answers 401 unauthorized, and the Apply wrote nothing
    for answer in answers:
        assert_problem(answer, 401, "unauthorized")
    assert view(api, owner, license_id) == before


def test_another_accounts_license_is_a_404_exactly_like_a_missing_one(
    api: Api, account: str, owner: str, portal_token: Callable[..., str]
):
    # Given a license of another account, with an active site
    license_id, key = provision(api, account)
    site = api.activate(key, f"{unique('shop')}.com").body["site"]
    before = view(api, owner, license_id)
    intruder = portal_token(unique("acct"))
    missing_id = unique("lic")

    # When a caller reads or applies to it, and to a license that does not exist
    cases = {
        "GET credits": (api.credits(intruder, license_id), api.credits(intruder, missing_id)),
        "PUT allocations": (
            api.apply(intruder, license_id, {site: 1}),
            api.apply(intruder, missing_id, {site: 1}),
        ),
    }

    # Then both answer the same 404 (only the id in the detail differs) and nothing is written
    for route, (others, missing) in cases.items():
        assert_problem(others, 404, "not_found")
        assert_problem(missing, 404, "not_found")
        same = {**others.body, "detail": others.body["detail"].replace(license_id, "<id>")}
        assert same == {**missing.body, "detail": missing.body["detail"].replace(missing_id, "<id>")}, route
    assert view(api, owner, license_id) == before


def test_licenses_lists_only_the_callers_licenses(
    api: Api, account: str, owner: str, portal_token: Callable[..., str]
):
    # Given two licenses of the caller (one used and one expired) and one of another account
    used_id, key = provision(api, account, credits_per_term=700, term_end="2027-05-01T00:00:00Z")
    activate(api, key, f"{unique('shop')}.com")
    expired_id, _ = provision(
        api, account, plan="multi-site", site_limit=5, expires_at="2020-01-01T00:00:00Z"
    )
    other_account = unique("acct")
    others_id, _ = provision(api, other_account)

    # When the caller lists its licenses
    answer = api.licenses(owner)

    # Then it sees exactly its own, with their current figures
    assert answer.status == 200, answer.body
    assert answer.body == {
        "licenses": sorted(
            [
                {"license_id": used_id, "plan": "single-site", "status": "active",
                 "term_end": "2027-05-01T00:00:00Z", "credits_total": 700, "unallocated": 0},
                {"license_id": expired_id, "plan": "multi-site", "status": "expired",
                 "term_end": "2027-11-01T00:00:00Z", "credits_total": 1000, "unallocated": 1000},
            ],
            key=lambda item: item["license_id"],
        )
    }  # fmt: skip
    listed = api.licenses(portal_token(other_account)).body["licenses"]
    assert [item["license_id"] for item in listed] == [others_id]


# -- 2. and 3. end to end -------------------------------------------------------------------------


def test_a_single_site_license_end_to_end(api: Api, account: str, owner: str):
    # Given a single-site license of 1000 credits per 12-month term
    license_id, key = provision(
        api, account, credits_per_term=1000, term_months=12,
        term_start="2026-01-01T00:00:00Z", term_end="2027-01-01T00:00:00Z",
    )  # fmt: skip
    name = unique("shop")

    # Rule 1: the live site gets everything, the staging site 0
    live_answer = api.activate(key, f"https://www.{name}.com/")
    assert live_answer.status == 201
    assert live_answer.body["credits"] == {"allocated": 1000, "used": 0, "held": 0, "remaining": 1000}
    staging_answer = api.activate(key, f"staging.{name}.com", "staging")
    assert staging_answer.status == 201
    assert (staging_answer.body["environment"], staging_answer.body["credits"]["allocated"]) == ("staging", 0)
    live, staging = live_answer.body["activation_token"], staging_answer.body["activation_token"]
    live_site, staging_site = live_answer.body["site"], staging_answer.body["site"]
    assert view(api, owner, license_id)["unallocated"] == 0

    # Apply moves credits to staging; both refresh icons show it at once
    etag = api.balance(live).headers["etag"]
    applied = apply(api, owner, license_id, {f"https://{live_site}": 700, staging_site: 300})
    assert figures(applied) == {live_site: (700, 0, 700), staging_site: (300, 0, 300)}
    assert api.balance(live, **{"if-none-match": etag}).status == 200
    assert (site_figures(api, live), site_figures(api, staging)) == ((700, 0, 700), (300, 0, 300))

    # Rule 4: staging spends the license's credits like the live site does
    assert (spend(api, live, 100), spend(api, staging, 50)) == (600, 250)
    over = api.apply(owner, license_id, {live_site: 1000, staging_site: 50})
    assert_problem(over, 409, "over_allocation")
    assert (over.body["available"], over.body["requested"]) == (1000, 1050)
    assert figures(apply(api, owner, license_id, {live_site: 950, staging_site: 50})) == {
        live_site: (950, 100, 850), staging_site: (50, 50, 0),
    }  # fmt: skip
    # Billing raises the plan: it applies from the next term
    assert api.provision(
        license_id, license_key=key, account_id=account, credits_per_term=1500, expires_at=PAID_UNTIL,
        term_start="2026-01-01T00:00:00Z", term_end="2027-01-01T00:00:00Z",
    ).status == 200  # fmt: skip
    assert view(api, owner, license_id)["credits_total"] == 1000

    # When the term ends and the renew function runs for this license
    report = renew(api, {"license_id": license_id, "time": "2027-01-01T00:05:00Z"})

    # Then (rule 5) the live site has the full new balance, staging 0, nothing used
    assert report["renewed"] == [license_id] and not report["failed"]
    renewed = view(api, owner, license_id)
    assert (renewed["term_start"], renewed["term_end"]) == ("2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z")
    assert (renewed["credits_total"], renewed["unallocated"], renewed["needs_allocation"]) == (1500, 0, False)
    assert figures(renewed) == {live_site: (1500, 0, 1500), staging_site: (0, 0, 0)}
    assert (site_figures(api, live), site_figures(api, staging)) == ((1500, 0, 1500), (0, 0, 0))
    # and Apply works in the new term
    assert figures(apply(api, owner, license_id, {live_site: 1100, staging_site: 400})) == {
        live_site: (1100, 0, 1100), staging_site: (400, 0, 400),
    }  # fmt: skip
    assert spend(api, staging, 400) == 0


def test_a_multi_site_license_end_to_end(api: Api, account: str, owner: str):
    # Given a multi-site license with two live sites and a development site
    license_id, key = provision(
        api, account, plan="multi-site", site_limit=2, credits_per_term=1000, term_months=6,
        term_start="2026-06-01T00:00:00Z", term_end="2026-12-01T00:00:00Z",
    )  # fmt: skip
    name = unique("agency")
    urls = {"a": f"{name}-a.com", "b": f"{name}-b.com", "dev": f"{name}.local"}
    tokens = {label: activate(api, key, url) for label, url in urls.items()}
    sites = {label: api.balance(token).body["site"]["site"] for label, token in tokens.items()}

    # Rule 2: nothing is allocated automatically, and the customer must allocate
    for token in tokens.values():
        balance = api.balance(token).body
        assert (balance["site"]["allocated"], balance["needs_allocation"]) == (0, True)
    assert_problem(api.consume(tokens["a"], 1), 402, "insufficient_credits")

    # Apply clears needs_allocation; the sites spend
    applied = apply(api, owner, license_id, {sites["a"]: 500, sites["b"]: 300})
    assert (applied["needs_allocation"], applied["unallocated"]) == (False, 200)
    assert api.balance(tokens["b"]).body["needs_allocation"] is False
    assert (spend(api, tokens["a"], 120), spend(api, tokens["b"], 80)) == (380, 220)

    # When the term ends and the license is renewed
    report = renew(api, {"license_id": license_id, "time": "2026-12-01T00:00:01Z"})

    # Then (rule 5) every allocation restarts at 0 and the customer must allocate again
    assert report["renewed"] == [license_id]
    renewed = view(api, owner, license_id)
    assert (renewed["term_start"], renewed["term_end"]) == ("2026-12-01T00:00:00Z", "2027-06-01T00:00:00Z")
    assert (renewed["needs_allocation"], renewed["allocated"], renewed["unallocated"]) == (True, 0, 1000)
    assert set(figures(renewed).values()) == {(0, 0, 0)}
    for token in tokens.values():
        balance = api.balance(token).body
        assert (balance["site"]["allocated"], balance["site"]["used"], balance["needs_allocation"]) == (
            0,
            0,
            True,
        )
    assert_problem(api.consume(tokens["a"], 1), 402, "insufficient_credits")

    # and a new Apply lets every site spend again
    applied = apply(api, owner, license_id, {sites["a"]: 400, sites["b"]: 400, sites["dev"]: 200})
    assert applied["needs_allocation"] is False
    assert [spend(api, tokens[label], 50) for label in ("a", "b", "dev")] == [350, 350, 150]


# -- 4. rule 7: imported licenses -----------------------------------------------------------------


def test_rule7_a_license_imported_with_its_one_live_site_gives_it_everything(
    api: Api, account: str, owner: str
):
    # Given a single-site license imported with one live site
    shop = f"{unique('shop')}.com"
    license_id, key = provision(api, account, activations=[{"site_url": shop, "environment": "production"}])

    # Then that site has every credit, and the plugin can spend at once
    imported = view(api, owner, license_id)
    assert (imported["needs_allocation"], imported["unallocated"], figures(imported)) == (
        False, 0, {shop: (1000, 0, 1000)},
    )  # fmt: skip
    answer = api.activate(key, shop)
    assert (answer.status, answer.body["credits"]["allocated"]) == (200, 1000)  # already active
    assert spend(api, answer.body["activation_token"], 10) == 990


def test_rule7_a_single_site_license_imported_with_live_and_staging_waits_for_an_apply(
    api: Api, account: str, owner: str
):
    # Given a single-site license imported with a live site and its staging copy
    name = unique("shop")
    live_site, staging_site = f"{name}.com", f"staging.{name}.com"
    license_id, key = provision(
        api, account,
        activations=[
            {"site_url": live_site, "environment": "production"},
            {"site_url": staging_site, "environment": "staging"},
        ],
    )  # fmt: skip

    # Then nothing is allocated and the customer must allocate first
    imported = view(api, owner, license_id)
    assert (imported["needs_allocation"], imported["unallocated"]) == (True, 1000)
    assert figures(imported) == {live_site: (0, 0, 0), staging_site: (0, 0, 0)}
    live, staging = activate(api, key, live_site), activate(api, key, staging_site, "staging")
    assert api.balance(live).body["needs_allocation"] is True
    for token in (live, staging):
        assert site_figures(api, token) == (0, 0, 0)
        refused = api.consume(token, 1)
        assert_problem(refused, 402, "insufficient_credits")
        assert refused.body["remaining"] == 0

    # When the customer applies an allocation
    applied = apply(api, owner, license_id, {live_site: 900, staging_site: 100})

    # Then both sites can spend and nothing is pending
    assert applied["needs_allocation"] is False
    assert (spend(api, live, 900), spend(api, staging, 1)) == (0, 99)
    assert api.balance(staging).body["needs_allocation"] is False


# -- 5. Apply errors: each writes nothing ---------------------------------------------------------


@pytest.fixture
def agency(api: Api, account: str, owner: str) -> dict[str, Any]:
    """A multi-site license with sites a (600 allocated, 250 used), b (300) and c (0)."""
    license_id, key = provision(api, account, plan="multi-site", site_limit=3, credits_per_term=1000)
    name = unique("agency")
    tokens = {label: activate(api, key, f"{label}.{name}.com") for label in ("a", "b", "c")}
    sites = {label: f"{label}.{name}.com" for label in tokens}
    apply(api, owner, license_id, {sites["a"]: 600, sites["b"]: 300})
    spend(api, tokens["a"], 250)
    return {"license_id": license_id, "key": key, "account": account, "tokens": tokens, **sites}


def refused_without_writing(
    api: Api, owner: str, license_id: str, body: Any, status: int, code: str
) -> Answer:
    """An Apply that must fail with ``status``/``code`` and leave the credits view as it was."""
    before = view(api, owner, license_id)
    answer = api.call("PUT", f"/v1/licenses/{license_id}/allocations", body, token=owner)
    assert_problem(answer, status, code)
    assert view(api, owner, license_id) == before
    return answer


def test_apply_beyond_what_is_available_is_over_allocation_with_exact_figures(api: Api, owner: str, agency):
    # b holds 300, c 0, 100 are unallocated: 400 available for b and c, 410 asked
    answer = refused_without_writing(
        api,
        owner,
        agency["license_id"],
        {"allocations": {agency["b"]: 350, agency["c"]: 60}},
        409,
        "over_allocation",
    )
    assert (answer.body["available"], answer.body["requested"]) == (400, 410)


def test_apply_below_what_a_site_used_is_below_used(api: Api, owner: str, agency):
    answer = refused_without_writing(
        api,
        owner,
        agency["license_id"],
        {"allocations": {agency["a"]: 200, agency["b"]: 10}},
        409,
        "below_used",
    )
    assert (answer.body["site"], answer.body["used"]) == (agency["a"], 250)


def test_apply_to_a_site_that_is_not_active_is_a_404_checked_before_the_totals(api: Api, owner: str, agency):
    assert api.deactivate(agency["tokens"]["c"]).status == 204
    unknown = f"{unique('unknown')}.com"
    for allocations in (
        {agency["c"]: 10},
        {unknown: 10},
        {agency["a"]: 5000, unknown: 1},  # would also be over_allocation
        {agency["a"]: 1, agency["c"]: 0},  # would also be below_used
    ):
        refused_without_writing(
            api, owner, agency["license_id"], {"allocations": allocations}, 404, "not_found"
        )


def test_rule8_apply_on_an_expired_license_is_a_403(api: Api, owner: str, agency):
    answer = api.provision(
        agency["license_id"], license_key=agency["key"], account_id=agency["account"], plan="multi-site",
        site_limit=3, expires_at="2020-01-01T00:00:00Z",
    )  # fmt: skip
    assert answer.status == 200

    refused_without_writing(
        api, owner, agency["license_id"], {"allocations": {agency["b"]: 350}}, 403, "license_expired"
    )
    assert view(api, owner, agency["license_id"])["status"] == "expired"


@pytest.mark.parametrize(
    "amount",
    [5.0, "5", True, None, -1, 1_000_000_001],
    ids=["float", "string", "bool", "null", "negative", "too large"],
)
def test_apply_with_an_amount_that_is_not_an_integer_in_range_is_422(api: Api, owner: str, agency, amount):
    answer = refused_without_writing(
        api, owner, agency["license_id"], {"allocations": {agency["b"]: amount}}, 422, "validation_error"
    )
    assert answer.body["errors"]


def test_apply_to_more_than_98_sites_at_once_is_422(api: Api, owner: str, agency):
    unknown = [f"site-{index}.{agency['b']}" for index in range(98)]

    answer = refused_without_writing(
        api, owner, agency["license_id"], {"allocations": dict.fromkeys([agency["b"], *unknown], 0)},
        422, "validation_error",
    )  # fmt: skip
    assert answer.body["errors"]
    # 98 sites are within the limit: the next check (unknown sites) answers
    refused_without_writing(
        api, owner, agency["license_id"], {"allocations": dict.fromkeys(unknown, 0)}, 404, "not_found"
    )


# -- 6. concurrent Applies ------------------------------------------------------------------------

APPLY_SITES = 16
APPLY_ROUNDS = 3


def test_concurrent_applies_never_allocate_more_than_credits_total(api: Api, account: str, owner: str):
    # Given a multi-site license of 1000 credits with 16 sites
    license_id, key = provision(
        api, account, plan="multi-site", site_limit=APPLY_SITES, credits_per_term=1000
    )
    name = unique("fleet")
    sites = [f"s{index}.{name}.com" for index in range(APPLY_SITES)]
    for site in sites:
        activate(api, key, site)

    for round_ in range(APPLY_ROUNDS):
        apply(api, owner, license_id, dict.fromkeys(sites, 0))
        asked = [400 + (index * 37 + round_ * 101) % 301 for index in range(APPLY_SITES)]

        # When 16 portal tabs each give a different site 400-700 credits at the same moment
        tabs = [{site: amount} for site, amount in zip(sites, asked, strict=True)]
        answers = all_at_once(tabs, lambda allocations: api.apply(owner, license_id, allocations))

        # Then only what fits was applied, every answer tells the truth, and nobody got a 5xx
        statuses = [answer.status for answer in answers]
        assert set(statuses) <= {200, 409}, [(answer.status, answer.body) for answer in answers]
        winners = {sites[index]: asked[index] for index, answer in enumerate(answers) if answer.status == 200}
        assert winners, "one Apply at least fits"
        for index, answer in enumerate(answers):
            if answer.status == 200:
                assert_consistent(answer.body)
                assert figures(answer.body)[sites[index]][0] == asked[index]
            else:
                assert_problem(answer, 409, "over_allocation")
                assert answer.body["requested"] == asked[index] > answer.body["available"] >= 0
        after = view(api, owner, license_id)
        assert_consistent(after)
        assert after["allocated"] <= after["credits_total"] == 1000
        assert {site: allocated for site, (allocated, _, _) in figures(after).items() if allocated} == winners


# -- 7. and 8. renewal: exactly once, and catching up ---------------------------------------------

RENEWERS = 8


def test_a_renewal_run_concurrently_refreshes_once(api: Api, account: str, owner: str, ddb_local_env):
    # Given a single-site license whose term ended on 2011-01-01, with credits spent on two sites
    license_id, key = provision(
        api, account, credits_per_term=1000, term_months=12,
        term_start="2010-01-01T00:00:00Z", term_end="2011-01-01T00:00:00Z",
    )  # fmt: skip
    name = unique("shop")
    live_site, staging_site = f"{name}.com", f"stg-{name}.kinsta.cloud"
    live, staging = activate(api, key, live_site), activate(api, key, staging_site)
    apply(api, owner, license_id, {live_site: 600, staging_site: 300})
    spend(api, live, 100)
    spend(api, staging, 50)
    ended = view(api, owner, license_id)
    unused = ended["unallocated"] + sum(site["remaining"] for site in ended["sites"])
    assert unused == 100 + 500 + 250

    # When eight renewals of that license run at once
    event = {"license_id": license_id, "time": "2011-01-01T00:10:00Z"}
    reports = all_at_once([event] * RENEWERS, partial(renew, api))

    # Then exactly one renewed it, the others found it not due, and one expiry was recorded
    assert [report["failed"] for report in reports] == [[]] * RENEWERS
    assert sum(report["renewed"] == [license_id] for report in reports) == 1
    assert sum(report["not_due"] == [license_id] for report in reports) == RENEWERS - 1
    [expiry] = expiry_entries(license_id)
    assert (expiry["term_start"], expiry["term_end"]) == ("2010-01-01T00:00:00Z", "2011-01-01T00:00:00Z")
    assert expiry["expired"] == unused
    assert (expiry["unallocated"], expired_per_site(license_id)) == (100, {live_site: 500, staging_site: 250})
    renewed = view(api, owner, license_id)
    assert (renewed["term_start"], renewed["term_end"]) == ("2011-01-01T00:00:00Z", "2012-01-01T00:00:00Z")
    assert figures(renewed) == {live_site: (1000, 0, 1000), staging_site: (0, 0, 0)}

    # When, after some spending, the scheduled run comes later in the same new term, when
    # another license is due
    spend(api, live, 30)
    due_id, _ = provision(api, account, term_start="2010-03-01T00:00:00Z", term_end="2011-03-01T00:00:00Z")
    scheduled = renew(api, {"time": "2011-06-01T00:00:00Z"})

    # Then it renews that one but not this license again
    assert due_id in scheduled["renewed"]
    assert license_id not in scheduled["renewed"]
    after = view(api, owner, license_id)
    assert (after["term_start"], after["term_end"]) == (renewed["term_start"], renewed["term_end"])
    assert figures(after)[live_site] == (1000, 30, 970)
    assert len(expiry_entries(license_id)) == 1


def test_a_license_several_terms_behind_catches_up_in_one_refresh(
    api: Api, account: str, owner: str, ddb_local_env
):
    # Given a monthly license whose term ended on 2013-02-01, renewed only on 2013-07-15
    license_id, key = provision(
        api, account, credits_per_term=300, term_months=1,
        term_start="2013-01-01T00:00:00Z", term_end="2013-02-01T00:00:00Z",
    )  # fmt: skip
    live = activate(api, key, f"{unique('shop')}.com")
    spend(api, live, 100)

    # When the renew function runs
    report = renew(api, {"license_id": license_id, "time": "2013-07-15T12:00:00Z"})

    # Then one refresh lands in the term that contains that time, with fresh credits
    assert report["renewed"] == [license_id]
    renewed = view(api, owner, license_id)
    assert (renewed["term_start"], renewed["term_end"]) == ("2013-07-01T00:00:00Z", "2013-08-01T00:00:00Z")
    assert site_figures(api, live) == (300, 0, 300)
    [expiry] = expiry_entries(license_id)
    assert (expiry["term_start"], expiry["expired"]) == ("2013-01-01T00:00:00Z", 200)
    again = renew(api, {"license_id": license_id, "time": "2013-07-15T12:00:00Z"})
    assert again["not_due"] == [license_id]


# -- 9. a network's sub-sites racing for an allocation --------------------------------------------

SUBSITE_CLIENTS = 32
SUBSITE_REQUESTS = 8  # 256 requests of 1 credit for an allocation of 200
NETWORK_ALLOCATION = 200


def test_network_sub_sites_racing_spend_exactly_the_allocation(
    api: Api, account: str, owner: str, ddb_local_env
):
    # Given a multi-site license whose network activation was allocated 200 credits in the portal
    license_id, key = provision(api, account, plan="multi-site", site_limit=2, credits_per_term=1000)
    name = unique("network")
    network_answer = api.activate(key, f"{name}.org", network=True)
    network, network_site = network_answer.body["activation_token"], network_answer.body["site"]
    other = activate(api, key, f"other-{name}.org")
    apply(api, owner, license_id, {network_site: NETWORK_ALLOCATION, f"other-{name}.org": 100})
    subsites = [f"blog.{name}.org", f"shop.{name}.org", f"{name}.org/news", f"https://{name}.org/docs/"]

    # When 32 clients consume through the sub-sites more than the allocation
    def client(index: int) -> list[tuple[str, Answer]]:
        answers = []
        for request in range(SUBSITE_REQUESTS):
            request_id = f"sub-{index}-{request}"
            subsite = subsites[(index + request) % len(subsites)]
            answers.append((request_id, api.consume(network, 1, request_id, subsite_url=subsite)))
        return answers

    answers = [answer for answers in all_at_once(range(SUBSITE_CLIENTS), client) for answer in answers]

    # Then exactly the allocation is spent, every charge is in the ledger, nothing else moved
    assert {answer.status for _, answer in answers} <= {200, 402}, {answer.status for _, answer in answers}
    charged = sorted(request_id for request_id, answer in answers if answer.status == 200)
    assert sum(answer.body["consumed"] for _, answer in answers if answer.status == 200) == NETWORK_ALLOCATION
    assert all(answer.body["remaining"] == 0 for _, answer in answers if answer.status == 402)
    entries = [entry for entry in store.ledger_entries(license_id) if entry["type"] == "consume"]
    assert sorted(entry["request_id"] for entry in entries) == charged
    assert {entry["site"] for entry in entries} == {network_site}
    assert site_figures(api, network) == (NETWORK_ALLOCATION, NETWORK_ALLOCATION, 0)
    assert site_figures(api, other) == (100, 0, 100)
    assert view(api, owner, license_id)["unallocated"] == 700
