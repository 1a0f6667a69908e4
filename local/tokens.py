"""The local stand-ins for the portal's JWTs and the billing system's IAM credentials.

In AWS, API Gateway checks the portal's JWTs (JWT authorizer) and the billing system's SigV4
signatures (IAM), and the provision function accepts only a session of the billing role
(``BILLING_ROLE_ARN``). Locally, :mod:`local.apigw` accepts HS256 tokens signed with
``LOCAL_JWT_SECRET`` and a shared ``LOCAL_ADMIN_TOKEN``, which stands for a session of
``BILLING_ROLE_ARN`` (default :data:`DEFAULT_BILLING_ROLE_ARN`, also what the functions get); all
have well-known defaults that are only good on a developer's machine.

``python -m local.tokens ACCOUNT_ID`` prints a portal token for that account (valid one hour).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from typing import Any

import jwt

from local.cfn import LOCAL_ACCOUNT_ID

__all__ = [
    "ADMIN_TOKEN_ENV",
    "BILLING_ROLE_ARN_ENV",
    "BILLING_ROLE_PARAMETER",
    "DEFAULT_ADMIN_TOKEN",
    "DEFAULT_BILLING_ROLE_ARN",
    "DEFAULT_JWT_SECRET",
    "JWT_AUDIENCE_ENV",
    "JWT_ISSUER_ENV",
    "JWT_SECRET_ENV",
    "make_portal_token",
]

JWT_SECRET_ENV = "LOCAL_JWT_SECRET"
JWT_AUDIENCE_ENV = "LOCAL_JWT_AUDIENCE"
JWT_ISSUER_ENV = "LOCAL_JWT_ISSUER"
ADMIN_TOKEN_ENV = "LOCAL_ADMIN_TOKEN"
DEFAULT_JWT_SECRET = "local-dev-secret-not-for-production"  # documented dev default
DEFAULT_ADMIN_TOKEN = "local-admin-token"  # documented dev default
#: The functions' variable and the template's parameter that name the billing role.
BILLING_ROLE_ARN_ENV = "BILLING_ROLE_ARN"
BILLING_ROLE_PARAMETER = "BillingRoleArn"
#: The billing role of local runs and tests (in the local account, AWS's documentation account).
DEFAULT_BILLING_ROLE_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/ai-credits-billing"


def make_portal_token(
    sub: str,
    *,
    secret: str | None = None,
    ttl_seconds: int = 3600,
    now: float | None = None,
    **claims: Any,
) -> str:
    """An HS256 portal JWT for account ``sub``, as the local gateway accepts it.

    ``secret`` defaults to env ``LOCAL_JWT_SECRET`` (else the documented default). ``aud``/``iss``
    are added from ``LOCAL_JWT_AUDIENCE``/``LOCAL_JWT_ISSUER`` when those are set, so a token made
    here passes a gateway started with the same environment; ``claims`` add or override claims.
    """
    issued_at = int(time.time() if now is None else now)
    payload: dict[str, Any] = {"sub": sub, "iat": issued_at, "exp": issued_at + ttl_seconds}
    defaults: Mapping[str, str | None] = {
        "aud": os.environ.get(JWT_AUDIENCE_ENV),
        "iss": os.environ.get(JWT_ISSUER_ENV),
    }
    payload.update({name: value for name, value in defaults.items() if value})
    payload.update(claims)
    key = secret if secret is not None else os.environ.get(JWT_SECRET_ENV, DEFAULT_JWT_SECRET)
    return jwt.encode(payload, key, algorithm="HS256")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a local portal JWT (HS256) for an account.")
    parser.add_argument("sub", help="the account id (the token's sub claim)")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    args = parser.parse_args(argv)
    print(make_portal_token(args.sub, ttl_seconds=args.ttl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
