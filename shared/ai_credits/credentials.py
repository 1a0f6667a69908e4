"""License keys and activation tokens: generated, hashed and checked here only.

Neither is ever stored or logged in clear. An activation token is
``act1.<base64url(license_id \\x1f site)>.<base64url(32 random bytes)>``: the activation's key
travels in clear so a request needs no lookup to find its item, and only the SHA-256 of the
random part is stored, so a leaked table cannot be replayed as tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "act1"
TOKEN_SECRET_BYTES = 32  # 256 bits; the contract asks for at least 128
_SEPARATOR = "\x1f"
_MAX_TOKEN_LENGTH = 1024


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_license_key(license_key: str) -> str:
    """Hex SHA-256 of a license key, domain-separated from token hashes."""
    return hashlib.sha256(b"ai-credits/license-key\x00" + license_key.encode("utf-8")).hexdigest()


def _hash_token_secret(secret: bytes) -> str:
    return hashlib.sha256(b"ai-credits/activation-token\x00" + secret).hexdigest()


@dataclass(frozen=True, slots=True)
class ActivationToken:
    """A parsed token: which activation it names and the hash to compare with the stored one."""

    license_id: str
    site: str
    secret_hash: str

    def matches(self, stored_hash: str | None) -> bool:
        """Constant-time comparison with the hash stored on the site item."""
        return stored_hash is not None and hmac.compare_digest(self.secret_hash, stored_hash)


def new_activation_token(license_id: str, site: str) -> tuple[str, str]:
    """Return ``(token, token_hash)``: the token goes to the plugin once, the hash to the table."""
    secret = secrets.token_bytes(TOKEN_SECRET_BYTES)
    activation = _b64encode(f"{license_id}{_SEPARATOR}{site}".encode())
    return f"{TOKEN_PREFIX}.{activation}.{_b64encode(secret)}", _hash_token_secret(secret)


def parse_activation_token(token: str) -> ActivationToken | None:
    """Parse a bearer token; ``None`` for anything that is not a well-formed token."""
    if len(token) > _MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    try:
        license_id, separator, site = _b64decode(parts[1]).decode("utf-8").partition(_SEPARATOR)
        secret = _b64decode(parts[2])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not separator or not license_id or not site or len(secret) != TOKEN_SECRET_BYTES:
        return None
    return ActivationToken(license_id=license_id, site=site, secret_hash=_hash_token_secret(secret))


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()
