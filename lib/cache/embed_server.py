"""One embedding model per machine, shared by every gunicorn worker, off the gevent loop.

The gunicorn master starts this server once (``python -m lib.cache.embed_server --socket PATH``) before
it forks workers; each worker sends prompts over a Unix socket and gets float32 vectors back. So the
model (~90 MiB of weights, several hundred MiB with its runtime) is loaded once per machine, not once per
worker, and the CPU-heavy inference runs in another process: a worker's gevent loop only waits on a
socket, which gevent makes cooperative.

Protocol (one request per connection): the client sends a 4-byte big-endian length and a UTF-8 JSON body
``{"op": "embed", "text": "..."}`` or ``{"op": "len", "text": "..."}``; the server answers a 4-byte
length, one tag byte and the payload: ``V`` + 384 float32s (little-endian), or ``J`` + JSON
(``{"tokens": N}`` or ``{"error": "..."}``). The tag keeps a vector whose first byte happens to be ``{``
from being read as JSON.
The server loads the model in the background at start; until it is ready a request gets ``{"error":
"loading"}`` and the caller skips the semantic cache for that request (the exact cache still works).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Any

log = logging.getLogger("aiproxy.embed_server")

_LEN = struct.Struct(">I")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf.extend(chunk)
    return bytes(buf)


def _send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LEN.pack(len(payload)) + payload)


def _recv_frame(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    (size,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if size > limit:
        raise ValueError("frame too large")
    return _recv_exact(sock, size)


@functools.lru_cache(maxsize=1)
def local_embedder() -> Any:
    """The in-process model, created once per process (for runs outside gunicorn: tests, ``flask run``).

    Loaded lazily on first use by ``Embedder`` itself; sharing it keeps every app in one process on one copy.
    """
    from lib.cache.embedder import Embedder

    return Embedder()


class EmbeddingUnavailable(RuntimeError):
    """The embedding server is not reachable or not ready; the caller bypasses the semantic cache."""


class RemoteEmbedder:
    """Client of the embedding server; the same ``embed`` / ``token_length`` calls as ``Embedder``."""

    def __init__(self, socket_path: str, *, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _call(self, request: dict[str, Any]) -> bytes:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                _send_frame(sock, json.dumps(request).encode("utf-8"))
                return _recv_frame(sock)
        except (OSError, ValueError, ConnectionError) as exc:
            raise EmbeddingUnavailable(f"embedding server unreachable: {type(exc).__name__}") from exc

    def embed(self, text: str) -> Any:
        """The L2-normalised float32 vector of ``text``. Raises ``EmbeddingUnavailable``."""
        import numpy as np

        payload = self._call({"op": "embed", "text": text})
        if payload[:1] != b"V":
            raise EmbeddingUnavailable(_json(payload).get("error", "unknown error"))
        return np.frombuffer(payload[1:], dtype="<f4").copy()

    def token_length(self, text: str) -> int:
        """Word pieces of ``text`` as the model reads them. Raises ``EmbeddingUnavailable``."""
        data = _json(self._call({"op": "len", "text": text}))
        if "error" in data or "tokens" not in data:
            raise EmbeddingUnavailable(str(data.get("error", "bad reply")))
        return int(data["tokens"])


def _json(payload: bytes) -> dict[str, Any]:
    if payload[:1] != b"J":
        raise EmbeddingUnavailable("malformed reply from the embedding server")
    data = json.loads(payload[1:])
    return data if isinstance(data, dict) else {"error": "malformed reply"}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: "EmbedServer" = self.server  # type: ignore[assignment]
        try:
            request = json.loads(_recv_frame(self.request))
            if not server.ready.is_set():
                reply = b"J" + json.dumps({"error": server.failure or "loading"}).encode()
            elif request.get("op") == "len":
                reply = b"J" + json.dumps({"tokens": server.embedder.token_length(str(request.get("text", "")))}).encode()
            else:
                vec = server.embedder.embed(str(request.get("text", "")))
                reply = b"V" + vec.astype("<f4").tobytes()
            _send_frame(self.request, reply)
        except Exception as exc:  # one bad request must not take the server down
            log.warning("embedding request failed: %s", exc)
            try:
                _send_frame(self.request, b"J" + json.dumps({"error": type(exc).__name__}).encode())
            except OSError:
                pass


class EmbedServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(self, socket_path: str, embedder: Any) -> None:
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        super().__init__(socket_path, _Handler)
        os.chmod(socket_path, 0o600)
        self.embedder = embedder
        self.ready = threading.Event()
        self.failure: str | None = None

    def load_in_background(self) -> None:
        def load() -> None:
            try:
                backend = self.embedder.load()
                self.embedder.embed("warm up")
                log.info("embedding model loaded (%s backend)", backend)
            except Exception as exc:  # the proxy keeps working without the semantic cache
                self.failure = f"model failed to load: {type(exc).__name__}"
                log.error("embedding model failed to load: %s", exc)
            finally:
                self.ready.set()

        threading.Thread(target=load, name="embed-load", daemon=True).start()


def _exit_with_parent(server: EmbedServer, parent_pid: int) -> None:
    """Shut the server down when ``parent_pid`` (the gunicorn master) is gone, so it is never orphaned."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                log.info("parent %s is gone; the embedding server stops", parent_pid)
                server.shutdown()
                return

    threading.Thread(target=watch, name="embed-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="AI Proxy embedding server (one per machine)")
    parser.add_argument("--socket", required=True)
    # Two intra-op threads: ~3.3 ms a short prompt instead of ~4.5 ms on one (measured on a 2-core machine);
    # this process does nothing else, so its threads do not compete with a worker's event loop.
    parser.add_argument("--threads", type=int, default=int(os.environ.get("EMBED_THREADS") or min(2, os.cpu_count() or 1)))
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from lib.cache.embedder import Embedder

    server = EmbedServer(args.socket, Embedder(threads=max(1, args.threads)))
    server.load_in_background()
    if args.parent_pid:
        _exit_with_parent(server, args.parent_pid)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if os.path.exists(args.socket):
            os.unlink(args.socket)


if __name__ == "__main__":
    main()
