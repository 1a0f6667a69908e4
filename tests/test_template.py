"""template.yaml as deployed: least-privilege IAM, alarms, route throttling, outputs, samconfig.toml.

The IAM test runs every function through its sample events (``events/``) and the other paths
that reach DynamoDB differently (retries, fences, key changes, refusals) on moto, records every
DynamoDB request with a botocore event hook, turns each into the IAM actions and resources it
needs (``TransactWriteItems`` is authorized per item: ``PutItem``, ``UpdateItem``, ``DeleteItem``,
``ConditionCheckItem``; a ``Query`` with ``IndexName`` needs the index's ARN), and compares that
with the function's ``Policies``: nothing missing, nothing more.

The linters (cfn-lint, ``sam validate --lint``) run in ``tests/packaging/test_template_lint.py``.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ai_credits import observability
from tests.handlers.conftest import LambdaContext, load_function, sample_event

ROOT = Path(__file__).resolve().parents[1]
TABLE_ID = "CreditsTable"

Grant = tuple[str, str]  # (IAM action, "table" or "index/<name>")


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template["Resources"].items() if res["Type"] == kind}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _resources(template, "AWS::Serverless::Function")


# --------------------------------------------------------------------------------------------------
# What each function is granted (template.yaml)
# --------------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _table_resource(resource: Any) -> str:
    """``!GetAtt CreditsTable.Arn`` -> "table"; ``!Sub ${CreditsTable.Arn}/index/<name>`` -> "index/<name>".
    Anything else (a wildcard, another table, a literal ARN) is refused: it would grant more."""
    if resource == {"Fn::GetAtt": [TABLE_ID, "Arn"]}:
        return "table"
    prefix = "${" + TABLE_ID + ".Arn}/index/"
    sub = resource.get("Fn::Sub") if isinstance(resource, dict) else None
    if isinstance(sub, str) and sub.startswith(prefix) and sub[len(prefix) :].isidentifier():
        return "index/" + sub[len(prefix) :]
    raise AssertionError(f"a DynamoDB grant on {resource!r}: only the table and named indexes are allowed")


def granted(function: dict[str, Any]) -> set[Grant]:
    """The DynamoDB (action, resource) pairs a function's ``Policies`` allow. Only inline
    statements are accepted: a SAM policy template (``DynamoDBCrudPolicy``...) or a managed
    policy would grant what no test can see."""
    grants: set[Grant] = set()
    for policy in function["Properties"].get("Policies", []):
        assert isinstance(policy, dict) and set(policy) == {"Statement"}, (
            f"only inline policy statements, got {policy!r}"
        )
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and "Condition" not in statement, statement
            actions = _as_list(statement["Action"])
            assert all(action.startswith("dynamodb:") and "*" not in action for action in actions), actions
            for resource in _as_list(statement["Resource"]):
                grants |= {
                    (action.removeprefix("dynamodb:"), _table_resource(resource)) for action in actions
                }
    return grants


# --------------------------------------------------------------------------------------------------
# What each function really asks DynamoDB (recorded on moto)
# --------------------------------------------------------------------------------------------------

# TransactWriteItems has no IAM action of its own: each item is authorized as its single-item action.
_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def needed(operation: str, params: dict[str, Any]) -> set[Grant]:
    """The IAM permissions one DynamoDB request needs (on this one-table service)."""
    if operation == "TransactWriteItems":
        return {(_TRANSACT_ITEM_ACTIONS[kind], "table") for item in params["TransactItems"] for kind in item}
    if operation == "TransactGetItems":
        return {("GetItem", "table")}
    if operation in ("Query", "Scan") and params.get("IndexName"):
        return {(operation, "index/" + params["IndexName"])}
    return {(operation, "table")}


class Recorder:
    """Every DynamoDB request, as the permissions it needs, by the function running (``current``)."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.requests: dict[str, set[Grant]] = defaultdict(set)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        assert self.current is not None, f"a DynamoDB {model.name} outside any function"
        self.requests[self.current] |= needed(model.name, params)


@pytest.fixture
def recorder(moto_table: str) -> Iterator[Recorder]:
    """A fresh moto table; every DynamoDB client created from now on reports to the recorder."""
    from ai_credits import store

    recorder = Recorder()
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    store.reset_clients()  # the next client is created from the default session, with the hook
    session.events.register("before-parameter-build.dynamodb", recorder)
    try:
        yield recorder
    finally:
        session.events.unregister("before-parameter-build.dynamodb", recorder)
        store.reset_clients()


class Functions:
    """Invoke the template's functions by logical id, the recorder noting who asked what."""

    def __init__(self, template: dict[str, Any], recorder: Recorder) -> None:
        self._folders = {
            lid: Path(res["Properties"]["CodeUri"]).name for lid, res in _functions(template).items()
        }
        self._recorder = recorder

    def __call__(self, logical_id: str, event: dict[str, Any]) -> Any:
        self._recorder.current = logical_id
        try:
            return load_function(self._folders[logical_id]).lambda_handler(event, LambdaContext())
        finally:
            self._recorder.current = None


def _event_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sample_event(name)["body"])
    return body


def http_event(
    name: str, *, body: Any = ..., token: str | None = None, license_id: str | None = None
) -> dict[str, Any]:
    """``events/<name>.json`` with its body, bearer token or path license id replaced."""
    event = sample_event(name)
    if body is not ...:
        event["body"] = json.dumps(body)
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    if license_id is not None:
        event["pathParameters"]["license_id"] = license_id
        path = event["routeKey"].split(" ", 1)[1].replace("{license_id}", license_id)
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    return event


def run_scenarios(call: Functions) -> None:
    """The sample events in their story (provision, activate, balance, consume, portal, Apply,
    renew), then the other paths that make different DynamoDB requests. The rare paths are
    reached by turning the services' retry budgets to zero (``OPTIMISTIC_ATTEMPTS``,
    ``CAS_ATTEMPTS``), not by mocking: the requests are the real ones of those paths."""
    from ai_credits import services

    def answer(logical_id: str, event: dict[str, Any], status: int) -> Any:
        response = call(logical_id, event)
        assert response["statusCode"] == status, response
        return json.loads(response["body"]) if response.get("body") else None

    def activate(status: int, **fields: Any) -> str:
        body = {**_event_body("activate"), **fields}
        token: str = answer("ActivateFunction", http_event("activate", body=body), status).get(
            "activation_token", ""
        )
        return token

    def consume(status: int, token: str, **fields: Any) -> None:
        body = {**_event_body("consume"), **fields}
        answer("ConsumeFunction", http_event("consume", body=body, token=token), status)

    license_key = _event_body("provision")["license_key"]
    paid = {**_event_body("provision"), "expires_at": "2028-11-01T00:00:00Z"}

    # The sample events: billing provisions lic-demo-1; www.example.com activates, reads its
    # balance, spends; the portal lists, reads and applies allocations.
    answer("ProvisionFunction", sample_event("provision"), 201)
    token = answer("ActivateFunction", sample_event("activate"), 201)["activation_token"]
    activate(201, site_url="staging.example.com")
    answer("GetBalanceFunction", http_event("get_balance", token=token), 200)
    consume(200, token)  # charged
    consume(200, token)  # replayed
    consume(409, token, amount=7)  # the request_id reused with another body
    consume(402, token, request_id="too-much", amount=999_999)
    consume(401, token + "x", request_id="bad-token")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "CAS_ATTEMPTS", 0)  # as under contention: charge, then read
        consume(200, token, request_id="contended")
    answer("LicensesFunction", sample_event("list_licenses"), 200)
    answer("LicensesFunction", sample_event("get_credits"), 200)
    allocations = {"example.com": 800, "staging.example.com": 100}
    answer("AllocateFunction", http_event("put_allocations", body={"allocations": allocations}), 200)
    too_many = {"allocations": {"example.com": 10**6}}
    answer("AllocateFunction", http_event("put_allocations", body=too_many), 409)

    # Activation: a token rotation, a changed network flag (license and site rewritten), an
    # unknown key (the index misses, the key item confirms).
    activate(200)
    token = activate(200, network=True)
    activate(404, license_key="no-such-key")

    # Billing: a new key and a later expiry (the key item moves, the sites' copies follow); an
    # unpaid license, which the renewal will expire.
    answer(
        "ProvisionFunction", http_event("provision", body={**paid, "license_key": license_key + "-2"}), 200
    )
    unpaid = {**paid, "license_key": "unpaid-key", "expires_at": paid["term_end"]}
    answer("ProvisionFunction", http_event("provision", body=unpaid, license_id="lic-unpaid"), 201)

    # The scheduled renewal: the deactivated staging site leaves the view, lic-unpaid expires.
    staging = activate(200, license_key=license_key + "-2", site_url="staging.example.com")
    answer("ActivateFunction", http_event("deactivate", token=staging), 204)
    report = call("RenewFunction", sample_event("renew-scheduled"))
    assert (report["renewed"], report["expired"], report["failed"]) == (["lic-demo-1"], ["lic-unpaid"], [])

    # A license imported with an activation, a key already held; then, with no optimistic
    # attempt left, a named renewal and a deactivation that fence consumes before writing.
    imported = [{"site_url": "imported.example.com", "environment": "staging"}]
    other = {**paid, "license_key": "other-key", "activations": imported}
    answer("ProvisionFunction", http_event("provision", body=other, license_id="lic-demo-2"), 201)
    answer("ProvisionFunction", http_event("provision", body=other, license_id="lic-demo-3"), 409)
    named = {**sample_event("renew-license"), "license_id": "lic-demo-2", "time": "2027-11-01T02:00:00Z"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "OPTIMISTIC_ATTEMPTS", 0)
        assert call("RenewFunction", named)["renewed"] == ["lic-demo-2"]
        answer("ActivateFunction", http_event("deactivate", token=token), 204)


def test_each_function_is_granted_exactly_the_dynamodb_requests_it_makes(
    template: dict[str, Any], recorder: Recorder
) -> None:
    run_scenarios(Functions(template, recorder))

    for logical_id, function in sorted(_functions(template).items()):
        recorded, allowed = recorder.requests[logical_id], granted(function)
        assert recorded, f"{logical_id} made no DynamoDB request: the scenarios miss it"
        assert recorded - allowed == set(), f"{logical_id} is denied {sorted(recorded - allowed)}"
        assert allowed - recorded == set(), (
            f"{logical_id} is granted more than it uses: {sorted(allowed - recorded)}"
        )


# --------------------------------------------------------------------------------------------------
# Alarms
# --------------------------------------------------------------------------------------------------


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: res["Properties"] for lid, res in _resources(template, "AWS::CloudWatch::Alarm").items()}


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_one_alarm_sums_each_lambda_metric_over_every_function(template: dict[str, Any], metric: str) -> None:
    (alarm,) = [
        props
        for props in _alarms(template).values()
        if any(
            query.get("MetricStat", {}).get("Metric", {}).get("MetricName") == metric
            for query in props.get("Metrics", [])
        )
    ]
    watched = set()
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Stat"]) == (
                "AWS/Lambda",
                metric,
                "Sum",
            )
            assert query["ReturnData"] is False
            ((dimension),) = stat["Metric"]["Dimensions"]
            assert dimension["Name"] == "FunctionName"
            watched.add(dimension["Value"]["Ref"])
    (total,) = [query for query in alarm["Metrics"] if query.get("ReturnData")]
    assert total["Expression"] == "SUM(METRICS())"
    assert watched == set(_functions(template)), "every function, and only functions"
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "GreaterThanOrEqualToThreshold",
        1,
        "notBreaching",
    )


def test_a_scheduled_renewal_that_did_not_run_lands_in_an_encrypted_queue_that_is_alarmed(
    template: dict[str, Any],
) -> None:
    renew = _functions(template)["RenewFunction"]["Properties"]
    (schedule,) = [event["Properties"] for event in renew["Events"].values() if event["Type"] == "ScheduleV2"]
    queue_arn = {"Fn::GetAtt": ["RenewalDeadLetterQueue", "Arn"]}
    # Not delivered by the scheduler, and failed after Lambda's own retries (async invocation).
    assert schedule["DeadLetterConfig"] == {"Arn": queue_arn}
    assert renew["EventInvokeConfig"]["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": queue_arn,
    }
    queue = template["Resources"]["RenewalDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True or "KmsMasterKeyId" in queue["Properties"]

    (alarm,) = [props for props in _alarms(template).values() if props.get("Namespace") == "AWS/SQS"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["RenewalDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_the_renewal_failures_alarm_watches_the_metric_the_renew_function_emits(
    template: dict[str, Any],
) -> None:
    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    (alarm,) = [
        props
        for props in _alarms(template).values()
        if props.get("MetricName") == observability.RENEWAL_FAILURES
    ]

    assert alarm["Namespace"] == environment["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": environment["POWERTOOLS_SERVICE_NAME"]}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Sum",
        "GreaterThanOrEqualToThreshold",
        1,
    )
    # At least one hourly run per period; a run that did not happen is the dead-letter alarm's.
    assert alarm["Period"] >= 3600 and alarm["TreatMissingData"] == "notBreaching"


def test_every_alarm_notifies_the_optional_topic(template: dict[str, Any]) -> None:
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    alarms = _alarms(template)
    assert len(alarms) == 4
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == notify == alarm["OKActions"], logical_id
        assert alarm["AlarmDescription"].strip(), logical_id


# --------------------------------------------------------------------------------------------------
# The API, tracing, outputs
# --------------------------------------------------------------------------------------------------


def test_every_route_is_throttled_by_the_stage_parameters(template: dict[str, Any]) -> None:
    (api,) = _resources(template, "AWS::Serverless::HttpApi").values()
    assert api["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    for name in ("ApiThrottlingRateLimit", "ApiThrottlingBurstLimit"):
        assert template["Parameters"][name]["Type"] == "Number"
        assert template["Parameters"][name]["MinValue"] >= 1


def test_every_function_is_traced(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    assert all("Tracing" not in function["Properties"] for function in _functions(template).values())


def test_the_outputs_give_the_api_url_and_the_table_name(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    (api_id,) = _resources(template, "AWS::Serverless::HttpApi")
    assert "${" + api_id + "}" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert outputs["TableName"]["Value"] == {"Ref": TABLE_ID}


# --------------------------------------------------------------------------------------------------
# samconfig.toml
# --------------------------------------------------------------------------------------------------


def _overrides(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(text))


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml").read_text())


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_samconfig_deploys_each_stage_to_its_own_stack_with_valid_parameters(
    template: dict[str, Any], samconfig: dict[str, Any], stage: str
) -> None:
    deploy = samconfig[stage]["deploy"]["parameters"]
    assert deploy["stack_name"] == f"ai-credits-{stage}"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is (stage == "prod")  # production changes are reviewed
    overrides = _overrides(deploy["parameter_overrides"])
    assert overrides["Stage"] == stage
    for name, value in overrides.items():
        parameter = template["Parameters"][name]
        if "AllowedValues" in parameter:
            assert value in parameter["AllowedValues"], (name, value)
        if parameter["Type"] == "Number":
            assert int(value) >= parameter.get("MinValue", 0), (name, value)
    assert int(overrides["ApiThrottlingBurstLimit"]) >= int(overrides["ApiThrottlingRateLimit"])


def test_samconfig_has_no_default_stack_and_validates_with_the_linter(samconfig: dict[str, Any]) -> None:
    assert "deploy" not in samconfig["default"]  # a deploy names its stage: --config-env dev|prod
    assert samconfig["default"]["validate"]["parameters"]["lint"] is True
    assert (
        samconfig["dev"]["deploy"]["parameters"]["stack_name"]
        != samconfig["prod"]["deploy"]["parameters"]["stack_name"]
    )
