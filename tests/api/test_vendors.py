"""The sandbox vendors: each vendor's own shape, its own error style, simulated failures, determinism,
and 404 in production."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from lib.vendors import MAX_DELAY_S, Vendors, count_words
from tests.api.conftest import assert_error

VENDORS = ["vendor-a", "vendor-b", "vendor-e", "vendor-o"]
MESSAGES = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "What is a gateway?"}]}


def post(client, vendor: str, body: Any = None, **kw: Any):
    return client.post(f"/{vendor}/messages", json=body if body is not None else MESSAGES, **kw)


def reply_text(vendor: str, data: dict[str, Any]) -> str:
    """The answer text, read the way a client of that vendor reads it (asserting the shape on the way)."""
    if vendor == "vendor-o":
        assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
        assert isinstance(data["created"], int)
        choice = data["choices"][0]
        assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
        usage = data["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["completion_tokens"] == count_words(choice["message"]["content"])
        return choice["message"]["content"]
    if vendor == "vendor-a":
        assert data["type"] == "message" and data["role"] == "assistant" and data["id"].startswith("msg_")
        assert data["content"][0]["type"] == "text" and data["stop_reason"] in ("end_turn", "max_tokens")
        assert set(data["usage"]) == {"input_tokens", "output_tokens"}
        return data["content"][0]["text"]
    if vendor == "vendor-b":
        assert set(data) == {"id", "output", "usage", "latency_ms"}
        assert set(data["usage"]) == {"input_tokens", "output_tokens"} and isinstance(data["latency_ms"], int)
        return data["output"]["text"]
    assert data["status"] == "success" and data["meta"]["request_id"].startswith("req_")
    tokens = data["meta"]["tokens"]
    assert tokens["total"] == tokens["input"] + tokens["output"]
    return data["data"]["result"]["content"]


def error_of(vendor: str, resp) -> dict[str, Any]:
    """The vendor-style error body, checked for that vendor's shape; returns {type/code, message}."""
    assert resp.mimetype == "application/json"
    data = resp.get_json()
    if vendor == "vendor-o":
        assert set(data) == {"error"} and set(data["error"]) == {"message", "type", "param", "code"}
        return {"kind": data["error"]["type"], "code": data["error"]["code"], "param": data["error"]["param"],
                "message": data["error"]["message"]}
    if vendor == "vendor-a":
        assert data["type"] == "error" and set(data["error"]) == {"type", "message"}
        assert data["request_id"].startswith("req_")
        return {"kind": data["error"]["type"], "message": data["error"]["message"]}
    if vendor == "vendor-b":
        assert set(data) == {"error", "message", "status"} and data["status"] == resp.status_code
        return {"kind": data["error"], "message": data["message"]}
    assert data["status"] == "error" and data["data"] is None and data["meta"]["tokens"] is None
    return {"kind": data["error"]["code"], "message": data["error"]["message"], "details": data["error"]["details"]}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("body", [MESSAGES, {"prompt": "What is a gateway?"}], ids=["messages", "prompt"])
def test_each_vendor_answers_in_its_own_shape(client, vendor, body):
    resp = post(client, vendor, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    text = reply_text(vendor, resp.get_json())
    assert vendor in text and "What is a gateway?" in text
    assert resp.headers["X-Request-Id"]


def test_vendors_need_no_key_and_ignore_a_bad_one(client):
    resp = post(client, "vendor-o", headers={"Authorization": "Bearer not-a-key"})
    assert resp.status_code == 200


@pytest.mark.parametrize("vendor", VENDORS)
def test_max_tokens_cuts_the_reply(client, vendor):
    data = post(client, vendor, {**MESSAGES, "max_tokens": 5}).get_json()
    assert count_words(reply_text(vendor, data)) == 5
    finish = {"vendor-o": lambda d: d["choices"][0]["finish_reason"], "vendor-a": lambda d: d["stop_reason"],
              "vendor-e": lambda d: d["data"]["result"]["finish_reason"], "vendor-b": lambda d: "length"}[vendor](data)
    assert finish in ("length", "max_tokens")


def test_anthropic_style_input_is_accepted_by_vendor_a(client):
    body = {"model": "claude-x", "max_tokens": 50, "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi from blocks"}]}]}
    data = post(client, "vendor-a", body).get_json()
    assert data["model"] == "claude-x" and "Hi from blocks" in data["content"][0]["text"]


BAD_BODIES = [
    (b"", "empty"), (b"{not json", "invalid_json"), (b"[1, 2]", "array"), (b'"text"', "string"),
    (json.dumps({}).encode(), "missing"), (json.dumps({"prompt": "a", "messages": []}).encode(), "both"),
    (json.dumps({"messages": []}).encode(), "empty_messages"),
    (json.dumps({"messages": "hi"}).encode(), "messages_string"),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), "bad_role"),
    (json.dumps({"messages": [{"role": "user"}]}).encode(), "no_content"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), "content_number"),
    (json.dumps({"messages": [{"role": "system", "content": "only system"}]}).encode(), "no_user"),
    (json.dumps({"prompt": ""}).encode(), "empty_prompt"), (json.dumps({"prompt": 7}).encode(), "prompt_number"),
    (json.dumps({"prompt": "a", "stream": True}).encode(), "stream"),
    (json.dumps({"prompt": "a", "model": ""}).encode(), "empty_model"),
    (json.dumps({"prompt": "a", "max_tokens": 0}).encode(), "max_tokens_zero"),
    (json.dumps({"prompt": "a", "max_tokens": True}).encode(), "max_tokens_bool"),
    (json.dumps({"prompt": "a", "simulate": "explode"}).encode(), "unknown_simulation"),
    (json.dumps({"prompt": "a", "delay": 6}).encode(), "delay_too_long"),
    (json.dumps({"prompt": "a", "delay": -1}).encode(), "delay_negative"),
    (json.dumps({"prompt": "a", "delay": "soon"}).encode(), "delay_text"),
    (json.dumps({"prompt": "a", "failure_rate": 1.5}).encode(), "rate_too_high"),
]
EXPECTED_400 = {"vendor-o": "invalid_request_error", "vendor-a": "invalid_request_error", "vendor-b": "bad_request",
                "vendor-e": "VALIDATION_ERROR"}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("raw,case", BAD_BODIES, ids=[c for _, c in BAD_BODIES])
def test_invalid_input_is_400_in_the_vendor_style(client, vendor, raw, case):
    resp = client.post(f"/{vendor}/messages", data=raw, content_type="application/json")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    err = error_of(vendor, resp)
    assert err["kind"] == EXPECTED_400[vendor] and err["message"]


def test_validation_errors_name_the_field(client):
    resp = post(client, "vendor-o", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})
    assert error_of("vendor-o", resp)["param"] == "max_tokens"
    missing = error_of("vendor-o", post(client, "vendor-o", {"model": "m"}))
    assert missing["code"] == "missing_field"
    resp = post(client, "vendor-e", {"prompt": "a", "delay": 9})
    assert error_of("vendor-e", resp)["details"] == [{"field": "delay", "issue": "invalid_value"}]


SIMULATED = {  # kind -> {vendor: (status, vendor error type/code)}
    "error": {"vendor-o": (500, "server_error"), "vendor-a": (500, "api_error"),
              "vendor-b": (500, "internal_error"), "vendor-e": (500, "INTERNAL_ERROR")},
    "rate_limit": {"vendor-o": (429, "requests"), "vendor-a": (429, "rate_limit_error"),
                   "vendor-b": (429, "rate_limited"), "vendor-e": (429, "RATE_LIMITED")},
    "overloaded": {"vendor-o": (503, "server_error"), "vendor-a": (529, "overloaded_error"),
                   "vendor-b": (503, "unavailable"), "vendor-e": (503, "SERVICE_UNAVAILABLE")},
    "timeout": {"vendor-o": (504, "timeout"), "vendor-a": (504, "timeout_error"),
                "vendor-b": (504, "timeout"), "vendor-e": (504, "GATEWAY_TIMEOUT")},
}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("kind", list(SIMULATED))
@pytest.mark.parametrize("via", ["header", "body"])
def test_simulated_failures(client, vendor, kind, via):
    body = {**MESSAGES, "delay": 0}
    headers = {}
    if via == "header":
        headers["X-Simulate"] = kind
    else:
        body["simulate"] = kind
    resp = post(client, vendor, body, headers=headers)
    status, kind_name = SIMULATED[kind][vendor]
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert error_of(vendor, resp)["kind"] == kind_name
    assert resp.headers["X-Simulated"] == kind
    if kind == "rate_limit":
        assert resp.headers["Retry-After"] == "2"
    else:
        assert "Retry-After" not in resp.headers


def test_rate_limit_headers_follow_each_vendor(client):
    o = post(client, "vendor-o", headers={"X-Simulate": "rate_limit"})
    assert o.headers["x-ratelimit-remaining-requests"] == "0" and o.headers["x-ratelimit-reset-requests"] == "2s"
    a = post(client, "vendor-a", headers={"X-Simulate": "rate_limit"})
    assert a.headers["anthropic-ratelimit-requests-remaining"] == "0" and a.headers["request-id"].startswith("req_")


@pytest.mark.parametrize("vendor", VENDORS)
def test_bad_json_is_a_200_with_a_broken_body(client, vendor):
    good = post(client, vendor).get_data(as_text=True)
    resp = post(client, vendor, headers={"X-Simulate": "bad_json"})
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_data(as_text=True)
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert body and len(body) < len(good)
    assert resp.headers["X-Simulated"] == "bad_json"


def test_header_wins_over_the_body(client):
    resp = post(client, "vendor-b", {**MESSAGES, "simulate": "error"}, headers={"X-Simulate": "rate_limit"})
    assert resp.status_code == 429
    resp = post(client, "vendor-b", {**MESSAGES, "simulate": "error"}, headers={"X-Simulate": "none"})
    assert resp.status_code == 200  # an explicit "none" in the header switches the body's simulation off


def test_timeout_really_waits_for_the_delay(client):
    started = time.monotonic()
    resp = post(client, "vendor-e", {**MESSAGES, "simulate": "timeout", "delay": 0.3})
    elapsed = time.monotonic() - started
    assert resp.status_code == 504 and 0.3 <= elapsed < 2.0
    started = time.monotonic()
    resp = post(client, "vendor-b", headers={"X-Simulate-Delay": "0.2"})
    assert resp.status_code == 200 and time.monotonic() - started >= 0.2
    assert resp.get_json()["latency_ms"] >= 200


def test_sleeps_go_through_the_injected_sleep_and_are_bounded():
    slept: list[float] = []
    vendors = Vendors(sleep=slept.append)
    raw = json.dumps({"prompt": "hi"}).encode()
    assert vendors.handle("vendor-o", raw, {"X-Simulate": "timeout"}).status == 504
    assert vendors.handle("vendor-a", raw, {"X-Simulate": "timeout", "X-Simulate-Delay": "5"}).status == 504
    assert vendors.handle("vendor-b", raw, {}).status == 200
    assert slept == [1.0, MAX_DELAY_S]
    assert vendors.handle("vendor-b", raw, {"X-Simulate-Delay": "5.01"}).status == 400
    assert slept == [1.0, MAX_DELAY_S]
    with pytest.raises(ValueError):
        vendors.handle("vendor-z", raw, {})


@pytest.mark.parametrize("vendor", VENDORS)
def test_same_request_same_answer(client, vendor):
    def answer(body):
        data = post(client, vendor, body).get_json()
        data.pop("created", None)
        return data

    assert answer(MESSAGES) == answer(MESSAGES)
    other = {"messages": [{"role": "user", "content": "Something else entirely"}]}
    assert answer(other) != answer(MESSAGES)
    first, second = (post(client, vendor, b).get_json() for b in (other, MESSAGES))
    assert reply_text(vendor, first) != reply_text(vendor, second)


def test_failure_rate_is_seeded_by_the_request(client):
    def outcomes(rate: float, seed: str = "") -> list[int]:
        headers = {"X-Simulate-Seed": seed} if seed else {}
        return [post(client, "vendor-o", {"prompt": f"question {i}", "failure_rate": rate}, headers=headers).status_code
                for i in range(30)]

    assert set(outcomes(0)) == {200}
    assert set(outcomes(1)) <= {500, 429, 503} and len(set(outcomes(1))) >= 2
    half = outcomes(0.5)
    assert 200 in half and set(half) - {200}, half  # some succeed, some fail
    assert outcomes(0.5) == half  # and the same requests draw the same way again
    assert outcomes(0.5, seed="another run") != half
    resp = post(client, "vendor-a", {"prompt": "x", "failure_rate": 1}, headers={"X-Simulate-Failure-Rate": "0"})
    assert resp.status_code == 200  # the header wins


def test_openai_sdk_talks_to_vendor_o(app):
    openai = pytest.importorskip("openai")
    http = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://vendors.test")
    client = openai.OpenAI(base_url="http://vendors.test/vendor-o", api_key="unused", http_client=http, max_retries=0)
    answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello SDK"}])
    assert answer.model == "demo" and "Hello SDK" in answer.choices[0].message.content
    assert answer.usage.completion_tokens > 0
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"X-Simulate": "rate_limit"})


def test_anthropic_sdk_path_alias(client):
    resp = client.post("/vendor-a/v1/messages", json={"model": "m", "max_tokens": 20,
                                                      "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200 and resp.get_json()["type"] == "message"


def test_only_post_is_allowed(client):
    resp = client.get("/vendor-b/messages")
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"


def test_unknown_vendor_is_an_ordinary_404(client):
    assert_error(post(client, "vendor-x"), 404, "not_found")


@pytest.mark.parametrize("path", [f"/{v}/messages" for v in VENDORS] + ["/vendor-o/chat/completions",
                                                                       "/vendor-a/v1/messages"])
def test_production_hides_the_vendors(make_settings, path):
    from src.app import create_app

    client = create_app(make_settings(ENVIRONMENT="production")).test_client()
    err = assert_error(client.post(path, json=MESSAGES, headers={"X-Simulate": "error"}), 404, "not_found",
                       "not_found_error")
    assert path in err["message"]
    assert_error(client.get(path), 404, "not_found")
