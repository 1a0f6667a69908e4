"""A small HTTP client for the integration tests (stdlib only, one connection per thread)."""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ADMIN_TOKEN = "local-admin-token"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


class Api:
    """Calls the local gateway like the plugin, the portal and billing do."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
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
    ) -> Answer:
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
        for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
            connection = self._connection()
            try:
                connection.request(method, path, body=payload, headers=sent)
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
            "account_id": "acct-1",
            "plan": "single-site",
            "site_limit": 1,
            "credits_per_term": 1000,
            "term_months": 12,
            "term_start": "2026-11-01T00:00:00Z",
            "term_end": "2027-11-01T00:00:00Z",
            "expires_at": "2027-11-01T00:00:00Z",
            **fields,
        }
        return self.call(
            "PUT",
            f"/v1/admin/licenses/{license_id}",
            body,
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )

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
        return self.call(method, path, body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

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
