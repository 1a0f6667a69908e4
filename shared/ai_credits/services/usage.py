"""Where the credits went: the usage views and the statement (API.md, the usage and ledger
routes), read from what the stream processor derived (``ai_credits.derived``).

Usage is kept per site, UTC day and term. A range counts the days it overlaps, of the terms it
overlaps; by default (``from`` = the term's start) exactly the current term. The operator's CLI
calls the same functions with ``account_id=None`` (no ownership check).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from ai_credits import derived, store
from ai_credits.clock import format_timestamp, parse_timestamp
from ai_credits.credentials import open_cursor, seal_cursor
from ai_credits.domain import License
from ai_credits.errors import NotFound, field_error
from ai_credits.models import (
    LedgerEntry,
    LedgerPage,
    LicenseUsage,
    SiteUsage,
    UsageBucket,
    UsageDay,
    UsageSiteRow,
)
from ai_credits.services.inputs import authenticate, bad_token
from ai_credits.services.views import renewed_license

MAX_RANGE = timedelta(days=400)
GRANULARITIES = ("day", "month")
MAX_PAGE = 500
CSV_COLUMNS = ("at", "type", "credits", "term_start", "site", "subsite", "request_id", "grant_id", "feature")


def _named(rollup: Mapping[str, Any], prefix: str) -> dict[str, int]:
    return {name.removeprefix(prefix): value for name, value in rollup.items() if name.startswith(prefix)}


def _add(totals: dict[str, int], more: Mapping[str, int]) -> None:
    for name, value in more.items():
        totals[name] = totals.get(name, 0) + value


def _nonzero(totals: Mapping[str, int]) -> dict[str, int]:
    return {name: value for name, value in sorted(totals.items()) if value}


# -- plugin: GET /v1/usage ------------------------------------------------------------------


def site_usage(authorization: str | None, now: str) -> SiteUsage:
    """This site's usage in the term it is in: one read of the license and site (as the
    balance does), one Query of its rollups."""
    del now  # the site's term is the one its item says
    token = authenticate(authorization)
    license_, site = store.get_license_and_site(token.license_id, token.site)
    if license_ is None or site is None or not site.active or not token.matches(site.token_hash):
        raise bad_token()
    if license_.renewal is not None and site.term_start == license_.renewal.term_start:
        license_ = renewed_license(license_)
    term_start = site.term_start or license_.term_start
    rollups = derived.site_rollups(license_.license_id, term_start, site.site)
    features: dict[str, int] = {}
    subsites: dict[str, int] = {}
    for rollup in rollups:
        _add(features, _named(rollup, "f:"))
        _add(subsites, _named(rollup, "s:"))
    return SiteUsage(
        site=site.site,
        term_start=term_start,
        term_end=license_.term_end,
        credits=sum(rollup["credits"] for rollup in rollups),
        requests=sum(rollup["requests"] for rollup in rollups),
        features=_nonzero(features),
        days=[
            UsageDay(date=rollup["day"], credits=rollup["credits"], requests=rollup["requests"])
            for rollup in sorted(rollups, key=lambda rollup: rollup["day"])
            if rollup["credits"] or rollup["requests"]
        ],
        subsites=_nonzero(subsites) if site.network else None,
    )


# -- portal: GET /v1/licenses/{id}/usage ----------------------------------------------------


def _license_of(account_id: str | None, license_id: str) -> License:
    license_ = store.get_license(license_id)
    if license_ is None or (account_id is not None and license_.account_id != account_id):
        raise NotFound(f"no license {license_id!r} in this account")
    return license_


def _moment(text: str, name: str) -> str:
    try:
        return format_timestamp(parse_timestamp(text))
    except ValueError as error:
        raise field_error(
            ("query", name), "datetime_from_date_parsing", f"not an RFC 3339 date-time: {error}"
        ) from None


def _range(license_: License, from_: str | None, to: str | None, now: str) -> tuple[str, str]:
    start = _moment(from_, "from") if from_ is not None else license_.term_start
    end = _moment(to, "to") if to is not None else now
    if start >= end:
        raise field_error(("query", "from"), "range", f"from ({start}) must be before to ({end})")
    if parse_timestamp(end) - parse_timestamp(start) > MAX_RANGE:
        raise field_error(("query", "to"), "range", "a range of more than 400 days")
    return start, end


def license_usage(
    account_id: str | None, license_id: str, from_: str | None, to: str | None, granularity: str, now: str
) -> LicenseUsage:
    """Where the license's credits went: the license (ownership, current term), then one Query
    of the rollups of the terms the range overlaps (two when ``from`` is given: the first finds
    the term it falls in)."""
    if granularity not in GRANULARITIES:
        raise field_error(("query", "granularity"), "literal_error", "granularity is day or month")
    license_ = renewed_license(_license_of(account_id, license_id))
    start, end = _range(license_, from_, to, now)
    first_term = license_.term_start
    if start < license_.term_start:
        first_term = derived.term_of(license_id, start) or ""
    last_day = format_timestamp(parse_timestamp(end) - timedelta(seconds=1))[:10]
    rollups = [
        rollup
        for rollup in derived.license_rollups(license_id, first_term, end)
        if start[:10] <= rollup["day"] <= last_day
    ]
    return LicenseUsage(
        license_id=license_id,
        from_=start,
        to=end,
        granularity=granularity,
        credits=sum(rollup["credits"] for rollup in rollups),
        requests=sum(rollup["requests"] for rollup in rollups),
        sites=_site_rows(rollups),
        buckets=_buckets(rollups, granularity),
    )


def _site_rows(rollups: Iterable[Mapping[str, Any]]) -> list[UsageSiteRow]:
    credits: dict[str, int] = defaultdict(int)
    requests: dict[str, int] = defaultdict(int)
    features: dict[str, dict[str, int]] = defaultdict(dict)
    for rollup in rollups:
        credits[rollup["site"]] += rollup["credits"]
        requests[rollup["site"]] += rollup["requests"]
        _add(features[rollup["site"]], _named(rollup, "f:"))
    return [
        UsageSiteRow(
            site=site, credits=credits[site], requests=requests[site], features=_nonzero(features[site])
        )
        for site in sorted(credits, key=lambda site: (-credits[site], site))
    ]


def _buckets(rollups: Iterable[Mapping[str, Any]], granularity: str) -> list[UsageBucket]:
    buckets: dict[str, UsageBucket] = {}
    for rollup in rollups:
        start = f"{rollup['day']}T00:00:00Z" if granularity == "day" else f"{rollup['day'][:7]}-01T00:00:00Z"
        bucket = buckets.setdefault(start, UsageBucket(start=start, credits=0, requests=0, sites={}))
        bucket.credits += rollup["credits"]
        bucket.requests += rollup["requests"]
        bucket.sites[rollup["site"]] = bucket.sites.get(rollup["site"], 0) + rollup["credits"]
    return [buckets[start] for start in sorted(buckets) if buckets[start].credits or buckets[start].requests]


# -- portal: GET /v1/licenses/{id}/ledger ---------------------------------------------------


def _entry(item: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        at=item["at"],
        type=item["entry_type"],
        credits=item["credits"],
        site=item.get("site"),
        subsite=item.get("subsite"),
        request_id=item.get("request_id"),
        grant_id=item.get("grant_id"),
        feature=item.get("feature"),
        term_start=item["term_start"],
    )


def ledger_page(account_id: str | None, license_id: str, limit: int, cursor: str | None) -> LedgerPage:
    """A page of the statement, newest first: a read of the license (ownership) and one Query."""
    if not 1 <= limit <= MAX_PAGE:
        raise field_error(("query", "limit"), "range", f"limit is 1 to {MAX_PAGE}")
    after = None
    if cursor is not None:
        payload = open_cursor(cursor)
        if payload is None or payload.get("license_id") != license_id or "after" not in payload:
            raise field_error(
                ("query", "cursor"), "cursor", "not a cursor this service issued for this license"
            )
        after = payload["after"]
    _license_of(account_id, license_id)
    items, last = derived.statement_page(license_id, limit, after)
    next_cursor = seal_cursor({"license_id": license_id, "after": last}) if last is not None else None
    return LedgerPage(entries=[_entry(item) for item in items], next_cursor=next_cursor)


def _cell(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula is quoted as text (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def ledger_csv(account_id: str | None, license_id: str) -> str:
    """Every entry of the license, newest first, as CSV (RFC 4180: a header, CRLF, quoting)."""
    _license_of(account_id, license_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in derived.statement(license_id):
        entry = _entry(item).model_dump()
        writer.writerow(
            [
                entry["credits"] if column == "credits" else _cell(entry[column] or "")
                for column in CSV_COLUMNS
            ]
        )
    return out.getvalue()
