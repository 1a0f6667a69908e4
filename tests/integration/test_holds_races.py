"""Holds racing on DynamoDB Local (moto is not atomic under concurrency; DynamoDB Local is):
holds and consumes at a network pool's last credits, captures against releases of one hold, and
overlapping sweeps."""

from __future__ import annotations

import itertools
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ai_credits import store
from ai_credits.errors import DomainError
from ai_credits.models import ActivationRequest, CaptureRequest, ConsumeRequest, HoldRequest, ProvisionRequest
from ai_credits.services import billing, holds, operator, plugin

NOW = "2026-12-04T12:00:00Z"
CLIENTS = 16


def _network(credits: int) -> tuple[str, str]:
    license_id = f"lic-holds-{uuid.uuid4().hex[:12]}"
    key = f"key-{license_id}"
    request = ProvisionRequest(
        license_key=key, account_id="acct-holds", plan="single-site", site_limit=1, credits_per_term=credits,
        term_start="2026-11-01T00:00:00Z", term_end="2027-11-01T00:00:00Z", expires_at="2028-01-01T00:00:00Z",
    )  # fmt: skip
    billing.provision_license(license_id, request, NOW)
    activation = plugin.activate(
        ActivationRequest(
            license_key=key, site_url=f"{license_id}.example.org", environment="production", network=True
        ),
        NOW,
    )
    return license_id, f"Bearer {activation.response.activation_token}"


def _together(count: int, action: Any) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait()
        try:
            return action(index)
        except DomainError as error:
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_holds_and_consumes_at_the_last_credits_of_a_network_pool_never_both_succeed_beyond_it(ddb_local_env):
    license_id, token = _network(100)
    numbers = itertools.count()
    subsites = ["blog.pool.org", "shop.pool.org", "pool.org/news"]

    def client(index: int) -> list[Any]:
        answers = []
        for request in range(12):  # 192 requests of 1 credit for 100
            number, subsite = next(numbers), subsites[(index + request) % 3]
            try:
                if (index + request) % 2:
                    answers.append(plugin.consume(token, ConsumeRequest(amount=1, request_id=f"c-{number}",
                                                                        subsite_url=subsite), NOW))  # fmt: skip
                else:
                    answers.append(holds.place_hold(token, HoldRequest(hold_id=f"h-{number}", amount=1,
                                                                       subsite_url=subsite), NOW))  # fmt: skip
            except DomainError as error:
                answers.append(error)
        return answers

    answers = [answer for answers in _together(CLIENTS, client) for answer in answers]

    succeeded = [answer for answer in answers if not isinstance(answer, DomainError)]
    refused = {type(answer).__name__ for answer in answers if isinstance(answer, DomainError)}
    assert len(succeeded) == 100, "exactly the pool: holds and consumes first-come, first-served"
    assert refused <= {"InsufficientCredits", "Unavailable"}, refused
    _, [site] = store.get_license_with_sites(license_id)
    assert (site.used + site.held, site.remaining) == (100, 0)
    assert operator.audit([license_id]) == {}


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_captures_and_releases_of_one_hold_exactly_one_wins(ddb_local_env, round_):
    license_id, token = _network(1000)
    holds.place_hold(token, HoldRequest(hold_id="the-call", amount=300), NOW)

    def act(index: int) -> Any:
        if index % 2:
            return holds.capture_hold(token, "the-call", None, CaptureRequest(amount=120), NOW)
        return holds.release_hold(token, "the-call", None, NOW)

    results = _together(CLIENTS, act)

    captures = [r for r in results if type(r).__name__ == "CaptureResponse"]
    releases = [r for r in results if type(r).__name__ == "ReleaseResponse"]
    refusals = {type(r).__name__ for r in results if isinstance(r, DomainError)}
    _, [site] = store.get_license_with_sites(license_id)
    if captures:
        assert not releases and refusals <= {"HoldCaptured"}, refusals
        assert sum(not capture.replayed for capture in captures) == 1
        assert (site.used, site.held, site.remaining) == (120, 0, 880)
    else:
        assert releases and refusals <= {"HoldExpired"}, refusals
        assert (site.used, site.held, site.remaining) == (0, 0, 1000)
    assert operator.audit([license_id]) == {}


def test_overlapping_sweeps_release_each_expired_hold_once(ddb_local_env):
    license_id, token = _network(1000)
    for number in range(40):
        holds.place_hold(token, HoldRequest(hold_id=f"h-{number}", amount=5, ttl_seconds=60), NOW)
    holds.place_hold(token, HoldRequest(hold_id="long", amount=5, ttl_seconds=3600), NOW)

    swept = _together(4, lambda _: holds.sweep_expired_holds("2026-12-04T12:01:00Z"))

    assert sum(swept) == 40, "each expired hold closed by exactly one sweep"
    _, [site] = store.get_license_with_sites(license_id)
    assert (site.held, site.remaining) == (5, 995)
    statuses = [holds.get_hold(token, f"h-{number}", None, NOW).status for number in range(40)]
    assert set(statuses) == {"expired"}
    assert operator.audit([license_id]) == {}
