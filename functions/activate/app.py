"""Plugin: ``POST /v1/activations`` (license key) and ``DELETE /v1/activations/current`` (token)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import create_app, error_responses, json_response, now, success
from ai_credits.coldstart import init_done
from ai_credits.errors import ActivationLimitReached, LicenseExpired, MalformedJson, NotFound, Unauthorized
from ai_credits.models import ActivationRequest, ActivationResponse
from ai_credits.observability import ACTIVATIONS_PREFIX, logger, metrics, tracer
from ai_credits.services import plugin

app = create_app()


@app.post(
    "/v1/activations",
    summary="Activate a site",
    responses={
        201: success(ActivationResponse, "activated"),
        200: success(ActivationResponse, "already active: its token is rotated, the old one stops working"),
        **error_responses(MalformedJson, NotFound, LicenseExpired, ActivationLimitReached),
    },
    tags=["plugin"],
)
def activate(request: Annotated[ActivationRequest, Body()]) -> Response[ActivationResponse]:
    activation = plugin.activate(request, now())
    if activation.created:
        metrics.add_metric(
            name=f"{ACTIVATIONS_PREFIX}{activation.response.environment}", unit=MetricUnit.Count, value=1
        )
    return json_response(201 if activation.created else 200, activation.response.model_dump())


@app.delete(
    "/v1/activations/current",
    summary="Deactivate the site of this activation token",
    responses={204: success(None, "deactivated"), **error_responses(Unauthorized)},
    tags=["plugin"],
)
def deactivate() -> Response[None]:
    plugin.deactivate(app.current_event.headers.get("authorization"), now())
    return Response(status_code=204)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


init_done()  # last: see ai_credits.coldstart
