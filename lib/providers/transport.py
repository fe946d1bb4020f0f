"""An ``httpx`` transport on ``urllib3``'s connection pools: the providers keep httpx's API (and tests keep
``httpx.MockTransport``), the hot path loses httpcore's pool bookkeeping.

Why: profiled under load, httpcore's ``ConnectionPool`` re-examined every pooled connection on each request
(``has_expired`` polls each idle socket), so the cost of one request grew with the pool — ~15 % of a
worker's time at saturation. urllib3 keeps a LIFO queue per host and checks only the connection it hands
out. Retries and redirects stay off (the gateway's fallback loop and deadline decide); content is passed
through undecoded (httpx decodes it, as it would its own transport's).

A proxy from the environment (``HTTPS_PROXY`` and friends) is not honoured here: set
``HTTP_TRANSPORT=httpx`` to use httpx's own transport, which is.
"""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

_CHUNK = 64 * 1024


def _timeout(request: httpx.Request) -> urllib3.Timeout:
    t = request.extensions.get("timeout") or {}
    return urllib3.Timeout(connect=t.get("connect"), read=t.get("read"))


def _convert(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception for a urllib3 one (``lib.providers.base.convert_httpx_error`` maps those on)."""
    if isinstance(exc, (NewConnectionError, SSLError)):  # first: urllib3 makes NewConnectionError a ConnectTimeoutError
        if "timed out" in str(exc).lower():
            return httpx.ConnectTimeout(str(exc), request=request)
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, ConnectTimeoutError):
        return httpx.ConnectTimeout(str(exc), request=request)
    if isinstance(exc, ReadTimeoutError):
        return httpx.ReadTimeout(str(exc), request=request)
    if isinstance(exc, ProtocolError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    return httpx.TransportError(str(exc), request=request)


class _Body(httpx.SyncByteStream):
    """The response body, read from urllib3 as it arrives; closing it returns the connection to the pool."""

    def __init__(self, response: urllib3.BaseHTTPResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                chunk = self._response.read1(_CHUNK)
                if not chunk:
                    self._done = True
                    return
                yield chunk
        except (HTTPError, OSError) as exc:
            raise _convert(exc, self._request) from exc

    def close(self) -> None:
        if self._done:
            self._response.release_conn()  # read to its end: the connection goes back to the pool
        else:
            self._response.close()  # left mid-body (a client gone mid-stream): never reuse it


class Urllib3Transport(httpx.BaseTransport):
    """``httpx.Client(transport=Urllib3Transport(...))``: keep-alive pools per host, ``maxsize`` connections
    kept idle per host (more are opened when needed and closed after use)."""

    def __init__(self, *, maxsize: int = 100) -> None:
        self._pools = urllib3.PoolManager(num_pools=32, maxsize=maxsize, block=False, retries=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        try:
            response = self._pools.urlopen(
                request.method, str(request.url), body=body or None, headers=dict(request.headers),
                redirect=False, retries=False, preload_content=False, decode_content=False,
                timeout=_timeout(request))
        except (HTTPError, OSError) as exc:
            raise _convert(exc, request) from exc
        return httpx.Response(response.status, headers=list(response.headers.items()), stream=_Body(response, request),
                              extensions={"http_version": b"HTTP/1.1"})

    def close(self) -> None:
        self._pools.clear()


def client(*, timeout: float, max_connections: int, max_keepalive: int, transport: str = "urllib3") -> httpx.Client:
    """The ``httpx.Client`` providers call through: on urllib3's pools, or httpx's own (``transport="httpx"``)."""
    kwargs: dict[str, Any] = {"timeout": httpx.Timeout(timeout, connect=min(10.0, timeout)), "follow_redirects": False}
    if transport == "httpx":
        return httpx.Client(limits=httpx.Limits(max_connections=max_connections,
                                                max_keepalive_connections=max_keepalive), **kwargs)
    return httpx.Client(transport=Urllib3Transport(maxsize=max(1, max_keepalive)), **kwargs)
