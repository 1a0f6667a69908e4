"""Configuration, read once per container from the environment (STYLE.md habit 7)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache

#: The pepper of license-key hashes where no SSM parameter is configured (make run, tests only:
#: a deployed stack names its parameter, template.yaml's LicenseKeyPepperParameter).
LOCAL_LICENSE_KEY_PEPPER = "local-dev-pepper-not-for-production"


@dataclass(frozen=True, slots=True)
class Settings:
    table_name: str
    # The IAM role billing assumes to call the admin routes (ai_credits.access); empty refuses all.
    billing_role_arn: str = ""
    # The pepper license keys are hashed with (ai_credits.credentials): in AWS the name of its SSM
    # SecureString parameter (LICENSE_KEY_PEPPER_PARAMETER, from template.yaml); without one (make
    # run, tests) the pepper itself, LICENSE_KEY_PEPPER, else LOCAL_LICENSE_KEY_PEPPER.
    license_key_pepper_parameter: str = ""
    license_key_pepper: str = field(default=LOCAL_LICENSE_KEY_PEPPER, repr=False)
    # The EventBridge bus the stream processor puts events on (EVENT_BUS_NAME; template.yaml's
    # CreditsEventBus). Empty: events are derived and logged, not put anywhere.
    event_bus_name: str = ""
    # Bounded retries of a transaction that DynamoDB cancelled for a conflict (full jitter).
    conflict_retries: int = 3
    retry_base_seconds: float = 0.02


@cache
def settings() -> Settings:
    """The settings of this container. ``TABLE_NAME`` is required: a missing table is a deploy bug."""
    table_name = os.environ.get("TABLE_NAME", "")
    if not table_name:
        raise RuntimeError("TABLE_NAME is not set")
    return Settings(
        table_name=table_name,
        billing_role_arn=os.environ.get("BILLING_ROLE_ARN", "").strip(),
        license_key_pepper_parameter=os.environ.get("LICENSE_KEY_PEPPER_PARAMETER", "").strip(),
        license_key_pepper=os.environ.get("LICENSE_KEY_PEPPER") or LOCAL_LICENSE_KEY_PEPPER,
        event_bus_name=os.environ.get("EVENT_BUS_NAME", "").strip(),
    )
