"""Portal writes (JWT): *Apply* (`PUT /v1/licenses/{license_id}/allocations`) and the removal of a site
(`POST /v1/licenses/{license_id}/deactivations`)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import create_app, error_responses, json_response, now, portal_account, success
from ai_credits.coldstart import init_done
from ai_credits.errors import BelowUsed, LicenseExpired, MalformedJson, NotFound, OverAllocation, Unauthorized
from ai_credits.models import AllocationRequest, CreditsView, DeactivationRequest, LicenseId
from ai_credits.observability import ALLOCATIONS_APPLIED, logger, metrics, tracer
from ai_credits.services import portal

app = create_app()


@app.put(
    "/v1/licenses/<license_id>/allocations",
    summary="Apply allocations (absolute values; sites not named keep theirs), all or nothing",
    responses={
        200: success(CreditsView, "applied: the license's credits now"),
        **error_responses(MalformedJson, Unauthorized, NotFound, LicenseExpired, OverAllocation, BelowUsed),
    },
    tags=["portal"],
)
def apply_allocations(
    license_id: Annotated[LicenseId, Path()], request: Annotated[AllocationRequest, Body()]
) -> Response[CreditsView]:
    view = portal.apply_allocations(portal_account(app), license_id, request.allocations, now())
    metrics.add_metric(name=ALLOCATIONS_APPLIED, unit=MetricUnit.Count, value=1)
    # The model, not its dump: Powertools validates the answer against the return type, and a
    # CreditsView instance passes as it is (pydantic does not revalidate instances), where a dict
    # of 98 rows was validated a second time. The JSON is the same: Powertools dumps the model.
    return json_response(200, view)


@app.post(
    "/v1/licenses/<license_id>/deactivations",
    summary="Remove a site: its allocation shrinks to what it used, its activation token stops working",
    responses={
        200: success(CreditsView, "deactivated: the license's credits now"),
        **error_responses(MalformedJson, Unauthorized, NotFound),
    },
    tags=["portal"],
)
def deactivate_site(
    license_id: Annotated[LicenseId, Path()], request: Annotated[DeactivationRequest, Body()]
) -> Response[CreditsView]:
    view = portal.deactivate_site(portal_account(app), license_id, request.site_url, now())
    return json_response(200, view.model_dump())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


init_done()  # last: see ai_credits.coldstart
