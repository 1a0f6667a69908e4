"""The documentation in ``docs/`` against the code it describes: every route of template.yaml and
every error code of errors.py in the API reference, every alarm in the operators' page, no broken
relative link, nothing of the repository pointing outside it (to a sibling ``shared`` folder);
and the local
gateway's ``/local/docs/<page>.md`` resolution (only the Markdown files of ``docs/``).

Fast: files and the template only, no network; one test (marked ``integration``) asks the
session's local gateway on the loopback.
"""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request

import pytest

from ai_credits import errors
from local import REPO_ROOT
from local.cfn import load_template
from local.pages import DOCS_DIR, docs_page, swagger_page

#: A path out of the repository into a sibling folder, spelled so that this file does not contain it.
OUTSIDE = b"../" + b"shared"
#: The one file known to mention it while its edit is pending (see the test).

DOCS = REPO_ROOT / "docs"
PAGES = [
    "README.md",
    "api.md",
    "plugin.md",
    "portal.md",
    "billing.md",
    "operators.md",
    "architecture.md",
    "security.md",
    "development.md",
    "performance.md",
    "tour.md",
]

# Error codes a page for a reader answers, beyond api.md (which has them all).
PLUGIN_CODES = {
    "malformed_json",
    "unauthorized",
    "insufficient_credits",
    "license_expired",
    "not_found",
    "activation_limit_reached",
    "idempotency_conflict",
    "hold_expired",
    "hold_captured",
    "unsupported_media_type",
    "validation_error",
    "unavailable",
}
PORTAL_CODES = {
    "unauthorized",
    "not_found",
    "over_allocation",
    "below_used",
    "license_expired",
    "validation_error",
    "unavailable",
}


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _resources() -> dict[str, dict[str, object]]:
    resources: dict[str, dict[str, object]] = load_template()["Resources"]
    return resources


def _routes() -> set[tuple[str, str]]:
    routes = set()
    for resource in _resources().values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties") or {}
        assert isinstance(properties, dict)
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                routes.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
    return routes


def _error_codes() -> set[str]:
    return {
        error.code
        for error in vars(errors).values()
        if isinstance(error, type) and issubclass(error, errors.DomainError)
    }


def _alarms() -> set[str]:
    return {
        name for name, resource in _resources().items() if resource.get("Type") == "AWS::CloudWatch::Alarm"
    }


def test_every_page_exists() -> None:
    for name in PAGES:
        assert (DOCS / name).is_file(), name


def test_template_and_errors_are_read() -> None:
    """The checks below are about something: the template has routes and alarms, errors.py codes."""
    assert len(_routes()) >= 18
    assert len(_alarms()) >= 8
    assert {"insufficient_credits", "over_allocation", "unavailable"} <= _error_codes()


@pytest.mark.parametrize("route", sorted(_routes()), ids=lambda route: f"{route[0]} {route[1]}")
def test_every_route_is_in_the_api_reference(route: tuple[str, str]) -> None:
    method, path = route
    api = _read("api.md")
    pattern = rf"\b{method}\b[^\n]*`{re.escape(path)}`"
    assert re.search(pattern, api), f"{method} {path} is not documented in docs/api.md"


@pytest.mark.parametrize("code", sorted(_error_codes()))
def test_every_error_code_is_in_the_api_reference(code: str) -> None:
    assert f"`{code}`" in _read("api.md"), f"{code} is not in docs/api.md"


@pytest.mark.parametrize("code", sorted(_error_codes()))
def test_every_error_code_is_told_to_its_reader(code: str) -> None:
    """Every code is in the plugin's or the portal's page (or billing's, for its own codes), and the
    codes each of them can meet are in theirs."""
    readers = {name: _read(name) for name in ("plugin.md", "portal.md", "billing.md")}
    assert any(f"`{code}`" in text for text in readers.values()), code
    if code in PLUGIN_CODES:
        assert f"`{code}`" in readers["plugin.md"], f"{code} is not in docs/plugin.md"
    if code in PORTAL_CODES:
        assert f"`{code}`" in readers["portal.md"], f"{code} is not in docs/portal.md"


@pytest.mark.parametrize("alarm", sorted(_alarms()))
def test_every_alarm_has_a_runbook(alarm: str) -> None:
    assert re.search(rf"^#+ {alarm}$", _read("operators.md"), re.MULTILINE), (
        f"{alarm} has no runbook section in docs/operators.md"
    )


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


#: Every Markdown file a reader follows links in: the docs pages and the READMEs.
LINKED = [f"docs/{name}" for name in PAGES] + ["README.md", "clients/php/README.md"]


@pytest.mark.parametrize("name", LINKED)
def test_relative_links_point_to_files(name: str) -> None:
    page = REPO_ROOT / name
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve()
        assert file.exists(), f"{name}: {target} does not exist"
        assert file.is_relative_to(REPO_ROOT), f"{name}: {target} is outside the repository"
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.MULTILINE)
            slugs = {re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-") for heading in headings}
            assert anchor in slugs, f"{name}: no heading #{anchor} in {path}"


def test_no_file_of_the_repository_points_outside_it() -> None:
    """The repository stands alone: no tracked file refers to the sibling ``shared`` folder (``OUTSIDE``)."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    offenders = []
    for name in filter(None, tracked):
        path = REPO_ROOT / name.decode()
        if path.is_file() and OUTSIDE in path.read_bytes():
            offenders.append(name.decode())
    assert not offenders, f"these tracked files mention {OUTSIDE.decode()}: {offenders}"


# -- the local gateway's /local/docs/<page>.md -----------------------------------------------------


def test_the_gateway_serves_the_docs_folder() -> None:
    assert DOCS_DIR == DOCS


@pytest.mark.parametrize("name", PAGES)
def test_docs_pages_resolve(name: str) -> None:
    assert docs_page(f"/local/docs/{name}") == DOCS / name


@pytest.mark.parametrize(
    "raw_path",
    [
        "/local/docs/",
        "/local/docs",
        "/local/docs/missing.md",
        "/local/docs/../README.md",
        "/local/docs/..%2FREADME.md",
        "/local/docs/%2e%2e/README.md",
        "/local/docs//api.md",
        "/local/docs/sub/api.md",
        "/local/docs/api.md/",
        "/local/docs/.api.md",
        "/local/docs/api.md%00",
        "/local/docs/api",
        "/docs/api.md",
        "/local/docs/api.md?x=1",
        "/local/docs/\\api.md",
    ],
)
def test_nothing_else_resolves(raw_path: str) -> None:
    assert docs_page(raw_path) is None


def test_every_resolved_page_is_inside_docs() -> None:
    for page in DOCS.glob("*.md"):
        resolved = docs_page(f"/local/docs/{page.name}")
        assert resolved is not None and resolved.resolve().parent == DOCS.resolve()


def test_the_swagger_page_links_every_page() -> None:
    page = swagger_page().decode("utf-8")
    assert 'id="swagger-ui"' in page
    for name in PAGES:
        assert f'href="/local/docs/{name}"' in page, name


@pytest.mark.integration
def test_the_local_gateway_serves_the_pages(gateway: str) -> None:
    """Through the session's gateway: a page as plain text, the links on /docs, nothing else of the
    repository, and no page for a Host that is not the loopback (DNS rebinding)."""

    def get(path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(gateway + path, headers={"Host": host} if host else {})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    status, headers, body = get("/local/docs/api.md")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == (DOCS / "api.md").read_bytes()
    status, _, body = get("/docs")
    assert status == 200 and b'href="/local/docs/plugin.md"' in body
    for path in ("/local/docs/..%2FREADME.md", "/local/docs/%2e%2e/README.md", "/local/docs/missing.md"):
        assert get(path)[0] == 404, path
    assert get("/local/docs/api.md", host="evil.example")[0] == 403
