"""Fixtures of the tests on DynamoDB Local."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def dynamodb_local_calls(ddb_local_env: str) -> Iterator[Counter[str]]:
    """DynamoDB requests this process makes, by operation (a botocore hook: counts, not timings).

    The gateway runs handlers in worker processes; to count, call the handlers in this process.
    """
    from ai_credits import store

    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    events = store.client().meta.events
    events.register("before-call.dynamodb", count)
    yield calls
    events.unregister("before-call.dynamodb", count)
