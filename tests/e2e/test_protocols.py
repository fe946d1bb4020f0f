"""The official ``openai`` SDK's Responses API and the official ``anthropic`` SDK against the real server
(bin/start.sh, gunicorn + gevent), real Redis and the fake upstreams of every provider, plus the sandbox."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.e2e

anthropic = pytest.importorskip("anthropic")

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022", "gemini": "gemini-1.5-flash",
          "sandbox": "sandbox"}
TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False}, "strict": True}
CLAUDE_TOOL = {"name": "get_weather", "description": "Weather for a city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


class Rating(BaseModel):
    answer: str
    score: int


@pytest.fixture(scope="module")
def own_key(server) -> str:
    """A key of this module's own: the cache is scoped per key, so these answers never reach other tests."""
    from tests.e2e.conftest import issue_key

    return issue_key(server, user_id="protocols-e2e", rpm=0)


@pytest.fixture
def client(server, own_key):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key=own_key, max_retries=0, timeout=20)
    yield c
    c.close()


@pytest.fixture
def claude(server, own_key):
    client = anthropic.Anthropic(base_url=server.url, api_key=own_key, max_retries=0, timeout=20)
    yield client
    client.close()


# -- OpenAI Responses API ---------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", list(MODELS))
def test_responses_create_plain_and_streamed(client, provider):
    raw = client.responses.with_raw_response.create(model=MODELS[provider], input="ping from the responses api",
                                                    instructions="Be brief.")
    assert raw.headers["x-aiproxy-provider"] == provider and raw.headers["x-request-id"]
    response = raw.parse()
    if provider == "sandbox":
        assert "ping from the responses api" in response.output_text
    else:
        assert response.output_text == "Echo: ping from the responses api"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    with client.responses.stream(model=MODELS[provider], input="stream me some words") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) >= 2 and "".join(deltas) == final.output_text
    assert final.status == "completed" and final.usage.output_tokens > 0
    events = list(client.responses.create(model=MODELS[provider], input="raw events", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.parametrize("provider", list(MODELS))
def test_responses_tools_and_previous_response_id(client, provider):
    first = client.responses.create(model=MODELS[provider], input="Paris", tools=[TOOL])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = client.responses.create(model=MODELS[provider], previous_response_id=first.id, tools=[TOOL],
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny, 21 C"}])
    assert "sunny, 21 C" in second.output_text and second.previous_response_id == first.id
    with client.responses.stream(model=MODELS[provider], input="Paris", tools=[TOOL]) as stream:
        arguments = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        final = stream.get_final_response()
    assert json.loads(arguments) == {"city": "Paris"} and final.output[0].type == "function_call"


@pytest.mark.parametrize("provider", list(MODELS))
def test_responses_text_format_parses(client, provider):
    parsed = client.responses.parse(model=MODELS[provider], input="rate this", text_format=Rating)
    assert isinstance(parsed.output_parsed, Rating)
    with client.responses.stream(model=MODELS[provider], input="rate this", text_format=Rating) as stream:
        final = stream.get_final_response()
    assert isinstance(final.output_parsed, Rating)


def test_responses_retrieve_delete_and_ownership(client, server):
    from tests.e2e.conftest import issue_key

    created = client.responses.create(model="sandbox", input="keep this")
    assert client.responses.retrieve(created.id).output_text == created.output_text
    other = openai.OpenAI(base_url=server.url + "/v1", api_key=issue_key(server, user_id="mallory"), max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="sandbox", input="x", previous_response_id=created.id)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_responses_refuse_built_in_tools(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o-mini", input="news?", tools=[{"type": "web_search"}])
    assert "web_search" in caught.value.message and caught.value.body["param"] == "tools.0.type"


# -- Anthropic Messages API ------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", list(MODELS))
def test_anthropic_sdk_create_and_stream(claude, provider):
    raw = claude.messages.with_raw_response.create(model=MODELS[provider], max_tokens=256, system="Be brief.",
                                                   messages=[{"role": "user", "content": "ping from claude sdk"}])
    assert raw.headers["x-aiproxy-provider"] == provider and raw.request_id
    message = raw.parse()
    text = message.content[0].text
    assert ("ping from claude sdk" in text) if provider == "sandbox" else text == "Echo: ping from claude sdk"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    with claude.messages.stream(model=MODELS[provider], max_tokens=256,
                                messages=[{"role": "user", "content": "stream me some words"}]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text and final.usage.output_tokens > 0
    if provider != "sandbox":
        assert streamed == "Echo: stream me some words"
        assert final.usage.input_tokens > 0


@pytest.mark.parametrize("provider", list(MODELS))
def test_anthropic_sdk_tools(claude, provider):
    first = claude.messages.create(model=MODELS[provider], max_tokens=256, tools=[CLAUDE_TOOL],
                                   messages=[{"role": "user", "content": "Paris"}])
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    second = claude.messages.create(model=MODELS[provider], max_tokens=256, tools=[CLAUDE_TOOL], messages=[
        {"role": "user", "content": "Paris"}, {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]}])
    assert "sunny, 21 C" in second.content[0].text
    with claude.messages.stream(model=MODELS[provider], max_tokens=256, tools=[CLAUDE_TOOL],
                                messages=[{"role": "user", "content": "Paris"}]) as stream:
        final = stream.get_final_message()
    assert final.content[-1].type == "tool_use" and final.content[-1].input == {"city": "Paris"}


def test_anthropic_sdk_count_tokens_and_errors(claude, server):
    counted = claude.messages.count_tokens(model=MODELS["anthropic"], system="Be brief.",
                                           messages=[{"role": "user", "content": "hello there"}])
    assert counted.input_tokens > 3
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="sandbox", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server.url, api_key="sk-aip-wrong-key", max_retries=0).messages.create(
            model="sandbox", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model=MODELS["anthropic"], max_tokens=5,
                               messages=[{"role": "user", "content": "x [fake:error=429 retry=1]"}])


def test_browser_style_preflight_against_the_real_server(server):
    resp = httpx.options(server.url + "/v1/messages", headers={
        "Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key,anthropic-version,x-stainless-os"})
    assert resp.status_code == 204 and resp.headers["access-control-allow-origin"] == "http://127.0.0.1:5173"
    assert resp.headers["access-control-allow-headers"] == "anthropic-version, content-type, x-api-key, x-stainless-os"
    assert "origin" in resp.headers["vary"].lower() and resp.headers["x-request-id"]
    denied = httpx.options(server.url + "/v1/responses", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert not [h for h in denied.headers if h.lower().startswith("access-control-")]
