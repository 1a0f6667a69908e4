"""Loopback checks of the local server: where it may listen, which ``Host`` its local-only routes take.

The server listens on 127.0.0.1 only, so only this machine reaches it. A web page elsewhere can
still reach it through the browser by DNS rebinding (its own name re-resolved to 127.0.0.1); such a
request carries that page's name as ``Host``. The local-only routes (``/local/...``, the Lambda
Invoke API, the console and the docs) therefore answer only requests whose ``Host`` is a loopback
name (:func:`is_loopback_host`).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["is_loopback_address", "is_loopback_host"]

# uri-host [ ":" port ] (RFC 9110 7.2): an IP literal in brackets, or a name / IPv4 address.
_HOST = re.compile(r"^(?:\[(?P<ip_literal>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]+))(?::[0-9]{0,5})?$")


def is_loopback_address(address: str) -> bool:
    """Whether ``address`` is an IP address of this machine's loopback interface (127.0.0.0/8, ::1).

    Names (``localhost``) are not addresses: what they resolve to is the resolver's business.
    """
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str | None) -> bool:
    """Whether a request's ``Host`` header names this machine's loopback: ``localhost``, an address
    127.x.y.z (dotted decimal) or ``[::1]``, each with or without a port, in any case.

    Anything else is refused, including a missing or empty ``Host``, a name under ``localhost``,
    a bare IPv6 address (not a valid ``Host``) and non-canonical IPv4 forms (``127.1``,
    ``0x7f.0.0.1``), which browsers never send: they canonicalise IP literals first.
    """
    found = _HOST.match((host or "").strip().lower())
    if found is None:
        return False
    if found["ip_literal"] is not None:
        return ":" in found["ip_literal"] and is_loopback_address(found["ip_literal"])
    name = found["name"]
    return name == "localhost" or ("." in name and is_loopback_address(name))
