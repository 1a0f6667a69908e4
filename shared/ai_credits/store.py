"""The only module that knows DynamoDB: keys, item shapes, conditions and transactions.

One table (``template.yaml``, resource ``CreditsTable``), keys ``pk``/``sk``:

| item    | pk                       | sk                              |
|---------|--------------------------|---------------------------------|
| license | ``LICENSE#<license_id>`` | ``LICENSE``                     |
| site    | ``LICENSE#<license_id>`` | ``SITE#<site>``                 |
| key     | ``KEY#<key_hash>``       | ``KEY``                         |
| consume | ``LEDGER#<license_id>``  | ``CONSUME#<site>#<request_id>`` |
| expiry  | ``LEDGER#<license_id>``  | ``EXPIRY#<term_start>``         |

Indexes, all on the license item: gsi1 ``ACCOUNT#<account_id>`` / ``LICENSE#<license_id>``
(an account's licenses); gsi2 ``KEY#<key_hash>`` (activation by key, projection ALL); gsi3
``TERM_END#<shard>`` / ``<term_end>#<license_id>`` (renewal; sparse: unpaid licenses leave it).

Access patterns, with the DynamoDB requests each costs:

| use case                      | requests                                                      |
|-------------------------------|---------------------------------------------------------------|
| license by key (activation)   | Query gsi2 (eventually consistent; a miss: GetItem key item)  |
| activate a new/inactive site  | TransactWriteItems: license (version) + site                  |
| rotate an active site's token | UpdateItem site, ReturnValues ALL_NEW                         |
| deactivate                    | BatchGetItem license + site, TransactWriteItems license + site|
| balance                       | BatchGetItem license + site (strongly consistent)             |
| consume                       | TransactWriteItems site + ledger put; charged: GetItem remaining |
| license + its sites (portal)  | Query ``pk = LICENSE#<id>`` (strongly consistent)             |
| apply                         | that Query, TransactWriteItems license + named sites          |
| licenses of an account        | Query gsi1                                                    |
| licenses whose term ended     | Query gsi3 per shard, ``gsi3sk < now$``                       |
| renew one license             | that Query, TransactWriteItems license + sites + expiry entry |

Invariants the conditions keep (never Python): ``remaining >= 0`` and ``used <= allocated`` on
every site, ``unallocated >= 0`` on the license; the license item's ``version`` changes on
every write to it, so a decision made on a read is only written if nothing moved since.
The site item carries a copy of the license's ``expires_at`` so that a consume checks expiry
in the site item itself: one two-item transaction (4 WCU), no license read.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ai_credits.config import settings
from ai_credits.domain import License, Site, SiteEntry
from ai_credits.errors import Unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

Item = dict[str, Any]
T = TypeVar("T")

RENEWAL_SHARDS = 8  # gsi3 partitions; spreads license writes, renewal queries each one
MAX_TRANSACTION_ITEMS = 100

# -- keys ---------------------------------------------------------------------------------


def license_key(license_id: str) -> Item:
    return {"pk": {"S": f"LICENSE#{license_id}"}, "sk": {"S": "LICENSE"}}


def site_key(license_id: str, site: str) -> Item:
    return {"pk": {"S": f"LICENSE#{license_id}"}, "sk": {"S": f"SITE#{site}"}}


def key_item_key(key_hash: str) -> Item:
    return {"pk": {"S": f"KEY#{key_hash}"}, "sk": {"S": "KEY"}}


def consume_entry_key(license_id: str, site: str, request_id: str) -> Item:
    return {"pk": {"S": f"LEDGER#{license_id}"}, "sk": {"S": f"CONSUME#{site}#{request_id}"}}


def _renewal_shard(license_id: str) -> int:
    # A stable hash (Python's hash() is salted per process).
    return sum(license_id.encode()) % RENEWAL_SHARDS


def _index_keys(license_: License) -> dict[str, str]:
    return {
        "gsi1pk": f"ACCOUNT#{license_.account_id}",
        "gsi1sk": f"LICENSE#{license_.license_id}",
        "gsi2pk": f"KEY#{license_.key_hash}",
        "gsi3pk": f"TERM_END#{_renewal_shard(license_.license_id)}",
        "gsi3sk": f"{license_.term_end}#{license_.license_id}",
    }


# -- attribute values ---------------------------------------------------------------------


def to_attribute(value: Any) -> Item:
    """A Python value as a DynamoDB attribute value (only the types this table uses)."""
    # The exact built-in types first (a Mapping isinstance check is slow): same answers, and a
    # renewal converts a few hundred values.
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int:
        return {"N": str(value)}
    if kind is bool:
        return {"BOOL": value}
    if kind is dict:
        return {"M": {key: to_attribute(inner) for key, inner in value.items()}}
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {key: to_attribute(inner) for key, inner in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(inner) for inner in value]}
    raise TypeError(f"unsupported attribute type {type(value).__name__}")


def from_attribute(attribute: Item) -> Any:
    ((kind, value),) = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        return int(value)
    if kind == "BOOL":
        return value
    if kind == "M":
        return {key: from_attribute(inner) for key, inner in value.items()}
    if kind == "L":
        return [from_attribute(inner) for inner in value]
    if kind == "NULL":
        return None
    raise TypeError(f"unsupported attribute kind {kind}")


def to_item(values: Mapping[str, Any]) -> Item:
    return {name: to_attribute(value) for name, value in values.items() if value is not None}


def from_item(item: Item) -> dict[str, Any]:
    return {name: from_attribute(value) for name, value in item.items()}


# The readers below take each attribute by the kind this module writes it with (``license_values``,
# ``site_values``), without ``from_item``: a Query of a license and its 98 sites parses 99 items,
# and the generic conversion of every attribute was most of a large Apply's own time.


# A license's entries are a handful of distinct values (environment, network, active, used): the
# same immutable SiteEntry serves them all, which halves reading a license of many sites.
_ENTRIES: dict[tuple[str, bool, bool, str], SiteEntry] = {}
_MAX_ENTRIES = 4096  # distinct ``used`` of inactive sites: emptied when full


def _entry_from_attribute(entry: Item) -> SiteEntry:
    used = entry.get("used")
    key = (
        entry["environment"]["S"],
        entry["network"]["BOOL"],
        entry["active"]["BOOL"],
        used["N"] if used else "0",
    )
    found = _ENTRIES.get(key)
    if found is None:
        if len(_ENTRIES) >= _MAX_ENTRIES:
            _ENTRIES.clear()
        found = _ENTRIES[key] = SiteEntry(environment=key[0], network=key[1], active=key[2], used=int(key[3]))
    return found


def _license_from_item(item: Item) -> License:
    sites = item.get("sites")
    entries = {site: _entry_from_attribute(entry["M"]) for site, entry in sites["M"].items()} if sites else {}
    return License(
        license_id=item["license_id"]["S"],
        account_id=item["account_id"]["S"],
        plan=item["plan"]["S"],
        site_limit=int(item["site_limit"]["N"]),
        credits_per_term=int(item["credits_per_term"]["N"]),
        term_months=int(item["term_months"]["N"]),
        term_start=item["term_start"]["S"],
        term_end=item["term_end"]["S"],
        expires_at=item["expires_at"]["S"],
        credits_total=int(item["credits_total"]["N"]),
        unallocated=int(item["unallocated"]["N"]),
        needs_allocation=item["needs_allocation"]["BOOL"],
        key_hash=item["key_hash"]["S"],
        version=int(item["version"]["N"]),
        sites=entries,
    )


def _site_from_item(item: Item) -> Site:
    token_hash = item.get("token_hash")
    return Site(
        license_id=item["license_id"]["S"],
        site=item["site"]["S"],
        environment=item["environment"]["S"],
        network=item["network"]["BOOL"],
        active=item["active"]["BOOL"],
        allocated=int(item["allocated"]["N"]),
        used=int(item["used"]["N"]),
        remaining=int(item["remaining"]["N"]),
        activated_at=item["activated_at"]["S"],
        token_hash=from_attribute(token_hash) if token_hash else None,
    )


def _entry_values(entry: SiteEntry) -> dict[str, Any]:
    return {
        "environment": entry.environment,
        "network": entry.network,
        "active": entry.active,
        "used": entry.used,
    }


def _sites_attribute(sites: Mapping[str, SiteEntry]) -> Item:
    """``to_attribute`` of the license's ``sites`` map (``_entry_values`` of each entry), built
    directly: a renewal rewrites the whole map."""
    return {
        "M": {
            site: {
                "M": {
                    "environment": {"S": entry.environment},
                    "network": {"BOOL": entry.network},
                    "active": {"BOOL": entry.active},
                    "used": {"N": str(entry.used)},
                }
            }
            for site, entry in sites.items()
        }
    }


def license_values(license_: License) -> dict[str, Any]:
    """The whole license item (keys, index keys and attributes) as plain values."""
    return {
        "pk": f"LICENSE#{license_.license_id}",
        "sk": "LICENSE",
        "type": "license",
        **_index_keys(license_),
        "license_id": license_.license_id,
        "account_id": license_.account_id,
        "plan": license_.plan,
        "site_limit": license_.site_limit,
        "credits_per_term": license_.credits_per_term,
        "term_months": license_.term_months,
        "term_start": license_.term_start,
        "term_end": license_.term_end,
        "expires_at": license_.expires_at,
        "credits_total": license_.credits_total,
        "unallocated": license_.unallocated,
        "needs_allocation": license_.needs_allocation,
        "key_hash": license_.key_hash,
        "version": license_.version,
        "sites": {site: _entry_values(entry) for site, entry in license_.sites.items()},
    }


def site_values(site: Site, expires_at: str) -> dict[str, Any]:
    return {
        "pk": f"LICENSE#{site.license_id}",
        "sk": f"SITE#{site.site}",
        "type": "site",
        "license_id": site.license_id,
        "site": site.site,
        "environment": site.environment,
        "network": site.network,
        "active": site.active,
        "allocated": site.allocated,
        "used": site.used,
        "remaining": site.remaining,
        "activated_at": site.activated_at,
        "token_hash": site.token_hash,
        "expires_at": expires_at,
    }


# -- the client ---------------------------------------------------------------------------


@cache
def client() -> DynamoDBClient:
    """One DynamoDB client per container, created on first use.

    The endpoint comes from the environment (``AWS_ENDPOINT_URL_DYNAMODB`` locally): never
    hard-coded. botocore's standard retry mode retries throttling and time-outs with full
    jitter, and a retried TransactWriteItems reuses its ClientRequestToken, so a retry after a
    lost response cannot apply the transaction twice.

    The budget: the functions have 10 s (template.yaml), and the 503 must leave before Lambda
    stops the function. A consume makes two requests (the charge, then a read), each up to 3
    attempts: a hung request costs 3 x 1.5 s + back-offs <= 75 ms, a throttled one back-offs
    <= 1 + 2 s; the worst path (charged on the third attempt, then a hung read) stays under
    8 s (tests/reliability/test_faults.py measures it). DynamoDB answers in milliseconds:
    1.5 s is a stall, not a slow answer.
    """
    import boto3  # imported on first use: keeps it off the cold-start import path
    from botocore.config import Config

    config = Config(
        connect_timeout=1,
        read_timeout=1.5,
        retries={"mode": "standard", "total_max_attempts": 3},
        tcp_keepalive=True,
    )
    return boto3.client("dynamodb", config=config)


def reset_clients() -> None:
    """Forget the cached client (tests switch endpoints between moto and DynamoDB Local)."""
    client.cache_clear()
    settings.cache_clear()


def _table() -> str:
    return settings().table_name


# -- errors -------------------------------------------------------------------------------

_THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
# Cancellation reasons that mean "not now" rather than "no": the transaction is tried again as
# a whole (DynamoDB reports a throttled transaction this way, not as ThrottlingException).
_RETRYABLE_CANCELLATION_CODES = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


class Cancelled(Exception):
    """A transaction DynamoDB refused because of a condition: ``reasons[i]`` belongs to item i.

    Each reason is ``(code, old_item_or_None)``; codes are DynamoDB's ("None",
    "ConditionalCheckFailed", "TransactionConflict" ...).
    """

    def __init__(self, reasons: list[tuple[str, dict[str, Any] | None]]) -> None:
        super().__init__(", ".join(code for code, _ in reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return self.reasons[index][0] == "ConditionalCheckFailed"

    def old(self, index: int) -> dict[str, Any] | None:
        return self.reasons[index][1]


class ConditionFailed(Exception):
    """A single-item write whose condition failed; ``old`` is the item as it was (or None)."""

    def __init__(self, old: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.old = old


def _call(operation: Callable[..., T], **kwargs: Any) -> T:
    """Call DynamoDB, turning what the client cannot fix into domain-level exceptions."""
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,  # the exchange failed once sent: read time-out, connection closed ...
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,  # no exchange: connect time-out, refused ...
    )

    try:
        return operation(**kwargs)
    except ClientError as error:
        response: dict[str, Any] = dict(error.response)
        code = response.get("Error", {}).get("Code", "")
        if code == "TransactionCanceledException":
            reasons = [
                (reason.get("Code", "None"), from_item(reason["Item"]) if "Item" in reason else None)
                for reason in response.get("CancellationReasons", [])
            ]
            raise Cancelled(reasons) from error
        if code == "ConditionalCheckFailedException":
            old = response.get("Item")
            raise ConditionFailed(from_item(old) if old else None) from error
        if code in _THROTTLING_CODES:
            raise Unavailable("the database is busy; retry shortly", retry_after=1) from error
        raise
    except (BotoConnectionError, HTTPClientError) as error:
        raise Unavailable("the database did not answer in time; retry shortly", retry_after=1) from error


def transact(items: Sequence[Item]) -> None:
    """One TransactWriteItems; a cancellation for a conflict with a concurrent transaction or
    for throttling (and nothing else) is retried, full jitter, then answered ``Unavailable``."""
    if len(items) > MAX_TRANSACTION_ITEMS:
        raise ValueError(f"{len(items)} items exceed one transaction")
    config = settings()
    for attempt in range(config.conflict_retries + 1):
        try:
            _call(client().transact_write_items, TransactItems=list(items))
            return
        except Cancelled as cancelled:
            codes = {code for code, _ in cancelled.reasons} - {"None"}
            if not codes or not codes <= _RETRYABLE_CANCELLATION_CODES:
                raise
            if attempt == config.conflict_retries:
                if "TransactionConflict" in codes:
                    raise Unavailable("too much contention on this license; retry shortly") from cancelled
                raise Unavailable("the database is busy; retry shortly") from cancelled
            back_off(attempt)


def back_off(attempt: int) -> None:
    """Full jitter: sleep a random time in [0, base * 2**attempt) before retrying."""
    time.sleep(random.uniform(0, settings().retry_base_seconds * 2**attempt))


def _update(
    key: Item,
    update: str,
    condition: str | None,
    names: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
) -> Item:
    operation: Item = {"TableName": _table(), "Key": key, "UpdateExpression": update}
    if condition:
        operation["ConditionExpression"] = condition
    if names:
        operation["ExpressionAttributeNames"] = dict(names)
    if values:
        operation["ExpressionAttributeValues"] = {name: to_attribute(value) for name, value in values.items()}
    operation["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": operation}


def _update_with_attributes(key: Item, update: str, condition: str, attribute_values: Item) -> Item:
    """``_update``'s item, its values given as attribute values already: for the loops that build
    one Update per site (Apply, renewal), where the conversions were most of the cost."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": key,
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": attribute_values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _put(values: Mapping[str, Any], condition: str) -> Item:
    return {
        "Put": {
            "TableName": _table(),
            "Item": to_item(values),
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


# -- reads --------------------------------------------------------------------------------


def get_license(license_id: str) -> License | None:
    """Strongly consistent read of one license item."""
    response = _call(client().get_item, TableName=_table(), Key=license_key(license_id), ConsistentRead=True)
    return _license_from_item(response["Item"]) if "Item" in response else None


def find_license_by_key_hash(key_hash: str) -> License | None:
    """The license a key unlocks: one eventually consistent index query in the usual case.

    A stale index answer is harmless (every write conditions on the license's ``version`` and
    ``key_hash``); a miss may be a license provisioned a moment ago, so it is confirmed with the
    strongly consistent key item before answering "unknown key".
    """
    response = _call(
        client().query,
        TableName=_table(),
        IndexName="gsi2",
        KeyConditionExpression="gsi2pk = :key",
        ExpressionAttributeValues={":key": {"S": f"KEY#{key_hash}"}},
        Limit=2,
    )
    items = response.get("Items", [])
    if items:
        return _license_from_item(items[0])
    key_item = _call(client().get_item, TableName=_table(), Key=key_item_key(key_hash), ConsistentRead=True)
    if "Item" not in key_item:
        return None
    license_ = get_license(from_item(key_item["Item"])["license_id"])
    return license_ if license_ is not None and license_.key_hash == key_hash else None


def get_license_and_site(license_id: str, site: str) -> tuple[License | None, Site | None]:
    """Both items in one strongly consistent BatchGetItem."""
    found = _batch_get([license_key(license_id), site_key(license_id, site)])
    license_item = next((item for item in found if item["sk"]["S"] == "LICENSE"), None)
    site_item = next((item for item in found if item["sk"]["S"] != "LICENSE"), None)
    return (
        _license_from_item(license_item) if license_item else None,
        _site_from_item(site_item) if site_item else None,
    )


def _batch_get(keys: list[Item]) -> list[Item]:
    """The items of ``keys`` that exist: one strongly consistent BatchGetItem (more only for
    keys DynamoDB leaves unprocessed, which happens under throttling)."""
    request: Item = {_table(): {"Keys": keys, "ConsistentRead": True}}
    found: list[Item] = []
    for _ in range(5):
        response = _call(client().batch_get_item, RequestItems=request)
        found.extend(response.get("Responses", {}).get(_table(), []))
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return found
    raise Unavailable("the database is busy; retry shortly")


def get_license_with_sites(license_id: str) -> tuple[License | None, list[Site]]:
    """The license item and all its site items: one strongly consistent Query (paged if large)."""
    license_: License | None = None
    sites: list[Site] = []
    for item in _query_partition(f"LICENSE#{license_id}"):
        sort_key = item["sk"]["S"]
        if sort_key.startswith("SITE#"):
            sites.append(_site_from_item(item))
        elif sort_key == "LICENSE":
            license_ = _license_from_item(item)
    return license_, sites


def _query_partition(pk: str) -> Iterator[Item]:
    kwargs: Item = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ConsistentRead": True,
    }
    while True:
        response = _call(client().query, **kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def get_site(license_id: str, site: str) -> Site | None:
    response = _call(
        client().get_item, TableName=_table(), Key=site_key(license_id, site), ConsistentRead=True
    )
    return _site_from_item(response["Item"]) if "Item" in response else None


def ledger_entries(license_id: str) -> list[dict[str, Any]]:
    """Every entry of a license's ledger: consumes and expired credits (for audits and tests)."""
    return [from_item(item) for item in _query_partition(f"LEDGER#{license_id}")]


def all_license_ids() -> Iterator[str]:
    """Every license in the table: a Scan, for the operator's audit only (never a request path)."""
    kwargs: Item = {
        "TableName": _table(),
        "FilterExpression": "sk = :license",
        "ProjectionExpression": "license_id",
        "ExpressionAttributeValues": {":license": {"S": "LICENSE"}},
    }
    while True:
        response = _call(client().scan, **kwargs)
        for item in response.get("Items", []):
            yield item["license_id"]["S"]
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


# -- license writes -----------------------------------------------------------------------


class StaleLicense(Exception):
    """The license changed since it was read; ``current`` is its item now (None if gone)."""

    def __init__(self, current: License | None) -> None:
        super().__init__("license changed since it was read")
        self.current = current


def _license_update(
    license_: License,
    sets: Mapping[str, Any],
    now: str | None,
    extra_names: Mapping[str, str] | None = None,
    extra_set_expressions: Iterable[str] = (),
) -> Item:
    """An Update of the license item that applies only to the version that was read.

    ``sets`` are plain ``SET name = value`` assignments; ``now`` (when given) also requires the
    license not to have expired.
    """
    names = {f"#{name}": name for name in sets} | dict(extra_names or {})
    values = {f":{name}": value for name, value in sets.items()}
    assignments = [f"#{name} = :{name}" for name in sets]
    assignments.append("#version = #version + :one")
    assignments.extend(extra_set_expressions)
    names["#version"] = "version"
    values |= {":one": 1, ":read_version": license_.version}
    condition = "#version = :read_version"
    if now is not None:
        names["#expires_at"] = "expires_at"
        values[":now"] = now
        condition += " AND #expires_at > :now"
    return _update(
        license_key(license_.license_id), "SET " + ", ".join(assignments), condition, names, values
    )


# Beyond this many changed entries, a license Update writes the whole ``sites`` map (the
# expressions stay far below DynamoDB's 4 KB).
_MAX_ENTRY_CHANGES = 32


def _write_entries(
    license_item: Item, read: Mapping[str, SiteEntry], entries: Mapping[str, SiteEntry]
) -> None:
    """Make a license Update of ``_license_update`` (its expression ends with the SET clause; it
    applies only to the version read, hence to the ``read`` map) leave the ``sites`` map as
    ``entries``, writing only the entries that change. A renewal usually changes none (active
    sites' entries hold ``used`` 0 already) and removes the inactive ones."""
    removed = [site for site in read if site not in entries]
    changed = [
        site for site, entry in entries.items() if (old := read.get(site)) is not entry and old != entry
    ]
    if not removed and not changed:
        return
    update = license_item["Update"]
    names, values = update["ExpressionAttributeNames"], update["ExpressionAttributeValues"]
    names["#sites"] = "sites"
    if len(removed) + len(changed) > _MAX_ENTRY_CHANGES:
        values[":sites"] = _sites_attribute(entries)
        update["UpdateExpression"] += ", #sites = :sites"
        return
    assignments = []
    for index, site in enumerate(changed):
        names[f"#set{index}"] = site
        values[f":set{index}"] = to_attribute(_entry_values(entries[site]))
        assignments.append(f", #sites.#set{index} = :set{index}")
    for index, site in enumerate(removed):
        names[f"#removed{index}"] = site
    removals = ", ".join(f"#sites.#removed{index}" for index in range(len(removed)))
    update["UpdateExpression"] += "".join(assignments) + (f" REMOVE {removals}" if removed else "")


def _raise_for_license(cancelled: Cancelled, index: int = 0) -> None:
    if cancelled.failed(index):
        old = cancelled.old(index)
        raise StaleLicense(_license_from_item(to_item(old)) if old else None) from cancelled


def write_new_license(license_: License, sites: Sequence[Site]) -> None:
    """Create a license, its key item and its imported sites, all or nothing.

    Raises ``StaleLicense`` when the license already exists and ``KeyTaken`` when another
    license holds the key.
    """
    items = [
        _put(license_values(license_), "attribute_not_exists(pk)"),
        _put(
            {"pk": f"KEY#{license_.key_hash}", "sk": "KEY", "type": "key", "license_id": license_.license_id},
            "attribute_not_exists(pk)",
        ),
        *(_put(site_values(site, license_.expires_at), "attribute_not_exists(pk)") for site in sites),
    ]
    try:
        transact(items)
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        if cancelled.failed(1):
            raise KeyTaken() from cancelled
        raise


class KeyTaken(Exception):
    """The license key is already held by another license."""


def write_license_update(
    read: License, updated: License, new_sites: Sequence[Site], site_names: Sequence[str]
) -> None:
    """Apply an update made on ``read``: the license item, the key item if the key changed,
    new imported sites, and the ``expires_at`` copy on every existing site.

    Atomic up to 100 items. Beyond that the license and the key move first and the sites'
    ``expires_at`` copies follow in further transactions (an expiry change reaches the last
    sites a few milliseconds later).
    """
    values = license_values(updated)
    sets = {
        name: values[name]
        for name in (
            "gsi1pk", "gsi2pk", "gsi3pk", "gsi3sk", "account_id", "plan", "site_limit",
            "credits_per_term", "term_months", "term_start", "term_end", "expires_at",
            "credits_total", "unallocated", "needs_allocation", "key_hash", "sites",
        )
    }  # fmt: skip
    items = [_license_update(read, sets, now=None)]
    if updated.key_hash != read.key_hash:
        items.append(
            _put(
                {
                    "pk": f"KEY#{updated.key_hash}",
                    "sk": "KEY",
                    "type": "key",
                    "license_id": updated.license_id,
                },
                "attribute_not_exists(pk)",
            )
        )
        items.append(
            {
                "Delete": {
                    "TableName": _table(),
                    "Key": key_item_key(read.key_hash),
                    "ConditionExpression": "license_id = :license_id",
                    "ExpressionAttributeValues": {":license_id": {"S": read.license_id}},
                }
            }
        )
    items.extend(
        _put(site_values(site, updated.expires_at), "attribute_not_exists(pk)") for site in new_sites
    )
    expiry_updates = []
    if updated.expires_at != read.expires_at:
        expiry_updates = [
            _update(
                site_key(read.license_id, name),
                "SET expires_at = :expires_at",
                "attribute_exists(pk)",
                None,
                {":expires_at": updated.expires_at},
            )
            for name in site_names
        ]
    room = MAX_TRANSACTION_ITEMS - len(items)
    try:
        transact(items + expiry_updates[:room])
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        if updated.key_hash != read.key_hash and cancelled.failed(1):
            raise KeyTaken() from cancelled
        raise
    for start in range(room, len(expiry_updates), MAX_TRANSACTION_ITEMS):
        transact(expiry_updates[start : start + MAX_TRANSACTION_ITEMS])


# -- activation ---------------------------------------------------------------------------


def write_activation(
    license_: License,
    updated: License,
    site: Site,
    existed: bool,
    now: str,
) -> None:
    """Activate ``site`` (new, or inactive until now) and record it on the license, atomically.

    The license part applies only to the version read and only if the license has not expired;
    credits move from ``unallocated`` to the site (rule 1) in the same transaction.
    """
    moved = license_.unallocated - updated.unallocated
    license_item = _license_update(
        license_,
        {"unallocated": updated.unallocated, "needs_allocation": updated.needs_allocation},
        now,
        extra_names={"#sites": "sites", "#site": site.site},
        extra_set_expressions=["#sites.#site = :entry"],
    )
    license_item["Update"]["ExpressionAttributeValues"][":entry"] = to_attribute(
        _entry_values(updated.sites[site.site])
    )
    if existed:
        site_item = _update(
            site_key(site.license_id, site.site),
            "SET active = :true, token_hash = :token_hash, environment = :environment, network = :network,"
            " allocated = allocated + :moved, remaining = remaining + :moved, activated_at = :now,"
            " expires_at = :expires_at REMOVE deactivated_at",
            "attribute_exists(pk)",
            None,
            {
                ":true": True,
                ":token_hash": site.token_hash,
                ":environment": site.environment,
                ":network": site.network,
                ":moved": moved,
                ":now": now,
                ":expires_at": updated.expires_at,
            },
        )
    else:
        site_item = _put(site_values(site, updated.expires_at), "attribute_not_exists(pk)")
    try:
        transact([license_item, site_item])
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        raise


def rotate_token(license_id: str, site: str, token_hash: str, now: str) -> Site:
    """Give an active site a new token (the old one stops working): one UpdateItem.

    Raises ``ConditionFailed`` (with the site as it was) when the site is not active or the
    license has expired, so the caller can decide again.
    """
    response = _call(
        client().update_item,
        TableName=_table(),
        Key=site_key(license_id, site),
        UpdateExpression="SET token_hash = :token_hash",
        ConditionExpression="active = :true AND expires_at > :now",
        ExpressionAttributeValues={
            ":token_hash": {"S": token_hash},
            ":true": {"BOOL": True},
            ":now": {"S": now},
        },
        ReturnValues="ALL_NEW",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    return _site_from_item(response["Attributes"])


def write_deactivation(license_: License, updated: License, site: Site, now: str) -> None:
    """Deactivate ``site``: its allocation shrinks to ``used``, the rest returns to ``unallocated``.

    The site part requires the token, ``used`` and ``remaining`` that were read (a consume in
    between makes it fail and the caller decides again on fresh values).
    """
    license_item = _license_update(
        license_,
        {"unallocated": updated.unallocated},
        None,
        extra_names={"#sites": "sites", "#site": site.site},
        extra_set_expressions=["#sites.#site = :entry"],
    )
    license_item["Update"]["ExpressionAttributeValues"][":entry"] = to_attribute(
        _entry_values(updated.sites[site.site])
    )
    site_item = _update(
        site_key(site.license_id, site.site),
        "SET active = :false, allocated = :used, remaining = :zero, deactivated_at = :now"
        " REMOVE token_hash, consume_fence",
        "token_hash = :token_hash AND used = :used AND remaining = :remaining",
        None,
        {
            ":false": False,
            ":used": site.used,
            ":zero": 0,
            ":now": now,
            ":token_hash": site.token_hash,
            ":remaining": site.remaining,
        },
    )
    try:
        transact([license_item, site_item])
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        if cancelled.failed(1):
            raise ConditionFailed(cancelled.old(1)) from cancelled
        raise


# -- consume ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumeRefused:
    """Why a consume was not charged, from the items as they were (no extra read)."""

    site_failed: bool  # the site's condition failed (bad token, expired, too few credits ...)
    site: dict[str, Any] | None  # the site item as it was, when it failed and exists
    entry: dict[str, Any] | None  # the existing ledger entry when the request_id was used


def charge(
    license_id: str,
    site: str,
    token_hash: str,
    amount: int,
    request_id: str,
    entry: Mapping[str, Any],
    now: str,
    network_only: bool,
    expected_remaining: int | None = None,
) -> ConsumeRefused | None:
    """Spend ``amount`` from the site and write the ledger entry: one TransactWriteItems.

    The site's condition checks the token, that the license has not expired (the site's copy
    of ``expires_at``), ``remaining >= amount`` and, for a sub-site, that the activation is a
    network; the entry's condition makes the request_id single-use. With ``expected_remaining``
    the site must also hold exactly that much (compare-and-set): the answer's ``remaining``,
    ``expected_remaining - amount``, is then known without a read and goes into the entry as
    ``remaining_after`` in the same write. Returns ``None`` when charged, else what each failed
    condition saw.
    """
    condition = (
        "token_hash = :token_hash AND expires_at > :now AND remaining >= :amount"
        " AND (attribute_not_exists(consume_fence) OR consume_fence <= :now)"
    )
    values: dict[str, Any] = {":token_hash": token_hash, ":now": now, ":amount": amount}
    if network_only:
        condition += " AND network = :true"
        values[":true"] = True
    values_of_entry = {
        **{name: value["S"] for name, value in consume_entry_key(license_id, site, request_id).items()},
        "type": "consume",
        "license_id": license_id,
        **entry,
    }
    if expected_remaining is not None:
        condition += " AND remaining = :expected"
        values[":expected"] = expected_remaining
        values_of_entry["remaining_after"] = expected_remaining - amount
    site_update = _update(
        site_key(license_id, site),
        "SET remaining = remaining - :amount, used = used + :amount",
        condition,
        None,
        values,
    )
    ledger_put = _put(values_of_entry, "attribute_not_exists(pk)")
    try:
        transact([site_update, ledger_put])
    except Cancelled as cancelled:
        if not (cancelled.failed(0) or cancelled.failed(1)):
            raise
        return ConsumeRefused(
            site_failed=cancelled.failed(0),
            site=cancelled.old(0) if cancelled.failed(0) else None,
            entry=cancelled.old(1) if cancelled.failed(1) else None,
        )
    return None


def read_for_consume(
    license_id: str, site: str, request_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The site item and the request's ledger entry (``None`` when absent): one strongly
    consistent BatchGetItem, for a consume that has no recent ``remaining`` of the site."""
    keys = [site_key(license_id, site), consume_entry_key(license_id, site, request_id)]
    found = [from_item(item) for item in _batch_get(keys)]
    site_item = next((item for item in found if item["pk"].startswith("LICENSE#")), None)
    entry = next((item for item in found if item["pk"].startswith("LEDGER#")), None)
    return site_item, entry


def record_answer(license_id: str, site: str, request_id: str, remaining: int) -> None:
    """Keep a charge's answer (``remaining`` right after it) with its ledger entry, once.

    Best effort: the charge is already committed and answered; if this write is throttled or
    times out, a replay answers the pool's current ``remaining`` instead.
    """
    try:
        _call(
            client().update_item,
            TableName=_table(),
            Key=consume_entry_key(license_id, site, request_id),
            UpdateExpression="SET remaining_after = :remaining",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(remaining_after)",
            ExpressionAttributeValues={":remaining": {"N": str(remaining)}},
        )
    except (ConditionFailed, Unavailable):
        return


def site_remaining(license_id: str, site: str) -> int:
    """The site's ``remaining`` now (strongly consistent, projected to that one attribute)."""
    response = _call(
        client().get_item,
        TableName=_table(),
        Key=site_key(license_id, site),
        ConsistentRead=True,
        ProjectionExpression="remaining",
    )
    return int(response["Item"]["remaining"]["N"]) if "Item" in response else 0


# -- portal -------------------------------------------------------------------------------


def licenses_of_account(account_id: str) -> list[dict[str, Any]]:
    """The licenses of an account (gsi1, eventually consistent: a list, not a balance)."""
    kwargs: Item = {
        "TableName": _table(),
        "IndexName": "gsi1",
        "KeyConditionExpression": "gsi1pk = :account",
        "ExpressionAttributeValues": {":account": {"S": f"ACCOUNT#{account_id}"}},
    }
    licenses: list[dict[str, Any]] = []
    while True:
        response = _call(client().query, **kwargs)
        licenses.extend(from_item(item) for item in response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return licenses
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


class AllocationChange(NamedTuple):  # a tuple: an Apply makes up to 98, a third of a dataclass's cost
    site: str
    old_allocated: int
    new_allocated: int


class AllocationRefused(Exception):
    """An Apply the database refused: the license and sites as they were (None where they passed)."""

    def __init__(self, license_: dict[str, Any] | None, sites: dict[str, dict[str, Any] | None]) -> None:
        super().__init__("allocation refused")
        self.license = license_
        self.sites = sites


def write_allocations(license_: License, changes: Sequence[AllocationChange], now: str) -> None:
    """Apply: move credits between ``unallocated`` and the named sites, all or nothing.

    Conditions, each enforced by DynamoDB: ``unallocated`` never below 0 (``unallocated >=
    :delta``), the term unchanged since the read, the license not expired; every site still
    active, still holding the allocation that was read, and not set below its ``used``.
    """
    delta = sum(change.new_allocated - change.old_allocated for change in changes)
    condition = "term_start = :term_start AND expires_at > :now"
    values: dict[str, Any] = {
        ":delta": delta,
        ":term_start": license_.term_start,
        ":now": now,
        ":false": False,
        ":one": 1,
    }
    if delta > 0:
        condition += " AND unallocated >= :delta"
    license_item = _update(
        license_key(license_.license_id),
        "SET unallocated = unallocated - :delta, needs_allocation = :false, version = version + :one",
        condition,
        None,
        values,
    )
    site_items = [
        _update_with_attributes(
            site_key(license_.license_id, change.site),
            "SET allocated = :new, remaining = :new - used",
            "active = :true AND allocated = :old AND used <= :new",
            {
                ":new": {"N": str(change.new_allocated)},
                ":old": {"N": str(change.old_allocated)},
                ":true": {"BOOL": True},
            },
        )
        for change in changes
    ]
    try:
        transact([license_item, *site_items])
    except Cancelled as cancelled:
        if not any(cancelled.failed(index) for index in range(len(changes) + 1)):
            raise
        raise AllocationRefused(
            cancelled.old(0) if cancelled.failed(0) else None,
            {
                change.site: cancelled.old(index + 1)
                for index, change in enumerate(changes)
                if cancelled.failed(index + 1)
            },
        ) from cancelled


# -- renewal ------------------------------------------------------------------------------


def licenses_due(now: str) -> list[str]:
    """Ids of the licenses whose term ended at or before ``now``: gsi3, one query per shard.

    gsi3 is sparse: a license leaves it when it is marked expired and comes back when
    billing updates it.
    """
    due: list[str] = []
    for shard in range(RENEWAL_SHARDS):
        kwargs: Item = {
            "TableName": _table(),
            "IndexName": "gsi3",
            "KeyConditionExpression": "gsi3pk = :shard AND gsi3sk < :bound",
            # "$" sorts right after "#": every "<term_end>#<id>" with term_end <= now.
            "ExpressionAttributeValues": {":shard": {"S": f"TERM_END#{shard}"}, ":bound": {"S": f"{now}$"}},
        }
        while True:
            response = _call(client().query, **kwargs)
            due.extend(from_item(item)["pk"].removeprefix("LICENSE#") for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return due


class RenewedSite(NamedTuple):  # a tuple, like AllocationChange: one per site of the license
    read: Site
    allocated: int  # the new term's allocation (``used`` restarts at 0)


def write_renewal(
    read: License,
    renewed: License,
    sites: Sequence[RenewedSite],
    dropped: Sequence[Site],
    expiry_entry: Mapping[str, Any],
) -> None:
    """Start the next term, once: one transaction over the license, its sites and the ledger.

    The license part applies only to the version read (a second, overlapping run fails here
    and changes nothing); each site must still show the ``used`` that was read, so the unused
    credits written to the ledger as expired are exact; inactive sites leave the view.
    """
    sets = {
        "gsi3sk": _index_keys(renewed)["gsi3sk"],
        "term_start": renewed.term_start,
        "term_end": renewed.term_end,
        "credits_total": renewed.credits_total,
        "unallocated": renewed.unallocated,
        "needs_allocation": renewed.needs_allocation,
    }
    license_item = _license_update(read, sets, now=None)
    _write_entries(license_item, read.sites, renewed.sites)
    items = [license_item]
    items.extend(
        _update_with_attributes(
            site_key(read.license_id, renewed_site.read.site),
            "SET allocated = :allocated, used = :zero, remaining = :allocated REMOVE consume_fence",
            "used = :used AND remaining = :remaining",
            {
                ":allocated": {"N": str(renewed_site.allocated)},
                ":zero": {"N": "0"},
                ":used": {"N": str(renewed_site.read.used)},
                ":remaining": {"N": str(renewed_site.read.remaining)},
            },
        )
        for renewed_site in sites
    )
    items.extend(
        {
            "Delete": {
                "TableName": _table(),
                "Key": site_key(read.license_id, site.site),
                "ConditionExpression": "active = :false",
                "ExpressionAttributeValues": {":false": {"BOOL": False}},
            }
        }
        for site in dropped
    )
    items.append(
        _put(
            {
                "pk": f"LEDGER#{read.license_id}",
                "sk": f"EXPIRY#{read.term_start}",
                "type": "expiry",
                "license_id": read.license_id,
                **expiry_entry,
            },
            "attribute_not_exists(pk)",
        )
    )
    try:
        transact(items)
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        if any(code == "ConditionalCheckFailed" for code, _ in cancelled.reasons):
            raise StaleLicense(None) from cancelled
        raise


def fence_consumes(license_id: str, sites: Sequence[str], until: str, version: int | None = None) -> None:
    """Hold the consumes of ``sites`` off until ``until`` (a short lease), so that a write that
    must see settled counters (a renewal, a deactivation) can read them and write once, even
    while the sites keep spending.

    With ``version``, applies only to that version of the license. Consumes refused by the
    fence answer 503 with ``Retry-After``; the fenced write removes the fence, and a writer that
    dies leaves a fence that simply lapses.
    """
    items: list[Item] = []
    if version is not None:
        items.append(
            {
                "ConditionCheck": {
                    "TableName": _table(),
                    "Key": license_key(license_id),
                    "ConditionExpression": "version = :version",
                    "ExpressionAttributeValues": {":version": {"N": str(version)}},
                }
            }
        )
    fence = "SET consume_fence = :until"
    items.extend(
        _update(site_key(license_id, site), fence, "attribute_exists(pk)", None, {":until": until})
        for site in sites
    )
    try:
        transact(items)
    except Cancelled as cancelled:
        if any(code == "ConditionalCheckFailed" for code, _ in cancelled.reasons):
            raise StaleLicense(None) from cancelled
        raise


def mark_expired(read: License) -> None:
    """Take a license that was not paid through out of the renewal index (billing's next
    update puts it back)."""
    try:
        _call(
            client().update_item,
            TableName=_table(),
            Key=license_key(read.license_id),
            UpdateExpression="REMOVE gsi3pk, gsi3sk SET version = version + :one",
            ConditionExpression="version = :version",
            ExpressionAttributeValues={":one": {"N": "1"}, ":version": {"N": str(read.version)}},
        )
    except ConditionFailed as failed:
        raise StaleLicense(None) from failed
