"""Portal: ``PUT /v1/licenses/{license_id}/allocations`` — *Apply* in *Manage AI Credits* (JWT)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits import services
from ai_credits.api import create_app, error_responses, json_response, now, portal_account, success
from ai_credits.models import AllocationRequest, CreditsView, LicenseId
from ai_credits.observability import ALLOCATIONS_APPLIED, logger, metrics, tracer

app = create_app()


@app.put(
    "/v1/licenses/<license_id>/allocations",
    summary="Apply allocations (absolute values; sites not named keep theirs), all or nothing",
    responses={
        200: success(CreditsView, "applied: the license's credits now"),
        **error_responses(
            "malformed_json", "unauthorized", "not_found", "license_expired", "over_allocation", "below_used"
        ),
    },
    tags=["portal"],
)
def apply_allocations(
    license_id: Annotated[LicenseId, Path()], request: Annotated[AllocationRequest, Body()]
) -> Response[CreditsView]:
    view = services.apply_allocations(portal_account(app), license_id, request.allocations, now())
    metrics.add_metric(name=ALLOCATIONS_APPLIED, unit=MetricUnit.Count, value=1)
    return json_response(200, view.model_dump())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
