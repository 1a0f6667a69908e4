"""Portal reads (JWT): ``GET /v1/licenses``, ``GET /v1/licenses/{license_id}/credits``, its
``/usage`` and its ``/ledger`` (the statement, JSON pages or CSV)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import create_app, error_responses, json_response, now, portal_account, success
from ai_credits.coldstart import init_done
from ai_credits.errors import NotFound, Unauthorized, ValidationFailed
from ai_credits.models import CreditsView, LedgerPage, LicenseId, LicenseList, LicenseUsage
from ai_credits.observability import logger, metrics, tracer
from ai_credits.services import portal, usage

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


@app.get(
    "/v1/licenses/<license_id>/usage",
    summary="Where the credits went: by site, feature and UTC day or month",
    responses={
        200: success(LicenseUsage, "the license's usage (net of refunds)"),
        **error_responses(Unauthorized, NotFound, ValidationFailed),
    },
    tags=["portal"],
)
def license_usage(
    license_id: Annotated[LicenseId, Path()],
    from_: Annotated[
        str | None, Query(alias="from", description="RFC 3339; default: the term's start")
    ] = None,
    to: Annotated[str | None, Query(description="RFC 3339; default: now")] = None,
    granularity: Annotated[Literal["day", "month"], Query()] = "day",
) -> Response[LicenseUsage]:
    body = usage.license_usage(portal_account(app), license_id, from_, to, granularity, now())
    return json_response(200, body.model_dump(by_alias=True))


@app.get(
    "/v1/licenses/<license_id>/ledger",
    summary="The statement, newest first: JSON pages, or every entry as CSV (Accept: text/csv)",
    responses={
        200: success(LedgerPage, "a page of entries (with Accept: text/csv, all of them as CSV)"),
        **error_responses(Unauthorized, NotFound, ValidationFailed),
    },
    tags=["portal"],
)
def license_ledger(  # type: ignore[no-untyped-def]  # unannotated: the CSV answer is not the JSON model
    license_id: Annotated[LicenseId, Path()],
    limit: Annotated[int, Query(ge=1, le=usage.MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=2048, description="next_cursor of the page before")
    ] = None,
):
    account = portal_account(app)
    if "text/csv" in (app.current_event.headers.get("accept") or ""):
        body = usage.ledger_csv(account, license_id)
        disposition = f'attachment; filename="statement-{license_id}.csv"'
        return Response(
            status_code=200,
            content_type="text/csv; charset=utf-8",
            body=body,
            headers={"Content-Disposition": disposition, "Cache-Control": "private, no-store"},
        )
    page = usage.ledger_page(account, license_id, limit, cursor)
    entries = [entry.model_dump(exclude_none=True) for entry in page.entries]
    return json_response(200, {"entries": entries, "next_cursor": page.next_cursor})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


init_done()  # last: see ai_credits.coldstart
