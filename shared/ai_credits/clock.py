"""RFC 3339 timestamps, always UTC with second precision, so stored strings sort as times.

DynamoDB conditions compare ``expires_at > :now`` as strings: that is only correct when every
stored timestamp has exactly this shape (``2026-11-25T09:00:00Z``).

Timestamps sent in must be RFC 3339 section 5.6 ``date-time``s: a four-digit year, ``T``,
seconds, an optional fraction, and ``Z`` or a ``+hh:mm``/``-hh:mm`` offset (``t`` and ``z``
in lower case too, as the RFC allows; not the space its prose mentions). The RFC's grammar
allows a leap second (``:60``); a ``datetime`` cannot hold one, so it is refused like any
other impossible time. ``datetime.fromisoformat`` alone would take ISO 8601 forms RFC 3339
does not have (week dates, a date alone, ``+0100``, no zone), hence the regular expression.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_RFC3339_DATE_TIME: Final = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"[Tt](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))"
)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_timestamp(moment: datetime) -> str:
    """``TIMESTAMP_FORMAT`` in UTC; the year always has four digits (``strftime`` writes
    the year 999 as ``999`` on Linux, which would not sort as a time)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: timestamps are UTC")
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 ``date-time`` (module docstring) to an aware UTC datetime, to the
    second (a fraction is dropped); anything else is a ValueError."""
    match = _RFC3339_DATE_TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.fraction] with Z or ±HH:MM (2026-11-25T09:00:00Z)")
    fields = match.groupdict()
    offset = timedelta(0)
    if fields["sign"] is not None:
        hours, minutes = int(fields["offset_hour"]), int(fields["offset_minute"])
        if hours > 23 or minutes > 59:
            raise ValueError("the time zone offset is outside -23:59..+23:59")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if fields["sign"] == "-" else 1)
    try:
        moment = datetime(
            int(fields["year"]),
            int(fields["month"]),
            int(fields["day"]),
            int(fields["hour"]),
            int(fields["minute"]),
            int(fields["second"]),
            tzinfo=timezone(offset),
        )
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is in the year 10000 in UTC
        raise ValueError("the time is outside the years 0001-9999 in UTC") from None


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later; the day is clamped to the target month (Jan 31 + 1 = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
