"""The plugin's path on moto: activate, balance, consume, deactivate (rules 1, 2, 4, 6, 8)."""

from __future__ import annotations

import copy

import boto3
import pytest

from ai_credits import store
from tests.handlers.conftest import invoke, make_event

KEY = "key-plugin-secret"


@pytest.fixture
def single(provision):
    provision("lic-single", license_key=KEY)
    return KEY


@pytest.fixture
def multi(provision):
    provision("lic-multi", license_key="key-multi-secret", plan="multi-site", site_limit=3)
    return "key-multi-secret"


# -- activation ------------------------------------------------------------------------------


def test_rule1_a_live_site_of_a_single_site_license_gets_every_credit(single, activate):
    answer = activate(single, "https://www.Example.com/")

    assert answer.status == 201
    assert answer.body["site"] == "example.com"
    assert answer.body["environment"] == "live"
    assert answer.body["network"] is False
    assert answer.body["license_id"] == "lic-single"
    assert answer.body["credits"] == {"allocated": 1000, "used": 0, "held": 0, "remaining": 1000}
    assert len(answer.body["activation_token"]) > 40


@pytest.mark.parametrize(
    ("site_url", "wp_environment", "environment"),
    [
        ("staging.example.com", "production", "staging"),
        ("example.com", "staging", "staging"),
        ("example.com", "local", "development"),
        ("localhost:8080", "production", "development"),
        ("mysite.wpengine.com", "production", "staging"),
    ],
)
def test_rule1_staging_and_development_sites_start_with_zero(
    single, activate, site_url, wp_environment, environment
):
    answer = activate(single, site_url, wp_environment)

    assert answer.status == 201
    assert answer.body["environment"] == environment
    assert answer.body["credits"]["allocated"] == 0


def test_rule2_a_multi_site_license_allocates_nothing_and_needs_allocation(multi, activate, balance):
    answer = activate(multi, "a.com")

    assert answer.body["credits"]["allocated"] == 0
    assert balance(answer.body["activation_token"]).body["needs_allocation"] is True


def test_an_unknown_license_key_is_a_404(table, activate):
    answer = activate("no-such-key", "example.com")
    assert (answer.status, answer.code) == (404, "not_found")


def test_an_active_site_activating_again_gets_a_new_token_and_the_old_one_stops_working(
    single, activate, balance
):
    first = activate(single, "example.com").body["activation_token"]
    again = activate(single, "https://www.example.com/")

    assert again.status == 200
    assert again.body["credits"]["allocated"] == 1000
    assert balance(first).status == 401
    assert balance(again.body["activation_token"]).status == 200


def test_a_second_live_site_beyond_the_limit_is_refused_but_staging_is_not(single, activate):
    activate(single, "example.com")

    refused = activate(single, "other.com")
    staging = activate(single, "staging.example.com")

    assert (refused.status, refused.code) == (409, "activation_limit_reached")
    assert staging.status == 201


def test_activation_on_an_expired_license_is_a_403(provision, activate):
    provision("lic-old", license_key="key-old-secret", expires_at="2020-01-01T00:00:00Z")
    answer = activate("key-old-secret", "example.com")
    assert (answer.status, answer.code) == (403, "license_expired")


@pytest.mark.parametrize(
    "body",
    [
        {"license_key": KEY, "site_url": "ftp://example.com", "environment": "production"},
        {"license_key": KEY, "site_url": "user:pw@example.com", "environment": "production"},
        {"license_key": KEY, "site_url": "", "environment": "production"},
        {"license_key": KEY, "site_url": "example.com", "environment": "prod"},
        {"license_key": KEY, "site_url": "example.com", "environment": "production", "network": "yes"},
        {"license_key": KEY, "environment": "production"},
    ],
)
def test_an_invalid_activation_is_a_422(single, body):
    answer = invoke("activate", make_event("activate", body=body))
    assert (answer.status, answer.code) == (422, "validation_error")


def test_a_network_activation_is_flagged(multi, activate):
    answer = activate(multi, "network.example.org", network=True)
    assert answer.body["network"] is True


# -- deactivation -----------------------------------------------------------------------------


def test_deactivation_returns_the_unused_credits_and_revokes_the_token(
    single, activate, consume, deactivate, balance
):
    token = activate(single, "example.com").body["activation_token"]
    consume(token, 30)

    assert deactivate(token).status == 204

    assert deactivate(token).status == 401
    assert balance(token).status == 401
    assert consume(token, 1, "after").status == 401
    license_, sites = store.get_license_with_sites("lic-single")
    [site] = sites
    assert (site.active, site.allocated, site.used, site.remaining) == (False, 30, 30, 0)
    assert license_.unallocated == 970


def test_a_deactivated_site_no_longer_counts_against_the_limit(single, activate, deactivate):
    token = activate(single, "example.com").body["activation_token"]
    deactivate(token)

    moved = activate(single, "new-domain.com")

    assert moved.status == 201
    assert moved.body["credits"]["allocated"] == 1000


def test_reactivation_restores_the_allocation_plus_rule1(single, activate, consume, deactivate):
    token = activate(single, "example.com").body["activation_token"]
    consume(token, 30)
    deactivate(token)

    again = activate(single, "example.com")

    assert again.status == 201
    assert again.body["credits"] == {"allocated": 1000, "used": 30, "held": 0, "remaining": 970}


# -- balance -----------------------------------------------------------------------------------


def test_balance_reads_license_and_site_with_an_etag_and_304(single, activate, balance, dynamodb_calls):
    token = activate(single, "example.com").body["activation_token"]
    dynamodb_calls.clear()

    answer = balance(token)

    assert answer.status == 200
    assert answer.body["license"] == {
        "license_id": "lic-single",
        "plan": "single-site",
        "status": "active",
        "term_start": "2026-11-01T00:00:00Z",
        "term_end": "2027-11-01T00:00:00Z",
        "credits_total": 1000,
        "allocated": 1000,
        "unallocated": 0,
    }
    assert answer.body["site"] == {
        "site": "example.com",
        "environment": "live",
        "network": False,
        "allocated": 1000,
        "used": 0,
        "held": 0,
        "remaining": 1000,
    }
    assert answer.body["needs_allocation"] is False
    assert sum(dynamodb_calls.values()) == 1
    etag = answer.headers["etag"]
    not_modified = balance(token, **{"if-none-match": etag})
    assert (not_modified.status, not_modified.body) == (304, None)
    assert not_modified.headers["etag"] == etag


def test_balance_changes_etag_when_the_figures_change(single, activate, balance, consume):
    token = activate(single, "example.com").body["activation_token"]
    etag = balance(token).headers["etag"]
    consume(token, 1)
    assert balance(token, **{"if-none-match": etag}).status == 200


@pytest.mark.parametrize(
    "authorization", [None, "Basic abc", "Bearer ", "Bearer act1.bm9wZQ.bm9wZQ", "Bearer garbage"]
)
def test_balance_without_a_valid_token_is_a_401(single, authorization):
    event = make_event("get_balance")
    event["headers"].pop("authorization", None)
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    answer = invoke("get_balance", event)
    assert (answer.status, answer.code) == (401, "unauthorized")


def test_rule8_an_expired_license_can_still_be_read(single, activate, balance, provision):
    token = activate(single, "example.com").body["activation_token"]
    provision("lic-single", license_key=KEY, expires_at="2021-01-01T00:00:00Z")

    answer = balance(token)

    assert answer.status == 200
    assert answer.body["license"]["status"] == "expired"


# -- consume -----------------------------------------------------------------------------------


def test_consume_spends_and_answers_what_remains(single, activate, consume):
    token = activate(single, "example.com").body["activation_token"]

    answer = consume(token, 25, "r-1", feature="rewrite")

    assert answer.status == 200
    assert answer.body == {"request_id": "r-1", "consumed": 25, "remaining": 975, "replayed": False}


def test_a_replayed_request_id_returns_the_first_answer_and_charges_nothing(
    single, activate, consume, balance
):
    token = activate(single, "example.com").body["activation_token"]
    first = consume(token, 25, "r-1")

    again = consume(token, 25, "r-1")

    assert again.status == 200
    assert again.body == {**first.body, "replayed": True}
    assert balance(token).body["site"]["used"] == 25


def test_a_request_id_reused_with_another_body_is_a_409(single, activate, consume):
    token = activate(single, "example.com").body["activation_token"]
    consume(token, 25, "r-1")

    for changed in ({"amount": 26}, {"amount": 25, "feature": "other"}):
        answer = consume(token, request_id="r-1", **changed)
        assert (answer.status, answer.code) == (409, "idempotency_conflict")


def test_consuming_more_than_remaining_is_a_402_with_remaining_and_writes_nothing(single, activate, consume):
    token = activate(single, "example.com").body["activation_token"]
    consume(token, 990, "r-1")

    answer = consume(token, 11, "r-2")

    assert (answer.status, answer.code) == (402, "insufficient_credits")
    assert answer.body["remaining"] == 10
    assert [entry["request_id"] for entry in store.ledger_entries("lic-single")] == ["r-1"]
    assert consume(token, 10, "r-2").status == 200  # the refused request_id was not burnt


def test_rule4_staging_spends_from_the_license_like_any_site(single, activate, consume, provision):
    activate(single, "example.com")
    staging = activate(single, "staging.example.com").body["activation_token"]
    answer = consume(staging, 1)
    assert (answer.status, answer.body["remaining"]) == (402, 0)


def test_rule8_consume_on_an_expired_license_is_a_403(single, activate, consume, provision):
    token = activate(single, "example.com").body["activation_token"]
    provision("lic-single", license_key=KEY, expires_at="2021-01-01T00:00:00Z")

    answer = consume(token, 1)

    assert (answer.status, answer.code) == (403, "license_expired")


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": 5.0},
        {"amount": "5"},
        {"amount": True},
        {"amount": 0},
        {"amount": -3},
        {"amount": 1_000_001},
        {"amount": None},
        {"amount": 5, "request_id": "x" * 129},
        {"amount": 5, "request_id": ""},
        {"amount": 5, "request_id": "has space"},
        {"amount": 5, "subsite_url": "ftp://x.com"},
        {"amount": 5, "expected_remaining": -1},
        {"amount": 5, "expected_remaining": 995.0},
        {"amount": 5, "expected_remaining": "995"},
        {"amount": 5, "expected_remaining": True},
        {"amount": 5, "expected_remaining": 10**15 + 1},
    ],
)
def test_a_consume_with_an_invalid_field_is_a_422_and_charges_nothing(
    single, activate, consume, balance, fields
):
    token = activate(single, "example.com").body["activation_token"]
    request_id = fields.pop("request_id", "r-1")

    answer = consume(token, request_id=request_id, **fields)

    assert (answer.status, answer.code) == (422, "validation_error")
    assert balance(token).body["site"]["used"] == 0


def test_a_request_id_of_128_characters_is_accepted(single, activate, consume):
    token = activate(single, "example.com").body["activation_token"]
    assert consume(token, 1, "x" * 128).status == 200


def test_a_consume_without_a_token_is_a_401(single):
    event = make_event("consume", body={"amount": 1, "request_id": "r"})
    event["headers"].pop("authorization")
    answer = invoke("consume", event)
    assert (answer.status, answer.code) == (401, "unauthorized")


def test_a_malformed_consume_body_is_a_400(single, activate):
    token = activate(single, "example.com").body["activation_token"]
    for raw in ("{", '{"amount": NaN, "request_id": "r"}', '{"amount": 1, "amount": 2, "request_id": "r"}'):
        answer = invoke("consume", make_event("consume", raw_body=raw, token=token))
        assert (answer.status, answer.code) == (400, "malformed_json"), raw


def test_rule6_network_sub_sites_share_the_network_pool(provision, activate, consume, balance):
    provision("lic-net", license_key="key-net-secret", plan="single-site")
    token = activate("key-net-secret", "network.org", network=True).body["activation_token"]

    blog = consume(token, 600, "r-1", subsite_url="blog.network.org")
    shop = consume(token, 500, "r-2", subsite_url="network.org/shop")

    assert blog.body["remaining"] == 400
    assert (shop.status, shop.body["remaining"]) == (402, 400)
    entries = store.ledger_entries("lic-net")
    assert [(entry["subsite"], entry["amount"]) for entry in entries] == [("blog.network.org", 600)]


def test_rule6_a_sub_site_on_a_non_network_activation_is_a_422(single, activate, consume):
    token = activate(single, "example.com").body["activation_token"]
    answer = consume(token, 1, subsite_url="blog.example.com")
    assert (answer.status, answer.code) == (422, "validation_error")


def test_a_rotated_token_cannot_consume(single, activate, consume):
    old = activate(single, "example.com").body["activation_token"]
    activate(single, "example.com")
    answer = consume(old, 1)
    assert (answer.status, answer.code) == (401, "unauthorized")


# -- DynamoDB requests per operation (counts, not timings) ----------------------------------------


def test_consume_requests(single, activate, consume, dynamodb_calls):
    token = activate(single, "example.com").body["activation_token"]

    dynamodb_calls.clear()
    assert consume(token, 995, "r-1").body["remaining"] == 5
    assert dict(dynamodb_calls) == {"BatchGetItem": 1, "TransactWriteItems": 1}, (
        "a new environment has no guess of remaining: it reads the site (and the entry), then charges"
    )

    dynamodb_calls.clear()
    assert (consume(token, 10, "r-2").status, dynamodb_calls) == (402, {"TransactWriteItems": 1}), (
        "insufficient credits: the refused charge alone"
    )

    dynamodb_calls.clear()
    consume(token, 995, "r-1")
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}, "a replay the pool can no longer cover"

    dynamodb_calls.clear()
    assert consume(token, 1, "r-3").body["remaining"] == 4
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}, "success: the charge alone, the answer in it"

    dynamodb_calls.clear()
    assert consume(token, 1, "r-3").body == {
        "request_id": "r-3",
        "consumed": 1,
        "remaining": 4,
        "replayed": True,
    }
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}, "a replay the pool could still cover"


def test_consume_requests_in_a_new_environment(single, activate, consume, dynamodb_calls):
    from ai_credits.services import plugin as services

    token = activate(single, "example.com").body["activation_token"]
    consume(token, 995, "r-1")

    services.forget_seen_balances()
    dynamodb_calls.clear()
    assert consume(token, 995, "r-1").body["replayed"] is True
    assert dict(dynamodb_calls) == {"BatchGetItem": 1}, "a replay: the read finds the answer"

    services.forget_seen_balances()
    dynamodb_calls.clear()
    assert consume(token, 10, "r-2").status == 402
    assert dict(dynamodb_calls) == {"BatchGetItem": 1, "TransactWriteItems": 1}, (
        "a refusal is the write's verdict, never the read's"
    )

    dynamodb_calls.clear()
    assert consume(activate(single, "example.com").body["activation_token"] + "x", 1).status == 401
    services.forget_seen_balances()
    dynamodb_calls.clear()
    assert consume(token, 1).status == 401, "the rotated token"
    assert dict(dynamodb_calls) == {"BatchGetItem": 1}


def test_a_stale_guess_costs_one_more_request_then_the_environment_reads_first(
    single, activate, consume, dynamodb_calls, monkeypatch
):
    """Another environment spent from the site since this one last saw it: the refused guess
    brings the current ``remaining``, the second try charges. For a while this environment then
    reads before charging that site (a read is cheaper than a refused write)."""
    import time

    from ai_credits.services import plugin as services

    token = activate(single, "example.com").body["activation_token"]
    consume(token, 10, "r-1")
    memory = services.CONSUME_MEMORY
    here = copy.deepcopy(memory._sites)
    consume(token, 20, "r-2")  # as another environment would
    memory._sites = here

    dynamodb_calls.clear()
    assert consume(token, 30, "r-3").body["remaining"] == 940
    assert dict(dynamodb_calls) == {"TransactWriteItems": 2}

    dynamodb_calls.clear()
    assert consume(token, 40, "r-4").body["remaining"] == 900
    assert dict(dynamodb_calls) == {"BatchGetItem": 1, "TransactWriteItems": 1}

    later = time.monotonic() + memory.READ_FIRST_SECONDS
    monkeypatch.setattr(time, "monotonic", lambda: later)
    dynamodb_calls.clear()
    assert consume(token, 50, "r-5").body["remaining"] == 850
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}


def test_under_contention_the_charge_reads_remaining_after_it(
    single, activate, consume, dynamodb_calls, table
):
    """Guesses going stale twice (other environments spending at once): the charge with
    ``remaining >= amount``, then ``remaining``, then the answer kept for replays."""
    from ai_credits import store
    from ai_credits.credentials import parse_activation_token

    token = activate(single, "example.com").body["activation_token"]
    consume(token, 10, "r-1")
    activation = parse_activation_token(token)
    other = boto3.client("dynamodb")  # not counted
    spent_by_others = []

    def another_environment_spends(model, **_):
        if model.name == "TransactWriteItems" and len(spent_by_others) < 2:
            spent_by_others.append(1)
            other.update_item(
                TableName=table,
                Key=store.site_key(activation.license_id, activation.site),
                UpdateExpression="SET remaining = remaining - :one, used = used + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    store.client().meta.events.register("before-call.dynamodb.TransactWriteItems", another_environment_spends)
    try:
        dynamodb_calls.clear()
        answer = consume(token, 5, "r-2")
    finally:
        store.client().meta.events.unregister(
            "before-call.dynamodb.TransactWriteItems", another_environment_spends
        )

    assert answer.body["remaining"] == 1000 - 10 - 2 - 5
    assert dict(dynamodb_calls) == {"TransactWriteItems": 3, "GetItem": 1, "UpdateItem": 1}
    assert consume(token, 5, "r-2").body == {**answer.body, "replayed": True}

    dynamodb_calls.clear()
    assert consume(token, 1, "r-3").body["remaining"] == 982
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1, "GetItem": 1, "UpdateItem": 1}, (
        "for a while this environment charges the contended site without guessing"
    )


def test_contention_is_remembered_for_a_while(single, activate, consume, dynamodb_calls, monkeypatch):
    import time

    from ai_credits.services import plugin as services

    token = activate(single, "example.com").body["activation_token"]
    monkeypatch.setattr(services, "CAS_ATTEMPTS", 0)  # as if two guesses went stale
    consume(token, 1, "r-1")
    monkeypatch.setattr(services, "CAS_ATTEMPTS", 2)
    later = time.monotonic() + services.CONSUME_MEMORY.CONTENTION_SECONDS
    monkeypatch.setattr(time, "monotonic", lambda: later)

    dynamodb_calls.clear()
    assert consume(token, 1, "r-2").body["remaining"] == 998
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}


# -- the plugin's hint: expected_remaining ---------------------------------------------------


def _answers_of_a_plugin(provision, activate, consume, license_id: str, hint) -> list[tuple[int, object]]:
    """(status, body) of a plugin's consumes on a fresh license, each sending ``hint``
    (``"previous"``: the ``remaining`` of its previous answer)."""
    from ai_credits.services import plugin as services

    provision(license_id, license_key=f"key-{license_id}")
    token = activate(f"key-{license_id}", "example.com").body["activation_token"]
    previous = 1000

    def send(amount, request_id, token=token):
        nonlocal previous
        fields = {} if hint is None else {"expected_remaining": previous if hint == "previous" else hint}
        answer = consume(token, amount, request_id, **fields)
        if answer.status == 200:
            previous = answer.body["remaining"]
        return answer.status, answer.body

    answers = [send(5, "r-1"), send(3, "r-2"), send(5, "r-1"), send(6, "r-1"), send(5000, "r-3")]
    services.forget_seen_balances()  # a new environment
    answers += [send(3, "r-2"), send(2, "r-4"), send(1, "r-5", token + "x")]
    return answers


@pytest.mark.parametrize("hint", ["previous", 0, 3, 994, 10**15])
def test_a_wrong_or_missing_hint_changes_no_answer(provision, activate, consume, hint):
    without = _answers_of_a_plugin(provision, activate, consume, "lic-no-hint", None)
    with_hint = _answers_of_a_plugin(provision, activate, consume, "lic-hint", hint)

    assert with_hint == without
    assert [status for status, _ in without] == [200, 200, 200, 409, 402, 200, 200, 401]


def test_the_hint_is_not_part_of_the_request(single, activate, consume, balance):
    token = activate(single, "example.com").body["activation_token"]
    first = consume(token, 5, "r-1", feature="rewrite", expected_remaining=1000)

    for hint in (995, 7, None):
        fields = {} if hint is None else {"expected_remaining": hint}
        again = consume(token, 5, "r-1", feature="rewrite", **fields)
        assert again.body == {**first.body, "replayed": True}, "a retry with another hint is the same request"
    conflict = consume(token, 6, "r-1", feature="rewrite", expected_remaining=995)
    assert (conflict.status, conflict.code) == (409, "idempotency_conflict")
    assert balance(token).body["site"]["used"] == 5


def test_a_current_hint_charges_in_one_request_where_the_environment_is_stale(
    single, activate, consume, dynamodb_calls
):
    """Another environment spent since this one last saw the site: with the plugin's hint the
    charge is one request, not the refused guess and its retry (nor, later, a read first)."""
    from ai_credits.services import plugin as services

    token = activate(single, "example.com").body["activation_token"]
    consume(token, 10, "r-1")
    memory = services.CONSUME_MEMORY
    here = copy.deepcopy(memory._sites)
    previous = consume(token, 20, "r-2").body["remaining"]  # as another environment would
    memory._sites = here

    dynamodb_calls.clear()
    assert consume(token, 30, "r-3", expected_remaining=previous).body["remaining"] == 940
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}

    memory.stale(("lic-single", "example.com"))  # this environment would read first
    dynamodb_calls.clear()
    assert consume(token, 40, "r-4", expected_remaining=940).body["remaining"] == 900
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}


def test_a_wrong_hint_costs_its_refused_write_and_leaves_the_memory_as_it_was(
    single, activate, consume, dynamodb_calls
):
    token = activate(single, "example.com").body["activation_token"]
    consume(token, 10, "r-1")

    dynamodb_calls.clear()
    assert consume(token, 5, "r-2", expected_remaining=7).body["remaining"] == 985
    assert dict(dynamodb_calls) == {"TransactWriteItems": 2}

    dynamodb_calls.clear()
    assert consume(token, 5, "r-3").body["remaining"] == 980
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}, "the environment still guesses"


def test_a_hint_in_a_new_environment_needs_the_term_of_the_license(
    multi, activate, consume, portal, dynamodb_calls
):
    """The charge also names the site's term (the ledger entry records it). An environment that
    saw another site of the license knows it: the hint alone charges. One that never saw the
    license reads first, hint or not."""
    from ai_credits.services import plugin as services

    first = activate(multi, "a.com").body["activation_token"]
    second = activate(multi, "b.com").body["activation_token"]
    portal("put_allocations", "acct-1", "lic-multi", {"allocations": {"a.com": 600, "b.com": 300}})
    services.forget_seen_balances()
    consume(first, 1, "r-1")

    dynamodb_calls.clear()
    assert consume(second, 5, "r-2", expected_remaining=300).body["remaining"] == 295
    assert dict(dynamodb_calls) == {"TransactWriteItems": 1}

    services.forget_seen_balances()
    dynamodb_calls.clear()
    assert consume(second, 5, "r-3", expected_remaining=295).body["remaining"] == 290
    assert dict(dynamodb_calls) == {"BatchGetItem": 1, "TransactWriteItems": 1}


def test_a_replay_after_later_charges_repeats_the_first_answer(single, activate, consume):
    token = activate(single, "example.com").body["activation_token"]
    first = consume(token, 10, "r-1")
    consume(token, 20, "r-2")

    again = consume(token, 10, "r-1")

    assert again.body == {**first.body, "replayed": True}
    assert again.body["remaining"] == 990


def test_activation_requests(single, activate, dynamodb_calls):
    dynamodb_calls.clear()
    activate(single, "example.com")
    assert dict(dynamodb_calls) == {"Query": 1, "TransactWriteItems": 1}

    # Again: assumed new, the site would be beyond the limit, so it is read: it is active.
    dynamodb_calls.clear()
    activate(single, "example.com")
    assert dict(dynamodb_calls) == {"Query": 1, "GetItem": 1, "UpdateItem": 1}


def test_on_a_network_two_subsites_use_the_same_request_id_independently(
    provision, activate, consume, balance
):
    provision("lic-ids", license_key="key-ids-secret", credits_per_term=100)
    token = activate("key-ids-secret", "ids.network.org", network=True).body["activation_token"]

    blog = consume(token, 10, "import-1", subsite_url="blog.ids.network.org")
    shop = consume(token, 20, "import-1", subsite_url="shop.ids.network.org")
    blog_again = consume(token, 10, "import-1", subsite_url="https://www.blog.ids.network.org/")
    other_body = consume(token, 11, "import-1", subsite_url="blog.ids.network.org")
    network = consume(token, 30, "import-1")  # the network itself is a scope of its own

    assert [answer.status for answer in (blog, shop, network)] == [200, 200, 200]
    assert [answer.body["replayed"] for answer in (blog, shop, blog_again)] == [False, False, True]
    assert blog_again.body["remaining"] == blog.body["remaining"] == 90
    assert (other_body.status, other_body.code) == (409, "idempotency_conflict")
    assert balance(token).body["site"]["used"] == 60
