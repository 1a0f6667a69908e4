"""Races on DynamoDB Local (moto is not atomic under concurrency, DynamoDB Local is).

More demand than credits, from at least 32 concurrent clients through the local gateway:
exactly the pool is spent, never more, and every 200 has its ledger entry.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from ai_credits import store
from tests.integration.client import Api, unique

CLIENTS = 32
POOL = 600
REQUESTS_PER_CLIENT = 30  # 960 requests of 1 credit for 600 credits


@pytest.fixture(scope="module")
def api(gateway: str) -> Api:
    return Api(gateway)


def _race(api: Api, token: str, subsites: list[str | None]) -> list:
    counter = itertools.count()

    def client(index: int) -> list:
        answers = []
        for request in range(REQUESTS_PER_CLIENT):
            subsite = subsites[(index + request) % len(subsites)]
            fields = {"subsite_url": subsite} if subsite else {}
            request_id = f"race-{index}-{request}-{next(counter)}"
            answers.append((request_id, api.consume(token, 1, request_id, **fields)))
        return answers

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return [answer for answers in pool.map(client, range(CLIENTS)) for answer in answers]


def _check(license_id: str, site: str, answers: list) -> None:
    statuses = [answer.status for _, answer in answers]
    assert set(statuses) <= {200, 402}, set(statuses)
    charged = [request_id for request_id, answer in answers if answer.status == 200]
    assert len(charged) == POOL, "exactly the pool is spent"
    assert all(answer.body["remaining"] >= 0 for _, answer in answers)

    entries = [entry for entry in store.ledger_entries(license_id) if entry["site"] == site]
    assert sorted(entry["request_id"] for entry in entries) == sorted(charged), "every 200 has its entry"
    current = store.get_site(license_id, site)
    assert current is not None
    assert (current.used, current.remaining, current.allocated) == (POOL, 0, POOL)


@pytest.mark.parametrize(
    ("network", "subsites"),
    [
        pytest.param(
            True, ["blog.race.org", "shop.race.org", "race.org/news", "race.org/docs"], id="network pool"
        ),
        pytest.param(False, [None], id="plain site"),
    ],
)
def test_more_demand_than_credits_spends_exactly_the_pool(api: Api, ddb_local_env, network, subsites):
    license_id = unique("race")
    key = f"key-{license_id}"
    api.provision(license_id, license_key=key, credits_per_term=POOL)
    activation = api.activate(key, f"{unique('race')}.org", network=network)
    token, site = activation.body["activation_token"], activation.body["site"]

    answers = _race(api, token, subsites)

    _check(license_id, site, answers)


def test_concurrent_replays_of_one_request_id_charge_once(api: Api, ddb_local_env):
    license_id = unique("replay")
    key = f"key-{license_id}"
    api.provision(license_id, license_key=key, credits_per_term=100)
    token = api.activate(key, f"{unique('replay')}.org").body["activation_token"]

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        answers = list(pool.map(lambda _: api.consume(token, 10, "the-one"), range(CLIENTS)))

    assert [answer.status for answer in answers] == [200] * CLIENTS
    assert sum(not answer.body["replayed"] for answer in answers) == 1
    assert api.balance(token).body["site"]["used"] == 10
