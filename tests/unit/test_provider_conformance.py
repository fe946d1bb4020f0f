"""One set of cases every provider type must pass, each real adapter behind a fake upstream that speaks its
real wire format (``tests.fakes``: OpenAI, Azure OpenAI, Anthropic, Gemini, Bedrock's Converse JSON and
event-stream frames); the sandbox needs no upstream, and the local type runs a tiny GPT-2-style model built
in a temporary directory (``tests.fakes.tiny_lm``) in process.

The fakes reply ``"Echo: " + <last user text>`` and count tokens as words, so exact numbers are known; the
tiny model always writes ``tiny_lm.CHAIN`` and then stops.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit
from typing import Any, Callable

import httpx
import pytest

from lib import errors
from lib.providers import REGISTRY
from lib.providers.base import ProviderConfig
from tests.fakes import FakeUpstream, tiny_lm

PROVIDERS = sorted(REGISTRY)  # every registered provider type
OFFLINE = {"sandbox", "local"}  # the ones with no upstream to fake
REAL = [name for name in PROVIDERS if name not in OFFLINE]  # the ones that call an upstream
NO_TOOLS = {"local"}  # types that refuse tools and JSON output with a 400 naming the parameter
RETRY_HINT = {"bedrock": None}  # Bedrock sends no Retry-After; the others' 429s carry the fake's 2 s
USER = [{"role": "user", "content": "hello there world"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def fake() -> FakeUpstream:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http() -> httpx.Client:
    client = httpx.Client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return tiny_lm.build(tmp_path_factory.mktemp("tiny-lm"))


def base_url(name: str, url: str) -> str:
    """The type's default base URL with the fake upstream in place of its host (``/v1`` kept for openai)."""
    return url + urlsplit(REGISTRY[name].default_base_url).path


def build(name: str, url: str | None, http: httpx.Client, keys: tuple[str, ...] = ("test-key",),
          model_dir: str = "") -> Any:
    kind = REGISTRY[name]
    if name == "sandbox":
        return kind(None, http)
    if name == "local":
        return kind(ProviderConfig(name="local", type="local", extra={"path": model_dir}), http)
    if name == "azure":
        return kind(ProviderConfig(name="azure", type="azure", api_keys=keys, base_url=url or "",
                                   extra={"api_version": "2024-10-21"}), http)
    if name == "bedrock":
        return kind(ProviderConfig(name="bedrock", type="bedrock", extra={"region": "us-east-1", "endpoint_url": url},
                                   secrets={"aws_access_key_id": keys[0].replace("-", "").upper(),
                                            "aws_secret_access_key": "fake-secret-key"}), http)
    return kind(ProviderConfig(api_keys=keys, base_url=base_url(name, url or "")), http)


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest, fake: FakeUpstream, http: httpx.Client, tiny_model: str) -> Any:
    fake.reset()
    return build(request.param, fake.url, http, model_dir=tiny_model)


@pytest.fixture(params=REAL)
def real(request: pytest.FixtureRequest, fake: FakeUpstream, http: httpx.Client) -> Any:
    fake.reset()
    return build(request.param, fake.url, http)


def ask(provider: Any, messages: list[dict[str, Any]] | None = None, timeout: float = 5.0, **params: Any) -> dict:
    return provider.complete({"messages": messages or USER, **params}, model="test-model", timeout=timeout)


def stream(provider: Any, messages: list[dict[str, Any]] | None = None, timeout: float = 5.0, **params: Any) -> list:
    return list(provider.stream({"messages": messages or USER, **params}, model="test-model", timeout=timeout))


def say(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def joined(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# -- shape ----------------------------------------------------------------------------------------------

def test_plain_completion_has_openais_exact_shape(provider: Any) -> None:
    result = ask(provider)
    assert {"id", "object", "created", "model", "choices", "usage"} <= set(result)
    assert result["object"] == "chat.completion" and isinstance(result["created"], int)
    choice = result["choices"][0]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["role"] == "assistant" and "refusal" in message and message["refusal"] is None
    assert isinstance(message["content"], str) and message["content"]
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    if provider.name == "local":
        assert message["content"] == " ".join(tiny_lm.CHAIN) and usage["completion_tokens"] == len(tiny_lm.CHAIN)
    elif provider.name != "sandbox":
        assert message["content"] == "Echo: hello there world"
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (3, 4)


def test_system_prompt_is_sent_where_the_provider_wants_it(provider: Any, fake: FakeUpstream) -> None:
    system = [{"role": "system", "content": "Answer in one short line"}]
    without = ask(provider)["usage"]["prompt_tokens"]
    result = ask(provider, system + USER)
    assert result["usage"]["prompt_tokens"] > without
    if provider.name in OFFLINE:
        return
    assert result["choices"][0]["message"]["content"] == "Echo: hello there world"
    assert result["usage"]["prompt_tokens"] == 3 + 5
    sent = fake.requests[-1].json
    where = {
        "openai": lambda b: b["messages"][0],
        "azure": lambda b: b["messages"][0],
        "bedrock": lambda b: {"role": "system", "content": b["system"][0]["text"]},
        "anthropic": lambda b: {"role": "system", "content": b["system"]},
        "gemini": lambda b: {"role": "system", "content": b["systemInstruction"]["parts"][0]["text"]},
    }[provider.name](sent)
    assert where == {"role": "system", "content": "Answer in one short line"}


def test_max_tokens_is_honoured_with_finish_reason_length(provider: Any) -> None:
    full = ask(provider)["choices"][0]["message"]["content"]
    result = ask(provider, max_tokens=2)
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] <= 2
    content = result["choices"][0]["message"]["content"]
    assert content and len(content) < len(full) and full.startswith(content)


def test_stop_sequence_is_passed(provider: Any) -> None:
    full = ask(provider)["choices"][0]["message"]["content"]
    stop_word = full.split()[2]
    result = ask(provider, stop=[stop_word])
    content = result["choices"][0]["message"]["content"]
    assert result["choices"][0]["finish_reason"] == "stop"
    assert stop_word not in content and full.startswith(content.rstrip()) and len(content) < len(full)


# -- streaming ------------------------------------------------------------------------------------------

def test_stream_role_first_content_matches_usage_last(provider: Any) -> None:
    plain = ask(provider)
    chunks = stream(provider)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) >= 2
    assert joined(chunks) == plain["choices"][0]["message"]["content"]
    with_choice = [c for c in chunks if c["choices"]]
    assert [c["choices"][0]["finish_reason"] for c in with_choice][-1] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in with_choice[:-1])
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["total_tokens"] == plain["usage"]["total_tokens"]
    assert last["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]


def test_stream_max_tokens_finishes_with_length(provider: Any) -> None:
    chunks = stream(provider, max_tokens=2)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] <= 2


# -- tools ----------------------------------------------------------------------------------------------

def refuses(provider: Any, param: str, **params: Any) -> None:
    """The provider answers ``params`` with a 400 naming ``param``."""
    with pytest.raises(errors.UpstreamBadRequest) as caught:
        ask(provider, say("Paris"), **params)
    assert caught.value.param == param and caught.value.code == "unsupported_parameter"
    with pytest.raises(errors.UpstreamBadRequest):
        stream(provider, say("Paris"), **params)


def test_tools_round_trip(provider: Any, fake: FakeUpstream) -> None:
    if provider.name in NO_TOOLS:
        return refuses(provider, "tools", tools=TOOLS)
    first = ask(provider, say("Paris"), tools=TOOLS)
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    history = say("Paris") + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
    ]
    second = ask(provider, history, tools=TOOLS)
    if provider.name == "sandbox":
        assert "sunny, 21 C" in second["choices"][0]["message"]["content"]
    else:
        assert second["choices"][0]["message"]["content"] == "Echo: sunny, 21 C"
    assert second["choices"][0]["finish_reason"] == "stop"

    chunks = stream(provider, say("Paris"), tools=TOOLS)
    deltas = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls") or []]
    assert deltas[0]["id"] and deltas[0]["function"]["name"] == "get_weather"
    arguments = "".join(d["function"].get("arguments") or "" for d in deltas)
    assert json.loads(arguments) == {"city": "Paris"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_named_tool_choice_calls_that_tool(provider: Any) -> None:
    tools = TOOLS + [{"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}]
    if provider.name in NO_TOOLS:
        return refuses(provider, "tools", tools=tools, tool_choice={"type": "function", "function": {"name": "get_time"}})
    result = ask(provider, say("UTC"), tools=tools, tool_choice={"type": "function", "function": {"name": "get_time"}})
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_time" and json.loads(call["function"]["arguments"]) == {"zone": "UTC"}


# -- structured output ----------------------------------------------------------------------------------

ANSWER_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["answer", "confidence", "tags"],
                 "properties": {"answer": {"type": "string"},
                                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                                "tags": {"type": "array", "items": {"type": "string"}}}}
FORMATS = {
    "json_object": ({"type": "json_object"}, {"type": "object"}),
    "json_schema": ({"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": ANSWER_SCHEMA}},
                    ANSWER_SCHEMA),
    "json_schema_array": ({"type": "json_schema", "json_schema": {"name": "numbers", "schema": {
        "type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2}}},
        {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2}),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_structured_output_is_valid_json_plain_and_streamed(provider: Any, fake: FakeUpstream, kind: str) -> None:
    import jsonschema

    response_format, schema = FORMATS[kind]
    if provider.name in NO_TOOLS:
        return refuses(provider, "response_format", response_format=response_format)
    result = ask(provider, say("give me json"), response_format=response_format)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "stop" and not choice["message"].get("tool_calls")
    jsonschema.validate(json.loads(choice["message"]["content"]), schema)
    if provider.name not in OFFLINE:
        sent = fake.requests[-1].json
        if provider.name == "anthropic":  # a forced tool whose input schema is the schema
            forced = sent["tool_choice"]["name"]
            tool = next(t for t in sent["tools"] if t["name"] == forced)
            assert tool["input_schema"]["type"] == "object"
        elif provider.name == "bedrock":  # the same, in Converse's toolConfig
            forced = sent["toolConfig"]["toolChoice"]["tool"]["name"]
            spec = next(t["toolSpec"] for t in sent["toolConfig"]["tools"] if t["toolSpec"]["name"] == forced)
            assert spec["inputSchema"]["json"]["type"] == "object"
        elif provider.name == "gemini":
            assert sent["generationConfig"]["responseMimeType"] == "application/json"
            assert ("responseSchema" in sent["generationConfig"]) == (kind != "json_object")
        else:
            assert sent["response_format"] == response_format
    chunks = stream(provider, say("give me json"), response_format=response_format)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"])
    jsonschema.validate(json.loads(joined(chunks)), schema)


@pytest.mark.parametrize("param,value", [("seed", 7), ("logit_bias", {"50256": -100}), ("logprobs", True),
                                         ("presence_penalty", 0.5), ("web_search_options", {})])
def test_a_parameter_the_provider_cannot_honour_is_refused_by_name(provider: Any, fake: FakeUpstream,
                                                                    param: str, value: Any) -> None:
    passed_on = {"seed", "logit_bias", "logprobs", "presence_penalty", "web_search_options"}
    honours = {"openai": passed_on, "azure": passed_on, "gemini": {"seed", "presence_penalty"}, "anthropic": set(),
               "bedrock": set(), "local": {"seed"},
               "sandbox": {"seed", "logit_bias", "logprobs", "presence_penalty", "web_search_options"}}  # no effect
    if param in honours[provider.name]:
        assert ask(provider, **{param: value})["choices"][0]["finish_reason"] == "stop"
        return
    count = len(fake.requests)
    with pytest.raises(errors.UpstreamBadRequest) as caught:
        ask(provider, **{param: value})
    assert caught.value.param == param and caught.value.code == "unsupported_parameter"
    assert caught.value.status == 400 and param in caught.value.message
    assert len(fake.requests) == count  # refused before any upstream call


# -- errors ---------------------------------------------------------------------------------------------

ERROR_CASES = [
    ("[fake:error=400]", errors.UpstreamBadRequest, 400),
    ("[fake:error=401]", errors.UpstreamAuthError, 502),
    ("[fake:error=429 retry=2]", errors.UpstreamRateLimited, 429),
    ("[fake:error=500]", errors.UpstreamError, 502),
    ("[fake:slow=1.0]", errors.UpstreamTimeout, 504),
]


@pytest.mark.parametrize("directive,kind,status", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_upstream_errors_are_mapped(real: Any, directive: str, kind: type, status: int, mode: str) -> None:
    call: Callable[..., Any] = ask if mode == "complete" else stream
    with pytest.raises(kind) as caught:
        call(real, say(f"hello {directive}"), timeout=0.4)
    assert type(caught.value) is kind and caught.value.status == status
    assert caught.value.provider == real.name
    if status == 429:
        assert caught.value.retry_after == RETRY_HINT.get(real.name, 2)


@pytest.mark.parametrize("name", REAL)
def test_connection_refused_is_unavailable(name: str, http: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = build(name, f"http://127.0.0.1:{port}", http)
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        ask(provider)
    assert caught.value.status == 503
    with pytest.raises(errors.UpstreamUnavailable):
        stream(provider)


def test_a_rejected_key_never_appears_in_the_error(fake: FakeUpstream, http: httpx.Client) -> None:
    secret = "sk-secret-0123456789abcdef"
    fake.valid_keys = {"the-only-good-key"}
    try:
        for name in REAL:
            with pytest.raises(errors.UpstreamAuthError) as caught:
                ask(build(name, fake.url, http, keys=(secret,)))
            text = str(caught.value) + json.dumps(caught.value.to_dict())
            assert secret not in text and "cdef" not in text and caught.value.status == 502
    finally:
        fake.valid_keys = None


@pytest.mark.parametrize("directive", ["midstream_error", "midstream_cut"])
def test_midstream_failure_raises_from_the_iterator(real: Any, directive: str) -> None:
    iterator = real.stream({"messages": say(f"one two three four five [fake:{directive}]")},
                           model="test-model", timeout=5)
    received = []
    with pytest.raises(errors.UpstreamError):
        for chunk in iterator:
            received.append(chunk)
    assert received and received[0]["choices"][0]["delta"]["role"] == "assistant"
    assert not any(c.get("usage") for c in received)


@pytest.mark.parametrize("read_first", [2, 0], ids=["after-two-chunks", "before-any-chunk"])
def test_closing_the_stream_early_closes_the_upstream_connection(real: Any, fake: FakeUpstream, read_first: int) -> None:
    marker = f"slowly {real.name} {read_first} [fake:chunks=60 chunk_delay=0.03]"
    iterator = real.stream({"messages": say(marker)}, model="test-model", timeout=5)
    for _ in range(read_first):
        next(iterator)
    iterator.close()
    assert fake.wait_for(lambda: any(marker in json.dumps(r.json) for r in fake.abandoned), timeout=3)


def test_stream_without_upstream_usage_has_no_usage_chunk(real: Any) -> None:
    chunks = stream(real, say("hello [fake:no_usage]"))
    assert joined(chunks) == "Echo: hello [fake:no_usage]"
    assert not any(c.get("usage") for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_chunks_directive_controls_the_number_of_deltas(real: Any) -> None:
    chunks = stream(real, say("a b [fake:chunks=7]"))
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 7
