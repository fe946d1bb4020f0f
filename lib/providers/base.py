"""What every provider adapter implements, and the helpers they share.

A provider takes an OpenAI-shaped chat request (a plain ``dict`` already validated by
``lib.protocols.chat``) and returns OpenAI-shaped results:

- ``complete(body, model=..., timeout=...)`` → a ``chat.completion`` dict;
- ``stream(body, model=..., timeout=...)`` → an iterator of ``chat.completion.chunk`` dicts. The
  iterator owns the upstream connection: closing it (``.close()``, or the client going away) must
  close the upstream stream. The last chunk carries ``usage`` when the provider reported it.

``model`` is the upstream model name (after routing). ``timeout`` is the seconds left in the request's
deadline. Errors are raised as ``lib.errors.UpstreamError`` subclasses, converted from httpx/SDK
exceptions at the adapter's boundary (``raise ... from exc``); raw upstream bodies go to the log only.

LiteLLM's ``BaseConfig`` names the jobs each adapter does: map params, build the request, parse the
response, map errors; plus one more here, parse one stream event into an OpenAI chunk.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Iterator, Protocol

import httpx

from lib import errors
from lib.providers.registry import ProviderConfig  # noqa: F401 - re-exported: adapters and tests import it from here

log = logging.getLogger("aiproxy.providers")


class Provider(Protocol):
    """The interface of one provider adapter (see module docstring). ``name`` is the instance's name (the
    type's name for the environment-configured default instance)."""

    name: str

    def configured(self) -> bool:
        """True when the provider has what it needs (a key, or a custom base URL) to make calls."""

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return an OpenAI ``chat.completion`` dict. Raises ``UpstreamError``."""

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield OpenAI ``chat.completion.chunk`` dicts. Raises ``UpstreamError``."""


def completion_id() -> str:
    """A fresh OpenAI-style completion id."""
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


def make_completion(
    *,
    model: str,
    content: str | None,
    finish_reason: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    tool_calls: list[dict[str, Any]] | None = None,
    refusal: str | None = None,
    id: str | None = None,
    created: int | None = None,
    extra_usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a ``chat.completion`` dict in exactly OpenAI's shape."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = tool_calls
    result: dict[str, Any] = {
        "id": id or completion_id(),
        "object": "chat.completion",
        "created": created or now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }
    if prompt_tokens is not None or completion_tokens is not None:
        result["usage"] = make_usage(prompt_tokens or 0, completion_tokens or 0, extra_usage)
    return result


def make_usage(prompt_tokens: int, completion_tokens: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    usage = {
        "prompt_tokens": int(prompt_tokens),
        "completion_tokens": int(completion_tokens),
        "total_tokens": int(prompt_tokens) + int(completion_tokens),
    }
    if extra:
        usage.update(extra)
    return usage


def make_chunk(
    *,
    id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    with_choice: bool = True,
) -> dict[str, Any]:
    """Build one ``chat.completion.chunk`` dict. ``with_choice=False`` gives the usage-only final chunk."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
    }
    if with_choice:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def text_of(content: Any) -> str:
    """The plain text of an OpenAI message ``content`` (string or list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return "".join(parts)


def parse_retry_after(headers: httpx.Headers | dict[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` (or ``retry-after-ms``) header, if any."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def upstream_message(response: httpx.Response) -> str:
    """A short, safe message from an upstream error body (its ``error.message`` only)."""
    try:
        data = response.json()
    except (ValueError, json.JSONDecodeError):
        return f"HTTP {response.status_code}"
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"][:500]
    if isinstance(data, list) and data and isinstance(data[0], dict):  # Gemini sometimes wraps in a list
        err = data[0].get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:500]
    return f"HTTP {response.status_code}"


def error_kind(body: Any) -> str:
    """``type=… code=…`` of an upstream error body (a dict, or JSON text), for the log line. Never the message
    or the body itself: providers quote the prompt in their errors, and stdout goes to CloudWatch."""
    data = body
    if isinstance(body, (str, bytes)):
        try:
            data = json.loads(body)
        except ValueError:
            return "type=- code=-"
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else (data if isinstance(data, dict) else {})
    kind = err.get("type") or err.get("status") or "-"
    code = err.get("code") or "-"
    return f"type={str(kind)[:60]} code={str(code)[:60]}"


def failed(exc: errors.UpstreamError, body: Any, status: int | None = None) -> errors.UpstreamError:
    """``exc`` carrying the upstream's error body (cut to 2,000 characters) for the owner's request log only;
    one log line with the status, type and code."""
    text = body if isinstance(body, str) else json.dumps(body, default=str) if body is not None else ""
    log.warning("upstream %s error status=%s %s", exc.provider, status or exc.status, error_kind(body))
    exc.upstream_body = text[:2000] or None
    return exc


def raise_for_status(response: httpx.Response, provider: str) -> None:
    """Convert an upstream error response into the matching ``UpstreamError`` (its body goes to the owner's
    request log, never to stdout or the client)."""
    if response.status_code < 400:
        return
    try:
        response.read()
    except httpx.HTTPError:
        pass
    body = response.text[:2000] if response.is_closed else ""
    raise failed(errors.from_status(response.status_code, upstream_message(response), provider=provider,
                                    retry_after=parse_retry_after(response.headers)), body, response.status_code)


def convert_httpx_error(exc: Exception, provider: str) -> errors.UpstreamError:
    """Map an httpx transport exception to ``UpstreamTimeout`` / ``UpstreamUnavailable`` / ``UpstreamError``."""
    if isinstance(exc, httpx.TimeoutException):
        return errors.UpstreamTimeout(f"Provider '{provider}' did not answer in time", provider=provider)
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError)):
        return errors.UpstreamUnavailable(f"Provider '{provider}' could not be reached", provider=provider)
    return errors.UpstreamError(f"Provider '{provider}' failed: {type(exc).__name__}", provider=provider)


def iter_sse(response: httpx.Response) -> Iterator[tuple[str | None, str]]:
    """Yield ``(event, data)`` pairs from a ``text/event-stream`` response, per the SSE spec."""
    event: str | None = None
    data_lines: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data_lines:
                yield event, "\n".join(data_lines)
            event, data_lines = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data_lines.append(value)
    if data_lines:
        yield event, "\n".join(data_lines)
