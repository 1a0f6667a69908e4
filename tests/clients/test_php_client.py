"""The PHP client (clients/php) against the local server on DynamoDB Local, as the WordPress plugin
uses it: ``clients/php/tests/run.php`` runs a script of the Client's calls in php-cli and prints
what each answered or raised.

A small proxy in front of the gateway records every exchange (what the client sent, what the
server answered) and injects faults *after* forwarding a request: the write happened, its answer
is lost (a 503 with ``Retry-After: 0``, or the connection closed), so the client's repeat must be
the same request and the charge happen once.

php-cli (with cURL) comes from Debian: ``make test`` installs it when missing (``make php``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.client import Api

PHP_DIR = Path(__file__).resolve().parents[2] / "clients" / "php"
RUN = PHP_DIR / "tests" / "run.php"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


# -- php-cli ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def php() -> str:
    found = shutil.which("php")
    if found is None:
        pytest.skip(
            "php-cli is not installed and could not be: `make php` installs php-cli and php-curl with apt-get"
        )
    curl = subprocess.run([found, "-r", "exit(function_exists('curl_init') ? 0 : 1);"], check=False)
    if curl.returncode != 0:
        pytest.skip("php has no cURL extension: `make php` installs php-curl with apt-get")
    return found


def _php_env() -> dict[str, str]:
    """No proxy of the shell's: the test traffic stays on 127.0.0.1."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
    return {name: value for name, value in os.environ.items() if name not in proxies}


def run_php(
    php: str, base_url: str, ops: list[dict[str, Any]], *, wordpress: bool = False, **script: Any
) -> dict[str, Any]:
    """Runs the Client's calls ``ops`` ({"op": method, "args": {named arguments}}) in one php process."""
    document = {"base_url": base_url, "ops": ops, **script}
    command = [php, str(RUN), *(["wordpress"] if wordpress else [])]
    done = subprocess.run(
        command,
        input=json.dumps(document),
        capture_output=True,
        text=True,
        timeout=120,
        env=_php_env(),
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, (
        f"php failed ({done.returncode}): {done.stderr}\n{done.stdout}"
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def op(name: str, **args: Any) -> dict[str, Any]:
    return {"op": name, "args": args}


def ok(result: dict[str, Any]) -> Any:
    assert "ok" in result, result
    return result["ok"]


def error(result: dict[str, Any]) -> dict[str, Any]:
    assert "error" in result, result
    found: dict[str, Any] = result["error"]
    return found


# -- the proxy ------------------------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    upstream_status: int
    upstream_body: Any
    answered: str  # "relayed", "503" or "dropped"


@dataclass
class FaultyProxy:
    """Relays to ``upstream``; ``faults[(method, path)]`` is a list of faults to play, one per
    matching request, in order: "503" (answer 503 + Retry-After: 0 instead of the server's answer),
    "drop" (close the connection without an answer) or "relay". The request is forwarded first always."""

    upstream: str
    faults: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.relay(self)

            do_POST = do_PUT = do_DELETE = do_GET

        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        payload = handler.rfile.read(length) if length else None
        headers = {name: value for name, value in handler.headers.items() if name.lower() not in HOP_BY_HOP}
        connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            connection.request(handler.command, handler.path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status, answer_headers = response.status, response.getheaders()
        finally:
            connection.close()
        path = urlsplit(handler.path).path
        with self._lock:
            planned = self.faults.get((handler.command, path))
            fault = planned.pop(0) if planned else None
            self.exchanges.append(
                Exchange(
                    method=handler.command,
                    path=path,
                    headers={name.lower(): value for name, value in handler.headers.items()},
                    body=json.loads(payload) if payload else None,
                    upstream_status=status,
                    upstream_body=json.loads(data)
                    if data and b"json" in dict(answer_headers).get("Content-Type", "").encode()
                    else None,
                    answered=fault if fault in ("503", "drop") else "relayed",
                )
            )
        handler.close_connection = True
        if fault == "drop":
            return  # the connection closes without an answer
        if fault == "503":
            problem = json.dumps(
                {
                    "type": "about:blank",
                    "title": "Service unavailable",
                    "status": 503,
                    "detail": "injected",
                    "code": "unavailable",
                }
            ).encode()
            handler.send_response(503)
            handler.send_header("Content-Type", "application/problem+json")
            handler.send_header("Retry-After", "0")
            handler.send_header("Content-Length", str(len(problem)))
            handler.end_headers()
            handler.wfile.write(problem)
            return
        handler.send_response(status)
        for name, value in answer_headers:
            if name.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def sent(self, method: str, path: str) -> list[Exchange]:
        return [
            exchange for exchange in self.exchanges if exchange.method == method and exchange.path == path
        ]


@pytest.fixture
def proxy(gateway: str) -> Iterator[FaultyProxy]:
    relay = FaultyProxy(gateway)
    thread = threading.Thread(target=relay.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.server.shutdown()
        relay.server.server_close()
        thread.join(timeout=10)


# -- licenses ---------------------------------------------------------------------------------------


@dataclass
class License:
    license_id: str
    key: str
    site_url: str
    site: str


@pytest.fixture
def new_license(gateway: str) -> Callable[..., License]:
    """A single-site license of 100 credits (billing's admin route), its live site not yet activated."""

    def make(**fields: Any) -> License:
        uid = uuid.uuid4().hex[:12]
        license_id, key = f"php-{uid}", f"KEY-PHP-{uid}"
        answer = Api(gateway).provision(license_id, license_key=key, credits_per_term=100, **fields)
        assert answer.status == 201, answer.body
        return License(license_id, key, f"https://www.php-{uid}.example.com/", f"php-{uid}.example.com")

    return make


def _activate(lic: License) -> dict[str, Any]:
    return op("activate", licenseKey=lic.key, siteUrl=lic.site_url, environment="production")


# -- the files ----------------------------------------------------------------------------------------


def test_every_php_file_passes_php_lint(php: str) -> None:
    files = sorted(PHP_DIR.rglob("*.php"))
    assert len(files) >= 15
    for path in files:
        done = subprocess.run([php, "-l", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{path}: {done.stdout}{done.stderr}"


def test_the_library_is_psr4_strict_and_logs_nothing() -> None:
    composer = json.loads((PHP_DIR / "composer.json").read_text())
    assert composer["autoload"]["psr-4"] == {"AiCredits\\": "src/"}
    assert composer["require"]["php"] == ">=8.1"
    assert set(composer["require"]) <= {"php", "ext-json"}  # dependency-free
    sources = sorted((PHP_DIR / "src").rglob("*.php"))
    for path in sources:
        text = path.read_text()
        relative = path.relative_to(PHP_DIR / "src").with_suffix("")
        namespace = "\\".join(["AiCredits", *relative.parts[:-1]])
        assert text.startswith("<?php\n\ndeclare(strict_types=1);\n"), path
        assert f"\nnamespace {namespace};\n" in text, path
        assert re.search(rf"\n(final |abstract )?(class|interface) {relative.name}\b", text), path
        for call in ("error_log(", "var_dump(", "print_r(", "var_export(", "echo ", "trigger_error("):
            assert call not in text, f"{path} writes somewhere: {call}"
    names = {path.stem for path in sources}
    assert {
        "Client",
        "TokenStore",
        "InMemoryTokenStore",
        "ApiException",
        "InsufficientCredits",
        "LicenseExpired",
    } <= names
    assert {
        "Unauthorized",
        "NotFound",
        "Conflict",
        "ValidationFailed",
        "Unavailable",
        "Transport",
        "CurlTransport",
    } <= names
    assert "WordPressTransport" in names
    assert "new Client(" in (PHP_DIR / "README.md").read_text()


# -- the plugin's whole path ------------------------------------------------------------------------------


def test_the_plugins_whole_path(
    php: str,
    gateway: str,
    stream_tap: Any,
    event_bus: Any,
    proxy: FaultyProxy,
    new_license: Callable[..., License],
) -> None:
    lic = new_license()
    hold_id, dropped_id = f"import-1:item-{uuid.uuid4().hex[:6]}", f"import-1:item-{uuid.uuid4().hex[:6]}"
    run = run_php(
        php,
        proxy.url,
        [
            _activate(lic),
            op("balance"),
            op("etag"),
            op("balance"),
            op("consume", amount=5, feature="rewrite"),
            op("balance"),
            op("last_remaining"),
            op("consume", amount=1000, feature="rewrite"),
            op("hold", holdId=hold_id, amount=20, ttlSeconds=300, feature="rewrite"),
            op("getHold", holdId=hold_id),
            op("capture", holdId=hold_id, amount=12),
            op("hold", holdId=dropped_id, amount=10),
            op("release", holdId=dropped_id),
            op("getHold", holdId=dropped_id),
            op("consume", amount=70, feature="translate", requestId="import-1:item-9"),
            op("alerts"),
            op("debug"),
        ],
    )
    results, token = run["results"], run["token"]
    assert isinstance(token, str) and token.startswith("act")

    activated = ok(results[0])
    assert activated["site"] == lic.site and activated["environment"] == "live"
    assert activated["license_id"] == lic.license_id and activated["credits"]["remaining"] == 100
    assert "activation_token" not in activated  # it went to the TokenStore
    assert token not in json.dumps(results)  # never in an answer, a message or a dump

    first = ok(results[1])
    assert first["site"]["remaining"] == 100 and first["needs_allocation"] is False
    etag = ok(results[2])
    assert etag and ok(results[3]) == first  # the refresh icon: 304, the cached balance
    balances = proxy.sent("GET", "/v1/balance")
    assert [exchange.upstream_status for exchange in balances[:2]] == [200, 304]
    assert "if-none-match" not in balances[0].headers and balances[1].headers["if-none-match"] == etag

    spent = ok(results[4])
    assert spent["consumed"] == 5 and spent["remaining"] == 95 and spent["replayed"] is False
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", spent["request_id"])
    consumes = proxy.sent("POST", "/v1/consume")
    assert consumes[0].body == {
        "amount": 5,
        "request_id": spent["request_id"],
        "feature": "rewrite",
        "expected_remaining": 100,
    }
    assert balances[2].headers["if-none-match"] == etag and balances[2].upstream_status == 200
    assert ok(results[5])["site"]["remaining"] == 95 and ok(results[6]) == 95

    refused = error(results[7])
    assert refused["class"] == "AiCredits\\Exception\\InsufficientCredits"
    assert (refused["status"], refused["code"], refused["remaining"]) == (402, "insufficient_credits", 95)
    assert (
        refused["request_id"] == consumes[1].body["request_id"]
        and consumes[1].body["expected_remaining"] == 95
    )

    held = ok(results[8])
    assert (held["hold_id"], held["amount"], held["remaining"], held["replayed"]) == (hold_id, 20, 75, False)
    assert ok(results[9])["status"] == "open" and ok(results[9])["amount"] == 20
    captured = ok(results[10])
    assert (captured["captured"], captured["released"], captured["remaining"]) == (12, 8, 83)
    assert ok(results[11])["remaining"] == 73
    assert ok(results[12]) == {"hold_id": dropped_id, "released": 10, "remaining": 83}
    assert ok(results[13])["status"] == "released"
    assert ok(results[14])["remaining"] == 13 and ok(results[14])["request_id"] == "import-1:item-9"

    alerts = ok(results[15])
    assert alerts == Api(gateway).balance(token).body["alerts"]
    assert [alert["code"] for alert in alerts] == ["credits_low"] and alerts[0]["threshold_percent"] == 20
    assert "[redacted]" in ok(results[16]) and token not in ok(results[16])

    # Usage comes from the table's stream: once the processor had it, the client reads it.
    api = Api(gateway)
    stream_tap.caught_up(
        lambda: api.call("GET", "/v1/usage", token=token).body,
        lambda usage: usage["credits"] == 87,
    )
    run = run_php(
        php, proxy.url, [op("usage"), op("deactivate"), op("balance"), op("consume", amount=1)], token=token
    )
    results = run["results"]
    usage = ok(results[0])
    assert {"site", "term_start", "term_end", "credits", "requests", "features", "days"} <= set(usage)
    assert usage["site"] == lic.site and usage["credits"] == 87 and usage["requests"] == 3
    assert usage["features"] == {"rewrite": 17, "translate": 70}
    assert sum(day["credits"] for day in usage["days"]) == 87

    assert ok(results[1]) is None and run["token"] is None  # deactivated: the store forgot the token
    assert [exchange.upstream_status for exchange in proxy.sent("DELETE", "/v1/activations/current")] == [204]
    for refused in (error(results[2]), error(results[3])):
        assert (refused["class"], refused["status"], refused["code"]) == (
            "AiCredits\\Exception\\Unauthorized",
            401,
            "unauthorized",
        )
    assert api.balance(token).status == 401  # the service no longer knows the token either


def test_the_wordpress_transport_and_option_store(
    php: str, proxy: FaultyProxy, new_license: Callable[..., License]
) -> None:
    """Under WordPress (the shim's wp_remote_request, not cURL), the same calls work."""
    lic = new_license()
    run = run_php(
        php,
        proxy.url,
        [
            _activate(lic),
            op("balance"),
            op("balance"),
            op("consume", amount=3, feature="rewrite"),
            op("deactivate"),
            op("balance"),
        ],
        wordpress=True,
    )
    results = run["results"]
    assert ok(results[0])["credits"]["remaining"] == 100
    assert ok(results[2]) == ok(results[1])
    assert [exchange.upstream_status for exchange in proxy.sent("GET", "/v1/balance")] == [200, 304]
    assert ok(results[3])["remaining"] == 97
    assert [exchange.upstream_status for exchange in proxy.sent("DELETE", "/v1/activations/current")] == [204]
    # deactivated: the option is gone, so the client refuses without asking the service
    assert error(results[5])["class"] == "AiCredits\\Exception\\Unauthorized" and run["token"] is None
    assert all(exchange.headers["user-agent"].startswith("ai-credits-php/") for exchange in proxy.exchanges)


# -- retries -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_a_consume_whose_answer_was_lost_is_repeated_and_charged_once(
    php: str, gateway: str, proxy: FaultyProxy, new_license: Callable[..., License], fault: str
) -> None:
    lic = new_license()
    proxy.faults[("POST", "/v1/consume")] = [fault]
    run = run_php(php, proxy.url, [_activate(lic), op("consume", amount=7, feature="rewrite"), op("balance")])
    results = run["results"]
    answer = ok(results[1])

    first, repeat = proxy.sent("POST", "/v1/consume")
    assert (
        first.answered == fault and first.upstream_status == 200 and first.upstream_body["replayed"] is False
    )
    assert repeat.answered == "relayed" and repeat.body == first.body  # the same request_id, the same body
    assert repeat.headers["authorization"] == first.headers["authorization"]
    assert answer["request_id"] == first.body["request_id"]
    assert answer["replayed"] is True and answer["remaining"] == first.upstream_body["remaining"] == 93
    if fault == "503":
        assert run["sleeps"] == [0.0]  # Retry-After: 0
    else:
        assert len(run["sleeps"]) == 1 and 0 < run["sleeps"][0] <= 0.2
    site = ok(results[2])["site"]
    assert (site["used"], site["remaining"]) == (7, 93)  # charged once
    assert Api(gateway).balance(run["token"]).body["site"]["used"] == 7


def test_a_write_still_unavailable_after_the_retries_names_its_request_id_to_repeat_it_with(
    php: str, proxy: FaultyProxy, new_license: Callable[..., License]
) -> None:
    lic = new_license()
    proxy.faults[("POST", "/v1/consume")] = ["503", "503"]
    run = run_php(php, proxy.url, [_activate(lic), op("consume", amount=4)], options={"max_attempts": 2})
    failed = error(run["results"][1])
    assert failed["class"] == "AiCredits\\Exception\\Unavailable" and failed["code"] == "unavailable"
    assert failed["retry_after"] == 0 and failed["request_id"]
    sent = proxy.sent("POST", "/v1/consume")
    assert len(sent) == 2 and {exchange.body["request_id"] for exchange in sent} == {failed["request_id"]}

    # Later (another page load): the plugin repeats it with that request_id; still charged once.
    run = run_php(
        php,
        proxy.url,
        [op("consume", amount=4, requestId=failed["request_id"]), op("balance")],
        token=run["token"],
    )
    again = ok(run["results"][0])
    assert again["replayed"] is True and again["remaining"] == 96
    assert ok(run["results"][1])["site"]["used"] == 4


def test_holds_captures_and_releases_whose_answers_were_lost_are_repeated_with_their_hold_id(
    php: str, proxy: FaultyProxy, new_license: Callable[..., License]
) -> None:
    lic = new_license()
    captured_id, released_id = f"h-{uuid.uuid4().hex[:8]}", f"h-{uuid.uuid4().hex[:8]}"
    proxy.faults[("POST", "/v1/holds")] = ["503", "relay", "drop"]
    proxy.faults[("POST", f"/v1/holds/{captured_id}/capture")] = ["drop"]
    proxy.faults[("DELETE", f"/v1/holds/{released_id}")] = ["503"]
    run = run_php(
        php,
        proxy.url,
        [
            _activate(lic),
            op("hold", holdId=captured_id, amount=30, feature="rewrite"),
            op("hold", holdId=released_id, amount=10),
            op("capture", holdId=captured_id, amount=25),
            op("release", holdId=released_id),
            op("balance"),
        ],
    )
    results = run["results"]
    assert ok(results[1])["replayed"] is True and ok(results[1])["remaining"] == 70
    assert ok(results[2])["replayed"] is True and ok(results[2])["remaining"] == 60
    capture = ok(results[3])
    assert (capture["captured"], capture["released"], capture["replayed"]) == (25, 5, True)
    assert ok(results[4])["released"] == 10
    holds = proxy.sent("POST", "/v1/holds")
    assert [exchange.body["hold_id"] for exchange in holds] == [
        captured_id,
        captured_id,
        released_id,
        released_id,
    ]
    assert [exchange.upstream_status for exchange in holds] == [201, 200, 201, 200]
    site = ok(results[5])["site"]
    assert (site["used"], site["held"], site["remaining"]) == (25, 0, 75)


def test_a_deactivation_whose_answer_was_lost_is_done(
    php: str, gateway: str, proxy: FaultyProxy, new_license: Callable[..., License]
) -> None:
    """The repeat of a deactivation that was applied no longer knows the token (401): done."""
    lic = new_license()
    proxy.faults[("DELETE", "/v1/activations/current")] = ["drop"]
    run = run_php(php, proxy.url, [_activate(lic), op("deactivate")])
    assert ok(run["results"][1]) is None and run["token"] is None
    sent = proxy.sent("DELETE", "/v1/activations/current")
    assert [(exchange.answered, exchange.upstream_status) for exchange in sent] == [
        ("drop", 204),
        ("relayed", 401),
    ]


def test_the_refresh_icon_on_another_page_load_sends_the_etag_of_the_cached_balance(
    php: str, proxy: FaultyProxy, new_license: Callable[..., License], tmp_path: Path
) -> None:
    """With a BalanceCache that outlives the process (a transient in WordPress; a file here), the
    next page load's balance() is a 304 answered from the cache."""
    lic, cache = new_license(), str(tmp_path / "balance.json")
    first = run_php(php, proxy.url, [_activate(lic), op("balance")], balance_cache_file=cache)
    second = run_php(
        php, proxy.url, [op("balance"), op("etag")], balance_cache_file=cache, token=first["token"]
    )
    assert ok(second["results"][0]) == ok(first["results"][1])
    third = run_php(
        php,
        proxy.url,
        [op("consume", amount=2), op("balance")],
        balance_cache_file=cache,
        token=first["token"],
    )
    assert ok(third["results"][1])["site"]["remaining"] == 98
    balances = proxy.sent("GET", "/v1/balance")
    assert [exchange.upstream_status for exchange in balances] == [200, 304, 200]
    assert (
        balances[1].headers["if-none-match"]
        == balances[2].headers["if-none-match"]
        == ok(second["results"][1])
    )
    # a page load's first consume sends the cached balance's remaining as its hint
    assert proxy.sent("POST", "/v1/consume")[0].body["expected_remaining"] == 100
