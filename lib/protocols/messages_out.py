"""The gateway's answers in the Anthropic Messages API's shapes: a ``message`` object, its SSE event sequence
(``message_start``, ``content_block_start``, ``ping``, ``content_block_delta`` with ``text_delta`` /
``input_json_delta``, ``content_block_stop``, ``message_delta`` with usage and ``stop_reason``,
``message_stop``), and errors as ``{"type": "error", "error": {"type", "message"}}``.

A natively served request (``lib.providers.anthropic``'s ``RAW_FIELD`` / ``RAW_EVENTS``) is answered with
what Anthropic sent; everything else (other providers, cache hits) is translated from the chat answer.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

from lib import errors
from lib.providers.anthropic import RAW_EVENTS, RAW_FIELD

Event = tuple[str, dict[str, Any]]
STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal",
               "function_call": "tool_use"}
# The gateway's statuses (lib.errors) as Anthropic's error types; the HTTP status itself is kept.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 502: "api_error",
               503: "overloaded_error", 504: "timeout_error"}


def message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error envelope for a gateway error of ``status``."""
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error" if status >= 500
                                                                else "invalid_request_error"), "message": message}}


def error_of(exc: errors.GatewayError) -> dict[str, Any]:
    return error_body(exc.status, exc.message)


def usage_of(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic usage from chat usage: ``input_tokens`` excludes cache reads and writes, as Anthropic counts."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    read, written = int(details.get("cached_tokens") or 0), int(details.get("cache_creation_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {"input_tokens": max(0, prompt - read - written), "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read, "output_tokens": int(usage.get("completion_tokens") or 0)}


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def from_completion(completion: dict[str, Any], proxy_id: str) -> dict[str, Any]:
    """The ``message`` for a chat completion (or, for a native request, the one Anthropic sent)."""
    raw = completion.get(RAW_FIELD)
    if isinstance(raw, dict):
        out = dict(raw)
        if completion.get("id", "").removeprefix("chatcmpl-") != raw.get("id"):  # replayed from the cache
            out["id"] = message_id()
        out["proxy_id"] = proxy_id
        return out
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict) and p.get("type") == "text")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                        "name": function.get("name") or "", "input": _input(function.get("arguments") or "")})
    return {"id": message_id(), "type": "message", "role": "assistant", "model": completion.get("model") or "",
            "content": content, "stop_reason": STOP_REASON.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None, "usage": usage_of(completion.get("usage")), "proxy_id": proxy_id}


class EventStream:
    """The gateway's chunks as Messages API events (one instance per stream)."""

    def __init__(self, model: str, proxy_id: str) -> None:
        self.model = model
        self.proxy_id = proxy_id
        self.block: int | None = None  # index of the open content block
        self.kind: str | None = None  # "text" or the chat tool_calls index of the open tool_use block
        self.blocks = 0
        self.tools: dict[int, int] = {}  # chat tool_calls index -> block index
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.pinged = False

    def events(self, chunks: Iterator[dict[str, Any]]) -> Iterator[Event]:
        """Every event, in order; a native stream's own events pass through as they are."""
        native: bool | None = None
        for chunk in chunks:
            if "error" in chunk and not chunk.get("choices"):
                err = chunk["error"] if isinstance(chunk["error"], dict) else {}
                status = ({"rate_limit_error": 429, "invalid_request_error": 400}.get(err.get("type"))
                          or {"upstream_unavailable": 503, "upstream_timeout": 504}.get(err.get("code"), 500))
                yield "error", error_body(status, err.get("message") or "The stream failed.")
                return
            if native is None:
                native = RAW_EVENTS in chunk
                if not native:
                    yield self._start(chunk)
            if native:
                for event in chunk.get(RAW_EVENTS) or []:
                    yield str(event.get("type") or "message"), event
                continue
            if chunk.get("usage"):
                self.usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) == 0:
                    yield from self._delta(choice.get("delta") or {})
                    self.finish = choice.get("finish_reason") or self.finish
        if native:
            return
        if native is None:
            yield self._start({})
        yield from self._close()
        usage = usage_of(self.usage)
        yield "message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": STOP_REASON.get(self.finish or "stop", "end_turn"),
                                          "stop_sequence": None}, "usage": usage}
        yield "message_stop", {"type": "message_stop"}

    def _start(self, chunk: dict[str, Any]) -> Event:
        return "message_start", {"type": "message_start", "message": {
            "id": message_id(), "type": "message", "role": "assistant", "model": chunk.get("model") or self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}, "proxy_id": self.proxy_id}}

    def _open(self, block: dict[str, Any], kind: str) -> Iterator[Event]:
        yield from self._close()
        self.block, self.kind = self.blocks, kind
        self.blocks += 1
        yield "content_block_start", {"type": "content_block_start", "index": self.block, "content_block": block}
        if not self.pinged:
            self.pinged = True
            yield "ping", {"type": "ping"}

    def _close(self) -> Iterator[Event]:
        if self.block is not None:
            yield "content_block_stop", {"type": "content_block_stop", "index": self.block}
            self.block = self.kind = None

    def _delta(self, delta: dict[str, Any]) -> Iterator[Event]:
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.kind != "text":
                yield from self._open({"type": "text", "text": ""}, "text")
            yield "content_block_delta", {"type": "content_block_delta", "index": self.block,
                                          "delta": {"type": "text_delta", "text": text}}
        for call in delta.get("tool_calls") or []:
            n = int(call.get("index", 0))
            function = call.get("function") or {}
            if n not in self.tools:
                block = {"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                         "name": function.get("name") or "", "input": {}}
                yield from self._open(block, f"tool{n}")
                self.tools[n] = self.block  # type: ignore[assignment]
            if function.get("arguments"):
                yield "content_block_delta", {"type": "content_block_delta", "index": self.tools[n],
                                              "delta": {"type": "input_json_delta",
                                                        "partial_json": function["arguments"]}}
