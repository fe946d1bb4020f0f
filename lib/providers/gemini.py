"""Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` behind the OpenAI chat interface.

Request mapping (and the parameters Gemini cannot honour, refused with a 400 naming them) lives in
``lib.providers.gemini_request``; here, the adapter and the response side. ``parallel_tool_calls: false``
keeps each candidate's first function call. Gemini answers a wrong key with 400 ``API_KEY_INVALID``; that
is reported as the credential failure it is.
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
from lib.providers.gemini_request import (  # noqa: F401 - re-exported for callers of the old module
    GENERATION, HANDLED, IGNORED, SCHEMA_KEYS, check_params, clean_schema, to_gemini, unsupported,
)
from lib.providers.registry import ProviderType
from lib.providers.base import ProviderConfig, failed, make_chunk, make_completion, make_usage, now, raise_for_status

log = logging.getLogger("aiproxy.providers.gemini")

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
          "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter",
          "IMAGE_SAFETY": "content_filter", "LANGUAGE": "stop", "OTHER": "stop", "MALFORMED_FUNCTION_CALL": "stop"}
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
        return from_gemini(httpjson.json_body(response, self.name), model,
                           single_call=body.get("parallel_tool_calls") is False)

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield OpenAI chunks: role chunk, deltas, finish chunk, usage chunk. Raises ``UpstreamError``."""
        response = self._send(body, model, "streamGenerateContent", timeout, stream=True)
        parser = StreamParser(model, single_call=body.get("parallel_tool_calls") is False)
        return httpjson.ClosingStream(self._iterate(response, parser), response.close)

    def _iterate(self, response: httpx.Response, parser: "StreamParser") -> Iterator[dict[str, Any]]:
        try:
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
            raise failed(errors.from_status(429, "quota exceeded", provider=provider, retry_after=retry_after),
                         response.text, 429)
    raise_for_status(response, provider)


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


def from_gemini(data: dict[str, Any], model: str, *, single_call: bool = False) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` dict from a ``generateContent`` response (only each candidate's first
    function call with ``single_call``). Raises if the prompt was blocked."""
    _check_blocked(data)
    result = make_completion(model=data.get("modelVersion") or model, content=None, finish_reason=None,
                             prompt_tokens=None, completion_tokens=None,
                             id=f"chatcmpl-{data['responseId']}" if data.get("responseId") else None)
    choices = []
    for position, candidate in enumerate(data.get("candidates") or []):
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(p.get("text", "") for p in parts if "text" in p and not p.get("thought"))
        calls = [_call(p, i) for i, p in enumerate(q for q in parts if "functionCall" in q)]
        if single_call:
            calls = calls[:1]
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

    def __init__(self, model: str, *, single_call: bool = False) -> None:
        self.single_call = single_call  # parallel_tool_calls false: keep each candidate's first call only
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
            raise failed(errors.UpstreamError(
                f"Provider 'gemini' failed mid-stream: {payload['error'].get('status', 'error')}", provider="gemini"),
                payload)
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
                elif "functionCall" in part and not (self.single_call and self.calls.get(index)):
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
