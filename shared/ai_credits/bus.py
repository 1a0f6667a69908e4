"""The EventBridge bus the stream processor publishes to (API.md, "Events"): ``source`` is
``ai-credits``. The endpoint comes from the environment, never from code: boto3 reads
``AWS_ENDPOINT_URL_EVENTBRIDGE`` by itself (EventBridge's service id), and the contract's
``AWS_ENDPOINT_URL_EVENTS`` (the API's endpoint prefix) is honoured too; locally ``make run``
answers ``PutEvents`` itself."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

from ai_credits.clock import parse_timestamp
from ai_credits.config import settings
from ai_credits.errors import Unavailable

SOURCE = "ai-credits"
ENDPOINT_ENV = "AWS_ENDPOINT_URL_EVENTS"
PUT_EVENTS_ENTRIES = 10  # EventBridge's limit per PutEvents
_ATTEMPTS = 4


@cache
def client() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard"})
    return boto3.client("events", endpoint_url=os.environ.get(ENDPOINT_ENV) or None, config=config)


def entry(detail_type: str, detail: dict[str, Any], at: str) -> dict[str, Any]:
    return {
        "Source": SOURCE,
        "DetailType": detail_type,
        "Detail": json.dumps(detail, sort_keys=True),
        "Time": parse_timestamp(at),
        "EventBusName": settings().event_bus_name,
    }


def put(entries: Sequence[dict[str, Any]]) -> None:
    """Put every entry on the bus, ten per request; entries EventBridge reports as failed are
    put again (backing off), and ``Unavailable`` is raised if some never go through."""
    for start in range(0, len(entries), PUT_EVENTS_ENTRIES):
        pending = list(entries[start : start + PUT_EVENTS_ENTRIES])
        for attempt in range(_ATTEMPTS):
            response = client().put_events(Entries=pending)
            if not response.get("FailedEntryCount"):
                break
            pending = [
                sent
                for sent, result in zip(pending, response["Entries"], strict=True)
                if result.get("ErrorCode")
            ]
            time.sleep(0.1 * 2**attempt)
        else:
            raise Unavailable("EventBridge did not take the events; retry shortly", retry_after=1)
