"""License-key hashes: HMAC-SHA-256 with a pepper (SSM in AWS, a local value otherwise), and the
legacy plain SHA-256 that licenses provisioned before the pepper still hold."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ai_credits import config, credentials
from ai_credits.credentials import hash_license_key, legacy_license_key_hash

PARAMETER = "/ai-credits/test/license-key-pepper"
PEPPER = "an-ssm-pepper-of-more-than-32-characters-0123456789"


@pytest.fixture(autouse=True)
def fresh_pepper(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test reads its own configuration; the next test module gets the default back."""
    monkeypatch.delenv("LICENSE_KEY_PEPPER", raising=False)
    monkeypatch.delenv("LICENSE_KEY_PEPPER_PARAMETER", raising=False)
    config.settings.cache_clear()
    credentials.reset_license_key_pepper()
    yield
    monkeypatch.undo()
    config.settings.cache_clear()
    credentials.reset_license_key_pepper()


def _hmac(pepper: str, key: str) -> str:
    return hmac.new(pepper.encode(), b"ai-credits/license-key\x00" + key.encode(), hashlib.sha256).hexdigest()


def test_the_legacy_hash_is_the_old_formula_unchanged() -> None:
    # Computed with hash_license_key before the pepper (plain SHA-256, domain-separated).
    assert (
        legacy_license_key_hash("K-1") == "e40abebb772ec222e121baae40f91fd431ce1bba92071114e0e0dd85b139bdb3"
    )
    assert (
        legacy_license_key_hash("LIC-DEMO-0001")
        == "9c3f184ac5366408be2e6859ea92fa1442a0d42983bd1e3f6c6240176d0b95df"
    )


def test_the_current_hash_is_an_hmac_with_the_local_default_pepper() -> None:
    assert config.settings().license_key_pepper == config.LOCAL_LICENSE_KEY_PEPPER
    assert hash_license_key("K-1") == _hmac("local-dev-pepper-not-for-production", "K-1")
    assert hash_license_key("K-1") != legacy_license_key_hash("K-1")
    assert hash_license_key("K-1") != hash_license_key("K-2")
    assert "local-dev-pepper" not in repr(config.settings())  # the pepper stays out of reprs


def test_the_hash_depends_on_the_pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    default = hash_license_key("K-1")
    monkeypatch.setenv("LICENSE_KEY_PEPPER", "another-local-pepper")
    config.settings.cache_clear()
    credentials.reset_license_key_pepper()

    assert hash_license_key("K-1") == _hmac("another-local-pepper", "K-1") != default


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's SSM with the pepper as a SecureString; the functions configured to read it."""
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("ssm")
        client.put_parameter(Name=PARAMETER, Value=PEPPER, Type="SecureString")
        monkeypatch.setenv("LICENSE_KEY_PEPPER_PARAMETER", PARAMETER)
        monkeypatch.setenv("LICENSE_KEY_PEPPER", "ignored-when-a-parameter-is-named")
        config.settings.cache_clear()
        yield client


def test_the_pepper_is_read_from_ssm_once_decrypted_and_cached(ssm: Any) -> None:
    requests: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        requests.append(dict(params))

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    session.events.register("before-parameter-build.ssm.GetParameter", record)
    try:
        hashes = [hash_license_key("K-1"), hash_license_key("K-1"), hash_license_key("K-2")]
    finally:
        session.events.unregister("before-parameter-build.ssm.GetParameter", record)

    assert hashes == [_hmac(PEPPER, "K-1"), _hmac(PEPPER, "K-1"), _hmac(PEPPER, "K-2")]
    assert requests == [{"Name": PARAMETER, "WithDecryption": True}]  # once per container


def test_a_failed_read_is_not_cached_and_a_short_pepper_is_refused(ssm: Any) -> None:
    ssm.delete_parameter(Name=PARAMETER)
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        hash_license_key("K-1")

    ssm.put_parameter(Name=PARAMETER, Value="too-short", Type="SecureString")
    with pytest.raises(RuntimeError, match="shorter than 32") as refused:
        hash_license_key("K-1")
    assert "too-short" not in str(refused.value)

    ssm.put_parameter(Name=PARAMETER, Value=PEPPER, Type="SecureString", Overwrite=True)
    assert hash_license_key("K-1") == _hmac(PEPPER, "K-1")


def test_boto3_is_not_imported_to_hash_with_the_local_pepper() -> None:
    import subprocess
    import sys

    script = (
        "import sys; from ai_credits.credentials import hash_license_key; hash_license_key('K-1'); "
        "assert 'boto3' not in sys.modules, 'boto3 imported'"
    )
    env = {"TABLE_NAME": "t", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
