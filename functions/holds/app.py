"""Plugin (activation token), rule 11: ``POST /v1/holds``, ``POST /v1/holds/{hold_id}/capture``,
``DELETE /v1/holds/{hold_id}`` and ``GET /v1/holds/{hold_id}`` (``?subsite_url=`` on the last three:
on a network, hold ids are scoped per sub-site)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import create_app, error_responses, json_response, now, success
from ai_credits.coldstart import init_done
from ai_credits.errors import (
    HoldCaptured,
    HoldExpired,
    IdempotencyConflict,
    InsufficientCredits,
    LicenseExpired,
    MalformedJson,
    NotFound,
    Unauthorized,
)
from ai_credits.models import (
    CaptureRequest,
    CaptureResponse,
    HoldRequest,
    HoldResponse,
    HoldView,
    ReleaseResponse,
    RequestId,
    SiteUrl,
)
from ai_credits.observability import CREDITS_CONSUMED, logger, metrics, tracer
from ai_credits.services import holds

app = create_app()

HoldId = Annotated[RequestId, Path(description="the hold_id the hold was placed with")]
SubsiteUrl = Annotated[
    SiteUrl | None,
    Query(description="the network's sub-site of the hold, when the same hold_id is open on several"),
]


def _authorization() -> str | None:
    return app.current_event.headers.get("authorization")


@app.post(
    "/v1/holds",
    summary="Reserve credits before an AI call whose cost is known only afterwards",
    responses={
        201: success(HoldResponse, "held"),
        200: success(HoldResponse, "the same request again: the first answer replayed"),
        **error_responses(
            MalformedJson, Unauthorized, InsufficientCredits, LicenseExpired, IdempotencyConflict
        ),
    },
    tags=["plugin"],
)
def place_hold(request: Annotated[HoldRequest, Body()]) -> Response[HoldResponse]:
    created, result = holds.place_hold(_authorization(), request, now())
    return json_response(201 if created else 200, result.model_dump())


@app.post(
    "/v1/holds/<hold_id>/capture",
    summary="Charge what the call cost (at most the held amount) and give back the rest",
    responses={
        200: success(CaptureResponse, "captured, or the first answer replayed"),
        **error_responses(
            MalformedJson,
            Unauthorized,
            LicenseExpired,
            NotFound,
            IdempotencyConflict,
            HoldExpired,
        ),
    },
    tags=["plugin"],
)
def capture_hold(
    hold_id: HoldId, request: Annotated[CaptureRequest, Body()], subsite_url: SubsiteUrl = None
) -> Response[CaptureResponse]:
    result = holds.capture_hold(_authorization(), hold_id, subsite_url, request, now())
    if not result.replayed and result.captured:
        metrics.add_metric(name=CREDITS_CONSUMED, unit=MetricUnit.Count, value=result.captured)
    return json_response(200, result.model_dump())


@app.delete(
    "/v1/holds/<hold_id>",
    summary="Release a hold: its credits return to remaining",
    responses={
        200: success(ReleaseResponse, "released (again: the same answer)"),
        **error_responses(Unauthorized, NotFound, HoldCaptured),
    },
    tags=["plugin"],
)
def release_hold(hold_id: HoldId, subsite_url: SubsiteUrl = None) -> Response[ReleaseResponse]:
    result = holds.release_hold(_authorization(), hold_id, subsite_url, now())
    return json_response(200, result.model_dump())


@app.get(
    "/v1/holds/<hold_id>",
    summary="A hold and its status",
    responses={200: success(HoldView, "the hold"), **error_responses(Unauthorized, NotFound)},
    tags=["plugin"],
)
def get_hold(hold_id: HoldId, subsite_url: SubsiteUrl = None) -> Response[dict[str, Any]]:
    view = holds.get_hold(_authorization(), hold_id, subsite_url, now())
    # captured and feature are members only when they have a value (a HoldView return type would be
    # dumped again by the validation, with nulls: the 200 above documents the model).
    return json_response(200, view.model_dump(exclude_none=True))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


init_done()  # last: see ai_credits.coldstart
