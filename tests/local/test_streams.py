"""make run hands the table's stream to StreamFunction as Lambda's event source mapping does
(local/streams.py): in order, in batches, retried from the first record the function reports failed
or whole on an error, given up after the retries, resumed after a restart without handing a record
twice. On DynamoDB Local's real stream, with a fake function; the shard order on a fake stream.
"""

from __future__ import annotations

import base64
import json
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from local.apigw import GatewaySettings
from local.cfn import StreamSpec, ensure_table, load_template
from local.gateway import build_gateway
from local.run import stream_readers
from local.streams import StreamReader
from tests.serving import served

pytestmark = pytest.mark.integration


@pytest.fixture
def dynamodb(dynamodb_local: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=dynamodb_local)


@pytest.fixture
def table(dynamodb: Any) -> Iterator[str]:
    """A table of its own (so a stream of its own), with the template's kind of stream."""
    name = f"stream-test-{uuid.uuid4().hex[:12]}"
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    yield name
    dynamodb.delete_table(TableName=name)


def write(dynamodb: Any, table: str, *keys: str) -> None:
    for key in keys:
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, "blob": {"B": b"\x00\xff"}})


class FakeFunction:
    """Records every batch (its keys); answers with ``answers`` in turn (an exception is raised),
    then with no failure."""

    def __init__(self, *answers: Any) -> None:
        self.batches: list[list[str]] = []
        self.events: list[dict[str, Any]] = []
        self._answers = list(answers)

    def __call__(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        self.batches.append([record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]])
        answer = self._answers.pop(0) if self._answers else {"batchItemFailures": []}
        if isinstance(answer, Exception):
            raise answer
        return answer(event) if callable(answer) else answer

    @property
    def delivered(self) -> list[str]:
        return [key for batch in self.batches for key in batch]


def failed_from(position: int) -> Callable[[dict[str, Any]], Any]:
    """An answer reporting the batch's record at ``position`` failed (and the one after it)."""

    def answer(event: dict[str, Any]) -> Any:
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in event["Records"]]
        return {
            "batchItemFailures": [{"itemIdentifier": n} for n in sequence_numbers[position : position + 2]]
        }

    return answer


SPEC = StreamSpec("TableStream", batch_size=3, maximum_retry_attempts=2, report_batch_item_failures=True)


def reader(
    dynamodb: Any, table: str, function: FakeFunction, spec: StreamSpec = SPEC, **options: Any
) -> StreamReader:
    return StreamReader.for_table(dynamodb, table, function, spec, retry_delay=0, **options)


def test_records_reach_the_function_in_order_in_lambdas_event(dynamodb: Any, table: str) -> None:
    function = FakeFunction()
    write(dynamodb, table, *[f"k{i}" for i in range(7)])
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "k0"}})

    delivered = reader(dynamodb, table, function).drain()

    assert delivered == 8
    assert function.batches == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6", "k0"]]
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    first = function.events[0]["Records"][0]
    assert set(first) == {
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    }
    assert (first["eventName"], first["eventSource"], first["eventSourceARN"]) == (
        "INSERT",
        "aws:dynamodb",
        stream_arn,
    )
    assert (first["eventVersion"], first["awsRegion"]) == ("1.1", "us-east-1")
    change = first["dynamodb"]
    assert change["Keys"] == {"pk": {"S": "k0"}}
    assert change["NewImage"]["blob"] == {"B": base64.b64encode(b"\x00\xff").decode()}
    assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert isinstance(change["ApproximateCreationDateTime"], int) and change["SizeBytes"] > 0
    removal = function.events[-1]["Records"][-1]
    assert removal["eventName"] == "REMOVE" and "OldImage" in removal["dynamodb"]
    json.dumps(function.events)  # the event is JSON, as Lambda's is
    sequence_numbers = [r["dynamodb"]["SequenceNumber"] for e in function.events for r in e["Records"]]
    assert sorted(sequence_numbers, key=int) == sequence_numbers


def test_records_that_match_no_filter_are_passed_over(dynamodb: Any, table: str) -> None:
    pattern = {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "LEDGER#"}, "exact"]}}}}
    spec = StreamSpec("TableStream", batch_size=3, filters=(pattern,))
    function = FakeFunction()
    write(dynamodb, table, "USAGE#1", "LEDGER#1", "exact", "exactly", "STATEMENT#1", "LEDGER#2")

    delivered = reader(dynamodb, table, function, spec).drain()

    assert function.delivered == ["LEDGER#1", "exact", "LEDGER#2"]
    assert delivered == 6  # read from the stream; three of them passed over


def test_reported_failures_are_retried_from_the_first_one(dynamodb: Any, table: str) -> None:
    function = FakeFunction(failed_from(1), failed_from(0))
    write(dynamodb, table, "a", "b", "c", "d")

    reader(dynamodb, table, function).drain()

    # a is checkpointed; b and c again, twice (b fails again), then d in the next batch.
    assert function.batches == [["a", "b", "c"], ["b", "c"], ["b", "c"], ["d"]]


def test_an_error_retries_the_whole_batch(dynamodb: Any, table: str) -> None:
    function = FakeFunction(RuntimeError("a time-out"), RuntimeError("again"))
    write(dynamodb, table, "a", "b", "c")

    reader(dynamodb, table, function).drain()

    assert function.batches == [["a", "b", "c"]] * 3


def test_with_bisection_an_error_splits_the_batch(dynamodb: Any, table: str) -> None:
    function = FakeFunction(RuntimeError("one bad record"))
    write(dynamodb, table, "a", "b", "c")
    bisecting = StreamSpec("TableStream", batch_size=3, bisect_batch_on_function_error=True)

    reader(dynamodb, table, function, bisecting).drain()

    assert function.batches == [["a", "b", "c"], ["a"], ["b", "c"]]


def test_after_its_retries_a_batch_is_given_up_and_the_shard_moves_on(dynamodb: Any, table: str) -> None:
    function = FakeFunction(*[RuntimeError("poison")] * 3)
    given_up: list[dict[str, Any]] = []
    write(dynamodb, table, "a", "b", "c", "d")

    reader(dynamodb, table, function, on_failure=given_up.append).drain()

    assert function.batches == [["a", "b", "c"]] * 3 + [["d"]]  # the first try and 2 retries
    (message,) = given_up
    info = message["DDBStreamBatchInfo"]
    batch = [record["dynamodb"]["SequenceNumber"] for record in function.events[0]["Records"]]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        batch[0],
        batch[-1],
        3,
    )
    assert info["streamArn"] == dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    assert message["requestContext"] == {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3}


def test_a_restart_resumes_after_the_checkpoint_and_delivers_nothing_twice(
    dynamodb: Any, table: str, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "dynamodb-data" / "stream-checkpoints.json"
    first, second = FakeFunction(failed_from(1)), FakeFunction()
    write(dynamodb, table, "a", "b", "c", "d")
    first_run = reader(dynamodb, table, first, checkpoint_path=checkpoints)
    first_run.drain()
    write(dynamodb, table, "e")

    reader(dynamodb, table, second, checkpoint_path=checkpoints).drain()

    assert first.delivered == ["a", "b", "c", "b", "c", "d"]
    assert second.batches == [["e"]]
    saved = json.loads(checkpoints.read_text())
    assert saved["stream_arn"] == first_run.stream_arn
    assert [shard["after"] for shard in saved["shards"].values()] == [
        second.events[0]["Records"][0]["dynamodb"]["SequenceNumber"]
    ]
    assert not list(checkpoints.parent.glob(".*.tmp"))  # replaced atomically, nothing left over


def test_the_checkpoints_of_another_stream_are_not_used(dynamodb: Any, table: str, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints.json"
    checkpoints.write_text(json.dumps({"stream_arn": "arn:of:a:deleted:table", "shards": {}}))
    function = FakeFunction()
    write(dynamodb, table, "a")

    reader(dynamodb, table, function, checkpoint_path=checkpoints).drain()

    assert function.batches == [["a"]]


def test_in_a_thread_a_write_reaches_the_function_within_a_second(dynamodb: Any, table: str) -> None:
    arrived = threading.Event()
    function = FakeFunction(lambda event: arrived.set())

    with reader(dynamodb, table, function, poll_interval=0.25):
        written = time.monotonic()
        write(dynamodb, table, "a")
        assert arrived.wait(5)
        assert time.monotonic() - written < 1

    assert function.batches == [["a"]]


def test_a_table_without_a_stream_cannot_be_read(dynamodb: Any) -> None:
    name = f"no-stream-{uuid.uuid4().hex[:12]}"
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        with pytest.raises(ValueError, match="has no stream"):
            reader(dynamodb, name, FakeFunction())
    finally:
        dynamodb.delete_table(TableName=name)


# -- shards: a child after its parent (on a fake stream: DynamoDB Local does not split shards) -----


class FakeStreams:
    """``describe_stream``/``get_shard_iterator``/``get_records`` over fixed shards: the parent
    closed with two records, its child open with one. Iterators are ``<shard>@<position>``."""

    meta = type("Meta", (), {"region_name": "us-east-1"})()

    def __init__(self) -> None:
        self.shards = {
            "shardId-parent": (None, ["1", "2"], True),
            "shardId-child": ("shardId-parent", ["3"], False),
        }
        self.reads: list[str] = []

    def describe_stream(self, StreamArn: str, **_: Any) -> dict[str, Any]:
        # The child first: the reader must not take the listing's order for the shards' order.
        listed = [
            {"ShardId": shard_id, **({"ParentShardId": parent} if parent else {})}
            for shard_id, (parent, _, _) in reversed(self.shards.items())
        ]
        return {"StreamDescription": {"StreamArn": StreamArn, "Shards": listed}}

    def get_shard_iterator(self, ShardId: str, ShardIteratorType: str, **_: Any) -> dict[str, str]:
        assert ShardIteratorType == "TRIM_HORIZON"
        return {"ShardIterator": f"{ShardId}@0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard_id, _, position = ShardIterator.partition("@")
        self.reads.append(shard_id)
        _, numbers, closed = self.shards[shard_id]
        start = int(position)
        page = numbers[start : start + 1]  # one record per call: the parent takes several reads
        records = [
            {
                "eventID": f"event-{n}",
                "eventName": "INSERT",
                "dynamodb": {"Keys": {"pk": {"S": f"k{n}"}}, "SequenceNumber": n},
            }
            for n in page
        ]
        end = start + len(page)
        next_iterator = None if closed and end == len(numbers) else f"{shard_id}@{end}"
        return {"Records": records, **({"NextShardIterator": next_iterator} if next_iterator else {})}


def test_a_child_shard_is_read_only_once_its_parent_is_finished() -> None:
    streams = FakeStreams()
    function = FakeFunction()

    StreamReader(streams, "arn:stream", function, SPEC).drain()

    assert function.delivered == ["k1", "k2", "k3"]
    assert set(streams.reads[: streams.reads.index("shardId-child")]) == {"shardId-parent"}


# -- make run: the template's function, its environment, its events -------------------------------

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Handler: app.lambda_handler
    Runtime: python3.12
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  Bus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub ${AWS::StackName}
  Stream:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: stream/
      Environment:
        Variables:
          EVENT_BUS_NAME: !Ref Bus
      Events:
        TableStream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
"""

APP = """
import json, os
import boto3

def lambda_handler(event, context):
    keys = [record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]]
    detail = {"keys": keys, "table": os.environ["TABLE_NAME"]}
    boto3.client("events").put_events(Entries=[{
        "Source": "ai-credits", "DetailType": "Records Seen", "Detail": json.dumps(detail),
        "EventBusName": os.environ["EVENT_BUS_NAME"],
    }])
    return {"batchItemFailures": []}
"""


def test_make_run_hands_the_stream_to_the_function_in_its_environment_and_keeps_its_events(
    dynamodb: Any, dynamodb_local: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    template = load_template(tmp_path / "template.yaml")
    table = f"stream-run-{uuid.uuid4().hex[:12]}"
    ensure_table(dynamodb, table, template)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local)
    monkeypatch.delenv("AWS_ENDPOINT_URL_EVENTBRIDGE", raising=False)
    try:
        with served(
            lambda: build_gateway(
                template,
                "127.0.0.1",
                0,
                GatewaySettings(),
                base_dir=tmp_path,
                table_name=table,
                concurrency=1,
            )
        ) as server:
            (stream_reader,) = stream_readers(server, dynamodb, table, tmp_path / "data")
            write(dynamodb, table, "a", "b")
            assert stream_reader.drain() == 2
            with requests.Session() as session:
                session.trust_env = False
                events = session.get(f"{server.base_url}/local/events", timeout=30).json()["events"]
    finally:
        dynamodb.delete_table(TableName=table)

    (event,) = [event for event in events if event["detail_type"] == "Records Seen"]
    assert event["detail"] == {"keys": ["a", "b"], "table": table}
    assert event["source"] == "ai-credits"
    assert (tmp_path / "data" / "stream-Stream-TableStream.json").is_file()
