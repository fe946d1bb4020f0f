"""Anthropic Messages API (``POST {base}/v1/messages``) behind the OpenAI chat interface.

Request mapping lives in ``lib.providers.anthropic_request`` (system, tools, images, structured output as a
forced tool, the parameters it refuses). Here: the adapter, and the response side: a Messages response or
its SSE events become an OpenAI ``chat.completion`` or chunks. The forced JSON tool's input comes back as
message text with finish_reason ``stop``. For a request that came in through ``/v1/messages`` (the body
carries ``NATIVE_FIELD``), the Anthropic response itself rides along: ``RAW_FIELD`` on the completion,
``RAW_EVENTS`` on each chunk (one chunk per upstream event), so that ingress can answer natively
(thinking blocks, citations, server tools and all).
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any, Iterator

import httpx

from lib import errors
from lib.providers import httpjson
from lib.protocols.chat import NATIVE_FIELD
from lib.providers.anthropic_request import (  # noqa: F401 - re-exported for callers of the old module
    DEFAULT_MAX_TOKENS, JsonMode, build_request, image_source, to_anthropic,
)
from lib.providers.base import ProviderConfig, failed, make_chunk, make_completion, make_usage, now, raise_for_status
from lib.providers.registry import ProviderType

log = logging.getLogger("aiproxy.providers.anthropic")

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
RAW_FIELD = "_anthropic"  # the upstream message, on completions of native requests
RAW_EVENTS = "_anthropic_events"  # the upstream events a chunk was made from, on chunks of native requests
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
          "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


class AnthropicProvider:
    """Adapter for Anthropic's Messages API."""

    def __init__(self, config: ProviderConfig, http: httpx.Client) -> None:
        self.name = config.name or "anthropic"
        self._keys = tuple(k for k in config.api_keys if k)
        self._url = (config.base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"
        self._http = http
        self._counter = itertools.count()

    def configured(self) -> bool:
        """True when an API key is set."""
        return bool(self._keys)

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return an OpenAI ``chat.completion`` dict. Raises ``UpstreamError`` subclasses."""
        payload, json_mode, headers = build_request(body, model)
        data = httpjson.json_body(self._send(payload, timeout, stream=False, headers=headers), self.name)
        result = from_anthropic(data, model, json_mode)
        if body.get(NATIVE_FIELD):
            result[RAW_FIELD] = data
        return result

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield OpenAI chunks: role chunk, deltas, finish chunk, usage chunk. Raises ``UpstreamError``."""
        payload, json_mode, headers = build_request(body, model)
        response = self._send(dict(payload, stream=True), timeout, stream=True, headers=headers)
        parser = StreamParser(model, json_mode, native=bool(body.get(NATIVE_FIELD)))
        return httpjson.ClosingStream(self._iterate(response, parser), response.close)

    def _iterate(self, response: httpx.Response, parser: "StreamParser") -> Iterator[dict[str, Any]]:
        try:
            for event, data in httpjson.sse_events(response, self.name):
                yield from parser.feed(event, data)
            parser.finish()
        finally:
            response.close()

    def _send(self, payload: dict[str, Any], timeout: float, *, stream: bool,
              headers: dict[str, str] | None = None) -> httpx.Response:
        if not self._keys:
            raise errors.UpstreamUnavailable("Provider 'anthropic' is not configured (no API key)", provider=self.name)
        key = self._keys[next(self._counter) % len(self._keys)]
        headers = {**(headers or {}), "x-api-key": key, "anthropic-version": API_VERSION,
                   "accept": "text/event-stream" if stream else "application/json"}
        return httpjson.send(self._http, self._url, body=payload, headers=headers, timeout=timeout,
                             provider=self.name, stream=stream, on_error=_raise_for_status)


def _raise_for_status(response: httpx.Response, provider: str) -> None:
    """Anthropic's 529 ``overloaded_error`` is a 503 for our clients; the rest maps as usual."""
    if response.status_code == 529:
        response.read()
        raise failed(errors.UpstreamUnavailable("Provider 'anthropic' is overloaded", provider=provider),
                     response.text, 529)
    raise_for_status(response, provider)


# -- response mapping ---------------------------------------------------------------------------------

def _usage(usage: dict[str, Any], output_tokens: int | None = None) -> dict[str, Any]:
    """OpenAI usage from Anthropic's; cache reads and writes count as prompt tokens and are itemised."""
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cache_read + cache_write
    output = output_tokens if output_tokens is not None else int(usage.get("output_tokens") or 0)
    return make_usage(prompt, output, {"prompt_tokens_details": {"cached_tokens": cache_read,
                                                                  "cache_creation_tokens": cache_write}})


def _json_text(value: Any, json_mode: JsonMode) -> str:
    if json_mode.wrapped and isinstance(value, dict):
        value = value.get("value")
    return json.dumps(value, ensure_ascii=False)


def from_anthropic(data: dict[str, Any], model: str, json_mode: JsonMode | None = None) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` dict from a Messages API response (the forced JSON tool's input, when
    ``json_mode`` names one, as the message text with finish_reason ``stop``)."""
    blocks = data.get("content") or []
    texts = [b.get("text", "") for b in blocks if b.get("type") == "text"]
    tool_calls = []
    for b in blocks:
        if b.get("type") != "tool_use":
            continue
        if json_mode is not None and b.get("name") == json_mode.tool:
            texts = [_json_text(b.get("input"), json_mode)]  # the answer; prose around it is the model thinking aloud
        else:
            tool_calls.append({"id": b.get("id"), "type": "function",
                               "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}})
    text = "".join(texts)
    finish = FINISH.get(data.get("stop_reason") or "", "stop")
    if finish == "tool_calls" and not tool_calls:
        finish = "stop"
    result = make_completion(
        model=data.get("model") or model,
        content=text if text or not tool_calls else None,
        finish_reason=finish,
        prompt_tokens=None, completion_tokens=None, tool_calls=tool_calls or None,
        id=f"chatcmpl-{data['id']}" if data.get("id") else None,
    )
    if isinstance(data.get("usage"), dict):
        result["usage"] = _usage(data["usage"])
    return result


class StreamParser:
    """Turns Anthropic SSE events into OpenAI chunks (one parser per stream).

    ``json_mode``: the forced JSON tool's input streams as content. ``native``: every event yields one chunk
    (an empty delta when it has nothing for OpenAI clients) carrying the event itself under ``RAW_EVENTS``.
    """

    def __init__(self, model: str, json_mode: JsonMode | None = None, *, native: bool = False) -> None:
        self.id = "chatcmpl-"
        self.model = model
        self.created = now()
        self.usage: dict[str, Any] | None = None
        self.output_tokens: int | None = None
        self.tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self.json_mode = json_mode
        self.json_blocks: dict[int, list[str]] = {}  # block index of the JSON tool → its partial JSON
        self.native = native
        self.stopped = False

    def _chunk(self, delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
        return make_chunk(id=self.id, model=self.model, created=self.created, delta=delta, finish_reason=finish)

    def feed(self, event: str | None, data: str) -> Iterator[dict[str, Any]]:
        """The chunks for one SSE event. Raises ``UpstreamError`` on an ``error`` event."""
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise errors.UpstreamError("Provider 'anthropic' sent a malformed stream event",
                                       provider="anthropic") from exc
        if not self.native:
            yield from self._translate(payload, event, data)
            return
        chunks = list(self._translate(payload, event, data))
        with_choice = [c for c in chunks if c["choices"]]
        carrier = with_choice[0] if with_choice else self._chunk({})
        for c in chunks:
            if not c["choices"] and c.get("usage"):
                carrier["usage"] = c["usage"]  # the gateway reads usage from any chunk
        carrier[RAW_EVENTS] = [payload]
        yield carrier
        yield from with_choice[1:]

    def _translate(self, payload: dict[str, Any], event: str | None, data: str) -> Iterator[dict[str, Any]]:
        kind = payload.get("type") or event
        if kind == "message_start":
            message = payload.get("message") or {}
            self.id = "chatcmpl-" + str(message.get("id") or "")
            self.model = message.get("model") or self.model
            if isinstance(message.get("usage"), dict):
                self.usage = dict(message["usage"])
            yield self._chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            index = payload.get("index", 0)
            if block.get("type") == "tool_use" and self.json_mode is not None and block.get("name") == self.json_mode.tool:
                self.json_blocks[index] = []
            elif block.get("type") == "tool_use":
                n = self.tool_index[index] = len(self.tool_index)
                yield self._chunk({"tool_calls": [{"index": n, "id": block.get("id"), "type": "function",
                                                   "function": {"name": block.get("name"), "arguments": ""}}]})
            elif block.get("type") == "text" and block.get("text"):
                yield self._chunk({"content": block["text"]})
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            index = payload.get("index")
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield self._chunk({"content": delta["text"]})
            elif delta.get("type") == "input_json_delta" and index in self.json_blocks:
                self.json_blocks[index].append(delta.get("partial_json", ""))
                if not self.json_mode.wrapped and delta.get("partial_json"):  # type: ignore[union-attr]
                    yield self._chunk({"content": delta["partial_json"]})
            elif delta.get("type") == "input_json_delta" and index in self.tool_index:
                yield self._chunk({"tool_calls": [{"index": self.tool_index[index],
                                                   "function": {"arguments": delta.get("partial_json", "")}}]})
        elif kind == "content_block_stop":
            index = payload.get("index")
            if index in self.json_blocks and self.json_mode is not None and self.json_mode.wrapped:
                try:
                    value = json.loads("".join(self.json_blocks[index]) or "{}")
                except ValueError:
                    value = {}
                yield self._chunk({"content": _json_text(value, self.json_mode)})
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            if usage:
                self.usage = {**(self.usage or {}), **{k: v for k, v in usage.items() if v is not None}}
                self.output_tokens = usage.get("output_tokens", self.output_tokens)
            finish = FINISH.get((payload.get("delta") or {}).get("stop_reason") or "", "stop")
            if finish == "tool_calls" and not self.tool_index:
                finish = "stop"  # only the JSON tool was called: that is the answer
            yield self._chunk({}, finish)
        elif kind == "message_stop":
            self.stopped = True
            if self.usage is not None:
                yield make_chunk(id=self.id, model=self.model, created=self.created, with_choice=False,
                                 usage=_usage(self.usage, self.output_tokens))
        elif kind == "error":
            err = payload.get("error") or {}
            raise failed(errors.UpstreamError(f"Provider 'anthropic' failed mid-stream: {err.get('type', 'error')}",
                                              provider="anthropic"), payload)
        # ping and unknown events (thinking deltas, future types) have nothing for OpenAI clients

    def finish(self) -> None:
        """Raise ``UpstreamError`` when the stream ended before ``message_stop``."""
        if not self.stopped:
            raise errors.UpstreamError("Provider 'anthropic' ended the stream early", provider="anthropic")


TYPE = ProviderType(name="anthropic", adapter=AnthropicProvider, key_env=("ANTHROPIC_API_KEY",),
                    base_url_env="ANTHROPIC_BASE_URL", default_base_url=DEFAULT_BASE_URL, prefixes=("claude-",))
