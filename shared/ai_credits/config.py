"""Configuration, read once per container from the environment (STYLE.md habit 7)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True, slots=True)
class Settings:
    table_name: str
    # Bounded retries of a transaction that DynamoDB cancelled for a conflict (full jitter).
    conflict_retries: int = 3
    retry_base_seconds: float = 0.02


@cache
def settings() -> Settings:
    """The settings of this container. ``TABLE_NAME`` is required: a missing table is a deploy bug."""
    table_name = os.environ.get("TABLE_NAME", "")
    if not table_name:
        raise RuntimeError("TABLE_NAME is not set")
    return Settings(table_name=table_name)
