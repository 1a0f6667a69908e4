"""The demo console's usage, alerts and statement in a real browser (see ``test_console_page.py``).

*Manage AI Credits* shows the license's and its sites' alerts as admin notices, the credits per day
(or month) as a bar chart stacked by site (an SVG the page draws itself) with a table of the sites
by credits and their features, and the statement: the ledger a page at a time, and all of it as a
CSV download. *Manage Plan* shows its site's alerts and usage by feature. Usage and the statement
are derived from the table's stream, behind the writes: the test hands the stream to the stream
processor (``stream_tap``) and waits until the API shows the writes.
A screenshot is kept in ``.local/test-artifacts/console-usage.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright import sync_api

from local.apigw import GatewaySettings
from local.pages import ConsoleDemo
from local.run import DemoLicense
from tests.console.browser import ARTIFACTS, Tab
from tests.integration.client import Api

pytestmark = pytest.mark.integration

#: Three days with activity in ten, two sites: what GET .../usage?granularity=day answers.
DAYS = {
    "from": "2026-12-01T00:00:00Z",
    "to": "2026-12-10T12:00:00Z",
    "granularity": "day",
    "credits": 140,
    "requests": 9,
    "sites": [
        {"site": "example.org", "credits": 90, "requests": 5, "features": {"rewrite": 60, "translate": 30}},
        {"site": "example.com", "credits": 50, "requests": 4, "features": {"other": 5, "summarize": 45}},
    ],
    "buckets": [
        {"start": "2026-12-02T00:00:00Z", "credits": 30, "requests": 2, "sites": {"example.com": 30}},
        {
            "start": "2026-12-05T00:00:00Z",
            "credits": 100,
            "requests": 6,
            "sites": {"example.org": 80, "example.com": 20},
        },
        {"start": "2026-12-09T00:00:00Z", "credits": 10, "requests": 1, "sites": {"example.org": 10}},
    ],
}
MONTHS = {
    **DAYS,
    "granularity": "month",
    "buckets": [
        {
            "start": "2026-12-01T00:00:00Z",
            "credits": 140,
            "requests": 9,
            "sites": {"example.org": 90, "example.com": 50},
        }
    ],
}


def _height(locator: Any) -> float:
    return float(locator.evaluate("element => element.getBBox().height"))


def test_the_chart_stacks_each_active_day_by_site_and_switches_to_months(
    tab: Tab, gateway: str, provision: Callable[[], tuple[ConsoleDemo, bool]]
) -> None:
    expect, page = sync_api.expect, tab.page
    demo, _ = provision()
    asked: list[str] = []

    def canned_usage(route: Any) -> None:
        granularity = parse_qs(urlsplit(route.request.url).query)["granularity"][0]
        asked.append(granularity)
        body = {"license_id": demo.license_id, **(DAYS if granularity == "day" else MONTHS)}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    # The license usage route answers contract-shaped figures of several days: the drawing is tested
    page.route(f"{gateway}/v1/licenses/*/usage?*", canned_usage)
    page.goto(f"{gateway}/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    usage = page.locator("#usage")
    chart = usage.get_by_role("img", name="Credits per day, 2026-12-01 to 2026-12-10")
    bars = chart.locator("g.bar")

    # A bar per day with activity, on an axis of every day of the range
    expect(bars).to_have_count(3)
    assert [bar.get_attribute("data-period") for bar in bars.all()] == [
        "2026-12-02",
        "2026-12-05",
        "2026-12-09",
    ]
    assert asked == ["day"]
    expect(usage.locator("#usage-summary")).to_have_text(
        "140 credits in 9 requests from 2026-12-01 to 2026-12-10, per day and by site."
    )
    expect(chart.locator("text.tick").filter(has_text="Dec 1")).to_have_count(1)
    expect(bars.nth(1).locator("title")).to_have_text(
        "2026-12-05: 100 credits in 6 requests (example.org 80, example.com 20)"
    )
    # stacked by site, in the legend's colours (the sites by credits, most first)
    busiest = bars.nth(1).locator("rect")
    expect(busiest).to_have_count(2)
    assert [rect.get_attribute("data-site") for rect in busiest.all()] == ["example.org", "example.com"]
    assert [rect.get_attribute("class") for rect in busiest.all()] == ["segment series-0", "segment series-1"]
    expect(usage.locator("#usage-legend li")).to_have_text(["example.org", "example.com"])
    expect(usage.locator("#usage-legend .swatch").first).to_have_class("swatch series-0")
    # heights in proportion to the credits
    org, com = (_height(rect) for rect in busiest.all())
    assert org == pytest.approx(4 * com, rel=0.01)
    assert _height(bars.nth(0)) == pytest.approx(1.5 * com, rel=0.01)
    assert _height(bars.nth(1)) > _height(bars.nth(0)) > _height(bars.nth(2))

    # The figures as tables: the chart's, and the sites by credits with their features
    figures = usage.locator("details")
    figures.locator("summary").click()
    expect(figures.locator("tbody tr")).to_have_count(3)
    expect(figures.locator("tbody tr").nth(1)).to_have_text("2026-12-051006example.org 80, example.com 20")
    sites = usage.locator("#usage-sites-body tr")
    expect(sites).to_have_count(2)
    expect(sites.nth(0).locator("th, td")).to_have_text(
        ["example.org", "90", "5", "rewrite 60 · translate 30"]
    )
    expect(sites.nth(1).locator("th, td")).to_have_text(["example.com", "50", "4", "summarize 45 · other 5"])

    # Per month: one bar for the month
    usage.get_by_label("Month").check()
    expect(
        usage.get_by_role("img", name="Credits per month, 2026-12-01 to 2026-12-10").locator("g.bar")
    ).to_have_count(1)
    assert asked == ["day", "month"]
    assert tab.errors == []


def test_the_license_and_site_alerts_are_admin_notices_on_both_screens(
    tab: Tab, gateway: str, provision: Callable[[], tuple[ConsoleDemo, bool]]
) -> None:
    expect, page = sync_api.expect, tab.page
    demo, _ = provision()
    tokens = {site.site: site.activation_token for site in demo.sites}
    api = Api(gateway)
    # Given example.org spent all of its 200 credits and staging.example.com 85 of its 100
    assert api.consume(tokens["example.org"], 200).status == 200
    assert api.consume(tokens["staging.example.com"], 85).status == 200

    page.goto(f"{gateway}/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")

    # Manage AI Credits: a notice per site alert, an error (red) for exhausted, a warning (yellow) for low
    notices = page.locator("#portal-alerts .notice")
    expect(notices).to_have_count(2)
    exhausted, low = notices.nth(0), notices.nth(1)
    expect(exhausted).to_have_class("notice notice-error")
    expect(exhausted).to_have_text(
        "example.org has used all its AI Credits. Allocate more in Manage AI Credits to use AI features again."
    )
    expect(low).to_have_class("notice notice-warning")
    expect(low).to_have_text(
        "staging.example.com is low on AI Credits: 15 left, 20% or less of its allocation."
    )
    # Manage Plan: the balance's alerts of the site the plugin runs on
    plugin, plugin_notices = page.locator("#plugin"), page.locator("#plugin-alerts .notice")
    expect(plugin_notices).to_have_count(0)  # example.com: 500 left of 500
    plugin.get_by_label("Site").select_option("example.org")
    expect(plugin_notices).to_have_count(1)
    expect(plugin_notices).to_have_class("notice notice-error")
    expect(plugin_notices).to_contain_text("This site has used all its AI Credits.")

    # When the customer allocates to example.org again, its notice goes
    page.locator("#portal").get_by_label("New allocation for example.org").fill("300")
    page.locator("#portal").get_by_role("button", name="Apply").click()
    expect(notices).to_have_count(1)
    expect(notices).to_have_attribute("data-site", "staging.example.com")
    plugin.get_by_role("button", name="Refresh credits").click()
    expect(plugin_notices).to_have_count(0)
    assert tab.errors == []


#: (site, credits, feature) of each consume, request ids ``usage-<index>``; ``usage-4`` is refunded.
SPENDS = [
    *[("example.com", 10, "rewrite")] * 4,
    *[("example.com", 5, "summarize")] * 2,
    ("example.com", 5, None),
    ("example.org", 150, "rewrite"),
    ("example.org", 50, "translate"),
    ("staging.example.com", 85, "rewrite"),
]


def test_usage_statement_and_csv_after_spends_in_the_browser(
    tab: Tab,
    gateway: str,
    gateway_settings: GatewaySettings,
    provision: Callable[[], tuple[ConsoleDemo, bool]],
    demo_license: DemoLicense,
    stream_tap: Any,
) -> None:
    expect, page = sync_api.expect, tab.page
    demo, _ = provision()
    api, license_id = Api(gateway), demo_license.license_id
    tokens = {site.site: site.activation_token for site in demo.sites}
    portal_token = gateway_settings.portal_token(demo_license.account_id)
    # Given AI features used on the three sites, and billing's refund of a summary
    for index, (site, amount, feature) in enumerate(SPENDS):
        fields = {"feature": feature} if feature else {}
        assert api.consume(tokens[site], amount, f"usage-{index}", **fields).status == 200
    assert api.refund(license_id, "example.com", "usage-4").status == 201
    # ... once the usage and the statement (derived from the stream) show them
    entry_count = 1 + len(SPENDS) + 1  # the term's credits, the consumes, the refund
    usage = stream_tap.caught_up(
        lambda: api.call("GET", f"/v1/licenses/{license_id}/usage", token=portal_token).body,
        lambda body: body.get("credits") == 335,
    )
    entries = stream_tap.caught_up(
        lambda: api.call("GET", f"/v1/licenses/{license_id}/ledger?limit=500", token=portal_token).body,
        lambda body: len(body.get("entries", [])) == entry_count,
    )["entries"]
    statement_csv = api.call(
        "GET", f"/v1/licenses/{license_id}/ledger", token=portal_token, headers={"accept": "text/csv"}
    ).body

    page.goto(f"{gateway}/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    portal, plugin = page.locator("#portal"), page.locator("#plugin")

    # Then Manage AI Credits charts the credits: a bar per day with activity, a segment per site
    chart = portal.locator("#usage-chart svg")
    expect(chart.locator("g.bar")).to_have_count(len(usage["buckets"]))
    for bar, bucket in zip(chart.locator("g.bar").all(), usage["buckets"], strict=True):
        assert bar.get_attribute("data-period") == bucket["start"][:10]
        expect(bar.locator("rect")).to_have_count(len([s for s in bucket["sites"].values() if s]))
    expect(portal.locator("#usage-summary")).to_contain_text("335 credits in")
    # and the sites by credits, with their features (a consume without one is "other"; net of the refund)
    sites = portal.locator("#usage-sites-body tr")
    expect(sites.locator("th")).to_have_text(["example.org", "staging.example.com", "example.com"])
    expect(sites.nth(0).locator("td").nth(2)).to_have_text("rewrite 150 · translate 50")
    expect(sites.nth(2).locator("td").first).to_have_text("50")
    expect(sites.nth(2).locator("td").nth(2)).to_have_text("rewrite 40 · other 5 · summarize 5")
    # and the notices of the exhausted and the low site
    expect(portal.locator("#portal-alerts .notice")).to_have_count(2)

    # The statement: newest first, a page at a time
    rows = portal.locator("#statement-body tr")
    credits = [f"{entry['credits']:+,}" for entry in entries]
    expect(rows.locator("td:last-child")).to_have_text(credits[:10])
    portal.get_by_role("button", name="Load more").click()
    expect(rows.locator("td:last-child")).to_have_text(credits)
    expect(portal.get_by_role("button", name="Load more")).to_be_hidden()
    assert [row.get_attribute("data-type") for row in rows.all()] == [entry["type"] for entry in entries]
    expect(rows.last.locator("td").last).to_have_text("+1,000")  # the term's credits, first of all
    staging = rows.filter(has_text="staging.example.com")
    expect(staging.locator("td")).to_have_text(
        ["Spent", "staging.example.com", "rewrite · request usage-9", "-85"]
    )

    # The statement as a CSV download: the API's CSV, named after the license
    with page.expect_download() as download:
        portal.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == f"statement-{license_id}.csv"
    assert Path(download.value.path()).read_bytes() == statement_csv.encode()
    assert statement_csv.splitlines()[0].startswith("at,type,credits")

    # Per month: one bar for this month (the term began on its first day)
    portal.get_by_label("Month").check()
    expect(chart.locator("g.bar")).to_have_count(1)

    # Manage Plan: the site's usage this term by feature
    features = plugin.locator("#site-features-body tr")
    expect(features.locator("th")).to_have_text(["rewrite", "other", "summarize"])
    expect(features.locator("td")).to_have_text(["40", "5", "5"])

    # When the site uses a translation from Manage Plan, its usage shows it after the refresh icon
    plugin.get_by_label("Credits to spend").fill("7")
    plugin.get_by_label("AI feature").select_option("translate")
    plugin.get_by_role("button", name="Use an AI feature").click()
    expect(plugin.get_by_role("status")).to_contain_text("Spent 7 credits on example.com")
    stream_tap.caught_up(
        lambda: api.call("GET", "/v1/usage", token=tokens["example.com"]).body["features"],
        lambda features: features.get("translate") == 7,
    )
    plugin.get_by_role("button", name="Refresh credits").click()
    expect(plugin.locator('#site-features-body tr[data-feature="translate"] td')).to_have_text("7")
    expect(plugin.locator("#site-usage-summary")).to_contain_text("example.com: 57 credits in 8 requests")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "console-usage.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    assert tab.errors == []
    assert tab.elsewhere == []
