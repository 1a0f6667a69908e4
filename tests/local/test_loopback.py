"""local.loopback: which ``Host`` headers name the loopback, which addresses the server may bind."""

from __future__ import annotations

import pytest

from local.loopback import is_loopback_address, is_loopback_host


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:3000",
        "LocalHost:3000",
        "127.0.0.1",
        "127.0.0.1:3000",
        "127.1.2.3:80",
        "127.255.255.254",
        "[::1]",
        "[::1]:3000",
        "[0:0:0:0:0:0:0:1]:3000",
        "localhost:",  # an empty port is allowed by RFC 3986
        " localhost:3000 ",
    ],
)
def test_loopback_names_are_accepted(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "   ",
        "evil.example",
        "evil.example:3000",
        "EVIL.example",
        # names that resolve to 127.0.0.1 through DNS: exactly what DNS rebinding uses
        "127.0.0.1.nip.io",
        "localhost.evil.example",
        "evil-localhost",
        "a.localhost",
        "localhost.",
        # not loopback, or not a canonical IP literal (browsers canonicalise before sending)
        "128.0.0.1",
        "0.0.0.0",
        "10.0.0.5:3000",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "127.000.000.001",
        "[::2]",
        "[::]",
        "[127.0.0.1]",
        "::1",  # a bare IPv6 address is not a valid Host
        "[::1",
        "localhost:3000:3000",
        "localhost:port",
        "localhost:123456",
        "localhost/evil",
        "user@localhost",
    ],
)
def test_anything_else_is_refused(host: str | None) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("", False),
        ("localhost", False),  # a name, not an address
        ("192.168.1.10", False),
        ("::", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback
