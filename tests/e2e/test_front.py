"""The server's front, through the real server (``bin/start.sh``) and raw sockets on 127.0.0.1.

- What gunicorn used to answer itself as an HTML page — a 100 KB header (431), a control character in a
  header (400), a very long request line (414), bad chunked framing (400), an unknown transfer coding (501),
  a head sent too slowly (408) — is the OpenAI envelope in JSON, with ``x-request-id``; a chunked body over
  MAX_REQUEST_BYTES is 413 ``request_too_large`` (werkzeug used to cut it silently at the limit and answer
  the truncated body).
- Slow clients: 200 connections trickling their head or body hold no slot past REQUEST_HEADER_TIMEOUT /
  REQUEST_BODY_TIMEOUT (each gets 408 and is closed), while other clients are served promptly; an idle
  keep-alive connection is bounded by KEEPALIVE, not by the header timeout.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

import httpx
import pytest

from tests.e2e.conftest import MASTER, PROVIDER_KEYS
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT, BODY_TIMEOUT, KEEPALIVE, LIMIT = 2.0, 3.0, 4, 200_000
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "front door"}]}


@pytest.fixture(scope="module")
def front(redis_url, upstream):
    proc = ServerProcess({
        "REDIS_URL": redis_url, "REDIS_PREFIX": "e2e-front:", "AIPROXY_MASTER_KEY": MASTER,
        "OPENAI_API_KEYS": PROVIDER_KEYS["openai"], "OPENAI_BASE_URL": upstream.url + "/v1",
        "REQUEST_TIMEOUT": "5", "MAX_REQUEST_BYTES": str(LIMIT), "SEMANTIC_CACHE": "false",
        "REQUEST_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "REQUEST_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "KEEPALIVE": str(KEEPALIVE),
    })
    resp = httpx.post(proc.url + "/admin/keys", json={"user_id": "front", "rpm": 0},
                      headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 201, resp.text
    proc.key = resp.json()["key"]
    yield proc
    proc.stop()


# -- raw HTTP ------------------------------------------------------------------------------------------------
def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def exchange(server: ServerProcess, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` (from a thread, so a server that answers before reading it all is still heard) and
    read one answer: to its Content-Length, or to the close."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)

    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server answered and closed before taking everything: the answer is what counts

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    raw = b""
    try:
        while True:
            if b"\r\n\r\n" in raw:
                status, headers, body = parse(raw)
                if "content-length" in headers and len(body) >= int(headers["content-length"]):
                    break
            piece = sock.recv(65536)
            if not piece:
                break
            raw += piece
    except ConnectionResetError:
        pass  # after the answer, a close with unread request bytes may reset
    finally:
        sock.close()
    assert raw, "no answer"
    return parse(raw)


def read_response(sock: socket.socket) -> bytes:
    """One answer with a Content-Length from a kept-alive connection."""
    raw = b""
    while True:
        if b"\r\n\r\n" in raw:
            _status, headers, body = parse(raw)
            if len(body) >= int(headers.get("content-length", 0)):
                return raw
        piece = sock.recv(65536)
        assert piece, f"closed mid-answer: {raw!r}"
        raw += piece


def assert_envelope(status: int, headers: dict[str, str], body: bytes, want_status: int, want_code: str) -> None:
    assert status == want_status, body[:300]
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert headers.get("x-request-id"), headers
    data = json.loads(body)
    assert set(data) == {"error"} and set(data["error"]) == {"message", "type", "param", "code"}, data
    assert data["error"]["code"] == want_code, data
    assert b"<html" not in body.lower() and b"traceback" not in body.lower()


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def chat_head(key: str, *extra: str) -> bytes:
    lines = ["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Authorization: Bearer {key}", "Cache-Control: no-store", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- item 8: never HTML ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", 400, "invalid_request"),
    (b"GET /v1/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /v1/models?api_key=x\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, br\r\n\r\n", 501,
     "unsupported_transfer_encoding"),
    (b"BLAH\r\n\r\n", 400, "invalid_request"),
], ids=["header-100KB", "control-char-in-header", "request-line-20KB", "control-char-in-query",
        "unknown-transfer-coding", "not-http"])
def test_requests_gunicorn_refuses_get_the_envelope(front, request_bytes, status, code):
    got_status, headers, body = exchange(front, request_bytes)
    assert_envelope(got_status, headers, body, status, code)
    assert headers.get("connection", "").lower() == "close"
    assert b"api_key" not in body  # the request line (which may carry a key) is never echoed


@pytest.mark.parametrize("framing", [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"], ids=["chunk-size", "terminator"])
def test_bad_chunked_framing_is_400(front, framing):
    status, headers, body = exchange(front, chat_head(front.key, "Transfer-Encoding: chunked") + framing)
    assert_envelope(status, headers, body, 400, "invalid_request")


def test_chunked_body_over_the_limit_is_413(front):
    body = json.dumps(CHAT).encode() + b" " * 5_000_000  # valid JSON: only the size is wrong
    assert_envelope(*exchange(front, chat_head(front.key, "Transfer-Encoding: chunked") + chunked(body)),
                    413, "request_too_large")
    one_over = json.dumps(CHAT).encode().ljust(LIMIT + 1)
    assert_envelope(*exchange(front, chat_head(front.key, "Transfer-Encoding: chunked") + chunked(one_over)),
                    413, "request_too_large")


def test_chunked_body_at_the_limit_is_served(front):
    exact = json.dumps(CHAT).encode().ljust(LIMIT)
    status, _headers, body = exchange(front, chat_head(front.key, "Transfer-Encoding: chunked", "Connection: close")
                                      + chunked(exact))
    assert status == 200, body[:300]
    assert json.loads(body)["choices"][0]["message"]["content"].startswith("Echo:")


def test_a_head_sent_too_slowly_is_408(front):
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=10)
    started = time.monotonic()
    sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")  # never finished
    raw = b""
    while piece := sock.recv(65536):
        raw += piece
    sock.close()
    waited = time.monotonic() - started
    assert_envelope(*parse(raw), 408, "request_timeout")
    assert HEADER_TIMEOUT - 0.1 <= waited <= HEADER_TIMEOUT + 2.5, waited  # close_graceful lingers ≤ 2 s


# -- item 9: slow clients --------------------------------------------------------------------------------------
class SlowClient:
    """One connection that sends its request head (``body=False``) or body a byte at a time."""

    def __init__(self, server: ServerProcess, key: str, body: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.body = body
        if body:
            self.sock.sendall(chat_head(key, "Content-Length: 10000") + b"{")  # the clock starts with the body
        else:
            self.sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        self.started = time.monotonic()
        self.sock.setblocking(False)
        self.raw = b""
        self.answered_at: float | None = None
        self.closed_at: float | None = None

    def trickle(self) -> None:
        if self.closed_at is None:
            try:
                self.sock.send(b" " if self.body else b"a")
            except OSError:
                self.closed_at = self.closed_at or time.monotonic()

    def readable(self) -> None:
        try:
            piece = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            piece = b""
        if piece:
            self.raw += piece
            self.answered_at = self.answered_at or time.monotonic()
        else:
            self.closed_at = time.monotonic()


def test_slow_clients_are_cut_at_their_bound_while_others_are_served(front):
    slow = [SlowClient(front, front.key, body=i % 2 == 1) for i in range(200)]
    served: list[tuple[int, float]] = []
    stop = threading.Event()

    def normal_client() -> None:
        with httpx.Client(base_url=front.url, timeout=10, headers={"Authorization": f"Bearer {front.key}",
                                                                     "Cache-Control": "no-store"}) as client:
            while not stop.is_set():
                began = time.monotonic()
                resp = client.post("/v1/chat/completions", json=CHAT)
                served.append((resp.status_code, time.monotonic() - began))
                time.sleep(0.05)

    others = threading.Thread(target=normal_client, daemon=True)
    others.start()
    selector = selectors.DefaultSelector()
    for client in slow:
        selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + BODY_TIMEOUT + 6
    next_trickle = 0.0
    while time.monotonic() < deadline and any(c.closed_at is None for c in slow):
        if time.monotonic() >= next_trickle:
            for client in slow:
                client.trickle()
            next_trickle = time.monotonic() + 0.25
        for key, _ in selector.select(timeout=0.05):
            client = key.data
            client.readable()
            if client.closed_at is not None:
                selector.unregister(client.sock)
    stop.set()
    others.join(timeout=15)
    for client in slow:
        client.sock.close()

    assert all(c.closed_at is not None for c in slow), "some slow connections were never cut"
    for client in slow:
        bound = BODY_TIMEOUT if client.body else HEADER_TIMEOUT
        status, headers, body = parse(client.raw)
        assert_envelope(status, headers, body, 408, "request_timeout")
        assert headers.get("connection", "").lower() == "close"
        held = client.answered_at - client.started
        assert bound - 0.1 <= held <= bound + 1.5, (client.body, held)
    statuses = [s for s, _ in served]
    latencies = sorted(t for _, t in served)
    assert len(served) >= 20 and set(statuses) == {200}, statuses
    assert latencies[len(latencies) // 2] < 0.25 and latencies[-1] < 1.5, latencies
    held = sorted(round(c.answered_at - c.started, 2) for c in slow)
    print(f"\nslow clients: 200 cut after {held[0]}..{held[-1]} s; others: {len(served)} requests, "
          f"median {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")


def test_idle_keepalive_is_bounded_by_keepalive_not_the_header_timeout(front):
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        ask = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(ask)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT + 0.5)  # idle longer than a head may take: still open
        sock.sendall(ask)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        idle_from = time.monotonic()
        assert sock.recv(65536) == b""  # closed quietly once KEEPALIVE has passed
        assert KEEPALIVE - 0.2 <= time.monotonic() - idle_from <= KEEPALIVE + 1.5
