"""Who may call the billing (admin) routes: a session of the billing role, no other principal.

The HTTP API authorizes those routes with IAM, which lets through any principal allowed
``execute-api:Invoke`` on them. The function narrows that to the role billing assumes,
``BILLING_ROLE_ARN`` (``arn:aws:iam::<account>:role/<path/><name>``). API Gateway names the caller
of an assumed role ``arn:aws:sts::<account>:assumed-role/<name>/<session>`` in
``requestContext.authorizer.iam.userArn`` (payload 2.0): partition, account and role name must all
match (that ARN has no path; a role name is unique in its account). IAM users, other roles, other
accounts and a missing or malformed ARN on either side are refused: with ``BILLING_ROLE_ARN`` unset
every admin request is refused, loudly in the log, never let through.
"""

from __future__ import annotations

import re

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from ai_credits.config import settings
from ai_credits.errors import Forbidden
from ai_credits.observability import logger

__all__ = ["is_billing_caller", "require_billing_caller"]

_NAME = r"[A-Za-z0-9+=,.@_-]"  # IAM's character set of role and session names
_ROLE_ARN = re.compile(
    rf"arn:(?P<partition>aws[a-z-]*):iam::(?P<account>[0-9]{{12}}):role/(?:[!-~]*/)?(?P<name>{_NAME}{{1,64}})"
)
_ASSUMED_ROLE_ARN = re.compile(
    rf"arn:(?P<partition>aws[a-z-]*):sts::(?P<account>[0-9]{{12}}):assumed-role/(?P<name>{_NAME}{{1,64}})/{_NAME}{{2,64}}"
)


def _role(arn: str | None, pattern: re.Pattern[str]) -> tuple[str, str, str] | None:
    found = pattern.fullmatch(arn or "")
    return None if found is None else (found["partition"], found["account"], found["name"])


def is_billing_caller(caller_arn: str | None, billing_role_arn: str | None) -> bool:
    """Whether ``caller_arn`` (the request's ``userArn``) is a session of the role ``billing_role_arn``."""
    role = _role(billing_role_arn, _ROLE_ARN)
    return role is not None and _role(caller_arn, _ASSUMED_ROLE_ARN) == role


def require_billing_caller(event: APIGatewayProxyEventV2) -> None:
    """Raise :class:`Forbidden` unless the request was signed by a session of the billing role."""
    billing_role_arn = settings().billing_role_arn
    caller_arn = event.request_context.authorizer.iam.user_arn
    if is_billing_caller(caller_arn, billing_role_arn):
        return
    if _role(billing_role_arn, _ROLE_ARN) is None:
        logger.error("BILLING_ROLE_ARN is not an IAM role ARN: every admin request is refused")
    else:
        logger.warning("admin request refused", extra={"caller_arn": caller_arn})
    raise Forbidden("only the billing role may call the admin routes")
