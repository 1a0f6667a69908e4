"""Billing: ``PUT /v1/admin/licenses/{license_id}``, ``POST .../grants`` and ``POST .../refunds``
(IAM, the billing role)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.access import require_billing_caller
from ai_credits.api import create_app, error_responses, json_response, now, success
from ai_credits.coldstart import init_done
from ai_credits.errors import (
    ActivationLimitReached,
    Forbidden,
    IdempotencyConflict,
    LicenseExpired,
    LicenseKeyInUse,
    MalformedJson,
    NotFound,
    TermEnded,
    Unauthorized,
)
from ai_credits.models import (
    CreditsView,
    GrantRequest,
    LicenseId,
    ProvisionRequest,
    ProvisionResponse,
    RefundRequest,
    RefundResponse,
)
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


@app.post(
    "/v1/admin/licenses/<license_id>/grants",
    summary="Grant credits (a top-up, a goodwill credit) to the current term, once per grant_id",
    responses={
        201: success(CreditsView, "granted: the license's credits now"),
        200: success(CreditsView, "the same grant again: nothing added"),
        **error_responses(
            MalformedJson, Unauthorized, Forbidden, NotFound, LicenseExpired, IdempotencyConflict
        ),
    },
    tags=["billing"],
)
def post_grant(
    license_id: Annotated[LicenseId, Path()], request: Annotated[GrantRequest, Body()]
) -> Response[CreditsView]:
    require_billing_caller(app.current_event)
    applied, view = billing.grant_credits(license_id, request, now())
    return json_response(201 if applied else 200, view.model_dump())


@app.post(
    "/v1/admin/licenses/<license_id>/refunds",
    summary="Refund a charged consume or capture (its term only, at most what it charged, once)",
    responses={
        201: success(RefundResponse, "refunded"),
        200: success(RefundResponse, "the same refund again: the first answer"),
        **error_responses(MalformedJson, Unauthorized, Forbidden, NotFound, IdempotencyConflict, TermEnded),
    },
    tags=["billing"],
)
def post_refund(
    license_id: Annotated[LicenseId, Path()], request: Annotated[RefundRequest, Body()]
) -> Response[RefundResponse]:
    require_billing_caller(app.current_event)
    refunded, answer = billing.refund(license_id, request, now())
    return json_response(201 if refunded else 200, answer.model_dump())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


init_done()  # last: see ai_credits.coldstart
