"""The pages the local gateway serves besides the template's routes (local only): the API's
documentation and the demo console.

- ``/docs``: Swagger UI over the committed ``openapi.json`` (Powertools ships its assets: no CDN),
  with links to the repository's ``docs/*.md``, served as plain text at ``/local/docs/<page>.md``.
- ``/``: the demo console, the help article's *Manage AI Credits* and *Manage Plan* screens (static
  files of ``local/console/``), which takes the credentials of a demo license from ``/local/demo``
  (:class:`ConsoleDemo`).

:mod:`local.gateway` decides when a request gets one of these; this module says what they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local import REPO_ROOT
from local.apigw import GatewaySettings

__all__ = [
    "CONSOLE_DIR",
    "CONSOLE_FILES",
    "CONSOLE_HEADERS",
    "DEMO_PATH",
    "DOCS_DIR",
    "DOCS_FILES",
    "DOCS_PAGES_PREFIX",
    "ConsoleDemo",
    "DemoSite",
    "docs_page",
    "swagger_page",
]

# -- the API's documentation: Swagger UI over the committed openapi.json -------------------------


def _swagger_asset(name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        from aws_lambda_powertools.event_handler.openapi import swagger_ui

        return (Path(swagger_ui.__file__).parent / name).read_bytes()

    return read


def _openapi_document() -> bytes:
    return (REPO_ROOT / "openapi.json").read_bytes()


def swagger_page() -> bytes:
    """Swagger UI over the committed ``openapi.json``, with the documentation pages linked above."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    page = generate_swagger_html(
        _openapi_document().decode("utf-8"),
        "/docs/swagger-ui-bundle.min.js",  # Powertools ships the assets: no CDN needed
        "/docs/swagger-ui.min.css",
        "/docs",
        None,
    )
    return page.replace("<body>", "<body>\n" + _docs_links(), 1).encode("utf-8")


#: The repository's documentation (``docs/*.md``), served as plain text at ``/local/docs/<page>.md``
#: (local only, like every ``/local/...`` path) and linked above Swagger UI.
DOCS_DIR = REPO_ROOT / "docs"
DOCS_PAGES_PREFIX = "/local/docs/"
_DOCS_PAGE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.md", re.IGNORECASE)


def docs_page(raw_path: str) -> Path | None:
    """The file of ``docs/`` that ``raw_path`` names (``/local/docs/api.md``), or None: only a plain
    file name (no ``/``, ``..``, ``%`` or other characters) of a Markdown file that is in ``docs/``."""
    name = raw_path.removeprefix(DOCS_PAGES_PREFIX)
    if name == raw_path or not _DOCS_PAGE_NAME.fullmatch(name):
        return None
    pages = {page.name: page for page in DOCS_DIR.glob("*.md") if page.is_file()}
    return pages.get(name)


def _docs_links() -> str:
    names = sorted(
        (page.name for page in DOCS_DIR.glob("*.md")), key=lambda name: (name != "README.md", name)
    )
    links = " | ".join(
        f'<a href="{DOCS_PAGES_PREFIX}{html.escape(name)}">{html.escape(name)}</a>' for name in names
    )
    style = "font-family: sans-serif; padding: 8px 20px"
    return f'<nav id="docs-pages" style="{style}">Documentation: {links}</nav>'


#: Served by the local gateway only (not routes of template.yaml): path -> (content type, body).
DOCS_FILES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "/docs": ("text/html; charset=utf-8", swagger_page),
    "/openapi.json": ("application/json", _openapi_document),
    "/docs/swagger-ui-bundle.min.js": ("text/javascript", _swagger_asset("swagger-ui-bundle.min.js")),
    "/docs/swagger-ui.min.css": ("text/css", _swagger_asset("swagger-ui.min.css")),
}


# -- the demo console: the help article's two screens over this gateway's API (local only) --------

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
#: The demo's credentials for the console; a local path, never a route of template.yaml.
DEMO_PATH = "/local/demo"
#: Path -> (file of CONSOLE_DIR, content type). A fixed list: nothing else of the folder is served.
CONSOLE_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/local/console/console.css": ("console.css", "text/css; charset=utf-8"),
    "/local/console/console.js": ("console.js", "text/javascript; charset=utf-8"),
}
# The browser holds the page to this gateway: nothing from elsewhere (it works offline), no inline
# script or style.
CONSOLE_HEADERS = (
    ("Cache-Control", "no-cache"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


@dataclass(frozen=True)
class DemoSite:
    """One activated site of the demo license and the token its plugin would hold."""

    site: str
    environment: str
    activation_token: str = field(repr=False)


@dataclass(frozen=True)
class ConsoleDemo:
    """The demo license the console shows, as registered with ``PUT /local/demo`` (admin token).

    ``GET /local/demo`` answers :meth:`credentials`: what the page needs to play the portal (a portal
    JWT for the account, minted on each request so it never runs out) and the plugin of each site
    (its activation token). Only on this machine's loopback address.
    """

    license_id: str
    account_id: str
    sites: tuple[DemoSite, ...]

    @classmethod
    def from_json(cls, document: Any) -> ConsoleDemo:
        """Parse ``{license_id, account_id, sites: [{site, environment, activation_token}]}``; a
        ValueError names the member that is wrong (never its value: it may be a token)."""
        if not isinstance(document, dict):
            raise ValueError("the body must be a JSON object")
        for name in ("license_id", "account_id"):
            if not isinstance(document.get(name), str) or not 0 < len(document[name]) <= 256:
                raise ValueError(f"{name!r} must be a string of 1 to 256 characters")
        raw_sites = document.get("sites")
        if not isinstance(raw_sites, list) or not raw_sites:
            raise ValueError("'sites' must be a non-empty list")
        sites = []
        for index, raw in enumerate(raw_sites):
            members = ("site", "environment", "activation_token")
            if not isinstance(raw, dict) or not all(isinstance(raw.get(m), str) and raw[m] for m in members):
                raise ValueError(f"sites[{index}] must have the strings {', '.join(members)}")
            sites.append(DemoSite(raw["site"], raw["environment"], raw["activation_token"]))
        return cls(document["license_id"], document["account_id"], tuple(sites))

    def to_json(self) -> dict[str, Any]:
        """The registration body (``from_json`` reads it back)."""
        return {
            "license_id": self.license_id,
            "account_id": self.account_id,
            "sites": [
                {"site": s.site, "environment": s.environment, "activation_token": s.activation_token}
                for s in self.sites
            ],
        }

    def credentials(self, settings: GatewaySettings) -> dict[str, Any]:
        """What ``GET /local/demo`` answers: the registration plus a fresh portal JWT (one hour)."""
        return {**self.to_json(), "portal_token": settings.portal_token(self.account_id)}
