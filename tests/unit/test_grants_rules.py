"""Rule 10 as pure functions: the spending order of a term's credits and the carry-over."""

from __future__ import annotations

import pytest

from ai_credits import rules
from ai_credits.domain import Grant

TERM_END = "2027-11-01T00:00:00Z"
NEXT_START = TERM_END


def grant(grant_id: str, credits: int, expires_at: str | None) -> Grant:
    return Grant(grant_id, credits, expires_at, "2027-01-01T00:00:00Z", None, "2026-11-01T00:00:00Z")


TWO_YEARS = grant("top-up", 500, "2029-11-01T00:00:00Z")


def test_the_worked_example_of_rule_10():
    # 1,000 a term plus a grant of 500 that expires in two years; 1,200 used this term
    carried = rules.carry_over(1000, TERM_END, [TWO_YEARS], 1200, NEXT_START)

    assert carried == {"top-up": 300}  # the next term starts with 1,000 + 300


@pytest.mark.parametrize(
    ("grants", "used", "remaining"),
    [
        pytest.param([TWO_YEARS], 900, {"top-up": 500}, id="the term's own credits go first"),
        pytest.param([TWO_YEARS], 1600, {"top-up": 0}, id="all spent"),
        pytest.param(
            [TWO_YEARS, grant("goodwill", 100, None)], 1050, {"goodwill": 50, "top-up": 500},
            id="a grant without expiry ends with the term: spent before a later one",
        ),
        pytest.param(
            [TWO_YEARS, grant("same-term", 100, "2027-05-01T00:00:00Z")], 1150,
            {"same-term": 0, "top-up": 450}, id="one ending within the term is spent first",
        ),
        pytest.param(
            [grant("b", 100, "2028-06-01T00:00:00Z"), grant("a", 100, "2028-06-01T00:00:00Z"),
             grant("early", 100, "2028-01-01T00:00:00Z")], 1150,
            {"early": 0, "a": 50, "b": 100}, id="later grants by expires_at, ties by grant_id",
        ),
        pytest.param(
            [grant("none", 100, None), grant("dated", 100, "2027-03-01T00:00:00Z")], 1050,
            {"none": 50, "dated": 100}, id="ties at the term's end: by expires_at (none first)",
        ),
    ],
)  # fmt: skip
def test_used_credits_are_taken_in_the_order_that_expires_first(grants, used, remaining):
    assert rules.grant_remaining(1000, TERM_END, grants, used) == remaining


@pytest.mark.parametrize(
    ("expires_at", "carried"),
    [
        (None, {}),
        ("2027-06-01T00:00:00Z", {}),
        (TERM_END, {}),
        ("2027-11-01T00:00:01Z", {"g": 100}),
    ],
    ids=["no expiry", "within the term", "at the term's end", "after the next term starts"],
)
def test_only_grants_that_outlive_the_next_terms_start_carry_over(expires_at, carried):
    assert rules.carry_over(1000, TERM_END, [grant("g", 100, expires_at)], 0, NEXT_START) == carried


def test_a_license_several_terms_behind_carries_only_what_outlives_the_term_it_catches_up_to():
    grants = [grant("short", 100, "2028-02-01T00:00:00Z"), grant("long", 100, "2030-01-01T00:00:00Z")]

    assert rules.carry_over(1000, TERM_END, grants, 0, "2028-11-01T00:00:00Z") == {"long": 100}
