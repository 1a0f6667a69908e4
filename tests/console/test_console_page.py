"""The demo console in a real browser: headless Chromium (Debian's ``chromium``, ``make setup``
installs it) driven by Playwright, against the session's gateway on DynamoDB Local.

The help article's story, on the demo license (1,000 credits; example.com 500, example.org 200,
staging.example.com 100): the customer gives the live site more credits in *Manage AI Credits*, the
site's *Manage Plan* shows them after a click on the refresh icon, the site spends credits, and
both screens show the API's refusals (402 insufficient_credits, 409 over_allocation and
below_used); a grant shows with what is left of it, and a site's held credits show. A screenshot is kept in ``.local/test-artifacts/console.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright import sync_api

from local.apigw import GatewaySettings
from local.pages import ConsoleDemo
from local.run import DemoLicense
from tests.console.browser import ARTIFACTS, Tab
from tests.integration.client import Api

pytestmark = pytest.mark.integration


def test_allocate_refresh_spend_and_the_refusals_in_the_browser(
    tab: Tab,
    gateway: str,
    gateway_settings: GatewaySettings,
    provision: Callable[[], tuple[ConsoleDemo, bool]],
    demo_license: DemoLicense,
) -> None:
    expect, page = sync_api.expect, tab.page
    provision()  # what make run does at start, for a license of this test
    page.goto(f"{gateway}/")
    portal, plugin = page.locator("#portal"), page.locator("#plugin")
    remaining = plugin.locator("#site-remaining")

    def allocated(site: str) -> Any:
        return portal.locator(f'tr[data-site="{site}"] td').first

    # Given the two screens of the demo license
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(portal.get_by_role("heading", name="Manage AI Credits")).to_be_visible()
    expect(plugin.get_by_role("heading", name="Manage Plan")).to_be_visible()
    expect(portal.locator("tbody tr")).to_have_count(3)
    expect(allocated("example.com")).to_have_text("500")
    expect(plugin.get_by_label("Site")).to_have_value("example.com")
    expect(remaining).to_have_text("500")

    # When the customer gives the live site more credits and clicks Apply
    portal.get_by_label("New allocation for example.com").fill("700")
    portal.get_by_role("button", name="Apply").click()

    # Then the portal shows the new allocation, and the site shows it after its refresh icon
    expect(portal.get_by_role("status")).to_contain_text("Applied")
    expect(allocated("example.com")).to_have_text("700")
    expect(portal.locator("#credits-unallocated")).to_have_text("0")
    expect(remaining).to_have_text("500")  # what the plugin read before: nothing pushes to it
    plugin.get_by_role("button", name="Refresh credits").click()
    expect(remaining).to_have_text("700")

    # When the site spends credits (a fresh request_id per click), the figure drops
    plugin.get_by_label("Credits to spend").fill("25")
    plugin.get_by_role("button", name="Use an AI feature").click()
    expect(plugin.get_by_role("status")).to_contain_text("Spent 25 credits on example.com: 675 remaining")
    expect(remaining).to_have_text("675")
    expect(plugin.locator("#site-used")).to_have_text("25")
    plugin.get_by_role("button", name="Use an AI feature").click()
    expect(remaining).to_have_text("650")

    # And a spend beyond what is left is refused (402), nothing charged
    plugin.get_by_label("Credits to spend").fill("1000")
    plugin.get_by_role("button", name="Use an AI feature").click()
    refusal = plugin.get_by_role("alert")
    expect(refusal).to_contain_text("Not enough AI Credits: 1,000 requested, 650 remaining")
    expect(refusal).to_contain_text("402 insufficient_credits")
    expect(plugin.get_by_role("status")).to_be_hidden()
    expect(remaining).to_have_text("650")

    # When the customer asks for more than the license has, the portal says so (409)
    portal.get_by_label("New allocation for staging.example.com").fill("400")
    expect(portal.locator("#allocation-sum")).to_contain_text("1,300 of 1,000 credits (300 more")
    portal.get_by_role("button", name="Apply").click()
    refusal = portal.get_by_role("alert")
    expect(refusal).to_contain_text(
        "The total exceeds the license's credits: 1,300 requested, 1,000 available for these sites"
    )
    expect(refusal).to_contain_text("409 over_allocation")
    expect(allocated("staging.example.com")).to_have_text("100")  # nothing was applied

    # And below what a site already used (409 below_used), pointing at that site's input
    portal.get_by_label("New allocation for staging.example.com").fill("100")
    portal.get_by_label("New allocation for example.com").fill("10")
    portal.get_by_role("button", name="Apply").click()
    expect(refusal).to_contain_text("example.com has already used 50 credits this term")
    expect(refusal).to_contain_text("409 below_used")
    expect(portal.get_by_label("New allocation for example.com")).to_have_attribute("aria-invalid", "true")
    # the refused figures are reloaded around what the customer typed
    expect(portal.locator('tr[data-site="example.com"] td').nth(1)).to_have_text("50")
    expect(portal.get_by_label("New allocation for example.com")).to_have_value("10")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "console.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    # The plugin screen shows any of the demo's sites
    plugin.get_by_label("Site").select_option("staging.example.com")
    expect(plugin.locator("#balance-site")).to_have_text("staging.example.com")
    expect(remaining).to_have_text("100")

    # A top-up granted by billing shows in Manage AI Credits, with what is left of it; the plugin
    # shows what its site holds for AI calls in progress
    assert (
        Api(gateway).grant(demo_license.license_id, "console-topup", 300, reason="Top-up pack").status == 201
    )
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    grants = portal.locator("#grants")
    expect(grants).to_be_visible()
    expect(grants.locator("tbody tr")).to_have_count(1)
    expect(grants.locator("tbody tr th")).to_have_text("console-topup (Top-up pack)")
    expect(grants.locator("tbody tr td").first).to_have_text("300")
    expect(portal.locator("#credits-total")).to_have_text("1,300")
    expect(portal.locator("#credits-carried")).to_have_text("0")
    expect(plugin.locator("#site-held")).to_have_text("0")

    # What the page showed is what the API holds
    portal_token = gateway_settings.portal_token(demo_license.account_id)
    view = Api(gateway).credits(portal_token, demo_license.license_id).body
    assert {s["site"]: (s["allocated"], s["used"]) for s in view["sites"]} == {
        "example.com": (700, 50),
        "example.org": (200, 0),
        "staging.example.com": (100, 0),
    }
    assert tab.errors == []
    assert tab.elsewhere == []  # every request went to the local gateway
