"""The local server is the functions' EventBridge (local/eventbridge.py): it answers PutEvents as
boto3 sends it, keeps the events, lists them at GET /local/events (oldest first, by detail type),
and, like its other local-only routes, only for a loopback Host. A real boto3 client, no AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from local.apigw import GatewaySettings
from local.eventbridge import EVENTS_ENDPOINT_ENV
from local.gateway import EVENTS_PATH, GatewayServer, build_gateway
from tests.serving import served


@pytest.fixture(scope="module")
def server() -> Iterator[GatewayServer]:
    no_function = {"Resources": {"Table": {"Type": "AWS::DynamoDB::Table"}}}
    with served(
        lambda: build_gateway(no_function, "127.0.0.1", 0, GatewaySettings(), concurrency=1)
    ) as server:
        yield server


@pytest.fixture
def events(server: GatewayServer) -> Any:
    return boto3.client("events", endpoint_url=server.base_url)


def listed(server: GatewayServer, query: str = "", host: str | None = None) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        headers = {"Host": host} if host else {}
        return session.get(f"{server.base_url}{EVENTS_PATH}{query}", headers=headers, timeout=30)


def entry(detail_type: str, detail: Any, **more: Any) -> dict[str, Any]:
    return {"Source": "ai-credits", "DetailType": detail_type, "Detail": json.dumps(detail), **more}


def test_put_events_answers_like_eventbridge_and_the_events_are_listed_oldest_first(
    server: GatewayServer, events: Any
) -> None:
    at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    answer = events.put_events(
        Entries=[
            entry(
                "Credits Low",
                {"license_id": "lic-1", "remaining": 10},
                Time=at,
                EventBusName="ai-credits-local",
            ),
            entry("Credits Exhausted", {"license_id": "lic-1"}),
            {"Source": "ai-credits", "DetailType": "Credits Low", "Detail": "[1, 2]"},
            {"Source": "ai-credits", "DetailType": "Credits Low", "Detail": "{not json"},
        ]
    )

    assert answer["FailedEntryCount"] == 2
    low, exhausted, not_an_object, malformed = answer["Entries"]
    assert set(low) == set(exhausted) == {"EventId"} and low["EventId"] != exhausted["EventId"]
    assert (
        not_an_object == malformed == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    )
    kept = listed(server).json()["events"]
    assert kept[-2:] == [
        {
            "id": low["EventId"],
            "source": "ai-credits",
            "detail_type": "Credits Low",
            "detail": {"license_id": "lic-1", "remaining": 10},
            "time": "2026-11-25T09:00:00Z",
        },
        {
            "id": exhausted["EventId"],
            "source": "ai-credits",
            "detail_type": "Credits Exhausted",
            "detail": {"license_id": "lic-1"},
            "time": kept[-1]["time"],  # when it was received
        },
    ]
    assert datetime.strptime(kept[-1]["time"], "%Y-%m-%dT%H:%M:%SZ").year >= 2026
    only_exhausted = listed(server, "?detail_type=Credits%20Exhausted").json()["events"]
    assert {event["detail_type"] for event in only_exhausted} == {"Credits Exhausted"}
    assert exhausted["EventId"] in [event["id"] for event in only_exhausted]


def test_an_entry_without_a_source_fails_alone(events: Any) -> None:
    answer = events.put_events(
        Entries=[{"DetailType": "Credits Low", "Detail": "{}"}, entry("Credits Low", {"n": 1})]
    )

    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][0]["ErrorCode"] == "InvalidArgument"
    assert "Source" in answer["Entries"][0]["ErrorMessage"]
    assert "EventId" in answer["Entries"][1]


def test_requests_eventbridge_refuses_as_a_whole_are_errors(events: Any) -> None:
    with pytest.raises(ClientError) as too_large:
        events.put_events(Entries=[entry("Credits Low", {"text": "x" * 300_000})])
    with pytest.raises(ClientError) as unknown:
        events.list_rules()

    assert too_large.value.response["Error"]["Code"] == "ValidationException"
    assert unknown.value.response["Error"]["Code"] == "UnknownOperationException"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:3000"])
def test_a_rebound_host_can_neither_put_nor_list_events(server: GatewayServer, host: str) -> None:
    body = json.dumps({"Entries": [entry("Rebound", {"evil": True})]})
    headers = {
        "Host": host,
        "X-Amz-Target": "AWSEvents.PutEvents",
        "Content-Type": "application/x-amz-json-1.1",
    }
    with requests.Session() as session:
        session.trust_env = False
        put = session.post(server.base_url + "/", data=body, headers=headers, timeout=30)
    listing = listed(server, host=host)

    for answer in (put, listing):
        assert answer.status_code == 403
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "forbidden"
    assert "Rebound" not in [event["detail_type"] for event in listed(server).json()["events"]]


def test_boto3_sends_here_when_the_functions_variable_names_this_server(
    server: GatewayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the gateway gives its execution environments (unless the environment names another).
    monkeypatch.setenv(EVENTS_ENDPOINT_ENV, server.base_url)

    answer = boto3.client("events").put_events(Entries=[entry("Variable", {"n": 1})])

    (kept,) = [event for event in listed(server).json()["events"] if event["detail_type"] == "Variable"]
    assert kept["id"] == answer["Entries"][0]["EventId"]
