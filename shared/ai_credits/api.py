"""HTTP plumbing shared by the handlers: the resolver, the one error table, request helpers.

Every error leaves as ``application/problem+json`` (RFC 9457) with the contract's ``code``;
the status comes from the domain exception's class (``ai_credits.errors``), never from
message text. The error table also counts the refusals that are metrics
(``InsufficientCreditRefusals``: every 402; see ``ai_credits.observability``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.metrics import MetricUnit

from ai_credits.clock import format_timestamp, utc_now
from ai_credits.errors import DomainError, InsufficientCredits, Unavailable
from ai_credits.observability import INSUFFICIENT_CREDIT_REFUSALS, logger, metrics

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://ai-credits.dev/problems/"


def problem(
    status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response[Any]:
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return Response(status_code=status, content_type=PROBLEM_JSON, body=json.dumps(body), headers=headers)


def success(model: type[Any] | None, description: str) -> OpenAPIResponse:
    """An OpenAPI success response with its JSON body model (None: no body)."""
    if model is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"model": model}}}


def error_responses(*errors: type[DomainError]) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses for the domain errors a route can answer (problem+json): every route
    can also answer ``ValidationFailed`` and ``Unavailable``, and a route with a body
    (``MalformedJson``) ``UnsupportedMediaType``. Classes, not codes: a typo fails at import."""
    from ai_credits.errors import MalformedJson, UnsupportedMediaType, ValidationFailed
    from ai_credits.models import Problem

    by_status: dict[int, list[str]] = {}
    body_errors = (UnsupportedMediaType,) if MalformedJson in errors else ()
    for error in (ValidationFailed, Unavailable, *errors, *body_errors):
        by_status.setdefault(error.status, []).append(error.code)
    return {
        status: {"description": " or ".join(names), "content": {PROBLEM_JSON: {"model": Problem}}}
        for status, names in sorted(by_status.items())
    }


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


#: What an integer literal longer than Python converts (``sys.get_int_max_str_digits()``, 4,300
#: digits) is read as: valid JSON, so not a 400, and beyond every range of the contract, so the
#: 422 every other out-of-range number gets. Never echoed (validation errors echo no input).
BEYOND_EVERY_RANGE = 10**100


def _parse_int(literal: str) -> int:
    try:
        return int(literal)
    except ValueError:  # the JSON grammar let only digits through: it is the length limit
        return -BEYOND_EVERY_RANGE if literal.startswith("-") else BEYOND_EVERY_RANGE


def strict_json_loads(text: str) -> Any:
    """``json.loads`` that refuses what RFC 8259 refuses (NaN, Infinity) and duplicate keys,
    so that two readers of one body can never see two different requests."""
    try:
        return json.loads(
            text, parse_constant=_reject_constant, parse_int=_parse_int, object_pairs_hook=_no_duplicate_keys
        )
    except ValueError as error:
        if isinstance(error, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(error), text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _domain_error(error: DomainError) -> Response[Any]:
    if isinstance(error, InsufficientCredits):
        metrics.add_metric(name=INSUFFICIENT_CREDIT_REFUSALS, unit=MetricUnit.Count, value=1)
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, Unavailable) else None
    if error.status >= 500:
        logger.warning("request failed", extra={"code": error.code, "detail": error.detail})
    return problem(error.status, error.code, error.title, error.detail, headers=headers, **error.extra)


def _validation_error(error: RequestValidationError) -> Response[Any]:
    details = error.errors()
    if any(detail.get("type") == "json_invalid" for detail in details):
        return problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON")
    # Never echo the input: a field may be a license key.
    errors = [
        {
            "loc": [str(part) for part in detail.get("loc", ())],
            "type": detail.get("type", ""),
            "msg": detail.get("msg", ""),
        }
        for detail in details
    ]
    summary = "; ".join(f"{'.'.join(item['loc'][1:]) or 'body'}: {item['msg']}" for item in errors[:5])
    return problem(422, "validation_error", "Validation error", summary or "invalid request", errors=errors)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _early_problem(error: DomainError) -> dict[str, Any]:
    body = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": PROBLEM_JSON},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _json_body_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its body as JSON text, or raise: the API takes ``application/json`` only.

    Done before Powertools sees the event, which would otherwise parse form and multipart
    bodies, answer its own 415 shape, and fail on a body that is not UTF-8. No Content-Type at
    all is read as JSON (plugins built on ``wp_remote_post`` often send none).
    """
    from ai_credits.errors import MalformedJson, UnsupportedMediaType

    method = event.get("requestContext", {}).get("http", {}).get("method", "")
    if method not in _BODY_METHODS or not event.get("body"):
        return event
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {media_type}")
    body = event["body"]
    try:
        text = base64.b64decode(body).decode("utf-8") if event.get("isBase64Encoded") else body
    except (binascii.Error, UnicodeDecodeError):
        raise MalformedJson("the request body is not UTF-8 JSON") from None
    return {**event, "headers": {**headers, "content-type": "application/json"}, "body": text,
            "isBase64Encoded": False}  # fmt: skip


# A percent-encoded character that cannot change the path's structure: ids are made of these
# (``hold_id`` may hold ``:``, which a client's URL encoder often sends as ``%3A``).
_ENCODED_ID_CHARACTER = re.compile(r"%(3[0-9A]|[46][1-9A-F]|[57][0-9A]|2[DE]|5F|7E)", re.IGNORECASE)


def _decoded_path_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event with ``%3A`` (and the other escapes of id characters) decoded in ``rawPath``, the
    path Powertools takes the path parameters from (API Gateway decodes ``pathParameters`` itself)."""
    raw_path = event.get("rawPath")
    if not isinstance(raw_path, str) or "%" not in raw_path:
        return event
    decoded = _ENCODED_ID_CHARACTER.sub(lambda match: chr(int(match.group(1), 16)), raw_path)
    return {**event, "rawPath": decoded}


class ContractResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver, taking JSON bodies only (see ``_json_body_event``) and ids
    in the path percent-encoded or not (see ``_decoded_path_event``)."""

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:  # type: ignore[override]
        try:
            event = _json_body_event(_decoded_path_event(event))
        except DomainError as error:
            return _early_problem(error)
        return super().resolve(event, context)


def create_app() -> APIGatewayHttpResolver:
    """A resolver with validation, strict JSON and the contract's error table installed."""
    app = ContractResolver(enable_validation=True, json_body_deserializer=strict_json_loads)
    app.exception_handler(DomainError)(_domain_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.not_found(lambda _error: problem(404, "not_found", "Not found", "no such route"))
    return app


def now() -> str:
    """The request's "now", taken once per request by the handler and passed down."""
    return format_timestamp(utc_now())


def scheduled_now(event: dict[str, Any]) -> str:
    """A scheduled invocation's "now": the event's ``time`` (EventBridge Scheduler's scheduled
    time), else the clock."""
    from ai_credits.clock import parse_timestamp

    time = event.get("time")
    return format_timestamp(parse_timestamp(time)) if isinstance(time, str) and time else now()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=body, headers=headers)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison; ``*`` matches any current representation."""
    if not if_none_match:
        return False
    candidates = [candidate.strip() for candidate in if_none_match.split(",")]
    return "*" in candidates or any(candidate.removeprefix("W/") == etag for candidate in candidates)


def portal_account(app: APIGatewayHttpResolver) -> str:
    """The caller's account: the ``sub`` claim the HTTP API's JWT authorizer verified."""
    from ai_credits.errors import Unauthorized

    claims = app.current_event.request_context.authorizer.jwt_claim
    account_id = claims.get("sub") if claims else None
    if not account_id:
        raise Unauthorized("a portal token with a 'sub' claim is required")
    return str(account_id)
