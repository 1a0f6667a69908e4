"""``make run``'s EventBridge: the ``PutEvents`` the functions make, kept in memory for a developer.

The local server answers EventBridge's ``PutEvents`` as boto3 sends it (``POST /``, header
``X-Amz-Target: AWSEvents.PutEvents``, JSON 1.1) when the functions' ``AWS_ENDPOINT_URL_EVENTBRIDGE``
names it, which :mod:`local.gateway` does by default. Each entry is checked as EventBridge checks
it (``Source``, ``DetailType`` and a ``Detail`` that is a JSON object; a failed entry is reported in
the answer, the others are kept) and the events are listed at ``GET /local/events``, oldest first.
No rule runs: in AWS the bus's rules forward the events to their targets (a queue, a webhook).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "EVENTS_ENDPOINT_ENV",
    "MAX_KEPT_EVENTS",
    "PUT_EVENTS_TARGET",
    "EventBridgeError",
    "LocalEventBus",
]

#: Where boto3 sends EventBridge requests: its service-specific endpoint variable, named after the
#: service id "EventBridge" (``AWS_ENDPOINT_URL_EVENTS`` is not one boto3 reads).
EVENTS_ENDPOINT_ENV = "AWS_ENDPOINT_URL_EVENTBRIDGE"
#: The ``X-Amz-Target`` of a ``PutEvents`` request (every EventBridge target starts with ``AWSEvents.``).
PUT_EVENTS_TARGET = "AWSEvents.PutEvents"
#: The events kept: the oldest go first, so a long ``make run`` does not grow without bound.
MAX_KEPT_EVENTS = 10_000
#: EventBridge's limits: entries per request and their total size (as AWS computes it).
_MAX_ENTRIES = 10
_MAX_REQUEST_BYTES = 256 * 1024


class EventBridgeError(ValueError):
    """A request EventBridge refuses as a whole: ``error_type`` is its ``__type``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def to_json(self) -> dict[str, str]:
        """The JSON 1.1 error body botocore reads the error code from."""
        return {"__type": self.error_type, "message": self.message}


def _entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge counts it: 14 bytes for ``Time``, then the UTF-8 bytes of
    ``Source``, ``DetailType``, ``Detail`` and every ``Resources`` ARN."""
    size = 14 if entry.get("Time") is not None else 0
    texts = [entry.get(name) for name in ("Source", "DetailType", "Detail")]
    texts += list(entry.get("Resources") or [])
    return size + sum(len(text.encode("utf-8")) for text in texts if isinstance(text, str))


def _event_time(entry: Mapping[str, Any], received: datetime) -> str:
    """The event's ``time`` (RFC 3339, UTC): the entry's ``Time`` (epoch seconds, as boto3 sends
    it), else when it was received."""
    moment = entry.get("Time")
    when = received if not isinstance(moment, (int, float)) else datetime.fromtimestamp(moment, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry_error(entry: Any) -> tuple[str, str] | None:
    """Why EventBridge would refuse this entry (error code, message), or None."""
    if not isinstance(entry, dict):
        return "InvalidArgument", "An entry must be an object."
    for name in ("Source", "DetailType", "Detail"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            return "InvalidArgument", f"Parameter {name} is not valid. Reason: {name} is a required argument."
    try:
        detail = json.loads(entry["Detail"])
    except ValueError:
        return "MalformedDetail", "Detail is malformed."
    if not isinstance(detail, dict):
        return "MalformedDetail", "Detail is malformed."
    return None


class LocalEventBus:
    """The events received, oldest first (at most :data:`MAX_KEPT_EVENTS`); thread-safe, since the
    server answers each connection in a thread of its own."""

    def __init__(self, max_kept: int = MAX_KEPT_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=max_kept)
        self._lock = threading.Lock()

    def put_events(self, request: Any) -> dict[str, Any]:
        """Answer a ``PutEvents`` request body (parsed JSON) as EventBridge does; keep the entries
        it accepts. Raises :class:`EventBridgeError` for a request refused as a whole."""
        entries = request.get("Entries") if isinstance(request, dict) else None
        if not isinstance(entries, list) or not 1 <= len(entries) <= _MAX_ENTRIES:
            raise EventBridgeError(
                "ValidationException", f"Entries must be a list of 1 to {_MAX_ENTRIES} entries."
            )
        if sum(_entry_size(entry) for entry in entries if isinstance(entry, dict)) > _MAX_REQUEST_BYTES:
            raise EventBridgeError(
                "ValidationException", "Total size of the entries in the request is over the limit."
            )
        received = datetime.now(UTC)
        results: list[dict[str, str]] = []
        accepted: list[dict[str, Any]] = []
        for entry in entries:
            error = _entry_error(entry)
            if error is not None:
                results.append({"ErrorCode": error[0], "ErrorMessage": error[1]})
                continue
            event_id = str(uuid.uuid4())
            results.append({"EventId": event_id})
            accepted.append(
                {
                    "id": event_id,
                    "source": entry["Source"],
                    "detail_type": entry["DetailType"],
                    "detail": json.loads(entry["Detail"]),
                    "time": _event_time(entry, received),
                }
            )
        with self._lock:
            self._events.extend(accepted)
        return {"FailedEntryCount": len(entries) - len(accepted), "Entries": results}

    def events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """The events kept, oldest first; only those of ``detail_type`` when given."""
        with self._lock:
            kept = list(self._events)
        return [event for event in kept if detail_type is None or event["detail_type"] == detail_type]
