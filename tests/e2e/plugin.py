"""The e2e tier's pytest plugin (loaded by tests/conftest.py's ``pytest_plugins``): which target
the black-box cases (``@pytest.mark.e2e``) run against.

- Default: the session's local gateway (``make test``; ``pytest -m e2e`` alone too).
- ``E2E_TARGET=stack`` (``make e2e`` sets it): the cases marked ``e2e`` run against the deployed
  stack of ``STACK_NAME`` (or ``E2E_BASE_URL``); every other test keeps the local gateway.

The credentials handover: tests/conftest.py's ``pytest_configure`` replaces the AWS environment
with fake credentials so that no test reaches AWS by accident. This plugin's ``pytest_configure``
runs first (``tryfirst``), while ``os.environ`` is still the caller's, and resolves the deployed
target there and then: the stack's ``ApiUrl`` (CloudFormation ``DescribeStacks``) and frozen
credentials for SigV4, kept in the :class:`~tests.e2e.target.Target` object only; ``os.environ``
is never given them back. A configuration that cannot work (no ``STACK_NAME``, no credentials, no
region, an unknown stack) stops pytest at once with one line saying what to set.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.target import SigV4Admin, Target, TargetError, resolve_target
from tests.integration.client import Api, BearerAuth, unique

#: The variable that turns the deployed target on, and its value.
SWITCH, STACK = "E2E_TARGET", "stack"
PORTAL_SKIP_REASON = (
    "E2E_PORTAL_TOKEN is not set: the portal cases need a JWT from the stack's portal issuer "
    "(its 'sub', or E2E_ACCOUNT_ID, is the account the test licenses are provisioned for)"
)

_stack_target: Target | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the deployed target before tests/conftest.py removes the real credentials."""
    global _stack_target
    if os.environ.get(SWITCH, "").strip() != STACK:
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # A worker starts after the controller's pytest_configure: it sees only the fake credentials.
        raise pytest.UsageError("the e2e tier against a stack runs in one process: drop -n")
    try:
        _stack_target = resolve_target(dict(os.environ))
    except TargetError as exc:
        raise pytest.UsageError(f"e2e: {exc}") from None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _stack_target is None:
        return None
    admin = _stack_target.admin
    if isinstance(admin, SigV4Admin):  # which identity signs: the key id's end, never the secret
        signing = f"admin calls SigV4-signed for {admin.region} with access key ...{admin.credentials.access_key[-4:]}"
    else:
        signing = "admin calls with the bearer token of E2E_ADMIN_TOKEN"
    portal = (
        f"portal account {_stack_target.account_id}" if _stack_target.portal_token else "no E2E_PORTAL_TOKEN"
    )
    return (
        f"e2e target (cases marked e2e): {_stack_target.description} at {_stack_target.base_url}; "
        f"{signing}; {portal}"
    )


def stack_target() -> Target | None:
    """The deployed target of this session, if ``E2E_TARGET=stack``."""
    return _stack_target


@pytest.fixture(scope="session")
def local_target(request: pytest.FixtureRequest) -> Target:
    """The session's local gateway: its admin bearer token, and an HS256 portal JWT for an account
    of its own (the local gateway signs and accepts those)."""
    from local.tokens import make_portal_token

    gateway: str = request.getfixturevalue("gateway")
    settings = request.getfixturevalue("gateway_settings")
    account = unique("acct-e2e")
    return Target(
        kind="local",
        base_url=gateway,
        admin=BearerAuth(settings.admin_token),
        portal_token=make_portal_token(account, secret=settings.jwt_secret),
        account_id=account,
        description="the local gateway",
    )


@pytest.fixture
def e2e_target(request: pytest.FixtureRequest) -> Target:
    """This test's target: the deployed stack for a case marked ``e2e`` under ``E2E_TARGET=stack``,
    otherwise the local gateway (started only when asked for)."""
    if _stack_target is not None and request.node.get_closest_marker("e2e") is not None:
        return _stack_target
    target: Target = request.getfixturevalue("local_target")
    return target


@pytest.fixture
def target_api(e2e_target: Target) -> Api:
    """The client of this test's target."""
    return e2e_target.api


@pytest.fixture
def portal_jwt(e2e_target: Target) -> str:
    """The target's portal JWT (its account is ``e2e_target.account_id``); skips the test when
    ``E2E_PORTAL_TOKEN`` is not set for a deployed stack."""
    return portal_token_or_skip(e2e_target)


def portal_token_or_skip(target: Target) -> str:
    if target.portal_token is None:
        pytest.skip(PORTAL_SKIP_REASON)
    return target.portal_token
