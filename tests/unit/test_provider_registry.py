"""A provider type is one module plus one registry line: a throwaway type registered here, touching no other
file, is configurable from the environment (and Secrets Manager), routable by its prefix and listed."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from lib import secrets
from lib.providers import REGISTRY
from lib.providers.base import make_chunk, make_completion, make_usage
from lib.providers.registry import ProviderConfig, ProviderType
from lib.router import Router
from lib.settings import Settings, SettingsError
from src.app import create_app
from tests.api.conftest import MASTER


class EchoProvider:
    """The whole adapter of the throwaway type: echoes the last message, says which key it used."""

    def __init__(self, config: ProviderConfig, http: Any) -> None:
        self.name = config.name or "echo"
        self._keys = config.api_keys
        self.base_url = config.base_url

    def configured(self) -> bool:
        return bool(self._keys)

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        text = f"echo[{self._keys[0]}]: {body['messages'][-1]['content']}"
        return make_completion(model=model, content=text, finish_reason="stop", prompt_tokens=2, completion_tokens=3)

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        yield make_chunk(id="chatcmpl-echo", model=model, created=0, delta={"role": "assistant", "content": "echo"})
        yield make_chunk(id="chatcmpl-echo", model=model, created=0, delta={}, finish_reason="stop")
        yield make_chunk(id="chatcmpl-echo", model=model, created=0, with_choice=False, usage=make_usage(2, 1))


ECHO = ProviderType(name="echo", adapter=EchoProvider, key_env=("ECHO_API_KEYS", "ECHO_API_KEY"),
                    base_url_env="ECHO_BASE_URL", default_base_url="https://echo.invalid/v9",
                    prefixes=("echo-",), models=("echo-small",))


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> ProviderType:
    monkeypatch.setitem(REGISTRY, "echo", ECHO)
    return ECHO


def test_type_configures_its_default_instance_from_its_own_variables(echo_registered) -> None:
    settings = Settings.from_env({"ECHO_API_KEY": "k1, k2", "ECHO_BASE_URL": "http://127.0.0.1:9/v9/"}, config_file=None)
    config = settings.providers["echo"]
    assert config.api_keys == ("k1", "k2") and config.base_url == "http://127.0.0.1:9/v9"
    assert config.name == config.type == "echo"
    assert "k1" not in repr(config) and "k1" not in str(settings.redacted())
    with pytest.raises(SettingsError, match="ECHO_BASE_URL"):
        Settings.from_env({"ECHO_BASE_URL": "ftp://nope"}, config_file=None)
    assert "ECHO_API_KEYS" in secrets.secret_env_names()  # and so read from Secrets Manager as echo_api_keys
    assert secrets.wanted_names({"AIPROXY_SECRET_NAMES": "echo_api_keys"}) == ("ECHO_API_KEYS",)


def test_type_routes_by_prefix_and_lists_its_models(echo_registered) -> None:
    router = Router.load()
    assert router.resolve("echo-large").provider == "echo"
    assert "echo-small" in [r.name for r in router.listed()]
    assert router.resolve("gpt-4o").provider == "openai"  # the built-in types are untouched


def test_type_serves_requests_through_the_whole_pipeline(echo_registered, redis_url, key_prefix) -> None:
    settings = Settings.from_env({"ENVIRONMENT": "test", "REDIS_URL": redis_url, "REDIS_PREFIX": key_prefix,
                                  "AIPROXY_MASTER_KEY": MASTER, "SEMANTIC_CACHE": "false", "LOG_LEVEL": "WARNING",
                                  "ECHO_API_KEYS": "secret-echo-key"}, config_file=None)
    app = create_app(settings)
    assert "echo" in app.extensions["aiproxy"].configured_providers()
    client = app.test_client()
    admin = {"Authorization": f"Bearer {MASTER}"}
    key = client.post("/admin/keys", json={"user_id": "u"}, headers=admin).get_json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    models = client.get("/v1/models", headers=auth).get_json()["data"]
    assert {"id": "echo-small", "object": "model", "created": 0, "owned_by": "echo", "configured": True,
            "served_by": "echo"} in models
    resp = client.post("/v1/chat/completions", headers=auth,
                       json={"model": "echo-large", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["x-aiproxy-provider"] == "echo"
    assert resp.get_json()["choices"][0]["message"]["content"] == "echo[secret-echo-key]: hi"
    resp.close()  # the request is recorded once its response is closed
    log = client.get(f"/api/logs/{resp.get_json()['proxy_id']}", headers=auth).get_json()
    assert (log["provider"], log["model"], log["prompt_tokens"], log["completion_tokens"]) == ("echo", "echo-large", 2, 3)
