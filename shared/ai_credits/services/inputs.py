"""What several use cases read from a request the same way: site URLs and activation tokens."""

from __future__ import annotations

from ai_credits import rules
from ai_credits.credentials import ActivationToken, bearer_token, parse_activation_token
from ai_credits.errors import Unauthorized, field_error


def site_key(raw: str, field: tuple[str, ...]) -> str:
    """The normalized site of a URL sent in ``field``, or a 422 naming that field."""
    try:
        return rules.normalize_site_url(raw)
    except rules.InvalidSiteUrl as error:
        raise field_error(field, "site_url", str(error)) from None


def authenticate(authorization: str | None) -> ActivationToken:
    """The activation token of an ``Authorization: Bearer <token>`` header, or 401."""
    credentials = bearer_token(authorization)
    token = parse_activation_token(credentials) if credentials else None
    if token is None:
        raise Unauthorized("a valid activation token is required (Authorization: Bearer <token>)")
    return token


def bad_token() -> Unauthorized:
    return Unauthorized("the activation token is not valid (revoked, rotated or unknown)")
