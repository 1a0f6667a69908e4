"""A small HTTP client for the integration tests (stdlib only, one connection per thread).

The same client drives the e2e tier against a deployed stack (``make e2e``, tests/e2e/target.py):
an ``https://`` base URL, and admin calls authorized by an :class:`AdminAuth` (SigV4 there, the
local gateway's bearer token here).
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

ADMIN_TOKEN = "local-admin-token"


class AdminAuth(Protocol):
    """Authorizes a call to the admin (billing) routes."""

    def headers(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        """The headers to add to a request about to be sent with ``headers`` and ``body``."""
        ...


@dataclass(frozen=True)
class BearerAuth:
    """The local gateway's admin credential: ``Authorization: Bearer <token>`` (no SigV4 there)."""

    token: str = ADMIN_TOKEN

    def headers(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


class Api:
    """Calls the local gateway (or a deployed stack) like the plugin, the portal and billing do.

    ``admin`` authorizes the admin routes (default: the local gateway's bearer token);
    ``account_id`` is the account licenses are provisioned for unless a test names one;
    ``id_prefix`` starts every id :meth:`unique` makes (``e2e-`` on a deployed stack).
    """

    def __init__(
        self,
        base_url: str,
        *,
        admin: AdminAuth | None = None,
        account_id: str = "acct-1",
        id_prefix: str = "",
    ) -> None:
        parts = urlsplit(base_url)
        self.scheme = parts.scheme or "http"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.admin: AdminAuth = admin or BearerAuth()
        self.account_id = account_id
        self.id_prefix = id_prefix
        self._local = threading.local()

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{self.host}" + ("" if self.port == default else f":{self.port}")

    def unique(self, prefix: str) -> str:
        """A unique id under this client's ``id_prefix`` (data a test leaves behind is findable)."""
        return unique(f"{self.id_prefix}{prefix}")

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self.scheme == "https":
                connection = http.client.HTTPSConnection(self.host, self.port, timeout=30)
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._local.connection = connection
        return connection

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        admin: bool = False,
    ) -> Answer:
        """One request; ``admin=True`` authorizes it with :attr:`admin` (after the other headers:
        a signature covers them)."""
        sent = {"content-type": "application/json", **(headers or {})}
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        payload: bytes | None
        if raw is not None:
            payload = raw.encode() if isinstance(raw, str) else raw
        elif body is not None:
            payload = json.dumps(body).encode()
        else:
            payload = None
        target = self.base_path + path
        if admin:
            sent.update(self.admin.headers(method, self.origin + target, payload, sent))
        for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
            connection = self._connection()
            try:
                connection.request(method, target, body=payload, headers=sent)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        text = data.decode() if data else ""
        content_type = response.getheader("content-type", "")
        parsed = json.loads(text) if text and "json" in content_type else (text or None)
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)

    # -- the contract's routes ------------------------------------------------------------------

    def provision(self, license_id: str, **fields: Any) -> Answer:
        body = {
            "license_key": f"key-{license_id}",
            "account_id": self.account_id,
            "plan": "single-site",
            "site_limit": 1,
            "credits_per_term": 1000,
            "term_months": 12,
            "term_start": "2026-11-01T00:00:00Z",
            "term_end": "2027-11-01T00:00:00Z",
            "expires_at": "2027-11-01T00:00:00Z",
            **fields,
        }
        return self._admin("PUT", f"/v1/admin/licenses/{license_id}", body)

    def activate(
        self, license_key: str, site_url: str, environment: str = "production", **fields: Any
    ) -> Answer:
        body = {"license_key": license_key, "site_url": site_url, "environment": environment, **fields}
        return self.call("POST", "/v1/activations", body)

    def deactivate(self, token: str) -> Answer:
        return self.call("DELETE", "/v1/activations/current", token=token)

    def balance(self, token: str, **headers: str) -> Answer:
        return self.call("GET", "/v1/balance", token=token, headers=headers)

    def consume(self, token: str, amount: Any, request_id: str | None = None, **fields: Any) -> Answer:
        body = {"amount": amount, "request_id": request_id or uuid.uuid4().hex, **fields}
        return self.call("POST", "/v1/consume", body, token=token)

    def hold(self, token: str, hold_id: str, amount: Any, **fields: Any) -> Answer:
        return self.call("POST", "/v1/holds", {"hold_id": hold_id, "amount": amount, **fields}, token=token)

    def capture(self, token: str, hold_id: str, amount: Any) -> Answer:
        return self.call("POST", f"/v1/holds/{hold_id}/capture", {"amount": amount}, token=token)

    def release(self, token: str, hold_id: str) -> Answer:
        return self.call("DELETE", f"/v1/holds/{hold_id}", token=token)

    # -- billing ------------------------------------------------------------------------------------

    def grant(self, license_id: str, grant_id: str, credits: Any, **fields: Any) -> Answer:
        body = {"grant_id": grant_id, "credits": credits, **fields}
        return self._admin("POST", f"/v1/admin/licenses/{license_id}/grants", body)

    def refund(self, license_id: str, site_url: str, request_id: str, **fields: Any) -> Answer:
        body = {"site_url": site_url, "request_id": request_id, **fields}
        return self._admin("POST", f"/v1/admin/licenses/{license_id}/refunds", body)

    def _admin(self, method: str, path: str, body: Any) -> Answer:
        return self.call(method, path, body, admin=True)

    # -- the portal (``token`` is a portal JWT) ---------------------------------------------------

    def licenses(self, token: str | None) -> Answer:
        return self.call("GET", "/v1/licenses", token=token)

    def credits(self, token: str | None, license_id: str) -> Answer:
        return self.call("GET", f"/v1/licenses/{license_id}/credits", token=token)

    def apply(self, token: str | None, license_id: str, allocations: Any) -> Answer:
        """*Apply*: ``PUT .../allocations`` with ``{"allocations": allocations}``."""
        return self.call(
            "PUT", f"/v1/licenses/{license_id}/allocations", {"allocations": allocations}, token=token
        )


def unique(prefix: str) -> str:
    """Ids are unique per test: the integration tests share one table."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
