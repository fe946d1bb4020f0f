"""The httpx plumbing the HTTP-based adapters share: one POST, one stream, errors converted at the edge."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import httpx

from lib import errors
from lib.providers.base import convert_httpx_error, iter_sse, raise_for_status


def send(
    http: httpx.Client,
    url: str,
    *,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout: float,
    provider: str,
    stream: bool = False,
    params: dict[str, str] | None = None,
    on_error: Callable[[httpx.Response, str], None] = raise_for_status,
) -> httpx.Response:
    """POST ``body`` as JSON and return the response (still open when ``stream``).

    Raises ``UpstreamTimeout`` / ``UpstreamUnavailable`` for transport failures and whatever ``on_error``
    raises for a status of 400 or more (the response is closed first).
    """
    request = http.build_request("POST", url, json=body, headers=headers, params=params,
                                 timeout=httpx.Timeout(timeout))
    try:
        response = http.send(request, stream=stream)
    except httpx.HTTPError as exc:
        raise convert_httpx_error(exc, provider) from exc
    if response.status_code >= 400:
        try:
            on_error(response, provider)
            raise errors.from_status(response.status_code, f"HTTP {response.status_code}", provider=provider)
        finally:
            response.close()
    return response


def json_body(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The response's JSON object. Raises ``UpstreamError`` when it is not one."""
    try:
        data = response.json()
    except ValueError as exc:
        raise errors.UpstreamError(f"Provider '{provider}' sent a response that is not JSON", provider=provider) from exc
    if not isinstance(data, dict):
        raise errors.UpstreamError(f"Provider '{provider}' sent an unexpected response", provider=provider)
    return data


def sse_events(response: httpx.Response, provider: str) -> Iterator[tuple[str | None, str]]:
    """``(event, data)`` pairs of an open SSE response. Raises ``UpstreamTimeout`` / ``UpstreamError``."""
    try:
        yield from iter_sse(response)
    except httpx.TimeoutException as exc:
        raise errors.UpstreamTimeout(f"Provider '{provider}' stalled mid-stream", provider=provider) from exc
    except httpx.HTTPError as exc:
        raise errors.UpstreamError(f"Provider '{provider}' broke off the stream", provider=provider) from exc


class ClosingStream:
    """The iterator ``stream()`` returns: it owns the upstream response, and ``close()`` always closes it.

    A plain generator's ``finally`` never runs if it is closed before its first ``next()``, which would
    leave the upstream connection open when a client hangs up before the first chunk; this wrapper
    closes the upstream in that case too.
    """

    def __init__(self, chunks: Iterator[dict[str, Any]], close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> "ClosingStream":
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._chunks)

    def close(self) -> None:
        """Stop the iteration and close the upstream response (idempotent)."""
        try:
            close_chunks = getattr(self._chunks, "close", None)
            if close_chunks is not None:
                close_chunks()
        finally:
            self._close()

    def __enter__(self) -> "ClosingStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
