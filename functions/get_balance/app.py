"""Plugin reads: ``GET /v1/balance`` (what the refresh icon in *Manage Plan* calls) and
``GET /v1/usage`` (the site's usage in its term)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from ai_credits.api import create_app, error_responses, etag_matches, json_response, now, success
from ai_credits.coldstart import init_done
from ai_credits.errors import Unauthorized
from ai_credits.models import BalanceResponse, SiteUsage
from ai_credits.observability import logger, metrics, tracer
from ai_credits.services import plugin, usage

app = create_app()


@app.get(
    "/v1/balance",
    summary="The site's and the license's credits (strongly consistent)",
    responses={
        200: success(BalanceResponse, "the balance, with an ETag"),
        304: success(None, "not modified since the ETag sent in If-None-Match"),
        **error_responses(Unauthorized),
    },
    tags=["plugin"],
)
def get_balance():  # type: ignore[no-untyped-def]  # unannotated: Powertools would validate a 304 against the 200 model
    headers = app.current_event.headers
    body = plugin.balance(headers.get("authorization"), now()).model_dump()
    etag = plugin.etag_of(body)
    cache_headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag_matches(headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=cache_headers)
    return json_response(200, body, cache_headers)


@app.get(
    "/v1/usage",
    summary="Manage Plan's usage: this site in its current term, by feature and day",
    responses={200: success(SiteUsage, "the site's usage (net of refunds)"), **error_responses(Unauthorized)},
    tags=["plugin"],
)
def site_usage():  # type: ignore[no-untyped-def]  # unannotated: Powertools would dump subsites: null
    body = usage.site_usage(app.current_event.headers.get("authorization"), now())
    return json_response(200, body.model_dump(exclude_none=True))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


init_done()  # last: see ai_credits.coldstart
