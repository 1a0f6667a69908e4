"""DynamoDB requests per operation, counted on DynamoDB Local (the handlers run in this process).

Counts are deterministic, unlike timings. The transaction API returns no values on success, so
a consume charges as a compare-and-set on the ``remaining`` its environment last saw: one write
when that guess is current; a new environment reads first (two requests). Every refusal is one
write: the cancellation reasons carry the items as they were.
"""

from __future__ import annotations

import uuid
from typing import Any

from ai_credits.credentials import parse_activation_token
from tests.handlers.conftest import LICENSE_TEMPLATE, hold_event, invoke, make_event


def _provisioned_token(**fields) -> str:
    license_id = f"count-{uuid.uuid4().hex[:10]}"
    key = f"key-{license_id}"
    body = {**LICENSE_TEMPLATE, "license_key": key, **fields}
    assert invoke("provision", make_event("provision", body=body, path_license_id=license_id)).status == 201
    activation = {"license_key": key, "site_url": f"{license_id}.com", "environment": "production"}
    answer = invoke("activate", make_event("activate", body=activation))
    assert answer.status == 201
    return answer.body["activation_token"]


def _consume(token: str, amount: int, request_id: str, **fields: Any):
    body = {"amount": amount, "request_id": request_id, **fields}
    return invoke("consume", make_event("consume", body=body, token=token))


def test_consume_requests_on_dynamodb_local(dynamodb_local_calls):
    from ai_credits.services import plugin as services

    token = _provisioned_token()
    dynamodb_local_calls.clear()
    assert _consume(token, 995, "count-1").body["remaining"] == 5
    assert dict(dynamodb_local_calls) == {"BatchGetItem": 1, "TransactWriteItems": 1}

    dynamodb_local_calls.clear()
    assert _consume(token, 10, "count-2").status == 402
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    dynamodb_local_calls.clear()
    assert _consume(token, 995, "count-1").body["replayed"] is True
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    dynamodb_local_calls.clear()
    assert _consume(token, 5, "count-3").body["remaining"] == 0
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    services.forget_seen_balances()
    dynamodb_local_calls.clear()
    assert _consume(token, 5, "count-3").body == {
        "request_id": "count-3",
        "consumed": 5,
        "remaining": 0,
        "replayed": True,
    }
    assert dict(dynamodb_local_calls) == {"BatchGetItem": 1}


def test_balance_is_one_request_on_dynamodb_local(dynamodb_local_calls):
    token = _provisioned_token()
    dynamodb_local_calls.clear()
    answer = invoke("get_balance", make_event("get_balance", token=token, headers={"if-none-match": ""}))
    assert answer.status == 200
    assert dict(dynamodb_local_calls) == {"BatchGetItem": 1}


def test_activation_is_two_requests_on_dynamodb_local(dynamodb_local_calls):
    license_id = f"count-{uuid.uuid4().hex[:10]}"
    body = {**LICENSE_TEMPLATE, "license_key": f"key-{license_id}"}
    invoke("provision", make_event("provision", body=body, path_license_id=license_id))
    activation = {"license_key": f"key-{license_id}", "site_url": "count.com", "environment": "production"}

    dynamodb_local_calls.clear()
    assert invoke("activate", make_event("activate", body=activation)).status == 201
    assert dict(dynamodb_local_calls) == {"Query": 1, "TransactWriteItems": 1}


def test_a_current_hint_charges_in_one_request_on_dynamodb_local(dynamodb_local_calls):
    """The plugin sends the ``remaining`` of its previous answer: an environment that has not
    seen the site (but knows its license's term) or whose memory is stale charges at once."""
    from ai_credits.services import plugin as services

    token = _provisioned_token()
    assert _consume(token, 10, "hint-1").body["remaining"] == 990
    site = parse_activation_token(token)
    memory = services.CONSUME_MEMORY
    memory._sites.pop((site.license_id, site.site))  # the site is new here; its license is not

    dynamodb_local_calls.clear()
    answer = _consume(token, 5, "hint-2", expected_remaining=990)
    assert answer.body == {"request_id": "hint-2", "consumed": 5, "remaining": 985, "replayed": False}
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    memory.saw((site.license_id, site.site), 990)  # stale: another environment charged since
    dynamodb_local_calls.clear()
    assert _consume(token, 5, "hint-3", expected_remaining=985).body["remaining"] == 980
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    dynamodb_local_calls.clear()
    assert _consume(token, 5, "hint-2", expected_remaining=980).body["replayed"] is True
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}


def _hold(name: str, token: str, hold_id: str, body: Any = ...):
    return invoke(name, hold_event(name, token, hold_id, body))


def test_holds_captures_and_releases_are_one_request_when_the_environment_knows_the_site(
    dynamodb_local_calls,
):
    from ai_credits.services import plugin as services

    token = _provisioned_token()
    services.forget_seen_balances()  # a new execution environment: it reads first
    dynamodb_local_calls.clear()
    placed = invoke(
        "hold_create", make_event("hold_create", body={"hold_id": "hold-1", "amount": 20}, token=token)
    )
    assert (placed.status, placed.body["remaining"]) == (201, 980)
    assert dict(dynamodb_local_calls) == {"BatchGetItem": 1, "TransactWriteItems": 1}

    # It knows the site (and the hold it placed) now: each is its one conditional write
    dynamodb_local_calls.clear()
    placed = invoke(
        "hold_create", make_event("hold_create", body={"hold_id": "hold-2", "amount": 30}, token=token)
    )
    assert (placed.status, placed.body["remaining"]) == (201, 950)
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    dynamodb_local_calls.clear()
    captured = _hold("hold_capture", token, "hold-1", {"amount": 12})
    assert (captured.status, captured.body["remaining"]) == (200, 958)
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    dynamodb_local_calls.clear()
    released = _hold("hold_release", token, "hold-2")
    assert (released.status, released.body["remaining"]) == (200, 988)
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 1}

    # Another environment spent meanwhile: the guess is refused, read, written (3), answers exact
    assert _consume(token, 8, "elsewhere").status == 200
    services.CONSUME_MEMORY.saw(
        (parse_activation_token(token).license_id, parse_activation_token(token).site), 988
    )
    dynamodb_local_calls.clear()
    placed = invoke(
        "hold_create", make_event("hold_create", body={"hold_id": "hold-3", "amount": 10}, token=token)
    )
    assert (placed.status, placed.body["remaining"]) == (201, 970)
    assert dict(dynamodb_local_calls) == {"TransactWriteItems": 2, "BatchGetItem": 1}


def test_grants_and_refunds_are_two_requests_on_dynamodb_local(dynamodb_local_calls):
    token = _provisioned_token()
    site = parse_activation_token(token)
    assert _consume(token, 5, "refunded").status == 200

    dynamodb_local_calls.clear()
    grant = {"grant_id": "grant-1", "credits": 100}
    assert invoke("grant", make_event("grant", body=grant, path_license_id=site.license_id)).status == 201
    assert dict(dynamodb_local_calls) == {"Query": 1, "TransactWriteItems": 1}

    dynamodb_local_calls.clear()
    refund = {"site_url": site.site, "request_id": "refunded"}
    assert invoke("refund", make_event("refund", body=refund, path_license_id=site.license_id)).status == 201
    assert dict(dynamodb_local_calls) == {"BatchGetItem": 1, "TransactWriteItems": 1}


def test_usage_and_a_ledger_page_are_the_authorizing_read_and_one_query_on_dynamodb_local(
    dynamodb_local_calls,
):
    token = _provisioned_token()
    site = parse_activation_token(token)
    assert _consume(token, 5, "used").status == 200

    dynamodb_local_calls.clear()
    assert invoke("get_usage", make_event("get_usage", token=token)).status == 200
    assert dict(dynamodb_local_calls) == {"BatchGetItem": 1, "Query": 1}

    for name in ("license_usage", "license_ledger"):
        event = make_event(name, path_license_id=site.license_id)
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = LICENSE_TEMPLATE["account_id"]
        event["rawQueryString"], event["queryStringParameters"] = "", {}
        dynamodb_local_calls.clear()
        assert invoke(name, event).status == 200, name
        assert dict(dynamodb_local_calls) == {"GetItem": 1, "Query": 1}, name
