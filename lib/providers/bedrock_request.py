"""OpenAI chat body → Amazon Bedrock Converse request (the "map params" and "build the request" jobs).

- system/developer messages become ``system`` text blocks; ``tool`` messages become user ``toolResult``
  blocks and assistant ``tool_calls`` become ``toolUse`` blocks; consecutive messages of one role are merged
  (Converse wants user/assistant turns); ``data:`` image URLs become ``image`` blocks with the decoded
  bytes (Converse takes bytes or S3, never an http URL: such an image is refused with a 400).
- ``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``top_p`` and ``stop`` go to
  ``inferenceConfig``; ``top_k`` to ``additionalModelRequestFields`` (the models that take it read it there).
- ``tools`` become ``toolConfig.tools[].toolSpec`` (``inputSchema.json`` is the parameters schema);
  ``tool_choice`` ``required`` → ``any``, a named function → ``tool``, ``auto`` → ``auto``; ``none`` drops the
  tools unless the conversation already holds tool blocks (Converse then needs ``toolConfig``; it has no
  "none", so the model may still call one).
- ``response_format`` ``json_object`` / ``json_schema`` becomes a forced tool whose input schema is the
  schema (a non-object schema wrapped as ``{"value": schema}``), as the Anthropic adapter does; the adapter
  turns its input back into message text. Models without forced tool choice answer that with a
  ValidationException, which reaches the client as a 400.
- What Converse cannot honour is refused with a 400 naming the parameter, never dropped: ``n`` > 1,
  ``logprobs`` / ``top_logprobs``, ``logit_bias``, ``seed``, non-zero penalties, non-function tools,
  audio/file parts, http(s) image URLs, and any parameter not listed in ``HANDLED`` / ``IGNORED``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from lib import errors
from lib.providers.anthropic_request import JSON_TOOL, JsonMode
from lib.providers.base import text_of

HANDLED = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop",
           "tools", "tool_choice", "parallel_tool_calls", "response_format", "stream", "stream_options", "n",
           "seed", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty"}
# Accepted without effect: OpenAI's own bookkeeping, and ``user`` (Converse has no end-user field).
IGNORED = {"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "user"}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}


def unsupported(param: str, why: str) -> errors.UpstreamBadRequest:
    """The 400 for a parameter Converse cannot honour."""
    return errors.UpstreamBadRequest(f"'{param}' is not supported for Bedrock models: {why}.", provider="bedrock",
                                     param=param, code="unsupported_parameter")


def check_params(body: dict[str, Any]) -> None:
    """Raise ``unsupported`` for any parameter of ``body`` Converse cannot honour (see module docstring)."""
    for name in body:
        if name not in HANDLED and name not in IGNORED and not name.startswith("_") and body[name] is not None:
            raise unsupported(name, "the Converse API has no such parameter")
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


def build_request(body: dict[str, Any], model: str) -> tuple[dict[str, Any], JsonMode | None]:
    """``(keyword arguments of converse / converse_stream, json mode or None)`` for an OpenAI chat body.

    Raises ``UpstreamBadRequest`` (400) for a parameter or content it cannot honour.
    """
    check_params(body)
    system, messages = _messages(body.get("messages") or [])
    request: dict[str, Any] = {"modelId": model, "messages": messages}
    if system:
        request["system"] = system
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxTokens"] = int(max_tokens)
    if body.get("temperature") is not None:
        config["temperature"] = float(body["temperature"])
    if body.get("top_p") is not None:
        config["topP"] = float(body["top_p"])
    stop = body.get("stop")
    stops = [s for s in ([stop] if isinstance(stop, str) else list(stop or [])) if isinstance(s, str) and s]
    if stops:
        config["stopSequences"] = stops
    if config:
        request["inferenceConfig"] = config
    if body.get("top_k") is not None:
        request["additionalModelRequestFields"] = {"top_k": int(body["top_k"])}
    tools = [_tool_spec(t["function"]) for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    has_tool_blocks = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    if tools and (choice != "none" or has_tool_blocks):
        request["toolConfig"] = {"tools": tools}
        mapped = _tool_choice(choice)
        if mapped is not None:
            request["toolConfig"]["toolChoice"] = mapped
    json_mode = _json_mode(body, request)
    return request, json_mode


def _json_mode(body: dict[str, Any], request: dict[str, Any]) -> JsonMode | None:
    """Turn ``response_format`` into a forced tool on ``request`` (see the module docstring)."""
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
    config = request.setdefault("toolConfig", {"tools": []})
    taken = {t["toolSpec"]["name"] for t in config["tools"]}
    name = spec.get("name") or JSON_TOOL
    while name in taken:
        name = (name + "_json")[-64:]
    description = spec.get("description") or (
        "Give your final answer by calling this tool once, its input being the complete answer"
        + (" as a JSON object." if not isinstance(schema, dict) else " matching the schema."))
    user_tools = bool(config["tools"])
    config["tools"].append({"toolSpec": {"name": name, "description": description,
                                         "inputSchema": {"json": input_schema}}})
    if not user_tools or "tool" not in (config.get("toolChoice") or {}):
        config["toolChoice"] = {"tool": {"name": name}} if not user_tools else {"any": {}}
    return JsonMode(name, wrapped)


def _tool_spec(function: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": function["name"],
                            "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}}}
    if function.get("description"):
        spec["description"] = function["description"]
    return {"toolSpec": spec}


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        return {"tool": {"name": (choice.get("function") or {}).get("name")}}
    if choice == "required":
        return {"any": {}}
    if choice == "auto":
        return {"auto": {}}
    return None


def _messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system blocks, merged user/assistant turns)`` from OpenAI messages."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text:
                system.append({"text": text})
            continue
        if role in ("tool", "function"):
            role, blocks = "user", [{"toolResult": {"toolUseId": message.get("tool_call_id") or "",
                                                    "content": [{"text": text_of(message.get("content")) or " "}]}}]
        elif role == "assistant":
            blocks = _content(message.get("content"), i) + [_tool_use(c) for c in message.get("tool_calls") or []]
        else:
            role, blocks = "user", _content(message.get("content"), i)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _content(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and part.get("text"):
            blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append({"image": _image((part.get("image_url") or {}).get("url", ""), f"messages.{index}.content.{j}")})
        elif kind in ("input_audio", "file"):
            raise unsupported(f"messages.{index}.content.{j}", f"'{kind}' content parts cannot be sent to it")
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    """A Converse image block (format and raw bytes) for a ``data:`` URL."""
    if not url.startswith("data:"):
        raise unsupported(param, "Converse takes images as bytes, not URLs; send a base64 data: URL")
    header, _, data = url[5:].partition(",")
    media_type = (header.split(";")[0] or "image/png").lower()
    if media_type not in IMAGE_FORMATS:
        raise unsupported(param, f"images must be PNG, JPEG, GIF or WebP, not '{media_type}'")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise errors.UpstreamBadRequest(f"'{param}' is not valid base64 image data", provider="bedrock",
                                        param=param, code="invalid_value") from None
    return {"format": IMAGE_FORMATS[media_type], "source": {"bytes": raw}}


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError as exc:
        raise errors.UpstreamBadRequest("Tool call arguments must be a JSON object", provider="bedrock",
                                        param="messages") from exc
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    return {"toolUse": {"toolUseId": call.get("id") or "", "name": function.get("name") or "", "input": arguments}}
