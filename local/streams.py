"""``make run``'s DynamoDB Streams event source mapping: the table's stream handed to a function.

In AWS, a function with a ``DynamoDB`` event gets the table's changes from Lambda's event source
mapping; :class:`StreamReader` does the same with DynamoDB Local's stream, following the event's
settings in the template (:class:`local.cfn.StreamSpec`):

- shards are found with ``DescribeStream``; a child shard is read only once its parent is finished,
  so a key's changes arrive in order even across a shard split. Each shard is read through one
  shard iterator, one batch at a time, in order (ParallelizationFactor 1);
- records that match none of the event's ``FilterCriteria`` patterns are passed over (exact
  values and ``prefix`` are matched: :meth:`local.cfn.StreamSpec.wants`), as Lambda filters them;
- a batch is up to ``BatchSize`` records of one shard, handed to the function as Lambda's event
  ``{"Records": [...]}`` (``eventSource`` ``aws:dynamodb``, ``eventSourceARN`` the stream's ARN,
  binary attributes in base64, ``ApproximateCreationDateTime`` in epoch seconds);
- with ``ReportBatchItemFailures``, the records before the lowest sequence number the function
  reports in ``batchItemFailures`` are checkpointed and the batch is retried from that record; an
  error, or an answer that names no record of the batch, fails the whole batch: it is retried, or
  split in two and each half delivered on its own with ``BisectBatchOnFunctionError``. Retries wait,
  doubling from ``retry_delay`` up to ``max_retry_delay``;
- after ``MaximumRetryAttempts`` retries of a batch's first record the batch is given up: Lambda's
  on-failure message for it is logged (AWS sends it to the on-failure destination) and the shard
  moves on.

The checkpoint (per shard, the last sequence number processed and whether the shard is finished) is
written to a JSON file after every batch, atomically: a restart resumes after it and hands no
processed record to the function again. Not reproduced: the batching window (the reader polls every
``poll_interval``), the maximum record age, and the destination itself.

Tests call :meth:`StreamReader.drain` (everything the stream has now, in the calling thread);
``make run`` polls in a thread (:meth:`StreamReader.start`, :meth:`StreamReader.stop`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.cfn import StreamSpec

__all__ = ["Handler", "StreamReader", "lambda_record"]

logger = logging.getLogger("local.streams")

#: The function, as the reader calls it: Lambda's event in, the function's answer out; an
#: exception is the function's error.
Handler = Callable[[dict[str, Any]], Any]
#: A boto3 ``dynamodbstreams`` client (typed loosely: there are no stubs for it here).
StreamsClient = Any


class _Stopped(Exception):
    """:meth:`StreamReader.stop` ended a retry's wait: the batch is left for the next start."""


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    #: The sequence number of the last record processed (the checkpoint); None: none yet.
    after: str | None = None
    #: Closed and read to its end: its children may be read.
    finished: bool = False
    iterator: str | None = None


def _json_ready(value: Any) -> Any:
    """A record's ``dynamodb`` member as Lambda's event has it: binary values in base64 (boto3
    decodes them), times in epoch seconds (boto3 parses them)."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        seconds = value.timestamp()
        return int(seconds) if seconds.is_integer() else seconds
    return value


def lambda_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One record of a ``GetRecords`` answer (boto3's) as a record of Lambda's event."""
    converted = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": _json_ready(record["dynamodb"]),
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:  # the deletions TTL makes
        converted["userIdentity"] = record["userIdentity"]
    return converted


def _sequence_number(record: dict[str, Any]) -> str:
    number: str = record["dynamodb"]["SequenceNumber"]
    return number


def _first_failure(answer: Any, batch: list[dict[str, Any]]) -> int | None:
    """The position in ``batch`` of the first record ``answer`` reports failed; None when it
    reports none. As Lambda reads it: no answer, no ``batchItemFailures`` or an empty list is a
    success; an answer that is not an object, or names a record that is not in the batch, fails
    the whole batch (0)."""
    if answer is None:
        return None
    if not isinstance(answer, dict):
        return 0
    failures = answer.get("batchItemFailures")
    if failures is None or failures == []:
        return None
    if not isinstance(failures, list):
        return 0
    positions = {_sequence_number(record): index for index, record in enumerate(batch)}
    reported = [failure.get("itemIdentifier") if isinstance(failure, dict) else None for failure in failures]
    found = [positions.get(identifier) if isinstance(identifier, str) else None for identifier in reported]
    if None in found:
        return 0
    return min(position for position in found if position is not None)


def _arrival(record: dict[str, Any]) -> str | None:
    """A record's ``ApproximateCreationDateTime`` (epoch seconds) in RFC 3339, as Lambda's
    on-failure message gives it."""
    seconds = record["dynamodb"].get("ApproximateCreationDateTime")
    if not isinstance(seconds, (int, float)):
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _log_failure(message: dict[str, Any]) -> None:
    logger.error("records given up, sent to the on-failure destination in AWS: %s", json.dumps(message))


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code if isinstance(code, str) else None


class StreamReader:
    """Hands a DynamoDB stream's records to ``handler`` as Lambda's event source mapping does,
    with ``spec``'s settings (see the module).

    ``checkpoint_path`` is the JSON file of the checkpoints (None: kept in memory only). A file
    written for another stream (the table was created again) is ignored, then replaced.
    ``on_failure`` gets Lambda's on-failure message of each batch given up (default: logged).
    """

    def __init__(
        self,
        streams: StreamsClient,
        stream_arn: str,
        handler: Handler,
        spec: StreamSpec | None = None,
        *,
        checkpoint_path: Path | None = None,
        function_name: str = "function",
        poll_interval: float = 0.25,
        retry_delay: float = 0.25,
        max_retry_delay: float = 5.0,
        on_failure: Callable[[dict[str, Any]], None] = _log_failure,
    ) -> None:
        self.stream_arn = stream_arn
        self.spec = spec or StreamSpec("Stream")
        self._streams = streams
        self._region: str = streams.meta.region_name
        self._handler = handler
        self._checkpoint_path = checkpoint_path
        self._function_name = function_name
        self._poll_interval = poll_interval
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._on_failure = on_failure
        self._shards: dict[str, _Shard] = {}
        self._saved = self._load_checkpoints()
        self._lock = threading.Lock()  # one reader of the shards at a time: drain() or the thread
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None  # drain()'s: a batch failing for ever must not hang it

    @classmethod
    def for_table(
        cls,
        dynamodb: Any,
        table_name: str,
        handler: Handler,
        spec: StreamSpec | None = None,
        **options: Any,
    ) -> StreamReader:
        """A reader of ``table_name``'s stream, found with the boto3 DynamoDB client ``dynamodb``
        and read through a ``dynamodbstreams`` client of the same endpoint and region (DynamoDB
        Local serves both); ``options`` are the constructor's keyword arguments."""
        import boto3

        table = dynamodb.describe_table(TableName=table_name)["Table"]
        if not (table.get("StreamSpecification") or {}).get("StreamEnabled"):
            raise ValueError(f"table {table_name} has no stream (ensure_table enables the template's)")
        streams = boto3.client(
            "dynamodbstreams", endpoint_url=dynamodb.meta.endpoint_url, region_name=dynamodb.meta.region_name
        )
        return cls(streams, table["LatestStreamArn"], handler, spec, **options)

    # -- running --------------------------------------------------------------------------------

    def drain(self, timeout: float = 60.0) -> int:
        """Deliver every record the stream has now, in this thread; return how many were delivered
        (retries not counted). Returns once a round finds no new shard and no record on any shard
        it may read; raises TimeoutError when that takes more than ``timeout`` seconds (a batch
        still being retried then is delivered again by the next call)."""
        deadline = time.monotonic() + timeout
        total = 0
        with self._lock:
            self._deadline = deadline
            try:
                while True:
                    delivered, moved = self._poll()
                    total += delivered
                    if not moved:
                        return total
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{self._function_name}'s stream still had records after {timeout}s"
                        )
            finally:
                self._deadline = None

    def start(self) -> None:
        """Poll the stream in a thread of its own, every ``poll_interval`` seconds while it is idle."""
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name=f"stream-{self._function_name}", daemon=True)
        self._thread.start()
        logger.info("%s reads the stream %s (%s)", self._function_name, self.stream_arn, self.spec)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; wait up to ``timeout`` seconds for the batch under way (a retry's wait ends
        at once, its batch is delivered again after the next start)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> StreamReader:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with self._lock:
                    delivered, _ = self._poll()
            except _Stopped:
                return
            except Exception:  # DynamoDB Local went away, a stream disabled: logged, tried again later
                logger.exception("reading the stream for %s failed", self._function_name)
                delivered = 0
                if self._stopped.wait(self._max_retry_delay):
                    return
            if not delivered and self._stopped.wait(self._poll_interval):
                return

    # -- shards ---------------------------------------------------------------------------------

    def _poll(self) -> tuple[int, bool]:
        """One batch from each shard that may be read: the records delivered, and whether anything
        moved (a shard found or finished, a record delivered)."""
        moved = self._discover()
        delivered = 0
        for shard in list(self._shards.values()):
            if shard.finished or not self._parent_finished(shard):
                continue
            count = self._read(shard)
            delivered += count
            moved = moved or count > 0 or shard.finished
        return delivered, moved

    def _discover(self) -> bool:
        """Add the shards ``DescribeStream`` lists that are new (with their saved checkpoint);
        True when there were any."""
        found = False
        request = {"StreamArn": self.stream_arn}
        while True:
            description = self._streams.describe_stream(**request)["StreamDescription"]
            for listed in description.get("Shards", []):
                shard_id = listed["ShardId"]
                if shard_id not in self._shards:
                    saved = self._saved.get(shard_id, {})
                    self._shards[shard_id] = _Shard(
                        shard_id,
                        listed.get("ParentShardId"),
                        saved.get("after"),
                        saved.get("finished", False),
                    )
                    found = True
            if not description.get("LastEvaluatedShardId"):
                return found
            request["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]

    def _parent_finished(self, shard: _Shard) -> bool:
        """A shard is read after its parent, unless the parent has left the stream (trimmed)."""
        parent = self._shards.get(shard.parent_id) if shard.parent_id else None
        return parent is None or parent.finished

    def _iterator(self, shard: _Shard) -> str:
        """A shard iterator after the shard's checkpoint, or at its oldest record."""
        from botocore.exceptions import ClientError

        position: dict[str, str] = {"ShardIteratorType": "TRIM_HORIZON"}
        if shard.after is not None:
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.after}
        try:
            answer = self._streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard.shard_id, **position
            )
        except ClientError as exc:
            if _error_code(exc) != "TrimmedDataAccessException":
                raise
            logger.warning("the records after the checkpoint of %s have left the stream", shard.shard_id)
            answer = self._streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON"
            )
        iterator: str = answer["ShardIterator"]
        return iterator

    def _read(self, shard: _Shard) -> int:
        """Deliver the shard's next batch; the number of records in it."""
        from botocore.exceptions import ClientError

        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        try:
            page = self._streams.get_records(ShardIterator=shard.iterator, Limit=self.spec.batch_size)
        except ClientError as exc:
            if _error_code(exc) != "ExpiredIteratorException":  # 15 minutes without a read
                raise
            shard.iterator = self._iterator(shard)
            page = self._streams.get_records(ShardIterator=shard.iterator, Limit=self.spec.batch_size)
        records = [lambda_record(record, self.stream_arn, self._region) for record in page.get("Records", [])]
        wanted = [record for record in records if self.spec.wants(record)]
        if records and not wanted:
            self._checkpoint(shard, records[-1])  # all filtered out: Lambda moves past them
        if wanted:
            try:
                self._deliver(shard, wanted)
            except BaseException:
                # Interrupted (stopped, out of time): the next read starts after the checkpoint, so
                # what was processed of this batch is not handed over again.
                shard.iterator = None
                raise
        shard.iterator = page.get("NextShardIterator")
        if shard.iterator is None:
            shard.finished = True
            self._save()
        return len(records)

    # -- batches --------------------------------------------------------------------------------

    def _deliver(self, shard: _Shard, records: list[dict[str, Any]]) -> None:
        """Hand ``records`` to the function until each is processed or given up, checkpointing as
        Lambda does (see the module)."""
        batches = [records]
        while batches:
            batch = batches.pop(0)
            failures = 0  # failed invocations since the batch's first record last changed
            invocations = 0
            while batch:
                failed_at, raised = self._invoke(shard, batch)
                invocations += 1
                if failed_at is None:
                    self._checkpoint(shard, batch[-1])
                    break
                if failed_at > 0:
                    self._checkpoint(shard, batch[failed_at - 1])
                    batch, failures = batch[failed_at:], 0
                elif raised and self.spec.bisect_batch_on_function_error and len(batch) > 1:
                    half = len(batch) // 2
                    batches[:0] = [batch[:half], batch[half:]]
                    break
                else:
                    failures += 1
                    if 0 <= self.spec.maximum_retry_attempts < failures:
                        self._give_up(shard, batch, invocations)
                        break
                self._wait(failures)

    def _invoke(self, shard: _Shard, batch: list[dict[str, Any]]) -> tuple[int | None, bool]:
        """Call the function with ``batch``: the position of the first record that failed (None:
        all processed), and whether the function raised."""
        try:
            answer = self._handler({"Records": batch})
        except Exception:  # the function's error: logged as Lambda logs it, and retried
            logger.exception(
                "%s failed on %d records of %s from %s",
                self._function_name,
                len(batch),
                shard.shard_id,
                _sequence_number(batch[0]),
            )
            return 0, True
        if not self.spec.report_batch_item_failures:
            return None, False
        return _first_failure(answer, batch), False

    def _wait(self, failures: int) -> None:
        """The wait before a retry: ends early (raising) when the reader is stopped or drain() is
        out of time."""
        delay = min(self._retry_delay * 2 ** max(failures - 1, 0), self._max_retry_delay)
        if self._deadline is not None and time.monotonic() + delay > self._deadline:
            raise TimeoutError(f"{self._function_name} still failed on a batch of its stream")
        if self._stopped.wait(delay):
            raise _Stopped

    def _give_up(self, shard: _Shard, batch: list[dict[str, Any]], invocations: int) -> None:
        """Lambda's on-failure message for ``batch`` to ``on_failure``; the shard moves on."""
        self._on_failure(
            {
                "requestContext": {
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": invocations,
                },
                "version": "1.0",
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "DDBStreamBatchInfo": {
                    "shardId": shard.shard_id,
                    "startSequenceNumber": _sequence_number(batch[0]),
                    "endSequenceNumber": _sequence_number(batch[-1]),
                    "approximateArrivalOfFirstRecord": _arrival(batch[0]),
                    "approximateArrivalOfLastRecord": _arrival(batch[-1]),
                    "batchSize": len(batch),
                    "streamArn": self.stream_arn,
                },
            }
        )
        self._checkpoint(shard, batch[-1])

    # -- checkpoints ----------------------------------------------------------------------------

    def _checkpoint(self, shard: _Shard, record: dict[str, Any]) -> None:
        shard.after = _sequence_number(record)
        self._save()

    def _load_checkpoints(self) -> dict[str, dict[str, Any]]:
        """The saved state of each shard of this stream: ``{"after": ..., "finished": ...}``."""
        path = self._checkpoint_path
        if path is None or not path.exists():
            return {}
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("stream_arn") != self.stream_arn:
            logger.info("%s holds the checkpoints of another stream: reading from the oldest record", path)
            return {}
        shards: dict[str, dict[str, Any]] = document.get("shards", {})
        return shards

    def _save(self) -> None:
        """Write the checkpoints: a temporary file synced to disk, then renamed over the file (a
        crash leaves the old file or the new one, never half of one)."""
        path = self._checkpoint_path
        if path is None:
            return
        shards = {
            shard.shard_id: {"after": shard.after, "finished": shard.finished}
            for shard in self._shards.values()
            if shard.after is not None or shard.finished
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump({"stream_arn": self.stream_arn, "shards": shards}, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
