"""Fake OpenAI, Azure OpenAI, Anthropic, Gemini and Bedrock servers on 127.0.0.1, each speaking its real wire
format.

One threaded HTTP/1.1 server serves them all on their real paths::

    POST /v1/chat/completions          OpenAI (plain, and SSE with stream_options.include_usage)
    POST /v1/embeddings, GET /v1/models
    POST /openai/deployments/{d}/chat/completions?api-version=…   Azure OpenAI (``azure_wire``)
    POST /openai/deployments/{d}/embeddings?api-version=…
    POST /v1/messages                  Anthropic Messages (plain, and SSE events)
    POST /v1beta/models/{m}:generateContent          Gemini
    POST /v1beta/models/{m}:streamGenerateContent    Gemini (``?alt=sse``; a JSON array without it)
    POST /model/{id}/converse, /model/{id}/converse-stream       Bedrock (``bedrock_wire``; event-stream frames)

Point the OpenAI SDK at ``fake.url + "/v1"``; Azure, Anthropic and Gemini at ``fake.url``; boto3's
``bedrock-runtime`` at ``endpoint_url=fake.url``. What it answers and how tests steer it
(``[fake:error=429 retry=2]`` and friends) is described in ``tests.fakes.script``.

In-process::

    fake = FakeUpstream(valid_keys={"sk-good"}).start()
    ... fake.requests[-1].json ...
    fake.stop()

Standalone: ``python -m tests.fakes.upstreams --port 9100``.
"""

from __future__ import annotations

import argparse
import json
import sys
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

from tests.fakes import anthropic_wire, azure_wire, bedrock_wire, gemini_wire, openai_wire
from tests.fakes.script import CutConnection, Reply, Request, Script

Handler = Callable[[Request, Any], Reply]
_GEMINI_PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent)$")
_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout)


class FakeUpstream:
    """A fake upstream server; ``start()`` runs it in a background thread on a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, valid_keys: Iterable[str] | None = None) -> None:
        self.host = host
        self.port = port
        self.valid_keys: set[str] | None = set(valid_keys) if valid_keys is not None else None
        self.rate_limited_keys: set[str] = set()  # keys that always get the provider's 429
        self.requests: list[Request] = []
        self.disconnects: list[str] = []  # paths of streams the client abandoned mid-way
        self.abandoned: list[Request] = []  # the same, as the requests themselves
        self.completed_streams: list[str] = []
        self.script = Script()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

    def key_ok(self, key: str) -> bool:
        """Any non-empty key, or only ``valid_keys`` when that set is given."""
        return bool(key) and (self.valid_keys is None or key in self.valid_keys)

    def reset(self) -> None:
        """Forget recorded requests, disconnects and ``times=K`` counters."""
        self.requests.clear()
        self.disconnects.clear()
        self.abandoned.clear()
        self.completed_streams.clear()
        self.script.reset()

    def start(self) -> "FakeUpstream":
        """Bind (port 0 = a free one) and serve in a daemon thread; returns self."""
        server = _Server((self.host, self.port), _RequestHandler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"fake-upstream-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
        """Poll ``predicate`` until true or ``timeout`` seconds pass; returns its last value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return bool(predicate())

    def serve_forever(self) -> None:
        """Run in the foreground (the standalone mode); starts the server if needed."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler for ``method path`` and its path parameters, or None."""
        table: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): openai_wire.chat,
            ("POST", "/v1/embeddings"): openai_wire.embeddings,
            ("GET", "/v1/models"): openai_wire.models,
            ("POST", "/v1/messages"): anthropic_wire.messages,
        }
        if (method, path) in table:
            return table[(method, path)], {}
        match = _GEMINI_PATH.match(path)
        if method == "POST" and match:
            return gemini_wire.generate, {"model": match.group(2), "method": match.group(3)}
        match = _AZURE_PATH.match(path)
        if method == "POST" and match:
            handler = azure_wire.chat if match.group(2) == "chat/completions" else azure_wire.embeddings
            return handler, {"deployment": match.group(1)}
        params = bedrock_wire.route(path)
        if method == "POST" and params is not None:
            return bedrock_wire.converse, params
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # 200+ concurrent streams connect at once in load tests
    fake: FakeUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, closed streams) are normal here; report anything else."""
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout, OSError)):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        return

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        req = Request(method=self.command, path=parts.path, query=dict(parse_qsl(parts.query)),
                      headers={k.lower(): v for k, v in self.headers.items()}, json=data, body=raw)
        fake.requests.append(req)
        found = fake.route(self.command, parts.path)
        if found is None:
            reply = Reply(status=404, body={"error": {"message": f"Unknown path {parts.path}",
                                                      "type": "invalid_request_error", "param": None, "code": None}})
        else:
            handler, params = found
            req.query.update({f"path.{k}": v for k, v in params.items()})
            reply = handler(req, fake)
        if reply.frames is None:
            self._send_json(reply)
        else:
            self._send_stream(reply, req)

    def _send_json(self, reply: Reply) -> None:
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except _CLIENT_GONE:
            self.close_connection = True

    def _send_stream(self, reply: Reply, req: Request) -> None:
        assert reply.frames is not None
        fake = self.server.fake
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            for frame in reply.frames:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            fake.completed_streams.append(req.path)
        except CutConnection:
            self.close_connection = True
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except _CLIENT_GONE:
            self.close_connection = True
            fake.disconnects.append(req.path)
            fake.abandoned.append(req)
        finally:
            reply.frames.close()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Serve every fake until interrupted."""
    parser = argparse.ArgumentParser(description="Fake OpenAI/Azure/Anthropic/Gemini/Bedrock upstreams for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--valid-key", action="append", dest="valid_keys",
                        help="accept only these keys (repeatable); default: any non-empty key")
    args = parser.parse_args(argv)
    fake = FakeUpstream(args.host, args.port, valid_keys=args.valid_keys)
    fake.start()
    print(f"fake upstreams serving on {fake.url} (OpenAI base {fake.url}/v1)", flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
