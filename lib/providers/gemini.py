"""Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` behind the OpenAI chat interface.

Request mapping: roles user/model; system/developer messages become ``systemInstruction``; sampling
parameters go into ``generationConfig``; tools become ``functionDeclarations`` with their JSON schema
reduced to the OpenAPI subset Gemini accepts; tool calls and results become ``functionCall`` /
``functionResponse`` parts; data: images become ``inlineData``. Gemini answers a wrong key with
400 ``API_KEY_INVALID``; that is reported as the credential failure it is.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from typing import Any, Iterator

import httpx

from lib import errors
from lib.providers import httpjson
from lib.providers.registry import ProviderType
from lib.providers.base import ProviderConfig, make_chunk, make_completion, make_usage, now, raise_for_status, text_of

log = logging.getLogger("aiproxy.providers.gemini")

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
          "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter",
          "IMAGE_SAFETY": "content_filter", "LANGUAGE": "stop", "OTHER": "stop", "MALFORMED_FUNCTION_CALL": "stop"}
# The OpenAPI 3.0 subset Gemini's ``Schema`` accepts; anything else is a 400 "Unknown name".
SCHEMA_KEYS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
               "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
               "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
STRING_FORMATS = {"enum", "date-time"}
GENERATION = (("temperature", "temperature"), ("top_p", "topP"), ("n", "candidateCount"), ("seed", "seed"),
              ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))


class GeminiProvider:
    """Adapter for the Gemini API (Google AI Studio keys)."""

    def __init__(self, config: ProviderConfig, http: httpx.Client) -> None:
        self.name = config.name or "gemini"
        self._keys = tuple(k for k in config.api_keys if k)
        self._base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._http = http
        self._counter = itertools.count()

    def configured(self) -> bool:
        """True when an API key is set."""
        return bool(self._keys)

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return an OpenAI ``chat.completion`` dict. Raises ``UpstreamError`` subclasses."""
        response = self._send(body, model, "generateContent", timeout, stream=False)
        return from_gemini(httpjson.json_body(response, self.name), model)

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield OpenAI chunks: role chunk, deltas, finish chunk, usage chunk. Raises ``UpstreamError``."""
        response = self._send(body, model, "streamGenerateContent", timeout, stream=True)
        return httpjson.ClosingStream(self._iterate(response, model), response.close)

    def _iterate(self, response: httpx.Response, model: str) -> Iterator[dict[str, Any]]:
        try:
            parser = StreamParser(model)
            for _event, data in httpjson.sse_events(response, self.name):
                yield from parser.feed(data)
            yield from parser.finish()
        finally:
            response.close()

    def _send(self, body: dict[str, Any], model: str, method: str, timeout: float, *, stream: bool) -> httpx.Response:
        if not self._keys:
            raise errors.UpstreamUnavailable("Provider 'gemini' is not configured (no API key)", provider=self.name)
        key = self._keys[next(self._counter) % len(self._keys)]
        model = model.removeprefix("models/")
        url = f"{self._base}/v1beta/models/{model}:{method}"
        return httpjson.send(self._http, url, body=to_gemini(body), headers={"x-goog-api-key": key},
                             params={"alt": "sse"} if stream else None, timeout=timeout, provider=self.name,
                             stream=stream, on_error=_raise_for_status)


def _raise_for_status(response: httpx.Response, provider: str) -> None:
    """Google error bodies: a bad key is 400 ``API_KEY_INVALID``; 429 carries ``RetryInfo.retryDelay``."""
    response.read()
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, list):  # a streamGenerateContent error can come wrapped in a list
        data = data[0] if data else None
    err = data.get("error") if isinstance(data, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    reasons = {d.get("reason") for d in details or [] if isinstance(d, dict)}
    if "API_KEY_INVALID" in reasons:
        log.warning("upstream gemini rejected the API key (status=%s)", response.status_code)
        raise errors.from_status(401, "API key not valid", provider=provider)
    if response.status_code == 429:
        delay = next((d.get("retryDelay") for d in details or [] if isinstance(d, dict) and d.get("retryDelay")), None)
        if delay and "retry-after" not in response.headers:
            try:
                retry_after = float(str(delay).rstrip("s"))
            except ValueError:
                retry_after = None
            log.warning("upstream gemini rate limited body=%.2000s", response.text)
            raise errors.from_status(429, "quota exceeded", provider=provider, retry_after=retry_after)
    raise_for_status(response, provider)


# -- request mapping ----------------------------------------------------------------------------------

def to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` request for an OpenAI chat body. Raises ``UpstreamBadRequest`` when unmappable."""
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


# -- response mapping ---------------------------------------------------------------------------------

def _usage(meta: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from ``usageMetadata``; thinking tokens count as completion tokens."""
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    return make_usage(prompt, completion, {
        "prompt_tokens_details": {"cached_tokens": int(meta.get("cachedContentTokenCount") or 0)},
        "completion_tokens_details": {"reasoning_tokens": thoughts}})


def _check_blocked(data: dict[str, Any]) -> None:
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    if reason and not data.get("candidates"):
        raise errors.UpstreamBadRequest(f"Provider 'gemini' refused the prompt (blocked: {reason})",
                                        provider="gemini", code="content_policy_violation")


def _call(part: dict[str, Any], index: int) -> dict[str, Any]:
    call = part["functionCall"]
    return {"index": index, "id": call.get("id") or "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": call.get("name"), "arguments": json.dumps(call.get("args") or {})}}


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    finish = FINISH.get(reason, "stop")
    return "tool_calls" if has_calls and finish == "stop" else finish


def from_gemini(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` dict from a ``generateContent`` response. Raises if the prompt was blocked."""
    _check_blocked(data)
    result = make_completion(model=data.get("modelVersion") or model, content=None, finish_reason=None,
                             prompt_tokens=None, completion_tokens=None,
                             id=f"chatcmpl-{data['responseId']}" if data.get("responseId") else None)
    choices = []
    for position, candidate in enumerate(data.get("candidates") or []):
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(p.get("text", "") for p in parts if "text" in p and not p.get("thought"))
        calls = [_call(p, i) for i, p in enumerate(q for q in parts if "functionCall" in q)]
        for call in calls:
            call.pop("index")
        content = text if text else (None if calls or not parts else "")
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": candidate.get("index", position), "message": message, "logprobs": None,
                        "finish_reason": _finish(candidate.get("finishReason"), bool(calls)) or "stop"})
    result["choices"] = choices or [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": None},
                                     "logprobs": None, "finish_reason": "content_filter"}]
    if isinstance(data.get("usageMetadata"), dict):
        result["usage"] = _usage(data["usageMetadata"])
    return result


class StreamParser:
    """Turns Gemini ``alt=sse`` chunks (each a partial ``GenerateContentResponse``) into OpenAI chunks."""

    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.model = model
        self.created = now()
        self.usage: dict[str, Any] | None = None
        self.started: set[int] = set()
        self.calls: dict[int, int] = {}  # candidate index → tool calls so far
        self.finished: set[int] = set()

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk = make_chunk(id=self.id, model=self.model, created=self.created, delta=delta, finish_reason=finish)
        chunk["choices"][0]["index"] = index
        return chunk

    def feed(self, data: str) -> Iterator[dict[str, Any]]:
        """The chunks for one SSE ``data`` payload. Raises ``UpstreamError`` on an in-stream error."""
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise errors.UpstreamError("Provider 'gemini' sent a malformed stream event", provider="gemini") from exc
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            log.warning("upstream gemini stream error: %.500s", data)
            raise errors.UpstreamError(f"Provider 'gemini' failed mid-stream: {payload['error'].get('status', 'error')}",
                                       provider="gemini")
        if not self.started:
            self.started.add(0)
            yield self._chunk(0, {"role": "assistant", "content": ""})
        _check_blocked(payload)
        self.model = payload.get("modelVersion") or self.model
        if isinstance(payload.get("usageMetadata"), dict):
            self.usage = payload["usageMetadata"]
        for position, candidate in enumerate(payload.get("candidates") or []):
            index = candidate.get("index", position)
            if index not in self.started:
                self.started.add(index)
                yield self._chunk(index, {"role": "assistant", "content": ""})
            for part in (candidate.get("content") or {}).get("parts") or []:
                if part.get("text") and not part.get("thought"):
                    yield self._chunk(index, {"content": part["text"]})
                elif "functionCall" in part:
                    count = self.calls.get(index, 0)
                    self.calls[index] = count + 1
                    yield self._chunk(index, {"tool_calls": [_call(part, count)]})
            finish = _finish(candidate.get("finishReason"), bool(self.calls.get(index)))
            if finish:
                self.finished.add(index)
                yield self._chunk(index, {}, finish)

    def finish(self) -> Iterator[dict[str, Any]]:
        """The usage chunk; raises ``UpstreamError`` when no candidate ever finished (a cut stream)."""
        if not self.finished:
            raise errors.UpstreamError("Provider 'gemini' ended the stream early", provider="gemini")
        if self.usage is not None:
            yield make_chunk(id=self.id, model=self.model, created=self.created, with_choice=False,
                             usage=_usage(self.usage))


TYPE = ProviderType(name="gemini", adapter=GeminiProvider, key_env=("GEMINI_API_KEY",),
                    base_url_env="GEMINI_BASE_URL", default_base_url=DEFAULT_BASE_URL, prefixes=("gemini-",))
