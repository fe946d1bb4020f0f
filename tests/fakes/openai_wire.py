"""The OpenAI wire format: ``/v1/chat/completions`` (plain and SSE), ``/v1/embeddings``, ``/v1/models``."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
import uuid
from typing import Any, Iterator

from tests.fakes.script import (Answer, CutConnection, Reply, Request, Turn, content_text, first_property, sse,
                                strip_directives)

MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def error(status: int, message: str, type_: str, code: str | None, param: str | None = None,
          headers: dict[str, str] | None = None) -> Reply:
    """OpenAI's error envelope."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Reply(status=status, body=body, headers=dict(headers or {}))


def scripted_error(status: int, retry: float | None, model: str, quoted: str = "") -> Reply:
    """The body and headers OpenAI really sends for ``status`` (a 400 quotes ``quoted``, as real providers
    quote the offending input)."""
    if status == 401:
        return error(401, "Incorrect API key provided: sk-fake***********abcd. You can find your API key at "
                     "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
    if status == 403:
        return error(403, "Project does not have access to model", "invalid_request_error", "model_not_found")
    if status == 404:
        return error(404, f"The model `{model}` does not exist or you do not have access to it.",
                     "invalid_request_error", "model_not_found")
    if status == 429:
        wait = retry if retry is not None else 1.0
        headers = {"retry-after": str(int(math.ceil(wait))), "retry-after-ms": str(int(wait * 1000)),
                   "x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0",
                   "x-ratelimit-reset-requests": f"{wait}s"}
        return error(429, f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
                     f"Limit 3, Used 3, Requested 1. Please try again in {wait}s.", "requests",
                     "rate_limit_exceeded", headers=headers)
    if status == 400:
        said = f" (you sent: {quoted!r})" if quoted else ""
        return error(400, f"Invalid value for 'messages': the fake was asked to reject this request{said}.",
                     "invalid_request_error", "invalid_value", "messages")
    if status == 503:
        return error(503, "The engine is currently overloaded, please try again later.", "server_error", None)
    if status >= 500:
        return error(status, "The server had an error while processing your request. Sorry about that!",
                     "server_error", None)
    return error(status, f"HTTP {status}", "invalid_request_error", None)


def check_auth(req: Request, fake: Any) -> Reply | None:
    """OpenAI's 401s for a missing or wrong bearer key; 429 for keys the test marked as throttled."""
    header = req.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not key:
        return error(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                     "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", None)
    if not fake.key_ok(key):
        masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:]
        return error(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                     "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
    if key in fake.rate_limited_keys:
        return scripted_error(429, 1.0, "this model")
    return None


def parse_turn(body: dict[str, Any]) -> Turn | Reply:
    """Validate a chat body as OpenAI does and build the neutral ``Turn``."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error(400, "you must provide a model parameter", "invalid_request_error", None)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                     "missing_required_parameter", "messages")
    call_ids: set[str] = set()
    texts: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return error(400, f"Invalid value: '{m.get('role') if isinstance(m, dict) else m}'. Supported values "
                         "are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
                         "invalid_request_error", "invalid_value", f"messages[{i}].role")
        for call in m.get("tool_calls") or []:
            call_ids.add(call.get("id"))
        if m["role"] == "tool" and m.get("tool_call_id") not in call_ids:
            return error(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                         "message with 'tool_calls'.", "invalid_request_error", None, f"messages[{i}].role")
        texts.append(content_text(m.get("content")))
    last = messages[-1]
    if last["role"] == "tool":
        last_text, is_tool = content_text(last.get("content")), True
    else:
        users = [m for m in messages if m["role"] == "user"]
        last_text, is_tool = (content_text(users[-1].get("content")) if users else ""), False
    stop = body.get("stop")
    tools = [(t["function"]["name"], first_property(t["function"].get("parameters")))
             for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name", "auto")
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema" and not isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
        return error(400, "Missing required parameter: 'response_format.json_schema.schema'.", "invalid_request_error",
                     "missing_required_parameter", "response_format.json_schema.schema")
    json_format = None
    if fmt.get("type") == "json_schema":
        json_format = fmt["json_schema"]["schema"]
    elif fmt.get("type") == "json_object":
        json_format = {}
    return Turn(texts=texts, last_text=last_text, last_is_tool_result=is_tool,
                max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
                stop=[stop] if isinstance(stop, str) else list(stop or []), n=int(body.get("n") or 1),
                tools=tools, tool_choice=str(choice), json_format=json_format,
                schemas={t["function"]["name"]: t["function"].get("parameters") for t in body.get("tools") or []
                         if t.get("type") == "function"})


def usage(a: Answer) -> dict[str, Any]:
    cached = int(a.number("cached"))
    completion = int(a.completion_tokens * a.number("over_report", 1))
    return {"prompt_tokens": a.prompt_tokens, "completion_tokens": completion,
            "total_tokens": a.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _tool_call(a: Answer) -> dict[str, Any]:
    assert a.tool_call is not None
    name, args = a.tool_call
    return {"id": "call_" + a.call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def completion(body: dict[str, Any], a: Answer, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None, "annotations": []}
    if a.tool_call:
        message["content"] = None
        message["tool_calls"] = [_tool_call(a)]
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": i, "message": json.loads(json.dumps(message)), "logprobs": None,
                     "finish_reason": a.finish} for i in range(n)],
        "usage": usage(a), "service_tier": "default", "system_fingerprint": "fp_fake",
    }


def stream_frames(body: dict[str, Any], a: Answer, n: int) -> Iterator[bytes]:
    """OpenAI's chunk sequence: role chunk, content chunks, finish chunk, usage chunk (if asked), [DONE]."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and not a.flag("no_usage")
    base = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body["model"], "service_tier": "default",
            "system_fingerprint": "fp_fake"}
    delay = a.number("chunk_delay")

    def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
        data = dict(base, choices=[{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            data["usage"] = None
        return sse(data)

    for i in range(n):
        first: dict[str, Any] = {"role": "assistant", "content": "" if not a.tool_call else None, "refusal": None}
        if a.tool_call:
            call = _tool_call(a)
            first["tool_calls"] = [{"index": 0, "id": call["id"], "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""}}]
        yield chunk(first, index=i)
    pieces = a.pieces
    if a.tool_call:
        args = _tool_call(a)["function"]["arguments"]
        pieces = [args[j:j + 8] for j in range(0, len(args), 8)]
    half = max(1, len(pieces) // 2)
    for j, piece in enumerate(pieces):
        if j == half and a.flag("midstream_error"):
            yield sse({"error": {"message": "The server had an error while processing your request. Sorry about that!",
                                 "type": "server_error", "param": None, "code": None}})
            return
        if j == half and a.flag("midstream_cut"):
            raise CutConnection()
        if j == half and a.flag("end_early"):
            return
        if delay:
            time.sleep(delay)
        for i in range(n):
            if a.tool_call:
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, index=i)
            else:
                yield chunk({"content": piece}, index=i)
    for i in range(n):
        yield chunk({}, a.finish, index=i)
    if include_usage:
        final = dict(base, choices=[], usage=usage(a))
        yield sse(final)
    yield sse("[DONE]")


def chat(req: Request, fake: Any) -> Reply:
    """``POST /v1/chat/completions``."""
    denied = check_auth(req, fake)
    if denied:
        return denied
    body = req.json
    if not isinstance(body, dict):
        return error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
    turn = parse_turn(body)
    if isinstance(turn, Reply):
        return turn
    failing = fake.script.error_status(turn)
    answer = fake.script.answer(turn)
    if answer.number("slow"):
        time.sleep(answer.number("slow"))
    if failing:
        quoted = strip_directives(turn.last_text) if answer.flag("quote") else ""
        return scripted_error(failing[0], failing[1], body["model"], quoted)
    if answer.flag("bad_json"):
        return Reply(body=b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": {"role": "assis')
    if body.get("stream") and not answer.flag("not_stream"):
        return Reply(frames=stream_frames(body, answer, turn.n), content_type="text/event-stream; charset=utf-8")
    return Reply(body=completion(body, answer, turn.n))


def _vector(text: str, dims: int) -> list[float]:
    raw = hashlib.sha256(text.encode()).digest() * (dims // 32 + 1)
    values = [(b - 127.5) / 127.5 for b in raw[:dims]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings(req: Request, fake: Any) -> Reply:
    """``POST /v1/embeddings``: deterministic unit vectors from a hash of each input (``dimensions``, default 8)."""
    denied = check_auth(req, fake)
    if denied:
        return denied
    body = req.json if isinstance(req.json, dict) else {}
    inputs = body.get("input")
    if inputs is None or not body.get("model"):
        return error(400, "'input' is a required property", "invalid_request_error", None, "input")
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    if items and all(isinstance(x, int) for x in items):
        items = [items]
    dims = int(body.get("dimensions") or 8)
    data = []
    tokens = 0
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else " ".join(str(t) for t in item)
        tokens += len(text.split())
        vec = _vector(text, dims)
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        else:
            encoded = vec
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return Reply(body={"object": "list", "data": data, "model": body["model"],
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def models(req: Request, fake: Any) -> Reply:
    """``GET /v1/models``."""
    denied = check_auth(req, fake)
    if denied:
        return denied
    return Reply(body={"object": "list", "data": [
        {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in MODELS]})
