"""The official ``openai`` SDK against the real server (gunicorn + gevent), real Redis, fake upstreams."""

from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest

from tests.e2e.conftest import issue_key

pytestmark = pytest.mark.e2e

PROVIDER_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022", "gemini": "gemini-1.5-flash",
                   "sandbox": "sandbox"}


@pytest.mark.parametrize("provider", list(PROVIDER_MODELS))
def test_plain_chat_every_provider(client, provider):
    completion = client.chat.completions.with_raw_response.create(
        model=PROVIDER_MODELS[provider], messages=[{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "ping from the sdk"}])
    assert completion.headers["x-aiproxy-provider"] == provider
    result = completion.parse()
    text = result.choices[0].message.content
    if provider == "sandbox":
        assert "sandbox" in text
    else:
        assert text == "Echo: ping from the sdk"
        assert result.model.startswith(PROVIDER_MODELS[provider].split("-2024")[0][:6])
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.choices[0].finish_reason == "stop"
    assert completion.headers["x-aiproxy-id"] == result.model_extra["proxy_id"]


@pytest.mark.parametrize("provider", list(PROVIDER_MODELS))
def test_streamed_chat_every_provider(client, provider):
    stream = client.chat.completions.create(
        model=PROVIDER_MODELS[provider], messages=[{"role": "user", "content": "stream me some words please"}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if provider != "sandbox":
        assert text == "Echo: stream me some words please"
    assert len([c for c in chunks if c.choices]) >= 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_stream_without_usage_option_has_no_usage(client):
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                 messages=[{"role": "user", "content": "hello"}]))
    assert all(getattr(c, "usage", None) is None for c in chunks)


@pytest.mark.parametrize("directive,exc_type,status", [
    ("[fake:error=400]", openai.BadRequestError, 400),
    ("[fake:error=401]", openai.InternalServerError, 502),
    ("[fake:error=429 retry=1]", openai.RateLimitError, 429),
    ("[fake:error=500]", openai.InternalServerError, 502),
    ("[fake:slow=8]", openai.InternalServerError, 504),
])
def test_upstream_errors_map_to_sdk_exceptions(client, directive, exc_type, status):
    with pytest.raises(exc_type) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": directive}])
    assert info.value.status_code == status
    body = info.value.body
    assert set(body) == {"message", "type", "param", "code"}
    if status == 429:
        assert info.value.response.headers.get("retry-after") == "1"
    if status == 502 and "401" in directive:
        assert "credentials" in body["message"] and "sk-fake" not in body["message"]


def test_gateway_errors_map_to_sdk_exceptions(server, client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="sandbox", messages=[{"role": "user", "content": "x"}], temperature=5)
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-aip-0000000000000000-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="sandbox", messages=[{"role": "user", "content": "x"}])
    limited = openai.OpenAI(base_url=server.url + "/v1", api_key=issue_key(server, models=["gpt-4o-mini"]),
                            max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        limited.chat.completions.create(model="sandbox", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="sandbox", messages=[{"role": "user", "content": "x" * 300_000}])
    assert info.value.status_code == 413


def test_mid_stream_error_is_one_error_event(client):
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "words words [fake:midstream_error]"}])
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_error_before_first_byte_is_plain_http_error(server, gateway_key):
    resp = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {gateway_key}"},
                      json={"model": "gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": "[fake:error=500]"}]})
    assert resp.status_code == 502 and resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"]["type"] == "upstream_error"


def test_client_disconnect_closes_upstream_stream(server, gateway_key, upstream):
    before = len(upstream.disconnects)
    with httpx.Client(timeout=10) as h:
        with h.stream("POST", server.url + "/v1/chat/completions",
                      headers={"Authorization": f"Bearer {gateway_key}"},
                      json={"model": "gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user",
                                          "content": "a b c d e f g h i j [fake:chunks=40 chunk_delay=0.1]"}]}) as resp:
            for i, _ in enumerate(resp.iter_lines()):
                if i > 4:
                    break
    assert upstream.wait_for(lambda: len(upstream.disconnects) > before, timeout=10)


def test_models_endpoint(client):
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "sandbox", "gemini-1.5-pro"} <= ids


def test_200_concurrent_streams_complete_intact(server, gateway_key):
    """A correctness check for the concurrency model (gevent workers), not a timing."""

    def one(i: int) -> str:
        c = openai.OpenAI(base_url=server.url + "/v1", api_key=gateway_key, max_retries=0, timeout=60,
                          http_client=httpx.Client(timeout=60))
        try:
            chunks = list(c.chat.completions.create(
                model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": f"stream number {i} [fake:chunks=6 chunk_delay=0.05]"}]))
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert chunks[-1].usage is not None
            return text
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [f"Echo: stream number {i} [fake:chunks=6 chunk_delay=0.05]" for i in range(200)]


def test_metrics_aggregate_across_workers(server, client):
    client.chat.completions.create(model="sandbox", messages=[{"role": "user", "content": "metrics please"}])
    text = httpx.get(server.url + "/metrics").text
    assert "aiproxy_requests_total" in text and 'endpoint="chat.completions"' in text


def test_embeddings_through_openai_provider(client, upstream):
    result = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
    assert upstream.requests[-1].path.endswith("/v1/embeddings")
