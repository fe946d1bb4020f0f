"""The response writer sends a small answer's head with its body (src/wire.py), and leaves the rest as gunicorn
writes it: streams chunked, large bodies after the head, no-body answers with their head alone."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from src.wire import COALESCE_MAX_BYTES, CoalescedResponse


class _Request(SimpleNamespace):
    def should_close(self) -> bool:
        return False


class _Socket:
    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))


def _response(method: str = "GET") -> tuple[CoalescedResponse, _Socket]:
    sock = _Socket()
    req = _Request(version=(1, 1), method=method, headers=[], path="/")
    return CoalescedResponse(req, sock, Config()), sock


def test_a_small_answer_of_known_length_is_one_send() -> None:
    resp, sock = _response()
    resp.start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")])
    resp.write(b'{"ok":true}')
    resp.close()
    assert len(sock.sends) == 1
    head, _, body = sock.sends[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 11" in head
    assert b"Connection: keep-alive" in head
    assert body == b'{"ok":true}'


def test_the_bytes_are_what_gunicorn_alone_sends() -> None:
    from gunicorn.http.wsgi import Response

    def wire(cls: type) -> bytes:
        sock = _Socket()
        resp = cls(_Request(version=(1, 1), method="POST", headers=[], path="/"), sock, Config())
        resp.start_response("429 Too Many Requests", [("Content-Length", "4"), ("Retry-After", "2")])
        resp.write(b"abcd")
        resp.close()
        return b"".join(sock.sends)

    ours, theirs = wire(CoalescedResponse), wire(Response)
    strip = lambda raw: b"\r\n".join(l for l in raw.split(b"\r\n") if not l.startswith(b"Date:"))  # noqa: E731
    assert strip(ours) == strip(theirs)


def test_a_stream_keeps_its_head_first_and_chunks() -> None:
    resp, sock = _response()
    resp.start_response("200 OK", [("Content-Type", "text/event-stream")])
    assert resp.chunked
    resp.write(b"data: 1\n\n")
    assert len(sock.sends) == 2 and sock.sends[0].endswith(b"\r\n\r\n")  # the head went out before the first event
    assert b"Transfer-Encoding: chunked" in sock.sends[0]
    assert sock.sends[1] == b"9\r\ndata: 1\n\n\r\n"
    resp.close()
    assert sock.sends[-1] == b"0\r\n\r\n"


def test_a_large_body_follows_its_head() -> None:
    body = b"x" * (COALESCE_MAX_BYTES + 1)
    resp, sock = _response()
    resp.start_response("200 OK", [("Content-Length", str(len(body)))])
    resp.write(body)
    assert len(sock.sends) == 2 and sock.sends[1] == body


@pytest.mark.parametrize("method,status", [("HEAD", "200 OK"), ("GET", "204 No Content")])
def test_an_answer_without_a_body_sends_its_head(method: str, status: str) -> None:
    resp, sock = _response(method)
    resp.start_response(status, [("Content-Length", "3")] if method == "HEAD" else [])
    resp.write(b"abc")  # dropped: the method or status has no body
    resp.close()
    assert len(sock.sends) == 1 and sock.sends[0].endswith(b"\r\n\r\n")


def test_bytes_past_content_length_are_not_sent_but_the_head_is() -> None:
    resp, sock = _response()
    resp.start_response("200 OK", [("Content-Length", "0")])
    resp.write(b"extra")
    resp.close()
    assert len(sock.sends) == 1 and sock.sends[0].endswith(b"\r\n\r\n")


def test_over_a_real_socket_the_client_reads_one_whole_answer() -> None:
    ours, theirs = socket.socketpair()
    try:
        resp = CoalescedResponse(_Request(version=(1, 1), method="GET", headers=[], path="/"), ours, Config())
        resp.start_response("200 OK", [("Content-Length", "2")])
        resp.write(b"hi")
        resp.close()
        theirs.settimeout(2)
        raw = theirs.recv(65536)
        assert raw.startswith(b"HTTP/1.1 200 OK") and raw.endswith(b"\r\n\r\nhi")
    finally:
        ours.close()
        theirs.close()
