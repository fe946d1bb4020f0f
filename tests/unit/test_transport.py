"""The urllib3-backed transport (lib/providers/transport.py) maps failures as httpx's own does, so adapters
answer the right status: a refused connection is "unreachable" (503), a silent server a timeout (504)."""

from __future__ import annotations

import socket

import pytest

from lib import errors
from lib.providers import transport
from lib.providers.base import ProviderConfig
from lib.providers.openai_provider import OpenAIProvider

BODY = {"messages": [{"role": "user", "content": "hi"}]}


def _provider(url: str) -> OpenAIProvider:
    return OpenAIProvider(ProviderConfig(api_keys=("k",), base_url=url),
                          transport.client(timeout=5, max_connections=4, max_keepalive=2))


def test_a_refused_connection_is_unavailable_not_a_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    with pytest.raises(errors.UpstreamUnavailable):
        _provider(f"http://127.0.0.1:{port}/v1").complete(BODY, model="m", timeout=2)


def test_a_server_that_never_answers_is_a_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with pytest.raises(errors.UpstreamTimeout):
            _provider(f"http://127.0.0.1:{port}/v1").complete(BODY, model="m", timeout=0.5)
