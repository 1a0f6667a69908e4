"""Where the black-box cases send their requests: the local gateway, or a deployed stack.

A :class:`Target` is a base URL, how admin calls are authorized, and the portal's credential:

- local (the default, ``make test``): the session's local gateway, its admin bearer token and
  HS256 portal JWTs it signs itself (tests/e2e/plugin.py builds it);
- a deployed stack (``make e2e``, :func:`resolve_target`): the stack's ``ApiUrl`` output (or
  ``E2E_BASE_URL``), admin calls signed with SigV4 from the caller's AWS credentials, and the
  portal JWT of ``E2E_PORTAL_TOKEN``, issued by the stack's real issuer.

:func:`resolve_target` reads the environment it is given, not ``os.environ`` as the tests see it:
tests/conftest.py replaces the real AWS credentials with fake ones in ``pytest_configure``, and
the plugin captures the real environment before that (see tests/e2e/plugin.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.integration.client import AdminAuth, Api

#: Every id the e2e cases make on a deployed stack starts with it (what a run leaves behind).
ID_PREFIX = "e2e-"
#: Provisioned for when no portal token names an account (plugin and billing cases only).
DEFAULT_ACCOUNT_ID = "e2e-account"


class TargetError(Exception):
    """The deployed stack cannot be reached as configured; the message says what to set."""


@dataclass(frozen=True)
class SigV4Admin:
    """Admin calls as billing makes them: SigV4 for ``execute-api`` (the routes' ``AWS_IAM``)."""

    credentials: Any  # botocore.credentials.Credentials (or ReadOnlyCredentials)
    region: str

    def headers(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(request)
        added = {"authorization", "x-amz-date", "x-amz-security-token"}
        return {name: value for name, value in request.headers.items() if name.lower() in added}


@dataclass(frozen=True)
class Target:
    """Where the black-box cases run (see the module's docstring)."""

    kind: str  # "local" or "stack"
    base_url: str
    admin: AdminAuth
    #: A portal JWT whose ``sub`` is :attr:`account_id`; ``None``: the portal cases are skipped.
    portal_token: str | None
    account_id: str
    id_prefix: str = ""
    description: str = ""
    _apis: list[Api] = field(default_factory=list, compare=False, repr=False)

    @property
    def api(self) -> Api:
        """The one client of this target (its keep-alive connections are reused across tests)."""
        if not self._apis:
            self._apis.append(
                Api(self.base_url, admin=self.admin, account_id=self.account_id, id_prefix=self.id_prefix)
            )
        return self._apis[0]


def jwt_subject(token: str) -> str | None:
    """The ``sub`` claim of a JWT (not verified: the stack's authorizer does that), the account
    the service takes the caller to be (ai_credits.api.portal_account)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return str(subject) if subject else None


@contextmanager
def environment(environ: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` is exactly ``environ`` inside (botocore reads its settings there)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def resolve_target(environ: Mapping[str, str]) -> Target:
    """The deployed stack of ``environ`` (``STACK_NAME``, ``E2E_BASE_URL``, ``E2E_PORTAL_TOKEN``,
    ``E2E_ACCOUNT_ID``, ``E2E_ADMIN_TOKEN``, the AWS credentials and region).

    Raises :class:`TargetError` with what to set when something is missing.
    """
    import botocore.exceptions
    import botocore.session

    stack = environ.get("STACK_NAME", "").strip()
    base_url = environ.get("E2E_BASE_URL", "").strip()
    if not stack and not base_url:
        raise TargetError(
            "make e2e needs STACK_NAME=<the deployed stack's name> (its ApiUrl output is the base URL), "
            "or E2E_BASE_URL=<the API's base URL>"
        )
    admin_token = environ.get("E2E_ADMIN_TOKEN", "").strip()
    with environment(environ):
        session = botocore.session.Session()
        region = (
            environ.get("AWS_REGION")
            or environ.get("AWS_DEFAULT_REGION")
            or session.get_config_variable("region")
        )
        credentials = None
        if not admin_token or not base_url:
            try:
                found = session.get_credentials()
                credentials = found.get_frozen_credentials() if found is not None else None
            except botocore.exceptions.BotoCoreError as exc:
                raise TargetError(f"the AWS credentials could not be loaded: {exc}") from None
            if credentials is None or not credentials.access_key:
                raise TargetError(
                    "no AWS credentials found: the admin calls are signed with SigV4 "
                    "(set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, credentials of the "
                    "billing role allowed execute-api:Invoke on the admin routes)"
                )
            if not region:
                raise TargetError(
                    "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) to the stack's region"
                )
        if not base_url:
            base_url = _stack_api_url(session, stack, region, credentials)
    portal_token = environ.get("E2E_PORTAL_TOKEN", "").strip() or None
    account_id = environ.get("E2E_ACCOUNT_ID", "").strip() or (
        jwt_subject(portal_token) if portal_token else None
    )
    if portal_token and not account_id:
        raise TargetError(
            "E2E_PORTAL_TOKEN has no 'sub' claim: set E2E_ACCOUNT_ID to the account it stands for"
        )
    admin: AdminAuth
    if admin_token:
        from tests.integration.client import BearerAuth

        admin = BearerAuth(admin_token)
    else:
        admin = SigV4Admin(credentials, str(region))
    return Target(
        kind="stack",
        base_url=base_url.rstrip("/"),
        admin=admin,
        portal_token=portal_token,
        account_id=account_id or DEFAULT_ACCOUNT_ID,
        id_prefix=ID_PREFIX,
        description=f"stack {stack}" if stack else f"E2E_BASE_URL {base_url}",
    )


def cloudformation_client(session: Any, region: str | None, credentials: Any) -> Any:
    """The CloudFormation client :func:`resolve_target` asks for the stack's outputs."""
    return session.create_client(
        "cloudformation",
        region_name=region,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    )


def _stack_api_url(session: Any, stack: str, region: str | None, credentials: Any) -> str:
    import botocore.exceptions

    client = cloudformation_client(session, region, credentials)
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise TargetError(f"cannot describe stack {stack!r} in {region}: {exc}") from None
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}
    if "ApiUrl" not in outputs:
        raise TargetError(f"stack {stack!r} in {region} has no ApiUrl output (is it this project's stack?)")
    return str(outputs["ApiUrl"])
