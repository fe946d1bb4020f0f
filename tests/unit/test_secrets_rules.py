"""Which secrets a deployment needs, against moto in server mode: the master key and ``REDIS_URL`` are required,
a provider key only when a route of ``MODELS_FILE`` uses the provider, Honeybadger is optional; a secret that
does not exist is unset, one that cannot be read (AccessDenied) stops start-up in test and production."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import uuid
from pathlib import Path

import boto3
import httpx
import pytest

from lib.secrets import secret_id
from lib.settings import Settings, SettingsError
from tests.aws import REGION, moto_server

ROOT = Path(__file__).resolve().parents[2]
MASTER = "Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a-secret"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory):
    """A moto server that checks IAM after its first 4 requests: an admin arranges secrets, a 'task' user may
    read them, an 'other-task' user may not touch Secrets Manager (their keys are returned for the code under
    test)."""
    with moto_server(tmp_path_factory.mktemp("moto-iam"), unauthenticated_actions=4) as url:
        admin = {"region_name": REGION, "endpoint_url": url, "aws_access_key_id": "testing",
                 "aws_secret_access_key": "testing"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="admin")
        admin_key = iam.create_access_key(UserName="admin")["AccessKey"]
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        iam.create_user(UserName="task")  # 4 unauthenticated requests used; from here on IAM is checked
        admin = {**admin, "aws_access_key_id": admin_key["AccessKeyId"], "aws_secret_access_key": admin_key["SecretAccessKey"]}
        iam = boto3.client("iam", **admin)
        task_key = iam.create_access_key(UserName="task")["AccessKey"]
        iam.put_user_policy(UserName="task", PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                                    "Resource": "*"}]}))
        iam.create_user(UserName="other-task")  # a role scoped to something else: no Secrets Manager at all
        denied_key = iam.create_access_key(UserName="other-task")["AccessKey"]
        iam.put_user_policy(UserName="other-task", PolicyName="logs", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]}))
        yield {"url": url, "sm": boto3.client("secretsmanager", **admin),
               "task": {"AWS_ACCESS_KEY_ID": task_key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": task_key["SecretAccessKey"]},
               "nobody": {"AWS_ACCESS_KEY_ID": denied_key["AccessKeyId"],
                          "AWS_SECRET_ACCESS_KEY": denied_key["SecretAccessKey"]}}


@pytest.fixture
def deployment(aws, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for key, value in aws["task"].items():
        monkeypatch.setenv(key, value)
    return {"ENVIRONMENT": "production", "ENVIRONMENT_TYPE": "production", "DNS_RECORD": f"ai-{uuid.uuid4().hex[:8]}.example.com",
            "AWS_REGION": REGION, "AWS_ENDPOINT_URL_SECRETSMANAGER": aws["url"]}


def put(aws, env: dict[str, str], **secrets: str) -> None:
    for name, value in secrets.items():
        aws["sm"].create_secret(Name=secret_id(env["ENVIRONMENT_TYPE"], env["DNS_RECORD"], name), SecretString=value)


def test_only_master_key_and_redis_url_is_enough_for_production(aws, deployment, redis_url, caplog) -> None:
    put(aws, deployment, AIPROXY_MASTER_KEY=MASTER, REDIS_URL=redis_url)
    with caplog.at_level(logging.WARNING):
        settings = Settings.from_env(deployment, config_file=None)
    assert settings.master_key == MASTER and settings.redis_url == redis_url
    assert not any(config.api_keys for config in settings.providers.values())
    assert "HONEYBADGER_API_KEY is not set" in caplog.text  # optional: a warning, not a failure
    assert MASTER not in caplog.text


@pytest.mark.parametrize("environment", ["test", "production"])
def test_a_secret_that_cannot_be_read_stops_start_up(aws, deployment, environment, monkeypatch) -> None:
    env = {**deployment, "ENVIRONMENT": environment, "ENVIRONMENT_TYPE": environment}
    put(aws, env, AIPROXY_MASTER_KEY=MASTER)
    for key, value in aws["nobody"].items():  # a role without secretsmanager:GetSecretValue
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env, config_file=None)
    assert "AccessDenied" in str(info.value) and "aiproxy_master_key" in str(info.value)
    assert MASTER not in str(info.value)


@pytest.mark.parametrize("environment", ["test", "production"])
def test_the_required_ones_are_named_when_missing(aws, deployment, redis_url, environment) -> None:
    env = {**deployment, "ENVIRONMENT": environment, "ENVIRONMENT_TYPE": environment}
    with pytest.raises(SettingsError, match="AIPROXY_MASTER_KEY is required .*(Secrets Manager|'aiproxy_master_key')"):
        Settings.from_env({**env, "REDIS_URL": redis_url}, config_file=None)
    put(aws, env, AIPROXY_MASTER_KEY=MASTER)
    with pytest.raises(SettingsError, match="REDIS_URL is required"):
        Settings.from_env(env, config_file=None)


def test_a_provider_key_is_required_only_when_a_route_uses_it(aws, deployment, redis_url, tmp_path) -> None:
    put(aws, deployment, AIPROXY_MASTER_KEY=MASTER, REDIS_URL=redis_url)
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  house-model: {provider: anthropic, model: claude-sonnet-4-20250514}\n")
    with pytest.raises(SettingsError, match="'house-model' to provider 'anthropic'.*ANTHROPIC_API_KEY.*anthropic_api_key"):
        Settings.from_env({**deployment, "MODELS_FILE": str(models)}, config_file=None)
    put(aws, deployment, ANTHROPIC_API_KEY="sk-ant-from-secrets")
    settings = Settings.from_env({**deployment, "MODELS_FILE": str(models)}, config_file=None)
    assert settings.providers["anthropic"].api_keys == ("sk-ant-from-secrets",)


def _start(env: dict[str, str]) -> subprocess.Popen:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "SEMANTIC_CACHE": "false",
            "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    return subprocess.Popen([str(ROOT / "bin" / "start.sh")], env={**base, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_the_real_server_starts_on_secrets_alone_and_refuses_when_denied(aws, deployment, redis_url) -> None:
    """bin/start.sh, as the container runs it: production with nothing but the two required secrets serves;
    with a role that may not read them it exits with the reason."""
    import signal
    import time

    put(aws, deployment, AIPROXY_MASTER_KEY=MASTER, REDIS_URL=redis_url)
    from lib.store import free_port

    port = free_port()
    proc = _start({**deployment, **aws["task"], "PORT": str(port)})
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
        admin = httpx.get(f"http://127.0.0.1:{port}/admin/keys", headers={"Authorization": f"Bearer {MASTER}"})
        assert admin.status_code == 200  # the master key from Secrets Manager is the one in force
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    denied = _start({**deployment, **aws["nobody"], "PORT": str(free_port())})
    output = denied.communicate(timeout=60)[0]
    assert denied.returncode != 0 and "AI Proxy cannot start" in output and "AccessDenied" in output
    assert MASTER not in output
