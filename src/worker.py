"""The gunicorn worker AI Proxy runs (``worker_class`` in ``src/gunicorn_conf.py``): gunicorn's gevent worker
with three changes at the edge of each client connection.

1. **Envelope errors.** What gunicorn answers itself — a request it cannot parse (control characters in a
   header, bad chunked framing), a request line or header over its limits (414, 431), a request head that
   arrives too slowly (408) — leaves as the OpenAI error envelope in JSON, never gunicorn's HTML page.
2. **Bounded reads** (``TimedConnection``). Every read from a client is bounded by where the connection is:

   ============================  =============================================  ==========================
   waiting for a request         a new connection: ``REQUEST_HEADER_TIMEOUT``;    then closed quietly
                                 between requests: ``KEEPALIVE``
   reading the head              ``REQUEST_HEADER_TIMEOUT`` from its first byte   408 from here
   reading the body              ``REQUEST_BODY_TIMEOUT`` from the end of head    408 from the app
   ============================  =============================================  ==========================

   gunicorn alone bounds only the whole wait-plus-head by ``KEEPALIVE`` (610 s behind the ALB), and a body
   not at all, so a slow client held a slot for as long as it liked.
3. **Graceful stop.** On SIGTERM gunicorn stops accepting; here idle keep-alive connections are closed at
   once (gunicorn waited up to ``KEEPALIVE`` for each), requests and streams in flight may finish, and
   shortly before ``GRACEFUL_TIMEOUT`` whatever still runs is *cut*: a request waiting on its provider gets
   ``ServiceUnavailable`` (503 ``server_shutting_down``) raised where it waits, which the gateway handles like
   any upstream failure — an error event ends the stream, the partial usage is counted, the budget hold is
   settled and the request log written — while the master's SIGKILL (at ``GRACEFUL_TIMEOUT``) is still
   ahead. A response being written to a client too slow to take it is closed instead (recorded as 499).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import sys
import time
import uuid
from http import HTTPStatus
from typing import Any, Iterator

import gevent
from gevent import getcurrent
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from lib import errors
from src import wire

#: Seconds before GRACEFUL_TIMEOUT at which what still runs is cut (at most half of it): time for the cut
#: requests to record themselves (a few Redis round trips) and the worker to exit before the master's SIGKILL.
CUT_MARGIN_SECONDS = 3.0
#: After SIGTERM, a connection that has not sent a byte of its first request gets this long to start.
NEW_CONNECTION_GRACE_SECONDS = 1.0


class RequestTimeout(errors.InvalidRequest):
    """The client sent its request head or body too slowly (408). Not an ``OSError`` on purpose: werkzeug
    turns ``OSError`` from the input stream into a 400 "client disconnected"; this reaches the app's
    ``GatewayError`` handler as it is, and gunicorn's ``handle_error`` below."""

    status = 408
    code = "request_timeout"


def shutting_down() -> errors.ServiceUnavailable:
    """The error a request still running at the end of a graceful stop is cut with."""
    return errors.ServiceUnavailable("The server is restarting; retry the request.", code="server_shutting_down",
                                     retry_after=1)


class TimedConnection:
    """A client socket whose every ``recv`` is bounded by the phase the connection is in (module doc).

    gunicorn reads requests only through ``recv`` (``SocketUnreader``); everything else (``sendall``,
    ``close``, ``fileno`` ...) is the real socket's, through ``__getattr__``.
    """

    def __init__(self, sock: Any, worker: "AIProxyWorker") -> None:
        self.raw = sock
        self.worker = worker
        self.greenlet = getcurrent()
        self.waiting = True  # for the first byte of a request
        self.waiting_since = time.monotonic()
        self.served = 0
        self.in_request = False  # head read, response not yet finished
        self.in_app = False  # the app (not gunicorn) is running for this request: see AppWatch
        self.request: Any = None  # gunicorn's request being served
        self.cut = False
        self._deadline = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    # -- reads -------------------------------------------------------------------------------------------
    def recv(self, size: int) -> bytes:
        if self.waiting:
            return self._first_byte(size)
        return self._bounded_recv(size, self._deadline - time.monotonic())

    def _first_byte(self, size: int) -> bytes:
        """Wait for a request to start; ``b""`` (gunicorn then closes quietly) when the wait is over."""
        limits = self.worker.limits
        wait = limits.keepalive if self.served else limits.header
        if not self.worker.alive:  # stopping: take only what has already arrived
            wait = 0.0 if self.served else max(0.0, self.waiting_since + NEW_CONNECTION_GRACE_SECONDS - time.monotonic())
        try:
            self.raw.settimeout(wait)
            data = self.raw.recv(size)
        except (socket.timeout, BlockingIOError):
            return b""
        finally:
            self.raw.settimeout(None)
        if data:
            self.waiting = False
            self._deadline = time.monotonic() + limits.header
        return data

    def _bounded_recv(self, size: int, remaining: float) -> bytes:
        if remaining <= 0:
            raise self._timeout()
        try:
            self.raw.settimeout(remaining)
            return self.raw.recv(size)
        except socket.timeout:
            raise self._timeout() from None
        finally:
            self.raw.settimeout(None)

    def _timeout(self) -> RequestTimeout:
        if self.in_request:
            self.close_after_answer()  # the body's end is unknown: the 408 says "Connection: close"
            return RequestTimeout(f"The request body was not received within {self.worker.limits.body:g} seconds.")
        return RequestTimeout(f"The request headers were not received within {self.worker.limits.header:g} seconds.")

    def close_after_answer(self) -> None:
        if self.request is not None:
            self.request.force_close()

    # -- phases (the worker calls these) ---------------------------------------------------------------------
    def start_body(self, request: Any) -> None:
        self.waiting, self.in_request, self.request = False, True, request
        self._deadline = time.monotonic() + self.worker.limits.body

    def wait_for_next(self) -> None:
        self.in_request, self.request = False, None
        self.waiting, self.waiting_since = True, time.monotonic()
        self.served += 1

    # -- from other greenlets (the graceful stop) -------------------------------------------------------------
    # Through a duplicate descriptor, never the socket the connection's greenlet waits on: gevent's own
    # ``shutdown`` would cancel that wait with EBADF (gunicorn logs a traceback), and changing its timeout
    # would change the bound of the wait in progress. The kernel's EOF is the ordinary end of a connection.
    def hang_up(self) -> None:
        """Shut the connection down: a read blocked on it returns EOF at once, a write fails (broken pipe)."""
        try:
            with socket.socket(fileno=os.dup(self.raw.fileno())) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def hang_up_if_idle(self) -> None:
        """Close a connection that waits for a request and has none arriving (a kept-alive one at once, a new
        one after ``NEW_CONNECTION_GRACE_SECONDS``); one whose request is arriving is served, then closed."""
        if not self.waiting or (not self.served and time.monotonic() - self.waiting_since < NEW_CONNECTION_GRACE_SECONDS):
            return
        try:
            with socket.socket(fileno=os.dup(self.raw.fileno())) as dup:
                dup.settimeout(0.0)
                try:
                    if dup.recv(1, socket.MSG_PEEK):
                        return
                except BlockingIOError:
                    pass  # nothing pending
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class AppWatch:
    """WSGI middleware marking when a connection's greenlet runs the app (the view, or the response iterator
    producing the next chunk) rather than gunicorn writing to the client: only there is a cut at shutdown
    delivered as an exception, which the app turns into a recorded, settled 503."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        conn = environ.get("gunicorn.socket")
        if not isinstance(conn, TimedConnection):
            return self.app(environ, start_response)
        environ["wsgi.input"] = _Input(environ["wsgi.input"], conn)
        conn.in_app = True
        try:
            result = self.app(environ, start_response)
        finally:
            conn.in_app = False
        if isinstance(result, environ.get("wsgi.file_wrapper", ())):
            return result  # gunicorn sends files with sendfile; nothing to watch
        return _Watched(result, conn)


class _Input:
    """``wsgi.input`` whose framing errors (a bad chunk size, a missing chunk terminator) are the client's
    400 ``invalid_request``, not an unexpected exception (500) in the app."""

    def __init__(self, body: Any, conn: TimedConnection) -> None:
        self._body = body
        self._conn = conn

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._body, name)(*args)
        except http_errors.ParseException:
            self._conn.close_after_answer()
            raise errors.InvalidRequest("The request body's chunked framing is malformed.",
                                        code="invalid_request") from None

    def read(self, size: int | None = None) -> bytes:
        return self._call("read", size)

    def readline(self, size: int | None = None) -> bytes:
        return self._call("readline", size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return self._call("readlines", hint)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class _Watched:
    def __init__(self, result: Any, conn: TimedConnection) -> None:
        self._result = result
        self._it: Iterator[Any] = iter(result)
        self._conn = conn

    def __iter__(self) -> "_Watched":
        return self

    def __next__(self) -> Any:
        self._conn.in_app = True
        try:
            return next(self._it)
        finally:
            self._conn.in_app = False

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


class _Limits:
    def __init__(self, settings: Any, cfg: Any) -> None:
        self.header = float(getattr(settings, "request_header_timeout", 10.0))
        self.body = float(getattr(settings, "request_body_timeout", 60.0))
        self.keepalive = float(cfg.keepalive)


class AIProxyWorker(GeventWorker):
    """gunicorn's gevent worker with envelope errors, bounded client reads and a graceful stop that records
    what it cuts (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = _Limits(getattr(self.app, "settings", None), self.cfg)
        self.max_drain = int(getattr(getattr(self.app, "settings", None), "max_request_bytes", 1_048_576))
        self.connections: set[TimedConnection] = set()
        self._stopping = False

    def load_wsgi(self) -> None:
        wire.install()  # the head of a small answer leaves with its body (src/wire.py)
        super().load_wsgi()
        self.wsgi = AppWatch(self.wsgi)

    # -- connections and requests ------------------------------------------------------------------------
    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        conn = TimedConnection(client, self)
        self.connections.add(conn)
        try:
            super().handle(listener, conn, addr)
        finally:
            self.connections.discard(conn)

    def timeout_ctx(self) -> Any:
        # gunicorn wraps each wait-and-head read in one Timeout(KEEPALIVE); TimedConnection bounds each
        # phase on its own, so the overall one would only cut a head mid-way with no answer.
        return contextlib.nullcontext()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        if not isinstance(sock, TimedConnection):
            return super().handle_request(listener_name, req, sock, addr)
        sock.start_body(req)
        served = super().handle_request(listener_name, req, sock, addr)  # raises StopIteration to close
        self._finish_body(req, sock)
        return served

    def _finish_body(self, req: Any, conn: TimedConnection) -> None:
        """Read what the app left of the request body before the next request, still within the body's
        deadline and at most MAX_REQUEST_BYTES (gunicorn's own drain has neither bound); past either, close."""
        body = req.body
        left = self.max_drain
        if body is not None and not getattr(body, "failed", False):
            try:
                while left >= 0:
                    data = body.read(min(65536, left + 1))
                    if not data:
                        conn.wait_for_next()
                        return
                    left -= len(data)
            except (RequestTimeout, http_errors.ParseException, OSError):
                pass
        raise StopIteration()

    # -- errors gunicorn answers itself --------------------------------------------------------------------
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # Replaces gunicorn's, whose writer (util.write_error) answers an HTML page. The statuses are
        # gunicorn's; the messages are ours and never echo the request (its line may carry ?api_key=).
        err = envelope_error(exc)
        request_id = str(uuid.uuid4())
        ip = addr[0] if isinstance(addr, tuple) and addr else ""
        if err.status == 500:
            self.log.error("error handling request from %s (x-request-id %s)", ip, request_id,
                           exc_info=(type(exc), exc, exc.__traceback__))
        else:  # the client's fault; a timeout is routine (an attack is many of them)
            log = self.log.info if isinstance(exc, RequestTimeout) else self.log.warning
            log("refused a request from %s: %s %s (%s, x-request-id %s)", ip, err.status, err.code,
                type(exc).__name__, request_id)
        raw = getattr(client, "raw", client)
        try:
            util.write_nonblock(raw, error_bytes(err, request_id))
        except Exception:  # noqa: BLE001 - the client may be gone already
            self.log.debug("failed to send the error answer", exc_info=True)
        # Linger (RFC 9112 9.6) so a client still sending reads the answer rather than a connection reset.
        util.close_graceful(raw)

    # -- graceful stop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        super().run()  # returns once gunicorn has stopped accepting and every connection has ended
        if not self.alive:
            self._exit_stopped()

    def _exit_stopped(self) -> None:
        """Exit now that every request is recorded. Skips the interpreter's teardown, which took 2-3 s per
        worker (freeing tiktoken's tables, the GC; py-spy) and would push a stop toward the master's SIGKILL."""
        self.log.info("Worker exiting (pid: %s)", self.pid)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)  # alive = False: gunicorn's loop stops accepting and waits
        if not self._stopping:
            self._stopping = True
            gevent.spawn(self._stop_gracefully)  # out of the signal handler, as gunicorn's handle_quit does

    def _stop_gracefully(self) -> None:
        grace = float(self.cfg.graceful_timeout)
        cut_at = time.monotonic() + max(0.0, grace - min(CUT_MARGIN_SECONDS, grace / 2))
        while time.monotonic() < cut_at and self.connections:  # idle ones leave at once, the rest as they end
            for conn in list(self.connections):
                conn.hang_up_if_idle()
            gevent.sleep(0.05)
        hub = gevent.get_hub()
        while self.connections:
            for conn in list(self.connections):
                # In a hub callback, where every other greenlet is suspended: what _cut sees of a greenlet's
                # stack is where the exception would land.
                hub.loop.run_callback(self._cut, conn)
            gevent.sleep(0.05)
        # gunicorn's loop would notice within a second; once it has closed the listeners (so no connection
        # is left in their backlog) there is nothing left to wait for.
        while any(sock.fileno() != -1 for sock in self.sockets):
            gevent.sleep(0.05)
        if not self.connections:
            self._exit_stopped()

    def _cut(self, conn: TimedConnection) -> None:
        if conn.cut:
            return
        if not conn.in_request or not conn.in_app:
            # Waiting, reading a head, or gunicorn writing to a client too slow to take the response: its
            # socket is closed, the write fails, gunicorn closes the app's iterator (the app records 499).
            conn.cut = True
            conn.hang_up()
            return
        if not conn.greenlet.dead and _waiting_on_provider(conn.greenlet):
            conn.cut = True
            conn.greenlet.throw(shutting_down())
        # else: the app is in its own work (Redis, accounting); look again in a moment


#: Where a cut may land: a provider call or a request-body read. Never inside a Redis call (a hold or a log
#: record half-written) or the gateway's own bookkeeping (limits, records, the cache).
_CUT_AT = ("lib.providers.", "gunicorn.http.body")
_NEVER_CUT_IN = ("redis.", "lib.store", "lib.limits.", "lib.records.", "lib.cache.")


def _waiting_on_provider(greenlet: Any) -> bool:
    frame = getattr(greenlet, "gr_frame", None)
    found = False
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_NEVER_CUT_IN):
            return False
        found = found or module.startswith(_CUT_AT)
        frame = frame.f_back
    return found


# -- the envelope ---------------------------------------------------------------------------------------------
def envelope_error(exc: BaseException) -> errors.GatewayError:
    """The gateway error for an exception gunicorn would answer itself, with gunicorn's status."""
    if isinstance(exc, errors.GatewayError):
        return exc
    if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName,
                        http_errors.ConfigurationProblem)) or not isinstance(exc, (http_errors.ParseException, ssl.SSLError)):
        return errors.GatewayError("The server had an error while processing your request.")
    for cls, status, code, message in _CLIENT_ERRORS:
        if isinstance(exc, cls):
            return errors.InvalidRequest(message, code=code, status=status)
    return errors.InvalidRequest("The request is not valid HTTP/1.1: a malformed request line, header or chunked body.",
                                 code="invalid_request")


_CLIENT_ERRORS = (
    (http_errors.LimitRequestLine, 414, "uri_too_long",
     "The request line (method, path and query string) is too long."),
    (http_errors.LimitRequestHeaders, 431, "headers_too_large", "The request headers are too large or too many."),
    (http_errors.UnsupportedTransferCoding, 501, "unsupported_transfer_encoding",
     "Unsupported Transfer-Encoding; send the body with Content-Length or chunked."),
    (http_errors.ExpectationFailed, 417, "expectation_failed", "Unsupported Expect header."),
    (http_errors.ForbiddenProxyRequest, 403, "forbidden", "PROXY protocol is not accepted from this address."),
)


def error_bytes(err: errors.GatewayError, request_id: str) -> bytes:
    """A complete HTTP/1.1 answer carrying ``err``'s envelope; the connection closes after it."""
    body = json.dumps(err.to_dict(), separators=(",", ":")).encode()
    try:
        reason = HTTPStatus(err.status).phrase
    except ValueError:
        reason = "Error"
    head = [f"HTTP/1.1 {err.status} {reason}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", f"x-request-id: {request_id}"]
    head += [f"{name}: {value}" for name, value in err.response_headers().items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
