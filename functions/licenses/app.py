"""Portal reads: ``GET /v1/licenses`` and ``GET /v1/licenses/{license_id}/credits`` (JWT)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import create_app, error_responses, json_response, now, portal_account, success
from ai_credits.errors import NotFound, Unauthorized
from ai_credits.models import CreditsView, LicenseId, LicenseList
from ai_credits.observability import logger, metrics, tracer
from ai_credits.services import portal

app = create_app()


@app.get(
    "/v1/licenses",
    summary="The caller's licenses",
    responses={200: success(LicenseList, "the licenses"), **error_responses(Unauthorized)},
    tags=["portal"],
)
def list_licenses() -> Response[LicenseList]:
    return json_response(200, portal.list_licenses(portal_account(app), now()).model_dump())


@app.get(
    "/v1/licenses/<license_id>/credits",
    summary="Manage AI Credits: the license's sites and their credits",
    responses={
        200: success(CreditsView, "the license's credits"),
        **error_responses(Unauthorized, NotFound),
    },
    tags=["portal"],
)
def license_credits(license_id: Annotated[LicenseId, Path()]) -> Response[CreditsView]:
    view = portal.license_credits(portal_account(app), license_id, now())
    return json_response(200, view.model_dump())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
