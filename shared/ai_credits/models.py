"""Request and response bodies of the HTTP API (API.md, "Routes"), as pydantic models.

The handlers validate with them and Powertools builds the OpenAPI document from them.
Amounts are strict JSON integers: ``5``, never ``"5"``, ``5.0`` or ``true``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from ai_credits.clock import format_timestamp, parse_timestamp
from ai_credits.domain import Environment, Plan, Status

MAX_CONSUME = 1_000_000
MAX_CREDITS = 1_000_000_000
MAX_REMAINING_HINT = 10**15  # beyond any pool: a bound keeps the number a valid DynamoDB value

WpEnvironment = Literal["production", "staging", "development", "local"]
LicenseId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", examples=["lic_8f2k3"])]
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$", examples=["import-4711:item-9"])]
CreditAmount = Annotated[StrictInt, Field(ge=0, le=MAX_CREDITS)]
ConsumeAmount = Annotated[StrictInt, Field(ge=1, le=MAX_CONSUME, examples=[5])]
SiteUrl = Annotated[str, Field(min_length=1, max_length=2048, examples=["https://www.example.com/blog/"])]


def _normalize_timestamp(text: str) -> str:
    try:
        return format_timestamp(parse_timestamp(text))
    except ValueError as error:
        raise ValueError(f"not an RFC 3339 date-time: {error}") from None


Timestamp = Annotated[
    str,
    Field(max_length=40, examples=["2026-11-25T09:00:00Z"]),
    AfterValidator(_normalize_timestamp),
]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", defer_build=True)


class _Response(BaseModel):
    model_config = ConfigDict(defer_build=True)


class ValidationIssue(_Response):
    loc: list[str]
    type: str
    msg: str


class Problem(_Response):
    """RFC 9457 problem details; ``code`` is the contract's error code. The extra members exist
    only for the codes that carry them."""

    type: str = Field(examples=["https://ai-credits.dev/problems/insufficient_credits"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["insufficient_credits"])
    remaining: int | None = Field(default=None, description="insufficient_credits")
    available: int | None = Field(default=None, description="over_allocation")
    requested: int | None = Field(default=None, description="over_allocation")
    site: str | None = Field(default=None, description="below_used")
    used: int | None = Field(default=None, description="below_used")
    errors: list[ValidationIssue] | None = Field(default=None, description="validation_error")


# -- plugin -------------------------------------------------------------------------------


class ActivationRequest(BaseModel):
    # Plugins of other versions may send more fields: ignored, not refused.
    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    license_key: Annotated[str, Field(min_length=1, max_length=256, repr=False)]  # never in a log
    site_url: SiteUrl
    environment: WpEnvironment = Field(description="WordPress's wp_get_environment_type()")
    network: StrictBool = Field(default=False, description="network-activated on a Multisite")


class SiteCredits(_Response):
    allocated: int
    used: int
    held: int
    remaining: int


class ActivationResponse(_Response):
    activation_token: str = Field(description="Returned once; send it as 'Authorization: Bearer <token>'.")
    site: str
    environment: Environment
    network: bool
    license_id: str
    credits: SiteCredits


class ConsumeRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    amount: ConsumeAmount
    request_id: RequestId
    feature: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    subsite_url: SiteUrl | None = Field(default=None, description="the sub-site of a network activation")
    expected_remaining: Annotated[StrictInt, Field(ge=0, le=MAX_REMAINING_HINT)] | None = Field(
        default=None,
        description="Optional: the `remaining` of this site's previous consume answer. A current"
        " hint saves a request; a wrong or missing one changes no answer. Not part of the request"
        " for request_id's exactly-once (a retry may send another).",
        examples=[995],
    )


class HoldRequest(BaseModel):
    """``POST /v1/holds``: reserve credits before an AI call whose cost is known only afterwards."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    hold_id: RequestId
    amount: ConsumeAmount
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=3600)] = 300
    feature: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] | None = None
    subsite_url: SiteUrl | None = Field(default=None, description="the sub-site of a network activation")


class HoldResponse(_Response):
    hold_id: str
    amount: int
    expires_at: str
    remaining: int
    replayed: bool


class CaptureRequest(BaseModel):
    """``POST /v1/holds/{hold_id}/capture``: what the call really cost (0 up to the held amount)."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    amount: Annotated[StrictInt, Field(ge=0, le=MAX_CONSUME)]


class CaptureResponse(_Response):
    hold_id: str
    captured: int
    released: int
    remaining: int
    replayed: bool


class ReleaseResponse(_Response):
    hold_id: str
    released: int
    remaining: int


class HoldView(_Response):
    hold_id: str
    amount: int
    status: Literal["open", "captured", "released", "expired"]
    expires_at: str
    captured: int | None = None
    feature: str | None = None


class ConsumeResponse(_Response):
    request_id: str
    consumed: int
    remaining: int
    replayed: bool


class LicenseSummary(_Response):
    license_id: str
    plan: Plan
    status: Status
    term_start: str
    term_end: str
    credits_total: int
    allocated: int
    unallocated: int


class BalanceSite(_Response):
    site: str
    environment: Environment
    network: bool
    allocated: int
    used: int
    held: int
    remaining: int


Alert = Annotated[
    dict[str, Any],
    Field(
        description="code: credits_exhausted, credits_low (with threshold_percent), allocation_needed,"
        " license_expired, license_expiring (with expires_at)",
        examples=[{"code": "credits_low", "threshold_percent": 20}],
    ),
]


class BalanceResponse(_Response):
    license: LicenseSummary
    site: BalanceSite
    needs_allocation: bool
    alerts: list[Alert]  # what the plugin shows as admin notices, in this order


# -- portal and billing -------------------------------------------------------------------


class CreditsSite(_Response):
    site: str
    environment: Environment
    network: bool
    active: bool
    allocated: int
    used: int
    held: int
    remaining: int
    activated_at: str
    alerts: list[Alert]


class GrantRow(_Response):
    grant_id: str
    credits: int  # what it brought into this term (granted in it, or carried into it)
    remaining: int  # what is left of it by rule 10's spending order
    expires_at: str | None
    granted_at: str
    reason: str | None


class CreditsView(_Response):
    """The *Manage AI Credits* screen; also what provisioning answers."""

    license_id: str
    plan: Plan
    status: Status
    term_start: str
    term_end: str
    credits_total: int
    allocated: int
    unallocated: int
    needs_allocation: bool
    low_balance_percent: int
    carried_over: int
    alerts: list[Alert]  # the license-level ones; each site carries its own
    grants: list[GrantRow]
    sites: list[CreditsSite]


class UsageDay(_Response):
    date: str = Field(examples=["2026-12-04"])
    credits: int
    requests: int


class SiteUsage(_Response):
    """*Manage Plan*'s usage: this site in the current term (``subsites`` on a network only)."""

    site: str
    term_start: str
    term_end: str
    credits: int  # net of refunds
    requests: int  # charged consumes and captures
    features: dict[str, int]
    days: list[UsageDay]  # oldest first, only days with activity
    subsites: dict[str, int] | None = None


class UsageSiteRow(_Response):
    site: str
    credits: int
    requests: int
    features: dict[str, int]


class UsageBucket(_Response):
    start: str
    credits: int
    requests: int
    sites: dict[str, int]


class LicenseUsage(_Response):
    """Where a license's credits went between ``from`` and ``to`` (UTC days or months)."""

    model_config = ConfigDict(defer_build=True, populate_by_name=True)

    license_id: str
    from_: str = Field(alias="from")
    to: str
    granularity: Literal["day", "month"]
    credits: int
    requests: int
    sites: list[UsageSiteRow]  # by credits, most first
    buckets: list[UsageBucket]  # oldest first, only those with activity


class LedgerEntry(_Response):
    at: str
    type: Literal["term", "grant", "carry_over", "consume", "refund", "expiry"]
    credits: int  # negative for consumes and expiries
    site: str | None = None
    subsite: str | None = None
    request_id: str | None = None
    grant_id: str | None = None
    feature: str | None = None
    term_start: str


class LedgerPage(_Response):
    """A page of the statement, newest first; ``next_cursor`` is null on the last page."""

    entries: list[LedgerEntry]
    next_cursor: str | None


class LicenseListItem(_Response):
    license_id: str
    plan: Plan
    status: Status
    term_end: str
    credits_total: int
    unallocated: int


class LicenseList(_Response):
    licenses: list[LicenseListItem]


class AllocationRequest(_Request):
    """*Apply*: absolute allocations of the named sites (keys are site URLs, normalized)."""

    allocations: dict[str, CreditAmount] = Field(examples=[{"example.com": 700, "staging.example.com": 50}])


class DeactivationRequest(_Request):
    """The portal's removal of a site from the account."""

    site_url: SiteUrl


class GrantRequest(_Request):
    """A top-up or goodwill credit, applied exactly once per ``grant_id`` (rule 9)."""

    grant_id: RequestId
    credits: Annotated[StrictInt, Field(ge=1, le=MAX_CREDITS)]
    expires_at: Timestamp | None = None
    reason: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class RefundRequest(_Request):
    """Give back the credits of a charged consume or capture (rule 12); ``amount``: all it charged."""

    site_url: SiteUrl
    request_id: RequestId
    amount: ConsumeAmount | None = None
    reason: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    subsite_url: SiteUrl | None = None


class RefundResponse(_Response):
    request_id: str
    site: str
    refunded: int
    remaining: int
    replayed: bool


class ImportedActivation(_Request):
    site_url: SiteUrl
    environment: WpEnvironment
    network: StrictBool = False


class ProvisionRequest(_Request):
    license_key: Annotated[str, Field(min_length=8, max_length=256, repr=False)]  # never in a log
    account_id: Annotated[str, Field(min_length=1, max_length=128)]
    plan: Plan
    site_limit: Annotated[StrictInt, Field(ge=1, le=100_000)]
    credits_per_term: CreditAmount
    term_months: Annotated[StrictInt, Field(ge=1, le=120)] = 12
    term_start: Timestamp
    term_end: Timestamp
    expires_at: Timestamp
    activations: Annotated[list[ImportedActivation], Field(max_length=1000)] | None = None
    # Rule 13's threshold; the PUT replaces the license's settings: omitted means the default.
    low_balance_percent: Annotated[StrictInt, Field(ge=0, le=100)] = 20


class ProvisionResponse(CreditsView):
    account_id: str
    site_limit: int
    credits_per_term: int
    term_months: int
    expires_at: str
