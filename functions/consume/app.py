"""Plugin: ``POST /v1/consume`` — spend credits exactly once per ``request_id``."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import create_app, error_responses, json_response, now, success
from ai_credits.coldstart import init_done
from ai_credits.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    LicenseExpired,
    MalformedJson,
    Unauthorized,
)
from ai_credits.models import ConsumeRequest, ConsumeResponse
from ai_credits.observability import CREDITS_CONSUMED, logger, metrics, tracer
from ai_credits.services import plugin

app = create_app()


@app.post(
    "/v1/consume",
    summary="Spend credits",
    responses={
        200: success(ConsumeResponse, "charged, or the first answer replayed"),
        **error_responses(
            MalformedJson, Unauthorized, InsufficientCredits, LicenseExpired, IdempotencyConflict
        ),
    },
    tags=["plugin"],
)
def consume(request: Annotated[ConsumeRequest, Body()]) -> Response[ConsumeResponse]:
    result = plugin.consume(app.current_event.headers.get("authorization"), request, now())
    if not result.replayed:
        metrics.add_metric(name=CREDITS_CONSUMED, unit=MetricUnit.Count, value=result.consumed)
    return json_response(200, result.model_dump())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


init_done()  # last: see ai_credits.coldstart
