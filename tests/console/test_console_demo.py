"""The demo console over HTTP: the page and its files, the demo's provisioning and ``/local/demo``.

The browser test (``test_console_page.py``) drives the same page; these check what it relies on.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from local.pages import CONSOLE_DIR, ConsoleDemo
from local.run import DemoLicense
from tests.integration.client import Api

pytestmark = pytest.mark.integration

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # the usage chart's elements (console.js)
CONSOLE_FILES = {
    "/": ("index.html", "text/html"),
    "/local/console/console.css": ("console.css", "text/css"),
    "/local/console/console.js": ("console.js", "text/javascript"),
}


@pytest.fixture
def api(gateway: str) -> Api:
    return Api(gateway)


@pytest.mark.parametrize("path", sorted(CONSOLE_FILES))
def test_the_console_is_served_from_local_files_only(api: Api, path: str) -> None:
    file_name, content_type = CONSOLE_FILES[path]

    answer = api.call("GET", path)

    assert answer.status == 200
    assert answer.headers["content-type"].startswith(content_type)
    assert answer.body == (CONSOLE_DIR / file_name).read_text()
    # The browser may load nothing from elsewhere: the page works offline.
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "connect-src 'self'" in answer.headers["content-security-policy"]
    # No absolute URL at all (no CDN, no font, no analytics); the SVG namespace is a name, not a place.
    assert "://" not in answer.body.replace(f'"{SVG_NAMESPACE}"', "")


def test_the_page_loads_exactly_its_two_files(api: Api) -> None:
    page = api.call("GET", "/").body

    assert 'href="/local/console/console.css"' in page
    assert 'src="/local/console/console.js"' in page
    assert api.call("GET", "/local/console/index.html").status == 404  # only the listed paths


def test_the_demo_is_a_multi_site_license_with_allocated_live_and_staging_sites(
    api: Api, provision: Callable[[], tuple[ConsoleDemo, bool]], demo_license: DemoLicense
) -> None:
    registered, created = provision()

    credentials = api.call("GET", "/local/demo")

    assert created is True
    assert credentials.status == 200
    assert credentials.headers["cache-control"] == "no-store"
    assert credentials.body["license_id"] == demo_license.license_id
    assert [(s["site"], s["environment"]) for s in credentials.body["sites"]] == [
        ("example.com", "live"),
        ("example.org", "live"),
        ("staging.example.com", "staging"),
    ]
    view = api.credits(credentials.body["portal_token"], demo_license.license_id)
    assert view.status == 200
    assert (view.body["plan"], view.body["credits_total"], view.body["unallocated"]) == (
        "multi-site",
        1000,
        200,
    )
    assert view.body["needs_allocation"] is False
    assert {s["site"]: s["allocated"] for s in view.body["sites"]} == dict(demo_license.initial_allocations)
    for site in credentials.body["sites"]:
        balance = api.balance(site["activation_token"])
        assert balance.status == 200
        assert balance.body["site"]["site"] == site["site"]
    assert [s.activation_token for s in registered.sites] == [
        s["activation_token"] for s in credentials.body["sites"]
    ]


def test_a_second_start_keeps_the_license_and_rotates_the_tokens(
    api: Api, provision: Callable[[], tuple[ConsoleDemo, bool]], demo_license: DemoLicense
) -> None:
    first, _ = provision()
    old_token = first.sites[0].activation_token
    assert api.consume(old_token, 42).status == 200

    second, created = provision()

    assert created is False
    assert api.balance(old_token).status == 401  # the earlier start's tokens stop working
    balance = api.balance(second.sites[0].activation_token)
    assert (balance.body["site"]["allocated"], balance.body["site"]["used"]) == (500, 42)
    assert (
        api.call("GET", "/local/demo").body["sites"][0]["activation_token"]
        == second.sites[0].activation_token
    )


def test_the_portal_token_is_minted_per_request(
    api: Api, provision: Callable[[], tuple[ConsoleDemo, bool]]
) -> None:
    provision()

    tokens = {api.call("GET", "/local/demo").body["portal_token"] for _ in range(2)}

    assert all(token.count(".") == 2 for token in tokens)  # a JWT, valid an hour from each request


def test_registering_a_demo_takes_the_admin_token_and_a_valid_body(api: Api) -> None:
    body = {
        "license_id": "lic-x",
        "account_id": "acct-x",
        "sites": [{"site": "a.com", "environment": "live"}],
    }

    assert api.call("PUT", "/local/demo", body).status == 401
    assert api.call("PUT", "/local/demo", body, token="not-the-admin-token").status == 401
    refused = api.call("PUT", "/local/demo", body, token="local-admin-token")
    assert (refused.status, refused.code) == (422, "validation_error")
    assert "sites[0]" in refused.body["detail"]


def test_the_credentials_are_only_for_a_loopback_host(
    api: Api, provision: Callable[[], tuple[ConsoleDemo, bool]]
) -> None:
    provision()

    # A page whose DNS name was rebound to 127.0.0.1 sends its own name.
    rebound = api.call("GET", "/local/demo", headers={"Host": "attacker.example:3000"})
    local = api.call("GET", "/local/demo", headers={"Host": "localhost:3000"})

    assert (rebound.status, rebound.code) == (403, "forbidden")
    assert "portal_token" not in rebound.body
    assert local.status == 200


def test_other_methods_on_the_demo_path_are_405(api: Api) -> None:
    answer = api.call("POST", "/local/demo", {})

    assert (answer.status, answer.code) == (405, "method_not_allowed")
    assert answer.headers["allow"] == "GET, HEAD, PUT"
