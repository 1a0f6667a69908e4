"""``ai_credits.api.strict_json_loads``: the one JSON reader of request bodies."""

from __future__ import annotations

import json

import pytest

from ai_credits.api import BEYOND_EVERY_RANGE, strict_json_loads


def test_numbers_within_pythons_limits_are_read_as_they_are() -> None:
    assert strict_json_loads('{"a": 5, "b": -7, "c": 1.5, "d": 1e3}') == {
        "a": 5,
        "b": -7,
        "c": 1.5,
        "d": 1000.0,
    }
    assert strict_json_loads("9" * 4300) == int("9" * 4300)


@pytest.mark.parametrize(("sign", "expected"), [("", BEYOND_EVERY_RANGE), ("-", -BEYOND_EVERY_RANGE)])
def test_an_integer_longer_than_python_converts_is_beyond_every_range(sign: str, expected: int) -> None:
    assert strict_json_loads(f'{{"amount": {sign}{"1" * 4301}}}') == {"amount": expected}


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', '{"a": 1, "a": 2}', "{", "[1,]"])
def test_what_rfc_8259_refuses_and_duplicate_keys_are_not_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        strict_json_loads(text)
