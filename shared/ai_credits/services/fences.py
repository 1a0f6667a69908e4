"""Holding writes off for a moment: consumes while a write needs settled counters, and the
writes that change a license's totals while a renewal moves its sites into the next term."""

from __future__ import annotations

from datetime import timedelta

from ai_credits.clock import format_timestamp, parse_timestamp
from ai_credits.domain import License
from ai_credits.errors import Unavailable

# Optimistic attempts before a write that needs settled counters holds consumes off a moment.
OPTIMISTIC_ATTEMPTS = 3
FENCE_SECONDS = 10


def fence_until(wall_now: str) -> str:
    return format_timestamp(parse_timestamp(wall_now) + timedelta(seconds=FENCE_SECONDS))


def refuse_while_renewing(license_: License) -> None:
    """503 while a renewal is moving the license's sites into the next term (seconds)."""
    if license_.renewal is not None:
        raise Unavailable("the license is being renewed; retry in a second", retry_after=1)
