"""Timestamps sent in (API spec: "Words"): RFC 3339 date-times only, stored as UTC ``Z``.

Every case is a row: the id reads "given <input> then <outcome>".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ai_credits.clock import format_timestamp, parse_timestamp


def cases(*rows: tuple[Any, ...]) -> list[Any]:
    """Rows of (id, *values) -> pytest params with readable ids."""
    return [pytest.param(*values, id=row_id) for row_id, *values in rows]


ACCEPTED = cases(
    ("given Z then unchanged", "2026-11-25T09:00:00Z", "2026-11-25T09:00:00Z"),
    ("given positive offset then UTC", "2026-11-25T10:00:00+01:00", "2026-11-25T09:00:00Z"),
    ("given negative offset then UTC", "2026-11-25T04:30:00-04:30", "2026-11-25T09:00:00Z"),
    ("given +00:00 then UTC", "2026-11-25T09:00:00+00:00", "2026-11-25T09:00:00Z"),
    ("given -00:00 (unknown local offset) then UTC", "2026-11-25T09:00:00-00:00", "2026-11-25T09:00:00Z"),
    ("given offset crossing midnight then next day", "2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00Z"),
    ("given largest offset then accepted", "2026-11-25T09:00:00+23:59", "2026-11-24T09:01:00Z"),
    ("given fraction then dropped", "2026-11-25T09:00:00.999Z", "2026-11-25T09:00:00Z"),
    ("given one fraction digit then dropped", "2026-11-25T09:00:00.5Z", "2026-11-25T09:00:00Z"),
    ("given nanosecond fraction then dropped", "2026-11-25T09:00:00.123456789+00:00", "2026-11-25T09:00:00Z"),
    ("given lowercase t and z then accepted (RFC 3339 5.6)", "2026-11-25t09:00:00z", "2026-11-25T09:00:00Z"),
    ("given leap day then accepted", "2028-02-29T12:00:00Z", "2028-02-29T12:00:00Z"),
    ("given year 0001 then four digits kept", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ("given year below 1000 then zero padded", "0999-06-01T00:00:00Z", "0999-06-01T00:00:00Z"),
    ("given year 9999 then accepted", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
)


@pytest.mark.parametrize(("text", "normalized"), ACCEPTED)
def test_given_rfc3339_date_time_when_parsed_then_utc_seconds(text: str, normalized: str) -> None:
    moment = parse_timestamp(text)
    assert moment.tzinfo is UTC
    assert moment.microsecond == 0
    assert format_timestamp(moment) == normalized


REFUSED = cases(
    # ISO 8601 forms that are not RFC 3339 (datetime.fromisoformat takes most of them).
    ("given ISO week date then refused", "2026-W01-1T00:00:00Z"),
    ("given ISO week date without day then refused", "2026-W01T00:00:00Z"),
    ("given ordinal date then refused", "2026-329T09:00:00Z"),
    ("given basic format then refused", "20261125T090000Z"),
    ("given date alone then refused", "2026-11-25"),
    ("given date with Z then refused", "2026-11-25Z"),
    ("given no zone then refused", "2026-11-25T09:00:00"),
    ("given offset without colon then refused", "2026-11-25T09:00:00+0100"),
    ("given hour-only offset then refused", "2026-11-25T09:00:00+01"),
    ("given offset with seconds then refused", "2026-11-25T09:00:00+01:00:00"),
    ("given UTC name then refused", "2026-11-25T09:00:00 UTC"),
    ("given no seconds then refused", "2026-11-25T09:00Z"),
    ("given hour only then refused", "2026-11-25T09Z"),
    ("given empty fraction then refused", "2026-11-25T09:00:00.Z"),
    ("given comma fraction then refused", "2026-11-25T09:00:00,5Z"),
    ("given space instead of T then refused", "2026-11-25 09:00:00Z"),
    ("given no separator then refused", "2026-11-2509:00:00Z"),
    # Years.
    ("given 3-digit year then refused", "999-01-01T00:00:00Z"),
    ("given 5-digit year then refused", "20260-11-25T09:00:00Z"),
    ("given signed year then refused", "+2026-11-25T09:00:00Z"),
    ("given year 0000 then refused", "0000-01-01T00:00:00Z"),
    # Field widths and ranges.
    ("given 1-digit month then refused", "2026-1-25T09:00:00Z"),
    ("given 1-digit hour then refused", "2026-11-25T9:00:00Z"),
    ("given month 13 then refused", "2026-13-01T00:00:00Z"),
    ("given February 30 then refused", "2026-02-30T00:00:00Z"),
    ("given February 29 of a common year then refused", "2026-02-29T00:00:00Z"),
    ("given hour 24 then refused", "2026-11-25T24:00:00Z"),
    ("given minute 60 then refused", "2026-11-25T09:60:00Z"),
    ("given leap second then refused (datetime cannot hold it)", "2026-12-31T23:59:60Z"),
    ("given offset hour 24 then refused", "2026-11-25T09:00:00+24:00"),
    ("given offset minute 60 then refused", "2026-11-25T09:00:00+01:60"),
    ("given UTC after year 9999 then refused", "9999-12-31T23:00:00-05:00"),
    ("given UTC before year 0001 then refused", "0001-01-01T00:00:00+01:00"),
    # Not a timestamp at all, or with something around it.
    ("given empty then refused", ""),
    ("given trailing newline then refused", "2026-11-25T09:00:00Z\n"),
    ("given surrounding spaces then refused", " 2026-11-25T09:00:00Z "),
    ("given non-ASCII digits then refused", "\uff12\uff10\uff12\uff16-11-25T09:00:00Z"),
    ("given Arabic-Indic digits then refused", "2026-11-25T09:00:0\u0660Z"),
    ("given epoch seconds then refused", "1795683600"),
)


@pytest.mark.parametrize("text", REFUSED)
def test_given_anything_but_rfc3339_date_time_when_parsed_then_value_error(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_timestamp(text)
    assert str(caught.value)  # a human-readable reason for the 422 body


@pytest.mark.parametrize(
    "value",
    cases(("given None then value error", None), ("given int then value error", 1795683600)),
)
def test_given_non_string_when_parsed_then_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("moment", "text"),
    cases(
        ("given UTC then Z", datetime(2026, 11, 25, 9, tzinfo=UTC), "2026-11-25T09:00:00Z"),
        ("given year 999 then four digits", datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05Z"),
        ("given year 1 then four digits", datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
    ),
)
def test_when_formatted_then_fixed_width_so_strings_sort_as_times(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text
    assert len(format_timestamp(moment)) == len("2026-11-25T09:00:00Z")
