"""Chat completions through the Flask client with the sandbox provider: shapes, streaming, auth places."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api.conftest import chat_body

URL = "/v1/chat/completions"


def sse_events(resp) -> list[str]:
    text = resp.get_data(as_text=True)
    return [block[len("data: "):] for block in text.split("\n\n") if block.startswith("data: ")]


def test_chat_completion_shape(client, auth):
    resp = client.post(URL, json=chat_body(max_tokens=50), headers=auth)
    assert resp.status_code == 200
    data = resp.get_json()
    assert set(data) >= {"id", "object", "created", "model", "choices", "usage", "proxy_id"}
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == "sandbox"
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert "refusal" in choice["message"] and choice["message"]["refusal"] is None
    assert "sandbox" in choice["message"]["content"]
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert str(uuid.UUID(data["proxy_id"])) == data["proxy_id"]
    assert resp.headers["x-aiproxy-id"] == data["proxy_id"]


def test_sandbox_is_deterministic_and_honours_max_tokens(client, auth):
    a = client.post(URL, json=chat_body(), headers=auth).get_json()
    b = client.post(URL, json=chat_body(), headers=auth).get_json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert a["proxy_id"] != b["proxy_id"]
    short = client.post(URL, json=chat_body(max_tokens=5), headers=auth).get_json()
    assert short["usage"]["completion_tokens"] == 5
    assert short["choices"][0]["finish_reason"] == "length"


def test_plain_text_body_and_alias(client, auth):
    resp = client.post("/api/proxy", json={"model": "sandbox", "text": "Summarise our Q3 numbers"}, headers=auth)
    assert resp.status_code == 200
    assert "Summarise our Q3 numbers" in resp.get_json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("where", ["bearer", "x-api-key", "x-api-token", "api_key", "api_token"])
def test_key_accepted_in_every_documented_place(client, api_key, where):
    headers, url = {}, URL
    if where == "bearer":
        headers["Authorization"] = f"Bearer {api_key}"
    elif where == "x-api-key":
        headers["X-API-Key"] = api_key
    elif where == "x-api-token":
        headers["X-API-Token"] = api_key
    else:
        url = f"{URL}?{where}={api_key}"
    assert client.post(url, json=chat_body(), headers=headers).status_code == 200


def test_stream_sse(client, auth):
    resp = client.post(URL, json=chat_body(stream=True), headers={**auth, "Accept": "application/json"})
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 4
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)
    assert len({c["proxy_id"] for c in chunks}) == 1 and resp.headers["x-aiproxy-id"] == chunks[0]["proxy_id"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    plain = client.post(URL, json=chat_body(), headers=auth).get_json()["choices"][0]["message"]["content"]
    assert text == plain


def test_stream_include_usage(client, auth):
    resp = client.post(URL, json=chat_body(stream=True, stream_options={"include_usage": True}), headers=auth)
    chunks = [json.loads(e) for e in sse_events(resp)[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


def test_models_list_respects_key(client, admin):
    everything = client.get("/v1/models", headers={"Authorization": f"Bearer {admin.create_key()['key']}"}).get_json()
    ids = {m["id"] for m in everything["data"]}
    assert {"sandbox", "gpt-4o-mini", "claude-3-5-sonnet-20241022", "gemini-1.5-pro"} <= ids
    limited = admin.create_key(models=["sandbox", "gpt-4o*"])
    data = client.get("/v1/models", headers={"Authorization": f"Bearer {limited['key']}"}).get_json()
    assert {m["id"] for m in data["data"]} == {"sandbox", "gpt-4o", "gpt-4o-mini"}
    one = client.get("/v1/models/sandbox", headers={"Authorization": f"Bearer {limited['key']}"})
    assert one.get_json() == {"id": "sandbox", "object": "model", "created": 0, "owned_by": "sandbox",
                              "configured": True, "served_by": "sandbox"}


def test_alias_routing_from_models_file(make_settings, tmp_path):
    from src.app import create_app
    from tests.api.conftest import MASTER

    models = tmp_path / "models.yaml"
    models.write_text("models:\n  house-model: {provider: sandbox, model: sandbox}\n  gpt-4: {provider: sandbox}\n")
    app = create_app(make_settings(MODELS_FILE=str(models)))
    c = app.test_client()
    key = c.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    resp = c.post(URL, json=chat_body(model="house-model"), headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200 and resp.get_json()["model"] == "sandbox"


def test_health(client):
    h = client.get("/health")
    assert h.status_code == 200 and h.get_json()["status"] == "ok"
    v1 = client.get("/api/v1/health").get_json()
    assert set(v1) == {"status", "version", "environment"} and v1["environment"] == "test"


def test_health_503_when_redis_down(make_settings):
    from src.app import create_app

    app = create_app(make_settings(REDIS_URL="redis://127.0.0.1:1/0"))
    resp = app.test_client().get("/health")
    assert resp.status_code == 503 and resp.get_json()["status"] == "unavailable"


def test_metrics_count_requests(client, auth):
    r = client.post(URL, json=chat_body(), headers=auth)
    r.close()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'aiproxy_requests_total{cache="miss",endpoint="chat.completions",provider="sandbox",status="200"} 1.0' in text
    assert "aiproxy_tokens_total" in text


def test_metrics_need_master_when_not_public(make_settings):
    from src.app import create_app
    from tests.api.conftest import MASTER

    c = create_app(make_settings(METRICS_PUBLIC="false")).test_client()
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"Authorization": f"Bearer {MASTER}"}).status_code == 200
