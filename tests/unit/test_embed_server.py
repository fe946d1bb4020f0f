"""The per-machine embedding server's protocol, with a stand-in model (the real one is covered elsewhere)."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest

from lib.cache.embed_server import EmbeddingUnavailable, EmbedServer, RemoteEmbedder


class StandIn:
    """Returns a vector whose first byte is '{' — the case a tagless protocol would misread as JSON."""

    def __init__(self) -> None:
        first = struct.unpack("<f", b"{\x00\x80\x3f")[0]
        self.vector = np.array([first] + [0.5] * 383, dtype=np.float32)

    def load(self) -> str:
        return "stand-in"

    def embed(self, text: str) -> np.ndarray:
        if text == "boom":
            raise RuntimeError("model failure")
        return self.vector

    def token_length(self, text: str) -> int:
        return len(text.split()) + 2


@pytest.fixture
def served(tmp_path):
    model = StandIn()
    server = EmbedServer(str(tmp_path / "embed.sock"), model)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, model, RemoteEmbedder(str(tmp_path / "embed.sock"))
    server.shutdown()
    server.server_close()


def test_vectors_and_lengths_round_trip(served):
    server, model, client = served
    with pytest.raises(EmbeddingUnavailable, match="loading"):
        client.embed("hello")  # not loaded yet: the caller bypasses the semantic cache
    server.load_in_background()
    assert server.ready.wait(5)
    vec = client.embed("hello")
    assert vec.tobytes()[:1] == b"{" and np.array_equal(vec, model.vector)
    assert client.token_length("three word prompt") == 5


def test_model_error_and_missing_server(served, tmp_path):
    server, _, client = served
    server.load_in_background()
    assert server.ready.wait(5)
    with pytest.raises(EmbeddingUnavailable):
        client.embed("boom")
    assert client.embed("fine after a failure").shape == (384,)
    with pytest.raises(EmbeddingUnavailable):
        RemoteEmbedder(str(tmp_path / "nobody-here.sock")).embed("x")
