"""The operator's command line (``ai-credits``, local/cli.py): every command through ``main(argv)``
on moto, and the ``--help`` of each; ``usage`` and ``ledger`` on DynamoDB Local, whose stream the
stream processor reads (``stream_tap``)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
from typing import Any

import boto3
import pytest

from ai_credits import store
from ai_credits.credentials import hash_license_key
from ai_credits.models import ActivationRequest, ConsumeRequest, GrantRequest, RefundRequest
from ai_credits.services import billing, portal, usage
from ai_credits.services import plugin as services
from local import cli
from tests.integration.client import unique

TERM = ["--term-start", "2026-11-01T00:00:00Z", "--term-end", "2027-11-01T00:00:00Z"]
PAID = "2028-11-01T00:00:00Z"
KEY = "AGG-TEST-1111-2222"
KEY_PATTERN = re.compile(r"AGG(-[0-9A-HJKMNP-TV-Z]{5}){5}")


def run(*argv: str, stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    status = cli.main(list(argv), stdin=io.StringIO(stdin), out=out)
    return status, out.getvalue()


def provision(license_id: str, *extra: str, key: str = KEY, plan: str = "single-site") -> tuple[int, str]:
    return run(
        "provision", license_id, "--account-id", "acct-1", "--plan", plan, "--site-limit", "1",
        "--credits-per-term", "1000", *TERM, "--expires-at", PAID, "--key-stdin", *extra,
        stdin=key + "\n",
    )  # fmt: skip


def spend(
    license_key: str,
    site_url: str,
    amount: int,
    request_id: str,
    feature: str | None = None,
    now: str = "2026-11-02T00:00:00Z",
) -> None:
    activation = services.activate(
        ActivationRequest(license_key=license_key, site_url=site_url, environment="production"), now
    )
    token = activation.response.activation_token
    request = ConsumeRequest(amount=amount, request_id=request_id, feature=feature)
    services.consume(f"Bearer {token}", request, now)


# -- provision ----------------------------------------------------------------------------


def test_provision_with_a_generated_key_shows_the_key_once_and_stores_only_its_hash(moto_table):
    status, output = run(
        "provision", "lic-new", "--account-id", "acct-1", "--plan", "single-site", "--site-limit", "1",
        "--credits-per-term", "1000", *TERM, "--generate-key",
    )  # fmt: skip

    assert status == 0
    keys = [match.group(0) for match in KEY_PATTERN.finditer(output)]
    assert len(keys) == 1  # shown once
    key = keys[0]
    assert "created license lic-new" in output
    assert "shown once" in output
    found = store.find_license_by_key_hash(hash_license_key(key))
    assert found is not None and found.license_id == "lic-new"
    # The defaults: paid through the term's end only.
    assert found.expires_at == found.term_end == "2027-11-01T00:00:00Z"
    assert key not in json.dumps(store.ledger_entries("lic-new")) + repr(found)


def test_provision_with_a_generated_key_in_json_carries_the_key(moto_table):
    status, output = run(
        "provision", "lic-json", "--account-id", "acct-1", "--plan", "multi-site", "--site-limit", "3",
        "--credits-per-term", "500", "--term-start", "2026-11-01T00:00:00Z", "--term-months", "1",
        "--generate-key", "--json",
    )  # fmt: skip

    answer = json.loads(output)
    assert status == 0 and answer["created"] is True
    assert KEY_PATTERN.fullmatch(answer["license_key"])
    assert answer["license"]["term_end"] == "2026-12-01T00:00:00Z"
    assert (answer["license"]["credits_total"], answer["license"]["plan"]) == (500, "multi-site")


def test_generate_key_refuses_an_existing_license_and_changes_nothing(moto_table, capsys):
    provision("lic-1")
    before = store.get_license("lic-1")

    status, output = run(
        "provision", "lic-1", "--account-id", "acct-2", "--plan", "single-site", "--site-limit", "1",
        "--credits-per-term", "5", *TERM, "--generate-key",
    )  # fmt: skip

    assert status == 2 and output == ""
    assert "exists" in capsys.readouterr().err
    assert store.get_license("lic-1") == before


def test_provision_with_the_key_on_stdin_never_prints_it_and_updates_in_place(moto_table):
    status, output = provision("lic-1", "--activation", "production:https://www.Example.com/")
    assert status == 0 and "created license lic-1" in output
    assert KEY not in output
    # Rule 7 on a single-site license: the imported live site has every credit.
    assert re.search(r"example\.com\s+live\s+no\s+yes\s+1000\s+0\s+1000", output)

    status, output = run(
        "provision", "lic-1", "--account-id", "acct-1", "--plan", "single-site", "--site-limit", "2",
        "--credits-per-term", "2000", *TERM, "--expires-at", PAID, "--key-stdin", "--json",
        stdin=KEY + "\n",
    )  # fmt: skip

    answer = json.loads(output)
    assert status == 0 and answer["created"] is False and "license_key" not in answer
    # A new credits_per_term applies from the next term; allocations stay.
    assert (answer["license"]["credits_per_term"], answer["license"]["credits_total"]) == (2000, 1000)
    assert answer["license"]["site_limit"] == 2
    assert answer["license"]["sites"][0]["allocated"] == 1000
    assert KEY not in output


def test_provision_imports_a_network_activation(moto_table):
    status, output = provision(
        "lic-net", "--network-activation", "production:net.example.org", "--activation", "staging:stage.example.org",
        "--json", plan="multi-site",
    )  # fmt: skip

    sites = {site["site"]: site for site in json.loads(output)["license"]["sites"]}
    assert status == 0
    assert (sites["net.example.org"]["network"], sites["net.example.org"]["environment"]) == (True, "live")
    assert (sites["stage.example.org"]["network"], sites["stage.example.org"]["environment"]) == (
        False,
        "staging",
    )


def test_provision_refusals_name_the_field_never_the_key(moto_table, capsys):
    status, _ = provision("lic-bad", "--site-limit", "0", key="short")

    error = capsys.readouterr().err
    assert status == 2
    assert "license_key" in error and "site_limit" in error
    assert "short" not in error


def test_provision_answers_the_use_cases_refusals(moto_table, capsys):
    provision("lic-1")
    status, _ = provision("lic-2")  # the same key for another license

    assert status == 1
    assert "license_key_in_use" in capsys.readouterr().err
    assert store.get_license("lic-2") is None


def test_key_stdin_needs_a_key(moto_table, capsys):
    status, _ = provision("lic-1", key="")

    assert status == 2 and "no license key" in capsys.readouterr().err
    assert store.get_license("lic-1") is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--activation", "example.com"],  # no environment
        ["--activation", "live:example.com"],  # a contract environment, not WordPress's
        ["--term-start", "2026-11-01T00:00:00"],  # no zone
    ],
)
def test_provision_argument_errors(moto_table, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        provision("lic-1", *argv)

    assert exit_.value.code == 2
    assert store.get_license("lic-1") is None


# -- show ---------------------------------------------------------------------------------


def test_show_prints_the_license_its_sites_and_its_ledger(moto_table):
    provision("lic-1")
    spend(KEY, "https://www.example.com/", 5, "import-42:item-7")

    status, output = run("show", "lic-1", "--now", "2026-12-01T00:00:00Z")

    assert status == 0
    assert "license lic-1: account acct-1, single-site, site_limit 1" in output
    assert "status active; term 2026-11-01T00:00:00Z .. 2027-11-01T00:00:00Z (12 months)" in output
    assert re.search(r"example\.com\s+live\s+no\s+yes\s+1000\s+5\s+995", output)
    assert "ledger (1 entries)" in output
    assert re.search(
        r"consume\s+2026-11-02T00:00:00Z\s+example\.com\s+import-42:item-7\s+5\s+remaining_after=995", output
    )
    for secret in (KEY, hash_license_key(KEY), "act1.", "hash"):
        assert secret not in output


def test_show_json_and_the_expired_credits_of_a_renewal(moto_table):
    provision("lic-1")
    spend(KEY, "example.com", 5, "r-1")
    run("renew", "--now", "2027-11-01T01:00:00Z")

    status, output = run("show", "lic-1", "--json", "--now", "2029-01-01T00:00:00Z")

    answer = json.loads(output)
    assert status == 0
    assert answer["license"]["status"] == "expired"
    assert answer["license"]["term_start"] == "2027-11-01T00:00:00Z"
    consume, expiry, sites = answer["ledger"]
    assert (consume["type"], consume["site"], consume["amount"], consume["request_id"]) == (
        "consume",
        "example.com",
        5,
        "r-1",
    )
    assert (expiry["type"], expiry["expired"]) == ("expiry", 995)
    assert (sites["type"], sites["sites"], sites["used"]) == (
        "expiry_sites",
        {"example.com": 995},
        {"example.com": 5},
    )
    assert not {"pk", "sk", "body_hash", "token_hash", "key_hash"} & {
        key for entry in answer["ledger"] for key in entry
    }
    assert "hash" not in output


def test_show_an_unknown_license(moto_table, capsys):
    status, output = run("show", "lic-nope")

    assert (status, output) == (1, "")
    assert "not_found" in capsys.readouterr().err


# -- renew --------------------------------------------------------------------------------


def test_renew_all_due_then_not_due(moto_table):
    provision("lic-1")
    status, output = run(
        "provision", "lic-unpaid", "--account-id", "acct-1", "--plan", "single-site", "--site-limit", "1",
        "--credits-per-term", "10", *TERM, "--generate-key",
    )  # fmt: skip
    assert status == 0

    status, output = run("renew", "--now", "2027-11-01T01:00:00Z")

    assert status == 0
    assert "renewal at 2027-11-01T01:00:00Z" in output
    assert "renewed (1): lic-1" in output and "expired (1): lic-unpaid" in output
    assert "failed (0): -" in output
    status, output = run("renew", "lic-1", "--now", "2027-11-01T02:00:00Z", "--json")
    assert status == 0
    assert json.loads(output) == {
        "now": "2027-11-01T02:00:00Z",
        "renewed": [],
        "expired": [],
        "not_due": ["lic-1"],
        "failed": [],
    }


def test_renew_reports_a_failing_license_and_exits_1(moto_table):
    status, output = run("renew", "lic-missing", "--now", "2027-11-01T01:00:00Z", "--json")

    report = json.loads(output)
    assert status == 1
    assert report["failed"][0]["license_id"] == "lic-missing"
    assert "NotFound" in report["failed"][0]["error"]


# -- audit --------------------------------------------------------------------------------


def test_audit_finds_no_drift_then_the_drift_of_a_tampered_counter(moto_table):
    provision("lic-1")
    spend(KEY, "example.com", 7, "r-1")
    assert run("audit") == (0, f"audit of {moto_table}: no drift\n")

    boto3.client("dynamodb").update_item(
        TableName=moto_table,
        Key=store.site_key("lic-1", "example.com"),
        UpdateExpression="SET used = :used",
        ExpressionAttributeValues={":used": {"N": "6"}},
    )
    status, output = run("audit", "lic-1")

    assert status == 1
    assert "DRIFT lic-1: example.com: remaining 993 != allocated 1000 - used 6" in output
    assert output.endswith(f"audit of {moto_table}: 1 license(s) drifted\n")
    status, output = run("audit", "lic-1", "lic-gone", "--json")
    answer = json.loads(output)
    assert status == 1 and answer["table"] == moto_table
    assert answer["drift"]["lic-gone"] == ["no such license"]


# -- usage and ledger (derived from the table's stream: on DynamoDB Local) ----------------

RANGE = ["--from", "2026-11-01T00:00:00Z", "--to", "2026-12-31T00:00:00Z"]


def _two_sites_spending(stream_tap: Any) -> str:
    """A multi-site license (example.com 600, example.org 400) and five consumes over three days
    of two months, handed to the stream processor; its id."""
    license_id, key = unique("lic-usage"), unique("AGG-USAGE")
    sites = ["--activation", "production:example.com", "--activation", "production:example.org"]
    assert provision(license_id, "--site-limit", "2", *sites, key=key, plan="multi-site")[0] == 0
    portal.apply_allocations(
        "acct-1", license_id, {"example.com": 600, "example.org": 400}, "2026-11-01T12:00:00Z"
    )
    spend(key, "example.com", 5, "r-1", "rewrite", "2026-11-02T10:00:00Z")
    spend(key, "example.com", 7, "r-2", "summarize", "2026-11-02T11:00:00Z")
    spend(key, "example.org", 20, "r-3", "rewrite", "2026-11-02T12:00:00Z")
    spend(key, "example.com", 3, "r-4", None, "2026-11-03T09:00:00Z")  # no feature: "other"
    spend(key, "example.org", 10, "r-5", "translate", "2026-12-01T08:00:00Z")
    stream_tap.drain()
    return license_id


@pytest.mark.integration
def test_usage_by_site_feature_and_day_as_a_table(stream_tap):
    license_id = _two_sites_spending(stream_tap)

    status, output = run("usage", license_id, *RANGE)

    assert status == 0
    assert output.startswith(
        f"usage of {license_id}: 2026-11-01T00:00:00Z .. 2026-12-31T00:00:00Z, by day\n"
        "credits 45, requests 5\n\nsites (2)\n"
    )
    # the sites by credits, most first, with their features
    assert re.search(r"example\.org\s+30\s+2\s+rewrite=20 translate=10\n", output)
    assert re.search(r"example\.com\s+15\s+3\s+other=3 rewrite=5 summarize=7\n", output)
    assert output.index("example.org") < output.index("example.com")
    # the days with activity, oldest first, each by site
    days = output[output.index("days with activity (3)") :].splitlines()[2:]
    assert [re.split(r"\s{2,}", line) for line in days] == [
        ["2026-11-02T00:00:00Z", "32", "3", "example.org=20 example.com=12"],
        ["2026-11-03T00:00:00Z", "3", "1", "example.com=3"],
        ["2026-12-01T00:00:00Z", "10", "1", "example.org=10"],
    ]


@pytest.mark.integration
def test_usage_per_month_as_csv_and_json(stream_tap):
    license_id = _two_sites_spending(stream_tap)

    status, output = run("usage", license_id, *RANGE, "--granularity", "month", "--format", "csv")

    # A line per month with activity, a column per site (most credits first)
    assert status == 0
    assert output == (
        "start,credits,requests,example.org,example.com\r\n"
        "2026-11-01T00:00:00Z,35,4,20,15\r\n"
        "2026-12-01T00:00:00Z,10,1,10,0\r\n"
    )
    status, output = run("usage", license_id, *RANGE, "--format", "json")
    answer = json.loads(output)
    assert status == 0
    assert (answer["from"], answer["to"], answer["granularity"]) == (
        "2026-11-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
        "day",
    )
    assert (answer["credits"], answer["requests"]) == (45, 5)
    assert answer["sites"][0] == {
        "site": "example.org",
        "credits": 30,
        "requests": 2,
        "features": {"rewrite": 20, "translate": 10},
    }
    assert [bucket["start"][:10] for bucket in answer["buckets"]] == [
        "2026-11-02",
        "2026-11-03",
        "2026-12-01",
    ]


@pytest.mark.integration
def test_ledger_pages_newest_first_and_the_whole_statement_as_csv(stream_tap):
    # Given a single-site license: three consumes, a refund of one and a top-up
    license_id, key = unique("lic-ledger"), unique("AGG-LEDGER")
    assert provision(license_id, "--activation", "production:example.com", key=key)[0] == 0
    spend(key, "example.com", 5, "r-1", "rewrite", "2026-11-02T10:00:00Z")
    spend(key, "example.com", 7, "r-2", "summarize", "2026-11-02T11:00:00Z")
    spend(key, "example.com", 3, "r-3", None, "2026-11-03T09:00:00Z")
    billing.refund(
        license_id, RefundRequest(site_url="example.com", request_id="r-2"), "2026-11-04T00:00:00Z"
    )
    billing.grant_credits(license_id, GrantRequest(grant_id="topup-1", credits=500), "2026-11-05T00:00:00Z")
    stream_tap.drain()

    # The first page: the newest entries (the term's, written at provisioning, now), and the next one's cursor
    status, output = run("ledger", license_id, "--limit", "2")

    assert status == 0
    lines = output.splitlines()
    assert lines[0] == f"ledger of {license_id}: 2 entries, newest first"
    assert lines[1].split() == [name.upper() for name in usage.CSV_COLUMNS]
    assert re.match(r"\S+\s+term\s+1000\s+2026-11-01T00:00:00Z\s+-\s+-\s+-\s+-\s+-$", lines[2])
    assert re.match(
        r"2026-11-05T00:00:00Z\s+grant\s+500\s+2026-11-01T00:00:00Z\s+-\s+-\s+-\s+topup-1\s+-$", lines[3]
    )
    cursor = re.fullmatch(r"next page: --cursor (\S+)", lines[-1])
    assert cursor is not None

    # The next pages, as JSON, until next_cursor is null
    entries: list[dict[str, Any]] = []
    next_cursor: str | None = cursor.group(1)
    while next_cursor is not None:
        status, output = run(
            "ledger", license_id, "--limit", "2", "--cursor", next_cursor, "--format", "json"
        )
        assert status == 0
        page = json.loads(output)
        entries += page["entries"]
        next_cursor = page["next_cursor"]
    assert entries == [
        {
            "at": "2026-11-04T00:00:00Z",
            "type": "refund",
            "credits": 7,
            "site": "example.com",
            "request_id": "r-2",
            "feature": "summarize",
            "term_start": "2026-11-01T00:00:00Z",
        },
        {
            "at": "2026-11-03T09:00:00Z",
            "type": "consume",
            "credits": -3,
            "site": "example.com",
            "request_id": "r-3",
            "term_start": "2026-11-01T00:00:00Z",
        },
        {
            "at": "2026-11-02T11:00:00Z",
            "type": "consume",
            "credits": -7,
            "site": "example.com",
            "request_id": "r-2",
            "feature": "summarize",
            "term_start": "2026-11-01T00:00:00Z",
        },
        {
            "at": "2026-11-02T10:00:00Z",
            "type": "consume",
            "credits": -5,
            "site": "example.com",
            "request_id": "r-1",
            "feature": "rewrite",
            "term_start": "2026-11-01T00:00:00Z",
        },
    ]

    # Every entry as CSV: exactly the statement the portal downloads
    status, output = run("ledger", license_id, "--format", "csv")

    assert status == 0
    assert output == usage.ledger_csv(None, license_id)
    rows = output.split("\r\n")
    assert rows[0] == ",".join(usage.CSV_COLUMNS)
    assert [row.split(",")[1] for row in rows[1:-1]] == [
        "term",
        "grant",
        "refund",
        "consume",
        "consume",
        "consume",
    ]
    assert rows[-1] == ""


def test_ledger_csv_is_every_entry_never_a_page(moto_table, capsys):
    provision("lic-1")

    assert run("ledger", "lic-1", "--format", "csv", "--limit", "5") == (2, "")
    assert "every entry" in capsys.readouterr().err


def test_usage_and_ledger_refusals(moto_table, capsys):
    provision("lic-1")

    assert run("usage", "lic-nope") == (1, "")
    assert "not_found" in capsys.readouterr().err
    assert run("ledger", "lic-nope") == (1, "")
    assert "not_found" in capsys.readouterr().err
    backwards = ["--from", "2026-12-01T00:00:00Z", "--to", "2026-11-01T00:00:00Z"]
    assert run("usage", "lic-1", *backwards) == (1, "")
    assert "validation_error: from (2026-12-01T00:00:00Z) must be before to" in capsys.readouterr().err
    assert run("ledger", "lic-1", "--cursor", "not-a-cursor") == (1, "")
    assert "validation_error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["ledger", "lic-1", "--limit", "0"],
        ["ledger", "lic-1", "--limit", "501"],
        ["ledger", "lic-1", "--format", "xml"],
        ["usage", "lic-1", "--granularity", "week"],
        ["usage", "lic-1", "--from", "2026-11-01"],  # a date, not a time with a zone
    ],
)
def test_usage_and_ledger_argument_errors(argv):
    with pytest.raises(SystemExit) as exit_:
        run(*argv)

    assert exit_.value.code == 2


# -- the table ----------------------------------------------------------------------------


def test_the_table_comes_from_the_option_and_the_environment_is_restored(moto_table, monkeypatch):
    saved = dict(os.environ)
    # Another table: moto answers that it does not exist; the table name was the option's.
    status, _ = run("audit", "--table", "no-such-table", "--region", "eu-west-1")

    assert status == 1
    assert dict(os.environ) == saved
    assert run("audit", "--table", moto_table)[0] == 0


def test_without_a_table_it_asks_for_one(moto_table, monkeypatch, capsys):
    monkeypatch.delenv("TABLE_NAME")

    assert run("audit") == (2, "")
    assert "--table" in capsys.readouterr().err


def _local_environment(**overrides: Any) -> dict[str, str | None]:
    names = ("AWS_ENDPOINT_URL_DYNAMODB", "TABLE_NAME", "AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION")
    options: dict[str, Any] = {"local": True, "table": None, "endpoint_url": None, "region": None}
    arguments = argparse.Namespace(**{**options, **overrides})
    with cli._environment(arguments) as table:
        assert os.environ["TABLE_NAME"] == table
        return {name: os.environ.get(name) for name in names}


def test_local_means_make_runs_dynamodb_and_table(monkeypatch):
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "TABLE_NAME", "AWS_ACCESS_KEY_ID", "DYNAMODB_LOCAL_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert _local_environment() == {
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000",
        "TABLE_NAME": "ai-credits-local",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    assert "AWS_ENDPOINT_URL_DYNAMODB" not in os.environ and "TABLE_NAME" not in os.environ

    monkeypatch.setenv("DYNAMODB_LOCAL_PORT", "8123")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    assert _local_environment(table="t")["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:8123"
    assert _local_environment(table="t")["AWS_ACCESS_KEY_ID"] == "mine"
    # make run with AWS_ENDPOINT_URL_DYNAMODB uses that DynamoDB: so does --local.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9000")
    assert _local_environment(table="t")["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:9000"
    assert _local_environment(endpoint_url="http://other:1")["AWS_ENDPOINT_URL_DYNAMODB"] == "http://other:1"


# -- help ---------------------------------------------------------------------------------


def _help(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_command(capsys):
    text = _help(capsys=capsys)

    assert text.startswith("usage: ai-credits")
    for command in ("provision", "show", "renew", "audit", "usage", "ledger"):
        assert re.search(rf"^\s+{command}\s+\S", text, re.MULTILINE), command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "provision",
            ["LICENSE_ID", "--account-id", "--plan", "{single-site,multi-site}", "--site-limit",
             "--credits-per-term", "--term-months", "--term-start", "--term-end", "--expires-at",
             "--activation ENVIRONMENT:SITE_URL", "--network-activation", "--generate-key", "--key-stdin",
             "shown", "--json"],
        ),
        ("show", ["LICENSE_ID", "--now", "--json", "ledger"]),
        ("renew", ["[LICENSE_ID ...]", "--now", "--json", "RenewFunction"]),
        ("audit", ["[LICENSE_ID ...]", "--json", "drift"]),
        ("usage", ["LICENSE_ID", "--from", "--to", "--granularity {day,month}", "--format {table,csv,json}", "feature"]),
        ("ledger", ["LICENSE_ID", "--limit N", "--cursor", "--format {table,csv,json}", "newest first"]),
    ],
)  # fmt: skip
def test_help_of_each_command(command, expected, capsys):
    text = _help(command, capsys=capsys)

    assert text.startswith(f"usage: ai-credits {command}")
    for option in [*expected, "--table NAME", "--endpoint-url URL", "--region", "--local", "--help"]:
        assert option in text, option
