"""Input that would break storage (issue 10): over-long sites, dot segments, loose timestamps.

A site key is at most 255 UTF-8 bytes (API.md, "Site URL normalization") and timestamps sent in
are RFC 3339 date-times (API.md, "Words"); anything else is a 422 problem+json that writes nothing.
"""

from __future__ import annotations

import boto3
import pytest

from tests.handlers.conftest import LICENSE_TEMPLATE, Answer, invoke, make_event

KEY = "key-limits-secret"
PREFIX = "https://example.com/"  # "example.com/" is 12 bytes of the key


@pytest.fixture
def single(provision):
    provision("lic-limits", license_key=KEY)
    return KEY


def _is_validation_problem(answer: Answer, loc: list[str]) -> None:
    assert (answer.status, answer.code) == (422, "validation_error"), answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.body["status"] == 422
    assert [error["loc"] for error in answer.body["errors"]] == [loc]


def _items(table: str) -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


# -- site_url: 255 bytes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "site_url",
    [
        pytest.param(PREFIX + "a" * 244, id="256 ASCII bytes"),
        pytest.param(PREFIX + "é" * 122, id="256 bytes in 122 two-byte characters"),
        pytest.param(PREFIX + "a" * 2000, id="2012 bytes"),
    ],
)
def test_an_activation_whose_site_is_over_255_bytes_is_a_422_and_writes_nothing(single, table, site_url):
    before = _items(table)

    answer = invoke(
        "activate",
        make_event(
            "activate", body={"license_key": single, "site_url": site_url, "environment": "production"}
        ),
    )

    _is_validation_problem(answer, ["body", "site_url"])
    assert "255" in answer.body["errors"][0]["msg"]
    assert _items(table) == before


@pytest.mark.parametrize(
    "path",
    [pytest.param("a" * 243, id="255 ASCII bytes"), pytest.param("é" * 121 + "a", id="255 bytes multibyte")],
)
def test_an_activation_whose_site_is_exactly_255_bytes_is_stored(single, activate, balance, path):
    answer = activate(single, PREFIX + path + "/")

    assert answer.status == 201, answer.body
    assert answer.body["site"] == "example.com/" + path
    assert len(answer.body["site"].encode("utf-8")) == 255
    assert balance(answer.body["activation_token"]).body["site"]["site"] == "example.com/" + path


def test_an_imported_activation_over_255_bytes_is_a_422_and_no_license_is_created(table):
    body = {
        **LICENSE_TEMPLATE,
        "license_key": "key-import-long",
        "activations": [{"site_url": PREFIX + "a" * 244, "environment": "production"}],
    }

    answer = invoke("provision", make_event("provision", body=body, path_license_id="lic-import-long"))

    _is_validation_problem(answer, ["body", "activations", "0", "site_url"])
    assert _items(table) == []


# -- site_url: dot segments and the staging path ----------------------------------------------


def test_dot_segments_name_the_same_site_and_cannot_hide_a_live_site_as_staging(single, activate):
    first = activate(single, "https://www.example.com/blog/")
    # "/staging/123/.." is the site's root: live, not a Bluehost staging copy.
    disguised = activate(single, "https://example.com/staging/123/../../blog/./")

    assert (first.status, first.body["site"], first.body["environment"]) == (201, "example.com/blog", "live")
    assert (disguised.status, disguised.body["site"]) == (200, "example.com/blog")
    assert disguised.body["environment"] == "live"


def test_an_uppercase_staging_path_is_a_staging_copy(single, activate):
    activate(single, "https://example.com/")

    answer = activate(single, "https://example.com/STAGING/1234/")

    assert answer.status == 201, answer.body
    assert (answer.body["site"], answer.body["environment"]) == ("example.com/STAGING/1234", "staging")
    assert answer.body["credits"]["allocated"] == 0


# -- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("term_start", "2026-W01-1T00:00:00Z", id="ISO week date"),
        pytest.param("term_start", "2026-11-01", id="date alone"),
        pytest.param("term_start", "2026-11-01T00:00:00", id="no zone"),
        pytest.param("term_start", "2026-11-01T00:00:00+0100", id="offset without colon"),
        pytest.param("term_start", "2026-11-01T00:00Z", id="no seconds"),
        pytest.param("term_end", "20270-11-01T00:00:00Z", id="five-digit year"),
        pytest.param("term_end", "027-11-01T00:00:00Z", id="three-digit year"),
        pytest.param("expires_at", "2027-11-01 00:00:00Z", id="space for T"),
        pytest.param("expires_at", "9999-12-31T23:00:00-05:00", id="after 9999 in UTC"),
    ],
)
def test_a_timestamp_that_is_not_rfc3339_is_a_422_in_the_admin_put(provision, table, field, value):
    answer = provision("lic-time", license_key="key-time-secret", **{field: value})

    _is_validation_problem(answer, ["body", field])
    assert _items(table) == []


def test_rfc3339_offsets_and_lowercase_are_stored_as_utc_z(provision):
    answer = provision(
        "lic-time-ok",
        license_key="key-time-ok-secret",
        term_start="2026-11-01t01:00:00.5+01:00",
        term_end="2027-10-31T19:00:00-05:00",
        expires_at="2027-11-01T00:00:00z",
    )

    assert answer.status == 201, answer.body
    assert (answer.body["term_start"], answer.body["term_end"], answer.body["expires_at"]) == (
        "2026-11-01T00:00:00Z",
        "2027-11-01T00:00:00Z",
        "2027-11-01T00:00:00Z",
    )
