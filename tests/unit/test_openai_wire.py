"""The OpenAI adapter on the wire (lib/providers/openai_provider.py) where upstreams misbehave at the edges:
a connection that breaks after ``[DONE]``, an error body that breaks off, what orjson refuses but servers send,
SSE events named ``message``. httpx.MockTransport stands in for the server."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from lib import errors
from lib.providers.base import ProviderConfig
from lib.providers.openai_provider import OpenAIProvider

CHUNK = (b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
         b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}')
BODY = {"messages": [{"role": "user", "content": "hi"}]}


class Broken(httpx.SyncByteStream):
    """Sends ``parts``, then fails the way a dropped connection does."""

    def __init__(self, *parts: bytes, error: Exception) -> None:
        self.parts, self.error = parts, error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts
        raise self.error


def provider(handler) -> OpenAIProvider:  # noqa: ANN001
    return OpenAIProvider(ProviderConfig(api_keys=("k",), base_url="http://upstream.test/v1"),
                          httpx.Client(transport=httpx.MockTransport(handler)))


def test_a_connection_broken_after_done_leaves_the_answer_whole() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Broken(
            b"data: " + CHUNK + b"\n\n", b"data: [DONE]\n\n", error=httpx.RemoteProtocolError("peer closed")))

    chunks = list(provider(handler).stream(BODY, model="m", timeout=5))
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["hi"]


def test_an_error_body_that_breaks_off_keeps_its_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "7"},
                              stream=Broken(b'{"error": {"mess', error=httpx.ReadTimeout("stalled")))

    with pytest.raises(errors.UpstreamRateLimited) as caught:
        list(provider(handler).stream(BODY, model="m", timeout=5))
    assert caught.value.retry_after == 7.0
    with pytest.raises(errors.UpstreamRateLimited):
        provider(handler).complete(BODY, model="m", timeout=5)


def test_what_orjson_refuses_but_servers_send_is_read() -> None:
    completion = (b'\xef\xbb\xbf{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
                  b'"message":{"role":"assistant","content":"x"},"finish_reason":"stop",'
                  b'"logprobs":{"content":[{"token":"x","logprob":-Infinity}]}}]}')

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=completion, headers={"content-type": "application/json"})

    result = provider(handler).complete(BODY, model="m", timeout=5)
    assert result["choices"][0]["message"]["content"] == "x"
    assert result["choices"][0]["logprobs"]["content"][0]["logprob"] == float("-inf")


def test_events_named_message_are_chunks_and_other_names_are_not() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = (b"event: message\ndata: " + CHUNK + b"\n\n" + b"event: ping\ndata: {}\n\n" + b"data: [DONE]\n\n")
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    assert len(list(provider(handler).stream(BODY, model="m", timeout=5))) == 1


def test_an_error_event_mid_stream_is_an_upstream_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = b"data: " + CHUNK + b"\n\n" + b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    stream = provider(handler).stream(BODY, model="m", timeout=5)
    assert next(stream)["choices"][0]["delta"]["content"] == "hi"
    with pytest.raises(errors.UpstreamError) as caught:
        next(stream)
    assert "overloaded" in caught.value.message
