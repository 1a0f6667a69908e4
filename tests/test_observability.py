"""Logger, Metrics and Tracer: one set (``ai_credits.observability``), the same decorators on every
handler, correlation ids from the event, the metrics the alarms and dashboards rely on, and
tracing off in tests and local runs (no X-Ray daemon here)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from ai_credits import observability
from tests.handlers.conftest import LambdaContext, load_function, make_event, renew, sample_event

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))

HTTP_DECORATORS = [
    "logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)",
    "tracer.capture_lambda_handler(capture_response=False)",
    "metrics.log_metrics",
]
SCHEDULE_DECORATORS = [
    "logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)",
    *HTTP_DECORATORS[1:],
]
# A batch of stream records has no one id to correlate by: each invocation's request id is it.
STREAM_DECORATORS = ["logger.inject_lambda_context", *HTTP_DECORATORS[1:]]
DECORATORS = {"renew": SCHEDULE_DECORATORS, "sweep_holds": SCHEDULE_DECORATORS, "stream": STREAM_DECORATORS}


def _handler(path: Path) -> ast.FunctionDef:
    tree = ast.parse(path.read_text())
    (handler,) = [
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "lambda_handler"
    ]
    return handler


@pytest.mark.parametrize("path", HANDLERS, ids=lambda path: path.parent.name)
def test_every_handler_wears_the_same_decorators_in_the_same_order(path: Path) -> None:
    expected = DECORATORS.get(path.parent.name, HTTP_DECORATORS)

    assert [ast.unparse(decorator) for decorator in _handler(path).decorator_list] == expected


@pytest.mark.parametrize("path", HANDLERS, ids=lambda path: path.parent.name)
def test_every_handler_uses_the_one_set_of_observability_objects(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "ai_credits.observability"
        for alias in node.names
    }
    created = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func).split(".")[-1] in ("Logger", "Metrics", "Tracer")
    ]

    assert {"logger", "metrics", "tracer"} <= imported
    assert created == []


# --------------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------------


def test_tracing_is_off_in_tests_with_a_provider_that_does_nothing() -> None:
    tracer = observability.tracer

    assert tracer.disabled
    assert type(tracer.provider).__name__ == "_NoTracing"
    with tracer.provider.in_subsegment("## anything") as subsegment:
        subsegment.put_annotation("key", "value")


@pytest.mark.parametrize(
    ("environment", "enabled"),
    [
        ({}, False),  # tests, make run, make bench: not in Lambda
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),  # sam local invoke
    ],
)
def test_tracing_is_on_in_lambda_only_as_powertools_decides(
    environment: dict[str, str], enabled: bool
) -> None:
    from aws_lambda_powertools import Tracer

    assert observability.tracing_enabled(environment) is enabled
    # The same rule as Powertools' own (it imports the X-Ray SDK whatever it decides).
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "LAMBDA_TASK_ROOT",
            "POWERTOOLS_TRACE_DISABLED",
            "AWS_SAM_LOCAL",
            "AWS_CHALICE_CLI_MODE",
        ):
            patch.delenv(name, raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        assert bool(Tracer._is_tracer_disabled()) is not enabled


# --------------------------------------------------------------------------------------------------
# Correlation ids and metrics (EMF on stdout)
# --------------------------------------------------------------------------------------------------


def _emf(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def _metrics(blobs: list[dict[str, Any]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "AICredits"  # POWERTOOLS_METRICS_NAMESPACE in tests
            assert directive["Dimensions"] == [["service"]] and blob["service"] == "ai-credits"
            for metric in directive["Metrics"]:
                found[metric["Name"]] = found.get(metric["Name"], 0) + sum(blob[metric["Name"]])
    return found


def test_the_correlation_id_is_the_http_apis_request_id() -> None:
    event = make_event("get_balance", token="not-a-token")  # refused before any DynamoDB request
    event["requestContext"]["requestId"] = "req-correlation-1"

    response = load_function("get_balance").lambda_handler(event, LambdaContext())

    assert response["statusCode"] == 401
    assert observability.logger.get_correlation_id() == "req-correlation-1"


@pytest.fixture
def plugin(moto_table: str) -> dict[str, str]:
    """A provisioned license with one live site: its activation token."""
    from ai_credits import store

    store.reset_clients()
    load_function("provision").lambda_handler(sample_event("provision"), LambdaContext())
    answer = load_function("activate").lambda_handler(sample_event("activate"), LambdaContext())
    return {"token": json.loads(answer["body"])["activation_token"]}


def test_a_charge_counts_the_credits_and_a_402_counts_one_refusal(
    plugin: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    consume = load_function("consume").lambda_handler
    capsys.readouterr()

    consume(make_event("consume", token=plugin["token"]), LambdaContext())
    charged = _metrics(_emf(capsys.readouterr().out))
    too_much = make_event(
        "consume", token=plugin["token"], body={"amount": 999_999, "request_id": "too-much"}
    )
    refused = consume(too_much, LambdaContext())
    refusals = _metrics(_emf(capsys.readouterr().out))
    consume(make_event("consume", token=plugin["token"]), LambdaContext())  # a replay
    replayed = _metrics(_emf(capsys.readouterr().out))

    assert charged == {observability.CREDITS_CONSUMED: 5}
    assert refused["statusCode"] == 402
    assert refusals == {observability.INSUFFICIENT_CREDIT_REFUSALS: 1}
    assert replayed == {}


def test_a_renewal_run_reports_its_failures_as_the_alarmed_metric_with_the_schedules_correlation_id(
    moto_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {**sample_event("renew-scheduled"), "license_id": "no-such-license"}
    capsys.readouterr()

    result = renew(event)

    assert [failure["license_id"] for failure in result["failed"]] == ["no-such-license"]
    assert _metrics(_emf(capsys.readouterr().out)) == {
        observability.LICENSES_RENEWED: 0,
        observability.LICENSES_EXPIRED: 0,
        observability.RENEWAL_FAILURES: 1,
    }
    assert observability.logger.get_correlation_id() == event["id"]
