"""Fixtures of the demo console's tests: a demo license of its own per test, on the session gateway."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from local.gateway import ConsoleDemo, GatewaySettings
from local.run import DemoLicense, provision_demo
from tests.integration.client import unique


@pytest.fixture
def demo_license() -> DemoLicense:
    """The demo of ``make run`` (two live sites and a staging site, 500/200/100 of 1,000 credits
    allocated), under ids of its own: the tests share one table."""
    return DemoLicense(
        license_id=unique("lic-console"),
        license_key=unique("key-console"),
        account_id=unique("acct-console"),
    )


@pytest.fixture
def provision(
    gateway: str, gateway_settings: GatewaySettings, demo_license: DemoLicense
) -> Callable[[], tuple[ConsoleDemo, bool]]:
    """``provision()`` does what ``make run`` does at start (for ``demo_license``): provision it if
    needed, activate its sites, register them at ``/local/demo``."""
    return lambda: provision_demo(gateway, gateway_settings, demo_license)
