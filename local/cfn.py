"""Read ``template.yaml`` for local use: the table schema, the functions, their routes and settings.

The tests and ``make run`` create the DynamoDB table and wire the routes from the very template that
is deployed, so a key, an index or a route cannot drift between the two.

PyYAML does not know CloudFormation's short tags (``!Ref``, ``!Sub``...), so :class:`CfnLoader`
turns each into its long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), exactly the dict that a JSON
template would hold. Only what the local tools need is resolved (environment variables, a few
intrinsics); anything else that cannot be resolved locally raises :class:`TemplateError` rather
than being guessed.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from local import REPO_ROOT

#: A boto3 DynamoDB client (typed loosely: cfn stays importable without boto3 stubs).
DynamoDBClient = Any

__all__ = [
    "DEFAULT_LOCAL_TABLE",
    "LOCAL_ACCOUNT_ID",
    "TEMPLATE_PATH",
    "AuthKind",
    "CfnLoader",
    "FunctionSpec",
    "LayerSpec",
    "RouteSpec",
    "ScheduleSpec",
    "StreamSpec",
    "TableSchemaMismatch",
    "TemplateError",
    "ensure_table",
    "functions",
    "load_template",
    "table_create_kwargs",
    "table_logical_id",
    "table_ttl_attribute",
]

TEMPLATE_PATH = REPO_ROOT / "template.yaml"
#: The table name used by ``make run`` when ``TABLE_NAME`` is not set.
DEFAULT_LOCAL_TABLE = "ai-credits-local"
#: The account id every local ARN and request context uses (AWS's documentation account).
LOCAL_ACCOUNT_ID = "123456789012"

AuthKind = Literal["none", "iam", "jwt"]


class TemplateError(ValueError):
    """The template is malformed, or uses something the local tools cannot reproduce."""


class TableSchemaMismatch(RuntimeError):
    """An existing table's keys, indexes or TTL differ from the template (e.g. stale local data)."""


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

_SHORT_TAGS = (
    "Ref",
    "Condition",
    "Sub",
    "GetAtt",
    "Join",
    "If",
    "Equals",
    "Select",
    "Split",
    "FindInMap",
    "ImportValue",
    "Not",
    "And",
    "Or",
    "Base64",
    "Cidr",
    "GetAZs",
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that understands CloudFormation's short tags and rejects duplicate keys.

    Two deliberate differences from plain ``yaml.safe_load``:

    - dates stay strings (CloudFormation reads ``AWSTemplateFormatVersion: 2010-09-09`` as text);
    - a key repeated in one mapping is an error (CloudFormation rejects it; PyYAML would silently
      keep the last one, hiding a mistake).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                continue  # an unhashable key: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return dict(super().construct_mapping(node, deep=deep))


# Copy-on-write: only CfnLoader loses the timestamp resolver, yaml.SafeLoader is left untouched.
CfnLoader.yaml_implicit_resolvers = {
    first_char: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first_char, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_any(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}", node.start_mark)


def _make_constructor(tag_name: str) -> Any:
    long_name = tag_name if tag_name in ("Ref", "Condition") else f"Fn::{tag_name}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value = _construct_any(loader, node)
        if tag_name == "GetAtt" and isinstance(value, str):
            # "Resource.Attribute" (the attribute itself may contain dots: "Db.Endpoint.Address").
            resource, dot, attribute = value.partition(".")
            if not dot or not resource or not attribute:
                raise yaml.constructor.ConstructorError(
                    None, None, f"!GetAtt needs 'Resource.Attribute', got {value!r}", node.start_mark
                )
            value = [resource, attribute]
        return {long_name: value}

    return construct


for _tag in _SHORT_TAGS:
    CfnLoader.add_constructor(f"!{_tag}", _make_constructor(_tag))


def load_template(path: str | os.PathLike[str] = TEMPLATE_PATH) -> dict[str, Any]:
    """Load a SAM/CloudFormation YAML template into plain dicts (short tags in their long form).

    ``path`` defaults to the repository's ``template.yaml``, wherever the current directory is; a
    relative path is taken relative to the current directory, like ``open``.
    """
    text = Path(path).read_text(encoding="utf-8")
    template = yaml.load(text, Loader=CfnLoader)  # CfnLoader is a SafeLoader
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return template


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


def _resources(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return template.get("Resources") or {}


def table_logical_id(template: Mapping[str, Any]) -> str:
    """The logical id of the template's only ``AWS::DynamoDB::Table``."""
    ids = [lid for lid, res in _resources(template).items() if res.get("Type") == "AWS::DynamoDB::Table"]
    if len(ids) != 1:
        raise TemplateError(f"expected exactly one AWS::DynamoDB::Table, found {len(ids)}: {ids}")
    return ids[0]


def _is_intrinsic(value: Any) -> bool:
    """True for ``{"Ref": ...}``, ``{"Condition": ...}`` and ``{"Fn::<name>": ...}``."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return isinstance(key, str) and (key in ("Ref", "Condition") or key.startswith("Fn::"))


def _reject_intrinsics(value: Any, where: str) -> None:
    """Fail loudly on a ``!Ref``/``!If``... in a table property: the local table must be exact."""
    if _is_intrinsic(value):
        raise TemplateError(f"{where}: intrinsic {value!r} cannot be resolved for the local table")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_intrinsics(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_intrinsics(item, f"{where}[{index}]")


def _index_kwargs(index: Mapping[str, Any], provisioned: bool) -> dict[str, Any]:
    # Whitelist: ContributorInsightsSpecification, OnDemandThroughput, WarmThroughput... are
    # CloudFormation-only or not understood by DynamoDB Local / moto.
    kwargs = {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
    if provisioned and "ProvisionedThroughput" in index:
        kwargs["ProvisionedThroughput"] = index["ProvisionedThroughput"]
    return kwargs


def table_create_kwargs(template: Mapping[str, Any], table_name: str) -> dict[str, Any]:
    """The ``CreateTable`` keyword arguments for the template's table, named ``table_name``.

    Kept: keys, attribute definitions, GSIs/LSIs with their projections, billing mode (and
    throughput when provisioned), streams. Dropped on purpose, because DynamoDB Local or moto do not
    take them or they are deployment concerns: deletion protection, point-in-time recovery, SSE,
    tags, table class, contributor insights; TTL is a separate call (:func:`ensure_table`).
    """
    logical_id = table_logical_id(template)
    props = _resources(template)[logical_id].get("Properties") or {}
    billing_mode = props.get("BillingMode", "PROVISIONED")
    provisioned = billing_mode == "PROVISIONED"
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing_mode,
    }
    if provisioned and "ProvisionedThroughput" in props:
        kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(index_kind):
            kwargs[index_kind] = [_index_kwargs(index, provisioned) for index in props[index_kind]]
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    _reject_intrinsics(kwargs, f"Resources.{logical_id}.Properties")
    return kwargs


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def table_ttl_attribute(template: Mapping[str, Any]) -> str | None:
    """The TTL attribute name of the template's table, or None when TTL is not enabled."""
    props = _resources(template)[table_logical_id(template)].get("Properties") or {}
    ttl = props.get("TimeToLiveSpecification") or {}
    if not _truthy(ttl.get("Enabled")):
        return None
    attribute = ttl.get("AttributeName")
    if not isinstance(attribute, str) or not attribute:
        raise TemplateError("TimeToLiveSpecification is enabled but has no literal AttributeName")
    return attribute


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return code if isinstance(code, str) else None


def ensure_table(
    client: DynamoDBClient,
    table_name: str,
    template: Mapping[str, Any],
    *,
    timeout: float = 60.0,
) -> None:
    """Create the template's table as ``table_name`` unless it exists; wait for ACTIVE; add the
    global secondary indexes and the stream the template has gained since; enable TTL.

    Idempotent and safe when several processes run it at once: creation is attempted and a
    ``ResourceInUseException`` (the table exists or is being created) is the normal "someone else
    did it" case. An existing table (``make run`` keeps its data in ``.local/``) that lacks some of
    the template's GSIs gets them with ``UpdateTable``, one at a time as DynamoDB requires,
    backfilled from its items, and the template's stream when it has none (its stream then starts
    with the next write: what was written before is not in it). An existing table whose keys,
    indexes or stream view type *differ* from the template raises :class:`TableSchemaMismatch`,
    since every query against it (or every reader of its stream) would fail in confusing ways.
    """
    from botocore.exceptions import ClientError  # imported here: cfn stays usable without boto3

    kwargs = table_create_kwargs(template, table_name)
    try:
        client.create_table(**kwargs)
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
    description = _wait_active(client, table_name, timeout)
    _check_schema(description, kwargs, missing_indexes_ok=True)
    description = _add_missing_indexes(client, description, kwargs, timeout)
    _check_schema(description, kwargs)
    _enable_stream(client, description, kwargs, timeout)
    ttl_attribute = table_ttl_attribute(template)
    if ttl_attribute is not None:
        _enable_ttl(client, table_name, ttl_attribute)


def _wait_active(client: DynamoDBClient, table_name: str, timeout: float) -> dict[str, Any]:
    """Poll DescribeTable until the table and its indexes are ACTIVE (botocore's waiter sleeps 20 s)."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout
    last_status = "unknown"
    while True:
        try:
            table = client.describe_table(TableName=table_name)["Table"]
        except ClientError as exc:
            # Right after CreateTable, real DynamoDB may not list the table yet.
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            last_status = "not found"
        else:
            last_status = table.get("TableStatus", "unknown")
            indexes_active = all(
                index.get("IndexStatus", "ACTIVE") == "ACTIVE"
                for index in table.get("GlobalSecondaryIndexes", [])
            )
            if last_status == "ACTIVE" and indexes_active:
                return dict(table)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"table {table_name} not ACTIVE after {timeout:.0f}s (last status: {last_status})"
            )
        time.sleep(0.1)


def _add_missing_indexes(
    client: DynamoDBClient, description: Mapping[str, Any], expected: Mapping[str, Any], timeout: float
) -> dict[str, Any]:
    """Create the expected GSIs the table lacks (UpdateTable, one per call); the table's new
    description once they are ACTIVE."""
    from botocore.exceptions import ClientError

    table_name = description["TableName"]
    current = dict(description)
    present = {gsi["IndexName"] for gsi in description.get("GlobalSecondaryIndexes", [])}
    for index in expected.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in present:
            continue
        key_names = {key["AttributeName"] for key in index["KeySchema"]}
        definitions = [
            definition
            for definition in expected["AttributeDefinitions"]
            if definition["AttributeName"] in key_names
        ]
        try:
            client.update_table(
                TableName=table_name,
                AttributeDefinitions=definitions,
                GlobalSecondaryIndexUpdates=[{"Create": dict(index)}],
            )
        except ClientError as exc:
            # Another process is adding it too (the index exists, or the table is being updated):
            # the table's state decides, after the wait below.
            if _error_code(exc) not in ("ValidationException", "ResourceInUseException"):
                raise
        current = _wait_active(client, table_name, timeout)
        present = {gsi["IndexName"] for gsi in current.get("GlobalSecondaryIndexes", [])}
    return current


def _check_schema(
    description: Mapping[str, Any], expected: Mapping[str, Any], *, missing_indexes_ok: bool = False
) -> None:
    """Raise :class:`TableSchemaMismatch` when the table's keys or GSIs differ from ``expected``
    (with ``missing_indexes_ok``, an expected GSI the table lacks is not a difference)."""

    def keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(key["AttributeName"], key["KeyType"]) for key in schema]

    problems: list[str] = []
    if keys(description["KeySchema"]) != keys(expected["KeySchema"]):
        problems.append(f"key schema {description['KeySchema']} != {expected['KeySchema']}")
    actual_gsis = {
        gsi["IndexName"]: keys(gsi["KeySchema"]) for gsi in description.get("GlobalSecondaryIndexes", [])
    }
    expected_gsis = {
        gsi["IndexName"]: keys(gsi["KeySchema"])
        for gsi in expected.get("GlobalSecondaryIndexes", [])
        if not missing_indexes_ok or gsi["IndexName"] in actual_gsis
    }
    if actual_gsis != expected_gsis:
        problems.append(f"global secondary indexes {actual_gsis} != {expected_gsis}")
    if problems:
        raise TableSchemaMismatch(
            f"table {description['TableName']} exists with another schema than template.yaml: "
            + "; ".join(problems)
            + ". Delete it (locally: `make clean` or remove .local/dynamodb-data/) and start again."
        )


def _enable_stream(
    client: DynamoDBClient, description: Mapping[str, Any], expected: Mapping[str, Any], timeout: float
) -> None:
    """Turn on the expected stream of a table created before the template had one (UpdateTable).

    A table whose stream has another view type raises :class:`TableSchemaMismatch`: its readers
    would get other images than the template's functions expect.
    """
    from botocore.exceptions import ClientError

    wanted = expected.get("StreamSpecification")
    if wanted is None:
        return
    table_name = description["TableName"]

    def view_type(table: Mapping[str, Any]) -> str | None:
        stream = table.get("StreamSpecification") or {}
        return stream.get("StreamViewType") if stream.get("StreamEnabled") else None

    current = view_type(description)
    if current is None:
        try:
            client.update_table(TableName=table_name, StreamSpecification=wanted)
        except ClientError as exc:
            # "Table already has an enabled stream": another process enabled it meanwhile; the
            # table's state decides, after the wait below.
            if _error_code(exc) not in ("ValidationException", "ResourceInUseException"):
                raise
        current = view_type(_wait_active(client, table_name, timeout))
    if current != wanted["StreamViewType"]:
        raise TableSchemaMismatch(
            f"table {table_name} has a stream of {current}, template.yaml says {wanted['StreamViewType']}. "
            "Delete it (locally: `make clean` or remove .local/dynamodb-data/) and start again."
        )


def _enable_ttl(client: DynamoDBClient, table_name: str, attribute: str) -> None:
    from botocore.exceptions import ClientError

    def current() -> tuple[str | None, str | None]:
        ttl = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
        return ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")

    status, enabled_attribute = current()
    if status in ("ENABLED", "ENABLING"):
        if enabled_attribute != attribute:
            raise TableSchemaMismatch(
                f"table {table_name} has TTL on {enabled_attribute!r}, template says {attribute!r}"
            )
        return
    try:
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    except ClientError as exc:
        # DynamoDB answers ValidationException when TTL is already enabled, e.g. by a concurrent
        # ensure_table between our describe and update. Decide on the table's state, not the text.
        if _error_code(exc) != "ValidationException" or current() not in (
            ("ENABLED", attribute),
            ("ENABLING", attribute),
        ):
            raise


# --------------------------------------------------------------------------------------------------
# Functions, routes, environment
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    """One HTTP API route: ``method`` upper-case (or ``ANY``), ``path`` as in the template."""

    method: str
    path: str
    auth: AuthKind

    @property
    def route_key(self) -> str:
        """API Gateway's ``routeKey``: ``"PUT /v1/admin/licenses/{license_id}"`` (or ``$default``)."""
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule event (``Schedule``/``ScheduleV2``): its event name, expression (``rate(1 minute)``),
    the schedule's ``Name`` (the event name when it has none) and ``Input`` (resolved; None when the
    template gives none). ``make run`` fires the ``rate()`` ones (:mod:`local.scheduler`)."""

    name: str
    expression: str
    schedule_name: str = ""
    input: str | None = None


@dataclass(frozen=True)
class StreamSpec:
    """A ``DynamoDB`` event of a function: the template's table's stream, handed to the function in
    batches by an event source mapping with these settings (Lambda's defaults when the template
    gives none), from the oldest record the stream has (``StartingPosition: TRIM_HORIZON``, the
    only one reproduced). ``make run`` reads the stream the same way (:mod:`local.streams`)."""

    name: str
    batch_size: int = 100
    #: Retries of a failing batch before it goes to the on-failure destination; -1: until the
    #: records expire.
    maximum_retry_attempts: int = -1
    bisect_batch_on_function_error: bool = False
    #: ``FunctionResponseTypes: [ReportBatchItemFailures]``: the function's ``batchItemFailures``
    #: count (without it, only an error fails a batch).
    report_batch_item_failures: bool = False
    #: ``FilterCriteria``'s patterns: a record is handed over when one matches (none: every record).
    filters: tuple[dict[str, Any], ...] = ()

    def wants(self, record: Mapping[str, Any]) -> bool:
        """Whether the event source mapping hands ``record`` to the function (Lambda's event
        filtering, the subset :func:`_filter_pattern` accepts)."""
        return not self.filters or any(_matches(pattern, record) for pattern in self.filters)


@dataclass(frozen=True)
class LayerSpec:
    """A layer defined in this template (layers given by ARN cannot be reproduced and are skipped)."""

    logical_id: str
    content_uri: str
    build_method: str | None


@dataclass(frozen=True)
class FunctionSpec:
    """What the local gateway needs to run one ``AWS::Serverless::Function`` in-process."""

    logical_id: str
    code_uri: str
    handler: str
    environment: dict[str, str]
    routes: list[RouteSpec]
    schedules: list[ScheduleSpec] = field(default_factory=list)
    streams: list[StreamSpec] = field(default_factory=list)
    memory_size: int = 128
    timeout: int = 3
    layers: list[LayerSpec] = field(default_factory=list)
    runtime: str | None = None


_PSEUDO_PARAMETERS = {
    "AWS::AccountId": LOCAL_ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "ai-credits-local",
    "AWS::StackId": f"arn:aws:cloudformation:us-east-1:{LOCAL_ACCOUNT_ID}:stack/ai-credits-local/local",
    "AWS::NoValue": None,
}
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
#: Resources whose ``!Ref`` is the name the template gives them (a function's ``EVENT_BUS_NAME``
#: is the bus's ``Name``, resolved like any value: ``ai-credits-local`` for ``${AWS::StackName}``).
_NAMED_BY = {"AWS::Events::EventBus": "Name"}


class _Resolver:
    """Resolves the few intrinsics that make sense locally; raises TemplateError for the rest."""

    def __init__(
        self,
        template: Mapping[str, Any],
        table_name: str,
        parameter_overrides: Mapping[str, str],
    ) -> None:
        self._template = template
        self._table_id = table_logical_id(template)
        self._table_name = table_name
        self._overrides = parameter_overrides
        self._region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"

    def ref(self, name: str) -> Any:
        if name == "AWS::Region":
            return self._region
        if name in _PSEUDO_PARAMETERS:
            return _PSEUDO_PARAMETERS[name]
        if name == self._table_id:
            return self._table_name
        parameters = self._template.get("Parameters") or {}
        if name in parameters:
            if name in self._overrides:
                return self._overrides[name]
            if "Default" not in parameters[name]:
                raise TemplateError(f"parameter {name} has no Default; pass it in parameter_overrides")
            return parameters[name]["Default"]
        resource = _resources(self._template).get(name)
        if resource is not None:
            named = _NAMED_BY.get(resource.get("Type", ""))
            if named is not None and named in (resource.get("Properties") or {}):
                return self.resolve(resource["Properties"][named])
            return name  # Locally, a resource's physical id is its logical id.
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, resource: str, attribute: str) -> str:
        if resource == self._table_id and attribute == "Arn":
            return f"arn:aws:dynamodb:{self._region}:{LOCAL_ACCOUNT_ID}:table/{self._table_name}"
        if resource not in _resources(self._template):
            raise TemplateError(f"!GetAtt {resource}.{attribute}: no such resource")
        return f"{resource}.{attribute}"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if not _is_intrinsic(value):
            return {key: self.resolve(item) for key, item in value.items()}
        function, argument = next(iter(value.items()))
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(resource, attribute)
        if function == "Fn::Sub":
            return self._sub(argument)
        if function == "Fn::Join":
            delimiter, items = argument
            return delimiter.join(str(self.resolve(item)) for item in self.resolve(items))
        raise TemplateError(f"{function} is not supported by the local tools (value {value!r})")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {name: self.resolve(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute)
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text)


def _as_env_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"environment variable {name}: cannot use {value!r} as a string")


def _merged_function_properties(template: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """Apply SAM's Globals rules: maps merge (the function wins), lists append, scalars override."""
    globals_function = (template.get("Globals") or {}).get("Function") or {}
    merged: dict[str, Any] = {**globals_function, **props}
    global_env = (globals_function.get("Environment") or {}).get("Variables") or {}
    own_env = (props.get("Environment") or {}).get("Variables") or {}
    merged["Environment"] = {"Variables": {**global_env, **own_env}}
    merged["Layers"] = list(globals_function.get("Layers") or []) + list(props.get("Layers") or [])
    return merged


def _http_api_auth(template: Mapping[str, Any], api_id: Any) -> dict[str, Any]:
    """The ``Auth`` block of the HttpApi an event belongs to (Globals.HttpApi merged in)."""
    global_auth = ((template.get("Globals") or {}).get("HttpApi") or {}).get("Auth") or {}
    if api_id is None:  # SAM's implicit ServerlessHttpApi: only Globals apply.
        return dict(global_auth)
    if not (isinstance(api_id, dict) and set(api_id) == {"Ref"}):
        raise TemplateError(
            f"HttpApi event ApiId must be a !Ref to an HttpApi in the template, got {api_id!r}"
        )
    resource = _resources(template).get(api_id["Ref"]) or {}
    if resource.get("Type") != "AWS::Serverless::HttpApi":
        raise TemplateError(f"ApiId {api_id['Ref']} is not an AWS::Serverless::HttpApi")
    return {**global_auth, **((resource.get("Properties") or {}).get("Auth") or {})}


def _auth_kind(authorizer: Any, api_auth: Mapping[str, Any], where: str) -> AuthKind:
    if authorizer is None or authorizer == "NONE":
        return "none"
    if authorizer == "AWS_IAM":
        return "iam"
    definition = (api_auth.get("Authorizers") or {}).get(authorizer)
    if definition is None:
        raise TemplateError(f"{where}: authorizer {authorizer!r} is not defined on its HttpApi")
    if "FunctionArn" in definition:
        raise TemplateError(
            f"{where}: Lambda authorizer {authorizer!r} is not supported by the local gateway"
        )
    return "jwt"


#: The settings of a ``DynamoDB`` event that the local reader follows (MaximumBatchingWindowInSeconds,
#: ParallelizationFactor, MaximumRecordAgeInSeconds and the on-failure destination are AWS's alone).
_STREAM_SETTINGS = (
    "BatchSize",
    "StartingPosition",
    "MaximumRetryAttempts",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
)


def _stream(template: Mapping[str, Any], name: str, props: Mapping[str, Any], where: str) -> StreamSpec:
    """A ``DynamoDB`` event's settings; its stream must be the template's table's, the only one
    the local tools have."""
    table_stream = {"Fn::GetAtt": [table_logical_id(template), "StreamArn"]}
    if props.get("Stream") != table_stream:
        raise TemplateError(f"{where}: Stream must be !GetAtt {table_logical_id(template)}.StreamArn")
    _reject_intrinsics({key: props[key] for key in _STREAM_SETTINGS if key in props}, where)
    if props.get("StartingPosition") != "TRIM_HORIZON":
        raise TemplateError(f"{where}: the local tools read a stream from StartingPosition TRIM_HORIZON only")
    return StreamSpec(
        name=name,
        batch_size=int(props.get("BatchSize", 100)),
        maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
        bisect_batch_on_function_error=_truthy(props.get("BisectBatchOnFunctionError", False)),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        filters=tuple(
            _filter_pattern(entry.get("Pattern"), where)
            for entry in (props.get("FilterCriteria") or {}).get("Filters", [])
        ),
    )


def _filter_pattern(text: Any, where: str) -> dict[str, Any]:
    """A filter's ``Pattern`` (JSON), in the subset the local reader matches: nested objects whose
    leaves are lists of exact values or ``{"prefix": "..."}``."""
    if not isinstance(text, str):
        raise TemplateError(f"{where}: a FilterCriteria Pattern must be a JSON string")
    try:
        pattern = json.loads(text)
    except ValueError as exc:
        raise TemplateError(f"{where}: FilterCriteria Pattern is not JSON: {exc}") from None

    def check(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                if isinstance(value, dict) and set(value) != {"prefix"}:
                    raise TemplateError(f"{where}: only exact values and prefix are matched locally: {value}")
        else:
            raise TemplateError(f"{where}: a FilterCriteria Pattern's leaves are lists: {node!r}")

    if not isinstance(pattern, dict):
        raise TemplateError(f"{where}: a FilterCriteria Pattern is an object")
    check(pattern)
    return pattern


def _matches(pattern: Mapping[str, Any], value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    for key, wanted in pattern.items():
        if isinstance(wanted, dict):
            if not _matches(wanted, value.get(key)):
                return False
        elif not any(_leaf_matches(option, value.get(key)) for option in wanted):
            return False
    return True


def _leaf_matches(option: Any, value: Any) -> bool:
    if isinstance(option, dict):
        return isinstance(value, str) and value.startswith(option["prefix"])
    return bool(option == value)


def _function_events(
    template: Mapping[str, Any], logical_id: str, events: Mapping[str, Any], resolver: _Resolver
) -> tuple[list[RouteSpec], list[ScheduleSpec], list[StreamSpec]]:
    routes: list[RouteSpec] = []
    schedules: list[ScheduleSpec] = []
    streams: list[StreamSpec] = []
    for event_name, event in events.items():
        where = f"{logical_id}.Events.{event_name}"
        event_props = event.get("Properties") or {}
        if event.get("Type") == "HttpApi":
            api_auth = _http_api_auth(template, event_props.get("ApiId"))
            authorizer = (event_props.get("Auth") or {}).get("Authorizer", api_auth.get("DefaultAuthorizer"))
            path = resolver.resolve(event_props.get("Path", "$default"))
            method = str(resolver.resolve(event_props.get("Method", "ANY"))).upper()
            if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                method = "ANY"
            routes.append(RouteSpec(method=method, path=path, auth=_auth_kind(authorizer, api_auth, where)))
        elif event.get("Type") in ("Schedule", "ScheduleV2"):
            expression = event_props.get("Schedule", event_props.get("ScheduleExpression"))
            schedule_input = event_props.get("Input")
            schedules.append(
                ScheduleSpec(
                    name=event_name,
                    expression=str(resolver.resolve(expression)),
                    schedule_name=str(resolver.resolve(event_props.get("Name", event_name))),
                    input=None if schedule_input is None else str(resolver.resolve(schedule_input)),
                )
            )
        elif event.get("Type") == "DynamoDB":
            streams.append(_stream(template, event_name, event_props, where))
    return routes, schedules, streams


def _layers(template: Mapping[str, Any], entries: list[Any]) -> list[LayerSpec]:
    layers: list[LayerSpec] = []
    for entry in entries:
        if not (isinstance(entry, dict) and set(entry) == {"Ref"}):
            continue  # A layer given by ARN lives in some account, not in this repository.
        resource = _resources(template).get(entry["Ref"]) or {}
        if resource.get("Type") != "AWS::Serverless::LayerVersion":
            continue
        content_uri = (resource.get("Properties") or {}).get("ContentUri")
        if not isinstance(content_uri, str):
            raise TemplateError(f"layer {entry['Ref']}: ContentUri must be a local folder")
        build_method = (resource.get("Metadata") or {}).get("BuildMethod")
        layers.append(LayerSpec(entry["Ref"], content_uri, build_method))
    return layers


def functions(
    template: Mapping[str, Any],
    table_name: str | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
) -> list[FunctionSpec]:
    """Every ``AWS::Serverless::Function`` of the template, resolved for local use.

    ``table_name`` is what ``!Ref <the table>`` becomes (default: env ``TABLE_NAME``, else
    :data:`DEFAULT_LOCAL_TABLE`); other ``!Ref`` s become ``parameter_overrides``, the parameter's
    Default, or the resource's logical id.
    """
    resolver = _Resolver(
        template,
        table_name or os.environ.get("TABLE_NAME") or DEFAULT_LOCAL_TABLE,
        parameter_overrides or {},
    )
    specs: list[FunctionSpec] = []
    for logical_id, resource in _resources(template).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = _merged_function_properties(template, resource.get("Properties") or {})
        if props.get("PackageType") == "Image" or "InlineCode" in props:
            raise TemplateError(f"{logical_id}: only zip functions with a local CodeUri can run locally")
        code_uri = props.get("CodeUri")
        handler = props.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{logical_id}: needs a local CodeUri folder and a 'module.function' Handler")
        environment: dict[str, str] = {}
        for name, value in props["Environment"]["Variables"].items():
            resolved = resolver.resolve(value)
            if resolved is not None:  # !Ref AWS::NoValue removes the variable
                environment[name] = _as_env_value(name, resolved)
        events = props.get("Events") or {}
        routes, schedules, streams = _function_events(template, logical_id, events, resolver)
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                code_uri=code_uri,
                handler=handler,
                environment=environment,
                routes=routes,
                schedules=schedules,
                streams=streams,
                memory_size=int(resolver.resolve(props.get("MemorySize", 128))),
                timeout=int(resolver.resolve(props.get("Timeout", 3))),
                layers=_layers(template, props["Layers"]),
                runtime=props.get("Runtime"),
            )
        )
    return specs
