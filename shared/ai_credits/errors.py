"""Domain errors: one class per error code of the contract (API.md, "Errors").

Services raise these; ``ai_credits.api`` maps them to problem+json by their attributes,
so every HTTP status lives here, once. Extra members (``remaining``, ``available`` ...)
are carried in ``extra`` and serialized next to the standard RFC 9457 members.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error a client can cause or must be told about."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class MalformedJson(DomainError):
    status, code, title = 400, "malformed_json", "Malformed JSON"


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class InsufficientCredits(DomainError):
    status, code, title = 402, "insufficient_credits", "Insufficient credits"


class LicenseExpired(DomainError):
    status, code, title = 403, "license_expired", "License expired"


class Forbidden(DomainError):
    """Authenticated, but not allowed: an admin route called by another principal than billing's role."""

    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class OverAllocation(DomainError):
    status, code, title = 409, "over_allocation", "Allocations exceed the license's credits"


class BelowUsed(DomainError):
    status, code, title = 409, "below_used", "Allocation below what the site already used"


class ActivationLimitReached(DomainError):
    status, code, title = 409, "activation_limit_reached", "Activation limit reached"


class IdempotencyConflict(DomainError):
    status, code, title = 409, "idempotency_conflict", "request_id reused with a different body"


class TermEnded(DomainError):
    """A refund of a consume made in an earlier term (rule 12)."""

    status, code, title = 409, "term_ended", "The consume's term has ended"


class HoldExpired(DomainError):
    status, code, title = 409, "hold_expired", "The hold was released or expired"


class HoldCaptured(DomainError):
    status, code, title = 409, "hold_captured", "The hold was captured"


class LicenseKeyInUse(DomainError):
    """Not in the contract's table: provisioning a key that another license already holds."""

    status, code, title = 409, "license_key_in_use", "License key already in use"


class UnsupportedMediaType(DomainError):
    """Not in the contract's table: a body that is not ``application/json``."""

    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(DomainError):
    """422 with ``errors``: a list of ``{"loc": [...], "type": str, "msg": str}``."""

    status, code, title = 422, "validation_error", "Validation error"

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail, errors=errors)


class Unavailable(DomainError):
    """The database throttled or timed out; nothing was charged. ``retry_after`` in seconds."""

    status, code, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def field_error(loc: tuple[str | int, ...] | list[str | int], type_: str, msg: str) -> ValidationFailed:
    """A 422 for one field, in the same shape as the request-model validation errors."""
    return ValidationFailed(msg, errors=[{"loc": list(loc), "type": type_, "msg": msg}])
