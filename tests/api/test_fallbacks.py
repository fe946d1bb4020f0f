"""Routing with fallbacks and aliases against fake upstreams (real wire formats on 127.0.0.1)."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import MASTER, assert_error
from tests.fakes.upstreams import FakeUpstream

URL = "/v1/chat/completions"


@pytest.fixture
def fake():
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def routed(make_settings, fake, tmp_path):
    from src.app import create_app

    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        "  gpt-4: {provider: anthropic, model: claude-3-5-haiku-20241022, fallbacks: [gpt-4o-mini, gemini-flash]}\n"
        "  gemini-flash: {provider: gemini, model: gemini-1.5-flash}\n")
    app = create_app(make_settings(MODELS_FILE=str(models), OPENAI_API_KEYS="sk-o", OPENAI_BASE_URL=fake.url + "/v1",
                                   ANTHROPIC_API_KEY="sk-a", ANTHROPIC_BASE_URL=fake.url,
                                   GEMINI_API_KEY="g-k", GEMINI_BASE_URL=fake.url, REQUEST_TIMEOUT="3"))
    client = app.test_client()
    key = client.post("/admin/keys", json={"user_id": "u", "rpm": 0},
                      headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    return client, {"Authorization": f"Bearer {key}", "Cache-Control": "no-store"}


def ask(client, headers, text, **kw):
    return client.post(URL, json={"model": "gpt-4", "messages": [{"role": "user", "content": text}], **kw},
                       headers=headers)


def test_alias_answered_by_its_provider(routed, fake):
    client, h = routed
    resp = ask(client, h, "hello alias")
    assert resp.status_code == 200
    assert resp.headers["x-aiproxy-provider"] == "anthropic"
    assert resp.get_json()["model"].startswith("claude-3-5-haiku")
    assert fake.requests[-1].path == "/v1/messages"


def test_fallback_on_upstream_failure(routed, fake):
    client, h = routed
    resp = ask(client, h, "fall back please [fake:error=500 times=1]")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["x-aiproxy-provider"] == "openai"
    assert [r.path for r in fake.requests[-2:]] == ["/v1/messages", "/v1/chat/completions"]
    resp.close()  # the record is written when the answer is closed
    log = client.get(f"/api/logs/{resp.headers['x-aiproxy-id']}", headers=h).get_json()
    assert log["failed_attempts"] == "anthropic/claude-3-5-haiku-20241022: 502 upstream_error"  # what was tried first
    assert log["provider"] == "openai" and log["status"] == 200


def test_fallback_chain_then_last_error(routed, fake):
    client, h = routed
    resp = ask(client, h, "everyone fails [fake:error=503]")
    assert_error(resp, 503, "upstream_unavailable", "upstream_error")
    assert len([r for r in fake.requests if "everyone fails" in json.dumps(r.json or {})]) == 3


def test_client_error_is_not_retried_elsewhere(routed, fake):
    client, h = routed
    resp = ask(client, h, "bad request [fake:error=400]")
    assert_error(resp, 400, "invalid_request", "invalid_request_error")
    assert len([r for r in fake.requests if "bad request" in json.dumps(r.json or {})]) == 1


def test_streamed_fallback_before_first_byte(routed, fake):
    client, h = routed
    resp = ask(client, h, "stream fall back [fake:error=500 times=1]", stream=True)
    assert resp.status_code == 200 and resp.headers["x-aiproxy-provider"] == "openai"
    assert resp.get_data(as_text=True).rstrip().endswith("data: [DONE]")


@pytest.fixture
def openai_first(make_settings, fake, tmp_path):
    """A model served by openai first, with anthropic as its fallback."""
    from src.app import create_app

    models = tmp_path / "models.yaml"
    models.write_text("models:\n  house: {provider: openai, model: gpt-4o-mini, fallbacks: [claude-haiku]}\n")
    app = create_app(make_settings(MODELS_FILE=str(models), OPENAI_API_KEYS="sk-o", OPENAI_BASE_URL=fake.url + "/v1",
                                   ANTHROPIC_API_KEY="sk-a", ANTHROPIC_BASE_URL=fake.url, REQUEST_TIMEOUT="3"))
    client = app.test_client()
    key = client.post("/admin/keys", json={"user_id": "u", "rpm": 0},
                      headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    return client, {"Authorization": f"Bearer {key}", "Cache-Control": "no-store"}


@pytest.mark.parametrize("fault, stream", [("bad_json", False), ("not_stream", True), ("end_early", True)])
def test_malformed_upstream_answers_are_cured_by_the_fallback(openai_first, fault, stream):
    """A body that is not JSON, or not an event stream, from the first provider: an upstream error (never a
    500), so the configured fallback answers (issue 10, item 6)."""
    client, headers = openai_first
    resp = client.post(URL, headers=headers, json={"model": "house", "stream": stream,
                                                   "messages": [{"role": "user", "content": f"hi [fake:{fault}]"}]})
    body = resp.get_data(as_text=True)
    if fault == "end_early":  # the first chunks were already sent: the stream ends with the error, no fallback
        assert resp.status_code == 200 and '"code":"upstream_error"' in body and "[DONE]" not in body
        return
    assert resp.status_code == 200, body
    assert resp.headers["x-aiproxy-provider"] == "anthropic"
    if stream:
        deltas = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
        body = "".join(c["choices"][0]["delta"].get("content") or "" for c in deltas if c.get("choices"))
    assert "Echo: hi" in body
