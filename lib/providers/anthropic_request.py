"""OpenAI chat body → Anthropic Messages request (the "map params" and "build the request" jobs).

- system/developer messages become ``system`` (text blocks when one carries ``cache_control``); ``tool``
  messages become user ``tool_result`` blocks and assistant ``tool_calls`` become ``tool_use`` blocks;
  consecutive messages of one role are merged (the API wants user/assistant turns); data: and http(s)
  image URLs become ``image`` blocks.
- ``max_tokens`` is required there (default 4096); temperature is clamped to Anthropic's 0–1; ``top_k``
  and ``thinking`` are passed as they are; ``user`` becomes ``metadata.user_id``.
- ``response_format`` ``json_object`` / ``json_schema`` becomes a forced tool whose ``input_schema`` is the
  schema (a non-object schema is wrapped as ``{"value": schema}``); the adapter turns that tool's input back
  into message text (``JsonMode``).
- What the Messages API cannot honour is refused with a 400 naming the parameter, never dropped: ``n`` > 1,
  ``logprobs`` / ``top_logprobs``, ``logit_bias``, ``seed``, non-zero penalties, ``custom`` tools,
  audio/file content parts, and any parameter not listed in ``HANDLED`` / ``IGNORED``.
- A body carrying ``NATIVE_FIELD`` (a Messages API request the ``/v1/messages`` ingress received) is sent
  as it is, with the upstream model name put in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lib import errors
from lib.protocols.chat import NATIVE_FIELD
from lib.providers.base import text_of

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_response"
# Chat parameters this mapping reads; ``IGNORED`` ones change nothing about the answer (bookkeeping that is
# OpenAI's own: stored completions, prompt-cache routing, abuse monitoring) and are accepted without effect.
HANDLED = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop",
           "user", "tools", "tool_choice", "parallel_tool_calls", "response_format", "stream", "stream_options",
           "thinking", "n", "seed", "logprobs", "top_logprobs", "logit_bias", "presence_penalty",
           "frequency_penalty", NATIVE_FIELD}
IGNORED = {"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"}


@dataclass(frozen=True)
class JsonMode:
    """The forced tool standing in for ``response_format``: its name, and whether the schema was wrapped."""

    tool: str
    wrapped: bool = False


def unsupported(param: str, why: str) -> errors.UpstreamBadRequest:
    """The 400 for a parameter the Messages API cannot honour."""
    return errors.UpstreamBadRequest(f"'{param}' is not supported for Anthropic models: {why}.", provider="anthropic",
                                     param=param, code="unsupported_parameter")


def check_params(body: dict[str, Any]) -> None:
    """Raise ``unsupported`` for any parameter of ``body`` Anthropic cannot honour (see the module docstring)."""
    for name in body:
        if name not in HANDLED and name not in IGNORED and not name.startswith("_") and body[name] is not None:
            raise unsupported(name, "the Messages API has no such parameter")
    if int(body.get("n") or 1) > 1:
        raise unsupported("n", "it returns one choice per request")
    if body.get("logprobs") or body.get("top_logprobs") is not None:
        raise unsupported("logprobs" if body.get("logprobs") else "top_logprobs", "it returns no log probabilities")
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "it has no token biasing")
    if body.get("seed") is not None:
        raise unsupported("seed", "its sampling cannot be seeded")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            raise unsupported(name, "it has no repetition penalties")
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function":
            raise unsupported(f"tools.{i}.type", f"only function tools are, not '{tool.get('type')}'")


def build_request(body: dict[str, Any], model: str) -> tuple[dict[str, Any], JsonMode | None, dict[str, str]]:
    """``(Messages API payload, json mode or None, extra headers)`` for an OpenAI chat body.

    Raises ``UpstreamBadRequest`` (400) for a parameter or content it cannot honour.
    """
    native = (body.get(NATIVE_FIELD) or {}).get("anthropic")
    if native:
        headers = {"anthropic-beta": native["beta"]} if native.get("beta") else {}
        return {**native["body"], "model": model}, None, headers
    check_params(body)
    system, messages = _messages(body.get("messages") or [])
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    payload: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": int(max_tokens)}
    if system:
        payload["system"] = system
    if body.get("temperature") is not None:
        payload["temperature"] = min(1.0, max(0.0, float(body["temperature"])))
    for name in ("top_p", "top_k", "thinking"):
        if body.get(name) is not None:
            payload[name] = body[name]
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    stops = [s for s in stops if isinstance(s, str) and s.strip()]  # the API rejects whitespace-only ones
    if stops:
        payload["stop_sequences"] = stops
    if isinstance(body.get("user"), str):
        payload["metadata"] = {"user_id": body["user"]}
    tools = body.get("tools") or []
    if tools:
        payload["tools"] = [_tool(t["function"]) for t in tools]
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            payload["tool_choice"] = choice
    json_mode = _json_mode(body, payload)
    return payload, json_mode, {}


def to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat body (``build_request``'s payload). Raises like it."""
    return build_request(body, model)[0]


def _json_mode(body: dict[str, Any], payload: dict[str, Any]) -> JsonMode | None:
    """Turn ``response_format`` into a forced tool on ``payload`` (see the module docstring)."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") not in ("json_object", "json_schema"):
        return None
    spec = (fmt.get("json_schema") or {}) if fmt.get("type") == "json_schema" else {}
    schema = spec.get("schema")
    wrapped = False
    if not isinstance(schema, dict):
        input_schema: dict[str, Any] = {"type": "object"}
    elif schema.get("type") == "object" or ("type" not in schema and "properties" in schema):
        input_schema = schema
    else:
        input_schema, wrapped = {"type": "object", "properties": {"value": schema}, "required": ["value"]}, True
    taken = {t["name"] for t in payload.get("tools") or []}
    name = spec.get("name") or JSON_TOOL
    while name in taken:
        name = (name + "_json")[-64:]
    description = spec.get("description") or (
        "Give your final answer by calling this tool once, its input being the complete answer"
        + (" as a JSON object." if not isinstance(schema, dict) else " matching the schema."))
    user_tools = bool(payload.get("tools"))
    payload["tools"] = [*(payload.get("tools") or []), {"name": name, "description": description,
                                                          "input_schema": input_schema}]
    choice = payload.get("tool_choice") or {}
    if not user_tools or choice.get("type") == "none":
        payload["tool_choice"] = {"type": "tool", "name": name, "disable_parallel_tool_use": True}
    elif choice.get("type") != "tool":  # auto / any: some tool must be called, the JSON one being the answer
        payload["tool_choice"] = {**choice, "type": "any"}
    return JsonMode(name, wrapped)


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


def _messages(messages: list[dict[str, Any]]) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system, merged user/assistant turns)`` from OpenAI messages; ``system`` is a string, or text blocks
    when one of them carries ``cache_control``."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_content_blocks(message.get("content"), i))
            continue
        if role in ("tool", "function"):
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id") or "",
                                     "content": text_of(message.get("content"))}]
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), i) + [_tool_use(c) for c in message.get("tool_calls") or []]
        else:
            role, blocks = "user", _content_blocks(message.get("content"), i)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    texts = [b for b in system if b.get("type") == "text"]
    if any("cache_control" in b for b in texts):
        return texts, turns
    return "\n\n".join(b["text"] for b in texts), turns


def _content_blocks(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and part.get("text"):
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
            if part.get("cache_control"):
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append({"type": "image", "source": image_source(url)})
        elif kind in ("input_audio", "file"):
            raise unsupported(f"messages.{index}.content.{j}", f"'{kind}' content parts cannot be sent to it")
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
