"""The only module that knows DynamoDB: keys, item shapes, conditions and transactions.

One table (``template.yaml``, resource ``CreditsTable``), keys ``pk``/``sk``:

| item          | pk                       | sk                                        |
|---------------|--------------------------|-------------------------------------------|
| license       | ``LICENSE#<license_id>`` | ``LICENSE``                               |
| site          | ``LICENSE#<license_id>`` | ``SITE#<site>``                           |
| key           | ``KEY#<key_hash>``       | ``KEY``                                   |
| consume       | ``LEDGER#<license_id>``  | ``CONSUME#<site>[#<subsite>]#<request_id>`` |
| expiry        | ``LEDGER#<license_id>``  | ``EXPIRY#<term_start>``                   |
| expiry_sites  | ``LEDGER#<license_id>``  | ``EXPIRY#<term_start>#<first site>``      |

The items the stream processor derives from these (usage rollups, statement entries, sent events)
are ``derived.py``'s: the only other module that knows DynamoDB.

Indexes, all on the license item: gsi1 ``ACCOUNT#<account_id>`` / ``LICENSE#<license_id>``
(an account's licenses); gsi2 ``KEY#<key_hash>`` (activation by key, projection ALL); gsi3
``TERM_END#<shard>`` / ``<term_end>#<license_id>`` (renewal; sparse: unpaid licenses leave it).

Access patterns, with the DynamoDB requests each costs:

| use case                      | requests                                                        |
|-------------------------------|-----------------------------------------------------------------|
| license by key (activation)   | Query gsi2 (eventually consistent; a miss: GetItem key item)    |
| activate a new/inactive site  | TransactWriteItems: license (counters) + site                   |
| rotate an active site's token | UpdateItem site, ReturnValues ALL_NEW                           |
| deactivate                    | BatchGetItem license + site, TransactWriteItems license + site  |
| balance                       | BatchGetItem license + site (strongly consistent)               |
| consume                       | TransactWriteItems site + ledger put; contended: GetItem + UpdateItem |
| license + its sites (portal)  | Query ``pk = LICENSE#<id>`` (strongly consistent, paged)        |
| apply                         | that Query, TransactWriteItems license + named sites            |
| licenses of an account        | Query gsi1                                                      |
| licenses whose term ended     | Query gsi3 per shard, ``gsi3sk < now$``                         |
| renew one license of n sites  | that Query; UpdateItem (begin); ceil(n/99) TransactWriteItems   |
|                               | of sites + record; Query of the records; TransactWriteItems     |
|                               | license + record (finish)                                       |

Invariants the conditions keep (never Python): ``remaining >= 0`` and ``used <= allocated`` on
every site, ``unallocated >= 0`` on the license, ``live_active <= site_limit`` and
``nonlive_active <= 10 * site_limit``. The counters move in the same transaction as the site
they count, so they always match the site items. Writes that decide on the whole license
(billing's update, Apply, a renewal's begin and finish) also bump its ``version``; activations
and deactivations do not, so concurrent ones of different sites never retry against each other.
The site item carries a copy of the license's ``expires_at`` (so that a consume checks expiry in
the site item itself: one two-item transaction, 4 WCU, no license read) and the ``term_start`` of
the term its counters belong to (a renewal moves each site once).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from ai_credits.coldstart import permanent
from ai_credits.config import settings
from ai_credits.domain import Grant, LedgerConsume, License, LicenseListing, PendingRenewal, Site
from ai_credits.errors import Unavailable
from ai_credits.rules import NONLIVE_PER_LIVE, ActivationPlan

if TYPE_CHECKING:
    from botocore.session import Session as BotocoreSession
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    BotocoreSession = DynamoDBClient = Any

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


def consume_entry_key(license_id: str, site: str, request_id: str, subsite: str | None = None) -> Item:
    """A consume's entry, keyed by its request id in the scope of its site and, on a network, of
    its sub-site (``#`` appears in neither: normalized sites drop fragments, ids exclude it)."""
    scope = f"{site}#{subsite}" if subsite is not None else site
    return {"pk": {"S": f"LEDGER#{license_id}"}, "sk": {"S": f"CONSUME#{scope}#{request_id}"}}


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


def _count(item: Item, name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def _legacy_counters(item: Item) -> tuple[int, int, int]:
    """The counters of a license item written before they existed, from its old ``sites`` map
    (``migrate_counters`` writes them on the next write that needs them)."""
    entries = item["sites"]["M"].values()
    active = [entry["M"] for entry in entries if entry["M"]["active"]["BOOL"]]
    live = sum(1 for entry in active if entry["environment"]["S"] == "live")
    return live, len(active) - live, len(item["sites"]["M"])


def _renewal_from_attribute(attribute: Item | None) -> PendingRenewal | None:
    if not attribute:
        return None
    values = attribute["M"]
    return PendingRenewal(
        from_term=values["from_term"]["S"],
        term_start=values["term_start"]["S"],
        term_end=values["term_end"]["S"],
        credits_total=int(values["credits_total"]["N"]),
        unallocated=int(values["unallocated"]["N"]),
        needs_allocation=values["needs_allocation"]["BOOL"],
        allocations={site: int(value["N"]) for site, value in values["allocations"]["M"].items()},
    )


def _license_from_item(item: Item) -> License:
    if "live_active" in item:
        live, nonlive, site_items = (
            _count(item, "live_active"),
            _count(item, "nonlive_active"),
            _count(item, "site_items"),
        )
    else:
        live, nonlive, site_items = _legacy_counters(item) if "sites" in item else (0, 0, 0)
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
        live_active=live,
        nonlive_active=nonlive,
        site_items=site_items,
        renewal=_renewal_from_attribute(item.get("renewal")),
        term_credits=_count(item, "term_credits") if "term_credits" in item else None,
        carried_over=_count(item, "carried_over"),
        granted=_count(item, "granted"),
        low_balance_percent=_count(item, "low_balance_percent") if "low_balance_percent" in item else 20,
        counters_stored="live_active" in item,
    )


def _site_from_item(item: Item) -> Site:
    token_hash = item.get("token_hash")
    fence = item.get("consume_fence")
    return Site(
        license_id=item["license_id"]["S"],
        site=item["site"]["S"],
        environment=item["environment"]["S"],
        network=item["network"]["BOOL"],
        active=item["active"]["BOOL"],
        allocated=int(item["allocated"]["N"]),
        used=int(item["used"]["N"]),
        remaining=int(item["remaining"]["N"]),
        held=_count(item, "held"),
        activation=_count(item, "activation"),
        activated_at=item["activated_at"]["S"],
        token_hash=from_attribute(token_hash) if token_hash else None,
        expires_at=item["expires_at"]["S"],
        consume_fence=fence["S"] if fence else "",
        term_start=item["term_start"]["S"] if "term_start" in item else "",
    )


def _listing_from_item(item: Item) -> LicenseListing:
    return LicenseListing(
        license_id=item["license_id"]["S"],
        plan=item["plan"]["S"],
        term_end=item["term_end"]["S"],
        expires_at=item["expires_at"]["S"],
        credits_total=int(item["credits_total"]["N"]),
        unallocated=int(item["unallocated"]["N"]),
    )


def _consume_from_item(item: Item) -> LedgerConsume:
    remaining_after = item.get("remaining_after")
    return LedgerConsume(
        site=item["site"]["S"],
        request_id=item["request_id"]["S"],
        amount=int(item["amount"]["N"]),
        body_hash=item["body_hash"]["S"],
        at=item["at"]["S"],
        feature=item["feature"]["S"] if "feature" in item else None,
        subsite=item["subsite"]["S"] if "subsite" in item else None,
        remaining_after=int(remaining_after["N"]) if remaining_after else None,
        term_start=item["term_start"]["S"] if "term_start" in item else None,
    )


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
        "live_active": license_.live_active,
        "nonlive_active": license_.nonlive_active,
        "site_items": license_.site_items,
        "term_credits": license_.term_credits
        if license_.term_credits is not None
        else license_.credits_total,
        "carried_over": license_.carried_over,
        "granted": license_.granted,
        "low_balance_percent": license_.low_balance_percent,
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
        "term_start": site.term_start or None,  # (never empty: a key condition compares it)
    }


#: What a usage of a site without ``feature`` counts as (API.md, usage).
OTHER_FEATURE = "other"


def charge_marks(feature: str | None, subsite: str | None, now: str) -> tuple[str, dict[str, Any]]:
    """The SET clauses every write that changes a site's ``used`` adds, and their values.

    ``rev`` counts those writes per site item, so the stream processor can apply each change to
    the usage rollups exactly once (a rollup keeps the last ``rev`` it applied); ``charged_*``
    say what the change was for (feature, sub-site, time), which the site item's stream record
    carries to the rollups without a read. Same request, a few bytes more on the site item.
    """
    values: dict[str, Any] = {
        ":one": 1,
        ":no_rev": 0,
        ":charged_feature": feature or OTHER_FEATURE,
        ":charged_subsite": subsite or "",
        ":charged_at": now,
    }
    clauses = (
        "rev = if_not_exists(rev, :no_rev) + :one, charged_feature = :charged_feature,"
        " charged_subsite = :charged_subsite, charged_at = :charged_at"
    )
    return clauses, values


# A site's ``held`` as read (items written before holds have none: 0).
HELD_AS_READ = "(attribute_not_exists(held) OR held = :held)"


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

    Made by botocore itself, not ``boto3.client``: boto3 adds nothing a DynamoDB client uses, and
    importing it costs the first request s3transfer and its concurrency machinery (15-30 ms of a
    cold start on the bench's machine). botocore reads the same environment and configuration.
    """
    # Imported on first use: keeps botocore off the handlers' import path.
    from botocore.config import Config

    config = Config(
        connect_timeout=1,
        read_timeout=1.5,
        retries={"mode": "standard", "total_max_attempts": 3},
        tcp_keepalive=True,
    )
    with permanent():  # it lives as long as the container: see ai_credits.coldstart
        return cast("DynamoDBClient", botocore_session().create_client("dynamodb", config=config))


@cache
def botocore_session() -> BotocoreSession:
    """The process's botocore session: it loads and keeps the service models, so a client made
    again from it (``reset_clients``) costs about 2 ms instead of about 40 ms. Endpoint and
    region are read from the environment when a client is made; credentials once, by the session
    (as the one client of a container keeps them anyway)."""
    from botocore.session import Session

    with permanent():
        return Session()


def reset_clients() -> None:
    """Forget the cached client (tests switch endpoints between moto and DynamoDB Local); the
    next one is made from the same botocore session."""
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

    Each reason is ``(code, old_item_or_None)``, the old item as DynamoDB sent it (attribute
    values); codes are DynamoDB's ("None", "ConditionalCheckFailed", "TransactionConflict" ...).
    """

    def __init__(self, reasons: list[tuple[str, Item | None]]) -> None:
        super().__init__(", ".join(code for code, _ in reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return self.reasons[index][0] == "ConditionalCheckFailed"

    def old(self, index: int) -> Item | None:
        return self.reasons[index][1]


class ConditionFailed(Exception):
    """A single-item write whose condition failed; ``old`` is the item as it was (attribute
    values, or None)."""

    def __init__(self, old: Item | None) -> None:
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
                (reason.get("Code", "None"), reason.get("Item"))
                for reason in response.get("CancellationReasons", [])
            ]
            raise Cancelled(reasons) from error
        if code == "ConditionalCheckFailedException":
            raise ConditionFailed(response.get("Item")) from error
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


def _condition_check(key: Item, condition: str, values: Mapping[str, Any]) -> Item:
    return {
        "ConditionCheck": {
            "TableName": _table(),
            "Key": key,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {name: to_attribute(value) for name, value in values.items()},
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


BATCH_GET_ITEMS = 100  # DynamoDB's limit per BatchGetItem


def _batch_get(keys: Sequence[Item], *, consistent: bool = True, projection: str | None = None) -> list[Item]:
    """The items of ``keys`` that exist: one BatchGetItem per 100 keys (strongly consistent
    unless told otherwise; only the ``projection``'s attributes when given), more only for keys
    DynamoDB leaves unprocessed, which happens under throttling."""
    found: list[Item] = []
    for start in range(0, len(keys), BATCH_GET_ITEMS):
        read: Item = {"Keys": list(keys[start : start + BATCH_GET_ITEMS]), "ConsistentRead": consistent}
        if projection is not None:
            read["ProjectionExpression"] = projection
        request: Item = {_table(): read}
        for _ in range(5):
            response = _call(client().batch_get_item, RequestItems=request)
            found.extend(response.get("Responses", {}).get(_table(), []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise Unavailable("the database is busy; retry shortly")
    return found


def get_license_with_sites(license_id: str) -> tuple[License | None, list[Site]]:
    """The license item and all its site items: one strongly consistent Query (paged if large)."""
    license_, sites, _ = get_license_view(license_id)
    return license_, sites


def get_license_view(license_id: str) -> tuple[License | None, list[Site], list[Grant]]:
    """The license item, its site items and its grants: one strongly consistent Query (paged)."""
    license_: License | None = None
    sites: list[Site] = []
    grants: list[Grant] = []
    for item in _query_partition(f"LICENSE#{license_id}"):
        sort_key = item["sk"]["S"]
        if sort_key.startswith("SITE#"):
            sites.append(_site_from_item(item))
        elif sort_key.startswith("GRANT#"):
            grants.append(_grant_from_item(item))
        elif sort_key == "LICENSE":
            license_ = _license_from_item(item)
    return license_, sites, grants


def _grant_from_item(item: Item) -> Grant:
    return Grant(
        grant_id=item["grant_id"]["S"],
        credits=int(item["credits"]["N"]),
        expires_at=item["expires_at"]["S"] if "expires_at" in item else None,
        granted_at=item["granted_at"]["S"],
        reason=item["reason"]["S"] if "reason" in item else None,
        term_start=item["term_start"]["S"],
        body_hash=item["body_hash"]["S"],
    )


def _query_pages(**kwargs: Any) -> Iterator[Item]:
    """Every item a Query finds on this table, page after page."""
    kwargs["TableName"] = _table()
    while True:
        response = _call(client().query, **kwargs)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _query_partition(pk: str) -> Iterator[Item]:
    return _query_pages(
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )


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


def _raise_for_license(cancelled: Cancelled, index: int = 0) -> None:
    if cancelled.failed(index):
        old = cancelled.old(index)
        raise StaleLicense(_license_from_item(old) if old else None) from cancelled


def migrate_counters(read: License) -> None:
    """Give a license item older than its counters the counters (computed from its old
    ``sites`` map, which goes), once; raises ``StaleLicense`` with the license as it is now."""
    with contextlib.suppress(ConditionFailed):  # another writer migrated (or changed) it first
        _call(
            client().update_item,
            TableName=_table(),
            Key=license_key(read.license_id),
            UpdateExpression="SET live_active = :live, nonlive_active = :nonlive, site_items = :items,"
            " version = version + :one REMOVE sites",
            ConditionExpression="version = :version AND attribute_not_exists(live_active)",
            ExpressionAttributeValues={
                ":live": {"N": str(read.live_active)},
                ":nonlive": {"N": str(read.nonlive_active)},
                ":items": {"N": str(read.site_items)},
                ":one": {"N": "1"},
                ":version": {"N": str(read.version)},
            },
        )
    raise StaleLicense(get_license(read.license_id))


def _counts(sites: Sequence[Site]) -> tuple[int, int]:
    live = sum(1 for site in sites if site.active and site.environment == "live")
    return live, sum(1 for site in sites if site.active) - live


# Sites a license write carries besides the license item (and a key item's put and delete).
_SITES_PER_WRITE = MAX_TRANSACTION_ITEMS - 3


def _site_puts(sites: Sequence[Site], license_: License) -> list[Item]:
    """New site items of the license's current term."""
    return [
        _put(
            site_values(replace(site, term_start=license_.term_start), license_.expires_at),
            "attribute_not_exists(pk)",
        )
        for site in sites
    ]


def write_new_license(license_: License, sites: Sequence[Site]) -> None:
    """Create a license, its key item and its imported sites.

    The license, its key and the first sites are one transaction; more sites follow in
    transactions of their own (``add_sites``), each counting its sites on the license, so the
    counters always match the site items. A crash in between leaves a license with some of its
    imports: billing's retry (an update) adds the rest. Raises ``StaleLicense`` when the license
    already exists and ``KeyTaken`` when another license holds the key.
    """
    first, rest = sites[:_SITES_PER_WRITE], sites[_SITES_PER_WRITE:]
    live, nonlive = _counts(first)
    created = replace(license_, live_active=live, nonlive_active=nonlive, site_items=len(first))
    items = [
        _put(license_values(created), "attribute_not_exists(pk)"),
        _put(
            {"pk": f"KEY#{license_.key_hash}", "sk": "KEY", "type": "key", "license_id": license_.license_id},
            "attribute_not_exists(pk)",
        ),
        *_site_puts(first, license_),
    ]
    try:
        transact(items)
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        if cancelled.failed(1):
            raise KeyTaken() from cancelled
        raise
    add_sites(created, rest)


class KeyTaken(Exception):
    """The license key is already held by another license."""


def add_sites(read: License, sites: Sequence[Site]) -> None:
    """Add imported ``sites`` (not yet in the table) to a license, a transaction per
    ``_SITES_PER_WRITE``: each adds its sites and counts them on the license, under the
    conditions that the counters stay within the limits, the term is the one read and no
    renewal is under way. Raises ``StaleLicense`` when a condition failed (decide again)."""
    for start in range(0, len(sites), _SITES_PER_WRITE):
        chunk = sites[start : start + _SITES_PER_WRITE]
        live, nonlive = _counts(chunk)
        license_item = _update(
            license_key(read.license_id),
            "ADD live_active :live, nonlive_active :nonlive, site_items :items",
            "term_start = :term_start AND attribute_not_exists(renewal)"
            " AND live_active <= :max_live AND nonlive_active <= :max_nonlive",
            None,
            {
                ":live": live,
                ":nonlive": nonlive,
                ":items": len(chunk),
                ":term_start": read.term_start,
                ":max_live": read.site_limit - live,
                ":max_nonlive": NONLIVE_PER_LIVE * read.site_limit - nonlive,
            },
        )
        try:
            transact([license_item, *_site_puts(chunk, read)])
        except Cancelled as cancelled:
            if any(cancelled.failed(index) for index in range(len(chunk) + 1)):
                raise StaleLicense(get_license(read.license_id)) from cancelled
            raise


def write_license_update(
    read: License, updated: License, new_sites: Sequence[Site], sites: Sequence[Site]
) -> None:
    """Apply billing's update made on ``read``: the license item (only if it is still the
    version read), the key item if the key changed, new imported sites (``add_sites``), and the
    copy of ``expires_at`` on every site whose own copy differs — compared site by site, so a
    retry repairs what an interrupted update left behind.
    """
    values = license_values(updated)
    sets = {
        name: values[name]
        for name in (
            "gsi1pk", "gsi2pk", "gsi3pk", "gsi3sk", "account_id", "plan", "site_limit",
            "credits_per_term", "term_months", "term_end", "expires_at", "key_hash", "low_balance_percent",
        )
    }  # fmt: skip
    license_item = _license_update(read, sets, now=None)
    license_item["Update"]["ConditionExpression"] += " AND attribute_not_exists(renewal)"
    items = [license_item]
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
    try:
        transact(items)
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        if updated.key_hash != read.key_hash and cancelled.failed(1):
            raise KeyTaken() from cancelled
        raise
    add_sites(updated, new_sites)
    stale_copies = [
        _update(
            site_key(read.license_id, site.site),
            "SET expires_at = :expires_at",
            "attribute_exists(pk)",
            None,
            {":expires_at": updated.expires_at},
        )
        for site in sites
        if site.expires_at != updated.expires_at
    ]
    for start in range(0, len(stale_copies), MAX_TRANSACTION_ITEMS):
        transact(stale_copies[start : start + MAX_TRANSACTION_ITEMS])


# -- grants -------------------------------------------------------------------------------


def grant_key(license_id: str, grant_id: str) -> Item:
    return {"pk": {"S": f"LICENSE#{license_id}"}, "sk": {"S": f"GRANT#{grant_id}"}}


class GrantExists(Exception):
    """The ``grant_id`` was used already: ``grant`` is what it granted."""

    def __init__(self, grant: Grant) -> None:
        super().__init__(grant.grant_id)
        self.grant = grant


def write_grant(read: License, grant: Grant, live_site: Site | None, now: str) -> None:
    """Apply a grant once (rule 9): the grant's item (its ``grant_id`` unused), the license's
    ``credits_total`` and ``granted`` grow by its credits, in the term read, while the license
    has not expired and no renewal is under way; they go to ``unallocated``, or (rule 1) to the
    active ``live_site`` of a single-site license that needs no allocation, in the same write.

    Raises ``GrantExists`` (the grant_id was used), ``StaleLicense`` or ``SiteChanged``.
    """
    # The live sites as read: rule 9's target (or its absence) is still the one decided on.
    conditions = (
        "term_start = :term_start AND expires_at > :now AND attribute_not_exists(renewal)"
        " AND live_active = :live"
    )
    values: dict[str, Any] = {
        ":credits": grant.credits,
        ":term_start": read.term_start,
        ":now": now,
        ":live": read.live_active,
    }
    update = "ADD credits_total :credits, granted :credits"
    if live_site is None:
        update += ", unallocated :credits"
    else:
        conditions += " AND needs_allocation = :false"
        values[":false"] = False
    license_item = _update(license_key(read.license_id), update, conditions, None, values)
    grant_values = {
        "pk": f"LICENSE#{read.license_id}",
        "sk": f"GRANT#{grant.grant_id}",
        "type": "grant",
        "license_id": read.license_id,
        "grant_id": grant.grant_id,
        "credits": grant.credits,
        "granted": grant.credits,
        "expires_at": grant.expires_at,
        "granted_at": grant.granted_at,
        "reason": grant.reason,
        "term_start": grant.term_start,
        "body_hash": grant.body_hash,
    }
    items = [license_item, _put(grant_values, "attribute_not_exists(pk)")]
    if live_site is not None:
        items.append(
            _update(
                site_key(read.license_id, live_site.site),
                "ADD allocated :credits, remaining :credits",
                "active = :true AND environment = :live"
                " AND (attribute_not_exists(term_start) OR term_start = :term)",
                None,
                {":credits": grant.credits, ":true": True, ":live": "live", ":term": read.term_start},
            )
        )
    try:
        transact(items)
    except Cancelled as cancelled:
        if cancelled.failed(1) and (old := cancelled.old(1)):
            raise GrantExists(_grant_from_item(old)) from cancelled
        _raise_for_license(cancelled)
        if live_site is not None and cancelled.failed(2):
            old_site = cancelled.old(2)
            raise SiteChanged(_site_from_item(old_site) if old_site else None) from cancelled
        raise


def get_grant(license_id: str, grant_id: str) -> Grant | None:
    response = _call(
        client().get_item, TableName=_table(), Key=grant_key(license_id, grant_id), ConsistentRead=True
    )
    return _grant_from_item(response["Item"]) if "Item" in response else None


# -- activation ---------------------------------------------------------------------------


class SiteChanged(Exception):
    """The site's item was not as the decision assumed; ``current`` is the site now (None: absent)."""

    def __init__(self, current: Site | None) -> None:
        super().__init__("site changed since it was read")
        self.current = current


def write_activation(
    read: License,
    plan: ActivationPlan,
    site: Site,
    previous: Site | None,
    now: str,
) -> None:
    """Activate ``site`` (new, inactive until now, or active with another environment or
    network) and count it on the license, atomically.

    The license part does not depend on its version, so activations of different sites never
    retry against each other: it adds the plan's deltas to the active-site counters under the
    condition that a counter that grows is below its limit, requires the key, the term and no
    renewal under way and the license not expired, and (rule 1) moves exactly the unallocated
    credits that were read. The site part requires the site as read. Raises ``StaleLicense``
    (the license as it is now) or ``SiteChanged`` (the site as it is now).
    """
    sets: list[str] = []
    adds: list[str] = []
    conditions = [
        "key_hash = :key_hash",
        "term_start = :term_start",
        "expires_at > :now",
        "attribute_not_exists(renewal)",
    ]
    values: dict[str, Any] = {":key_hash": read.key_hash, ":term_start": read.term_start, ":now": now}
    if plan.live_delta:
        adds.append("live_active :live")
        values[":live"] = plan.live_delta
    if plan.live_delta > 0:
        conditions.append("live_active < :site_limit")
        values[":site_limit"] = read.site_limit
    if plan.nonlive_delta:
        adds.append("nonlive_active :nonlive")
        values[":nonlive"] = plan.nonlive_delta
    if plan.nonlive_delta > 0:
        conditions.append("nonlive_active < :nonlive_limit")
        values[":nonlive_limit"] = NONLIVE_PER_LIVE * read.site_limit
    if previous is None:
        adds.append("site_items :one")
        values[":one"] = 1
    if plan.auto_allocate:
        sets.append("unallocated = :zero")
        conditions += ["unallocated = :moved", "needs_allocation = :false"]
        values |= {":zero": 0, ":moved": plan.auto_allocate, ":false": False}
    if plan.sets_needs_allocation:
        # Unconditional: concurrent first activations all set it (a condition on ``site_items``
        # would make them retry against each other); at worst a first activation decided on a
        # stale read sets it again after an Apply, and the customer applies once more.
        sets.append("needs_allocation = :true")
        values[":true"] = True
    clauses = [f"{verb} {', '.join(parts)}" for verb, parts in (("SET", sets), ("ADD", adds)) if parts]
    update = " ".join(clauses)
    if update:
        license_item = _update(license_key(read.license_id), update, " AND ".join(conditions), None, values)
    else:  # an active site changing between staging and development: the license only checks
        license_item = _condition_check(license_key(read.license_id), " AND ".join(conditions), values)
    if previous is None:
        site_item = _put(site_values(site, read.expires_at), "attribute_not_exists(pk)")
    else:
        site_values_ = {
            ":true": True,
            ":token_hash": site.token_hash,
            ":environment": site.environment,
            ":network": site.network,
            ":moved": plan.auto_allocate,
            ":now": now,
            ":expires_at": read.expires_at,
            ":was_active": previous.active,
            ":zero": 0,
            ":again": 0 if previous.active else 1,  # a re-activation releases the holds before it
            ":was_environment": previous.environment,
            ":was_network": previous.network,
        }
        site_item = _update(
            site_key(site.license_id, site.site),
            "SET active = :true, token_hash = :token_hash, environment = :environment, network = :network,"
            " allocated = allocated + :moved, remaining = remaining + :moved, activated_at = :now,"
            " expires_at = :expires_at, activation = if_not_exists(activation, :zero) + :again"
            " REMOVE deactivated_at",
            "active = :was_active AND environment = :was_environment AND network = :was_network",
            None,
            site_values_,
        )
    try:
        transact([license_item, site_item])
    except Cancelled as cancelled:
        _raise_for_license(cancelled)
        if cancelled.failed(1):
            old = cancelled.old(1)
            raise SiteChanged(_site_from_item(old) if old else None) from cancelled
        raise


def rotate_token(license_id: str, previous: Site, token_hash: str, now: str) -> Site:
    """Give an active site a new token (the old one stops working): one UpdateItem.

    Raises ``SiteChanged`` (the site as it is now) when the site is no longer active with the
    environment and network read, or the license has expired, so the caller can decide again.
    """
    try:
        response = _call(
            client().update_item,
            TableName=_table(),
            Key=site_key(license_id, previous.site),
            UpdateExpression="SET token_hash = :token_hash",
            ConditionExpression="active = :true AND expires_at > :now AND environment = :environment"
            " AND network = :network",
            ExpressionAttributeValues={
                ":token_hash": {"S": token_hash},
                ":true": {"BOOL": True},
                ":now": {"S": now},
                ":environment": {"S": previous.environment},
                ":network": {"BOOL": previous.network},
            },
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ConditionFailed as failed:
        raise SiteChanged(_site_from_item(failed.old) if failed.old else None) from failed
    return _site_from_item(response["Attributes"])


def write_deactivation(read: License, site: Site, now: str, token_hash: str | None) -> None:
    """Deactivate ``site``: its allocation shrinks to ``used``, the rest returns to
    ``unallocated`` and it stops counting against its limit.

    The site part requires the ``used`` and ``remaining`` that were read (a consume in between
    makes it fail and the caller decides again on fresh values) and, for the plugin, the token;
    the license part requires the term and no renewal under way (not the license's version:
    deactivations of different sites do not retry against each other).
    """
    counter = "live_active" if site.environment == "live" else "nonlive_active"
    license_item = _update(
        license_key(read.license_id),
        f"SET unallocated = unallocated + :returned ADD {counter} :minus",
        "term_start = :term_start AND attribute_not_exists(renewal)",
        None,
        {":returned": site.remaining + site.held, ":minus": -1, ":term_start": read.term_start},
    )
    condition = f"active = :true AND used = :used AND remaining = :remaining AND {HELD_AS_READ}"
    values: dict[str, Any] = {
        ":false": False,
        ":true": True,
        ":used": site.used,
        ":zero": 0,
        ":now": now,
        ":remaining": site.remaining,
        ":held": site.held,
    }
    if token_hash is not None:
        condition += " AND token_hash = :token_hash"
        values[":token_hash"] = token_hash
    site_item = _update(
        site_key(site.license_id, site.site),
        "SET active = :false, allocated = :used, remaining = :zero, held = :zero, deactivated_at = :now"
        " REMOVE token_hash, consume_fence",
        condition,
        None,
        values,
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
    site: Site | None  # the site as it was, when it failed and exists
    entry: LedgerConsume | None  # the existing ledger entry when the request_id was used


def charge(
    license_id: str,
    site: str,
    token_hash: str,
    amount: int,
    request_id: str,
    entry: Mapping[str, Any],
    now: str,
    subsite: str | None,
    term_start: str,
    expected_remaining: int | None = None,
) -> ConsumeRefused | None:
    """Spend ``amount`` from the site and write the ledger entry: one TransactWriteItems.

    The site's condition checks the token, that the license has not expired (the site's copy
    of ``expires_at``), ``remaining >= amount`` and, for a sub-site, that the activation is a
    network; the entry's condition makes the request_id single-use (per site, sub-site). With
    ``expected_remaining`` the site must also hold exactly that much (compare-and-set): the answer's
    ``remaining``,
    ``expected_remaining - amount``, is then known without a read and goes into the entry as
    ``remaining_after`` in the same write. Returns ``None`` when charged, else what each failed
    condition saw.
    """
    condition = (
        "token_hash = :token_hash AND expires_at > :now AND remaining >= :amount"
        " AND (attribute_not_exists(consume_fence) OR consume_fence <= :now)"
    )
    values: dict[str, Any] = {":token_hash": token_hash, ":now": now, ":amount": amount}
    if subsite is not None:
        condition += " AND network = :true"
        values[":true"] = True
    # The site must still be in the term the caller saw it in, which the entry records (so a
    # refund knows the term a charge belongs to, whenever the site's renewal moved it on).
    if term_start:
        condition += " AND term_start = :term_start"
        values[":term_start"] = term_start
    else:
        condition += " AND attribute_not_exists(term_start)"
    values_of_entry = {
        **{
            name: value["S"]
            for name, value in consume_entry_key(license_id, site, request_id, subsite).items()
        },
        "type": "consume",
        "license_id": license_id,
        **entry,
        "term_start": term_start or None,
    }
    if expected_remaining is not None:
        condition += " AND remaining = :expected"
        values[":expected"] = expected_remaining
        values_of_entry["remaining_after"] = expected_remaining - amount
    charged, charge_values = charge_marks(entry.get("feature"), subsite, now)
    site_update = _update(
        site_key(license_id, site),
        f"SET remaining = remaining - :amount, used = used + :amount, {charged}",
        condition,
        None,
        {**values, **charge_values},
    )
    ledger_put = _put(values_of_entry, "attribute_not_exists(pk)")
    try:
        transact([site_update, ledger_put])
    except Cancelled as cancelled:
        if not (cancelled.failed(0) or cancelled.failed(1)):
            raise
        old_site, old_entry = cancelled.old(0), cancelled.old(1)
        return ConsumeRefused(
            site_failed=cancelled.failed(0),
            site=_site_from_item(old_site) if cancelled.failed(0) and old_site else None,
            entry=_consume_from_item(old_entry) if cancelled.failed(1) and old_entry else None,
        )
    return None


def read_for_consume(
    license_id: str, site: str, request_id: str, subsite: str | None
) -> tuple[Site | None, LedgerConsume | None]:
    """The site and the request's ledger entry (``None`` when absent): one strongly
    consistent BatchGetItem, for a consume that has no recent ``remaining`` of the site."""
    keys = [site_key(license_id, site), consume_entry_key(license_id, site, request_id, subsite)]
    found = _batch_get(keys)
    site_item = next((item for item in found if item["pk"]["S"].startswith("LICENSE#")), None)
    entry = next((item for item in found if item["pk"]["S"].startswith("LEDGER#")), None)
    return (
        _site_from_item(site_item) if site_item else None,
        _consume_from_item(entry) if entry else None,
    )


def record_answer(license_id: str, site: str, request_id: str, subsite: str | None, remaining: int) -> None:
    """Keep a charge's answer (``remaining`` right after it) with its ledger entry, once.

    Best effort: the charge is already committed and answered; if this write is throttled or
    times out, a replay answers the pool's current ``remaining`` instead.
    """
    try:
        _call(
            client().update_item,
            TableName=_table(),
            Key=consume_entry_key(license_id, site, request_id, subsite),
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


# -- holds --------------------------------------------------------------------------------

HOLD_SHARDS = 8  # partitions of the open holds' index (gsi4), queried one by one by the sweeper


def _of_activation(activation: int) -> str:
    """The site is still the activation a hold was placed on (``:activation``; items older than
    the counter have none: 0)."""
    if activation:
        return "activation = :activation"
    return "(attribute_not_exists(activation) OR activation = :activation)"


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold (rule 11): its entry shares the consumes' key (one request id namespace); a capture
    of more than 0 turns it into that consume. ``term_start`` and ``activation`` are the site's
    when it was placed: a site renewed or deactivated since has released it."""

    hold_id: str
    site: str
    subsite: str | None
    held: int
    feature: str | None
    body_hash: str
    expires_at: str
    status: str  # open, captured, released, expired (as written; see services.holds.status_of)
    term_start: str
    activation: int
    remaining_after: int  # the placing's answer
    captured: int | None = None
    released: int | None = None
    answer_remaining: int | None = None  # the capture's or release's answer


def _hold_from_item(item: Item) -> Hold:
    def number(name: str) -> int | None:
        return int(item[name]["N"]) if name in item else None

    return Hold(
        hold_id=item["request_id"]["S"],
        site=item["site"]["S"],
        subsite=item["subsite"]["S"] if "subsite" in item else None,
        held=int(item["held"]["N"]),
        feature=item["feature"]["S"] if "feature" in item else None,
        body_hash=item["hold_hash"]["S"],
        expires_at=item["hold_expires_at"]["S"],
        status=item["hold_status"]["S"],
        term_start=item["term_start"]["S"] if "term_start" in item else "",
        activation=_count(item, "activation"),
        remaining_after=int(item["remaining_after"]["N"]),
        captured=number("captured"),
        released=number("released"),
        answer_remaining=number("answer_remaining"),
    )


def read_for_hold(
    license_id: str, site: str, hold_id: str, subsite: str | None
) -> tuple[Site | None, Hold | None, bool]:
    """The site and the hold (None where absent), and whether a consume holds that id: one
    strongly consistent BatchGetItem."""
    keys = [site_key(license_id, site), consume_entry_key(license_id, site, hold_id, subsite)]
    found = _batch_get(keys)
    site_item = next((item for item in found if item["pk"]["S"].startswith("LICENSE#")), None)
    entry = next((item for item in found if item["pk"]["S"].startswith("LEDGER#")), None)
    hold = _hold_from_item(entry) if entry is not None and "hold_status" in entry else None
    return _site_from_item(site_item) if site_item else None, hold, entry is not None and hold is None


def hold_subsites(license_id: str, site: str, hold_id: str) -> list[str | None]:
    """The sub-sites (None: the network itself) of a site whose entries use ``hold_id``: for a
    capture, release or read that names no sub-site (a Query of the site's entries)."""
    kwargs: Item = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "FilterExpression": "request_id = :id AND attribute_exists(hold_status)",
        "ExpressionAttributeValues": {
            ":pk": {"S": f"LEDGER#{license_id}"},
            ":prefix": {"S": f"CONSUME#{site}#"},
            ":id": {"S": hold_id},
        },
        "ProjectionExpression": "subsite",
        "ConsistentRead": True,
    }
    subsites: list[str | None] = []
    while True:
        response = _call(client().query, **kwargs)
        subsites.extend(
            item["subsite"]["S"] if "subsite" in item else None for item in response.get("Items", [])
        )
        if "LastEvaluatedKey" not in response:
            return subsites
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _hold_index_keys(license_id: str, sort_key: str, expires_at: str) -> dict[str, str]:
    return {
        "gsi4pk": f"HOLDS#{sum(license_id.encode()) % HOLD_SHARDS}",
        "gsi4sk": f"{expires_at}#{license_id}#{sort_key}",
    }


def _site_of_hold(site: Site, token_hash: str | None, extra: str = "") -> tuple[str, dict[str, Any]]:
    """The site's condition for a hold's write: still the activation and the term it was read in
    (a deactivation or a renewal released its holds), with the ``remaining`` read (so the answer
    is exact) and, for the plugin, its token."""
    condition = f"active = :true AND {_of_activation(site.activation)} AND remaining = :remaining{extra}"
    values: dict[str, Any] = {":true": True, ":activation": site.activation, ":remaining": site.remaining}
    if site.term_start:
        condition += " AND term_start = :term_start"
        values[":term_start"] = site.term_start
    else:
        condition += " AND attribute_not_exists(term_start)"
    if token_hash is not None:
        condition += " AND token_hash = :token_hash"
        values[":token_hash"] = token_hash
    return condition, values


def write_hold(license_id: str, site: Site, token_hash: str, hold: Hold, now: str) -> None:
    """Place a hold: the site's ``remaining`` moves to ``held`` (at least what is asked must be
    there, the license not expired, no fence) and the hold's entry is written (its id unused),
    in one transaction. Raises ``Cancelled`` when a condition failed."""
    condition, values = _site_of_hold(
        site,
        token_hash,
        " AND remaining >= :amount AND expires_at > :now"
        " AND (attribute_not_exists(consume_fence) OR consume_fence <= :now)",
    )
    if hold.subsite is not None:
        condition += " AND network = :true"
    site_update = _update(
        site_key(license_id, site.site),
        "SET remaining = remaining - :amount, held = if_not_exists(held, :zero) + :amount",
        condition,
        None,
        {**values, ":amount": hold.held, ":now": now, ":zero": 0},
    )
    key = consume_entry_key(license_id, site.site, hold.hold_id, hold.subsite)
    entry = {
        **{name: value["S"] for name, value in key.items()},
        **_hold_index_keys(license_id, key["sk"]["S"], hold.expires_at),
        "type": "hold",
        "license_id": license_id,
        "site": site.site,
        "subsite": hold.subsite,
        "request_id": hold.hold_id,
        "hold_id": hold.hold_id,
        "held": hold.held,
        "feature": hold.feature,
        "hold_hash": hold.body_hash,
        # A consume replaying this id compares its body with this: never equal (409).
        "body_hash": f"hold:{hold.body_hash}",
        "amount": hold.held,
        "at": now,
        "hold_expires_at": hold.expires_at,
        "hold_status": "open",
        "term_start": site.term_start or None,
        "activation": site.activation,
        "remaining_after": hold.remaining_after,
    }
    transact([site_update, _put(entry, "attribute_not_exists(pk)")])


def write_capture(license_id: str, site: Site, token_hash: str, hold: Hold, captured: int, now: str) -> None:
    """Capture an open hold: ``captured`` is charged (used), the rest returns to ``remaining``;
    a capture of more than 0 makes the entry that consume (ledger, refunds). One transaction, only
    while the hold is open and unexpired and the site is the one it was placed on."""
    released = hold.held - captured
    answer = site.remaining + released
    sets = "SET hold_status = :captured, captured = :amount, released = :released, answer_remaining = :answer"
    if captured:
        sets += ", #type = :consume, amount = :amount, captured_at = :now"
    entry_update = _update(
        consume_entry_key(license_id, site.site, hold.hold_id, hold.subsite),
        sets + " REMOVE gsi4pk, gsi4sk",
        "hold_status = :open AND hold_expires_at > :now",
        {"#type": "type"} if captured else None,
        {
            ":captured": "captured",
            ":amount": captured,
            ":released": released,
            ":answer": answer,
            ":open": "open",
            ":now": now,
            **({":consume": "consume"} if captured else {}),
        },
    )
    condition, values = _site_of_hold(site, token_hash, " AND held >= :held AND expires_at > :now")
    charged, charge_values = charge_marks(hold.feature, hold.subsite, now) if captured else ("", {})
    site_update = _update(
        site_key(license_id, site.site),
        "SET held = held - :held, used = used + :amount, remaining = remaining + :released"
        + (f", {charged}" if charged else ""),
        condition,
        None,
        {
            **values,
            ":held": hold.held,
            ":amount": captured,
            ":released": released,
            ":now": now,
            **charge_values,
        },
    )
    transact([entry_update, site_update])


def write_release(
    license_id: str, site: Site | None, hold: Hold, status: str, now: str, token_hash: str | None = None
) -> None:
    """Close an open hold as ``status`` (released, or expired past its time): its credits return
    to the site's ``remaining`` when ``site`` is given (the activation and term it was placed
    on; with ``token_hash``, still that token's), else (the site moved on: its renewal or
    deactivation released them) only the hold closes. Once: only while the hold is open."""
    answer = site.remaining + hold.held if site is not None else None
    entry_update = _update(
        consume_entry_key(license_id, hold.site, hold.hold_id, hold.subsite),
        "SET hold_status = :status, released = :held"
        + (", answer_remaining = :answer" if answer is not None else "")
        + " REMOVE gsi4pk, gsi4sk",
        "hold_status = :open",
        None,
        {
            ":status": status,
            ":held": hold.held,
            ":open": "open",
            **({":answer": answer} if answer is not None else {}),
        },
    )
    items = [entry_update]
    if site is not None:
        condition, values = _site_of_hold(site, token_hash, " AND held >= :held")
        items.append(
            _update(
                site_key(license_id, site.site),
                "SET held = held - :held, remaining = remaining + :held",
                condition,
                None,
                {**values, ":held": hold.held},
            )
        )
    transact(items)


@dataclass(frozen=True, slots=True)
class ExpiredHold:
    """An open hold past its time, as the sweeper's index shows it."""

    license_id: str
    site: str
    subsite: str | None
    hold_id: str
    held: int
    term_start: str
    activation: int


def expired_holds(now: str) -> Iterator[ExpiredHold]:
    """Every open hold whose ``expires_at`` is at or before ``now``: gsi4, one Query per shard
    (the index is sparse: a hold leaves it when it closes)."""
    for shard in range(HOLD_SHARDS):
        kwargs: Item = {
            "TableName": _table(),
            "IndexName": "gsi4",
            "KeyConditionExpression": "gsi4pk = :shard AND gsi4sk < :bound",
            "ExpressionAttributeValues": {":shard": {"S": f"HOLDS#{shard}"}, ":bound": {"S": f"{now}$"}},
        }
        while True:
            response = _call(client().query, **kwargs)
            for item in response.get("Items", []):
                yield ExpiredHold(
                    license_id=item["license_id"]["S"],
                    site=item["site"]["S"],
                    subsite=item["subsite"]["S"] if "subsite" in item else None,
                    hold_id=item["hold_id"]["S"],
                    held=int(item["held"]["N"]),
                    term_start=item["term_start"]["S"] if "term_start" in item else "",
                    activation=_count(item, "activation"),
                )
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def expire_hold(hold: ExpiredHold) -> bool:
    """Close an expired open hold once (overlapping sweeps: one wins): its credits return to the
    site when it is still the activation and term it was placed on, else only the hold closes
    (as released: the site's renewal or deactivation released it). False: it was closed already."""
    key = consume_entry_key(hold.license_id, hold.site, hold.hold_id, hold.subsite)
    of_site = f"active = :true AND {_of_activation(hold.activation)} AND held >= :held AND " + (
        "term_start = :term_start" if hold.term_start else "attribute_not_exists(term_start)"
    )
    site_values: dict[str, Any] = {":true": True, ":activation": hold.activation, ":held": hold.held}
    if hold.term_start:
        site_values[":term_start"] = hold.term_start
    for status, with_site in (("expired", True), ("released", False)):
        items = [
            _update(
                key,
                "SET hold_status = :status, released = :held REMOVE gsi4pk, gsi4sk",
                "hold_status = :open",
                None,
                {":status": status, ":held": hold.held, ":open": "open"},
            )
        ]
        if with_site:
            items.append(
                _update(
                    site_key(hold.license_id, hold.site),
                    "SET held = held - :held, remaining = remaining + :held",
                    of_site,
                    None,
                    site_values,
                )
            )
        try:
            transact(items)
            return True
        except Cancelled as cancelled:
            if cancelled.failed(0):
                return False  # closed already (a capture, a release, another sweep)
            if not (with_site and cancelled.failed(1)):
                raise
    return False


# -- refunds ------------------------------------------------------------------------------


def refund_key(license_id: str, site: str, request_id: str, subsite: str | None = None) -> Item:
    """The refund of a consume: at most one per consume (its key is the consume's)."""
    scope = f"{site}#{subsite}" if subsite is not None else site
    return {"pk": {"S": f"LEDGER#{license_id}"}, "sk": {"S": f"REFUND#{scope}#{request_id}"}}


@dataclass(frozen=True, slots=True)
class Refund:
    refunded: int
    remaining: int  # the site's ``remaining`` right after it: the first answer, for replays


def read_for_refund(
    license_id: str, site: str, request_id: str, subsite: str | None
) -> tuple[License | None, Site | None, LedgerConsume | None, Refund | None]:
    """The license, the site, the consume and its refund (None where absent): one strongly
    consistent BatchGetItem."""
    keys = [
        license_key(license_id),
        site_key(license_id, site),
        consume_entry_key(license_id, site, request_id, subsite),
        refund_key(license_id, site, request_id, subsite),
    ]
    found = {item["sk"]["S"].split("#", 1)[0]: item for item in _batch_get(keys)}
    license_item, site_item = found.get("LICENSE"), found.get("SITE")
    consume, refund = found.get("CONSUME"), found.get("REFUND")
    return (
        _license_from_item(license_item) if license_item else None,
        _site_from_item(site_item) if site_item else None,
        _consume_from_item(consume) if consume and consume["type"]["S"] == "consume" else None,
        Refund(int(refund["refunded"]["N"]), int(refund["remaining_after"]["N"])) if refund else None,
    )


def write_refund(
    read: License, site: Site, consume: LedgerConsume, amount: int, reason: str | None, now: str
) -> None:
    """Give back ``amount`` of ``consume`` to its site (rule 12), once: the refund's record (the
    consume's key: at most one), and the site's ``used`` falls by it, while the site is still in
    the consume's term and holds the counters read (so the answer's ``remaining`` is exact). An
    active site gets the credits in ``remaining``; an inactive one gives them to the license's
    ``unallocated`` (its allocation is what it used). Raises ``Cancelled`` when a condition failed.
    """
    term = {":term": site.term_start} if site.term_start else {}
    of_term = "term_start = :term" if site.term_start else "attribute_not_exists(term_start)"
    charged, charge_values = charge_marks(consume.feature, consume.subsite, now)
    read_values = {
        ":amount": amount,
        ":used": site.used,
        ":remaining": site.remaining,
        **term,
        **charge_values,
    }
    items: list[Item] = []
    if site.active:
        items.append(
            _update(
                site_key(read.license_id, site.site),
                f"SET used = used - :amount, remaining = remaining + :amount, {charged}",
                f"active = :true AND used = :used AND remaining = :remaining AND {of_term}",
                None,
                {**read_values, ":true": True},
            )
        )
        remaining_after = site.remaining + amount
    else:
        items.append(
            _update(
                site_key(read.license_id, site.site),
                f"SET used = used - :amount, allocated = allocated - :amount, {charged}",
                f"active = :false AND used = :used AND remaining = :remaining AND {of_term}",
                None,
                {**read_values, ":false": False},
            )
        )
        items.append(
            _update(
                license_key(read.license_id),
                "ADD unallocated :amount",
                "term_start = :license_term AND attribute_not_exists(renewal)",
                None,
                {":amount": amount, ":license_term": read.term_start},
            )
        )
        remaining_after = 0
    record = {
        **{
            name: value["S"]
            for name, value in refund_key(
                read.license_id, site.site, consume.request_id, consume.subsite
            ).items()
        },
        "type": "refund",
        "license_id": read.license_id,
        "site": site.site,
        "subsite": consume.subsite,
        "request_id": consume.request_id,
        "feature": consume.feature,
        "refunded": amount,
        "remaining_after": remaining_after,
        "reason": reason,
        "term_start": site.term_start or None,
        "at": now,
    }
    transact([_put(record, "attribute_not_exists(pk)"), *items])


# -- portal -------------------------------------------------------------------------------


def licenses_of_account(account_id: str) -> list[LicenseListing]:
    """The licenses of an account (gsi1, eventually consistent: a list, not a balance)."""
    kwargs: Item = {
        "TableName": _table(),
        "IndexName": "gsi1",
        "KeyConditionExpression": "gsi1pk = :account",
        "ExpressionAttributeValues": {":account": {"S": f"ACCOUNT#{account_id}"}},
    }
    licenses: list[LicenseListing] = []
    while True:
        response = _call(client().query, **kwargs)
        licenses.extend(_listing_from_item(item) for item in response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return licenses
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


class AllocationChange(NamedTuple):  # a tuple: an Apply makes up to 98, a third of a dataclass's cost
    site: str
    old_allocated: int
    new_allocated: int


class AllocationRefused(Exception):
    """An Apply the database refused: the license and sites as they were (None where they passed)."""

    def __init__(self, license_: Item | None, sites: dict[str, Item | None]) -> None:
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
    condition = "term_start = :term_start AND expires_at > :now AND attribute_not_exists(renewal)"
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
            # remaining moves by the change (held credits stay held); it may not fall below 0,
            # which is the allocation not going below used + held.
            "SET allocated = :new, remaining = remaining + :change",
            "active = :true AND allocated = :old AND remaining >= :fall",
            {
                ":new": {"N": str(change.new_allocated)},
                ":old": {"N": str(change.old_allocated)},
                ":change": {"N": str(change.new_allocated - change.old_allocated)},
                ":fall": {"N": str(max(0, change.old_allocated - change.new_allocated))},
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


def _renewal_attribute(renewal: PendingRenewal) -> Item:
    return to_attribute(
        {
            "from_term": renewal.from_term,
            "term_start": renewal.term_start,
            "term_end": renewal.term_end,
            "credits_total": renewal.credits_total,
            "unallocated": renewal.unallocated,
            "needs_allocation": renewal.needs_allocation,
            "allocations": renewal.allocations,
        }
    )


def begin_renewal(read: License, renewal: PendingRenewal) -> None:
    """Record the decided next term on the license, once per term: only while no renewal is
    under way and on the license exactly as read — its version, and the figures that writes
    which do not bump it move (activations and deactivations: the site counters; grants and
    refunds: the totals), so the sites and grants the decision was made on are all there are.
    ``StaleLicense`` otherwise. From then on, writes that change the license's totals wait for
    ``finish_renewal``."""
    try:
        _call(
            client().update_item,
            TableName=_table(),
            Key=license_key(read.license_id),
            UpdateExpression="SET renewal = :renewal, version = version + :one",
            ConditionExpression="version = :version AND attribute_not_exists(renewal)"
            " AND live_active = :live AND nonlive_active = :nonlive AND site_items = :items"
            " AND unallocated = :unallocated AND credits_total = :total",
            ExpressionAttributeValues={
                ":renewal": _renewal_attribute(renewal),
                ":one": {"N": "1"},
                ":version": {"N": str(read.version)},
                ":live": {"N": str(read.live_active)},
                ":nonlive": {"N": str(read.nonlive_active)},
                ":items": {"N": str(read.site_items)},
                ":unallocated": {"N": str(read.unallocated)},
                ":total": {"N": str(read.credits_total)},
            },
        )
    except ConditionFailed as failed:
        raise StaleLicense(None) from failed


class RollRefused(Exception):
    """Sites of a roll whose conditions failed: each as it is now (None: no longer there)."""

    def __init__(self, sites: dict[str, Site | None]) -> None:
        super().__init__(f"{len(sites)} site(s) changed")
        self.sites = sites


# Sites a roll moves in one transaction, beside its ledger record.
ROLL_BATCH = MAX_TRANSACTION_ITEMS - 1


def expiry_record_key(license_id: str, term_start: str, first_site: str | None = None) -> Item:
    """The ledger's record of a term's end: ``EXPIRY#<term_start>`` for the license's totals and
    ``EXPIRY#<term_start>#<first site>`` for each batch of sites a renewal rolled."""
    suffix = f"#{first_site}" if first_site is not None else ""
    return {"pk": {"S": f"LEDGER#{license_id}"}, "sk": {"S": f"EXPIRY#{term_start}{suffix}"}}


def roll_sites(license_id: str, renewal: PendingRenewal, sites: Sequence[Site], now: str) -> None:
    """Move up to ``ROLL_BATCH`` sites into the renewal's term, once each, with the ledger
    record of what they leave behind, in one transaction.

    An active site gets the new term's allocation, ``used`` 0, and loses its consume fence; an
    inactive one is deleted (it leaves the view with its term). Each site must still be of the
    ended term (so it moves once) with the ``used`` and ``remaining`` read (so the record is
    exact while consumes race the renewal). Raises ``RollRefused`` with the sites that were not.
    """
    from_term = {":from": {"S": renewal.from_term}}
    of_ended_term = "(attribute_not_exists(term_start) OR term_start = :from)"
    as_read = f"used = :used AND remaining = :remaining AND {HELD_AS_READ}"
    items: list[Item] = []
    for site in sites:
        read = {
            ":used": {"N": str(site.used)},
            ":remaining": {"N": str(site.remaining)},
            ":held": {"N": str(site.held)},
            **from_term,
        }
        if site.active:
            allocated = {"N": str(renewal.allocations.get(site.site, 0))}
            items.append(
                _update_with_attributes(
                    site_key(license_id, site.site),
                    "SET allocated = :allocated, used = :zero, held = :zero, remaining = :allocated,"
                    " term_start = :to REMOVE consume_fence",
                    f"active = :true AND {as_read} AND {of_ended_term}",
                    {
                        ":allocated": allocated,
                        ":zero": {"N": "0"},
                        ":to": {"S": renewal.term_start},
                        ":true": {"BOOL": True},
                        **read,
                    },
                )
            )
        else:
            items.append(
                {
                    "Delete": {
                        "TableName": _table(),
                        "Key": site_key(license_id, site.site),
                        "ConditionExpression": f"active = :false AND {as_read} AND {of_ended_term}",
                        "ExpressionAttributeValues": {":false": {"BOOL": False}, **read},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
    record = {
        **{
            name: value["S"]
            for name, value in expiry_record_key(license_id, renewal.from_term, sites[0].site).items()
        },
        "type": "expiry_sites",
        "license_id": license_id,
        "term_start": renewal.from_term,
        "sites": {site.site: site.remaining + site.held for site in sites if site.active},  # what expires
        "used": {site.site: site.used for site in sites},  # per site of the term, for audits
        "at": now,
    }
    try:
        transact([*items, _put(record, "attribute_not_exists(pk)")])
    except Cancelled as cancelled:
        failed = {
            site.site: (_site_from_item(old) if (old := cancelled.old(index)) else None)
            for index, site in enumerate(sites)
            if cancelled.failed(index)
        }
        if failed or cancelled.failed(len(sites)):
            raise RollRefused(failed) from cancelled
        raise


def expiry_records(license_id: str, term_start: str) -> list[dict[str, Any]]:
    """The records of the sites a renewal of the term ``term_start`` rolled (strongly consistent)."""
    kwargs: Item = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {
            ":pk": {"S": f"LEDGER#{license_id}"},
            ":prefix": {"S": f"EXPIRY#{term_start}#"},
        },
        "ConsistentRead": True,
    }
    records: list[dict[str, Any]] = []
    while True:
        response = _call(client().query, **kwargs)
        records.extend(from_item(item) for item in response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return records
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def finish_renewal(
    read: License,
    site_items: int,
    expiry_entry: Mapping[str, Any],
    carried: Mapping[str, int],
    live_site: str | None,
) -> None:
    """Start the renewal's term on the license (the commit point: readers see the new term
    everywhere) with the license's ledger record of the ended term, once: only on the version
    read and while that renewal is the one under way (``StaleLicense`` otherwise).

    The credits ``carried`` over (rule 10, by grant) join the new term here: ``credits_total``
    and the grants' ``credits`` and ``term_start`` move with them, and they go to ``unallocated``
    or, by rule 1, to the single-site license's ``live_site``.
    """
    renewal = read.renewal
    assert renewal is not None
    carried_total = sum(carried.values())
    renewed = replace(read, term_end=renewal.term_end)
    sets = {
        "gsi3sk": _index_keys(renewed)["gsi3sk"],
        "term_start": renewal.term_start,
        "term_end": renewal.term_end,
        "credits_total": renewal.credits_total + carried_total,
        "term_credits": renewal.credits_total,
        "carried_over": carried_total,
        "granted": 0,
        "unallocated": renewal.unallocated + (0 if live_site is not None else carried_total),
        "needs_allocation": renewal.needs_allocation,
        "site_items": site_items,
        # When the term started (the statement dates its term and carry_over entries by it).
        "renewed_at": expiry_entry["at"],
    }
    license_item = _license_update(read, sets, now=None)
    update = license_item["Update"]
    update["UpdateExpression"] += " REMOVE #renewal"
    update["ExpressionAttributeNames"]["#renewal"] = "renewal"
    update["ConditionExpression"] += " AND #renewal.term_start = :renewing"
    update["ExpressionAttributeValues"][":renewing"] = {"S": renewal.term_start}
    record = {
        **{name: value["S"] for name, value in expiry_record_key(read.license_id, read.term_start).items()},
        "type": "expiry",
        "license_id": read.license_id,
        **expiry_entry,
    }
    items = [license_item, _put(record, "attribute_not_exists(pk)")]
    items.extend(
        _update(
            grant_key(read.license_id, grant_id),
            "SET credits = :credits, term_start = :to",
            "term_start = :from",
            None,
            {":credits": credits, ":to": renewal.term_start, ":from": renewal.from_term},
        )
        for grant_id, credits in sorted(carried.items())
    )
    if live_site is not None and carried_total:
        items.append(
            _update(
                site_key(read.license_id, live_site),
                "ADD allocated :credits, remaining :credits",
                "active = :true AND term_start = :to",
                None,
                {":credits": carried_total, ":true": True, ":to": renewal.term_start},
            )
        )
    if len(items) > MAX_TRANSACTION_ITEMS:
        raise ValueError(
            f"{len(carried)} grants carried over: at most {MAX_TRANSACTION_ITEMS - 3} per renewal"
        )
    try:
        transact(items)
    except Cancelled as cancelled:
        if any(code == "ConditionalCheckFailed" for code, _ in cancelled.reasons):
            raise StaleLicense(None) from cancelled
        raise


def fence_consumes(license_id: str, sites: Sequence[str], until: str) -> None:
    """Hold the consumes of ``sites`` off until ``until`` (a short lease), so that a write that
    must see settled counters (a renewal's batch, a deactivation) can read them and write once,
    even while the sites keep spending.

    Consumes refused by the fence answer 503 with ``Retry-After``; the fenced write removes the
    fence, and a writer that dies leaves a fence that simply lapses.
    """
    fence = "SET consume_fence = :until"
    transact(
        [
            _update(site_key(license_id, site), fence, "attribute_exists(pk)", None, {":until": until})
            for site in sites
        ]
    )


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
