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


class StreamTap:
    """The table's stream on DynamoDB Local from the moment the tap is made (later shards from
    their start), handed to the stream processor in this process (so tests can patch what it
    calls). ``fetch`` returns what was written since the last fetch, in the Lambda event's shape."""

    def __init__(self, table: str) -> None:
        import os

        import boto3

        self.arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.client = boto3.client("dynamodbstreams", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
        self.iterators: dict[str, str | None] = {
            shard_id: self._iterator(shard_id, "LATEST") for shard_id in self._shards()
        }

    def _shards(self) -> list[str]:
        description = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]
        return [shard["ShardId"] for shard in description["Shards"]]

    def _iterator(self, shard_id: str, kind: str) -> str:
        return self.client.get_shard_iterator(StreamArn=self.arn, ShardId=shard_id, ShardIteratorType=kind)[
            "ShardIterator"
        ]

    def fetch(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for shard_id in self._shards():
            if shard_id not in self.iterators:
                self.iterators[shard_id] = self._iterator(shard_id, "TRIM_HORIZON")
            while self.iterators[shard_id]:
                answer = self.client.get_records(ShardIterator=self.iterators[shard_id], Limit=1000)
                self.iterators[shard_id] = answer.get("NextShardIterator")
                if not answer["Records"]:
                    break
                records.extend(answer["Records"])
        for record in records:
            created = record["dynamodb"].get("ApproximateCreationDateTime", 0)
            record["dynamodb"]["ApproximateCreationDateTime"] = (
                created.timestamp() if hasattr(created, "timestamp") else created
            )
        return records

    def deliver(self, records: list[dict[str, Any]], batch_size: int = 100) -> list[Any]:
        from ai_credits.services import stream

        return [
            stream.process(records[start : start + batch_size])
            for start in range(0, len(records), batch_size)
        ]

    def drain(self) -> list[Any]:
        return self.deliver(self.fetch())


class RecordingBus:
    """Stands in for the EventBridge client: keeps every PutEvents entry."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(len(self.entries))} for _ in Entries]}

    def events(self, license_id: str) -> list[dict[str, Any]]:
        import json

        found = [
            {"detail_type": entry["DetailType"], **json.loads(entry["Detail"])} for entry in self.entries
        ]
        return [event for event in found if event["license_id"] == license_id]


@pytest.fixture
def stream_tap(ddb_local_env: str) -> StreamTap:
    return StreamTap(ddb_local_env)


@pytest.fixture
def event_bus(monkeypatch: pytest.MonkeyPatch) -> RecordingBus:
    from ai_credits import bus

    recording = RecordingBus()
    monkeypatch.setattr(bus, "client", lambda: recording)
    return recording
