"""RFC 3339 timestamps, always UTC with second precision, so stored strings sort as times.

DynamoDB conditions compare ``expires_at > :now`` as strings: that is only correct when every
stored timestamp has exactly this shape (``2026-11-25T09:00:00Z``).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: timestamps are UTC")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset or ``Z``; naive times are refused."""
    moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a timestamp needs a time zone (use Z for UTC)")
    return moment.astimezone(UTC).replace(microsecond=0)


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later; the day is clamped to the target month (Jan 31 + 1 = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
