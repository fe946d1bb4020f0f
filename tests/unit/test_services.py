"""``lib.services.build_services``: the gateway wired without Flask, with an ``httpx.MockTransport`` upstream."""

from __future__ import annotations

import json

import httpx
import pytest

from lib.services import build_services
from lib.settings import Settings
from src.app import create_app
from tests.api.conftest import MASTER


def _completion(model: str, text: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


@pytest.fixture
def services(redis_client, key_prefix):
    seen: list[dict] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if "fail" in body["messages"][-1]["content"]:
            return httpx.Response(500, json={"error": {"message": "boom", "type": "server_error"}})
        return httpx.Response(200, json=_completion(body["model"], "from the mock"))

    settings = Settings.from_env({"ENVIRONMENT": "test", "REDIS_PREFIX": key_prefix, "AIPROXY_MASTER_KEY": MASTER,
                                  "OPENAI_API_KEYS": "sk-mock", "OPENAI_BASE_URL": "http://mock.invalid/v1",
                                  "SEMANTIC_CACHE": "false", "LOG_LEVEL": "WARNING"}, config_file=None)
    svc = build_services(settings, redis=redis_client, http=httpx.Client(transport=httpx.MockTransport(upstream)))
    svc.seen = seen
    yield svc
    svc.http.close()


def _chat(client, key: str, model: str, text: str):
    return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": model, "messages": [{"role": "user", "content": text}], "cache": False})


def test_injected_http_client_reaches_the_providers(services) -> None:
    client = create_app(services=services).test_client()
    key = client.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    resp = _chat(client, key, "gpt-4o-mini", "hello")
    assert resp.status_code == 200 and resp.get_json()["choices"][0]["message"]["content"] == "from the mock"
    assert services.seen[-1]["model"] == "gpt-4o-mini"


def test_failed_attempts_are_counted_and_model_labels_stay_bounded(services) -> None:
    client = create_app(services=services).test_client()
    key = client.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    assert _chat(client, key, "gpt-4o-mini", "please fail").status_code == 502
    for i in range(3):  # names a client makes up, accepted by the gpt- prefix route
        _chat(client, key, f"gpt-made-up-{i}", "hello").close()
    text = services.metrics.render()[0].decode()
    assert 'aiproxy_upstream_errors_total{code="upstream_error",provider="openai"} 1.0' in text
    assert 'model="other"' in text and "gpt-made-up" not in text
    assert 'aiproxy_tokens_total{direction="input",model="gpt-4o-mini"}' not in text  # the failed call had none
