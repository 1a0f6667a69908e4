"""The derived items: usage rollups, statement entries and sent-event markers, written by the
stream processor (``services/stream.py``) and read by the usage and ledger routes. They live in
the same table as the items they are derived from (``store.py``), under their own keys:

| item            | pk                         | sk                               |
|-----------------|----------------------------|----------------------------------|
| usage rollup    | ``USAGE#<license_id>``     | ``<term_start>#<site>#<day>``    |
| statement entry | ``STATEMENT#<license_id>`` | ``<at>#<rank>#<source item>``    |
| sent event      | ``EVENT#<event_id>``       | ``EVENT`` (expires by TTL)       |

A rollup is one site's usage on one UTC day of one term: ``credits`` (net of refunds),
``requests``, ``f:<feature>`` and ``s:<subsite>`` credits, and ``rev``, the last site change
applied to it. Keyed by term first, a site's usage in a term is one Query
(``begins_with(sk, "<term_start>#<site>#")``) and a license's usage over a range of terms is one
Query of the terms it overlaps. Each write stays under 1 KB (1 WCU).

Requests: a batch of stream records costs ceil(entries / 25) BatchWriteItem for the statement,
one UpdateItem per rollup it touches (a site and day), and, for the rare batch with events, a
BatchGetItem and a BatchWriteItem of markers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ai_credits.changes import Contribution, StatementEntry
from ai_credits.errors import Unavailable
from ai_credits.store import (
    Item,
    _batch_get,
    _call,
    _query_pages,
    _table,
    client,
    from_item,
    license_key,
    to_attribute,
    to_item,
)

BATCH_WRITE_ITEMS = 25
_UNPROCESSED_ATTEMPTS = 6
#: How long a sent event's marker is kept: longer than any redelivery (24 h of record age).
EVENT_MARKER_DAYS = 7


def usage_pk(license_id: str) -> str:
    return f"USAGE#{license_id}"


def statement_pk(license_id: str) -> str:
    return f"STATEMENT#{license_id}"


# -- writes (the stream processor) ----------------------------------------------------------


def _batch_write(requests: Sequence[Item]) -> None:
    """BatchWriteItem in chunks of 25."""
    for start in range(0, len(requests), BATCH_WRITE_ITEMS):
        _write_chunk(requests[start : start + BATCH_WRITE_ITEMS])


def _write_chunk(chunk: Sequence[Item]) -> None:
    """One BatchWriteItem, with the unprocessed items tried again (backing off)."""
    pending: list[Any] = list(chunk)
    for attempt in range(_UNPROCESSED_ATTEMPTS):
        response = _call(client().batch_write_item, RequestItems={_table(): pending})
        pending = response.get("UnprocessedItems", {}).get(_table(), [])
        if not pending:
            return
        time.sleep(min(1.0, 0.05 * 2**attempt))
    raise Unavailable("the database did not take the batch; retry shortly", retry_after=1)


def entry_item(entry: StatementEntry) -> dict[str, Any]:
    return {
        "pk": statement_pk(entry.license_id),
        "sk": entry.sort_key,
        "type": "statement",
        "license_id": entry.license_id,
        "entry_type": entry.type,
        "at": entry.at,
        "credits": entry.credits,
        "term_start": entry.term_start,
        "site": entry.site,
        "subsite": entry.subsite,
        "request_id": entry.request_id,
        "grant_id": entry.grant_id,
        "feature": entry.feature,
    }


def put_entries(entries: Sequence[StatementEntry]) -> None:
    """Write statement entries. Idempotent: an entry written again is the same item."""
    _batch_write([{"PutRequest": {"Item": to_item(entry_item(entry))}} for entry in entries])


def apply_contributions(contributions: Sequence[Contribution]) -> int:
    """Add one rollup's contributions (one site, term and day; in ``rev`` order) exactly once:
    the update applies only if the rollup's ``rev`` is below the first one, and sets it to the
    last. Contributions it already has are dropped (a redelivered batch) and the rest applied.
    Returns the number of UpdateItem requests made (1, or 2 after a partial redelivery)."""
    from ai_credits.store import ConditionFailed

    pending = list(contributions)
    requests = 0
    while pending:
        requests += 1
        try:
            _call(client().update_item, **_rollup_update(pending))
            return requests
        except ConditionFailed as failed:
            applied = int(failed.old["rev"]["N"]) if failed.old and "rev" in failed.old else 0
            pending = [contribution for contribution in pending if contribution.rev > applied]
    return requests


def _rollup_update(contributions: Sequence[Contribution]) -> dict[str, Any]:
    first = contributions[0]
    names = {"#credits": "credits", "#requests": "requests", "#rev": "rev"}
    values: dict[str, Any] = {
        ":credits": sum(c.credits for c in contributions),
        ":requests": sum(c.requests for c in contributions),
        ":first": min(c.rev for c in contributions),
        ":last": max(c.rev for c in contributions),
        ":license_id": first.license_id,
        ":term_start": first.term_start,
        ":site": first.site,
        ":day": first.day,
        ":type": "usage",
    }
    adds = ["#credits :credits", "#requests :requests"]
    by_name: dict[str, int] = {}
    for contribution in contributions:
        by_name[f"f:{contribution.feature}"] = (
            by_name.get(f"f:{contribution.feature}", 0) + contribution.credits
        )
        if contribution.subsite:
            name = f"s:{contribution.subsite}"
            by_name[name] = by_name.get(name, 0) + contribution.credits
    for index, (name, credits) in enumerate(sorted(by_name.items())):
        names[f"#a{index}"] = name
        values[f":a{index}"] = credits
        adds.append(f"#a{index} :a{index}")
    return {
        "TableName": _table(),
        "Key": {
            "pk": {"S": usage_pk(first.license_id)},
            "sk": {"S": f"{first.term_start}#{first.site}#{first.day}"},
        },
        "UpdateExpression": "ADD " + ", ".join(adds) + " SET #rev = :last, license_id = :license_id,"
        " term_start = :term_start, site = :site, #day = :day, #type = :type",
        "ConditionExpression": "attribute_not_exists(#rev) OR #rev < :first",
        "ExpressionAttributeNames": {**names, "#day": "day", "#type": "type"},
        "ExpressionAttributeValues": {name: to_attribute(value) for name, value in values.items()},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _event_key(event_id: str) -> Item:
    return {"pk": {"S": f"EVENT#{event_id}"}, "sk": {"S": "EVENT"}}


def sent_events(event_ids: Iterable[str]) -> set[str]:
    """Which of these events were already put on the bus (their markers exist)."""
    keys = [_event_key(event_id) for event_id in dict.fromkeys(event_ids)]
    return {
        item["pk"]["S"].removeprefix("EVENT#") for item in _batch_get(keys, consistent=False, projection="pk")
    }


def mark_sent(event_ids: Iterable[str], now: float) -> None:
    expires = int(now) + EVENT_MARKER_DAYS * 86_400
    _batch_write(
        [
            {
                "PutRequest": {
                    "Item": {**_event_key(event_id), "type": {"S": "event"}, "ttl": {"N": str(expires)}}
                }
            }
            for event_id in dict.fromkeys(event_ids)
        ]
    )


def license_settings(license_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """``(account_id, low_balance_percent)`` of each license (eventually consistent)."""
    keys = [license_key(license_id) for license_id in dict.fromkeys(license_ids)]
    settings: dict[str, tuple[str, int]] = {}
    for item in _batch_get(keys, consistent=False, projection="license_id, account_id, low_balance_percent"):
        percent = int(item["low_balance_percent"]["N"]) if "low_balance_percent" in item else 20
        settings[item["license_id"]["S"]] = (item["account_id"]["S"], percent)
    return settings


# -- reads (the routes) ---------------------------------------------------------------------


def _query(**kwargs: Any) -> Iterator[dict[str, Any]]:
    return (from_item(item) for item in _query_pages(**kwargs))


def site_rollups(license_id: str, term_start: str, site: str) -> list[dict[str, Any]]:
    """One site's rollups of one term, oldest day first: one Query (more pages only past 1 MB)."""
    return [
        item
        for item in _query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": usage_pk(license_id)},
                ":prefix": {"S": f"{term_start}#{site}#"},
            },
        )
        if item["site"] == site
    ]


def license_rollups(license_id: str, first_term: str, before: str) -> list[dict[str, Any]]:
    """The license's rollups of the terms that started from ``first_term`` up to ``before``
    (exclusive): one Query."""
    return list(
        _query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues={
                ":pk": {"S": usage_pk(license_id)},
                ":low": {"S": first_term or "0"},  # (no term: from the first; timestamps start with a digit)
                ":high": {"S": before},
            },
        )
    )


def term_of(license_id: str, moment: str) -> str | None:
    """The start of the latest term with usage that started at or before ``moment``."""
    response = _call(
        client().query,
        TableName=_table(),
        KeyConditionExpression="pk = :pk AND sk <= :bound",
        ExpressionAttributeValues={":pk": {"S": usage_pk(license_id)}, ":bound": {"S": f"{moment}#\uffff"}},
        ScanIndexForward=False,
        Limit=1,
        ProjectionExpression="term_start",
    )
    items = response.get("Items", [])
    return items[0]["term_start"]["S"] if items else None


def statement_page(license_id: str, limit: int, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` entries newest first, after the entry whose sort key is ``after``, and
    the sort key to continue after (None on the last page): one Query of ``limit + 1`` items."""
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": statement_pk(license_id)}},
        "ScanIndexForward": False,
        "Limit": limit + 1,
    }
    if after is not None:
        kwargs["ExclusiveStartKey"] = {"pk": {"S": statement_pk(license_id)}, "sk": {"S": after}}
    items = _call(client().query, **kwargs).get("Items", [])
    page = [from_item(item) for item in items[:limit]]
    return page, (page[-1]["sk"] if len(items) > limit else None)


def statement(license_id: str) -> Iterator[dict[str, Any]]:
    """Every entry of the license, newest first."""
    return _query(
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": statement_pk(license_id)}},
        ScanIndexForward=False,
    )
