"""OpenAI chat body → Gemini ``generateContent`` request (the "map params" and "build the request" jobs).

Roles user/model; system/developer messages become ``systemInstruction``; sampling parameters go into
``generationConfig``; tools become ``functionDeclarations`` with their JSON schema reduced to the OpenAPI
subset Gemini accepts; tool calls and results become ``functionCall`` / ``functionResponse`` parts; data:
images, ``input_audio`` and inline ``file`` data become ``inlineData``; ``response_format`` becomes
``responseMimeType`` (+ ``responseSchema``). What Gemini cannot honour is refused with a 400 naming the
parameter (see ``check_params``).
"""

from __future__ import annotations

import json
from typing import Any

from lib import errors
from lib.protocols.chat import NATIVE_FIELD
from lib.providers.base import text_of

# The OpenAPI 3.0 subset Gemini's ``Schema`` accepts; anything else is a 400 "Unknown name".
SCHEMA_KEYS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
               "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
               "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
STRING_FORMATS = {"enum", "date-time"}
GENERATION = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("n", "candidateCount"),
              ("seed", "seed"), ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))
# Chat parameters this mapping reads; ``IGNORED`` ones change nothing about the answer (OpenAI's own
# bookkeeping: stored completions, prompt-cache routing, abuse monitoring) and are accepted without effect.
HANDLED = {"model", "messages", "max_tokens", "max_completion_tokens", "stop", "tools", "tool_choice",
           "parallel_tool_calls", "response_format", "stream", "stream_options", "logprobs", "top_logprobs",
           "logit_bias", NATIVE_FIELD, *(theirs for theirs, _ in GENERATION)}
IGNORED = {"user", "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"}


# -- request mapping ----------------------------------------------------------------------------------

def unsupported(param: str, why: str) -> errors.UpstreamBadRequest:
    """The 400 for a parameter Gemini cannot honour."""
    return errors.UpstreamBadRequest(f"'{param}' is not supported for Gemini models: {why}.", provider="gemini",
                                     param=param, code="unsupported_parameter")


def check_params(body: dict[str, Any]) -> None:
    """Raise ``unsupported`` for any parameter of ``body`` Gemini cannot honour (see the module docstring)."""
    for name in body:
        if name not in HANDLED and name not in IGNORED and not name.startswith("_") and body[name] is not None:
            raise unsupported(name, "the generateContent API has no such parameter")
    if body.get("logprobs") or body.get("top_logprobs") is not None:
        raise unsupported("logprobs" if body.get("logprobs") else "top_logprobs",
                          "the gateway does not translate Gemini's log probabilities")
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "it has no token biasing")
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function":
            raise unsupported(f"tools.{i}.type", f"only function tools are, not '{tool.get('type')}'")


def to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` request for an OpenAI chat body. Raises ``UpstreamBadRequest`` when unmappable."""
    check_params(body)
    system, contents = _contents(body.get("messages") or [])
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {ours: body[theirs] for theirs, ours in GENERATION if body.get(theirs) is not None}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = int(max_tokens)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str)]
    if stops:
        config["stopSequences"] = stops[:5]
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = clean_schema(schema)
    if config:
        payload["generationConfig"] = config
    functions = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
    if functions:
        payload["tools"] = [{"functionDeclarations": [_declaration(f) for f in functions]}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config:
            payload["toolConfig"] = tool_config
    return payload


def _declaration(function: dict[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = clean_schema(function.get("parameters") or {})
    if parameters.get("properties"):  # Gemini rejects an OBJECT schema with no properties
        declaration["parameters"] = parameters
    return declaration


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(str(choice))
    return {"functionCallingConfig": {"mode": mode}} if mode else None


def clean_schema(schema: Any, defs: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A JSON schema reduced to Gemini's subset: local ``$ref`` inlined, ``["x", "null"]`` → nullable."""
    if not isinstance(schema, dict) or depth > 20:
        return schema
    defs = defs if defs is not None else {**schema.get("definitions", {}), **schema.get("$defs", {})}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        return clean_schema(defs[ref.rsplit("/", 1)[-1]], defs, depth + 1)
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if kinds else "string"
        if "null" in schema["type"]:
            out["nullable"] = True
    if "const" in schema:
        out["enum"] = [str(schema["const"])]
    for key, value in schema.items():
        if key not in SCHEMA_KEYS or key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: clean_schema(sub, defs, depth + 1) for name, sub in value.items()}
        elif key == "items":
            out[key] = clean_schema(value, defs, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [clean_schema(sub, defs, depth + 1) for sub in value]
        elif key == "format" and kind == "string" and value not in STRING_FORMATS:
            continue
        elif key == "enum":
            out[key] = [str(v) for v in value]
        else:
            out[key] = value
    if kind:
        out["type"] = kind
    return out


def _contents(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(system texts, user/model contents)`` from OpenAI messages; consecutive roles are merged."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id → function name, for functionResponse
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "assistant":
            parts = _parts(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                call_names[call.get("id") or ""] = function.get("name") or ""
                parts.append({"functionCall": {"name": function.get("name") or "",
                                               "args": _arguments(function.get("arguments"))}})
            role = "model"
        elif role in ("tool", "function"):
            name = message.get("name") or call_names.get(message.get("tool_call_id") or "", "")
            parts = [{"functionResponse": {"name": name, "response": _result(message.get("content"))}}]
            role = "user"
        else:
            parts, role = _parts(message.get("content")), "user"
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:"):
                header, _, data = url[5:].partition(",")
                parts.append({"inlineData": {"mimeType": header.split(";")[0] or "image/png", "data": data}})
            else:
                parts.append({"fileData": {"mimeType": _guess_mime(url), "fileUri": url}})
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format') or 'wav'}", "data": audio.get("data", "")}})
        elif kind == "file":
            data_url = str((part.get("file") or {}).get("file_data") or "")
            if not data_url.startswith("data:"):
                raise unsupported("messages.content.file", "only inline file_data (a data: URL) can be sent to it")
            header, _, data = data_url[5:].partition(",")
            parts.append({"inlineData": {"mimeType": header.split(";")[0] or "application/pdf", "data": data}})
    return parts


def _guess_mime(url: str) -> str:
    ext = url.rsplit(".", 1)[-1].lower().split("?")[0]
    return {"png": "image/png", "webp": "image/webp", "gif": "image/gif", "heic": "image/heic"}.get(ext, "image/jpeg")


def _arguments(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}") if isinstance(raw, str) else raw
    except ValueError as exc:
        raise errors.UpstreamBadRequest("Tool call arguments must be a JSON object", provider="gemini",
                                        param="messages") from exc
    return value if isinstance(value, dict) else {"value": value}


def _result(content: Any) -> dict[str, Any]:
    """A ``functionResponse.response`` object: the tool's JSON object, else ``{"content": text}``."""
    text = text_of(content)
    try:
        value = json.loads(text)
    except ValueError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": text}
