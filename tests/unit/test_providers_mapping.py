"""Provider-specific details: Anthropic and Gemini request/response mapping, OpenAI pass-through and keys.

Mapping functions are checked directly, and every mapped request is also sent to the fake upstream,
which validates it the way the real API does (unknown fields, roles, tool ids), so a malformed mapping
fails here rather than in production.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from lib import errors
from lib.providers import REGISTRY, build_providers
from lib.providers.anthropic import StreamParser as AnthropicStream
from lib.providers.anthropic import to_anthropic
from lib.providers.base import ProviderConfig
from lib.providers.gemini import clean_schema, to_gemini
from lib.providers.openai_provider import PLACEHOLDER_KEY, OpenAIProvider
from tests.fakes import FakeUpstream

PIXEL = "data:image/png;base64,iVBORw0KGgo="
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Use metric units."},
    {"role": "user", "content": "Weather?"},
    {"role": "user", "content": [{"type": "text", "text": "In Oslo."}, {"type": "image_url", "image_url": {"url": PIXEL}}]},
    {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "rain, 9 C"},
]


@pytest.fixture(scope="module")
def fake() -> FakeUpstream:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture()
def http(fake: FakeUpstream) -> httpx.Client:
    fake.reset()
    fake.valid_keys = None
    fake.rate_limited_keys = set()
    client = httpx.Client()
    yield client
    client.close()


# -- Anthropic ------------------------------------------------------------------------------------------

def test_anthropic_lifts_system_merges_roles_and_maps_tools() -> None:
    payload = to_anthropic({"messages": CONVERSATION, "tools": TOOLS, "tool_choice": "required",
                            "temperature": 1.7, "top_p": 0.9, "stop": "END", "user": "u-1"}, "claude-x")
    assert payload["system"] == "Be brief.\n\nUse metric units."
    assert payload["max_tokens"] == 4096 and payload["model"] == "claude-x"
    assert payload["temperature"] == 1.0 and payload["top_p"] == 0.9
    assert payload["stop_sequences"] == ["END"] and payload["metadata"] == {"user_id": "u-1"}
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user"]
    first, assistant, result = payload["messages"]
    assert first["content"] == [
        {"type": "text", "text": "Weather?"}, {"type": "text", "text": "In Oslo."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]
    assert assistant["content"] == [{"type": "text", "text": "Let me check."},
                                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}]
    assert result["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "rain, 9 C"}]
    assert payload["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                                 "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert payload["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize("choice,parallel,expected", [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_anthropic_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}], "tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert to_anthropic(body, "m").get("tool_choice") == expected


def test_anthropic_max_tokens_and_stop_rules() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 50, "max_completion_tokens": 20,
            "stop": ["\n", " ", "###"]}
    payload = to_anthropic(body, "m")
    assert payload["max_tokens"] == 20 and payload["stop_sequences"] == ["###"]
    with pytest.raises(errors.UpstreamBadRequest):
        to_anthropic({"messages": [{"role": "user", "content": "x"}], "n": 2}, "m")


def test_anthropic_full_conversation_is_accepted_by_the_real_format(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = REGISTRY["anthropic"](ProviderConfig(api_keys=("k",), base_url=fake.url), http)
    result = provider.complete({"messages": CONVERSATION, "tools": TOOLS}, model="claude-x", timeout=5)
    assert result["choices"][0]["message"]["content"] == "Echo: rain, 9 C"
    request = fake.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "k" and request.headers["anthropic-version"] == "2023-06-01"


def test_anthropic_cache_tokens_count_as_prompt_tokens(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = REGISTRY["anthropic"](ProviderConfig(api_keys=("k",), base_url=fake.url), http)
    text = "one two three four [fake:cached=3]"
    plain = provider.complete({"messages": [{"role": "user", "content": text}]}, model="m", timeout=5)
    assert plain["usage"]["prompt_tokens"] == 5  # input_tokens 2 + cache_read 3
    assert plain["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    chunks = list(provider.stream({"messages": [{"role": "user", "content": text}]}, model="m", timeout=5))
    assert chunks[-1]["usage"] == plain["usage"]


def test_anthropic_stream_parser_handles_text_tools_thinking_and_truncation() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
                                                                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_start", {"type": "content_block_start", "index": 2,
                                 "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"a": '}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ("ping", {"type": "ping"}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    parser = AnthropicStream("m")
    chunks = [c for event, data in events for c in parser.feed(event, json.dumps(data))]
    parser.finish()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Hi"}
    assert deltas[2]["tool_calls"][0] == {"index": 0, "id": "toolu_1", "type": "function",
                                          "function": {"name": "f", "arguments": ""}}
    assert "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[3:5]) == '{"a": 1}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 10 and chunks[-1]["usage"]["completion_tokens"] == 7
    assert chunks[0]["model"] == "claude-x"

    cut = AnthropicStream("m")
    list(cut.feed("message_start", json.dumps(events[0][1])))
    with pytest.raises(errors.UpstreamError):
        cut.finish()


def test_anthropic_overloaded_is_unavailable(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = REGISTRY["anthropic"](ProviderConfig(api_keys=("k",), base_url=fake.url), http)
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        provider.complete({"messages": [{"role": "user", "content": "[fake:error=529]"}]}, model="m", timeout=5)
    assert caught.value.status == 503


# -- Gemini ---------------------------------------------------------------------------------------------

def test_gemini_request_mapping() -> None:
    payload = to_gemini({"messages": CONVERSATION, "tools": TOOLS, "tool_choice": "required", "temperature": 1.5,
                         "top_p": 0.5, "max_tokens": 100, "stop": "END", "n": 2, "seed": 7,
                         "response_format": {"type": "json_object"}})
    assert payload["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nUse metric units."}]}
    assert [c["role"] for c in payload["contents"]] == ["user", "model", "user"]
    assert payload["contents"][0]["parts"] == [
        {"text": "Weather?"}, {"text": "In Oslo."}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]
    assert payload["contents"][1]["parts"] == [
        {"text": "Let me check."}, {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]
    assert payload["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": "rain, 9 C"}}}]
    assert payload["generationConfig"] == {"temperature": 1.5, "topP": 0.5, "maxOutputTokens": 100,
                                           "stopSequences": ["END"], "candidateCount": 2, "seed": 7,
                                           "responseMimeType": "application/json"}
    assert payload["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": "Weather for a city",
                                                           "parameters": TOOLS[0]["function"]["parameters"]}]}]
    assert payload["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_gemini_schema_is_reduced_to_what_gemini_accepts() -> None:
    schema = {"$defs": {"Unit": {"type": "string", "enum": ["C", "F"]}}, "type": "object",
              "additionalProperties": False, "title": "Args",
              "properties": {"unit": {"$ref": "#/$defs/Unit"}, "email": {"type": "string", "format": "email"},
                             "note": {"type": ["string", "null"]}, "tags": {"type": "array", "items": {"const": 1}}}}
    assert clean_schema(schema) == {
        "type": "object", "title": "Args",
        "properties": {"unit": {"type": "string", "enum": ["C", "F"]}, "email": {"type": "string"},
                       "note": {"type": "string", "nullable": True}, "tags": {"type": "array", "items": {"enum": ["1"]}}}}


def test_gemini_json_schema_and_strict_tools_are_accepted(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = REGISTRY["gemini"](ProviderConfig(api_keys=("k",), base_url=fake.url), http)
    strict_tool = {"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"], "additionalProperties": False}}}
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [strict_tool], "tool_choice": "none",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}}}}
    result = provider.complete(body, model="gemini-x", timeout=5)
    assert json.loads(result["choices"][0]["message"]["content"]) == {"a": 1}  # the fake honours JSON mode
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-x:generateContent" and sent.headers["x-goog-api-key"] == "k"
    assert sent.json["generationConfig"]["responseSchema"] == {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert sent.json["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_gemini_full_conversation_and_usage(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = REGISTRY["gemini"](ProviderConfig(api_keys=("k",), base_url=fake.url), http)
    result = provider.complete({"messages": CONVERSATION, "tools": TOOLS}, model="models/gemini-x", timeout=5)
    assert result["choices"][0]["message"]["content"] == "Echo: rain, 9 C"
    assert fake.requests[-1].path == "/v1beta/models/gemini-x:generateContent"
    thinking = provider.complete({"messages": [{"role": "user", "content": "a b [fake:thoughts=5 cached=2]"}]},
                                 model="m", timeout=5)
    usage = thinking["usage"]
    assert usage["completion_tokens"] == 5 + 5 and usage["completion_tokens_details"]["reasoning_tokens"] == 5
    assert usage["prompt_tokens"] == 4 and usage["prompt_tokens_details"]["cached_tokens"] == 2
    stream_path = None
    for _ in provider.stream({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5):
        stream_path = fake.requests[-1]
    assert stream_path is not None and stream_path.query.get("alt") == "sse"


def test_gemini_safety_and_blocked_prompt(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = REGISTRY["gemini"](ProviderConfig(api_keys=("k",), base_url=fake.url), http)
    filtered = provider.complete({"messages": [{"role": "user", "content": "x [fake:safety]"}]}, model="m", timeout=5)
    assert filtered["choices"][0]["finish_reason"] == "content_filter"
    assert filtered["choices"][0]["message"]["content"] is None
    with pytest.raises(errors.UpstreamBadRequest) as caught:
        provider.complete({"messages": [{"role": "user", "content": "x [fake:blocked]"}]}, model="m", timeout=5)
    assert "blocked" in caught.value.message and caught.value.status == 400
    with pytest.raises(errors.UpstreamBadRequest):
        list(provider.stream({"messages": [{"role": "user", "content": "x [fake:blocked]"}]}, model="m", timeout=5))


def test_gemini_invalid_key_is_a_credentials_failure(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.valid_keys = {"good"}
    provider = REGISTRY["gemini"](ProviderConfig(api_keys=("bad-key",), base_url=fake.url), http)
    with pytest.raises(errors.UpstreamAuthError) as caught:
        provider.complete({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5)
    assert caught.value.status == 502
    assert fake.requests[-1].headers["x-goog-api-key"] == "bad-key"  # Gemini's answer was 400 API_KEY_INVALID


# -- OpenAI ---------------------------------------------------------------------------------------------

def openai_provider(fake: FakeUpstream, http: httpx.Client, keys: tuple[str, ...]) -> OpenAIProvider:
    return OpenAIProvider(ProviderConfig(api_keys=keys, base_url=fake.url + "/v1"), http)


def bearer(request: Any) -> str:
    return request.headers["authorization"].removeprefix("Bearer ")


def test_openai_passes_every_parameter_through(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = openai_provider(fake, http, ("k1",))
    body = {"model": "client-alias", "messages": [{"role": "user", "content": "hi"}], "seed": 7, "n": 2,
            "response_format": {"type": "json_object"}, "logprobs": True, "stop": ["x"], "tools": TOOLS,
            "tool_choice": "none", "some_new_param": {"a": 1}}
    result = provider.complete(body, model="gpt-4o-mini", timeout=5)
    sent = fake.requests[-1].json
    assert sent == {**body, "model": "gpt-4o-mini"}
    assert [c["index"] for c in result["choices"]] == [0, 1]
    list(provider.stream({**body, "n": 1, "stream": True, "stream_options": {"include_usage": False}},
                         model="gpt-4o-mini", timeout=5))
    sent = fake.requests[-1].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["some_new_param"] == {"a": 1}


def test_openai_rotates_keys_round_robin(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = openai_provider(fake, http, ("k1", "k2", "k3"))
    for _ in range(6):
        provider.complete({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5)
    assert [bearer(r) for r in fake.requests] == ["k1", "k2", "k3", "k1", "k2", "k3"]


def test_openai_moves_to_the_next_key_after_401(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.valid_keys = {"k2"}
    provider = openai_provider(fake, http, ("k1", "k2"))
    result = provider.complete({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5)
    assert result["choices"][0]["message"]["content"] == "Echo: hi"
    assert [bearer(r) for r in fake.requests] == ["k1", "k2"]
    chunks = list(provider.stream({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5))
    assert chunks[-1]["usage"]["completion_tokens"] == 2


def test_openai_429_on_every_key_tries_each_once(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.rate_limited_keys = {"k1", "k2"}
    provider = openai_provider(fake, http, ("k1", "k2"))
    with pytest.raises(errors.UpstreamRateLimited) as caught:
        provider.complete({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5)
    assert sorted(bearer(r) for r in fake.requests) == ["k1", "k2"]
    assert caught.value.retry_after == 1.0 and caught.value.status == 429


def test_openai_401_on_every_key_is_a_gateway_credentials_error(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.valid_keys = {"other"}
    provider = openai_provider(fake, http, ("k1", "k2"))
    with pytest.raises(errors.UpstreamAuthError):
        provider.complete({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5)
    assert len(fake.requests) == 2


def test_openai_500_does_not_rotate(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = openai_provider(fake, http, ("k1", "k2"))
    with pytest.raises(errors.UpstreamError):
        provider.complete({"messages": [{"role": "user", "content": "x [fake:error=500]"}]}, model="m", timeout=5)
    assert len(fake.requests) == 1


def test_openai_configuration_rules(fake: FakeUpstream, http: httpx.Client) -> None:
    official = OpenAIProvider(ProviderConfig(), http)
    assert not official.configured()
    with pytest.raises(errors.UpstreamUnavailable):
        official.complete({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=1)
    compatible = openai_provider(fake, http, ())
    assert compatible.configured()
    compatible.complete({"messages": [{"role": "user", "content": "hi"}]}, model="m", timeout=5)
    assert bearer(fake.requests[-1]) == PLACEHOLDER_KEY


def test_openai_embeddings(fake: FakeUpstream, http: httpx.Client) -> None:
    provider = openai_provider(fake, http, ("k1",))
    result = provider.embed({"input": ["a b", "c"], "dimensions": 4}, model="text-embedding-3-small", timeout=5)
    assert [len(d["embedding"]) for d in result["data"]] == [4, 4]
    assert result["usage"]["prompt_tokens"] == 3
    floats = provider.embed({"input": "a b", "encoding_format": "float", "dimensions": 4}, model="e", timeout=5)
    assert floats["data"][0]["embedding"] == pytest.approx(result["data"][0]["embedding"], abs=1e-6)


def test_build_providers_makes_every_registered_provider(http: httpx.Client) -> None:
    built = build_providers({"anthropic": ProviderConfig(api_keys=("k",))}, http)
    assert set(built) == {"openai", "anthropic", "gemini", "sandbox"}
    assert built["anthropic"].configured() and not built["gemini"].configured() and built["sandbox"].configured()
    with pytest.raises(KeyError):
        build_providers({"nope": ProviderConfig()}, http)
