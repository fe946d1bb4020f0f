"""Anthropic Messages API (``POST {base}/v1/messages``) behind the OpenAI chat interface.

Request mapping: system/developer messages become ``system``; ``tool`` messages become user
``tool_result`` blocks and assistant ``tool_calls`` become ``tool_use`` blocks; consecutive messages of
one role are merged (the API wants user/assistant turns); ``max_tokens`` is required there (default
4096); temperature is clamped to Anthropic's 0–1; data: image URLs become base64 ``image`` blocks.
``response_format`` has no Messages API equivalent and is not sent.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any, Iterator

import httpx

from lib import errors
from lib.providers import httpjson
from lib.providers.registry import ProviderType
from lib.providers.base import ProviderConfig, make_chunk, make_completion, make_usage, now, raise_for_status, text_of

log = logging.getLogger("aiproxy.providers.anthropic")

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
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
        response = self._send(to_anthropic(body, model), timeout, stream=False)
        return from_anthropic(httpjson.json_body(response, self.name), model)

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield OpenAI chunks: role chunk, deltas, finish chunk, usage chunk. Raises ``UpstreamError``."""
        payload = dict(to_anthropic(body, model), stream=True)
        response = self._send(payload, timeout, stream=True)
        return httpjson.ClosingStream(self._iterate(response, model), response.close)

    def _iterate(self, response: httpx.Response, model: str) -> Iterator[dict[str, Any]]:
        try:
            parser = StreamParser(model)
            for event, data in httpjson.sse_events(response, self.name):
                yield from parser.feed(event, data)
            parser.finish()
        finally:
            response.close()

    def _send(self, payload: dict[str, Any], timeout: float, *, stream: bool) -> httpx.Response:
        if not self._keys:
            raise errors.UpstreamUnavailable("Provider 'anthropic' is not configured (no API key)", provider=self.name)
        key = self._keys[next(self._counter) % len(self._keys)]
        headers = {"x-api-key": key, "anthropic-version": API_VERSION,
                   "accept": "text/event-stream" if stream else "application/json"}
        return httpjson.send(self._http, self._url, body=payload, headers=headers, timeout=timeout,
                             provider=self.name, stream=stream, on_error=_raise_for_status)


def _raise_for_status(response: httpx.Response, provider: str) -> None:
    """Anthropic's 529 ``overloaded_error`` is a 503 for our clients; the rest maps as usual."""
    if response.status_code == 529:
        response.read()
        log.warning("upstream anthropic overloaded body=%.2000s", response.text)
        raise errors.UpstreamUnavailable("Provider 'anthropic' is overloaded", provider=provider)
    raise_for_status(response, provider)


# -- request mapping ----------------------------------------------------------------------------------

def to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat body. Raises ``UpstreamBadRequest`` for unmappable input."""
    if int(body.get("n") or 1) > 1:
        raise errors.UpstreamBadRequest("Provider 'anthropic' does not support n > 1", provider="anthropic", param="n")
    system, messages = _messages(body.get("messages") or [])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    payload: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": int(max_tokens)}
    if system:
        payload["system"] = system
    if body.get("temperature") is not None:
        payload["temperature"] = min(1.0, max(0.0, float(body["temperature"])))
    if body.get("top_p") is not None:
        payload["top_p"] = body["top_p"]
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    stops = [s for s in stops if isinstance(s, str) and s.strip()]  # the API rejects whitespace-only ones
    if stops:
        payload["stop_sequences"] = stops
    if isinstance(body.get("user"), str):
        payload["metadata"] = {"user_id": body["user"]}
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if tools:
        payload["tools"] = [_tool(t["function"]) for t in tools]
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            payload["tool_choice"] = choice
    return payload


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": function["name"],
                            "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        result: dict[str, Any] = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "auto" or parallel is False:
        result = {"type": "auto"}
    else:
        return None
    if parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def _messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``(system text, merged user/assistant turns)`` from OpenAI messages."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text:
                system.append(text)
            continue
        if role in ("tool", "function"):
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id") or "",
                                     "content": text_of(message.get("content"))}]
        elif role == "assistant":
            blocks = _content_blocks(message.get("content")) + [_tool_use(c) for c in message.get("tool_calls") or []]
        else:
            role, blocks = "user", _content_blocks(message.get("content"))
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and part.get("text"):
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
            if part.get("cache_control"):
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append({"type": "image", "source": image_source(url)})
    return blocks


def image_source(url: str) -> dict[str, Any]:
    """An Anthropic image ``source`` for a ``data:`` URL (base64) or an http(s) URL."""
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type = header.split(";")[0] or "image/png"
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError as exc:
        raise errors.UpstreamBadRequest("Tool call arguments must be a JSON object", provider="anthropic",
                                        param="messages") from exc
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    return {"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "", "input": arguments}


# -- response mapping ---------------------------------------------------------------------------------

def _usage(usage: dict[str, Any], output_tokens: int | None = None) -> dict[str, Any]:
    """OpenAI usage from Anthropic's; cache reads and writes count as prompt tokens and are itemised."""
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cache_read + cache_write
    output = output_tokens if output_tokens is not None else int(usage.get("output_tokens") or 0)
    return make_usage(prompt, output, {"prompt_tokens_details": {"cached_tokens": cache_read,
                                                                  "cache_creation_tokens": cache_write}})


def from_anthropic(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` dict from a Messages API response."""
    blocks = data.get("content") or []
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    tool_calls = [{"id": b.get("id"), "type": "function",
                   "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}}
                  for b in blocks if b.get("type") == "tool_use"]
    result = make_completion(
        model=data.get("model") or model,
        content=text if text or not tool_calls else None,
        finish_reason=FINISH.get(data.get("stop_reason") or "", "stop"),
        prompt_tokens=None, completion_tokens=None, tool_calls=tool_calls or None,
        id=f"chatcmpl-{data['id']}" if data.get("id") else None,
    )
    if isinstance(data.get("usage"), dict):
        result["usage"] = _usage(data["usage"])
    return result


class StreamParser:
    """Turns Anthropic SSE events into OpenAI chunks (one parser per stream)."""

    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-"
        self.model = model
        self.created = now()
        self.usage: dict[str, Any] | None = None
        self.output_tokens: int | None = None
        self.tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index
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
            if block.get("type") == "tool_use":
                index = self.tool_index[payload.get("index", 0)] = len(self.tool_index)
                yield self._chunk({"tool_calls": [{"index": index, "id": block.get("id"), "type": "function",
                                                   "function": {"name": block.get("name"), "arguments": ""}}]})
            elif block.get("type") == "text" and block.get("text"):
                yield self._chunk({"content": block["text"]})
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield self._chunk({"content": delta["text"]})
            elif delta.get("type") == "input_json_delta" and payload.get("index") in self.tool_index:
                index = self.tool_index[payload["index"]]
                yield self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]})
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            if usage:
                self.usage = {**(self.usage or {}), **{k: v for k, v in usage.items() if v is not None}}
                self.output_tokens = usage.get("output_tokens", self.output_tokens)
            stop_reason = (payload.get("delta") or {}).get("stop_reason")
            yield self._chunk({}, FINISH.get(stop_reason or "", "stop"))
        elif kind == "message_stop":
            self.stopped = True
            if self.usage is not None:
                yield make_chunk(id=self.id, model=self.model, created=self.created, with_choice=False,
                                 usage=_usage(self.usage, self.output_tokens))
        elif kind == "error":
            err = payload.get("error") or {}
            log.warning("upstream anthropic stream error: %.500s", data)
            raise errors.UpstreamError(f"Provider 'anthropic' failed mid-stream: {err.get('type', 'error')}",
                                       provider="anthropic")
        # ping and unknown events (thinking deltas, future types) are ignored

    def finish(self) -> None:
        """Raise ``UpstreamError`` when the stream ended before ``message_stop``."""
        if not self.stopped:
            raise errors.UpstreamError("Provider 'anthropic' ended the stream early", provider="anthropic")


TYPE = ProviderType(name="anthropic", adapter=AnthropicProvider, key_env=("ANTHROPIC_API_KEY",),
                    base_url_env="ANTHROPIC_BASE_URL", default_base_url=DEFAULT_BASE_URL, prefixes=("claude-",))
