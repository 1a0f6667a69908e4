"""The one retry loop of the use cases: decide on a read, write under conditions, and when a
concurrent write got there first (the write's conditions noticed), decide again on fresh values."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ai_credits import store
from ai_credits.errors import Unavailable

T = TypeVar("T")

# A decision made on a read is retried on fresh values this many times when a concurrent
# write got there first.
STALE_RETRIES = 8


class Stale(Exception):
    """Raised by an attempt whose read went stale for a reason the store does not name."""


RETRIED: tuple[type[Exception], ...] = (store.StaleLicense, store.ConditionFailed, Stale)


def retry_on_stale(
    attempt: Callable[[int], T],
    busy: str,
    attempts: int = STALE_RETRIES,
    retried: tuple[type[Exception], ...] = RETRIED,
) -> T:
    """Call ``attempt(n)`` for n = 0, 1, ... until it returns; each ``retried`` exception it
    raises means "the read went stale": back off (full jitter) and try again. After
    ``attempts`` tries: ``Unavailable(busy)`` (a 503 with Retry-After)."""
    for number in range(attempts):
        try:
            return attempt(number)
        except retried:
            store.back_off(number)
    raise Unavailable(busy)
