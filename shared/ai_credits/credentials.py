"""License keys and activation tokens: generated, hashed and checked here only.

Neither is ever stored or logged in clear. An activation token is
``act1.<base64url(license_id \\x1f site)>.<base64url(32 random bytes)>``: the activation's key
travels in clear so a request needs no lookup to find its item, and only the SHA-256 of the
random part is stored, so a leaked table cannot be replayed as tokens.

A license key is stored as its HMAC-SHA-256 keyed with a pepper that is not in the table: in AWS
an SSM SecureString parameter, named by ``LICENSE_KEY_PEPPER_PARAMETER`` (template.yaml's
``LicenseKeyPepperParameter``) and read once per container at the first key hashed; without one
(``make run``, tests) ``LICENSE_KEY_PEPPER``, else ``config.LOCAL_LICENSE_KEY_PEPPER``. A leaked
table alone then cannot be used to test guessed keys. Keys hashed before the pepper keep their
plain SHA-256 (:func:`legacy_license_key_hash`) until billing next provisions them. Changing the
pepper orphans every stored hash: it is set once per stage, never rotated in place. The same pepper
keys the MAC of the statement's page cursors (:func:`seal_cursor`), so the service can tell its own
cursors from made-up ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from functools import cache

from ai_credits.config import settings

TOKEN_PREFIX = "act1"
TOKEN_SECRET_BYTES = 32  # 256 bits; the contract asks for at least 128
_SEPARATOR = "\x1f"
_MAX_TOKEN_LENGTH = 1024


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64decode(text: str) -> bytes:
    """Strict unpadded base64url: its alphabet only (the standard decoder skips other characters)
    and the canonical spelling only (the last character's unused bits zero), so that one token
    or cursor has exactly one text; anything else raises ``binascii.Error``."""
    if not _BASE64URL.fullmatch(text):
        raise binascii.Error("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64encode(raw) != text:
        raise binascii.Error("not the canonical base64url spelling")
    return raw


_LICENSE_KEY_DOMAIN = b"ai-credits/license-key\x00"
#: The shortest pepper accepted from SSM (e.g. ``openssl rand -base64 48``: 64 characters).
MIN_PEPPER_LENGTH = 32


@cache
def license_key_pepper() -> bytes:
    """The pepper of this container, read at first use and kept (never logged).

    With ``LICENSE_KEY_PEPPER_PARAMETER`` set, the SSM parameter's value (decrypted); a failed read
    raises and is tried again on the next call (nothing is cached then). Otherwise the local pepper.
    """
    config = settings()
    if not config.license_key_pepper_parameter:
        return config.license_key_pepper.encode("utf-8")
    pepper = _read_ssm_parameter(config.license_key_pepper_parameter)
    if len(pepper) < MIN_PEPPER_LENGTH:
        raise RuntimeError(
            f"SSM parameter {config.license_key_pepper_parameter} holds a pepper shorter than "
            f"{MIN_PEPPER_LENGTH} characters"
        )
    return pepper.encode("utf-8")


def _read_ssm_parameter(name: str) -> str:
    import boto3  # imported on first use: keeps it off the cold-start import path
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 3})
    parameter = boto3.client("ssm", config=config).get_parameter(Name=name, WithDecryption=True)
    value: str = parameter["Parameter"]["Value"]
    return value


def reset_license_key_pepper() -> None:
    """Forget the cached pepper (tests that change its configuration)."""
    license_key_pepper.cache_clear()


def hash_license_key(license_key: str) -> str:
    """The stored form of a license key: hex HMAC-SHA-256 keyed with the pepper,
    domain-separated from token hashes."""
    message = _LICENSE_KEY_DOMAIN + license_key.encode("utf-8")
    return hmac.new(license_key_pepper(), message, hashlib.sha256).hexdigest()


def legacy_license_key_hash(license_key: str) -> str:
    """The hash of the scheme before the current one (plain SHA-256): still found on licenses
    provisioned before it, until billing next provisions their key."""
    return hashlib.sha256(_LICENSE_KEY_DOMAIN + license_key.encode("utf-8")).hexdigest()


_CURSOR_DOMAIN = b"ai-credits/cursor\x00"


def seal_cursor(payload: dict[str, str]) -> str:
    """An opaque page cursor: the payload and a MAC keyed with the pepper, so that a cursor the
    service did not issue (made up, edited) is told apart from one it did."""
    body = _b64encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    return f"{body}.{_cursor_mac(body)}"


def open_cursor(cursor: str) -> dict[str, str] | None:
    """The payload of a cursor this service sealed, or None for anything else."""
    body, _, mac = cursor.partition(".")
    if len(cursor) > 2048 or not cursor.isascii() or not hmac.compare_digest(_cursor_mac(body), mac):
        return None
    try:
        payload = json.loads(_b64decode(body))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict) or not all(isinstance(value, str) for value in payload.values()):
        return None
    return payload


def _cursor_mac(body: str) -> str:
    return hmac.new(license_key_pepper(), _CURSOR_DOMAIN + body.encode("ascii"), hashlib.sha256).hexdigest()[
        :32
    ]


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
