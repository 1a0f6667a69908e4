"""Model-based test: a Hypothesis state machine drives the functions against a model of API.md.

Every step calls a real ``lambda_handler`` with an ``events/`` sample (on moto, one fresh table per
example) and the same step on ``Model``: a plain-dict reading of API.md written from the contract
alone (it imports nothing from ``ai_credits`` but the store and the audit used in the checks). The
model predicts every status code, error code and figure of every answer. After each step that
changed a license in the model, that license's *Manage AI Credits* view (``GET .../credits``
through the portal function) must equal the model's, and ``ai_credits.audit.reconcile`` must find
the table's counters, site index and ledger in agreement; when the example ends, every license's.
A step that changed nothing (its requests failed, or it only read) must have written nothing:
that shows at the next check of the license, so the table is not read again right after it.

Rules: provision (rule 7 imports), billing's updates (pay, refund, a new ``credits_per_term``)
with the renew function on a moving clock (one license, or the schedule), activate (ways of
writing a site, live/staging/development, networks, unknown keys), deactivate, Apply (active,
inactive and unknown sites, another account), four kinds of consume, replays of a ``request_id``,
grants (rule 9, carried over by rule 10 at renewal), refunds (rule 12), holds placed, captured and
released (rule 11; a deactivation or a renewal releases them), and the reads (balance with ETags,
the portal's list, another account's license).

Clocks. Activation, consume, balance and Apply read the real clock (``REAL_NOW``): expiry dates are
placed far from it (an hour before, ten days after, 2026-01-01, 2099, or a term end at least a day
away), so "expired" is exact whatever second a step runs. Renewal reads the event's ``time``: the
model clock ``self.clock`` only moves forward, always at ``:30`` seconds while term boundaries are
at ``:00``, so "has the term ended" never sits on a boundary. Term starts use days 1-28: API.md does
not say what "one calendar month after January 31" is, and no test here depends on it.

Where API.md leaves a choice open, the model accepts every answer a careful reading allows (and
says so where it does): the order of the checks of an Apply (403, 404, ``below_used``,
``over_allocation``, except that a 404 comes before the totals), of an activation (403 or 409), and
whether a repeated ``request_id`` on an expired license replays or answers 403. The choices the
model makes where it has to (one state, not two) are listed in ``Model``.

Profiles: ``default`` (200 examples of up to 30 steps, ``make test``) and ``soak`` (2000 of up to
50, ``make soak``), chosen by ``HYPOTHESIS_PROFILE``. They are registered as ``model-default`` and
``model-soak``: registering a profile named ``default`` would change every other Hypothesis test of
the session. moto is made faster for this folder in ``conftest.py`` (same answers).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import SearchStrategy
from hypothesis.strategies._internal.featureflags import FeatureFlags

import local.cfn
from ai_credits import store
from ai_credits.audit import reconcile
from tests.handlers.conftest import Answer, hold_event, invoke, make_event, renew, sample_event

settings.register_profile(
    "model-default",
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "model-soak", settings.get_profile("model-default"), max_examples=2000, stateful_step_count=50
)
PROFILE = {"default": "model-default", "soak": "model-soak"}.get(
    os.environ.get("HYPOTHESIS_PROFILE", "default"), "model-default"
)

# -- the clock ------------------------------------------------------------------------------------

REAL_NOW = datetime.now(UTC).replace(microsecond=0)
# Where ``expires_at`` goes; "term_end" (paid exactly through the current term: its renewal
# expires it) is the fifth choice.
EXPIRIES = {
    "far_past": datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC),
    "just_past": (REAL_NOW - timedelta(hours=1)).replace(second=30),
    "near_future": (REAL_NOW + timedelta(days=10)).replace(second=30),
    "far_future": datetime(2099, 1, 1, 0, 0, 30, tzinfo=UTC),
}
# How far the renewal clock moves in one step (plus 0-59 minutes).
ADVANCES = [
    timedelta(0),
    timedelta(hours=5),
    timedelta(days=3),
    timedelta(days=31),
    timedelta(days=75),
    timedelta(days=400),
]


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later (days are 1-28 here, so no month is too short)."""
    index = moment.month - 1 + months
    return moment.replace(year=moment.year + index // 12, month=index % 12 + 1)


# -- sites, normalized and classified by hand from API.md ----------------------------------------


@dataclass(frozen=True)
class SiteSpec:
    wp_environment: str  # what the plugin sends
    environment: str  # what API.md makes of it
    network: bool
    urls: tuple[str, ...]  # ways of writing the same site
    subsites: tuple[tuple[str, str], ...] = ()  # (subsite_url as sent, its site key)


SITES: dict[str, SiteSpec] = {
    "shop.com": SiteSpec(
        "production", "live", False,
        ("shop.com", "https://www.shop.com/", "http://Shop.COM:80", "www.shop.com.", "https://shop.com:443"),
    ),
    "shop.com/blog": SiteSpec(
        "production", "live", False, ("shop.com/blog", "https://WWW.Shop.com/blog/", "http://shop.com/blog?ref=1#top")
    ),
    "xn--bcher-kva.de": SiteSpec("production", "live", False, ("xn--bcher-kva.de", "https://Bücher.de/")),
    "devexample.com": SiteSpec("production", "live", False, ("devexample.com", "https://www.devexample.com")),
    "staging.shop.com": SiteSpec("production", "staging", False, ("staging.shop.com", "https://staging.shop.com/")),
    "other.org": SiteSpec("staging", "staging", False, ("other.org", "https://www.other.org/")),
    "shop.test": SiteSpec("production", "development", False, ("shop.test", "http://www.shop.test/")),
    "localhost:8080": SiteSpec("development", "development", False, ("localhost:8080", "http://localhost:8080/")),
    "net.example.org": SiteSpec(
        "production", "live", True, ("net.example.org", "https://net.example.org/"),
        (
            ("blog.net.example.org", "blog.net.example.org"),
            ("https://www.blog.net.example.org/", "blog.net.example.org"),
            ("net.example.org/shop", "net.example.org/shop"),
            ("https://net.example.org/shop/", "net.example.org/shop"),
        ),
    ),
    "dev.network.io": SiteSpec(
        "production", "staging", True, ("dev.network.io", "https://dev.network.io/"),
        (("a.dev.network.io", "a.dev.network.io"), ("dev.network.io/b", "dev.network.io/b")),
    ),
}  # fmt: skip
SITE_KEYS = sorted(SITES)
UNKNOWN_SITES = ("nowhere.com", "https://www.unknown.org/")  # never activated anywhere

# -- accounts and licenses --------------------------------------------------------------------------

SLOTS = ("lic-0", "lic-1")
ACCOUNTS = ("acct-a", "acct-b")  # lic-0 belongs to acct-a, lic-1 to acct-b
UNKNOWN_KEY = "key-nobody-has-this"


def license_key_of(slot: int) -> str:
    return f"key-{SLOTS[slot]}-secret"


# -- the model ------------------------------------------------------------------------------------


@dataclass
class ModelSite:
    environment: str
    network: bool
    active: bool
    allocated: int
    used: int
    held: int = 0
    activation: int = 0  # counts re-activations: holds of an earlier one were released

    @property
    def remaining(self) -> int:
        return self.allocated - self.used - self.held


@dataclass
class ModelHold:
    """A hold (rule 11) and what became of it; ``term_start``/``activation``: its site's when placed."""

    slot: int
    site: str
    hold_id: str
    amount: int
    term_start: datetime
    activation: int
    status: str = "open"  # open, captured, released
    captured: int = 0
    answer: dict[str, Any] = field(default_factory=dict)  # the capture's or release's first answer


@dataclass
class ModelGrant:
    """A grant of the current term: ``credits`` is what it brought into it (rule 10)."""

    grant_id: str
    credits: int
    expires_at: datetime | None
    reason: str | None
    body: dict[str, Any]  # as sent, for its replays


@dataclass
class ModelLicense:
    license_id: str
    account_id: str
    key: str
    plan: str
    site_limit: int
    credits_per_term: int
    term_months: int
    term_start: datetime
    term_end: datetime
    expires_at: datetime
    credits_total: int
    needs_allocation: bool
    sites: dict[str, ModelSite] = field(default_factory=dict)  # the current term's sites, by key
    term_credits: int = 0  # the term's own credits (credits_per_term when it started)
    carried_over: int = 0
    grants: list[ModelGrant] = field(default_factory=list)  # the current term's
    grant_ids: dict[str, dict[str, Any]] = field(default_factory=dict)  # every grant_id used: its body

    def spending_order(self) -> list[ModelGrant]:
        """Rule 10: credits that expire first are spent first (the term's own credits before
        all of these); a grant ends with the term when it has no expiry or one not after it."""

        def key(grant: ModelGrant) -> tuple[datetime, datetime, str]:
            ends_now = grant.expires_at is None or grant.expires_at <= self.term_end
            ends = self.term_end if ends_now or grant.expires_at is None else grant.expires_at
            return ends, grant.expires_at or datetime.min.replace(tzinfo=UTC), grant.grant_id

        return sorted(self.grants, key=key)

    def grants_left(self) -> dict[str, int]:
        """What is left of each grant once the term's used credits (every site, active or not)
        are taken in rule 10's order."""
        left_to_take = max(0, sum(site.used for site in self.sites.values()) - self.term_credits)
        left: dict[str, int] = {}
        for grant in self.spending_order():
            taken = min(grant.credits, left_to_take)
            left_to_take -= taken
            left[grant.grant_id] = grant.credits - taken
        return left

    @property
    def allocated(self) -> int:
        return sum(site.allocated for site in self.sites.values())

    @property
    def unallocated(self) -> int:
        return self.credits_total - self.allocated

    @property
    def expired(self) -> bool:
        return self.expires_at <= REAL_NOW

    @property
    def live_active(self) -> int:
        return sum(1 for site in self.sites.values() if site.active and site.environment == "live")


@dataclass(frozen=True)
class Consumed:
    """A charged consume: its body (as the service compares it) and the first answer."""

    slot: int
    site: str
    request_id: str
    amount: int
    feature: str | None
    subsite_url: str | None  # as sent
    subsite: str | None  # normalized
    answer: dict[str, Any]
    term_start: datetime | None = None  # the license's term it was charged in


@dataclass
class Token:
    slot: int
    site: str
    token: str


class Model:
    """API.md as plain values: licenses, their current-term sites, tokens and charged requests.

    Choices where API.md leaves one open (one state has to be picked):
    - "first activation of a multi-site license in a term" is an activation (201) while the
      license lists no site in the term (so not when sites carried over from the previous term);
    - a single-site license waiting for an Apply under rule 7 gets no automatic credits, neither
      when a live site (re)activates nor at renewal (rule 7: "no automatic allocation ... until
      the customer applies");
    - a single-site license imported with only staging/development sites follows rule 1 (they
      start with 0, ``needs_allocation`` false);
    - a renewed multi-site license without active sites has ``needs_allocation`` false (nothing to
      allocate: "true while the customer must act in the portal before sites can spend");
    - ``request_id`` is scoped to the activation's site and, on a network, its sub-site (the
      plugin of one site makes them up; the same id on another sub-site is another consume).
    """

    def __init__(self) -> None:
        self.licenses: dict[int, ModelLicense] = {}
        self.tokens: list[Token] = []  # every token ever handed out
        self.current: dict[tuple[int, str], str] = {}  # (slot, site) -> the valid token
        self.consumed: dict[tuple[int, str, str], Consumed] = {}
        self.refunds: dict[tuple[int, str, str], tuple[int, dict[str, Any]]] = {}  # amount, first answer
        self.holds: dict[tuple[int, str, str], ModelHold] = {}

    def hold_is_open(self, hold: ModelHold) -> bool:
        """Open unless captured or released, by its release or by its site's deactivation or
        renewal since it was placed (a site re-activated since is another activation)."""
        site = self.licenses[hold.slot].sites.get(hold.site)
        return (
            hold.status == "open"
            and site is not None
            and site.active
            and site.activation == hold.activation
            and self.licenses[hold.slot].term_start == hold.term_start
        )

    def valid(self, token: Token) -> bool:
        return self.current.get((token.slot, token.site)) == token.token

    @staticmethod
    def site_alerts(site: ModelSite) -> list[dict[str, Any]]:
        """Rule 13 with the default threshold (20%): exhausted at 0, low at or below 20%."""
        if not site.active or site.allocated <= 0:
            return []
        if site.remaining == 0:
            return [{"code": "credits_exhausted"}]
        if site.remaining * 100 <= site.allocated * 20:
            return [{"code": "credits_low", "threshold_percent": 20}]
        return []

    @staticmethod
    def license_alerts(license_: ModelLicense) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = [{"code": "allocation_needed"}] if license_.needs_allocation else []
        if license_.expired:
            alerts.append({"code": "license_expired"})
        elif license_.expires_at <= REAL_NOW + timedelta(days=14):
            alerts.append({"code": "license_expiring", "expires_at": rfc3339(license_.expires_at)})
        return alerts

    def view(self, slot: int) -> dict[str, Any]:
        license_ = self.licenses[slot]
        left = license_.grants_left()
        return {
            "license_id": license_.license_id,
            "plan": license_.plan,
            "status": "expired" if license_.expired else "active",
            "term_start": rfc3339(license_.term_start),
            "term_end": rfc3339(license_.term_end),
            "credits_total": license_.credits_total,
            "allocated": license_.allocated,
            "unallocated": license_.unallocated,
            "needs_allocation": license_.needs_allocation,
            "low_balance_percent": 20,
            "carried_over": license_.carried_over,
            "alerts": self.license_alerts(license_),
            "grants": [
                {
                    "grant_id": grant.grant_id,
                    "credits": grant.credits,
                    "remaining": left[grant.grant_id],
                    "expires_at": rfc3339(grant.expires_at) if grant.expires_at else None,
                    "reason": grant.reason,
                }
                for grant in license_.spending_order()
            ],
            "sites": [
                {
                    "site": name,
                    "environment": site.environment,
                    "network": site.network,
                    "active": site.active,
                    "allocated": site.allocated,
                    "used": site.used,
                    "held": site.held,
                    "remaining": site.remaining,
                    "alerts": self.site_alerts(site),
                }
                for name, site in sorted(license_.sites.items())
            ],
        }

    def balance(self, slot: int, site_name: str) -> dict[str, Any]:
        license_, site = self.licenses[slot], self.licenses[slot].sites[site_name]
        view = self.view(slot)
        return {
            "license": {
                name: view[name]
                for name in (
                    "license_id",
                    "plan",
                    "status",
                    "term_start",
                    "term_end",
                    "credits_total",
                    "allocated",
                    "unallocated",
                )
            },
            "site": {
                "site": site_name,
                "environment": site.environment,
                "network": site.network,
                "allocated": site.allocated,
                "used": site.used,
                "held": site.held,
                "remaining": site.remaining,
            },
            "needs_allocation": license_.needs_allocation,
            "alerts": self.site_alerts(site) + self.license_alerts(license_),
        }

    def renew(self, slot: int, now: datetime) -> str:
        """The renew function for one license at ``now`` (API.md, "Scheduler" and rule 5)."""
        license_ = self.licenses[slot]
        if license_.term_end > now:
            return "not_due"
        if not license_.expires_at > license_.term_end:
            return "expired"
        start = license_.term_end
        end = add_months(start, license_.term_months)
        while end <= now:
            start, end = end, add_months(end, license_.term_months)
        left = license_.grants_left()  # of the ended term, before its sites restart
        carried = [
            ModelGrant(grant.grant_id, left[grant.grant_id], grant.expires_at, grant.reason, grant.body)
            for grant in license_.grants
            if grant.expires_at is not None and grant.expires_at > start and left[grant.grant_id] > 0
        ]
        license_.term_start, license_.term_end = start, end
        license_.term_credits = license_.credits_per_term
        license_.grants = carried
        license_.carried_over = sum(grant.credits for grant in carried)
        license_.credits_total = license_.credits_per_term + license_.carried_over
        license_.sites = {name: site for name, site in license_.sites.items() if site.active}
        for site in license_.sites.values():
            site.used = site.allocated = site.held = 0
        if license_.plan == "multi-site":
            license_.needs_allocation = bool(license_.sites)
        elif not license_.needs_allocation:
            for site in license_.sites.values():
                if site.environment == "live":
                    site.allocated = license_.credits_total
                    break
        return "renewed"


# -- calling the functions ------------------------------------------------------------------------

_DISCARD = io.StringIO()


def quietly(function: Any, *args: Any) -> Any:
    # Powertools prints a metrics line per invocation: thousands of them here.
    with contextlib.redirect_stdout(_DISCARD):
        result = function(*args)
    _DISCARD.seek(0)
    _DISCARD.truncate()
    return result


def call(event_name: str, event: dict[str, Any]) -> Answer:
    answer: Answer = quietly(invoke, event_name, event)
    return answer


def portal(event_name: str, account: str, license_id: str | None = None, body: Any = ...) -> Answer:
    event = make_event(event_name, body=body, path_license_id=license_id)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = account
    return call(event_name, event)


def read_through_the_portal(account: str, license_id: str) -> tuple[Answer, Any]:
    """``GET .../credits``, and the license and sites the function read to answer it: the
    table's state, without a second Query for the audit."""
    reads = []
    read = store.get_license_view

    def recorded(license_id_: str) -> Any:
        reads.append(read(license_id_))
        return reads[-1]

    store.get_license_view = recorded  # type: ignore[assignment]
    try:
        answer = portal("get_credits", account, license_id)
    finally:
        store.get_license_view = read  # type: ignore[assignment]
    ((license_, sites, _),) = reads
    return answer, (license_, sites)


def problem(answer: Answer) -> tuple[int, str | None]:
    assert answer.headers.get("content-type", "").startswith("application/problem+json"), answer
    assert answer.body["status"] == answer.status, answer.body
    return answer.status, answer.code


def expect_problem(answer: Answer, *allowed: tuple[int, str]) -> tuple[int, str | None]:
    got = problem(answer)
    assert got in allowed, f"expected one of {allowed}, got {answer.status} {answer.body}"
    return got


def without_activated_at(view: dict[str, Any]) -> dict[str, Any]:
    """The view without the service's clock readings (sites' ``activated_at``, grants' ``granted_at``)."""
    sites = []
    for site in view["sites"]:
        assert isinstance(site.pop("activated_at"), str)
        sites.append(site)
    for grant in view["grants"]:
        assert isinstance(grant.pop("granted_at"), str)
    return {**view, "sites": sorted(sites, key=lambda site: site["site"])}


TEMPLATE = local.cfn.load_template()

picks = st.integers(0, 1_000)  # an index into a list that grows while the machine runs
credits = st.integers(0, 50)  # small: insufficient credits happen
amounts = st.one_of(st.integers(1, 8), st.integers(1, 30))
allocation_amounts = st.one_of(st.integers(0, 10), st.integers(0, 60))
features = st.sampled_from([None, "rewrite", "summarize"])
site_choices = st.tuples(st.sampled_from(SITE_KEYS), st.integers(0, 4))
# Mostly paid when created (an expired license answers little but 403); billing's later updates
# pay or refund.
expiries = st.sampled_from([*["far_future"] * 7, "near_future", "near_future", "just_past"])
billing_expiries = st.sampled_from(
    ["far_future", "far_future", "near_future", "term_end", "just_past", "far_past"]
)
PROVISIONING: dict[str, st.SearchStrategy[Any]] = {
    "plan": st.sampled_from(["single-site", "multi-site"]),
    "credits_per_term": credits,
    "site_limit": st.integers(1, 3),
    "term_months": st.sampled_from([1, 1, 2, 12]),
    "months_back": st.integers(1, 3),
    "day": st.integers(1, 28),
    "hour": st.integers(0, 23),
    "expiry": expiries,
    "imports": st.lists(site_choices, max_size=3, unique_by=lambda choice: choice[0]),
}


class CreditsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # No swarm testing: Hypothesis would switch a random half of the rules off per example,
        # and most rules here need what another makes (no token without ``activate``): such
        # examples mostly repeat the two rules that are always possible.
        assert isinstance(self._rules_strategy.enabled_rules_strategy, SearchStrategy)
        self._rules_strategy.enabled_rules_strategy = st.just(FeatureFlags())
        self.model = Model()
        self.clock = (REAL_NOW - timedelta(days=100)).replace(second=30)  # the renewal clock
        self.request_ids = 0
        self.etags: dict[tuple[int, str], tuple[str, dict[str, Any], int]] = {}
        self.writes = 0  # successful writes so far (an ETag seen before any write must still match)
        self.changed: set[int] = set()  # licenses the current step changed (in the model)
        self.ledgers_changed: set[int] = set()
        self.ledgers: dict[int, list[dict[str, Any]]] = {}
        _fresh_table()

    # -- helpers ---------------------------------------------------------------------------------

    def provisioned(self) -> list[int]:
        return sorted(self.model.licenses)

    def pick_license(self, pick: int) -> int:
        options = self.provisioned()
        return options[pick % len(options)]

    def wrote(self, *slots_: int, ledger: bool = False) -> None:
        """The step changed these licenses (``ledger``: it added ledger entries)."""
        self.writes += 1
        self.changed.update(slots_)
        if ledger:
            self.ledgers_changed.update(slots_)

    def funded_tokens(self) -> list[Token]:
        """The valid tokens of sites with credits left."""
        licenses = self.model.licenses
        return [
            token
            for token in self.model.tokens
            if self.model.valid(token) and licenses[token.slot].sites[token.site].remaining > 0
        ]

    def pick_token(self, pick: int, stale: int, funded: bool = False, network: bool = False) -> Token:
        """Mostly a valid token (for a consume, of a site with credits left when there is one);
        one time in five any token ever handed out: rotated and revoked ones answer 401."""
        tokens = [token for token in self.model.tokens if SITES[token.site].network or not network]
        valid = [token for token in tokens if self.model.valid(token)]
        if funded:
            valid = [token for token in self.funded_tokens() if token in valid] or valid
        options = tokens if stale == 4 or not valid else valid
        return options[pick % len(options)]

    def next_request_id(self) -> str:
        self.request_ids += 1
        return f"req:{self.request_ids}.mb-x"

    def provision_body(
        self, license_: ModelLicense, activations: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "license_key": license_.key,
            "account_id": license_.account_id,
            "plan": license_.plan,
            "site_limit": license_.site_limit,
            "credits_per_term": license_.credits_per_term,
            "term_months": license_.term_months,
            "term_start": rfc3339(license_.term_start),
            "term_end": rfc3339(license_.term_end),
            "expires_at": rfc3339(license_.expires_at),
        }
        if activations is not None:
            body["activations"] = activations
        return body

    def expiry(self, choice: str, term_end: datetime) -> datetime:
        if choice == "term_end":
            # Not too close to the real clock: the status must not flip while the test runs.
            return term_end if abs(term_end - REAL_NOW) > timedelta(days=1) else EXPIRIES["near_future"]
        return EXPIRIES[choice]

    def check_provision_answer(self, answer: Answer, slot: int, status: int) -> None:
        license_ = self.model.licenses[slot]
        assert answer.status == status, answer.body
        body = dict(answer.body)
        extras = {
            name: body.pop(name)
            for name in ("account_id", "site_limit", "credits_per_term", "term_months", "expires_at")
        }
        assert extras == {
            "account_id": license_.account_id,
            "site_limit": license_.site_limit,
            "credits_per_term": license_.credits_per_term,
            "term_months": license_.term_months,
            "expires_at": rfc3339(license_.expires_at),
        }
        assert without_activated_at(body) == self.model.view(slot)

    # -- billing ---------------------------------------------------------------------------------

    @initialize(**PROVISIONING)  # type: ignore[call-overload]
    def provision_first(self, **fields: Any) -> None:
        """Billing creates the first license (importing no more live sites than it allows)."""
        live = [choice for choice in fields["imports"] if SITES[choice[0]].environment == "live"]
        limit = 1 if fields["plan"] == "single-site" else fields["site_limit"]
        fields["imports"] = [choice for choice in fields["imports"] if choice not in live[limit:]]
        self.provision(**fields)

    @precondition(lambda self: len(self.model.licenses) < len(SLOTS))
    @rule(**PROVISIONING)  # type: ignore[call-overload]
    def provision(
        self,
        plan: str,
        credits_per_term: int,
        site_limit: int,
        term_months: int,
        months_back: int,
        day: int,
        hour: int,
        expiry: str,
        imports: list[tuple[str, int]],
    ) -> None:
        """Billing creates a license, maybe importing activations (rule 7)."""
        slot = next(slot for slot in range(len(SLOTS)) if slot not in self.model.licenses)
        if plan == "single-site":
            site_limit = 1
        month_start = REAL_NOW.replace(day=1, hour=0, minute=0, second=0)
        term_start = add_months(month_start, -months_back).replace(day=day, hour=hour)
        term_end = add_months(term_start, term_months)
        license_ = ModelLicense(
            license_id=SLOTS[slot],
            account_id=ACCOUNTS[slot],
            key=license_key_of(slot),
            plan=plan,
            site_limit=site_limit,
            credits_per_term=credits_per_term,
            term_months=term_months,
            term_start=term_start,
            term_end=term_end,
            expires_at=self.expiry(expiry, term_end),
            credits_total=credits_per_term,
            needs_allocation=False,
            term_credits=credits_per_term,
        )
        activations = [
            {
                "site_url": SITES[name].urls[variant % len(SITES[name].urls)],
                "environment": SITES[name].wp_environment,
                "network": SITES[name].network,
            }
            for name, variant in imports
        ]
        answer = call(
            "provision",
            make_event(
                "provision",
                body=self.provision_body(license_, activations or None),
                path_license_id=license_.license_id,
            ),
        )
        live = [name for name, _ in imports if SITES[name].environment == "live"]
        if len(live) > site_limit:
            expect_problem(answer, (409, "activation_limit_reached"))
            missing = portal("get_credits", license_.account_id, license_.license_id)
            expect_problem(missing, (404, "not_found"))
            return
        for name, _ in imports:
            spec = SITES[name]
            license_.sites[name] = ModelSite(spec.environment, spec.network, active=True, allocated=0, used=0)
        if license_.sites:
            if plan == "multi-site":
                license_.needs_allocation = True
            elif len(license_.sites) == 1 and live:
                license_.sites[live[0]].allocated = credits_per_term
            else:
                license_.needs_allocation = bool(live)
        self.model.licenses[slot] = license_
        self.wrote(slot)
        self.check_provision_answer(answer, slot, 201)

    def bill(self, slot: int, expiry: str, new_credits: int | None) -> None:
        """Billing updates the license: a new ``expires_at`` ("pay" when later than the term end,
        "expire" when in the past: a refund) and maybe a new ``credits_per_term`` (next term on)."""
        license_ = self.model.licenses[slot]
        license_.expires_at = self.expiry(expiry, license_.term_end)
        if new_credits is not None:
            license_.credits_per_term = new_credits
        answer = call(
            "provision",
            make_event("provision", body=self.provision_body(license_), path_license_id=license_.license_id),
        )
        self.wrote(slot)
        self.check_provision_answer(answer, slot, 200)

    # -- plugin ----------------------------------------------------------------------------------

    @rule(pick=picks, stranger=st.integers(0, 9), site=site_choices, known=st.integers(0, 2))
    def activate(self, pick: int, stranger: int, site: tuple[str, int], known: int) -> None:
        """``POST /v1/activations`` with one of the ways of writing a site (a third of the time one
        the license knows but has no token for: imported, or deactivated); now and then with a key
        nobody has (or the key of a license not provisioned yet)."""
        name, variant = site
        if stranger == 9 or not self.model.licenses:
            who = (
                len(SLOTS)
                if pick % 2
                else next(s for s in range(len(SLOTS) + 1) if s not in self.model.licenses)
            )
        else:
            who = self.pick_license(pick)
            tokenless = [
                s for s in sorted(self.model.licenses[who].sites) if (who, s) not in self.model.current
            ]
            if known == 0 and tokenless:
                name = tokenless[variant % len(tokenless)]
        spec = SITES[name]
        key = license_key_of(who) if who < len(SLOTS) else UNKNOWN_KEY
        body: dict[str, Any] = {
            "license_key": key,
            "site_url": spec.urls[variant % len(spec.urls)],
            "environment": spec.wp_environment,
        }
        if spec.network:
            body["network"] = True
        answer = call("activate", make_event("activate", body=body))
        if who not in self.model.licenses:
            expect_problem(answer, (404, "not_found"))
            return
        license_ = self.model.licenses[who]
        existing = license_.sites.get(name)
        over_limit = (
            spec.environment == "live"
            and not (existing and existing.active)
            and license_.live_active >= license_.site_limit
        )
        if license_.expired:
            # API.md does not order the two: either is an honest answer.
            allowed = [(403, "license_expired")] + ([(409, "activation_limit_reached")] if over_limit else [])
            expect_problem(answer, *allowed)
            return
        if over_limit:
            expect_problem(answer, (409, "activation_limit_reached"))
            return
        if existing is not None and existing.active:
            status = 200  # already active: only the token is rotated
        else:
            status = 201
            auto = (
                license_.unallocated
                if license_.plan == "single-site"
                and spec.environment == "live"
                and not license_.needs_allocation
                else 0
            )
            if license_.plan == "multi-site" and not license_.sites:
                license_.needs_allocation = True  # the first activation of the term
            if existing is None:
                license_.sites[name] = ModelSite(
                    spec.environment, spec.network, active=True, allocated=auto, used=0
                )
            else:
                existing.active = True
                existing.activation += 1
                existing.allocated += auto  # it kept what it used; rule 1 adds the unallocated credits
        site_ = license_.sites[name]
        assert answer.status == status, answer.body
        token = answer.body.pop("activation_token")
        assert isinstance(token, str) and len(token) >= 22
        assert answer.body == {
            "site": name,
            "environment": spec.environment,
            "network": spec.network,
            "license_id": license_.license_id,
            "credits": {
                "allocated": site_.allocated,
                "used": site_.used,
                "held": site_.held,
                "remaining": site_.remaining,
            },
        }
        assert all(token != known.token for known in self.model.tokens)
        self.model.tokens.append(Token(who, name, token))
        self.model.current[(who, name)] = token
        self.wrote(who)

    @precondition(lambda self: len(self.model.current) > 1)  # keeps tokens for the other rules
    @rule(pick=picks, stale=st.integers(0, 4))
    def deactivate(self, pick: int, stale: int) -> None:
        """``DELETE /v1/activations/current`` with a current, rotated or revoked token."""
        token = self.pick_token(pick, stale)
        answer = call("deactivate", make_event("deactivate", token=token.token))
        if not self.model.valid(token):
            expect_problem(answer, (401, "unauthorized"))
            return
        assert answer.status == 204, answer.body
        site = self.model.licenses[token.slot].sites[token.site]
        site.active = False
        site.allocated = site.used  # the rest (and what it held) returns to unallocated
        site.held = 0
        del self.model.current[(token.slot, token.site)]
        self.wrote(token.slot)

    # Four consume rules (the plugin's most frequent call): within what the site has left, all of
    # it, more than it (402), and on a network for its sub-sites. Each also sends, one time in
    # five, a token that was rotated or revoked (401).

    @precondition(lambda self: self.funded_tokens())
    @rule(pick=picks, stale=st.integers(0, 4), amount=amounts, feature=features)
    def consume(self, pick: int, stale: int, amount: int, feature: str | None) -> None:
        """``POST /v1/consume`` with a new ``request_id``, within what the site has left."""
        token = self.pick_token(pick, stale, funded=True)
        self.spend(token, 1 + (amount - 1) % max(1, self.remaining(token)), feature, (None, None))

    @precondition(lambda self: self.funded_tokens())
    @rule(pick=picks, stale=st.integers(0, 4), feature=features)
    def consume_all_that_is_left(self, pick: int, stale: int, feature: str | None) -> None:
        """A consume of exactly what the site has left (``remaining`` 0 after it)."""
        token = self.pick_token(pick, stale, funded=True)
        self.spend(token, max(1, self.remaining(token)), feature, (None, None))

    @precondition(lambda self: self.model.current)
    @rule(pick=picks, stale=st.integers(0, 4), extra=st.integers(1, 10), feature=features)
    def consume_more_than_is_left(self, pick: int, stale: int, extra: int, feature: str | None) -> None:
        """A consume of more than the site has left: 402 with its ``remaining``."""
        token = self.pick_token(pick, stale)
        self.spend(token, self.remaining(token) + extra, feature, (None, None))

    @precondition(lambda self: any(SITES[site].network for _, site in self.model.current))
    @rule(
        pick=picks,
        stale=st.integers(0, 4),
        amount=amounts,
        fits=st.integers(0, 3),
        feature=features,
        subsite=st.integers(0, 5),
    )
    def consume_on_a_network(
        self, pick: int, stale: int, amount: int, fits: int, feature: str | None, subsite: int
    ) -> None:
        """A consume of a network activation, mostly for one of its sub-sites (``subsite_url``):
        they share its credits."""
        token = self.pick_token(pick, stale, funded=True, network=True)
        if fits < 3 and self.remaining(token) > 0:
            amount = 1 + (amount - 1) % self.remaining(token)
        subsites = SITES[token.site].subsites
        self.spend(token, amount, feature, subsites[subsite] if subsite < len(subsites) else (None, None))

    def remaining(self, token: Token) -> int:
        site = self.model.licenses[token.slot].sites.get(token.site)
        return site.remaining if site is not None else 0

    def refused_to_spend(self, answer: Answer, token: Token, amount: int) -> bool:
        """Whether a consume or a hold of ``amount`` is refused, checking the refusal: a bad token
        (401), an expired license (403), more than the site has left (402 with its remaining)."""
        if not self.model.valid(token):
            expect_problem(answer, (401, "unauthorized"))
            return True
        license_ = self.model.licenses[token.slot]
        site = license_.sites[token.site]
        if license_.expired:
            expect_problem(answer, (403, "license_expired"))
            return True
        if amount > site.remaining:
            expect_problem(answer, (402, "insufficient_credits"))
            assert answer.body["remaining"] == site.remaining
            return True
        return False

    def spend(
        self, token: Token, amount: int, feature: str | None, subsite: tuple[str | None, str | None]
    ) -> None:
        license_ = self.model.licenses[token.slot]
        subsite_url, subsite_key = subsite
        request_id = self.next_request_id()
        answer = self.send_consume(token, amount, request_id, feature, subsite_url)
        if self.refused_to_spend(answer, token, amount):
            return
        site = license_.sites[token.site]
        site.used += amount
        expected = {
            "request_id": request_id,
            "consumed": amount,
            "remaining": site.remaining,
            "replayed": False,
        }
        assert (answer.status, answer.body) == (200, expected)
        self.model.consumed[(token.slot, token.site, request_id)] = Consumed(
            token.slot, token.site, request_id, amount, feature, subsite_url, subsite_key, expected,
            license_.term_start,
        )  # fmt: skip
        self.wrote(token.slot, ledger=True)

    def send_consume(
        self, token: Token, amount: int, request_id: str, feature: str | None, subsite_url: str | None
    ) -> Answer:
        body: dict[str, Any] = {"amount": amount, "request_id": request_id}
        if feature is not None:
            body["feature"] = feature
        if subsite_url is not None:
            body["subsite_url"] = subsite_url
        return call("consume", make_event("consume", body=body, token=token.token))

    @precondition(lambda self: self.model.consumed)
    @rule(
        pick=picks,
        change=st.sampled_from(["none", "none", "same_subsite_written_otherwise", "amount", "feature"]),
        old_token=st.booleans(),
    )
    def replay(self, pick: int, change: str, old_token: bool) -> None:
        """A ``request_id`` that was charged, sent again: the same body (the first answer,
        ``replayed: true``) or a different one (409). Mostly one whose site can still be reached
        with a valid token and has moved on since (other consumes, an Apply, a renewal)."""
        consumed = list(self.model.consumed.values())
        moved_on = [
            first
            for first in consumed
            if (first.slot, first.site) in self.model.current
            and first.answer["remaining"] != self.model.licenses[first.slot].sites[first.site].remaining
        ]
        options = moved_on if moved_on and not old_token and pick % 4 else consumed
        first = options[pick % len(options)]
        spec = SITES[first.site]
        tokens = [
            token for token in self.model.tokens if (token.slot, token.site) == (first.slot, first.site)
        ]
        current = [token for token in tokens if self.model.valid(token)]
        stale = [token for token in tokens if not self.model.valid(token)]
        token = (stale or current)[-1] if old_token else (current or stale)[-1]
        amount, feature, subsite_url, subsite_key = (
            first.amount,
            first.feature,
            first.subsite_url,
            first.subsite,
        )
        if change == "same_subsite_written_otherwise" and subsite_key is not None:
            subsite_url = next(
                (url for url, key in spec.subsites if key == subsite_key and url != first.subsite_url),
                subsite_url,
            )
        elif change == "feature":
            feature = "translate" if feature else "rewrite"
        elif change != "none" and change != "same_subsite_written_otherwise":
            amount += 1
        answer = self.send_consume(token, amount, first.request_id, feature, subsite_url)
        if not self.model.valid(token):
            expect_problem(answer, (401, "unauthorized"))
            return
        expired = self.model.licenses[token.slot].expired
        same = (amount, feature, subsite_key) == (first.amount, first.feature, first.subsite)
        if not same:
            # A repeat charges nothing, so an expired license may answer either.
            expect_problem(
                answer, (409, "idempotency_conflict"), *([(403, "license_expired")] if expired else [])
            )
            return
        if expired and answer.status == 403:
            expect_problem(answer, (403, "license_expired"))
            return
        assert (answer.status, answer.body) == (200, {**first.answer, "replayed": True})

    @precondition(lambda self: self.model.current)
    @rule(
        pick=picks,
        stale=st.integers(0, 4),
        send_etag=st.booleans(),
        portal_side=st.integers(0, 2),
        as_other=st.booleans(),
    )
    def read(self, pick: int, stale: int, send_etag: bool, portal_side: int, as_other: bool) -> None:
        """The reads: the plugin's balance or, a third of the time, the portal's."""
        if portal_side < 2:
            self.balance(self.pick_token(pick, stale), send_etag)
        else:
            self.portal_reads(pick % len(SLOTS), as_other)

    def balance(self, token: Token, send_etag: bool) -> None:
        """``GET /v1/balance``, maybe with the last ETag seen for that site."""
        seen = self.etags.get((token.slot, token.site)) if send_etag else None
        headers = {"if-none-match": seen[0] if seen else ""}
        answer = call("get_balance", make_event("get_balance", token=token.token, headers=headers))
        if not self.model.valid(token):
            expect_problem(answer, (401, "unauthorized"))
            return
        expected = self.model.balance(token.slot, token.site)
        if seen is not None:
            etag, body, writes = seen
            if writes == self.writes:
                assert answer.status == 304, (answer.status, answer.body)  # nothing changed at all
            elif body != expected:
                assert answer.status == 200
                assert answer.headers["etag"] != etag
            if answer.status == 304:
                assert body == expected and answer.headers["etag"] == etag
                return
        assert (answer.status, answer.body) == (200, expected)
        self.etags[(token.slot, token.site)] = (answer.headers["etag"], expected, self.writes)

    # -- portal ----------------------------------------------------------------------------------

    @precondition(
        lambda self: any(site.active for lic in self.model.licenses.values() for site in lic.sites.values())
    )
    @rule(
        pick=picks,
        owner=st.integers(0, 9),
        entries=st.lists(st.tuples(picks, st.integers(0, 4), allocation_amounts), max_size=4),
        fits=st.integers(0, 2),
        stray=st.tuples(st.integers(0, 4), st.sampled_from([*SITE_KEYS, *UNKNOWN_SITES]), allocation_amounts),
    )
    def apply(
        self,
        pick: int,
        owner: int,
        entries: list[tuple[int, int, int]],
        fits: int,
        stray: tuple[int, str, int],
    ) -> None:
        """*Apply* in the portal: absolute allocations for some of the license's active sites, each
        written one of its ways (mostly within what they may have: from what each used up to the
        credits available), and maybe one more site (inactive, never activated or unknown)."""
        slot = self.pick_license(pick)
        license_ = self.model.licenses[slot]
        account = license_.account_id if owner < 9 else next(a for a in ACCOUNTS if a != license_.account_id)
        active_names = sorted(name for name, site in license_.sites.items() if site.active)
        named: dict[str, tuple[int, int]] = {}  # site key -> (variant, allocation)
        for site_pick, variant, allocation in entries if active_names else []:
            named.setdefault(active_names[site_pick % len(active_names)], (variant, allocation))
        if fits < 2:
            spare = license_.unallocated + sum(
                license_.sites[name].allocated - license_.sites[name].used for name in named
            )
            for name, (variant, allocation) in named.items():
                extra = allocation % (spare + 1)
                named[name] = (variant, license_.sites[name].used + extra)
                spare -= extra
        requested: list[tuple[str | None, int]] = []  # (site key, or None when unknown; allocation)
        body: dict[str, int] = {}
        for name, (variant, allocation) in named.items():
            body[SITES[name].urls[variant % len(SITES[name].urls)]] = allocation
            requested.append((name, allocation))
        if stray[0] == 4 and all(stray[1] != name for name, _ in requested):
            _, name, allocation = stray
            body[name] = allocation
            requested.append((name if name in SITES else None, allocation))
        answer = portal("put_allocations", account, license_.license_id, {"allocations": body})
        if account != license_.account_id:
            expect_problem(answer, (404, "not_found"))
            return
        active = {name: site for name, site in license_.sites.items() if site.active}
        allowed: list[tuple[int, str]] = []
        if license_.expired:
            allowed.append((403, "license_expired"))
        inactive = [name for name, _ in requested if name not in active]
        if inactive:
            allowed.append((404, "not_found"))
        below = [  # held credits cannot be allocated away either
            (name, active[name].used, active[name].held)
            for name, allocation in requested
            if name in active and allocation < active[name].used + active[name].held
        ]
        if below:
            allowed.append((409, "below_used"))
        available = license_.unallocated + sum(
            active[name].allocated for name, _ in requested if name in active
        )
        asked = sum(allocation for _, allocation in requested)
        if asked > available and not inactive:  # a 404 is checked before the totals
            allowed.append((409, "over_allocation"))
        if allowed:
            code = expect_problem(answer, *allowed)
            if code == (409, "below_used"):
                assert (answer.body["site"], answer.body["used"], answer.body["held"]) in below
            elif code == (409, "over_allocation"):
                assert (answer.body["available"], answer.body["requested"]) == (available, asked)
            return
        for site_name, allocation in requested:
            assert site_name is not None
            license_.sites[site_name].allocated = allocation
        license_.needs_allocation = False
        self.wrote(slot)
        assert answer.status == 200, answer.body
        assert without_activated_at(answer.body) == self.model.view(slot)

    def portal_reads(self, slot: int, as_other: bool) -> None:
        """``GET /v1/licenses`` and another account's (or a missing) license: a 404 like any other."""
        account = ACCOUNTS[slot]
        listed = portal("list_licenses", account)
        assert listed.status == 200
        expected = [
            {
                name: view[name]
                for name in ("license_id", "plan", "status", "term_end", "credits_total", "unallocated")
            }
            for view in (self.model.view(owned) for owned in self.provisioned() if ACCOUNTS[owned] == account)
        ]
        assert sorted(listed.body["licenses"], key=lambda item: item["license_id"]) == expected
        other = ACCOUNTS[1 - slot] if as_other else ACCOUNTS[slot]
        if as_other or slot not in self.model.licenses:
            expect_problem(portal("get_credits", other, SLOTS[slot]), (404, "not_found"))

    # -- scheduler -------------------------------------------------------------------------------

    @precondition(lambda self: self.model.licenses)
    @rule(
        pick=picks,
        step=st.integers(0, len(ADVANCES) - 1),
        minutes=st.integers(0, 59),
        schedule=st.integers(0, 5),
        billing=st.tuples(st.integers(0, 4), billing_expiries, st.none() | credits),
    )
    def bill_and_renew(
        self, pick: int, step: int, minutes: int, schedule: int, billing: tuple[int, str, int | None]
    ) -> None:
        """Maybe billing updates a license (pays, refunds, changes ``credits_per_term``); then the
        clock moves on and the renew function runs: for one license (``{"license_id", "time"}``)
        or, now and then, as the hourly schedule (every license)."""
        if billing[0] == 4:
            self.bill(self.pick_license(pick), *billing[1:])
        self.clock += ADVANCES[step] + timedelta(minutes=minutes)
        now = rfc3339(self.clock)
        if schedule:  # 0: the scheduled run
            slot = self.pick_license(pick)
            outcome = self.model.renew(slot, self.clock)
            result = quietly(renew, {"license_id": SLOTS[slot], "time": now})
            expected: dict[str, list[str]] = {"renewed": [], "expired": [], "not_due": [], "failed": []}
            expected[outcome] = [SLOTS[slot]]
            assert result == {"now": now, **expected}
            outcomes = {SLOTS[slot]: outcome}
        else:
            outcomes = {SLOTS[slot]: self.model.renew(slot, self.clock) for slot in self.provisioned()}
            event = sample_event("renew-scheduled")
            event["time"] = now
            result = quietly(renew, event)
            assert (result["now"], result["failed"]) == (now, [])
            assert sorted(result["renewed"]) == [
                lid for lid, outcome in sorted(outcomes.items()) if outcome == "renewed"
            ]
            # A license found unpaid before is not listed again until billing updates it.
            assert set(result["expired"]) <= {
                lid for lid, outcome in outcomes.items() if outcome == "expired"
            }
        renewed = [
            SLOTS.index(license_id) for license_id, outcome in outcomes.items() if outcome == "renewed"
        ]
        if renewed:
            self.wrote(*renewed, ledger=True)

    # -- grants and refunds (rules 9, 10, 12) -------------------------------------------------------

    @precondition(lambda self: self.model.licenses)
    @rule(
        pick=picks,
        credits=st.integers(1, 40),
        expiry=st.sampled_from(["none", "this_term", "next_term", "far"]),
        reason=st.booleans(),
        again=st.integers(0, 4),
    )
    def grant(self, pick: int, credits: int, expiry: str, reason: bool, again: int) -> None:
        """Billing grants credits (a new ``grant_id``; or, now and then, one used before: the same
        body is a replay, another a 409)."""
        slot = self.pick_license(pick)
        license_ = self.model.licenses[slot]
        used = list(license_.grant_ids)
        if again >= 3 and used:
            grant_id = used[pick % len(used)]
            body = dict(license_.grant_ids[grant_id])
            if again == 4:
                body["credits"] += 1
        else:
            grant_id = self.next_request_id()
            expires_at = {
                "none": None,
                "this_term": license_.term_end - timedelta(days=1),
                "next_term": add_months(license_.term_end, license_.term_months) - timedelta(days=1),
                "far": EXPIRIES["far_future"],
            }[expiry]
            body = {"grant_id": grant_id, "credits": credits}
            if expires_at is not None:
                body["expires_at"] = rfc3339(expires_at)
            if reason:
                body["reason"] = "Top-up pack"
        answer = call("grant", make_event("grant", body=body, path_license_id=license_.license_id))
        if grant_id in license_.grant_ids:
            if license_.grant_ids[grant_id] != body:
                expect_problem(answer, (409, "idempotency_conflict"))
                return
            assert (answer.status, without_activated_at(answer.body)) == (200, self.model.view(slot))
            return
        if license_.expired:
            expect_problem(answer, (403, "license_expired"))
            return
        expires = (
            datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
            if "expires_at" in body
            else None
        )
        license_.grant_ids[grant_id] = body
        license_.grants.append(ModelGrant(grant_id, body["credits"], expires, body.get("reason"), body))
        license_.credits_total += body["credits"]
        if license_.plan == "single-site" and not license_.needs_allocation:  # rule 9
            live = [site for site in license_.sites.values() if site.active and site.environment == "live"]
            if live:
                live[0].allocated += body["credits"]
        self.wrote(slot)
        assert (answer.status, without_activated_at(answer.body)) == (201, self.model.view(slot))

    @precondition(lambda self: self.model.consumed)
    @rule(pick=picks, part=st.integers(0, 4))
    def refund(self, pick: int, part: int) -> None:
        """Billing refunds a charged consume: all of it (no ``amount``), a part, or more than it
        charged (422); once; in the consume's term only (409 ``term_ended``)."""
        first = list(self.model.consumed.values())[pick % len(self.model.consumed)]
        license_ = self.model.licenses[first.slot]
        key = (first.slot, first.site, first.request_id)
        amount = {0: first.amount, 1: 1, 2: max(1, first.amount // 2), 3: first.amount, 4: first.amount + 1}[
            part
        ]
        body: dict[str, Any] = {"site_url": first.site, "request_id": first.request_id}
        if part:
            body["amount"] = amount
        if first.subsite_url is not None:
            body["subsite_url"] = first.subsite_url
        answer = call("refund", make_event("refund", body=body, path_license_id=license_.license_id))
        earlier = self.model.refunds.get(key)
        if earlier is not None:
            if earlier[0] != amount:
                expect_problem(answer, (409, "idempotency_conflict"))
                return
            assert (answer.status, answer.body) == (200, {**earlier[1], "replayed": True})
            return
        if amount > first.amount:
            expect_problem(answer, (422, "validation_error"))
            return
        site = license_.sites.get(first.site)
        if site is None or first.term_start != license_.term_start:
            expect_problem(answer, (409, "term_ended"))
            return
        site.used -= amount
        if not site.active:
            site.allocated -= amount  # an inactive site gives its refund back to unallocated
        expected = {
            "request_id": first.request_id,
            "site": first.site,
            "refunded": amount,
            "remaining": site.remaining if site.active else 0,
            "replayed": False,
        }
        assert (answer.status, answer.body) == (201, expected)
        self.model.refunds[key] = (amount, expected)
        self.wrote(first.slot, ledger=True)

    # -- holds (rule 11) -------------------------------------------------------------------------------

    def send_hold(self, name: str, token: Token, hold_id: str, body: Any = ...) -> Answer:
        return call(name, hold_event(name, token.token, hold_id, body))

    def token_of(self, hold: ModelHold, stale: int) -> Token:
        """The site's current token, or (one time in five, or when it has none) the last one it had."""
        tokens = [token for token in self.model.tokens if (token.slot, token.site) == (hold.slot, hold.site)]
        current = [token for token in tokens if self.model.valid(token)]
        return current[-1] if current and stale < 4 else tokens[-1]

    @precondition(lambda self: self.model.current)
    @rule(pick=picks, stale=st.integers(0, 4), amount=amounts, more=st.integers(0, 5))
    def hold(self, pick: int, stale: int, amount: int, more: int) -> None:
        """``POST /v1/holds``: within what the site has left, or (one time in six) more: 402."""
        token = self.pick_token(pick, stale, funded=True)
        if more == 5:
            amount = self.remaining(token) + amount
        else:  # within what the site has left, when it has any
            amount = 1 + (amount - 1) % max(1, self.remaining(token))
        hold_id = self.next_request_id()
        answer = call("hold_create", make_event("hold_create", body={"hold_id": hold_id, "amount": amount},
                                                token=token.token))  # fmt: skip
        if self.refused_to_spend(answer, token, amount):
            return
        license_ = self.model.licenses[token.slot]
        site = license_.sites[token.site]
        site.held += amount
        assert answer.status == 201, answer.body
        assert isinstance(answer.body.pop("expires_at"), str)
        assert answer.body == {
            "hold_id": hold_id,
            "amount": amount,
            "remaining": site.remaining,
            "replayed": False,
        }
        self.model.holds[(token.slot, token.site, hold_id)] = ModelHold(
            token.slot, token.site, hold_id, amount, license_.term_start, site.activation
        )
        self.wrote(token.slot)

    @precondition(lambda self: self.model.holds)
    @rule(pick=picks, stale=st.integers(0, 4), part=st.integers(0, 4), release=st.booleans())
    def settle(self, pick: int, stale: int, part: int, release: bool) -> None:
        """Capture a hold (all, a part, none, or more than held: 422) or release it; again after
        either: the first answer, or the 409 of the other."""
        hold = list(self.model.holds.values())[pick % len(self.model.holds)]
        token = self.token_of(hold, stale)
        license_ = self.model.licenses[hold.slot]
        site = license_.sites.get(hold.site)
        if release:
            answer = self.send_hold("hold_release", token, hold.hold_id)
        else:
            amount = {0: hold.amount, 1: 0, 2: hold.amount // 2, 3: hold.amount, 4: hold.amount + 1}[part]
            answer = self.send_hold("hold_capture", token, hold.hold_id, {"amount": amount})
        if not self.model.valid(token):
            expect_problem(answer, (401, "unauthorized"))
            return
        assert site is not None
        if release:
            if hold.status == "captured":
                expect_problem(answer, (409, "hold_captured"))
                return
            if hold.status == "released":
                assert (answer.status, answer.body) == (200, hold.answer)
                return
            if self.model.hold_is_open(hold):
                site.held -= hold.amount
                self.wrote(hold.slot)
            hold.status = "released"
            hold.answer = {"hold_id": hold.hold_id, "released": hold.amount, "remaining": site.remaining}
            assert (answer.status, answer.body) == (200, hold.answer)
            return
        if hold.status == "captured":
            if amount != hold.captured:
                expect_problem(answer, (409, "idempotency_conflict"))
            else:
                assert (answer.status, answer.body) == (200, {**hold.answer, "replayed": True})
            return
        if license_.expired:
            expect_problem(answer, (403, "license_expired"))
            return
        if not self.model.hold_is_open(hold):
            expect_problem(answer, (409, "hold_expired"))
            return
        if amount > hold.amount:
            expect_problem(answer, (422, "validation_error"))
            return
        site.held -= hold.amount
        site.used += amount
        hold.status, hold.captured = "captured", amount
        hold.answer = {
            "hold_id": hold.hold_id,
            "captured": amount,
            "released": hold.amount - amount,
            "remaining": site.remaining,
            "replayed": False,
        }
        assert (answer.status, answer.body) == (200, hold.answer)
        self.wrote(hold.slot, ledger=amount > 0)

    # -- the invariants, after every step ---------------------------------------------------------

    @invariant()
    def the_service_shows_what_the_model_predicts(self) -> None:
        """The *Manage AI Credits* view (``GET .../credits``) of each license the step changed (in
        the model) is the model's, and the audit finds its counters, site index and ledger in
        agreement; every license is checked once more when the example ends (``teardown``).

        A step whose requests all failed, or that only read, is checked with the next change of
        the license it touched or at the end: it must have changed nothing, so a stray write
        still shows, one DynamoDB round trip per step cheaper. The ledger is read again when the
        step added entries (a consume, a renewal); any other entry shows then.
        """
        self.check(sorted(self.changed), read_ledgers=self.ledgers_changed)
        self.changed.clear()
        self.ledgers_changed.clear()

    def teardown(self) -> None:
        """Every license, ledger included, however the example ended (Hypothesis ends some before
        the last step)."""
        self.check(sorted(self.model.licenses), read_ledgers=set(self.model.licenses))

    def check(self, slots_: list[int], read_ledgers: set[int]) -> None:
        for slot in slots_:
            license_ = self.model.licenses[slot]
            assert license_.unallocated >= 0
            assert all(0 <= site.used <= site.allocated for site in license_.sites.values())
            answer, (stored, sites) = read_through_the_portal(license_.account_id, license_.license_id)
            assert answer.status == 200, answer.body
            assert without_activated_at(answer.body) == self.model.view(slot)
            assert stored is not None
            if slot in read_ledgers or slot not in self.ledgers:
                self.ledgers[slot] = store.ledger_entries(license_.license_id)
            assert reconcile(stored, sites, self.ledgers[slot]) == []


def _fresh_table() -> None:
    """A new, empty table from template.yaml, in the moto of ``one_moto``."""
    client, table = store.client(), os.environ["TABLE_NAME"]
    with contextlib.suppress(client.exceptions.ResourceNotFoundException):
        client.delete_table(TableName=table)
    local.cfn.ensure_table(client, table, TEMPLATE)


@pytest.fixture
def one_moto() -> Iterator[None]:
    """moto for the whole test (a fresh table per example: ``_fresh_table``), never DynamoDB
    Local."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as monkeypatch:
        # A gateway test earlier in the session may have pointed boto3 at DynamoDB Local.
        monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
        store.reset_clients()
        try:
            with mock_aws():
                yield
        finally:
            store.reset_clients()


def test_the_service_behaves_like_the_model_of_api_md(one_moto: None, fast_moto: None) -> None:
    run_state_machine_as_test(CreditsMachine, settings=settings.get_profile(PROFILE))
