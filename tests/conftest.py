"""Shared fixtures for every test folder.

Two kinds of database backends, never at the same moment:

- ``moto_table``: an in-process fake (moto) per test. Fast; right for unit and handler tests.
- ``dynamodb_local`` / ``ddb_local_env`` / ``gateway``: AWS's DynamoDB Local (a Java process started
  once per session) and the local API gateway in front of the real functions. Needed wherever
  conditional writes and transactions must behave like DynamoDB.

boto3 finds DynamoDB Local through ``AWS_ENDPOINT_URL_DYNAMODB``, a process-wide variable. Fixtures
that need it set it (``gateway`` for the rest of the session, ``ddb_local_env`` per test) and
``moto_table`` removes it for its test, so both kinds can run in one session, one after the other;
do not run a moto test and a gateway request concurrently (e.g. from threads).

The rules package caches its boto3 client per process; fixtures that switch backends call
``ai_credits.store.reset_clients()`` (when it exists) before and after, so the client is rebuilt for
the right endpoint. Tests are never given real AWS credentials: see ``pytest_configure``.

Every test under ``tests/integration/`` is marked ``integration`` automatically
(``pytest -m "not integration"`` skips them).
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.apigw import GatewaySettings
from local.cfn import ensure_table, load_template, table_create_kwargs, table_ttl_attribute
from local.dynamodb_local import ensure_installed, free_port, start
from local.gateway import GatewayServer, build_gateway
from local.tokens import DEFAULT_BILLING_ROLE_ARN, make_portal_token
from tests.serving import served

TESTS_DIR = Path(__file__).resolve().parent
TEST_TABLE_NAME = "ai-credits-test"

#: The environment every test runs in (set before collection, so import-time settings see it).
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "TABLE_NAME": TEST_TABLE_NAME,
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "AICredits",
    "POWERTOOLS_SERVICE_NAME": "ai-credits",
    # The billing role the admin routes accept (events/provision.json is a session of it; the
    # local gateway's admin token stands for one too).
    "BILLING_ROLE_ARN": DEFAULT_BILLING_ROLE_ARN,
}
#: Removed from the environment: real credentials and config must never reach a test.
_REMOVED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    # The local gateway's credentials: tests use the documented defaults, whatever the shell has.
    "LOCAL_JWT_SECRET",
    "LOCAL_JWT_AUDIENCE",
    "LOCAL_JWT_ISSUER",
    "LOCAL_ADMIN_TOKEN",
    # License keys are hashed with the local pepper in tests (ai_credits.config), never a shell's.
    "LICENSE_KEY_PEPPER",
    "LICENSE_KEY_PEPPER_PARAMETER",
)
_ENDPOINT_VAR = "AWS_ENDPOINT_URL_DYNAMODB"
#: AWS_ENDPOINT_URL_DYNAMODB as it was when pytest started (an external DynamoDB to use), if any.
_external_dynamodb_endpoint: str | None = None


def _apply_fake_aws_env() -> None:
    os.environ.update(FAKE_AWS_ENV)
    for name in _REMOVED_ENV:
        os.environ.pop(name, None)
    # ~/.aws/config could name a profile's region or endpoint: point boto3 at files that don't exist.
    missing = str(Path(tempfile.gettempdir()) / "ai-credits-tests-no-aws-config")
    os.environ["AWS_CONFIG_FILE"] = missing
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = missing
    # Test traffic goes to 127.0.0.1 only, even when a proxy is configured for the registries.
    no_proxy = os.environ.get("NO_PROXY", "")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(
        filter(None, [no_proxy, "127.0.0.1", "localhost"])
    )


def pytest_configure(config: pytest.Config) -> None:
    """Install the fake AWS environment before test modules are imported (handlers and settings
    may read it at import time), remembering a DynamoDB endpoint given from outside."""
    global _external_dynamodb_endpoint
    _external_dynamodb_endpoint = os.environ.get(_ENDPOINT_VAR) or None
    _apply_fake_aws_env()
    # moto adds its request stubber to botocore's built-in handlers when it is imported, and a
    # botocore session takes those handlers when it is made: import it before the rules package
    # makes its one session (ai_credits.store.botocore_session), or moto could never intercept
    # that session's clients. The stubber passes every request through while no mock is on.
    importlib.import_module("moto.core.models")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration/ with ``pytest.mark.integration``."""
    integration_dir = TESTS_DIR / "integration"
    for item in items:
        if integration_dir in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def _reset_store_clients() -> None:
    """Drop the rules package's cached boto3 clients, if the package (and function) exist yet."""
    try:
        store = importlib.import_module("ai_credits.store")
    except ModuleNotFoundError as exc:
        if exc.name not in ("ai_credits", "ai_credits.store"):
            raise  # the store exists but one of its imports is broken: that must surface
        return
    reset = getattr(store, "reset_clients", None)
    if reset is not None:
        reset()


def _store_client() -> Any:
    """The rules package's DynamoDB client (made from its one botocore session: cheap to remake
    after ``reset_clients``, unlike ``boto3.client`` after moto has dropped boto3's session)."""
    from ai_credits import store

    return store.client()


@pytest.fixture(scope="session", autouse=True)
def aws_test_env() -> Iterator[dict[str, str]]:
    """Fake AWS credentials/region and the service's settings for the whole session (autouse).

    Sets ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` = ``testing``, region ``us-east-1``,
    ``TABLE_NAME=ai-credits-test``, ``POWERTOOLS_TRACE_DISABLED=1``,
    ``POWERTOOLS_METRICS_NAMESPACE=AICredits``, ``POWERTOOLS_SERVICE_NAME=ai-credits``; removes
    ``AWS_PROFILE``, session tokens and ``AWS_ENDPOINT_URL_DYNAMODB`` (a DynamoDB given from
    outside is still used by ``dynamodb_local``). Yields the variables it set.
    """
    _apply_fake_aws_env()
    yield dict(FAKE_AWS_ENV)


@pytest.fixture(autouse=True)
def new_execution_environment(aws_test_env: dict[str, str]) -> None:
    """Each test starts like a new execution environment: no ``remaining`` seen by a consume
    (``services.consume``'s guesses), so request counts do not depend on earlier tests."""
    from ai_credits.services import plugin as services

    services.forget_seen_balances()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """``template.yaml`` loaded with CloudFormation tags (``!Ref x`` -> ``{"Ref": "x"}``)."""
    return load_template()


@pytest.fixture
def table_name() -> str:
    """The table the functions use in tests (``TABLE_NAME``)."""
    return TEST_TABLE_NAME


#: The moto mock, kept on from one moto test to the next (starting it registers some 1,200 URL
#: patterns: about 11 ms a test); ``moto_test_scope`` turns it off before any other test.
_moto: Any = None


def _stop_moto() -> None:
    global _moto
    if _moto is not None:
        _moto.stop()
        _moto = None


@pytest.fixture(autouse=True)
def moto_test_scope(request: pytest.FixtureRequest) -> None:
    """moto only for the tests that ask for ``moto_table``: it is stopped before any other test
    (moto's ``responses`` patch would otherwise answer the local gateway's HTTP in its place)."""
    if "moto_table" not in request.fixturenames:
        _stop_moto()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_moto()


@pytest.fixture
def moto_table(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh moto DynamoDB with the template's table (keys, GSIs, TTL); yields the table name.

    Every moto backend starts empty (a reset when the mock is already on). ``AWS_ENDPOINT_URL_DYNAMODB``
    is removed for the test (otherwise boto3 would bypass moto and talk to DynamoDB Local), and the
    rules package's cached client is reset before and after.
    """
    global _moto
    from moto import mock_aws
    from moto.core.base_backend import BackendDict

    monkeypatch.delenv(_ENDPOINT_VAR, raising=False)
    _reset_store_clients()
    if _moto is None:
        _moto = mock_aws()
        _moto.start()
    else:
        BackendDict.reset()
    # The template's table, made directly: on an empty moto it is ACTIVE at once, so
    # ensure_table's waiting and checking (its describes) would only double the setup.
    client = _store_client()
    client.create_table(**table_create_kwargs(template, TEST_TABLE_NAME))
    ttl_attribute = table_ttl_attribute(template)
    if ttl_attribute is not None:
        client.update_time_to_live(
            TableName=TEST_TABLE_NAME,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
        )
    yield TEST_TABLE_NAME
    _reset_store_clients()


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[str]:
    """The endpoint URL of a DynamoDB Local for this session.

    When ``AWS_ENDPOINT_URL_DYNAMODB`` was set as pytest started, that DynamoDB is used as is;
    otherwise DynamoDB Local is fetched if needed and started in memory on a free port, and stopped
    at the end. The variable is *not* set here: use ``ddb_local_env`` or ``gateway``.
    """
    if _external_dynamodb_endpoint:
        yield _external_dynamodb_endpoint
        return
    ensure_installed()
    with start(free_port(), None) as server:
        yield server.endpoint


_tables_ready: set[tuple[str, str]] = set()


def _ensure_local_table(endpoint: str, template: dict[str, Any]) -> None:
    if (endpoint, TEST_TABLE_NAME) not in _tables_ready:
        ensure_table(boto3.client("dynamodb"), TEST_TABLE_NAME, template)
        _tables_ready.add((endpoint, TEST_TABLE_NAME))


@pytest.fixture
def ddb_local_env(
    dynamodb_local: str, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Point boto3 at DynamoDB Local for one test (``AWS_ENDPOINT_URL_DYNAMODB``); yields the table name.

    The table is created once per session and shared by all tests: use unique ids (uuid4) in
    each test rather than expecting an empty table.
    """
    monkeypatch.setenv(_ENDPOINT_VAR, dynamodb_local)
    _reset_store_clients()
    _ensure_local_table(dynamodb_local, template)
    yield TEST_TABLE_NAME
    _reset_store_clients()


# Execution environments (worker processes) of the test gateway: enough for the races to
# really interleave at DynamoDB Local.
GATEWAY_CONCURRENCY = 8


@pytest.fixture(scope="session")
def gateway_settings() -> GatewaySettings:
    """The gateway's local credentials in tests: always the documented defaults (a developer's
    ``LOCAL_*`` variables do not change test outcomes)."""
    return GatewaySettings()


@pytest.fixture(scope="session")
def gateway(
    dynamodb_local: str, template: dict[str, Any], gateway_settings: GatewaySettings
) -> Iterator[str]:
    """The local API gateway serving template.yaml's functions; yields its base URL.

    Started once per session on a free port, in a background thread, against DynamoDB Local (the
    table is created first). ``AWS_ENDPOINT_URL_DYNAMODB`` stays set in ``os.environ`` from the
    first test that uses this fixture until the session ends, because the in-process handlers
    read it whenever their client is (re)built; ``moto_table`` removes it for its own tests. The
    environment is restored at the end of the session.
    """
    saved_endpoint = os.environ.get(_ENDPOINT_VAR)
    os.environ[_ENDPOINT_VAR] = dynamodb_local
    _reset_store_clients()
    _ensure_local_table(dynamodb_local, template)

    def build() -> GatewayServer:
        server = build_gateway(
            template,
            "127.0.0.1",
            0,
            gateway_settings,
            table_name=TEST_TABLE_NAME,
            concurrency=GATEWAY_CONCURRENCY,
        )
        server.wait_until_warm()
        return server

    try:
        with served(build, poll_interval=0.1) as server:
            yield server.base_url
    finally:
        _reset_store_clients()
        if saved_endpoint is None:
            os.environ.pop(_ENDPOINT_VAR, None)
        else:
            os.environ[_ENDPOINT_VAR] = saved_endpoint


@pytest.fixture(scope="session")
def admin_headers(gateway_settings: GatewaySettings) -> dict[str, str]:
    """Headers for the admin (billing) routes: ``Authorization: Bearer <local admin token>``."""
    return {"Authorization": f"Bearer {gateway_settings.admin_token}"}


@pytest.fixture(scope="session")
def portal_token(gateway_settings: GatewaySettings) -> Callable[..., str]:
    """A factory: ``portal_token("acct-1")`` is an HS256 portal JWT for account ``acct-1`` valid
    one hour; keyword arguments add or override claims (``portal_token("a", exp=0)``)."""

    def make(sub: str, **claims: Any) -> str:
        return make_portal_token(sub, secret=gateway_settings.jwt_secret, **claims)

    return make


@pytest.fixture
def http() -> Iterator[Any]:
    """A ``requests.Session`` that ignores proxy settings (test traffic stays on 127.0.0.1)."""
    import requests

    with requests.Session() as session:
        session.trust_env = False
        yield session


class StreamTap:
    """The table's stream on DynamoDB Local from the moment the tap is made (later shards from
    their start), handed to the stream processor in this process (so tests can patch what it
    calls). ``fetch`` returns what was written since the last fetch, in the Lambda event's shape."""

    def __init__(self, table: str) -> None:
        import os

        import boto3

        self.arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.client = boto3.client("dynamodbstreams", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
        self.iterators: dict[str, str | None] = {
            shard_id: self._iterator(shard_id, "LATEST") for shard_id in self._shards()
        }

    def _shards(self) -> list[str]:
        description = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]
        return [shard["ShardId"] for shard in description["Shards"]]

    def _iterator(self, shard_id: str, kind: str) -> str:
        return self.client.get_shard_iterator(StreamArn=self.arn, ShardId=shard_id, ShardIteratorType=kind)[
            "ShardIterator"
        ]

    def fetch(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for shard_id in self._shards():
            if shard_id not in self.iterators:
                self.iterators[shard_id] = self._iterator(shard_id, "TRIM_HORIZON")
            while self.iterators[shard_id]:
                answer = self.client.get_records(ShardIterator=self.iterators[shard_id], Limit=1000)
                self.iterators[shard_id] = answer.get("NextShardIterator")
                if not answer["Records"]:
                    break
                records.extend(answer["Records"])
        for record in records:
            created = record["dynamodb"].get("ApproximateCreationDateTime", 0)
            record["dynamodb"]["ApproximateCreationDateTime"] = (
                created.timestamp() if hasattr(created, "timestamp") else created
            )
        return records

    def deliver(self, records: list[dict[str, Any]], batch_size: int = 100) -> list[Any]:
        from ai_credits.services import stream

        return [
            stream.process(records[start : start + batch_size])
            for start in range(0, len(records), batch_size)
        ]

    def drain(self) -> list[Any]:
        return self.deliver(self.fetch())

    def caught_up(self, read: Callable[[], Any], done: Callable[[Any], bool], seconds: float = 15) -> Any:
        """``read()`` after the processor had what the stream holds, again until ``done`` (the
        stream lags the writes a little)."""
        deadline = time.monotonic() + seconds
        while True:
            self.drain()
            value = read()
            if done(value) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert done(value), f"not caught up after {seconds} s: {value}"
        return value


class RecordingBus:
    """Stands in for the EventBridge client: keeps every PutEvents entry."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(len(self.entries))} for _ in Entries]}

    def events(self, license_id: str) -> list[dict[str, Any]]:
        import json

        found = [
            {"detail_type": entry["DetailType"], **json.loads(entry["Detail"])} for entry in self.entries
        ]
        return [event for event in found if event["license_id"] == license_id]


@pytest.fixture
def stream_tap(ddb_local_env: str) -> StreamTap:
    return StreamTap(ddb_local_env)


@pytest.fixture
def event_bus(monkeypatch: pytest.MonkeyPatch) -> RecordingBus:
    from ai_credits import bus

    recording = RecordingBus()
    monkeypatch.setattr(bus, "client", lambda: recording)
    return recording


# -- make e2e ------------------------------------------------------------------------------------
# The e2e tier's plugin (the target of the cases marked ``e2e``). Its pytest_configure runs before
# this module's: it takes what a deployed stack needs from the real environment before
# ``_apply_fake_aws_env`` replaces it (tests/e2e/plugin.py).
pytest_plugins = ["tests.e2e.plugin"]
