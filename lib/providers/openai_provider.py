"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, LM Studio, a mock), spoken on the wire directly.

The request body is passed through as the client sent it (tools, response_format, n, seed, logprobs,
``top_k`` for servers such as vLLM, and any parameter this code has never heard of: OpenAI itself answers
400 for one it does not know, and that 400 reaches the client), with only ``model`` replaced and the
proxy's own ``_``-prefixed keys (``NATIVE_FIELD``) removed; the answer is returned as the upstream sent it,
plus the keys OpenAI always sends that some compatible servers leave out (``message.refusal`` ...).

Keys are rotated round robin. A call that gets 401 or 429 from one key moves on to the next key (each key
at most once per call) before giving up, so one revoked or throttled key does not fail requests.

Why not the official SDK here: the gateway's clients already send the OpenAI wire format, validated, and
want it back verbatim. The SDK re-walked every request through its typed transformation (seconds for a
body of tens of thousands of messages, during which the gevent worker served nothing else) and built a
pydantic model of every answer and stream chunk only for ``to_dict()`` to turn it back — together ~20 %
of a worker's CPU at saturation. What the SDK did that matters is kept here: the URL and auth headers
(``Authorization: Bearer``, ``OpenAI-Organization``, ``OpenAI-Project``), the error body unwrapped from
``{"error": ...}``, ``retry-after-ms`` / ``retry-after``, an ``error`` object inside a stream raised as an
error, the stream drained after ``[DONE]`` so its connection is reused. The SDK stays the client in the
end-to-end tests, which is where it checks that the wire is right.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any, Iterator

import httpx
import orjson

from lib import errors, offload
from lib.providers.base import ProviderConfig, convert_httpx_error, failed, parse_retry_after
from lib.providers.httpjson import ClosingStream, sse_events
from lib.providers.registry import ProviderType

log = logging.getLogger("aiproxy.providers.openai")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "sk-no-key-required"  # OpenAI-compatible servers without auth still need a non-empty key
_ROTATE_ON = (401, 429)
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class OpenAIProvider:
    """Adapter for the OpenAI Chat Completions API and OpenAI-compatible servers."""

    default_name = "openai"

    def __init__(self, config: ProviderConfig, http: httpx.Client | None = None) -> None:
        from lib.providers import transport

        self.name = config.name or self.default_name
        self._base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._official = "api.openai.com" in self._base_url
        credentials = self._credentials(config)
        self._counter = itertools.count()  # next() on a count is atomic under the GIL and under gevent
        self._own_pool = transport.client(timeout=600.0, max_connections=100, max_keepalive=20) \
            if credentials and http is None else None
        self._http = http if http is not None else self._own_pool
        # One set of request headers per credential, built once.
        self._headers = [{**_JSON, **self._auth(credential, config), **(config.headers or {})}
                         for credential in credentials]

    def _credentials(self, config: ProviderConfig) -> tuple[str, ...]:
        """The credentials rotated over: the keys, or a placeholder for a keyless compatible server."""
        keys = tuple(k for k in config.api_keys if k)
        if not keys and not self._official:
            keys = (PLACEHOLDER_KEY,)
        return keys

    def _auth(self, credential: str, config: ProviderConfig) -> dict[str, str]:
        """The headers that authenticate one credential."""
        headers = {"Authorization": f"Bearer {credential}"}
        for option, header in (("organization", "OpenAI-Organization"), ("project", "OpenAI-Project")):
            if config.extra.get(option):
                headers[header] = str(config.extra[option])
        return headers

    def _url(self, path: str, model: str) -> str:
        """The URL of an endpoint (``chat/completions``, ``embeddings``) for ``model``."""
        return f"{self._base_url}/{path}"

    def configured(self) -> bool:
        """True when there is a key, or the base URL is a custom OpenAI-compatible server."""
        return bool(self._headers)

    def close(self) -> None:
        """Close the adapter's own connection pool (a shared ``http`` client is left to its owner)."""
        if self._own_pool is not None:
            self._own_pool.close()

    # -- public calls ---------------------------------------------------------------------------------

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return the upstream ``chat.completion`` dict. Raises ``UpstreamError`` subclasses."""
        payload = _payload(body, model, drop=("stream", "stream_options"))
        payload.setdefault("messages", [])
        response = self._post("chat/completions", model, payload, timeout)
        return _normalise_completion(self._json(response))

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield the upstream ``chat.completion.chunk`` dicts; usage arrives in a final ``choices: []`` chunk.

        ``stream_options.include_usage`` is always set so streamed answers can be priced. Closing the
        iterator closes the upstream response. Raises ``UpstreamError`` subclasses, also mid-stream.
        """
        payload = _payload(body, model)
        payload.setdefault("messages", [])
        payload["stream"] = True
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        response = self._post("chat/completions", model, payload, timeout)
        return ClosingStream(self._iterate(response), response.close)

    def embed(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return the upstream embeddings ``list`` dict for an OpenAI embeddings body. Raises ``UpstreamError``."""
        payload = _payload(body, model)
        payload.setdefault("input", "")
        return self._json(self._post("embeddings", model, payload, timeout))

    # -- internals ------------------------------------------------------------------------------------

    def _post(self, path: str, model: str, payload: dict[str, Any], timeout: float) -> httpx.Response:
        """POST ``payload`` starting at the next key; on 401/429 try the following keys once each. Returns a
        response below 400, its body not read yet (``_json`` or ``_iterate`` reads and closes it)."""
        if not self._headers:
            raise errors.UpstreamUnavailable(f"Provider '{self.name}' is not configured (no API key)",
                                             provider=self.name)
        content = offload.cpu(_dumps, payload, heavy=len(payload.get("messages") or ()) > offload.HEAVY_MESSAGES)
        url = self._url(path, model)
        start = next(self._counter)
        count = len(self._headers)
        for attempt in range(count):
            index = (start + attempt) % count
            request = self._http.build_request("POST", url, content=content, headers=self._headers[index],
                                               timeout=httpx.Timeout(timeout))
            try:  # the body is read below (or by the caller), so a status arrives even when its body breaks off
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise convert_httpx_error(exc, self.name) from exc
            if response.status_code < 400:
                return response
            try:
                text = response.read().decode("utf-8", "replace")
            except httpx.HTTPError:  # the error body broke off: the status still says what happened
                text = ""
            finally:
                response.close()
            if response.status_code in _ROTATE_ON and attempt + 1 < count:
                log.warning("%s key #%d got HTTP %s, trying the next key", self.name, index, response.status_code)
                continue
            raise self._status_error(response, text)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _status_error(self, response: httpx.Response, text: str) -> errors.UpstreamError:
        """The gateway error for an upstream answer of 400 or more (``text``: its body, which goes to the
        owner's log only)."""
        return failed(errors.from_status(response.status_code, _safe_message(error_object(text), response.status_code),
                                         provider=self.name, retry_after=parse_retry_after(response.headers)),
                      text, response.status_code)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        """The JSON object of a successful answer. Raises ``UpstreamError`` (retryable) when it is not one."""
        try:
            data = loads(response.read())
        except httpx.TimeoutException as exc:
            raise errors.UpstreamTimeout(f"Provider '{self.name}' did not answer in time", provider=self.name) from exc
        except httpx.HTTPError as exc:
            raise errors.UpstreamError(f"Provider '{self.name}' broke off its answer", provider=self.name) from exc
        except ValueError as exc:
            raise errors.UpstreamError(f"Provider '{self.name}' sent a response that is not JSON",
                                       provider=self.name) from exc
        finally:
            response.close()
        if not isinstance(data, dict):
            raise errors.UpstreamError(f"Provider '{self.name}' sent an unexpected response", provider=self.name)
        return data

    def _iterate(self, response: httpx.Response) -> Iterator[dict[str, Any]]:
        try:
            events = sse_events(response, self.name)
            for event, data in events:
                if data.startswith("[DONE]"):
                    _drain(events)
                    return
                try:
                    chunk = loads(data)
                except ValueError as exc:
                    raise errors.UpstreamError(f"Provider '{self.name}' sent a stream event that is not JSON",
                                               provider=self.name) from exc
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise self._stream_error(chunk["error"])
                if event in (None, "message") and isinstance(chunk, dict):  # "message" is SSE's default name
                    yield chunk
        finally:
            response.close()

    def _stream_error(self, error: Any) -> errors.UpstreamError:
        """An ``error`` object sent inside a stream that had started."""
        return failed(errors.UpstreamError(f"Provider '{self.name}' failed mid-stream: {_safe_message(error, None)}",
                                           provider=self.name), error)


def _payload(body: dict[str, Any], model: str, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body sent upstream: the client's, without the proxy's ``_`` keys (and ``drop``), for ``model``."""
    payload = {k: v for k, v in body.items() if not k.startswith("_") and k not in drop}
    payload["model"] = model
    return payload


def loads(raw: bytes | str) -> Any:
    """JSON from an upstream: orjson, or the stdlib for what orjson refuses and some servers send (``NaN``,
    ``-Infinity`` in logprobs, a byte-order mark). Raises ``ValueError``."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw.lstrip("\ufeff")
        return json.loads(text)


def _drain(events: Iterator[Any]) -> None:
    """Read a finished stream on to its end, so its connection goes back to the pool (as the SDK did). The
    answer is already whole: a connection that breaks or stalls now is only closed, never an error."""
    try:
        for _ in events:
            pass
    except (errors.UpstreamError, httpx.HTTPError):
        pass


def _dumps(payload: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # not JSON-native (an integer past 64 bits, a non-string key): the stdlib encodes more
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def error_object(text: str) -> Any:
    """An error body's ``error`` object (or the whole body, parsed when it is JSON)."""
    try:
        data = loads(text)
    except ValueError:
        return text
    return data.get("error", data) if isinstance(data, dict) else data


def _normalise_completion(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the keys OpenAI always sends that some compatible servers omit."""
    for choice in data.get("choices") or []:
        message = choice.get("message")
        if isinstance(message, dict):
            message.setdefault("content", None)
            message.setdefault("refusal", None)
        choice.setdefault("logprobs", None)
    data.setdefault("usage", None)
    return data


def _safe_message(body: object, status: int | None) -> str:
    """The upstream ``error.message`` (``body`` is the error object, or a body holding one), trimmed."""
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str) and message:
            return message[:500]
    return f"HTTP {status}" if status else "upstream error"


TYPE = ProviderType(
    name="openai", adapter=OpenAIProvider, key_env=("OPENAI_API_KEYS", "OPENAI_API_KEY"),
    base_url_env="OPENAI_BASE_URL", default_base_url=DEFAULT_BASE_URL, keyless_with_custom_url=True,
    prefixes=("gpt-", "chatgpt-", "o1-", "o3-", "o4-", "text-embedding-"),
    options=("base_url", "api_key_env", "headers", "organization", "project"),
)
