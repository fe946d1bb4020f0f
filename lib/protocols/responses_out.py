"""The gateway's chat answer as an OpenAI Responses API ``response`` object, and its chunks as the typed
event sequence the openai SDK parses (``response.created`` … ``response.completed``, ``sequence_number``
on each).

Output items: the text becomes one ``message`` item with an ``output_text`` part (a refusal a
``refusal`` part); each tool call a ``function_call`` item whose ``call_id`` is the chat tool call's id.
finish_reason ``length`` / ``content_filter`` make the response ``incomplete`` (``incomplete_details.reason``
``max_output_tokens`` / ``content_filter``); a stream that fails after it started ends with
``response.failed``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator

from lib.protocols.responses import CustomTool, FunctionTool, NamedChoice, ResponsesRequest

Event = tuple[str, dict[str, Any]]
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """``resp_…``, ``msg_…``, ``fc_…`` ids."""
    return f"{prefix}_{uuid.uuid4().hex}"


def usage_of(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses ``usage`` from chat usage (``None`` stays ``None``)."""
    if not usage:
        return None
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    written = int((usage.get("prompt_tokens_details") or {}).get("cache_creation_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class ResponseShape:
    """Builds the ``response`` object for one request: the echo of its parameters plus output and usage."""

    def __init__(self, req: ResponsesRequest, *, proxy_id: str, response_id: str | None = None,
                 created_at: int | None = None) -> None:
        self.req = req
        self.id = response_id or new_id("resp")
        self.created_at = created_at or int(time.time())
        self.proxy_id = proxy_id

    def envelope(self, status: str, model: str, output: list[dict[str, Any]] | None = None,
                 usage: dict[str, Any] | None = None, finish: str | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``response`` object with ``status`` (``in_progress``, ``completed``, ``incomplete``, ``failed``)."""
        req = self.req
        fmt = req.text.format if req.text and req.text.format else None
        text: dict[str, Any] = {"format": _format_echo(fmt), "verbosity": (req.text.verbosity if req.text else None)
                                or "medium"}
        reason = INCOMPLETE.get(finish or "") if status != "failed" else None
        if reason:
            status = "incomplete"
        out = {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "background": False, "completed_at": int(time.time()) if status == "completed" else None,
            "error": error, "incomplete_details": {"reason": reason} if reason else None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens, "max_tool_calls": None,
            "model": model, "output": output or [],
            "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
            "previous_response_id": req.previous_response_id, "prompt_cache_key": req.prompt_cache_key,
            "reasoning": {"effort": req.reasoning.effort if req.reasoning else None,
                          "summary": req.reasoning.summary if req.reasoning else None},
            "safety_identifier": req.safety_identifier, "service_tier": req.service_tier or "default",
            "store": req.stored, "temperature": 1.0 if req.temperature is None else req.temperature, "text": text,
            "tool_choice": _choice_echo(req), "tools": [_tool_echo(t) for t in req.tools or []], "top_logprobs": 0,
            "top_p": 1.0 if req.top_p is None else req.top_p, "truncation": "disabled", "usage": usage,
            "user": req.user, "metadata": dict(req.metadata or {}), "proxy_id": self.proxy_id,
        }
        for optional in ("user", "prompt_cache_key", "safety_identifier", "usage"):  # absent, never null
            if out[optional] is None:
                del out[optional]
        return out

    def from_completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        """The finished ``response`` for a ``chat.completion``."""
        choice = (completion.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        finish = choice.get("finish_reason")
        done = "incomplete" if finish in INCOMPLETE else "completed"
        output: list[dict[str, Any]] = []
        content = message.get("content")
        text = content if isinstance(content, str) else "".join(
            p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")
        parts = [text_part(text)] if text else []
        if message.get("refusal"):
            parts.append({"type": "refusal", "refusal": message["refusal"]})
        if parts:
            output.append({"type": "message", "id": new_id("msg"), "status": done, "role": "assistant",
                           "content": parts})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            output.append({"type": "function_call", "id": new_id("fc"), "call_id": call.get("id") or new_id("call"),
                           "name": function.get("name") or "", "arguments": function.get("arguments") or "",
                           "status": "completed"})
        return self.envelope("completed", completion.get("model") or self.req.model, output,
                             usage_of(completion.get("usage")), finish)


def _format_echo(fmt: Any) -> dict[str, Any]:
    if fmt is None or fmt.type == "text":
        return {"type": "text"}
    if fmt.type == "json_object":
        return {"type": "json_object"}
    out = {"type": "json_schema", "name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}
    if fmt.description:
        out["description"] = fmt.description
    return out


def _choice_echo(req: ResponsesRequest) -> Any:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, NamedChoice):
        return {"type": choice.type, "name": choice.name}
    if isinstance(choice, str):
        return choice
    return choice.model_dump()


def _tool_echo(tool: FunctionTool | CustomTool) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        return {"type": "function", "name": tool.name, "description": tool.description,
                "parameters": tool.parameters or {"type": "object", "properties": {}},
                "strict": True if tool.strict is None else tool.strict}
    out: dict[str, Any] = {"type": "custom", "name": tool.name}
    if tool.description:
        out["description"] = tool.description
    if tool.format:
        out["format"] = tool.format
    return out


class EventStream:
    """Turns the gateway's chunk iterator into Responses events (one instance per stream).

    ``on_done(response)`` runs with the final ``response`` object before ``response.completed`` (or
    ``response.incomplete``) is sent: the store keeps it there, so a client that reads the last event can
    continue the conversation at once.
    """

    def __init__(self, shape: ResponseShape, model: str, on_done: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.shape = shape
        self.model = model
        self.on_done = on_done
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.text_item: dict[str, Any] | None = None  # the open message item
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool_calls index -> its open function_call item
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None

    def _event(self, kind: str, **data: Any) -> Event:
        event = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return kind, event

    def events(self, chunks: Iterator[dict[str, Any]]) -> Iterator[Event]:
        """Every event of the stream, in order; an ``{"error": ...}`` item ends it with ``response.failed``."""
        yield self._event("response.created", response=self.shape.envelope("in_progress", self.model))
        yield self._event("response.in_progress", response=self.shape.envelope("in_progress", self.model))
        for chunk in chunks:
            if "error" in chunk and not chunk.get("choices"):
                yield from self._close_items("incomplete")
                err = chunk["error"] if isinstance(chunk["error"], dict) else {}
                code = "rate_limit_exceeded" if err.get("type") == "rate_limit_error" else "server_error"
                failed = self.shape.envelope("failed", self.model, self.output, usage_of(self.usage),
                                             error={"code": code, "message": err.get("message") or "The stream failed."})
                yield self._event("response.failed", response=failed)
                return
            if chunk.get("usage"):
                self.usage = chunk["usage"]
            self.model = chunk.get("model") or self.model
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                yield from self._delta(choice.get("delta") or {})
                self.finish = choice.get("finish_reason") or self.finish
        status = "incomplete" if self.finish in INCOMPLETE else "completed"
        yield from self._close_items(status)
        final = self.shape.envelope("completed", self.model, self.output, usage_of(self.usage), self.finish)
        if self.on_done is not None:
            self.on_done(final)
        yield self._event("response.incomplete" if final["status"] == "incomplete" else "response.completed",
                          response=final)

    def _delta(self, delta: dict[str, Any]) -> Iterator[Event]:
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.text_item is None:
                yield from self._open_text()
            item = self.text_item
            assert item is not None
            item["content"][0]["text"] += text
            yield self._event("response.output_text.delta", item_id=item["id"], output_index=item["_index"],
                              content_index=0, delta=text, logprobs=[])
        for call in delta.get("tool_calls") or []:
            index = call.get("index", 0)
            function = call.get("function") or {}
            item = self.calls.get(index)
            if item is None:
                if self.text_item is not None:
                    yield from self._close_text("completed")
                item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "arguments": "",
                        "call_id": call.get("id") or new_id("call"), "name": function.get("name") or "",
                        "_index": len(self.output)}
                self.calls[index] = item
                self.output.append(item)
                yield self._event("response.output_item.added", output_index=item["_index"], item=_public(item))
            if function.get("arguments"):
                item["arguments"] += function["arguments"]
                yield self._event("response.function_call_arguments.delta", item_id=item["id"],
                                  output_index=item["_index"], delta=function["arguments"])

    def _open_text(self) -> Iterator[Event]:
        item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant", "content": [],
                "_index": len(self.output)}
        self.text_item = item
        self.output.append(item)
        yield self._event("response.output_item.added", output_index=item["_index"], item=_public(item))
        item["content"].append(text_part(""))
        yield self._event("response.content_part.added", item_id=item["id"], output_index=item["_index"],
                          content_index=0, part=text_part(""))

    def _close_text(self, status: str) -> Iterator[Event]:
        item = self.text_item
        if item is None:
            return
        self.text_item = None
        text = item["content"][0]["text"]
        yield self._event("response.output_text.done", item_id=item["id"], output_index=item["_index"],
                          content_index=0, text=text, logprobs=[])
        yield self._event("response.content_part.done", item_id=item["id"], output_index=item["_index"],
                          content_index=0, part=text_part(text))
        item["status"] = status
        yield self._event("response.output_item.done", output_index=item["_index"], item=_public(item))

    def _close_items(self, status: str) -> Iterator[Event]:
        yield from self._close_text(status)
        for item in sorted(self.calls.values(), key=lambda i: i["_index"]):
            if item["status"] != "in_progress":
                continue
            yield self._event("response.function_call_arguments.done", item_id=item["id"], output_index=item["_index"],
                              name=item["name"], arguments=item["arguments"])
            item["status"] = "completed" if status == "completed" else status
            yield self._event("response.output_item.done", output_index=item["_index"], item=_public(item))
        self.output = [_public(item) for item in self.output]


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of an output item without the builder's bookkeeping (``_index``)."""
    out = {k: v for k, v in item.items() if k != "_index"}
    if "content" in out:
        out["content"] = [dict(p) for p in out["content"]]
    return out
