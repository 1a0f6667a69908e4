"""Billing: ``PUT /v1/admin/licenses/{license_id}`` (IAM-authorized by the HTTP API)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.access import require_billing_caller
from ai_credits.api import create_app, error_responses, json_response, now, success
from ai_credits.errors import ActivationLimitReached, Forbidden, LicenseKeyInUse, MalformedJson, Unauthorized
from ai_credits.models import LicenseId, ProvisionRequest, ProvisionResponse
from ai_credits.observability import logger, metrics, tracer
from ai_credits.services import billing

app = create_app()


@app.put(
    "/v1/admin/licenses/<license_id>",
    summary="Create or update a license",
    responses={
        201: success(ProvisionResponse, "created"),
        200: success(ProvisionResponse, "updated"),
        **error_responses(MalformedJson, Unauthorized, Forbidden, ActivationLimitReached, LicenseKeyInUse),
    },
    tags=["billing"],
)
def put_license(
    license_id: Annotated[LicenseId, Path()], request: Annotated[ProvisionRequest, Body()]
) -> Response[ProvisionResponse]:
    require_billing_caller(app.current_event)
    created, view = billing.provision_license(license_id, request, now())
    return json_response(201 if created else 200, view.model_dump())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
