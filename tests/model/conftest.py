"""moto, made fast enough for thousands of steps through the handlers (this folder only).

Two costs of moto 5.2 dominate a model step, and both can go without changing what moto answers:

- Every DynamoDB response goes through moto's generic, shape-driven serializer: each attribute
  value of each item walks the ten members of ``AttributeValue`` through a chain of alias lookups
  (one Query of a license partition: ~15 ms). DynamoDB's wire format for an attribute value *is*
  the dict moto keeps (``{"N": "5"}``, ``{"M": {...}}``), so such dicts are handed through as they
  are, the way moto already treats document types. ``_check_identical`` proves, before the patch
  is used, that both ways give the same JSON for the item shapes this service stores.
- ``TransactWriteItems`` deep-copies the whole table once *per item* of the transaction (for its
  rollback), all before it applies anything: identical copies. Here the first copy is reused for
  the other items of the same transaction.
- Every ``UpdateItem`` parses its update expression twice, and the service sends the same few
  expressions again and again. The parse is a pure function of the string and moto never changes
  the tree it returns (its validator works on a deep copy), so parses are remembered.
- Every request lists the methods of moto's response class (``inspect.getmembers``) to find its
  action: the list of a class is remembered.

Both patches last only while a test of this folder runs (``monkeypatch``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

_PLAIN_KINDS = frozenset({"S", "N", "BOOL", "NULL", "M", "L", "SS", "NS"})


def _is_plain(value: Any) -> bool:
    """An attribute value in wire format without binary members (those need base64)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind not in _PLAIN_KINDS:
        return False
    if kind == "M":
        return isinstance(inner, dict) and all(_is_plain(member) for member in inner.values())
    if kind == "L":
        return isinstance(inner, list) and all(_is_plain(member) for member in inner)
    return True


def _fast_structure(generic: Any) -> Any:
    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue" and _is_plain(value):
            serialized[key] = value
            return
        generic(self, serialized, value, shape, key)

    serialize_structure.fast = True  # type: ignore[attr-defined]
    return serialize_structure


def _serialize(serializer_cls: Any, operation: str, result: dict[str, Any]) -> Any:
    from moto.core.serialize import XFormedAttributePicker
    from moto.core.utils import get_service_model

    serializer = serializer_cls(
        operation_model=get_service_model("dynamodb").operation_model(operation),
        pretty_print=False,
        value_picker=XFormedAttributePicker(),
    )
    return json.loads(serializer.serialize(result)["body"])


def _check_identical(fast: Any, generic: Any) -> None:
    """Both ways serialize a Query of the item shapes this service stores to the same JSON."""
    from moto.core.serialize import JSONSerializer

    item = {
        "pk": {"S": "LICENSE#lic-1"},
        "version": {"N": "7"},
        "needs_allocation": {"BOOL": False},
        "token_hash": {"NULL": True},
        "sites": {"M": {"shop.com": {"M": {"active": {"BOOL": True}, "used": {"N": "3"}}}}},
        "history": {"L": [{"S": "a"}, {"N": "1"}, {"M": {}}]},
    }
    result = {"Items": [item, item], "Count": 2, "ScannedCount": 2, "LastEvaluatedKey": {"pk": item["pk"]}}
    fast_way = _serialize(
        type("Fast", (JSONSerializer,), {"_serialize_type_structure": fast}), "Query", result
    )
    generic_way = _serialize(
        type("Generic", (JSONSerializer,), {"_serialize_type_structure": generic}), "Query", result
    )
    assert fast_way == generic_way == result, (fast_way, generic_way)


def _one_snapshot_per_table(transact: Any, models: Any) -> Any:
    from moto.dynamodb.models.table import Table

    real_copy = models.copy

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        snapshots: dict[int, Any] = {}

        def deepcopy(value: Any, memo: Any = None) -> Any:
            if isinstance(value, Table):
                if id(value) not in snapshots:
                    snapshots[id(value)] = real_copy.deepcopy(value)
                return snapshots[id(value)]
            return real_copy.deepcopy(value, memo)

        models.copy = SimpleNamespace(deepcopy=deepcopy)
        try:
            return transact(self, transact_items)
        finally:
            models.copy = real_copy

    return transact_write_items


def _remembered_parses(make: Any) -> Any:
    parses: dict[str, Any] = {}

    def remembered(cls: Any, expression: str) -> Any:
        if expression not in parses:
            parses[expression] = make(expression)
        return parses[expression]

    return classmethod(remembered)


@pytest.fixture
def fast_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import moto.dynamodb.models as models
    from moto.core import responses
    from moto.core.serialize import BaseJSONSerializer
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    generic = BaseJSONSerializer._serialize_type_structure
    assert not getattr(generic, "fast", False)
    fast = _fast_structure(generic)
    _check_identical(fast, generic)
    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure", fast)
    monkeypatch.setattr(
        models.DynamoDBBackend,
        "transact_write_items",
        _one_snapshot_per_table(models.DynamoDBBackend.transact_write_items, models),
    )
    monkeypatch.setattr(UpdateExpressionParser, "make", _remembered_parses(UpdateExpressionParser.make))
    monkeypatch.setattr(
        responses, "method_names_from_class", functools.cache(responses.method_names_from_class)
    )
    yield
