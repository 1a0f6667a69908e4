"""Conservation under concurrency (the Jepsen bank test, for credits), on DynamoDB Local.

32 clients, for a bounded time, through the local HTTP gateway: consumes on a network pool and on
single sites, replays of request ids, holds captured or released, refunds, grants, Apply in the
portal, deactivations and re-activations, and a renewal in the middle. Then the checker (the same as ``make audit``) verifies, per license, that
the counters add up and that the ledger replayed from zero equals them; and that every 200 the
clients saw is in the ledger exactly once and no ledger entry lacks its 200.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from ai_credits import derived, store
from ai_credits.audit import reconcile
from ai_credits.clock import format_timestamp, utc_now
from ai_credits.services import usage
from tests.integration.client import Api, unique

CLIENTS = 32
SECONDS = 8.0
SEED = 20261125


class World:
    """What the clients share: the current token of each site (re-activation rotates it)."""

    def __init__(self, api: Api, portal: str) -> None:
        self.api, self.portal = api, portal
        self.lock = threading.Lock()
        self.tokens: dict[tuple[str, str], str] = {}
        self.keys: dict[str, str] = {}
        self.sites: dict[str, list[tuple[str, str, bool]]] = {}  # license -> (url, environment, network)
        self.charged: dict[tuple[str, str, str], int] = {}  # (license, site, request id) -> amount
        self.sent: list[tuple[str, str, str, int]] = []
        self.operations: Counter[str] = Counter()
        self.renewed = threading.Event()
        self.unavailable: set[tuple[str, str, str]] = set()
        self.refunded: dict[tuple[str, str, str], int] = {}  # (license, site, request id) -> credits

    def token(self, license_id: str, site: str) -> str | None:
        with self.lock:
            return self.tokens.get((license_id, site))

    def activate(self, license_id: str, url: str, environment: str, network: bool) -> None:
        answer = self.api.activate(self.keys[license_id], url, environment, network=network)
        self.count("activate", answer.status)
        if answer.status in (200, 201):
            with self.lock:
                self.tokens[(license_id, answer.body["site"])] = answer.body["activation_token"]

    def count(self, operation: str, status: int) -> None:
        # 503 (with Retry-After, nothing charged) is the answer while a renewal or a
        # deactivation holds a pool's consumes off for a moment; nothing else may be a 5xx.
        assert status < 500 or status == 503, f"{operation} answered {status}"
        with self.lock:
            self.operations[f"{operation} {status}"] += 1


def _setup(api: Api, world: World, account: str) -> list[str]:
    licenses = []
    plans = [
        ("single-site", 1, 400, [("net.example.org", "production", True), ("staging.net.example.org", "staging", False)]),
        ("multi-site", 3, 600, [("a.example.com", "production", False), ("b.example.com", "production", False), ("c.example.com", "production", True)]),
        ("single-site", 1, 300, [("solo.example.net", "production", False)]),
    ]  # fmt: skip
    for plan, site_limit, credits, sites in plans:
        license_id = unique("cons")
        key = f"key-{license_id}"
        # The term ended a little before today: a renewal run "now" starts the next one.
        answer = api.provision(
            license_id, license_key=key, account_id=account, plan=plan, site_limit=site_limit,
            credits_per_term=credits, term_months=1, term_start="2026-10-01T00:00:00Z",
            term_end="2026-11-01T00:00:00Z", expires_at="2030-01-01T00:00:00Z",
        )  # fmt: skip
        assert answer.status == 201
        world.keys[license_id] = key
        world.sites[license_id] = sites
        for url, environment, network in sites:
            world.activate(license_id, url, environment, network)
        licenses.append(license_id)
    return licenses


def _client(world: World, licenses: list[str], index: int, deadline: float) -> None:
    rng = random.Random(SEED + index)
    mine: list[tuple[str, str, str, int, dict]] = []  # what this client may replay
    while time.monotonic() < deadline:
        license_id = rng.choice(licenses)
        url, environment, network = rng.choice(world.sites[license_id])
        site = url  # the sites above are already normalized
        roll = rng.random()
        if 0.60 <= roll < 0.70:
            _lifecycle(world, rng, license_id, site, mine)
        elif roll < 0.70:
            replay = bool(mine) and rng.random() < 0.2
            if replay:
                license_id, site, request_id, amount, fields = rng.choice(mine)
            token = world.token(license_id, site)
            if token is None:
                continue
            if not replay:
                request_id = f"c{index}-{len(mine)}-{rng.randrange(10**9)}"
                amount = rng.randint(1, 12)
                fields = (
                    {"subsite_url": rng.choice(["blog.net.example.org", "shop.net.example.org"])}
                    if network
                    else {}
                )
            answer = world.api.consume(token, amount, request_id, **fields)
            world.count("consume", answer.status)
            if answer.status == 503:
                assert answer.headers["retry-after"]
                with world.lock:
                    world.unavailable.add((license_id, site, request_id))
            if answer.status == 200:
                with world.lock:
                    key = (license_id, site, request_id)
                    assert world.charged.get(key, amount) == amount
                    world.charged[key] = answer.body["consumed"]
                mine.append((license_id, site, request_id, amount, fields))
        elif roll < 0.85:
            names = [name for name, _, _ in world.sites[license_id]]
            allocations = {
                name: rng.randint(0, 250) for name in rng.sample(names, rng.randint(1, len(names)))
            }
            answer = world.api.apply(world.portal, license_id, allocations)
            world.count("apply", answer.status)
            # 503 + Retry-After while a renewal moves the license's sites into the next term
            assert answer.status in (200, 404, 409) or (answer.status, "retry-after" in answer.headers) == (
                503,
                True,
            ), answer.body
        elif roll < 0.93:
            token = world.token(license_id, site)
            if token is None:
                continue
            answer = world.api.deactivate(token)
            world.count("deactivate", answer.status)
            if answer.status == 204:
                with world.lock:
                    if world.tokens.get((license_id, site)) == token:
                        del world.tokens[(license_id, site)]
        elif world.token(license_id, site) is None:  # re-activate a deactivated site
            world.activate(license_id, url, environment, network)
        if index == 0 and not world.renewed.is_set() and time.monotonic() > deadline - SECONDS / 2:
            world.renewed.set()
            for license_id in licenses:
                result = world.api.call(
                    "POST", "/2015-03-31/functions/RenewFunction/invocations",
                    {"license_id": license_id, "time": "2026-11-25T00:00:00Z"},
                ).body  # fmt: skip
                world.count(f"renew {'renewed' if result['renewed'] else 'failed'}", 200)
                assert result["renewed"] == [license_id], result


def _repeated(call: Any) -> Any:
    """A write repeated with the same id while it answers 503 (the contract: repeat, it applies
    at most once and answers its outcome), waiting a little longer each time."""
    for attempt in range(10):
        answer = call()
        if answer.status != 503:
            return answer
        assert answer.headers["retry-after"]
        # Retry-After says a second; a tenth of it, growing, keeps the run short while a renewal
        # (503 for grants and billing's writes) finishes on a loaded machine.
        time.sleep(0.1 * (attempt + 1))
    return answer


def _lifecycle(world: World, rng: random.Random, license_id: str, site: str, mine: list) -> None:
    """A hold captured (a charge like a consume) or released, a refund of an earlier charge, or a
    grant to the license."""
    kind = rng.random()
    if kind < 0.7:
        token = world.token(license_id, site)
        if token is None:
            return
        hold_id, amount = f"h{rng.randrange(10**12)}", rng.randint(1, 12)
        placed = _repeated(lambda: world.api.hold(token, hold_id, amount))
        world.count("hold", placed.status)
        if placed.status not in (200, 201):
            return
        if rng.random() < 0.7:
            captured = rng.randint(0, amount)
            answer = _repeated(lambda: world.api.capture(token, hold_id, captured))
            world.count("capture", answer.status)
            if answer.status == 200 and captured:
                with world.lock:
                    world.charged[(license_id, site, hold_id)] = captured
                mine.append((license_id, site, hold_id, captured, {}))
        else:
            world.count("release", _repeated(lambda: world.api.release(token, hold_id)).status)
    elif kind < 0.9 and mine:
        charged_license, charged_site, request_id, amount, fields = rng.choice(mine)
        if fields:  # a sub-site's charge: its refund names the sub-site too
            return
        refunded = rng.randint(1, amount)
        answer = _repeated(
            lambda: world.api.refund(charged_license, charged_site, request_id, amount=refunded)
        )
        world.count("refund", answer.status)
        assert answer.status in (200, 201, 404, 409), answer.body
        if answer.status == 201:
            with world.lock:
                world.refunded[(charged_license, charged_site, request_id)] = refunded
    else:
        grant_id = f"g{rng.randrange(10**12)}"
        answer = _repeated(lambda: world.api.grant(license_id, grant_id, rng.randint(1, 50)))
        world.count("grant", answer.status)
        assert answer.status in (200, 201), answer.body


@pytest.mark.integration
def test_credits_are_conserved_under_32_concurrent_clients(
    gateway, ddb_local_env, portal_token, stream_tap, event_bus
):
    api = Api(gateway)
    account = unique("acct")
    world = World(api, portal_token(account))
    licenses = _setup(api, world, account)

    deadline = time.monotonic() + SECONDS
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        for outcome in [pool.submit(_client, world, licenses, index, deadline) for index in range(CLIENTS)]:
            outcome.result()

    verdicts = []
    ledger_seen: set[tuple[str, str, str]] = set()
    for license_id in licenses:
        license_, sites = store.get_license_with_sites(license_id)
        ledger = store.ledger_entries(license_id)
        assert reconcile(license_, sites, ledger) == [], license_id
        assert license_.term_start == "2026-11-01T00:00:00Z", "the renewal happened once"
        assert sum(entry["type"] == "expiry" for entry in ledger) == 1
        for entry in ledger:
            if entry["type"] == "refund":
                key = (license_id, entry["site"], entry["request_id"])
                assert world.refunded.get(key) == entry["refunded"] <= world.charged[key], key
            if entry["type"] == "consume":
                key = (license_id, entry["site"], entry["request_id"])
                assert key not in ledger_seen
                ledger_seen.add(key)
                assert world.charged.get(key) == entry["amount"], f"ledger entry without its 200: {key}"
        verdicts.append(
            f"{license_id}: credits_total {license_.credits_total}, unallocated {license_.unallocated}"
        )
    assert set(world.charged) == ledger_seen, "every 200 is in the ledger exactly once"
    _check_derived_data(stream_tap, licenses, ledger_seen)
    assert not (world.unavailable - set(world.charged)) & ledger_seen, "a 503 charged nothing"

    total = sum(world.operations.values())
    print(
        f"\nconservation: {total} operations in {SECONDS:.0f}s by {CLIENTS} clients: {dict(sorted(world.operations.items()))}"
    )
    print(f"conservation: {len(ledger_seen)} charges, {len(licenses)} licenses audited, drift 0")
    assert world.operations["consume 200"] > 20  # a floor that holds on a loaded 2-core machine
    assert any(name.startswith("apply 200") for name in world.operations)
    assert any(name.startswith("deactivate 204") for name in world.operations)
    for done in ("hold 201", "capture 200", "release 200", "refund 201", "grant 201"):
        assert world.operations[done] > 0, done


def _check_derived_data(stream_tap: Any, licenses: list[str], charges: set[tuple[str, str, str]]) -> None:
    """After the stream caught up: each license's usage of its term is what its sites used, and
    its statement has every charge once and sums as the contract says."""
    reports = stream_tap.drain()
    assert all(report.failed_at is None for report in reports)
    in_statement: Counter[tuple[str, str, str]] = Counter()
    for license_id in licenses:
        license_, sites = store.get_license_with_sites(license_id)
        assert license_ is not None
        used = sum(site.used for site in sites)
        now = format_timestamp(utc_now() + timedelta(minutes=1))
        term = usage.license_usage(None, license_id, None, None, "day", now)
        assert term.credits == used, f"{license_id}: usage {term.credits}, used {used}"
        entries = list(derived.statement(license_id))
        current = [entry for entry in entries if entry["term_start"] == license_.term_start]
        assert sum(entry["credits"] for entry in current) == license_.credits_total - used, license_id
        for entry in entries:
            if entry["entry_type"] == "consume":
                in_statement[(license_id, entry["site"], entry["request_id"])] += 1
    assert set(in_statement) == charges and set(in_statement.values()) == {1}
    print(
        f"conservation: {sum(in_statement.values())} charges in the statements, usage = used on every license"
    )
