"""The Anthropic Messages wire format: ``POST /v1/messages``, plain and SSE, with its validation errors."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

from tests.fakes.script import Answer, CutConnection, Reply, Request, Turn, first_property, sse

TOP_LEVEL = {"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p",
             "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier", "container", "mcp_servers"}
BLOCKS = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """Anthropic's error body: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    request_id = "req_011" + uuid.uuid4().hex[:20]
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": request_id}
    return Reply(status=status, body=body, headers={"request-id": request_id, **(headers or {})})


def scripted_error(status: int, retry: float | None, model: str) -> Reply:
    messages = {400: "messages: the fake was asked to reject this request", 401: "invalid x-api-key",
                403: "Your API key does not have permission to use the specified resource.",
                404: f"model: {model}", 429: "Number of request tokens has exceeded your per-minute rate limit",
                500: "Internal server error", 529: "Overloaded"}
    headers = {}
    if status == 429:
        headers = {"retry-after": str(int(retry if retry is not None else 1)),
                   "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0"}
    return error(status, messages.get(status, "Internal server error"), headers)


def _check_blocks(i: int, role: str, content: Any, prev_tool_ids: set[str]) -> str | None:
    if isinstance(content, str):
        return None if content else "messages: text content blocks must be non-empty"
    if not isinstance(content, list) or not content:
        return f"messages.{i}.content: Input should be a valid list"
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"messages.{i}.content.{j}"
        if kind not in BLOCKS:
            return f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
        if kind == "text" and not block.get("text"):
            return "messages: text content blocks must be non-empty"
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64" and not (source.get("media_type") and source.get("data")):
                return f"{where}.source: media_type and data are required"
            if source.get("type") not in ("base64", "url"):
                return f"{where}.source.type: Input should be 'base64' or 'url'"
        if kind == "tool_use" and (role != "assistant" or not isinstance(block.get("input"), dict)):
            return f"{where}: tool_use blocks need role assistant and an object input"
        if kind == "tool_result":
            if role != "user":
                return f"{where}: tool_result blocks can only appear in user messages"
            if block.get("tool_use_id") not in prev_tool_ids:
                return (f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}."
                        " Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
    return None


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return str(content or "")


def parse_turn(req: Request, fake: Any) -> Turn | Reply:
    """Check headers and body as the Messages API does, then build the neutral ``Turn``."""
    key = req.headers.get("x-api-key", "")
    if not key:
        return error(401, "x-api-key header is required")
    if not fake.key_ok(key):
        return error(401, "invalid x-api-key")
    if key in fake.rate_limited_keys:
        return scripted_error(429, 1, "")
    if not req.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    body = req.json
    if not isinstance(body, dict):
        return error(400, "There was an issue with your request body: invalid JSON")
    for name in body:
        if name not in TOP_LEVEL:
            return error(400, f"{name}: Extra inputs are not permitted")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return error(400, f"{name}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return error(400, "max_tokens: Input should be a valid integer greater than or equal to 1")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return error(400, "temperature: Input should be less than or equal to 1")
    system = body.get("system", "")
    texts = [system if isinstance(system, str) else "".join(b.get("text", "") for b in system)]
    prev_tool_ids: set[str] = set()
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return error(400, "messages: at least one message is required")
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "system":
            return error(400, 'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                         'parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            return error(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        problem = _check_blocks(i, role, m.get("content"), prev_tool_ids)
        if problem:
            return error(400, problem)
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if prev_tool_ids - results:
            return error(400, f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                         f"immediately after: {', '.join(sorted(prev_tool_ids - results))}. Each `tool_use` block "
                         "must have a corresponding `tool_result` block in the next message.")
        prev_tool_ids = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        texts += [b.get("text", "") for b in blocks if b.get("type") == "text"]
        texts += [_result_text(b) for b in blocks if b.get("type") == "tool_result"]
    for k, tool in enumerate(body.get("tools") or []):
        if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
            return error(400, f"tools.{k}.input_schema: Field required")
    last = [m for m in messages if m["role"] == "user"][-1]
    blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
    results = [_result_text(b) for b in blocks if b.get("type") == "tool_result"]
    last_text = "".join(results) if results else "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    choice = body.get("tool_choice") or {"type": "auto"}
    choice_name = {"auto": "auto", "any": "required", "none": "none"}.get(choice.get("type"), choice.get("name"))
    if choice.get("type") in ("any", "tool") and (body.get("thinking") or {}).get("type") == "enabled":
        return error(400, "Thinking may not be enabled when tool_choice forces tool use.")
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled" and not 1024 <= int(thinking.get("budget_tokens") or 0) < body["max_tokens"]:
        return error(400, "thinking.budget_tokens: must be at least 1024 and less than max_tokens")
    return Turn(texts=texts, last_text=last_text, last_is_tool_result=bool(results) and last is messages[-1],
                max_tokens=body["max_tokens"], stop=list(body.get("stop_sequences") or []),
                tools=[(t["name"], first_property(t["input_schema"])) for t in body.get("tools") or []],
                tool_choice=str(choice_name),
                schemas={t["name"]: t["input_schema"] for t in body.get("tools") or []})


def _usage(a: Answer, output: int) -> dict[str, Any]:
    cached = int(a.number("cached"))
    return {"input_tokens": a.prompt_tokens - cached, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached, "output_tokens": output, "service_tier": "standard"}


THOUGHT = "Thinking it over."
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


def _thinking(body: dict[str, Any]) -> bool:
    """With ``thinking`` enabled the fake answers a thinking block (with its signature) first."""
    return (body.get("thinking") or {}).get("type") == "enabled"


def message(body: dict[str, Any], a: Answer) -> dict[str, Any]:
    if a.tool_call:
        content = [{"type": "tool_use", "id": "toolu_01" + a.call_id, "name": a.tool_call[0], "input": a.tool_call[1]}]
    else:
        content = [{"type": "text", "text": a.text}] if a.text else []
    if _thinking(body):
        content = [{"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}] + content
    stop_reason = "stop_sequence" if a.stop_sequence else STOP_REASON[a.finish]
    return {"id": "msg_01" + uuid.uuid4().hex[:22], "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": stop_reason, "stop_sequence": a.stop_sequence,
            "usage": _usage(a, a.completion_tokens)}


def stream_frames(body: dict[str, Any], a: Answer) -> Iterator[bytes]:
    """message_start, content_block_start/ping/delta.../stop, message_delta, message_stop."""
    full = message(body, a)
    start = dict(full, content=[], stop_reason=None, stop_sequence=None)
    with_usage = not a.flag("no_usage")
    if with_usage:
        start["usage"] = _usage(a, 1)
    else:
        start.pop("usage")
    yield sse({"type": "message_start", "message": start}, "message_start")
    index = 0
    if _thinking(body):
        full["content"] = full["content"][1:]
        yield sse({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "thinking", "thinking": "", "signature": ""}}, "content_block_start")
        yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THOUGHT}},
                  "content_block_delta")
        yield sse({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "signature_delta", "signature": SIGNATURE}}, "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        index = 1
    if a.tool_call:
        block = dict(full["content"][0], input={})
        args = json.dumps(a.tool_call[1])
        pieces = [args[j:j + 8] for j in range(0, len(args), 8)]
        delta_of = lambda p: {"type": "input_json_delta", "partial_json": p}  # noqa: E731
    else:
        block = {"type": "text", "text": ""}
        pieces = a.pieces
        delta_of = lambda p: {"type": "text_delta", "text": p}  # noqa: E731
    yield sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")
    yield sse({"type": "ping"}, "ping")
    delay, half = a.number("chunk_delay"), max(1, len(pieces) // 2)
    for j, piece in enumerate(pieces):
        if j == half and a.flag("midstream_error"):
            yield sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
            return
        if j == half and a.flag("midstream_cut"):
            raise CutConnection()
        if delay:
            time.sleep(delay)
        yield sse({"type": "content_block_delta", "index": index, "delta": delta_of(piece)}, "content_block_delta")
    yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
    delta: dict[str, Any] = {"type": "message_delta",
                             "delta": {"stop_reason": full["stop_reason"], "stop_sequence": full["stop_sequence"]}}
    if with_usage:
        delta["usage"] = {"output_tokens": a.completion_tokens}
    yield sse(delta, "message_delta")
    yield sse({"type": "message_stop"}, "message_stop")


def messages(req: Request, fake: Any) -> Reply:
    """``POST /v1/messages``."""
    turn = parse_turn(req, fake)
    if isinstance(turn, Reply):
        return turn
    body = req.json
    failing = fake.script.error_status(turn)
    answer = fake.script.answer(turn)
    if answer.number("slow"):
        time.sleep(answer.number("slow"))
    if failing:
        return scripted_error(failing[0], failing[1], body["model"])
    if body.get("stream"):
        return Reply(frames=stream_frames(body, answer), content_type="text/event-stream; charset=utf-8")
    return Reply(body=message(body, answer))
