"""local/cfn.py reads templates the way CloudFormation/SAM do (no AWS, no DynamoDB needed)."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from local.apigw import Route, claim_string, select_route
from local.cfn import (
    CfnLoader,
    RouteSpec,
    ScheduleSpec,
    StreamSpec,
    TemplateError,
    functions,
    load_template,
    table_create_kwargs,
    table_ttl_attribute,
)
from local.environments import LoadedFunction


def load(text: str) -> Any:
    return yaml.load(textwrap.dedent(text), Loader=CfnLoader)


def test_every_short_tag_becomes_its_long_form() -> None:
    document = load(
        """
        ref: !Ref Thing
        sub: !Sub "${AWS::Region}-x"
        sub_list: !Sub ["${A}", {A: !Ref Thing}]
        getatt: !GetAtt Table.Arn
        getatt_nested: !GetAtt Db.Endpoint.Address
        getatt_list: !GetAtt [Table, StreamArn]
        join: !Join [",", [a, b]]
        if: !If [IsProd, 1, 2]
        equals: !Equals [!Ref Env, prod]
        select: !Select [0, !GetAZs ""]
        split: !Split [",", "a,b"]
        map: !FindInMap [Map, Key, Value]
        import: !ImportValue Shared
        not: !Not [!Condition IsProd]
        and: !And [!Condition A, !Condition B]
        or: !Or [!Condition A, !Condition B]
        b64: !Base64 text
        cidr: !Cidr ["10.0.0.0/16", 4, 8]
        """
    )

    assert document == {
        "ref": {"Ref": "Thing"},
        "sub": {"Fn::Sub": "${AWS::Region}-x"},
        "sub_list": {"Fn::Sub": ["${A}", {"A": {"Ref": "Thing"}}]},
        "getatt": {"Fn::GetAtt": ["Table", "Arn"]},
        "getatt_nested": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "getatt_list": {"Fn::GetAtt": ["Table", "StreamArn"]},
        "join": {"Fn::Join": [",", ["a", "b"]]},
        "if": {"Fn::If": ["IsProd", 1, 2]},
        "equals": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "select": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "split": {"Fn::Split": [",", "a,b"]},
        "map": {"Fn::FindInMap": ["Map", "Key", "Value"]},
        "import": {"Fn::ImportValue": "Shared"},
        "not": {"Fn::Not": [{"Condition": "IsProd"}]},
        "and": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
        "or": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]},
        "b64": {"Fn::Base64": "text"},
        "cidr": {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
    }


def test_dates_stay_strings_and_duplicate_keys_are_errors() -> None:
    assert load("version: 2010-09-09") == {"version": "2010-09-09"}
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'a'"):
        load("a: 1\na: 2\n")


def test_the_safe_loader_itself_is_left_alone() -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("x: !Ref Thing")


APP = """\
Parameters:
  Stage: {Type: String, Default: dev}
  NoDefault: {Type: String}
Globals:
  Function:
    Handler: app.lambda_handler
    Timeout: 7
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        SHARED: same
  HttpApi:
    Auth:
      DefaultAuthorizer: Jwt
      Authorizers:
        Jwt: {JwtConfiguration: {issuer: https://x/}}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      TimeToLiveSpecification: {AttributeName: expires, Enabled: true}
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt: {JwtConfiguration: {issuer: https://x/}}
          Custom: {FunctionArn: arn:aws:lambda:us-east-1:123456789012:function:auth}
  One:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/one/
      MemorySize: 1024
      Environment:
        Variables:
          ARN: !GetAtt Table.Arn
          SUBBED: !Sub "${Stage}-${AWS::Region}-${Table}-${!Literal}"
          JOINED: !Join ["/", [!Ref Stage, x]]
          FLAG: true
          GONE: !Ref AWS::NoValue
      Events:
        Default: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /a, Method: get}}
        Open: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /b, Method: POST, Auth: {Authorizer: NONE}}}
        Iam:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /c, Method: PUT, Auth: {Authorizer: AWS_IAM}}
        Implicit: {Type: HttpApi, Properties: {Path: /d, Method: GET}}
        Tick: {Type: Schedule, Properties: {Schedule: rate(5 minutes)}}
        Tock: {Type: ScheduleV2, Properties: {ScheduleExpression: "cron(0 * * * ? *)"}}
"""


@pytest.fixture
def app(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "template.yaml").write_text(APP)
    return load_template(tmp_path / "template.yaml")


def test_functions_merge_globals_and_resolve_the_environment(app: dict[str, Any]) -> None:
    (spec,) = functions(app, table_name="my-table")

    assert (spec.logical_id, spec.code_uri, spec.handler) == ("One", "functions/one/", "app.lambda_handler")
    assert (spec.memory_size, spec.timeout) == (1024, 7)
    assert spec.environment == {
        "TABLE_NAME": "my-table",
        "SHARED": "same",
        "ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/my-table",
        "SUBBED": "dev-us-east-1-my-table-${Literal}",
        "JOINED": "dev/x",
        "FLAG": "true",
    }


def test_parameter_overrides_win_over_defaults(app: dict[str, Any]) -> None:
    (spec,) = functions(app, table_name="t", parameter_overrides={"Stage": "prod"})

    assert spec.environment["JOINED"] == "prod/x"


def test_routes_take_their_auth_from_the_event_or_the_apis_default(app: dict[str, Any]) -> None:
    (spec,) = functions(app, table_name="t")

    assert spec.routes == [
        RouteSpec("GET", "/a", "jwt"),
        RouteSpec("POST", "/b", "none"),
        RouteSpec("PUT", "/c", "iam"),
        RouteSpec("GET", "/d", "jwt"),  # implicit API: Globals.HttpApi's default
    ]
    assert spec.schedules == [
        ScheduleSpec("Tick", "rate(5 minutes)", "Tick"),
        ScheduleSpec("Tock", "cron(0 * * * ? *)", "Tock"),
    ]


def test_lambda_authorizers_and_unresolvable_values_are_refused(app: dict[str, Any]) -> None:
    events = app["Resources"]["One"]["Properties"]["Events"]
    events["Default"]["Properties"]["Auth"] = {"Authorizer": "Custom"}
    with pytest.raises(TemplateError, match="Lambda authorizer"):
        functions(app, table_name="t")

    del events["Default"]["Properties"]["Auth"]
    app["Resources"]["One"]["Properties"]["Environment"]["Variables"]["X"] = {"Ref": "NoDefault"}
    with pytest.raises(TemplateError, match="NoDefault"):
        functions(app, table_name="t")

    app["Resources"]["One"]["Properties"]["Environment"]["Variables"]["X"] = {"Fn::ImportValue": "y"}
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        functions(app, table_name="t")


def test_table_kwargs_and_ttl(app: dict[str, Any]) -> None:
    assert table_create_kwargs(app, "t") == {
        "TableName": "t",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    assert table_ttl_attribute(app) == "expires"

    app["Resources"]["Table"]["Properties"]["BillingMode"] = {
        "Fn::If": ["C", "PROVISIONED", "PAY_PER_REQUEST"]
    }
    with pytest.raises(TemplateError, match="BillingMode"):
        table_create_kwargs(app, "t")

    app["Resources"]["Other"] = {"Type": "AWS::DynamoDB::Table"}
    with pytest.raises(TemplateError, match="exactly one"):
        table_create_kwargs(app, "t")


STREAM_APP = """\
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Sub "${AWS::StackName}-bus"}
  Queue:
    Type: AWS::SQS::Queue
  Reader:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: reader/
      Handler: app.lambda_handler
      Environment:
        Variables:
          EVENT_BUS_NAME: !Ref Bus
          QUEUE: !Ref Queue
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 25
            MaximumRetryAttempts: 3
            BisectBatchOnFunctionError: true
            FunctionResponseTypes: [ReportBatchItemFailures]
            DestinationConfig: {OnFailure: {Type: SQS, Destination: !GetAtt Queue.Arn}}
        Defaults:
          Type: DynamoDB
          Properties: {Stream: !GetAtt Table.StreamArn, StartingPosition: TRIM_HORIZON}
"""


@pytest.fixture
def stream_app(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "template.yaml").write_text(STREAM_APP)
    return load_template(tmp_path / "template.yaml")


def test_a_dynamodb_event_is_read_locally_with_its_settings_or_lambdas_defaults(
    stream_app: dict[str, Any],
) -> None:
    (spec,) = functions(stream_app, table_name="t")

    assert spec.streams == [
        StreamSpec(
            "Changes",
            batch_size=25,
            maximum_retry_attempts=3,
            bisect_batch_on_function_error=True,
            report_batch_item_failures=True,
        ),
        StreamSpec("Defaults", batch_size=100, maximum_retry_attempts=-1),
    ]
    assert table_create_kwargs(stream_app, "t")["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }


def test_a_bus_is_named_by_its_name_other_resources_by_their_logical_id(stream_app: dict[str, Any]) -> None:
    (spec,) = functions(stream_app, table_name="t")

    assert spec.environment["EVENT_BUS_NAME"] == "ai-credits-local-bus"
    assert spec.environment["QUEUE"] == "Queue"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Stream": "arn:aws:dynamodb:us-east-1:123456789012:table/x/stream/y"}, "Stream must be"),
        ({"StartingPosition": "LATEST"}, "TRIM_HORIZON only"),
        ({"FilterCriteria": {"Filters": [{"Pattern": '{"dynamodb": {"Keys": "x"}}'}]}}, "leaves"),
        ({"FilterCriteria": {"Filters": [{"Pattern": '{"a": [{"anything-but": "x"}]}'}]}}, "prefix"),
        ({"FilterCriteria": {"Filters": [{"Pattern": "{not json"}]}}, "not JSON"),
        ({"BatchSize": {"Ref": "Size"}}, "intrinsic"),
    ],
)
def test_what_the_local_reader_cannot_reproduce_is_refused(
    stream_app: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    stream_app["Resources"]["Reader"]["Properties"]["Events"]["Changes"]["Properties"].update(change)

    with pytest.raises(TemplateError, match=message):
        functions(stream_app, table_name="t")


# --------------------------------------------------------------------------------------------------
# Route selection and claims (local/apigw.py, as API Gateway defines them)
# --------------------------------------------------------------------------------------------------


def _route(method: str, path: str) -> Route:
    return Route.compile(RouteSpec(method, path, "none"), LoadedFunction(None, print, "m", "us-east-1"))  # type: ignore[arg-type]


def _best(routes: list[Route], method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The route key and parameters the gateway's selection picks."""
    found = select_route(routes, method, path)
    return None if found is None else (found[0].spec.route_key, found[1])


def test_the_most_specific_route_wins() -> None:
    routes = [
        _route("ANY", "/pets/{proxy+}"),
        _route("GET", "/pets/{id}"),
        _route("GET", "/pets/dog"),
        _route("ANY", "/pets/{id}"),
        _route("ANY", "$default"),
    ]

    assert _best(routes, "GET", "/pets/dog") == ("GET /pets/dog", {})
    assert _best(routes, "GET", "/pets/7") == ("GET /pets/{id}", {"id": "7"})
    assert _best(routes, "POST", "/pets/7") == ("ANY /pets/{id}", {"id": "7"})
    assert _best(routes, "GET", "/pets/a/b%20c") == ("ANY /pets/{proxy+}", {"proxy": "a/b c"})
    assert _best(routes, "GET", "/other") == ("$default", {})


def test_claims_are_strings_like_api_gateways() -> None:
    assert [claim_string(value) for value in ("a", 3, 1.5, True, ["x", "y"], {"k": 1})] == [
        "a",
        "3",
        "1.5",
        "true",
        "[x y]",
        '{"k":1}',
    ]


# --------------------------------------------------------------------------------------------------
# ensure_table on an existing table (make run keeps its data in .local/): the template's new GSIs
# and its stream
# --------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_local_table_has_the_templates_stream_and_an_older_table_gets_it(
    dynamodb_local: str, template: dict[str, Any]
) -> None:
    import uuid

    import boto3

    from local.cfn import TableSchemaMismatch, ensure_table

    client = boto3.client("dynamodb", endpoint_url=dynamodb_local)
    fresh, older = (f"ensure-stream-{uuid.uuid4().hex[:8]}" for _ in range(2))
    without_stream = {
        key: value
        for key, value in table_create_kwargs(template, older).items()
        if key != "StreamSpecification"
    }
    client.create_table(**without_stream)
    try:
        ensure_table(client, fresh, template)
        ensure_table(client, older, template)
        ensure_table(client, older, template)  # idempotent

        for name in (fresh, older):
            description = client.describe_table(TableName=name)["Table"]
            assert description["StreamSpecification"] == {
                "StreamEnabled": True,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
            assert description["LatestStreamArn"]

        # A stream of other images is not repaired: its readers would get what they do not expect.
        keys_only = copy.deepcopy(template)
        keys_only["Resources"]["CreditsTable"]["Properties"]["StreamSpecification"] = {
            "StreamViewType": "KEYS_ONLY"
        }
        with pytest.raises(TableSchemaMismatch, match="stream of NEW_AND_OLD_IMAGES"):
            ensure_table(client, older, keys_only)
    finally:
        client.delete_table(TableName=fresh)
        client.delete_table(TableName=older)


@pytest.mark.integration
def test_ensure_table_adds_the_templates_new_indexes_to_an_existing_table_and_keeps_its_items(
    dynamodb_local: str, template: dict[str, Any]
) -> None:
    import uuid

    import boto3

    from local.cfn import TableSchemaMismatch, ensure_table

    client = boto3.client("dynamodb", endpoint_url=dynamodb_local)
    table_name = f"ensure-table-{uuid.uuid4().hex[:8]}"
    full = table_create_kwargs(template, table_name)
    assert len(full["GlobalSecondaryIndexes"]) >= 2
    # The table as an older template made it: without its last two indexes (and their attributes).
    *kept, _, _ = full["GlobalSecondaryIndexes"]
    kept_attributes = {"pk", "sk"} | {key["AttributeName"] for gsi in kept for key in gsi["KeySchema"]}
    older = {
        **full,
        "GlobalSecondaryIndexes": kept,
        "AttributeDefinitions": [
            definition
            for definition in full["AttributeDefinitions"]
            if definition["AttributeName"] in kept_attributes
        ],
    }
    client.create_table(**older)
    try:
        # An item that the newest index will hold: the index is backfilled from the table.
        last = full["GlobalSecondaryIndexes"][-1]
        item = {"pk": {"S": "p"}, "sk": {"S": "s"}}
        item |= {key["AttributeName"]: {"S": "v-" + key["AttributeName"]} for key in last["KeySchema"]}
        client.put_item(TableName=table_name, Item=item)

        ensure_table(client, table_name, template)
        ensure_table(client, table_name, template)  # idempotent

        description = client.describe_table(TableName=table_name)["Table"]
        assert sorted(gsi["IndexName"] for gsi in description["GlobalSecondaryIndexes"]) == sorted(
            gsi["IndexName"] for gsi in full["GlobalSecondaryIndexes"]
        )
        assert all(gsi["IndexStatus"] == "ACTIVE" for gsi in description["GlobalSecondaryIndexes"])
        hash_key = next(key["AttributeName"] for key in last["KeySchema"] if key["KeyType"] == "HASH")
        found = client.query(
            TableName=table_name,
            IndexName=last["IndexName"],
            KeyConditionExpression="#k = :v",
            ExpressionAttributeNames={"#k": hash_key},
            ExpressionAttributeValues={":v": item[hash_key]},
        )["Items"]
        assert [(found_item["pk"], found_item["sk"]) for found_item in found] == [(item["pk"], item["sk"])]
        assert client.get_item(TableName=table_name, Key={"pk": item["pk"], "sk": item["sk"]})["Item"] == item

        # An index of the same name with other keys is not repaired: the data is stale.
        other = copy.deepcopy(template)
        table = other["Resources"]["CreditsTable"]["Properties"]
        first = table["GlobalSecondaryIndexes"][0]
        first["KeySchema"] = [  # its keys swapped
            {"AttributeName": key["AttributeName"], "KeyType": kind}
            for key, kind in zip(reversed(first["KeySchema"]), ("HASH", "RANGE"), strict=True)
        ]
        with pytest.raises(TableSchemaMismatch, match="global secondary indexes"):
            ensure_table(client, table_name, other)
    finally:
        client.delete_table(TableName=table_name)
