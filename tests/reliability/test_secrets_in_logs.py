"""No license key, activation token or token secret in any log line, response or table item.

A full run — provisioning (with imported activations), activation, token rotation, balance (and
its 304), consume (charged, replayed, conflicting, refused), Apply and its refusals, portal reads,
deactivation, the refusals a leaked or wrong credential gets, malformed and invalid bodies that
carry a key, a handler crash, a scheduled renewal and a one-license renewal — by calling the
handlers in this process (``tests/handlers/conftest.py``), on moto, at DEBUG level, while
capturing everything:

- ``sys.stdout``/``sys.stderr`` (capsys): the metrics' EMF lines, prints, tracebacks;
- every ``logging`` record of every logger, at DEBUG (caplog on the root logger: botocore,
  Powertools' own package logger...);
- the Powertools ``Logger``'s own handler, whose stream was bound when the module was first
  imported (possibly to another test's capture): it is pointed at our buffer for the test.

The capture is checked to be non-vacuous (EMF lines, the renewal run's JSON log line, DEBUG
records) before it is searched.

A second test sends credentials in query strings through the local gateway and searches the
gateway's own access lines (the ``local.gateway`` logger, in this process).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.tokens import make_portal_token
from tests.handlers.conftest import LICENSE_TEMPLATE, invoke, make_event, renew, sample_event
from tests.integration.client import Api, unique

TERM_END = "2027-11-01T00:00:00Z"


class Secrets:
    """Every credential the run hands out or sends, and where each may legitimately appear."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, name: str, value: str) -> str:
        self.values[name] = value
        if value.startswith("act1."):
            self.values[f"{name} (secret part)"] = value.rsplit(".", 1)[1]
        return value

    def found_in(self, text: str) -> list[str]:
        return sorted(name for name, value in self.values.items() if value in text)


#: The attributes every LogRecord has; anything else came in through ``extra=`` (and JSON
#: formatters, Powertools' and Lambda's, write those out).
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _record_text(record: logging.LogRecord) -> str:
    extras = {name: value for name, value in vars(record).items() if name not in _RECORD_ATTRIBUTES}
    return f"{record.name} {record.levelname} {record.getMessage()} {extras} {record.exc_text or ''}"


@pytest.fixture
def capture(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[int], Callable[[], str]]]:
    """``start(level)`` captures everything written from then on; the function it returns gives
    the text captured so far (stdout, stderr, every stream handler, every log record)."""
    from ai_credits.observability import logger

    previous_level = logger.log_level
    buffer = io.StringIO()
    redirected: list[tuple[logging.StreamHandler[Any], Any]] = []

    def start(level: int) -> Callable[[], str]:
        name = logging.getLevelName(level)
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", name)
        logger.setLevel(name)
        caplog.set_level(level)  # the root logger: every propagating logger
        capsys.readouterr()
        loggers = [
            logging.getLogger(),
            *(
                each
                for each in logging.Logger.manager.loggerDict.values()
                if isinstance(each, logging.Logger)
            ),
        ]
        for each in loggers:
            for handler in each.handlers:
                # Every stream handler but pytest's own (caplog's is one) and files.
                ours = not type(handler).__module__.startswith("_pytest")
                if (
                    ours
                    and isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler)
                ):
                    # Not setStream(): it flushes the old stream, which may be an earlier
                    # test's capture, closed by now.
                    redirected.append((handler, handler.stream))
                    handler.stream = buffer
        assert redirected, "the Powertools logger has no stream handler to capture"

        def text() -> str:
            captured = capsys.readouterr()
            records = "\n".join(_record_text(record) for record in caplog.records)
            return "\n".join([buffer.getvalue(), captured.out, captured.err, records, caplog.text])

        return text

    try:
        yield start
    finally:
        for handler, stream in redirected:
            handler.stream = stream
        logger.setLevel(previous_level)


def _portal(event_name: str, account: str, jwt: str, license_id: str | None = None, body: Any = ...) -> Any:
    event = make_event(event_name, body=body, path_license_id=license_id)
    event["headers"]["authorization"] = f"Bearer {jwt}"
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = account
    return invoke(event_name, event)


def _full_run(secrets: Secrets) -> list[Any]:
    """The whole life of two licenses; returns every answer (bodies checked by the caller)."""
    account = f"acct-{uuid.uuid4().hex[:8]}"
    jwt = secrets.add("portal JWT", make_portal_token(account))
    single_key = secrets.add("single-site license key", f"LK-SINGLE-{uuid.uuid4().hex}")
    multi_key = secrets.add("multi-site license key", f"LK-MULTI-{uuid.uuid4().hex}")
    unknown_key = secrets.add("unknown license key", f"LK-UNKNOWN-{uuid.uuid4().hex}")
    answers: list[Any] = []

    def call(event_name: str, *, body: Any = ..., raw_body: str | None = None, token: str | None = None,
             license_id: str | None = None, headers: dict[str, str] | None = None) -> Any:  # fmt: skip
        event = make_event(
            event_name, body=body, raw_body=raw_body, token=token, headers=headers, path_license_id=license_id
        )
        answer = invoke(event_name, event)
        answers.append(answer)
        return answer

    def provision(license_id: str, key: str, **fields: Any) -> Any:
        body = {
            **LICENSE_TEMPLATE,
            "account_id": account,
            "license_key": key,
            "expires_at": "2028-11-01T00:00:00Z",
            **fields,
        }
        return call("provision", body=body, license_id=license_id)

    # Billing: a single-site and a multi-site license (rule 7 import); an update; a key clash.
    assert provision("lic-single", single_key).status == 201
    assert provision("lic-multi", multi_key, plan="multi-site", site_limit=3, activations=[
        {"site_url": "https://multi-one.com/", "environment": "production"},
        {"site_url": "staging.multi-one.com", "environment": "staging"},
    ]).status == 201  # fmt: skip
    assert provision("lic-single", single_key, credits_per_term=2000).status == 200
    assert provision("lic-clash", single_key).status == 409
    assert (
        call("provision", raw_body=f'{{"license_key": "{single_key}", ', license_id="lic-bad").status == 400
    )
    assert provision("lic-bad", single_key, plan="unlimited").status == 422

    # Plugin: activation, rotation, a staging site, an unknown key, invalid bodies carrying a key.
    def activate(key: str, site_url: str, environment: str = "production", **fields: Any) -> Any:
        return call(
            "activate", body={"license_key": key, "site_url": site_url, "environment": environment, **fields}
        )

    first = activate(single_key, "https://www.shop.com/")
    assert first.status == 201
    secrets.add("rotated activation token", first.body["activation_token"])
    live = activate(single_key, "shop.com")
    assert live.status == 200
    live_token = secrets.add("live activation token", live.body["activation_token"])
    staging = activate(single_key, "staging.shop.com", "staging")
    staging_token = secrets.add("staging activation token", staging.body["activation_token"])
    network = activate(multi_key, "https://multi-one.com/", network=True)
    network_token = secrets.add("network activation token", network.body["activation_token"])
    assert activate(unknown_key, "shop.com").status == 404
    assert activate(single_key, "ftp://shop.com").status == 422
    assert activate(single_key, "other-live.com").status == 409
    assert (
        call("activate", body={"license_key": single_key, "site_url": 5, "environment": "production"}).status
        == 422
    )
    assert (
        call(
            "activate",
            body={"license_key": single_key * 40, "site_url": "x.com", "environment": "production"},
        ).status
        == 422
    )
    assert call("activate", raw_body=f'{{"license_key": "{single_key}", "site_url": NaN}}').status == 400

    # Balance, and its ETag.
    balance = call("get_balance", token=live_token, headers={"if-none-match": ""})
    assert balance.status == 200
    assert (
        call("get_balance", token=live_token, headers={"if-none-match": balance.headers["etag"]}).status
        == 304
    )

    # Consume: charged, replayed, conflicting, too much, with rotated/garbled/unknown tokens.
    def consume(token: str, amount: Any, request_id: str, **fields: Any) -> Any:
        return call("consume", body={"amount": amount, "request_id": request_id, **fields}, token=token)

    assert consume(live_token, 25, "req-1", feature="rewrite").status == 200
    assert consume(live_token, 25, "req-1", feature="rewrite").body["replayed"] is True
    assert consume(live_token, 26, "req-1").status == 409
    assert consume(live_token, 1_000_000, "req-2").status == 402
    assert consume(secrets.values["rotated activation token"], 1, "req-3").status == 401
    assert consume(live_token[:-2] + "xx", 1, "req-4").status == 401
    assert consume(f"act1.{live_token.split('.')[1]}.{'A' * 43}", 1, "req-5").status == 401
    assert consume(live_token, 1.5, "req-6").status == 422
    assert (
        call("consume", raw_body='{"amount": 1, "amount": 2, "request_id": "dup"}', token=live_token).status
        == 400
    )
    assert consume(staging_token, 1, "req-7").status == 402  # staging starts with 0

    # Portal: the list, the credits view, Apply and its refusals.
    answers.append(_portal("list_licenses", account, jwt))
    answers.append(_portal("get_credits", account, jwt, "lic-single"))
    answers.append(
        _portal(
            "put_allocations",
            account,
            jwt,
            "lic-single",
            {"allocations": {"shop.com": 900, "staging.shop.com": 100}},
        )
    )
    answers.append(
        _portal("put_allocations", account, jwt, "lic-single", {"allocations": {"shop.com": 5000}})
    )
    answers.append(
        _portal("put_allocations", account, jwt, "lic-single", {"allocations": {"nowhere.com": 1}})
    )
    answers.append(
        _portal("put_allocations", account, jwt, "lic-multi", {"allocations": {"multi-one.com": 600}})
    )
    answers.append(_portal("get_credits", "acct-intruder", jwt, "lic-single"))
    assert [answer.status for answer in answers[-7:]] == [200, 200, 200, 409, 404, 200, 404]
    assert consume(staging_token, 10, "req-8").status == 200
    assert consume(network_token, 10, "req-9", subsite_url="blog.multi-one.com").status == 200

    # Deactivation; the revoked token afterwards.
    assert call("deactivate", token=staging_token).status == 204
    assert consume(staging_token, 1, "req-10").status == 401
    assert call("deactivate", token=staging_token).status == 401

    # A crash (a body that is not UTF-8: a known bug), logged as the Lambda runtime would.
    crash = make_event("activate")
    crash["body"] = base64.b64encode(
        f'{{"license_key": "{single_key}", "site_url": "\xff"}}'.encode("latin-1")
    ).decode()
    crash["isBase64Encoded"] = True
    try:
        answers.append(invoke("activate", crash))
    except Exception:
        traceback.print_exc()

    # The scheduler: the hourly run after the term ended, then one license by id.
    event = sample_event("renew-scheduled")
    event["time"] = "2027-11-01T01:00:00Z"
    assert sorted(renew(event)["renewed"]) == ["lic-multi", "lic-single"]
    assert renew({"license_id": "lic-single", "time": "2027-11-02T00:00:00Z"})["not_due"] == ["lic-single"]
    assert consume(live_token, 5, "req-11").status in (200, 402)
    return answers


def _table_text(table_name: str) -> str:
    from ai_credits import store

    items: list[Any] = []
    kwargs: dict[str, Any] = {"TableName": table_name}
    while True:
        page = store.client().scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(items) > 10
    return json.dumps(items)


def _logged_run(capture: Callable[[int], Callable[[], str]], level: int) -> tuple[str, Secrets]:
    from ai_credits import store

    store.reset_clients()
    text = capture(level)
    secrets = Secrets()
    _full_run(secrets)
    captured = text()
    # Not vacuous: the metrics, the Powertools JSON logs and the records were all captured.
    assert (
        '"CloudWatchMetrics"' in captured
        and '"CreditsConsumed"' in captured
        and '"Activations_live"' in captured
    )
    assert '"message":"renewal run"' in captured  # the renew function's Powertools JSON line
    assert '"level":"INFO"' in captured
    assert len(captured.splitlines()) > 15
    assert len(secrets.values) >= 10
    if level <= logging.DEBUG:
        assert " DEBUG " in captured and "botocore" in captured  # e.g. botocore's request lines
    return captured, secrets


def _tokens(secrets: Secrets) -> Secrets:
    only = Secrets()
    only.values = {name: value for name, value in secrets.values.items() if "license key" not in name}
    return only


def test_a_full_run_at_debug_level_logs_no_token_and_no_token_secret(
    moto_table: str, capture: Callable[[int], Callable[[], str]]
) -> None:
    text, secrets = _logged_run(capture, logging.DEBUG)
    assert any("activation token" in name for name in _tokens(secrets).values)
    assert _tokens(secrets).found_in(text) == []


def test_a_full_run_at_debug_level_logs_no_license_key(
    moto_table: str, capture: Callable[[int], Callable[[], str]]
) -> None:
    text, secrets = _logged_run(capture, logging.DEBUG)
    assert secrets.found_in(text) == []


def test_a_full_run_at_info_level_logs_no_secret_at_all(
    moto_table: str, capture: Callable[[int], Callable[[], str]]
) -> None:
    """The template's default LogLevel (INFO): no key, no token, no token secret, no JWT."""
    text, secrets = _logged_run(capture, logging.INFO)
    assert secrets.found_in(text) == []


def test_no_response_returns_a_key_or_another_sites_token_and_the_table_stores_neither(
    moto_table: str,
) -> None:
    from ai_credits import store

    store.reset_clients()
    secrets = Secrets()
    answers = _full_run(secrets)

    for answer in answers:
        body = json.dumps(answer.body) + json.dumps(answer.headers)
        own = answer.body.get("activation_token") if isinstance(answer.body, dict) else None
        leaked = [
            name for name in secrets.found_in(body) if own is None or not own.endswith(secrets.values[name])
        ]
        assert leaked == [], answer.body
    assert secrets.found_in(_table_text(moto_table)) == []


def test_the_gateways_access_lines_carry_no_credential_from_a_query_string(
    gateway: str, admin_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    api = Api(gateway)
    license_id = unique("logs")
    key = f"LK-QUERY-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    assert api.provision(license_id, license_key=key).status == 201
    token = api.activate(key, f"{unique('logs')}.com").body["activation_token"]
    secrets = Secrets()
    secrets.add("license key", key)
    secrets.add("activation token", token)
    secrets.add("admin token", admin_headers["Authorization"].split(" ", 1)[1])

    assert api.call("GET", f"/v1/balance?token={token}&license_key={key}", token=token).status == 200
    assert (
        api.call(
            "POST", f"/v1/consume?license_key={key}", {"amount": 1, "request_id": "q-1"}, token=token
        ).status
        == 200
    )
    assert api.call("POST", f"/v1/activations?k={key}", raw=f'{{"license_key": "{key}"').status == 400
    assert api.call("GET", f"/v1/balance?token={token}", token=token + "x").status == 401
    assert api.call("GET", f"/v1/nothing-here?token={token}", token=token).status == 404

    access = [record for record in caplog.records if record.name == "local.gateway"]
    assert len(access) >= 5, "the gateway's access lines were not captured"
    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records) + caplog.text
    assert secrets.found_in(text) == []
