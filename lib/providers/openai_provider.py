"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, LM Studio, a mock), through the official SDK.

The request body is passed through as the client sent it (tools, response_format, n, seed, logprobs,
``top_k`` for servers such as vLLM, and any parameter this code has never heard of: OpenAI itself answers
400 for one it does not know, and that 400 reaches the client), with only ``model`` replaced and the
proxy's own ``_``-prefixed keys (``NATIVE_FIELD``) removed; the answer is returned in the
exact shape the upstream sent (``to_dict()`` keeps only the keys the server set), plus ``message.refusal``
when a compatible server leaves it out.

Keys are rotated round robin. A call that gets 401 or 429 from one key moves on to the next key (each key
at most once per call) before giving up, so one revoked or throttled key does not fail requests.

The installed SDK (openai 3.x) is built on ``httpx2`` but also accepts a legacy ``httpx.Client`` (its
``_httpx2`` shim maps that client's exceptions too), so the per-key SDK clients share the gateway's one
``httpx.Client`` pool; without one, the adapter builds one SDK pool of its own.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Iterator

import httpx
import openai

from lib import errors
from lib.providers.base import ProviderConfig
from lib.providers.base import failed
from lib.providers.httpjson import ClosingStream
from lib.providers.registry import ProviderType

log = logging.getLogger("aiproxy.providers.openai")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "sk-no-key-required"  # OpenAI-compatible servers without auth still need a non-empty key
_ROTATE_ON = (401, 429)
# Keys the SDK sets itself from keyword arguments, so they are not duplicated in extra_body.
_OWN_KEYS = ("model", "messages", "stream", "stream_options")


class OpenAIProvider:
    """Adapter for the OpenAI Chat Completions API and OpenAI-compatible servers."""

    default_name = "openai"

    def __init__(self, config: ProviderConfig, http: httpx.Client | None = None) -> None:
        self.name = config.name or self.default_name
        self._base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._official = "api.openai.com" in self._base_url
        credentials = self._credentials(config)
        self._counter = itertools.count()  # next() on a count is atomic under the GIL and under gevent
        self._own_pool = openai.DefaultHttpxClient() if credentials and http is None else None
        pool = http if http is not None else self._own_pool
        self._clients = [self._client(credential, pool, config) for credential in credentials]

    def _credentials(self, config: ProviderConfig) -> tuple[str, ...]:
        """One SDK client per credential: the keys, or a placeholder for a keyless compatible server."""
        keys = tuple(k for k in config.api_keys if k)
        if not keys and not self._official:
            keys = (PLACEHOLDER_KEY,)
        return keys

    def _client(self, key: str, pool: Any, config: ProviderConfig) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=key,
            base_url=self._base_url,
            organization=config.extra.get("organization"),
            project=config.extra.get("project"),
            max_retries=0,
            default_headers=config.headers or None,
            http_client=pool,  # type: ignore[arg-type]  # legacy httpx.Client is supported
        )

    def configured(self) -> bool:
        """True when there is a key, or the base URL is a custom OpenAI-compatible server."""
        return bool(self._clients)

    def close(self) -> None:
        """Close the adapter's own connection pool (a shared ``http`` client is left to its owner)."""
        if self._own_pool is not None:
            self._own_pool.close()

    # -- public calls ---------------------------------------------------------------------------------

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return the upstream ``chat.completion`` dict. Raises ``UpstreamError`` subclasses."""
        extra = _extra_body(body)

        def call(client: openai.OpenAI) -> dict[str, Any]:
            result = client.chat.completions.create(
                model=model, messages=body.get("messages", []), extra_body=extra, timeout=timeout
            )
            return _normalise_completion(result.to_dict(mode="json"))

        return self._with_rotation(call)

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield the upstream ``chat.completion.chunk`` dicts; usage arrives in a final ``choices: []`` chunk.

        ``stream_options.include_usage`` is always set so streamed answers can be priced. Closing the
        generator closes the upstream response. Raises ``UpstreamError`` subclasses, also mid-stream.
        """
        extra = _extra_body(body)
        stream_options = dict(body.get("stream_options") or {})
        stream_options["include_usage"] = True

        def call(client: openai.OpenAI) -> Any:
            return client.chat.completions.create(
                model=model,
                messages=body.get("messages", []),
                stream=True,
                stream_options=stream_options,  # type: ignore[arg-type]
                extra_body=extra,
                timeout=timeout,
            )

        upstream = self._with_rotation(call)
        return ClosingStream(self._iterate(upstream), upstream.close)

    def embed(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return the upstream embeddings ``list`` dict for an OpenAI embeddings body. Raises ``UpstreamError``."""
        extra = {k: v for k, v in body.items() if k not in ("model", "input")}

        def call(client: openai.OpenAI) -> dict[str, Any]:
            result = client.embeddings.create(model=model, input=body.get("input", ""), extra_body=extra, timeout=timeout)
            return result.to_dict(mode="json")

        return self._with_rotation(call)

    # -- internals ------------------------------------------------------------------------------------

    def _iterate(self, upstream: Any) -> Iterator[dict[str, Any]]:
        try:
            try:
                for chunk in upstream:
                    yield chunk.to_dict(mode="json")
            except openai.APITimeoutError as exc:
                raise self._convert(exc) from exc
            except openai.APIConnectionError as exc:  # the body broke off after the stream had started
                raise errors.UpstreamError(f"Provider '{self.name}' broke off the stream", provider=self.name) from exc
            except openai.OpenAIError as exc:
                raise self._convert(exc) from exc
        finally:
            upstream.close()

    def _with_rotation(self, call: Any) -> Any:
        """Run ``call(client)`` starting at the next key; on 401/429 try the following keys once each."""
        if not self._clients:
            raise errors.UpstreamUnavailable(f"Provider '{self.name}' is not configured (no API key)",
                                             provider=self.name)
        start = next(self._counter)
        count = len(self._clients)
        last: openai.APIStatusError | None = None
        for attempt in range(count):
            index = (start + attempt) % count
            try:
                return call(self._clients[index])
            except openai.APIStatusError as exc:
                if exc.status_code in _ROTATE_ON and attempt + 1 < count:
                    log.warning("%s key #%d got HTTP %s, trying the next key", self.name, index, exc.status_code)
                    last = exc
                    continue
                raise self._convert(exc) from exc
            except openai.OpenAIError as exc:
                raise self._convert(exc) from exc
        assert last is not None  # the loop either returns or raises
        raise self._convert(last) from last

    def _convert(self, exc: Exception) -> errors.UpstreamError:
        """Map an SDK exception to the gateway's error; the raw body goes to the log only."""
        if isinstance(exc, openai.APIStatusError):
            return failed(errors.from_status(exc.status_code, _safe_message(exc.body, exc.status_code),
                                             provider=self.name, retry_after=_retry_after(exc.response.headers)),
                          exc.body, exc.status_code)
        if isinstance(exc, openai.APITimeoutError):
            return errors.UpstreamTimeout(f"Provider '{self.name}' did not answer in time", provider=self.name)
        if isinstance(exc, openai.APIConnectionError):
            return errors.UpstreamUnavailable(f"Provider '{self.name}' could not be reached", provider=self.name)
        if isinstance(exc, openai.APIError):  # an error event inside a stream
            return failed(errors.UpstreamError(
                f"Provider '{self.name}' failed mid-stream: {_safe_message(exc.body, None)}", provider=self.name),
                exc.body)
        return errors.UpstreamError(f"Provider '{self.name}' failed: {type(exc).__name__}", provider=self.name)


def _extra_body(body: dict[str, Any]) -> dict[str, Any]:
    """Everything but the keys the SDK call sets itself (and the proxy's ``_`` keys), passed through verbatim."""
    return {k: v for k, v in body.items() if k not in _OWN_KEYS and not k.startswith("_")}


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
    """The upstream ``error.message`` (the SDK already unwrapped ``error``), trimmed; never the raw body."""
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str) and message:
            return message[:500]
    return f"HTTP {status}" if status else "upstream error"


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (httpx2 headers behave like httpx's)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                return float(value) / scale
            except ValueError:
                continue
    return None


TYPE = ProviderType(
    name="openai", adapter=OpenAIProvider, key_env=("OPENAI_API_KEYS", "OPENAI_API_KEY"),
    base_url_env="OPENAI_BASE_URL", default_base_url=DEFAULT_BASE_URL, keyless_with_custom_url=True,
    prefixes=("gpt-", "chatgpt-", "o1-", "o3-", "o4-", "text-embedding-"),
    options=("base_url", "api_key_env", "headers", "organization", "project"),
)
