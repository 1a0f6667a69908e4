"""Site URL normalization and live/staging/development classification.

The plugin reports ``site_url`` the way WordPress stores it, so the same site can
arrive as ``https://WWW.Example.com/blog/`` or ``example.com/blog``.  Credits are
attached to a *site key* (``host[:port][path]``), which must therefore be
canonical: one site, one key, whatever spelling the plugin sent.

The environment classification decides whether a site counts as ``live``.  It is
deliberately conservative: WordPress's own ``wp_get_environment_type()`` must say
``production`` *and* the host must not look like a staging copy or a local box.

Parsing is plain string work (no ``urllib.parse``): it is stricter than a general
URL parser, costs microseconds, and keeps import time negligible in Lambda.

Decisions beyond the API contract:

* Underscores are accepted inside host labels: some hosting panels and intranet
  DNS hand them out, and browsers resolve them.
* IPv6 addresses are rewritten in RFC 5952 form (``[2001:db8::1]``), with
  IPv4-mapped addresses always spelled ``[::ffff:1.2.3.4]`` so keys do not depend
  on the Python version.
* A host whose last label is numeric (``2130706433``, ``1.2.3``, ``0x7f.0.0.1``)
  must be a dotted-quad IPv4 address; anything else is rejected as malformed,
  as browsers would read it as an IP address too.
* Every leading ``www.`` is dropped (``www.www.example.com`` -> ``example.com``)
  so that normalizing a key again never changes it.
* Single-label hosts (``intranet``) cannot be public sites, so they count as local.
* The ``/staging/<digits>`` rule matches the first two path segments, so
  ``/staging/123/blog`` is a staging copy too. The word matches in any ASCII case
  (``/STAGING/123``), but the key keeps the path's case like every other path: on the
  Linux hosts that serve these copies ``/Staging/123`` and ``/staging/123`` are different
  directories, and a staging key never counts against ``site_limit`` anyway.
* Dot segments (``.`` and ``..``) are resolved as RFC 3986 section 5.2.4
  (``remove_dot_segments``) says, never above the root, before the trailing slash goes:
  ``/blog/../shop/.`` is ``/shop``. Percent-encoded dots (``%2E``, ``.%2e``) are left as
  given, like all percent-encoding (the key never decodes): RFC 3986 and the WHATWG URL
  standard disagree on them, and keeping them only ever gives a *different* key (one
  more site), never another site's key or a staging match that is not in the path.
* The key is at most 255 UTF-8 bytes (a path may keep non-ASCII characters, which take
  2-4 bytes each); the limit is checked on the key, after normalization.
* Internationalized hosts are processed as browsers and WordPress do (the WHATWG URL
  standard's domain-to-ASCII: UTS #46 non-transitional, without STD3 rules, with the bidi
  check): ``faß.de`` is ``xn--fa-hia.de``, a domain of its own, not ``fass.de``
  as IDNA 2003 (Python's ``idna`` codec) would map it. The ``idna`` package's UTS #46 table
  is imported only for a non-ASCII host, so ASCII hosts (almost all) cost nothing more.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "Environment",
    "InvalidSiteUrl",
    "SiteAddress",
    "WpEnvironment",
    "classify_environment",
    "normalize_site_url",
    "parse_site_url",
]

Environment = Literal["live", "staging", "development"]
WpEnvironment = Literal["production", "staging", "development", "local"]


class InvalidSiteUrl(ValueError):
    """The site URL cannot be turned into a site key (the API answers 422)."""


@dataclass(frozen=True, slots=True)
class SiteAddress:
    """A normalized site address; ``key`` is what credits are attached to."""

    host: str
    port: int | None
    path: str

    @property
    def key(self) -> str:
        """``host[:port][path]``, e.g. ``example.com/blog`` or ``[::1]:8080``."""
        if self.port is None:
            return f"{self.host}{self.path}"
        return f"{self.host}:{self.port}{self.path}"


# --- Parsing limits and tables ---------------------------------------------

MAX_INPUT_LENGTH: Final = 2048
MAX_KEY_BYTES: Final = 255
_MAX_HOST_LENGTH: Final = 253
_MAX_LABEL_LENGTH: Final = 63
_MAX_PORT_DIGITS: Final = 5

# Ports a browser leaves out of the URL; without a scheme both are implied.
_DEFAULT_PORTS: Final[dict[str | None, frozenset[int]]] = {
    "http": frozenset({80}),
    "https": frozenset({443}),
    None: frozenset({80, 443}),
}

# "name:" at the start; whether it is a scheme or "host:port" is decided after.
_SCHEME_PREFIX: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")

_ASCII_DIGITS: Final = frozenset("0123456789")
_HEX_DIGITS: Final = frozenset("0123456789abcdef")
# LDH (letters, digits, hyphen) plus underscore, which real hosts do use.
_LABEL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
# Characters RFC 3986 never allows in a path, even percent-encoded input keeps out.
_FORBIDDEN_PATH_CHARS: Final = frozenset('"<>\\^`{|}')
# IDNA treats these as label separators, exactly like ".".
_IDNA_DOTS: Final = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_WWW_PREFIX: Final = "www."
# A key that parsing returns unchanged: lowercase ASCII labels (1-63 characters, no edge
# hyphen), no scheme, port or path, no leading "www.", a last label that is not numeric (the
# IPv4 rules). Keys come back like this (an Apply names up to 98), and matching is ten times
# cheaper than parsing; anything else is parsed.
_CANONICAL_HOST: Final = re.compile(
    r"(?!www\.)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
    r"(?![0-9]+\Z|0x[0-9a-f]*\Z)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
)

# --- Classification tables --------------------------------------------------

_WP_ENVIRONMENTS: Final = frozenset({"production", "staging", "development", "local"})
# WordPress environment types that always mean a developer's machine.
_WP_DEVELOPMENT_TYPES: Final = frozenset({"development", "local"})

# Reserved top-level names (RFC 2606 / RFC 6761) that never resolve publicly.
_LOCAL_TLDS: Final = frozenset({"local", "localhost", "test", "example", "invalid"})
# Local dev environments and tunnels into a developer's machine (ddev, Lando, ngrok).
_LOCAL_TOOL_DOMAINS: Final = frozenset({"ddev.site", "lndo.site", "ngrok.io", "ngrok-free.app"})
# A ".staging" TLD is an internal convention, never a public site.
_STAGING_TLDS: Final = frozenset({"staging"})
# Conventional first labels of staging/dev copies (dev.example.com).
_STAGING_FIRST_LABELS: Final = frozenset({"dev", "local", "test", "stage", "staging"})
# Prefixes hosts put on staging copies; also covers Kinsta's staging-/stg-/env-
# subdomains, which is why plain *.kinsta.cloud / *.kinsta.com stay live.
_STAGING_FIRST_LABEL_PREFIXES: Final = ("staging-", "stg-", "env-", "dev-")
# Inner labels marking a staging zone (shop.staging.example.com).
_STAGING_INNER_LABELS: Final = frozenset({"staging", "test"})
# Managed hosts' temporary, staging and sandbox domains: any subdomain is non-live.
_HOSTING_STAGING_DOMAINS: Final = frozenset(
    {
        "wpengine.com",
        "wpenginepowered.com",
        "cloudwaysapps.com",
        "myftpupload.com",
        "flywheelsites.com",
        "flywheelstaging.com",
        "instawp.xyz",
        "instawp.co",
        "instawp.link",
        "wpcomstaging.com",
        "mystagingwebsite.com",
        "tempurl.host",
        "wpsandbox.pro",
    }
)
# Pantheon serves dev-<site> and test-<site> environments; live-<site> is live.
_PANTHEON_DOMAIN: Final = "pantheonsite.io"
_PANTHEON_NON_LIVE_PREFIXES: Final = ("dev-", "test-")
# Bluehost/HostGator staging copies live under /staging/<number> of the live host.
# ASCII-only case folding: under re.IGNORECASE alone U+017F (long s) would match "s".
_NUMBERED_STAGING_PATH: Final = re.compile(r"/staging/[0-9]{3,}(?:/|\Z)", re.IGNORECASE | re.ASCII)


# --- Public API ---------------------------------------------------------------


def normalize_site_url(raw: str) -> str:
    """Return the canonical site key for ``raw``; raise InvalidSiteUrl if unusable."""
    if type(raw) is str and len(raw) <= _MAX_HOST_LENGTH and _CANONICAL_HOST.fullmatch(raw):
        return raw  # already a key: parsing would return it unchanged
    return parse_site_url(raw).key


def parse_site_url(raw: str) -> SiteAddress:
    """Parse a site URL (with or without ``http(s)://``) into a normalized address."""
    text = _clean_input(raw)
    scheme, rest = _split_scheme(text)
    authority, path = _split_authority_and_path(rest)
    host, port_text = _split_host_and_port(authority)
    address = SiteAddress(
        host=host,
        port=_parse_port(port_text, scheme),
        path=_normalize_path(path),
    )
    if len(address.key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidSiteUrl(f"the normalized site is longer than {MAX_KEY_BYTES} bytes (UTF-8)")
    return address


def classify_environment(site_key: str, wp_environment: WpEnvironment) -> Environment:
    """Tell whether a site is live, a staging copy, or a development install.

    ``live`` needs both WordPress saying ``production`` and a host that does not
    look like staging or local; any doubt means non-live.
    """
    if wp_environment not in _WP_ENVIRONMENTS:
        raise ValueError(f"unknown WordPress environment type: {wp_environment!r}")
    address = parse_site_url(site_key)
    is_local = _looks_local(address.host)
    if wp_environment == "production" and not is_local and not _looks_staging(address):
        return "live"
    if is_local or wp_environment in _WP_DEVELOPMENT_TYPES:
        return "development"
    return "staging"


# --- Parsing steps ------------------------------------------------------------


def _clean_input(raw: object) -> str:
    """Type/length checks and outer whitespace; inner whitespace is an error."""
    if not isinstance(raw, str):
        raise InvalidSiteUrl(f"site_url must be a string, not {type(raw).__name__}")
    if len(raw) > MAX_INPUT_LENGTH:
        raise InvalidSiteUrl(f"site_url is longer than {MAX_INPUT_LENGTH} characters")
    text = raw.strip()
    if not text:
        raise InvalidSiteUrl("site_url is empty")
    # isprintable() is False for every whitespace/control/format char but " ".
    if " " in text or not text.isprintable():
        raise InvalidSiteUrl("site_url contains whitespace or control characters")
    return text


def _split_scheme(text: str) -> tuple[str | None, str]:
    """Split off ``http://``/``https://``; reject every other scheme.

    ``example.com:8080`` also starts with "name:", so a candidate counts as a
    scheme only when followed by ``//``, or when it has no dot and is not
    followed by a port number (``javascript:``, ``mailto:``).
    """
    match = _SCHEME_PREFIX.match(text)
    if match is None:
        return None, text
    candidate = match.group(1)
    rest = text[match.end() :]
    if rest.startswith("//"):
        scheme = candidate.lower()
        if scheme not in _DEFAULT_PORTS:
            raise InvalidSiteUrl(f"unsupported scheme {_excerpt(candidate)!r}: use http or https")
        return scheme, rest[2:]
    if "." in candidate or (rest and rest[0] in _ASCII_DIGITS):
        return None, text  # host:port, checked later
    if candidate.lower() in _DEFAULT_PORTS:
        raise InvalidSiteUrl(f"malformed URL: expected '//' after '{candidate}:'")
    raise InvalidSiteUrl(f"unsupported scheme {_excerpt(candidate)!r}: use http or https")


def _split_authority_and_path(rest: str) -> tuple[str, str]:
    """Return the ``host[:port]`` part and the path; query and fragment go away."""
    authority_end = _first_index(rest, "/?#")
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        raise InvalidSiteUrl("site_url must not contain user info (user@host)")
    if not tail.startswith("/"):
        return authority, ""
    return authority, tail[: _first_index(tail, "?#")]


def _first_index(text: str, separators: str) -> int:
    """Index of the first of ``separators`` in ``text``, or ``len(text)``."""
    end = len(text)
    for separator in separators:
        index = text.find(separator, 0, end)
        if index != -1:
            end = index
    return end


def _split_host_and_port(authority: str) -> tuple[str, str | None]:
    """Return the normalized host and the raw port text (None when absent)."""
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise InvalidSiteUrl("malformed IPv6 host: missing ']'")
        after = authority[close + 1 :]
        if after and not after.startswith(":"):
            raise InvalidSiteUrl("malformed host: unexpected text after ']'")
        host = f"[{_normalize_ipv6(authority[1:close])}]"
        return host, (after[1:] if after else None)
    if authority.count(":") > 1:
        raise InvalidSiteUrl("malformed host: IPv6 addresses must be in [brackets]")
    host_text, colon, port_text = authority.partition(":")
    return _normalize_hostname(host_text), (port_text if colon else None)


def _parse_port(port_text: str | None, scheme: str | None) -> int | None:
    """Return the port, or None when absent or the scheme's default."""
    if port_text is None:
        return None
    if not port_text or len(port_text) > _MAX_PORT_DIGITS or not _ASCII_DIGITS.issuperset(port_text):
        raise InvalidSiteUrl(f"invalid port {_excerpt(port_text)!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidSiteUrl(f"port {port} is outside 1-65535")
    return None if port in _DEFAULT_PORTS[scheme] else port


def _normalize_path(path: str) -> str:
    """Keep the path as given (case, percent-encoding), dot segments resolved, minus
    trailing slashes."""
    if not _FORBIDDEN_PATH_CHARS.isdisjoint(path):
        raise InvalidSiteUrl("site_url path contains characters not allowed in URLs")
    if "/." in path:
        path = _remove_dot_segments(path)
    return path.rstrip("/")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path (``path`` starts with ``/``).

    ``..`` removes the segment before it (an empty one too: ``/a//..`` is ``/a/``) and
    never climbs above the root; a final ``.`` or ``..`` leaves a trailing slash.
    """
    segments = path.split("/")[1:]
    output: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "." or segment == "..":
            if segment == ".." and output:
                output.pop()
            if index == len(segments) - 1:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


# --- Hosts ----------------------------------------------------------------------


def _normalize_hostname(text: str) -> str:
    """Lowercase, punycode, drop the trailing dot and leading ``www.``."""
    host = text.translate(_IDNA_DOTS)
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InvalidSiteUrl("site_url has an empty host")
    if not host.isascii():
        host = _uts46_map(host)
    labels = [_encode_label(label) for label in host.split(".")]
    host = ".".join(labels)
    if len(host) > _MAX_HOST_LENGTH:
        raise InvalidSiteUrl(f"host is longer than {_MAX_HOST_LENGTH} characters")
    if _is_numeric_label(labels[-1]):
        return _normalize_ipv4(host)
    while host.startswith(_WWW_PREFIX):
        host = host[len(_WWW_PREFIX) :]
    return host


def _uts46_map(host: str) -> str:
    """UTS #46 mapping, non-transitional and without STD3 rules, as the WHATWG URL standard
    does it: case folded, compatibility forms mapped, NFC; disallowed code points refused.
    It may turn a character into a dot (U+2488 is ``1.``), so it is applied to the whole host."""
    from idna import IDNAError, uts46_remap

    try:
        return uts46_remap(host, std3_rules=False, transitional=False).translate(_IDNA_DOTS)
    except IDNAError as error:
        raise InvalidSiteUrl(f"host {_excerpt(host)!r} is not a valid internationalized name") from error


def _punycode(label: str) -> str:
    """An internationalized label (already mapped) as its ACE form ``xn--...``, after the checks
    the WHATWG URL standard makes: no ACE prefix on a Unicode label, and the bidi rule (RFC 5893).
    Its joiner check has nothing to check: format characters such as ZWJ and ZWNJ are refused
    with the control characters before (stricter than a browser, for an invisible character)."""
    from idna import IDNAError, check_bidi

    if label.startswith("xn--"):
        raise InvalidSiteUrl(f"host label {_excerpt(label)!r} has an ACE prefix but is not ASCII")
    try:
        check_bidi(label)
        return "xn--" + label.encode("punycode").decode("ascii")
    except (IDNAError, UnicodeError) as error:
        invalid = f"host label {_excerpt(label)!r} is not a valid internationalized name"
        raise InvalidSiteUrl(invalid) from error


def _encode_label(label: str) -> str:
    """One host label in lowercase ASCII (punycode for internationalized ones)."""
    if not label:
        raise InvalidSiteUrl("host has an empty label (e.g. 'a..b')")
    encoded = label.lower() if label.isascii() else _punycode(label)
    if not encoded or len(encoded) > _MAX_LABEL_LENGTH:
        raise InvalidSiteUrl(f"host labels must be 1-{_MAX_LABEL_LENGTH} characters")
    if label.startswith("-") or label.endswith("-") or encoded.startswith("-") or encoded.endswith("-"):
        raise InvalidSiteUrl("host labels must not start or end with '-'")
    if not _LABEL_CHARS.issuperset(encoded):
        raise InvalidSiteUrl(f"host {_excerpt(label)!r} contains invalid characters")
    return encoded


def _is_numeric_label(label: str) -> bool:
    """True for labels a browser would read as part of an IPv4 address."""
    if _ASCII_DIGITS.issuperset(label):
        return True
    return label.startswith("0x") and _HEX_DIGITS.issuperset(label[2:])


def _normalize_ipv4(host: str) -> str:
    """Accept only canonical dotted quads (no octal/hex/short forms)."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError as error:
        raise InvalidSiteUrl(f"invalid IPv4 address {_excerpt(host)!r}") from error


def _normalize_ipv6(text: str) -> str:
    """RFC 5952 text form; zone ids (``%eth0``) have no meaning for a site."""
    if "%" in text:
        raise InvalidSiteUrl("IPv6 zone identifiers are not allowed")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError as error:
        raise InvalidSiteUrl(f"invalid IPv6 address {_excerpt(text)!r}") from error
    if address.ipv4_mapped is not None:
        # Python 3.13 changed how these print; spell them out to stay stable.
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


def _excerpt(text: str, limit: int = 60) -> str:
    """Shorten user input quoted in error messages."""
    return text if len(text) <= limit else text[:limit] + "..."


# --- Classification -------------------------------------------------------------


def _is_ip_host(host: str) -> bool:
    """Normalized hosts are IPs iff bracketed (v6) or numerically ending (v4)."""
    return host.startswith("[") or _ASCII_DIGITS.issuperset(host.rpartition(".")[2])


def _looks_local(host: str) -> bool:
    """Hosts only reachable from a developer's machine or a tunnel to it."""
    if _is_ip_host(host):
        return True
    labels = host.split(".")
    return (
        len(labels) == 1  # localhost, intranet names: never a public site
        or labels[-1] in _LOCAL_TLDS
        or _is_strictly_under(labels, _LOCAL_TOOL_DOMAINS)
    )


def _looks_staging(address: SiteAddress) -> bool:
    """Hosts and paths that hosting companies and developers use for copies."""
    labels = address.host.split(".")
    first = labels[0]
    return (
        first in _STAGING_FIRST_LABELS
        or first.startswith(_STAGING_FIRST_LABEL_PREFIXES)
        or not _STAGING_INNER_LABELS.isdisjoint(labels[1:-1])
        or labels[-1] in _STAGING_TLDS
        or _is_strictly_under(labels, _HOSTING_STAGING_DOMAINS)
        or _is_pantheon_non_live(labels)
        or _NUMBERED_STAGING_PATH.match(address.path) is not None
    )


def _is_strictly_under(labels: list[str], domains: frozenset[str]) -> bool:
    """True when some proper suffix of ``labels`` (not the whole host) is listed."""
    return any(".".join(labels[start:]) in domains for start in range(1, len(labels)))


def _is_pantheon_non_live(labels: list[str]) -> bool:
    """``dev-x.pantheonsite.io`` / ``test-x.pantheonsite.io`` (direct children)."""
    return (
        len(labels) == 3
        and f"{labels[1]}.{labels[2]}" == _PANTHEON_DOMAIN
        and labels[0].startswith(_PANTHEON_NON_LIVE_PREFIXES)
    )
