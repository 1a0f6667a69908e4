"""Fixtures of the demo console's tests: a demo license of its own per test, on the session gateway,
and a browser tab that may reach only that gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api  # a dev dependency: `make test` installs it (never skipped)

from local.apigw import GatewaySettings
from local.pages import ConsoleDemo
from local.run import DemoLicense, provision_demo
from tests.console.browser import CHROMIUM, TIMEOUT_MS, Tab
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM}: `make setup` installs Debian's chromium"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-proxy-server"])
        yield browser
        browser.close()


@pytest.fixture
def tab(browser: Any, gateway: str) -> Iterator[Tab]:
    """A fresh page that may only reach the gateway: anything else is recorded and refused."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    tab = Tab(context.new_page())

    def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(f"{gateway}/"):
            route.continue_()
        else:
            tab.elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_gateway)
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    context.close()
