"""Billing's admin route answers a session of the billing role only (``BILLING_ROLE_ARN``), whatever
else IAM lets through: another role, an IAM user, another account -> 403 ``forbidden``, nothing
written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ai_credits import config
from tests.handlers.conftest import LICENSE_TEMPLATE, Answer, invoke, make_event

BILLING_ROLE_ARN = "arn:aws:iam::123456789012:role/ai-credits-billing"  # tests/conftest.py's
BILLING_SESSION = "arn:aws:sts::123456789012:assumed-role/ai-credits-billing/billing-export"


def put_license(license_id: str, caller_arn: str | None, *, authorizer: bool = True) -> Answer:
    body = {**LICENSE_TEMPLATE, "license_key": f"key-{license_id}-secret"}
    event = make_event("provision", body=body, path_license_id=license_id)
    if not authorizer:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["iam"]["userArn"] = caller_arn
    return invoke("provision", event)


def items(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def assert_forbidden(answer: Answer) -> None:
    assert (answer.status, answer.code) == (403, "forbidden"), answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert {"type", "title", "status", "detail", "code"} <= set(answer.body)


@pytest.fixture
def no_billing_role(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``BILLING_ROLE_ARN`` unset, as a deployment that forgot it (settings are read once: reread)."""
    monkeypatch.delenv("BILLING_ROLE_ARN")
    config.settings.cache_clear()
    yield
    monkeypatch.undo()
    config.settings.cache_clear()


def test_the_sample_event_is_a_session_of_the_billing_role() -> None:
    event = make_event("provision")
    assert event["requestContext"]["authorizer"]["iam"]["userArn"] == BILLING_SESSION
    assert config.settings().billing_role_arn == BILLING_ROLE_ARN


def test_given_a_session_of_the_billing_role_when_it_provisions_then_201(table: str) -> None:
    answer = put_license("lic-billing", BILLING_SESSION)

    assert answer.status == 201, answer.body
    assert items(table)


@pytest.mark.parametrize(
    "caller_arn",
    [
        "arn:aws:sts::123456789012:assumed-role/ai-credits-support/alice",  # another role
        "arn:aws:sts::444455556666:assumed-role/ai-credits-billing/billing-export",  # another account
        "arn:aws:iam::123456789012:user/billing",  # an IAM user
        "arn:aws:iam::123456789012:root",
        "",
        None,
    ],
)
def test_given_another_principal_when_it_provisions_then_403_and_nothing_is_written(
    table: str, dynamodb_calls: Counter[str], caller_arn: str | None
) -> None:
    answer = put_license("lic-refused", caller_arn)

    assert_forbidden(answer)
    assert dynamodb_calls == Counter()  # refused before the database is asked anything
    assert items(table) == []
    # and the billing role still creates it afterwards: the refusal left nothing behind
    assert put_license("lic-refused", BILLING_SESSION).status == 201


def test_given_no_iam_authorizer_context_when_provisioning_then_403(table: str) -> None:
    assert_forbidden(put_license("lic-no-context", None, authorizer=False))
    assert items(table) == []


@pytest.mark.usefixtures("no_billing_role")
def test_given_no_billing_role_configured_then_every_admin_request_is_refused(table: str) -> None:
    assert_forbidden(put_license("lic-unconfigured", BILLING_SESSION))
    assert items(table) == []
