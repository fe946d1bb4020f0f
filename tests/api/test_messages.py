"""``/v1/messages`` and ``/v1/messages/count_tokens`` through the Flask client: native passthrough for Claude
models, translation for the others (fake upstreams), Anthropic's event sequence, and every bad input as
Anthropic's error shape with the exact status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import MASTER
from tests.api.test_openapi_conformance import MODELS, fake  # noqa: F401 - fixture

URL = "/v1/messages"
TOOL = {"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def gw(make_settings, fake):  # noqa: F811
    from src.app import create_app

    app = create_app(make_settings(OPENAI_API_KEYS="sk-o", OPENAI_BASE_URL=fake.url + "/v1", ANTHROPIC_API_KEY="sk-a",
                                   ANTHROPIC_BASE_URL=fake.url, GEMINI_API_KEY="g-k", GEMINI_BASE_URL=fake.url))
    c = app.test_client()
    key = c.post("/admin/keys", json={"user_id": "u", "rpm": 0}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    return c, {"x-api-key": key, "anthropic-version": "2023-06-01", "Cache-Control": "no-store"}


def ask(c, h, **body: Any):
    body.setdefault("max_tokens", 256)
    body.setdefault("messages", [{"role": "user", "content": "hello there"}])
    return c.post(URL, json=body, headers=h)


def events(resp) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in resp.get_data(as_text=True).split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def assert_anthropic_error(resp, status: int, kind: str) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    data = resp.get_json()
    assert data["type"] == "error" and set(data["error"]) == {"type", "message"}, data
    assert data["error"]["type"] == kind and "Traceback" not in data["error"]["message"]
    return data["error"]["message"]


@pytest.mark.parametrize("provider", list(MODELS))
def test_plain_message_every_provider(gw, fake, provider):  # noqa: F811
    c, h = gw
    resp = ask(c, h, model=MODELS[provider], system="Be brief.")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    data = resp.get_json()
    assert data["type"] == "message" and data["role"] == "assistant" and data["stop_reason"] == "end_turn"
    assert data["content"][0]["type"] == "text"
    if provider != "sandbox":
        assert data["content"][0]["text"] == "Echo: hello there"
    assert data["usage"]["input_tokens"] > 0 and data["usage"]["output_tokens"] > 0
    assert resp.headers["x-aiproxy-provider"] == provider and resp.headers["request-id"]


def test_claude_is_passed_through_natively_with_thinking_and_cache_control(gw, fake):  # noqa: F811
    c, h = gw
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    resp = ask(c, {**h, "anthropic-beta": "interleaved-thinking-2025-05-14"}, model=MODELS["anthropic"],
               system=system, thinking=thinking, max_tokens=2048, top_k=5)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    sent = fake.requests[-1]
    assert sent.json["system"] == system and sent.json["thinking"] == thinking and sent.json["top_k"] == 5
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    content = resp.get_json()["content"]
    assert content[0]["type"] == "thinking" and content[0]["signature"] and content[1]["text"] == "Echo: hello there"
    streamed = events(ask(c, h, model=MODELS["anthropic"], thinking=thinking, max_tokens=2048, stream=True))
    deltas = [e["delta"]["type"] for kind, e in streamed if kind == "content_block_delta"]
    assert "thinking_delta" in deltas and "signature_delta" in deltas and "text_delta" in deltas


@pytest.mark.parametrize("provider", list(MODELS))
def test_stream_is_anthropics_event_sequence(gw, provider):
    c, h = gw
    got = events(ask(c, h, model=MODELS[provider], stream=True))
    kinds = [k for k, _ in got]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    text = "".join(e["delta"]["text"] for k, e in got if k == "content_block_delta" and e["delta"]["type"] == "text_delta")
    if provider != "sandbox":
        assert text == "Echo: hello there"
    delta = got[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("provider", list(MODELS))
def test_tools_round_trip_every_provider(gw, provider):
    c, h = gw
    first = ask(c, h, model=MODELS[provider], tools=[TOOL], messages=[{"role": "user", "content": "Paris"}]).get_json()
    assert first["stop_reason"] == "tool_use", first
    use = next(b for b in first["content"] if b["type"] == "tool_use")
    assert use["name"] == "get_weather" and use["input"] == {"city": "Paris"}
    history = [{"role": "user", "content": "Paris"}, {"role": "assistant", "content": first["content"]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}]}]
    second = ask(c, h, model=MODELS[provider], tools=[TOOL], messages=history).get_json()
    assert second["stop_reason"] == "end_turn" and "sunny" in second["content"][0]["text"]
    streamed = events(ask(c, h, model=MODELS[provider], tools=[TOOL], stream=True,
                          messages=[{"role": "user", "content": "Paris"}]))
    start = next(e for k, e in streamed if k == "content_block_start" and e["content_block"]["type"] == "tool_use")
    args = "".join(e["delta"]["partial_json"] for k, e in streamed
                   if k == "content_block_delta" and e["delta"]["type"] == "input_json_delta")
    assert start["content_block"]["name"] == "get_weather" and json.loads(args) == {"city": "Paris"}


def test_count_tokens(gw):
    c, h = gw
    resp = c.post(URL + "/count_tokens", json={"model": MODELS["anthropic"], "system": "Be brief.", "tools": [TOOL],
                                               "messages": [{"role": "user", "content": "hello there"}]}, headers=h)
    assert resp.status_code == 200 and resp.get_json()["input_tokens"] > 5
    assert_anthropic_error(c.post(URL + "/count_tokens", json={"model": "nope", "messages": [
        {"role": "user", "content": "x"}]}, headers=h), 404, "not_found_error")


@pytest.mark.parametrize("body,status,kind,needle", [
    ({"model": "sandbox", "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error", "max_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error", "model"),
    ({"model": "sandbox", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, 400,
     "invalid_request_error", "max_tokens"),
    ({"model": "sandbox", "max_tokens": 5, "messages": []}, 400, "invalid_request_error", "messages"),
    ({"model": "sandbox", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, 400,
     "invalid_request_error", "role"),
    ({"model": "sandbox", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, 400,
     "invalid_request_error", "messages.0.content.0"),
    ({"model": "sandbox", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 1.5}, 400,
     "invalid_request_error", "temperature"),
    ({"model": "sandbox", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}, 400,
     "invalid_request_error", "frobnicate"),
    ({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
      "thinking": {"type": "enabled", "budget_tokens": 2048}}, 400, "invalid_request_error", "thinking"),
    ({"model": "gemini-1.5-flash", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, 400, "invalid_request_error", "tools.0"),
    ({"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 404,
     "not_found_error", "no-such-model"),
], ids=lambda v: json.dumps(v)[:50] if isinstance(v, dict) else str(v))
def test_bad_input_is_anthropic_shaped(gw, body, status, kind, needle):
    c, h = gw
    assert needle in assert_anthropic_error(c.post(URL, json=body, headers=h), status, kind)


def test_malformed_anthropic_headers_and_auth(gw):
    c, h = gw
    body = {"model": "sandbox", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    assert "anthropic-version" in assert_anthropic_error(
        c.post(URL, json=body, headers={**h, "anthropic-version": "latest"}), 400, "invalid_request_error")
    assert_anthropic_error(c.post(URL, json=body, headers={**h, "anthropic-beta": "a b;c"}), 400, "invalid_request_error")
    assert_anthropic_error(c.post(URL, json=body, headers={"anthropic-version": "2023-06-01"}), 401,
                           "authentication_error")
    assert_anthropic_error(c.post(URL, json=body, headers={"x-api-key": "sk-aip-nope-nope"}), 401, "authentication_error")
    assert_anthropic_error(c.post(URL, data=b"{", headers={**h, "Content-Type": "application/json"}), 400,
                           "invalid_request_error")
    bearer = {"Authorization": "Bearer " + h["x-api-key"]}
    assert c.post(URL, json=body, headers=bearer).status_code == 200


def test_upstream_failures_keep_their_status_in_anthropics_shape(gw):
    c, h = gw
    for directive, status, kind in (("[fake:error=429 retry=2]", 429, "rate_limit_error"),
                                    ("[fake:error=500]", 502, "api_error"), ("[fake:error=529]", 503, "overloaded_error")):
        resp = ask(c, h, model=MODELS["anthropic"], messages=[{"role": "user", "content": f"x {directive}"}])
        assert_anthropic_error(resp, status, kind)
        if status == 429:
            assert resp.headers["Retry-After"] == "2"
    got = events(ask(c, h, model=MODELS["openai"], stream=True,
                     messages=[{"role": "user", "content": "one two three four [fake:midstream_error]"}]))
    assert got[-1][0] == "error" and got[-1][1]["type"] == "error"


def test_one_log_record_per_request(gw):
    c, h = gw
    resp = ask(c, h, model="sandbox")
    resp.close()
    key = {"Authorization": "Bearer " + h["x-api-key"]}
    log = c.get("/api/logs/" + resp.headers["x-aiproxy-id"], headers=key).get_json()
    assert log["endpoint"] == "messages" and log["status"] == 200 and log["request_id"] == resp.headers["request-id"]
    bad = c.post(URL, json={"model": "sandbox", "messages": [{"role": "user", "content": "x"}]}, headers=h)
    bad.close()
    log = c.get("/api/logs/" + bad.headers["x-aiproxy-id"], headers=key).get_json()
    assert log["endpoint"] == "messages" and log["status"] == 400
