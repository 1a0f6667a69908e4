"""Every route of the plugin's path and every error code, over HTTP through the local gateway
(payload 2.0, as API Gateway hands it over) on DynamoDB Local.

The cases marked ``e2e`` touch nothing but HTTP: ``make e2e`` runs them against a deployed stack
too (tests/e2e/plugin.py picks the target; ids start with ``e2e-`` there)."""

from __future__ import annotations

import pytest

from tests.integration.client import Api, unique


@pytest.fixture
def api(target_api: Api) -> Api:
    """The local gateway, or the deployed stack for an ``e2e`` case under ``make e2e``."""
    return target_api


@pytest.fixture
def license_key(api: Api) -> str:
    license_id = api.unique("lic")
    key = f"key-{license_id}"
    assert api.provision(license_id, license_key=key).status == 201
    return key


@pytest.fixture
def token(api: Api, license_key: str) -> str:
    answer = api.activate(license_key, f"https://www.{unique('site')}.com/")
    assert answer.status == 201
    return answer.body["activation_token"]


def _is_problem(answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert {"type", "title", "status", "detail", "code"} <= set(answer.body)
    assert answer.body["status"] == status


@pytest.mark.e2e
def test_the_walk_through(api: Api):
    license_id = api.unique("lic")
    key = api.unique("AGG")  # a fixed key would be another license's on a shared stack
    created = api.provision(license_id, license_key=key, credits_per_term=500)
    assert created.status == 201

    activation = api.activate(key, "https://WWW.Example-Walk.com/blog/")
    assert activation.status == 201
    assert activation.body["site"] == "example-walk.com/blog"
    token = activation.body["activation_token"]

    balance = api.balance(token)
    assert balance.status == 200
    assert balance.body["site"]["remaining"] == 500

    spent = api.consume(token, 20, "walk-1", feature="rewrite")
    assert spent.body == {"request_id": "walk-1", "consumed": 20, "remaining": 480, "replayed": False}
    assert api.balance(token).body["site"]["used"] == 20

    assert api.deactivate(token).status == 204
    _is_problem(api.balance(token), 401, "unauthorized")


@pytest.mark.e2e
def test_provision_update_is_200(api: Api):
    license_id = api.unique("lic")
    assert api.provision(license_id).status == 201
    assert api.provision(license_id).status == 200


def test_admin_routes_need_the_admin_token(api: Api):
    # Local only: on a deployed stack IAM refuses an unsigned call before the function (403).
    answer = api.call(
        "PUT", f"/v1/admin/licenses/{unique('lic')}", {}, headers={"authorization": "Bearer nope"}
    )
    _is_problem(answer, 401, "unauthorized")
    _is_problem(api.call("PUT", f"/v1/admin/licenses/{unique('lic')}", {}), 401, "unauthorized")


@pytest.mark.e2e
def test_malformed_json_is_400(api: Api, token: str):
    _is_problem(api.call("POST", "/v1/consume", raw="{nope", token=token), 400, "malformed_json")
    _is_problem(api.call("POST", "/v1/activations", raw="[1,"), 400, "malformed_json")


@pytest.mark.e2e
def test_unauthorized_is_401(api: Api):
    _is_problem(api.call("GET", "/v1/balance"), 401, "unauthorized")
    _is_problem(api.call("POST", "/v1/consume", {"amount": 1, "request_id": "r"}), 401, "unauthorized")
    _is_problem(api.call("DELETE", "/v1/activations/current", token="act1.x.y"), 401, "unauthorized")


@pytest.mark.e2e
def test_insufficient_credits_is_402_with_remaining(api: Api, token: str):
    answer = api.consume(token, 1001)
    _is_problem(answer, 402, "insufficient_credits")
    assert answer.body["remaining"] == 1000


@pytest.mark.e2e
def test_license_expired_is_403_for_consume_and_activate_but_balance_reads(api: Api):
    license_id = api.unique("lic")
    key = f"key-{license_id}"
    api.provision(license_id, license_key=key)
    token = api.activate(key, f"{unique('site')}.com").body["activation_token"]
    api.provision(license_id, license_key=key, expires_at="2020-01-01T00:00:00Z")

    _is_problem(api.consume(token, 1), 403, "license_expired")
    _is_problem(api.activate(key, f"{unique('site')}.com"), 403, "license_expired")
    assert api.balance(token).body["license"]["status"] == "expired"


@pytest.mark.e2e
def test_an_unknown_license_key_is_404(api: Api):
    _is_problem(api.activate(api.unique("unknown-key"), "example.com"), 404, "not_found")


def test_an_unknown_route_is_404(api: Api):
    # Local only: a deployed HTTP API answers an unknown route itself ({"message": "Not Found"}).
    _is_problem(api.call("GET", "/v1/nothing-here"), 404, "not_found")


@pytest.mark.e2e
def test_activation_limit_reached_is_409(api: Api, license_key: str, token: str):
    _is_problem(api.activate(license_key, f"{unique('other')}.com"), 409, "activation_limit_reached")


@pytest.mark.e2e
def test_idempotency(api: Api, token: str):
    first = api.consume(token, 7, "same-id")
    replay = api.consume(token, 7, "same-id")
    assert replay.body == {**first.body, "replayed": True}
    _is_problem(api.consume(token, 8, "same-id"), 409, "idempotency_conflict")
    assert api.balance(token).body["site"]["used"] == 7


@pytest.mark.e2e
def test_validation_error_is_422_with_errors(api: Api, token: str):
    for amount in (5.0, "5", True, 0, 1_000_001):
        answer = api.consume(token, amount)
        _is_problem(answer, 422, "validation_error")
        assert answer.body["errors"]
    _is_problem(api.consume(token, 1, "r" * 129), 422, "validation_error")
    _is_problem(api.activate("k", "ftp://example.com"), 422, "validation_error")
    assert api.balance(token).body["site"]["used"] == 0


@pytest.mark.e2e
def test_balance_etag_and_304(api: Api, token: str):
    first = api.balance(token)
    etag = first.headers["etag"]
    assert api.balance(token, **{"if-none-match": etag}).status == 304
    api.consume(token, 1)
    assert api.balance(token, **{"if-none-match": etag}).status == 200


@pytest.mark.e2e
def test_network_sub_sites_spend_from_the_network(api: Api):
    license_id = api.unique("lic")
    key = f"key-{license_id}"
    api.provision(license_id, license_key=key, credits_per_term=100)
    token = api.activate(key, f"{unique('net')}.org", network=True).body["activation_token"]

    assert api.consume(token, 60, subsite_url="blog.example.org").body["remaining"] == 40
    _is_problem(api.consume(token, 41, subsite_url="shop.example.org"), 402, "insufficient_credits")
    assert api.consume(token, 40, subsite_url="shop.example.org").body["remaining"] == 0


def test_the_gateway_serves_swagger_ui_and_the_committed_openapi_document(api: Api):
    import json

    from local.openapi import OPENAPI_PATH

    page = api.call("GET", "/docs")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/docs/swagger-ui-bundle.min.js" in page.body and '"/v1/consume"' in page.body
    assert api.call("GET", "/docs/swagger-ui-bundle.min.js").status == 200
    document = api.call("GET", "/openapi.json")
    assert document.body == json.loads(OPENAPI_PATH.read_text())
