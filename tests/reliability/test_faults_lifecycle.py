"""503 means "repeat with the same id", for the credit lifecycle's writes (grants, refunds, holds,
captures, releases): DynamoDB applies the write and every answer of it is lost (the function
answers 503, it cannot know); the repeat with the same id answers the true outcome, and the
write counted once. On DynamoDB Local, with the injector of test_faults.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ai_credits.services import operator
from tests.handlers.conftest import Answer, hold_event, invoke, make_event
from tests.reliability.test_faults import CLOSED, LOST, Faults, Plugin, _activated_site, _unavailable_problems
from tests.reliability.test_faults import faults as faults  # the fixture

ALL_LOST = 10  # more than botocore's attempts


def _grant(plugin: Plugin) -> Answer:
    body = {"grant_id": "g-1", "credits": 500}
    return invoke("grant", make_event("grant", body=body, path_license_id=plugin.license_id))


def _refund(plugin: Plugin) -> Answer:
    body = {"site_url": plugin.site, "request_id": "spent", "amount": 30}
    return invoke("refund", make_event("refund", body=body, path_license_id=plugin.license_id))


def _place(plugin: Plugin) -> Answer:
    body = {"hold_id": "call-1", "amount": 200}
    return invoke("hold_create", make_event("hold_create", body=body, token=plugin.token))


def _capture(plugin: Plugin) -> Answer:
    return invoke("hold_capture", hold_event("hold_capture", plugin.token, "held", {"amount": 70}))


def _release(plugin: Plugin) -> Answer:
    return invoke("hold_release", hold_event("hold_release", plugin.token, "held"))


def _prepare(plugin: Plugin) -> None:
    """A consume to refund and an open hold to capture or release (no faults)."""
    consume = {"amount": 50, "request_id": "spent"}
    assert invoke("consume", make_event("consume", body=consume, token=plugin.token)).status == 200
    assert invoke("hold_create", make_event("hold_create", body={"hold_id": "held", "amount": 100},
                                            token=plugin.token)).status == 201  # fmt: skip


def _balance(plugin: Plugin) -> dict[str, int]:
    site = invoke("get_balance", make_event("get_balance", token=plugin.token, headers={"if-none-match": ""}))
    return {name: site.body["site"][name] for name in ("allocated", "used", "held", "remaining")}


# The write, and what the site shows once it applied exactly once (1,000 credits; 50 used and
# 100 held by _prepare).
CASES: dict[str, tuple[Callable[[Plugin], Answer], dict[str, int], int]] = {
    "grant": (_grant, {"allocated": 1500, "used": 50, "held": 100, "remaining": 1350}, 200),
    "refund": (_refund, {"allocated": 1000, "used": 20, "held": 100, "remaining": 880}, 200),
    "hold": (_place, {"allocated": 1000, "used": 50, "held": 300, "remaining": 650}, 200),
    "capture": (_capture, {"allocated": 1000, "used": 120, "held": 0, "remaining": 880}, 200),
    "release": (_release, {"allocated": 1000, "used": 50, "held": 0, "remaining": 950}, 200),
}


@pytest.mark.parametrize("kind", [LOST, CLOSED])
@pytest.mark.parametrize("write", list(CASES))
def test_a_write_whose_every_answer_was_lost_answers_503_and_its_repeat_tells_the_outcome(
    faults: Faults, write: str, kind: str
) -> None:
    call, after, repeat_status = CASES[write]
    plugin = _activated_site(faults, credits=1000)
    _prepare(plugin)
    faults.script(TransactWriteItems=[kind] * ALL_LOST)

    answer = call(plugin)

    assert answer.status == 503, answer.body
    assert _unavailable_problems(answer) == []
    faults.off()
    assert _balance(plugin) == after, "applied: the 503 was ambiguous"

    repeated = call(plugin)

    assert repeated.status == repeat_status, repeated.body
    if "replayed" in repeated.body:
        assert repeated.body["replayed"] is True
    assert _balance(plugin) == after, "applied once"
    assert operator.audit([plugin.license_id]) == {}
