"""template.yaml as deployed: least-privilege IAM, alarms, route throttling, outputs, samconfig.toml.

The IAM test runs every function through its sample events (``events/``) and the other paths
that reach DynamoDB differently (retries, fences, key changes, refusals) on moto, records every
DynamoDB request with a botocore event hook, turns each into the IAM actions and resources it
needs (``TransactWriteItems`` is authorized per item: ``PutItem``, ``UpdateItem``, ``DeleteItem``,
``ConditionCheckItem``; a ``Query`` with ``IndexName`` needs the index's ARN), and compares that
with the function's ``Policies``: nothing missing, nothing more. The license-key pepper is read
from moto's SSM the same way (``ssm:GetParameter`` on the stack's parameter, by the functions that
hash keys). Events are put on moto's EventBridge the same way (``events:PutEvents`` on the stack's
bus, by the function with ``EVENT_BUS_NAME``), the table's stream handed to StreamFunction as its
event source mapping would (:mod:`local.streams`).

The linters (cfn-lint, ``sam validate --lint``) run in ``tests/packaging/test_template_lint.py``.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from botocore.config import Config

from ai_credits import bus, credentials, observability
from ai_credits.clock import format_timestamp, parse_timestamp
from local.cfn import StreamSpec
from local.streams import StreamReader
from tests.handlers.conftest import LambdaContext, load_function, sample_event

ROOT = Path(__file__).resolve().parents[1]
TABLE_ID = "CreditsTable"

Grant = tuple[str, str]  # (IAM action, "table" or "index/<name>"; "ssm:GetParameter", "pepper")
#: The license-key pepper's SSM parameter, the only one a function may read.
PEPPER_GRANT = ("ssm:GetParameter", "pepper")
PEPPER_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${LicenseKeyPepperParameter}"
}
PEPPER_PARAMETER = "/ai-credits/test/license-key-pepper"  # in moto, for the scenarios
#: Putting events on the stack's bus, the only one a function may put on.
PUT_EVENTS_GRANT = ("events:PutEvents", "bus")
BUS_ARN = {"Fn::GetAtt": ["CreditsEventBus", "Arn"]}
EVENT_BUS = "ai-credits-test-bus"  # in moto, for the scenarios


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
    """The DynamoDB (action, resource) pairs a function's ``Policies`` allow, the pepper's
    ``ssm:GetParameter`` and the bus's ``events:PutEvents``. Only inline statements are accepted:
    a SAM policy template (``DynamoDBCrudPolicy``...) or a managed policy would grant what no test
    can see."""
    grants: set[Grant] = set()
    for policy in function["Properties"].get("Policies", []):
        assert isinstance(policy, dict) and set(policy) == {"Statement"}, (
            f"only inline policy statements, got {policy!r}"
        )
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and "Condition" not in statement, statement
            actions = _as_list(statement["Action"])
            if any(action.startswith("ssm:") for action in actions):
                assert (actions, statement["Resource"]) == (["ssm:GetParameter"], PEPPER_ARN), statement
                grants.add(PEPPER_GRANT)
                continue
            if any(action.startswith("events:") for action in actions):
                assert (actions, statement["Resource"]) == (["events:PutEvents"], BUS_ARN), statement
                grants.add(PUT_EVENTS_GRANT)
                continue
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

    def ssm(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        assert self.current is not None, f"an SSM {model.name} outside any function"
        assert (model.name, params) == ("GetParameter", {"Name": PEPPER_PARAMETER, "WithDecryption": True})
        self.requests[self.current].add(PEPPER_GRANT)

    def events(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        assert self.current is not None, f"an EventBridge {model.name} outside any function"
        assert model.name == "PutEvents", model.name
        assert {entry.get("EventBusName") for entry in params["Entries"]} == {EVENT_BUS}, params
        self.requests[self.current].add(PUT_EVENTS_GRANT)


@pytest.fixture
def recorder(moto_table: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """A fresh moto table (with its stream), the pepper in moto's SSM, read as in AWS (by parameter
    name), and the stack's bus in moto's EventBridge; the functions' DynamoDB client
    (``store.client()``) and every SSM and EventBridge client created from now on report to the
    recorder."""
    from ai_credits import store

    recorder = Recorder()
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    boto3.client("ssm").put_parameter(
        Name=PEPPER_PARAMETER, Value="a-pepper-for-the-iam-test-" + "x" * 32, Type="SecureString"
    )
    monkeypatch.setenv("LICENSE_KEY_PEPPER_PARAMETER", PEPPER_PARAMETER)
    boto3.client("events").create_event_bus(Name=EVENT_BUS)
    monkeypatch.setenv("EVENT_BUS_NAME", EVENT_BUS)
    store.reset_clients()  # settings are read again, with the parameter
    bus.client.cache_clear()
    store.client().meta.events.register("before-parameter-build.dynamodb", recorder)
    session.events.register("before-parameter-build.ssm", recorder.ssm)
    session.events.register("before-parameter-build.events", recorder.events)
    try:
        yield recorder
    finally:
        session.events.unregister("before-parameter-build.ssm", recorder.ssm)
        session.events.unregister("before-parameter-build.events", recorder.events)
        store.reset_clients()  # settings and pepper are read again, without the parameter
        bus.client.cache_clear()
        credentials.reset_license_key_pepper()


class Functions:
    """Invoke the template's functions by logical id, the recorder noting who asked what."""

    def __init__(self, template: dict[str, Any], recorder: Recorder) -> None:
        self._folders = {
            lid: Path(res["Properties"]["CodeUri"]).name for lid, res in _functions(template).items()
        }
        self._recorder = recorder

    def __call__(self, logical_id: str, event: dict[str, Any]) -> Any:
        self._recorder.current = logical_id
        # Each function has execution environments of its own: the first key it hashes reads the pepper.
        credentials.reset_license_key_pepper()
        try:
            return load_function(self._folders[logical_id]).lambda_handler(event, LambdaContext())
        finally:
            self._recorder.current = None


def _event_body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sample_event(name)["body"])
    return body


def http_event(
    name: str,
    *,
    body: Any = ...,
    token: str | None = None,
    license_id: str | None = None,
    hold_id: str | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``events/<name>.json`` with its body, bearer token, path license id or hold id, or query
    string replaced."""
    event = sample_event(name)
    if body is not ...:
        event["body"] = json.dumps(body)
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    for parameter, value in (("license_id", license_id), ("hold_id", hold_id)):
        if value is not None:
            event["pathParameters"][parameter] = value
            path = event["routeKey"].split(" ", 1)[1].replace("{" + parameter + "}", value)
            event["rawPath"] = event["requestContext"]["http"]["path"] = path
    if query:
        event["queryStringParameters"] = dict(query)
        event["rawQueryString"] = urlencode(query)
    return event


def deliver_the_stream(call: Functions) -> None:
    """The table's stream so far, handed to StreamFunction as its event source mapping would
    (batches of 100, ``batchItemFailures`` honoured); every record must be applied."""
    # moto answers the regional endpoint, not the account's one botocore picks from the ARN.
    streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
    (stream,) = streams.list_streams()["Streams"]
    given_up: list[dict[str, Any]] = []
    reader = StreamReader(
        streams,
        stream["StreamArn"],
        lambda event: call("StreamFunction", event),
        StreamSpec("TableStream", maximum_retry_attempts=0, report_batch_item_failures=True),
        retry_delay=0,
        on_failure=given_up.append,
    )
    assert reader.drain() > 0
    assert given_up == []


def run_scenarios(call: Functions) -> None:
    """The sample events in their story (provision, activate, balance, usage, consume, holds, portal,
    Apply, renew), then the other paths that make different DynamoDB requests, then the table's
    stream through StreamFunction and the portal's reads of what it derived. The rare paths are
    reached by turning the services' retry budgets to zero (``OPTIMISTIC_ATTEMPTS``,
    ``CAS_ATTEMPTS``), not by mocking: the requests are the real ones of those paths."""
    from ai_credits.services import fences, plugin

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

    def hold(status: int, token: str, **fields: Any) -> Any:
        body = {**_event_body("hold_create"), **fields}
        return answer("HoldsFunction", http_event("hold_create", body=body, token=token), status)

    def on_hold(name: str, status: int, token: str, hold_id: str | None = None, **options: Any) -> Any:
        """``hold_capture``, ``hold_release`` or ``hold_get`` (the sample's hold unless named)."""
        return answer("HoldsFunction", http_event(name, token=token, hold_id=hold_id, **options), status)

    license_key = _event_body("provision")["license_key"]
    paid = {**_event_body("provision"), "expires_at": "2028-11-01T00:00:00Z"}

    # The sample events: billing provisions lic-demo-1; www.example.com activates, reads its
    # balance, spends; the portal lists, reads and applies allocations.
    answer("ProvisionFunction", sample_event("provision"), 201)
    token = answer("ActivateFunction", sample_event("activate"), 201)["activation_token"]
    activate(201, site_url="staging.example.com")
    answer("GetBalanceFunction", http_event("get_balance", token=token), 200)
    answer("GetBalanceFunction", http_event("get_usage", token=token), 200)
    consume(200, token)  # charged
    consume(200, token)  # replayed
    consume(409, token, amount=7)  # the request_id reused with another body
    consume(402, token, request_id="too-much", amount=999_999)
    consume(401, token + "x", request_id="bad-token")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plugin, "CAS_ATTEMPTS", 0)  # as under contention: charge, then read
        consume(200, token, request_id="contended")

    # Holds (rule 11): placed, replayed, refused; the sample hold captured (and again) and read;
    # another released, then neither capturable nor found under another id; one left to expire,
    # which the sweeper releases as of a minute past its expires_at.
    hold(201, token)
    hold(200, token)  # replayed
    hold(409, token, amount=7)  # the hold_id reused with another body
    hold(409, token, hold_id=_event_body("consume")["request_id"])  # a consume's id: one namespace
    hold(402, token, hold_id="hold-too-much", amount=999_999)
    hold(401, token + "x", hold_id="hold-bad-token")
    on_hold("hold_capture", 200, token)
    assert on_hold("hold_capture", 200, token)["replayed"] is True
    on_hold("hold_capture", 409, token, body={"amount": 1})  # another amount
    on_hold("hold_release", 409, token)  # hold_captured
    on_hold("hold_get", 200, token)
    hold(201, token, hold_id="hold-released")
    on_hold("hold_release", 200, token, hold_id="hold-released")
    on_hold("hold_release", 200, token, hold_id="hold-released")  # the same answer
    on_hold("hold_capture", 409, token, hold_id="hold-released")  # hold_expired
    on_hold("hold_get", 404, token, hold_id="no-such-hold")
    expiring = hold(201, token, hold_id="hold-expiring", ttl_seconds=1)
    later = format_timestamp(parse_timestamp(expiring["expires_at"]) + timedelta(minutes=1))
    swept = call("HoldSweeperFunction", {**sample_event("sweep_holds-scheduled"), "time": later})
    assert swept == {"now": later, "released": 1}, swept
    assert on_hold("hold_get", 200, token, hold_id="hold-expiring")["status"] == "expired"
    hold(201, token, hold_id="hold-open-at-renewal", ttl_seconds=3600)  # the renewal releases it
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

    # A network's hold on a sub-site, read and captured (0: nothing charged) without ?subsite_url=
    # (the site's sub-sites are searched for it), then with it.
    shop = {"subsite_url": "https://shop.example.com/"}
    hold(201, token, hold_id="hold-subsite", **shop)
    on_hold("hold_get", 200, token, hold_id="hold-subsite")
    on_hold("hold_capture", 200, token, hold_id="hold-subsite", body={"amount": 0})
    on_hold("hold_get", 200, token, hold_id="hold-subsite", query=shop)

    # The scheduled renewal: the deactivated staging site (which releases its open hold) leaves
    # the view, lic-unpaid expires.
    staging = activate(200, license_key=license_key + "-2", site_url="staging.example.com")
    hold(201, staging, hold_id="hold-open-at-deactivation", amount=10)
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
        patch.setattr(fences, "OPTIMISTIC_ATTEMPTS", 0)
        assert call("RenewFunction", named)["renewed"] == ["lic-demo-2"]
        answer("ActivateFunction", http_event("deactivate", token=token), 204)
        removal = http_event(
            "portal_deactivate", body={"site_url": "imported.example.com"}, license_id="lic-demo-2"
        )
        answer("AllocateFunction", removal, 200)

    # Every change above through StreamFunction (usage, the statement, events); the portal reads
    # the usage and the statement it derived.
    deliver_the_stream(call)
    answer("LicensesFunction", sample_event("license_usage"), 200)
    first = answer("LicensesFunction", http_event("license_ledger", query={"limit": "1"}), 200)
    assert first["next_cursor"], "the statement has more than one entry"
    # A next page: its cursor was sealed with the pepper, and is opened with it.
    answer("LicensesFunction", http_event("license_ledger", query={"cursor": first["next_cursor"]}), 200)


def test_each_function_is_granted_exactly_the_dynamodb_requests_it_makes(
    template: dict[str, Any], recorder: Recorder
) -> None:
    run_scenarios(Functions(template, recorder))

    # The functions that hash license keys or seal page cursors read the pepper (and are granted
    # it: below).
    readers = {logical_id for logical_id, grants in recorder.requests.items() if PEPPER_GRANT in grants}
    assert readers == {"ProvisionFunction", "ActivateFunction", "LicensesFunction"}
    for logical_id in readers:
        environment = _functions(template)[logical_id]["Properties"]["Environment"]["Variables"]
        assert environment["LICENSE_KEY_PEPPER_PARAMETER"] == {"Ref": "LicenseKeyPepperParameter"}
    # The function that puts events is given the stack's bus (and is granted it: below).
    publishers = {
        logical_id for logical_id, grants in recorder.requests.items() if PUT_EVENTS_GRANT in grants
    }
    assert publishers == {"StreamFunction"}
    environment = _functions(template)["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["EVENT_BUS_NAME"] == {"Ref": "CreditsEventBus"}

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

    assert_alarmed_when_not_empty(template, "RenewalDeadLetterQueue")


def _queue_alarm(template: dict[str, Any], queue_id: str) -> dict[str, Any]:
    dimensions = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    (alarm,) = [
        props
        for props in _alarms(template).values()
        if props.get("Namespace") == "AWS/SQS" and props["Dimensions"] == dimensions
    ]
    return alarm


def assert_alarmed_when_not_empty(template: dict[str, Any], queue_id: str) -> None:
    alarm = _queue_alarm(template, queue_id)
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
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


def _invocations_alarm(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    (alarm,) = [
        props
        for props in _alarms(template).values()
        if props.get("MetricName") == "Invocations"
        and props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": logical_id}}]
    ]
    return alarm


def test_an_alarm_fires_when_the_renewal_schedule_stops_invoking_the_renew_function(
    template: dict[str, Any],
) -> None:
    alarm = _invocations_alarm(template, "RenewFunction")

    assert (alarm["Namespace"], alarm["Dimensions"]) == (
        "AWS/Lambda",
        [{"Name": "FunctionName", "Value": {"Ref": "RenewFunction"}}],
    )
    # Hourly runs: two hours without one. No data at all is the very case: breaching.
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 3600, 2)
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "LessThanThreshold",
        1,
        "breaching",
    )
    renew = _functions(template)["RenewFunction"]["Properties"]
    (schedule,) = [event["Properties"] for event in renew["Events"].values() if event["Type"] == "ScheduleV2"]
    assert schedule["ScheduleExpression"] == "rate(1 hour)"


def test_the_hold_sweeper_runs_every_minute_with_the_scheduled_time_and_is_alarmed_when_it_stops(
    template: dict[str, Any],
) -> None:
    sweeper = _functions(template)["HoldSweeperFunction"]["Properties"]
    (schedule,) = [
        event["Properties"] for event in sweeper["Events"].values() if event["Type"] == "ScheduleV2"
    ]
    # Expired holds' credits are back in remaining at most 60 seconds later (API.md, holds).
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert '"time": "<aws.scheduler.scheduled-time>"' in schedule["Input"]["Fn::Sub"]
    # A run never outlives the next one's start; a stale one is dropped, the next sweeps instead.
    assert sweeper["Timeout"] < 60
    assert sweeper["EventInvokeConfig"]["MaximumEventAgeInSeconds"] == 60
    assert schedule["RetryPolicy"]["MaximumEventAgeInSeconds"] == 60

    alarm = _invocations_alarm(template, "HoldSweeperFunction")
    assert (alarm["Statistic"], alarm["Period"] * alarm["EvaluationPeriods"]) == ("Sum", 300)
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "LessThanThreshold",
        1,
        "breaching",
    )


def test_the_open_holds_index_is_sparse_and_projects_what_the_sweeper_releases_with(
    template: dict[str, Any],
) -> None:
    table = template["Resources"][TABLE_ID]["Properties"]
    (index,) = [index for index in table["GlobalSecondaryIndexes"] if index["IndexName"] == "gsi4"]
    assert index["KeySchema"] == [
        {"AttributeName": "gsi4pk", "KeyType": "HASH"},
        {"AttributeName": "gsi4sk", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "gsi4pk", "AttributeType": "S"} in table["AttributeDefinitions"]
    assert {"AttributeName": "gsi4sk", "AttributeType": "S"} in table["AttributeDefinitions"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert {"license_id", "site", "hold_id", "held"} <= set(index["Projection"]["NonKeyAttributes"])


def test_every_alarm_notifies_the_optional_topic(template: dict[str, Any]) -> None:
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    alarms = _alarms(template)
    assert len(alarms) == 8
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == notify == alarm["OKActions"], logical_id
        assert alarm["AlarmDescription"].strip(), logical_id


# --------------------------------------------------------------------------------------------------
# The table's stream and the credits events
# --------------------------------------------------------------------------------------------------


def _stream_event(template: dict[str, Any]) -> dict[str, Any]:
    (event,) = _functions(template)["StreamFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "DynamoDB"
    properties: dict[str, Any] = event["Properties"]
    return properties


def test_the_table_streams_every_change_with_both_images(template: dict[str, Any]) -> None:
    table = template["Resources"][TABLE_ID]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_the_stream_function_reads_the_table_stream_in_order_with_partial_batch_responses(
    template: dict[str, Any],
) -> None:
    stream = _stream_event(template)

    assert stream["Stream"] == {"Fn::GetAtt": [TABLE_ID, "StreamArn"]}
    assert (stream["StartingPosition"], stream["BatchSize"], stream["MaximumBatchingWindowInSeconds"]) == (
        "TRIM_HORIZON",
        100,
        1,
    )
    # One batch at a time per shard: a key's changes in their order.
    assert stream["ParallelizationFactor"] == 1
    # The function names the first record it could not apply; an error splits the batch.
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["BisectBatchOnFunctionError"] is True
    # Retries end: a poison record holds its shard up for a bounded time, never forever.
    assert 0 <= stream["MaximumRetryAttempts"] <= 10_000
    assert 60 <= stream["MaximumRecordAgeInSeconds"] <= 86_400
    function = _functions(template)["StreamFunction"]["Properties"]
    assert function["CodeUri"] == "functions/stream/"
    assert "Handler" not in function  # Globals: app.lambda_handler, the layer, TABLE_NAME


def test_a_batch_the_stream_function_gives_up_lands_in_an_encrypted_queue_that_is_alarmed(
    template: dict[str, Any],
) -> None:
    assert _stream_event(template)["DestinationConfig"] == {
        "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}}
    }
    queue = template["Resources"]["StreamFailureQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert_alarmed_when_not_empty(template, "StreamFailureQueue")


def test_an_alarm_fires_when_the_stream_function_falls_a_minute_behind_for_5_minutes(
    template: dict[str, Any],
) -> None:
    (alarm,) = [props for props in _alarms(template).values() if props.get("MetricName") == "IteratorAge"]

    assert (alarm["Namespace"], alarm["Dimensions"]) == (
        "AWS/Lambda",
        [{"Name": "FunctionName", "Value": {"Ref": "StreamFunction"}}],
    )
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Maximum",
        "GreaterThanThreshold",
        60_000,
    )
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 300
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]


CREDITS_EVENTS = [
    "Credits Low",
    "Credits Exhausted",
    "Allocation Needed",
    "License Renewed",
    "License Expired",
    "Credits Granted",
]


def _rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _resources(template, "AWS::Events::Rule")


def test_every_credits_event_reaches_an_encrypted_queue_that_only_its_rule_may_send_to(
    template: dict[str, Any],
) -> None:
    (bus_id,) = _resources(template, "AWS::Events::EventBus")
    assert bus_id == "CreditsEventBus"
    rule = _rules(template)["CreditsEventsRule"]
    assert "Condition" not in rule
    rule_properties = rule["Properties"]
    assert rule_properties["EventBusName"] == {"Ref": bus_id}
    assert rule_properties["EventPattern"] == {"source": ["ai-credits"], "detail-type": CREDITS_EVENTS}
    queue_arn = {"Fn::GetAtt": ["CreditsEventsQueue", "Arn"]}
    assert [target["Arn"] for target in rule_properties["Targets"]] == [queue_arn]
    assert template["Resources"]["CreditsEventsQueue"]["Properties"]["SqsManagedSseEnabled"] is True

    (policy,) = _resources(template, "AWS::SQS::QueuePolicy").values()
    assert policy["Properties"]["Queues"] == [{"Ref": "CreditsEventsQueue"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["CreditsEventsRule", "Arn"]}}},
    }


def test_the_webhook_exists_only_with_a_url_and_calls_it_with_the_api_key(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert (parameters["EventsWebhookUrl"]["Default"], parameters["EventsWebhookApiKey"]["Default"]) == (
        "",
        "",
    )
    assert parameters["EventsWebhookApiKey"]["NoEcho"] is True
    assert template["Conditions"]["HasEventsWebhook"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "EventsWebhookUrl"}, ""]}]
    }
    webhook = {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource.get("Condition") == "HasEventsWebhook"
    }
    assert webhook == {
        "EventsWebhookConnection",
        "EventsWebhookDestination",
        "EventsWebhookRule",
        "EventsWebhookRole",
    }

    connection = template["Resources"]["EventsWebhookConnection"]["Properties"]
    assert connection["AuthorizationType"] == "API_KEY"
    assert connection["AuthParameters"]["ApiKeyAuthParameters"] == {
        "ApiKeyName": "x-api-key",
        "ApiKeyValue": {"Fn::Sub": "${EventsWebhookApiKey}"},
    }
    destination = template["Resources"]["EventsWebhookDestination"]["Properties"]
    assert destination["InvocationEndpoint"] == {"Ref": "EventsWebhookUrl"}
    assert destination["HttpMethod"] == "POST" and destination["InvocationRateLimitPerSecond"] >= 1
    rule = _rules(template)["EventsWebhookRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "CreditsEventBus"}
    assert rule["EventPattern"] == {"source": ["ai-credits"], "detail-type": CREDITS_EVENTS}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["EventsWebhookDestination", "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": ["EventsWebhookRole", "Arn"]}
    role = template["Resources"]["EventsWebhookRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    (policy,) = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "events:InvokeApiDestination",
            "Resource": {"Fn::GetAtt": ["EventsWebhookDestination", "Arn"]},
        }
    ]


def test_a_webhook_needs_its_api_key(template: dict[str, Any]) -> None:
    real = {
        "PortalJwtIssuer": "https://login.feeds.example.org/",
        "LicenseKeyPepperParameter": "/x/pepper",
        "BillingRoleArn": "arn:aws:iam::123456789012:role/billing",
    }
    webhook = {"EventsWebhookUrl": "https://hooks.example.org/credits"}

    assert refused(template, real) == []
    assert refused(template, {**real, **webhook}) == ["EventsWebhookHasApiKey"]
    assert refused(template, {**real, **webhook, "EventsWebhookApiKey": "k" * 32}) == []


# --------------------------------------------------------------------------------------------------
# The API, tracing, outputs
# --------------------------------------------------------------------------------------------------


def _route_auth(template: dict[str, Any], logical_id: str) -> dict[str, str]:
    """A function's routes (``"GET /v1/usage"``) and their authorizers."""
    return {
        f"{event['Properties']['Method']} {event['Properties']['Path']}": event["Properties"]["Auth"][
            "Authorizer"
        ]
        for event in _functions(template)[logical_id]["Properties"]["Events"].values()
        if event["Type"] == "HttpApi"
    }


def test_usage_and_the_statement_are_authorized_like_the_balance_and_the_credits(
    template: dict[str, Any],
) -> None:
    # The plugin's routes check the activation token in the function; the portal's have the JWT.
    assert _route_auth(template, "GetBalanceFunction") == {"GET /v1/balance": "NONE", "GET /v1/usage": "NONE"}
    portal = _route_auth(template, "LicensesFunction")
    assert portal == {
        "GET /v1/licenses": "PortalJwt",
        "GET /v1/licenses/{license_id}/credits": "PortalJwt",
        "GET /v1/licenses/{license_id}/usage": "PortalJwt",
        "GET /v1/licenses/{license_id}/ledger": "PortalJwt",
    }


def test_every_route_is_throttled_by_the_stage_parameters(template: dict[str, Any]) -> None:
    (api,) = _resources(template, "AWS::Serverless::HttpApi").values()
    assert api["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    for name in ("ApiThrottlingRateLimit", "ApiThrottlingBurstLimit"):
        assert template["Parameters"][name]["Type"] == "Number"
        assert template["Parameters"][name]["MinValue"] >= 1


@pytest.mark.parametrize(
    ("logical_id", "parameter_name", "condition"),
    [
        ("RenewFunction", "RenewReservedConcurrency", "HasRenewReservation"),
        ("HoldSweeperFunction", "HoldSweeperReservedConcurrency", "HasHoldSweeperReservation"),
    ],
)
def test_the_scheduled_functions_have_reserved_concurrency_that_plugin_traffic_cannot_take(
    template: dict[str, Any], logical_id: str, parameter_name: str, condition: str
) -> None:
    parameter = template["Parameters"][parameter_name]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 2, 0)
    assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter_name}, "0"]}]}
    functions = _functions(template)
    assert functions[logical_id]["Properties"]["ReservedConcurrentExecutions"] == {
        "Fn::If": [condition, {"Ref": parameter_name}, {"Ref": "AWS::NoValue"}]
    }
    # The API's functions share the rest; the routes stay throttled (test above).
    assert [lid for lid, res in functions.items() if "ReservedConcurrentExecutions" in res["Properties"]] == [
        "RenewFunction",
        "HoldSweeperFunction",
    ]


def _log_group_name(function: dict[str, Any]) -> str:
    """The ``/aws/lambda/<name>`` Lambda writes a function to, from its fixed ``FunctionName``."""
    name: str = function["Properties"]["FunctionName"]["Fn::Sub"]
    assert re.fullmatch(r"\$\{AWS::StackName\}-[a-z-]+", name), name
    return "/aws/lambda/" + name


def test_every_function_logs_to_its_own_log_group_with_the_retention(template: dict[str, Any]) -> None:
    retention = template["Parameters"]["LogRetentionInDays"]
    assert (retention["Type"], retention["Default"]) == ("Number", 30)
    groups = _resources(template, "AWS::Logs::LogGroup")
    functions = _functions(template)

    for logical_id, function in functions.items():
        (group_id,) = function["Properties"]["LoggingConfig"]["LogGroup"].values()  # {"Ref": ...}
        group = groups[group_id]["Properties"]
        # Named as Lambda names a function's group, referenced so it exists before the function.
        assert group["LogGroupName"] == {"Fn::Sub": _log_group_name(function)}, logical_id
        assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, logical_id
    names = [function["Properties"]["FunctionName"]["Fn::Sub"] for function in functions.values()]
    assert len(set(names)) == len(names)
    # Every log group has the retention; the one besides the functions' is the API's access log.
    assert all(
        group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"} for group in groups.values()
    )
    assert len(groups) == len(functions) + 1


def test_the_api_access_log_has_the_retention_and_no_credentials(template: dict[str, Any]) -> None:
    (api,) = _resources(template, "AWS::Serverless::HttpApi").values()
    settings = api["Properties"]["AccessLogSettings"]
    (group_id, attribute) = settings["DestinationArn"]["Fn::GetAtt"]
    assert attribute == "Arn"
    group = template["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}

    fields = json.loads(settings["Format"])  # one JSON object per request
    variables = set(re.findall(r"\$[A-Za-z.]+", settings["Format"]))
    assert {
        "$context.requestId",
        "$context.routeKey",
        "$context.status",
        "$context.responseLatency",
    } <= variables
    assert "$context.integrationErrorMessage" in variables and "$context.identity.sourceIp" in variables
    assert all(value.startswith("$context.") for value in fields.values())
    # Headers (the Authorization header: tokens, JWTs), bodies (license keys), query strings, the
    # raw path or the JWT's claims: none of them.
    for variable in variables:
        assert not variable.startswith("$request") and not variable.startswith("$input"), variable
        lowered = variable.lower()
        assert not any(
            word in lowered for word in ("header", "body", "querystring", "authorization", "claims", "path")
        ), variable


def test_every_function_is_traced(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    assert all("Tracing" not in function["Properties"] for function in _functions(template).values())


def test_every_function_starts_from_a_snapstart_snapshot_through_its_alias(template: dict[str, Any]) -> None:
    """SnapStart snapshots published versions only: every function publishes one per deployment
    under the alias ``live`` (AutoPublishAlias), and nothing SnapStart refuses is configured."""
    function_globals = template["Globals"]["Function"]
    assert function_globals["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert function_globals["AutoPublishAlias"] == "live"
    major, minor = function_globals["Runtime"].removeprefix("python").split(".")
    assert (int(major), int(minor)) >= (3, 12), "SnapStart for Python starts with python3.12"
    for logical_id, function in _functions(template).items():
        properties = function["Properties"]
        assert not {"SnapStart", "AutoPublishAlias", "Runtime"} & properties.keys(), logical_id
        refused = {"ProvisionedConcurrencyConfig", "FileSystemConfigs"} & properties.keys()
        assert not refused, f"{logical_id}: SnapStart does not support {refused}"
        assert properties.get("EphemeralStorage", {}).get("Size", 512) <= 512, logical_id


def test_every_trigger_is_a_sam_event_so_it_invokes_the_alias(template: dict[str, Any]) -> None:
    """SAM points a function's own events (HttpApi, ScheduleV2, DynamoDB) at its alias; a trigger
    written as a resource naming the function would invoke $LATEST, which has no snapshot."""
    functions = set(_functions(template))
    direct = {"AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping", "AWS::Scheduler::Schedule",
              "AWS::Events::Rule", "AWS::Lambda::EventInvokeConfig"}  # fmt: skip
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in direct:
            named = {name for name in functions if name in json.dumps(resource["Properties"])}
            assert not named, f"{logical_id} targets {named} directly, not their alias"
    for logical_id, function in _functions(template).items():
        kinds = {event["Type"] for event in function["Properties"].get("Events", {}).values()}
        assert kinds and kinds <= {"HttpApi", "ScheduleV2", "DynamoDB"}, (logical_id, kinds)


def test_the_outputs_give_the_api_url_the_table_the_bus_and_the_queues(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    (api_id,) = _resources(template, "AWS::Serverless::HttpApi")
    assert "${" + api_id + "}" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert outputs["TableName"]["Value"] == {"Ref": TABLE_ID}
    assert outputs["EventBusName"]["Value"] == {"Ref": "CreditsEventBus"}
    assert outputs["EventBusArn"]["Value"] == {"Fn::GetAtt": ["CreditsEventBus", "Arn"]}
    assert outputs["CreditsEventsQueueUrl"]["Value"] == {"Ref": "CreditsEventsQueue"}
    assert outputs["StreamFailureQueueUrl"]["Value"] == {"Ref": "StreamFailureQueue"}


# --------------------------------------------------------------------------------------------------
# samconfig.toml
# --------------------------------------------------------------------------------------------------


def _overrides(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(text))


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml").read_text())


def _evaluate(expression: Any, parameters: dict[str, str]) -> Any:
    """A CloudFormation rule expression with these parameter values (the functions Rules use here)."""
    if isinstance(expression, list):
        return [_evaluate(item, parameters) for item in expression]
    if not isinstance(expression, dict):
        return expression
    ((function, argument),) = expression.items()
    if function == "Ref":
        return parameters[argument]
    values = _evaluate(argument, parameters)
    if function == "Fn::Equals":
        return values[0] == values[1]
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::Contains":
        return values[1] in values[0]
    raise AssertionError(f"{function}: not evaluated by this test")


def refused(template: dict[str, Any], overrides: dict[str, str]) -> list[str]:
    """The Rules that refuse a deploy with these parameters (defaults for the others)."""
    parameters = {name: str(p["Default"]) for name, p in template["Parameters"].items() if "Default" in p}
    parameters |= overrides
    return [
        name
        for name, rule in template["Rules"].items()
        if _evaluate(rule.get("RuleCondition", True), parameters)
        and not all(_evaluate(assertion["Assert"], parameters) for assertion in rule["Assertions"])
    ]


def test_prod_refuses_a_placeholder_issuer_and_every_stage_needs_the_pepper_and_the_billing_role(
    template: dict[str, Any],
) -> None:
    issuer = template["Parameters"]["PortalJwtIssuer"]
    assert "Default" not in issuer  # each stage names its own
    pepper = template["Parameters"]["LicenseKeyPepperParameter"]
    assert pepper["Default"] == ""  # local runs only (the local pepper)
    assert template["Parameters"]["BillingRoleArn"]["Default"] == ""  # local runs only
    real = {
        "PortalJwtIssuer": "https://login.feeds.example.org/",
        "LicenseKeyPepperParameter": "/x/pepper",
        "BillingRoleArn": "arn:aws:iam::123456789012:role/billing",
    }

    assert refused(template, {**real, "Stage": "prod"}) == []
    assert refused(template, {**real, "Stage": "dev"}) == []
    for placeholder in ("https://auth.example.com/", "https://auth.dev.example.com/"):
        assert refused(template, {**real, "Stage": "prod", "PortalJwtIssuer": placeholder}) == [
            "ProdPortalJwtIssuerIsReal"
        ]
        assert refused(template, {**real, "Stage": "dev", "PortalJwtIssuer": placeholder}) == []
    for stage in ("dev", "prod"):
        assert refused(template, {**real, "Stage": stage, "LicenseKeyPepperParameter": ""}) == [
            "LicenseKeyPepperIsNamed"
        ]
        assert refused(template, {**real, "Stage": stage, "BillingRoleArn": ""}) == ["BillingRoleIsNamed"]


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
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], value), (name, value)
    assert int(overrides["ApiThrottlingBurstLimit"]) >= int(overrides["ApiThrottlingRateLimit"])
    # Every stage names its own pepper; prod names no issuer until the real one is written in
    # (a deploy without it fails), dev's placeholder would be refused in prod.
    assert overrides["LicenseKeyPepperParameter"] == f"/ai-credits/{stage}/license-key-pepper"
    # The billing role names an account: no stage has one until it is written in.
    assert "BillingRoleArn" not in overrides
    if stage == "prod":
        assert "PortalJwtIssuer" not in overrides
    else:
        assert refused(template, overrides) == ["BillingRoleIsNamed"]


def test_samconfig_has_no_default_stack_and_validates_with_the_linter(samconfig: dict[str, Any]) -> None:
    assert "deploy" not in samconfig["default"]  # a deploy names its stage: --config-env dev|prod
    assert samconfig["default"]["validate"]["parameters"]["lint"] is True
    assert (
        samconfig["dev"]["deploy"]["parameters"]["stack_name"]
        != samconfig["prod"]["deploy"]["parameters"]["stack_name"]
    )


def test_the_stream_function_gets_the_source_items_changes_only(template: dict[str, Any]) -> None:
    """Its own writes (usage, statement, sent events) are filtered out before they cost an
    invocation (and could never come back to it)."""
    from local.cfn import functions

    (spec,) = next(
        function for function in functions(template) if function.logical_id == "StreamFunction"
    ).streams

    def record(pk: str) -> dict[str, Any]:
        return {"dynamodb": {"Keys": {"pk": {"S": pk}, "sk": {"S": "x"}}}}

    assert [spec.wants(record(pk)) for pk in ("LICENSE#l", "LEDGER#l")] == [True, True]
    assert [spec.wants(record(pk)) for pk in ("USAGE#l", "STATEMENT#l", "EVENT#e", "KEY#k")] == [False] * 4
