"""DynamoDB requests per operation, counted on DynamoDB Local (the handlers run in this process).

Counts are deterministic, unlike timings. The transaction API returns no values on success, so
a consume charges as a compare-and-set on the ``remaining`` its environment last saw: one write
when that guess is current; a new environment reads first (two requests). Every refusal is one
write: the cancellation reasons carry the items as they were.
"""

from __future__ import annotations

import uuid

from tests.handlers.conftest import LICENSE_TEMPLATE, invoke, make_event


def _provisioned_token(**fields) -> str:
    license_id = f"count-{uuid.uuid4().hex[:10]}"
    key = f"key-{license_id}"
    body = {**LICENSE_TEMPLATE, "license_key": key, **fields}
    assert invoke("provision", make_event("provision", body=body, path_license_id=license_id)).status == 201
    activation = {"license_key": key, "site_url": f"{license_id}.com", "environment": "production"}
    answer = invoke("activate", make_event("activate", body=activation))
    assert answer.status == 201
    return answer.body["activation_token"]


def _consume(token: str, amount: int, request_id: str):
    return invoke(
        "consume", make_event("consume", body={"amount": amount, "request_id": request_id}, token=token)
    )


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
