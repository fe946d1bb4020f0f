"""lib.secrets against a real Secrets Manager API: moto in server mode, a separate process on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import time
import uuid

import boto3
import pytest

from lib.secrets import SECRET_ENV_NAMES, SecretsError, load_secrets, secret_id, wanted_names

from tests.aws import FAKE_CREDS, REGION, _free_port, moto_server


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a moto server process (the ``moto_server`` entry point) on loopback, for this module."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in the process environment (boto3 reads them there) and no stray endpoint."""
    for key, value in FAKE_CREDS.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SECRETSMANAGER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def sm(moto_endpoint: str, aws_env: None):
    """A boto3 client on the moto server, for arranging secrets (the code under test builds its own)."""
    return boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_endpoint)


@pytest.fixture
def deployment(moto_endpoint: str) -> dict[str, str]:
    """The environment of one deployment with a unique DNS record, so tests never share secrets."""
    return {
        "ENVIRONMENT_TYPE": "test",
        "DNS_RECORD": f"ai-{uuid.uuid4().hex[:8]}.example.com",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_SECRETSMANAGER": moto_endpoint,
    }


def _put_all(sm, env: dict[str, str]) -> dict[str, str]:
    values = {name: f"value-of-{name.lower()}-{uuid.uuid4().hex[:6]}" for name in SECRET_ENV_NAMES}
    for name, value in values.items():
        sm.create_secret(Name=secret_id(env["ENVIRONMENT_TYPE"], env["DNS_RECORD"], name), SecretString=value)
    return values


def test_secret_id_order_is_environment_type_then_dns_record_then_lower_name() -> None:
    assert secret_id("production", "ai.example.com", "OPENAI_API_KEYS") == "production/ai.example.com/openai_api_keys"


def test_found_all_five_are_returned_by_env_var_name(sm, deployment) -> None:
    values = _put_all(sm, deployment)
    assert load_secrets(deployment, strict=True) == values


def test_name_is_built_in_order_a_secret_under_the_swapped_name_is_not_read(sm, deployment, caplog) -> None:
    swapped = f"{deployment['DNS_RECORD']}/{deployment['ENVIRONMENT_TYPE']}/aiproxy_master_key"
    sm.create_secret(Name=swapped, SecretString="wrong-place")
    with caplog.at_level(logging.INFO, logger="aiproxy.secrets"):
        got = load_secrets(deployment, strict=False, names=["AIPROXY_MASTER_KEY"])
    assert got == {}
    assert f"test/{deployment['DNS_RECORD']}/aiproxy_master_key (not found)" in caplog.text


def test_reads_secret_string_not_secret_binary(sm, deployment) -> None:
    env_type, dns = deployment["ENVIRONMENT_TYPE"], deployment["DNS_RECORD"]
    sm.create_secret(Name=secret_id(env_type, dns, "OPENAI_API_KEYS"), SecretString="sk-a,sk-b\n")
    sm.create_secret(Name=secret_id(env_type, dns, "GEMINI_API_KEY"), SecretBinary=b"binary-gemini-key")
    got = load_secrets(deployment, strict=False, names=["OPENAI_API_KEYS", "GEMINI_API_KEY"])
    assert got == {"OPENAI_API_KEYS": "sk-a,sk-b"}
    with pytest.raises(SecretsError) as info:
        load_secrets(deployment, strict=True, names=["GEMINI_API_KEY"])
    assert "gemini_api_key (has no SecretString" in str(info.value)
    assert "binary-gemini-key" not in str(info.value)


def test_rotated_secret_new_version_is_read_on_next_load(sm, deployment) -> None:
    sid = secret_id(deployment["ENVIRONMENT_TYPE"], deployment["DNS_RECORD"], "AIPROXY_MASTER_KEY")
    sm.create_secret(Name=sid, SecretString="first-master-key-0123456789")
    assert load_secrets(deployment, strict=True, names=["AIPROXY_MASTER_KEY"]) == {
        "AIPROXY_MASTER_KEY": "first-master-key-0123456789"}
    sm.put_secret_value(SecretId=sid, SecretString="second-master-key-9876543210")
    assert load_secrets(deployment, strict=True, names=["AIPROXY_MASTER_KEY"]) == {
        "AIPROXY_MASTER_KEY": "second-master-key-9876543210"}


def test_environment_overrides_and_is_not_fetched(sm, deployment) -> None:
    values = _put_all(sm, deployment)
    env = {**deployment, "AIPROXY_MASTER_KEY": "local-override", "GEMINI_API_KEY": ""}
    got = load_secrets(env, strict=True)
    assert "AIPROXY_MASTER_KEY" not in got and "GEMINI_API_KEY" not in got
    assert got == {k: v for k, v in values.items() if k not in {"AIPROXY_MASTER_KEY", "GEMINI_API_KEY"}}
    # An overridden secret need not exist at all, even in production.
    fresh = {**deployment, "DNS_RECORD": "other.example.com", **{name: "x" for name in SECRET_ENV_NAMES}}
    assert load_secrets(fresh, strict=True) == {}


def test_missing_or_empty_is_unset_even_when_strict(sm, deployment, caplog) -> None:
    values = _put_all(sm, deployment)
    missing = secret_id(deployment["ENVIRONMENT_TYPE"], deployment["DNS_RECORD"], "HONEYBADGER_API_KEY")
    sm.delete_secret(SecretId=missing, ForceDeleteWithoutRecovery=True)
    empty = secret_id(deployment["ENVIRONMENT_TYPE"], deployment["DNS_RECORD"], "GEMINI_API_KEY")
    sm.put_secret_value(SecretId=empty, SecretString="  \n")
    with caplog.at_level(logging.INFO, logger="aiproxy.secrets"):
        got = load_secrets(deployment, strict=True)
    assert got == {k: v for k, v in values.items() if k not in {"HONEYBADGER_API_KEY", "GEMINI_API_KEY"}}
    assert f"{missing} (not found)" in caplog.text and f"{empty} (empty SecretString)" in caplog.text
    assert not any(value in caplog.text for value in values.values())


def test_missing_outside_production_is_skipped_with_a_warning(sm, deployment, caplog) -> None:
    sid = secret_id(deployment["ENVIRONMENT_TYPE"], deployment["DNS_RECORD"], "OPENAI_API_KEYS")
    sm.create_secret(Name=sid, SecretString="sk-only-this-one")
    with caplog.at_level(logging.INFO, logger="aiproxy.secrets"):
        got = load_secrets(deployment, strict=False)
    assert got == {"OPENAI_API_KEYS": "sk-only-this-one"}
    assert "anthropic_api_key (not found)" in caplog.text
    assert "sk-only-this-one" not in caplog.text


def test_nothing_is_read_without_environment_type_and_dns_record(sm, deployment) -> None:
    _put_all(sm, deployment)
    assert load_secrets({k: v for k, v in deployment.items() if k != "DNS_RECORD"}, strict=True) == {}
    assert load_secrets({k: v for k, v in deployment.items() if k != "ENVIRONMENT_TYPE"}, strict=True) == {}


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"])
def test_boto3_honours_endpoint_from_the_process_environment(sm, deployment, monkeypatch, moto_endpoint,
                                                             variable) -> None:
    values = _put_all(sm, deployment)
    env = {k: v for k, v in deployment.items() if k != "AWS_ENDPOINT_URL_SECRETSMANAGER"}
    monkeypatch.setenv(variable, moto_endpoint)
    assert load_secrets(env, strict=True) == values


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SECRETSMANAGER",
                                      "AWS_ENDPOINT_URL"])
def test_endpoint_from_the_given_mapping(sm, deployment, moto_endpoint, variable) -> None:
    values = _put_all(sm, deployment)
    env = {k: v for k, v in deployment.items() if k != "AWS_ENDPOINT_URL_SECRETSMANAGER"}
    assert load_secrets({**env, variable: moto_endpoint}, strict=True) == values


def test_given_client_is_used(sm, deployment) -> None:
    values = _put_all(sm, deployment)
    env = {k: v for k, v in deployment.items() if not k.startswith("AWS_")}
    assert load_secrets(env, client=sm, strict=True) == values


def test_unreachable_endpoint_in_production_is_a_clear_error(deployment, aws_env) -> None:
    env = {**deployment, "AWS_ENDPOINT_URL_SECRETSMANAGER": f"http://127.0.0.1:{_free_port()}"}
    started = time.monotonic()
    with pytest.raises(SecretsError) as info:
        load_secrets(env, strict=True, names=["AIPROXY_MASTER_KEY"])
    assert "aiproxy_master_key (EndpointConnectionError)" in str(info.value)
    assert time.monotonic() - started < 15
    assert load_secrets(env, strict=False, names=["AIPROXY_MASTER_KEY"]) == {}


def test_secret_names_can_be_narrowed_by_the_deployment(sm, deployment) -> None:
    sid = secret_id(deployment["ENVIRONMENT_TYPE"], deployment["DNS_RECORD"], "AIPROXY_MASTER_KEY")
    sm.create_secret(Name=sid, SecretString="only-master-key-0123456789")
    env = {**deployment, "AIPROXY_SECRET_NAMES": "aiproxy_master_key"}
    assert wanted_names(env) == ("AIPROXY_MASTER_KEY",)
    assert load_secrets(env, strict=True) == {"AIPROXY_MASTER_KEY": "only-master-key-0123456789"}
    with pytest.raises(SecretsError, match="unknown secret"):
        wanted_names({"AIPROXY_SECRET_NAMES": "aiproxy_master_key,redis_password"})
