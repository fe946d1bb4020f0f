"""One local model per machine, shared by every gunicorn worker, generating off the gevent loop.

The gunicorn master starts one server per model directory the settings use (``src/serve.py``: ``python -m
lib.providers.local_server --socket PATH --path DIR``), as it does for the embedding server. Workers send a
request over the Unix socket and read text back as it is generated; the model's weights live once per
machine, the CPU work runs in this process, and a worker's event loop only waits on a socket (which gevent
makes cooperative), so a slow generation never stalls its other requests.

``Scheduler``: a bounded queue in front of one generation thread. A request that finds the queue full is
answered at once with 429 ``busy`` (retry after a second; the gateway's fallbacks and cool-downs take it
elsewhere); a queued request whose client has gone away is skipped; a client that goes away mid-generation
stops it.

Protocol (one request per connection): 4-byte big-endian length + UTF-8 JSON, both ways. The client sends
``{"messages": [...], "max_tokens", "temperature", "top_p", "stop", "seed"}``; the server answers frames
``{"text": "..."}`` … then ``{"done": true, "finish", "prompt_tokens", "completion_tokens"}``, or one
``{"error": code, "status": N, "message": ...}``.

Outside gunicorn (tests, ``flask run``) ``in_process(path)`` gives the same interface over a Scheduler in a
thread of this process, one per model directory and process.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import queue
import socket
import socketserver
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from lib import errors
from lib.providers.local_model import GenerationError, LocalModel

log = logging.getLogger("aiproxy.local_server")

_LEN = struct.Struct(">I")
DEFAULT_QUEUE = 8
BUSY_RETRY_S = 1.0


def send_frame(sock: socket.socket, data: dict[str, Any]) -> None:
    payload = json.dumps(data, ensure_ascii=False).encode("utf-8")
    sock.sendall(_LEN.pack(len(payload)) + payload)


def recv_frame(sock: socket.socket, limit: int = 8 << 20) -> dict[str, Any]:
    head = _recv_exact(sock, _LEN.size)
    (size,) = _LEN.unpack(head)
    if size > limit:
        raise ValueError("frame too large")
    data = json.loads(_recv_exact(sock, size))
    if not isinstance(data, dict):
        raise ValueError("frame is not an object")
    return data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf.extend(chunk)
    return bytes(buf)


@dataclass
class Job:
    """One generation: the request, where its events go (``emit`` returns False once nobody listens)."""

    request: dict[str, Any]
    emit: Callable[[dict[str, Any]], bool]
    alive: Callable[[], bool] = lambda: True
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class Scheduler:
    """A bounded queue in front of one thread that loads ``model`` and then runs jobs in turn."""

    def __init__(self, model: LocalModel, queue_size: int = DEFAULT_QUEUE) -> None:
        self.model = model
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=max(1, queue_size))
        self.failure: str | None = None
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"local-model-{os.path.basename(model.path)}",
                                        daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (and nothing queued) when the queue is full."""
        if self.failure is not None:
            job.emit({"error": "unavailable", "status": 503, "message": self.failure})
            job.done.set()
            return True
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            return False

    def _run(self) -> None:
        try:
            self.model.load()
        except Exception as exc:  # noqa: BLE001 - every later request is told why
            self.failure = f"the local model failed to load: {type(exc).__name__}"
            log.error("local model %s failed to load: %s", self.model.path, exc)
        finally:
            self.ready.set()
        while True:
            job = self.jobs.get()
            try:
                self._serve(job)
            finally:
                job.done.set()

    def _serve(self, job: Job) -> None:
        if self.failure is not None:
            job.emit({"error": "unavailable", "status": 503, "message": self.failure})
            return
        if job.cancelled.is_set() or not job.alive():
            return  # the client gave up while the job waited

        def text(piece: str) -> None:
            if not job.emit({"text": piece}):
                job.cancelled.set()

        try:
            final = self.model.generate(job.request, text, job.cancelled)
        except GenerationError as exc:
            job.emit({"error": exc.code, "status": exc.status, "message": exc.message})
            return
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the model
            log.exception("local generation failed")
            job.emit({"error": "failed", "status": 500, "message": f"generation failed: {type(exc).__name__}"})
            return
        job.emit({"done": True, **final})


def error_of(frame: dict[str, Any], provider: str) -> errors.UpstreamError:
    """The gateway error for a server's ``{"error": ...}`` frame."""
    status, message = int(frame.get("status") or 500), str(frame.get("message") or frame.get("error"))
    if status == 429:
        return errors.UpstreamRateLimited(f"Provider '{provider}': the local model is busy (its queue is full)",
                                          provider=provider, retry_after=BUSY_RETRY_S)
    if status == 400:
        return errors.UpstreamBadRequest(message, provider=provider, code=str(frame.get("error") or "invalid_request"))
    if status == 503:
        return errors.UpstreamUnavailable(f"Provider '{provider}': {message}", provider=provider)
    return errors.UpstreamError(f"Provider '{provider}': {message}", provider=provider)


class RemoteModel:
    """Client of a model server; ``run`` yields its frames as they arrive."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def run(self, request: dict[str, Any], *, timeout: float, provider: str) -> Iterator[dict[str, Any]]:
        """Frames of one generation (the last has ``done``). Raises ``UpstreamError`` subclasses, also while
        iterating; closing the iterator hangs up, which stops the generation."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(0.05, timeout))
        try:
            sock.connect(self.socket_path)
            send_frame(sock, request)
        except OSError as exc:
            sock.close()
            raise errors.UpstreamUnavailable(f"Provider '{provider}': the local model server is not reachable",
                                             provider=provider) from exc
        return self._frames(sock, provider)

    @staticmethod
    def _frames(sock: socket.socket, provider: str) -> Iterator[dict[str, Any]]:
        try:
            while True:
                try:
                    frame = recv_frame(sock)
                except socket.timeout as exc:
                    raise errors.UpstreamTimeout(f"Provider '{provider}' did not answer in time", provider=provider) from exc
                except (OSError, ValueError) as exc:
                    raise errors.UpstreamError(f"Provider '{provider}' broke off the answer", provider=provider) from exc
                if "error" in frame:
                    raise error_of(frame, provider)
                yield frame
                if frame.get("done"):
                    return
        finally:
            sock.close()


class InProcessModel:
    """The same ``run`` over a ``Scheduler`` in this process (outside gunicorn)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def run(self, request: dict[str, Any], *, timeout: float, provider: str) -> Iterator[dict[str, Any]]:
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        gone = threading.Event()

        def emit(frame: dict[str, Any]) -> bool:
            events.put(frame)
            return not gone.is_set()

        job = Job(request, emit, alive=lambda: not gone.is_set())
        if not self.scheduler.submit(job):
            raise error_of({"status": 429}, provider)
        return self._frames(events, job, gone, timeout, provider)

    @staticmethod
    def _frames(events: "queue.Queue[dict[str, Any]]", job: Job, gone: threading.Event, timeout: float,
                provider: str) -> Iterator[dict[str, Any]]:
        try:
            while True:
                try:
                    frame = events.get(timeout=max(0.05, timeout))
                except queue.Empty:
                    raise errors.UpstreamTimeout(f"Provider '{provider}' did not answer in time", provider=provider) from None
                if "error" in frame:
                    raise error_of(frame, provider)
                yield frame
                if frame.get("done"):
                    return
        finally:
            gone.set()
            job.cancelled.set()


@functools.lru_cache(maxsize=None)
def in_process(path: str, queue_size: int = DEFAULT_QUEUE, max_tokens: int = 256) -> InProcessModel:
    """The in-process runner of the model at ``path``, made once per process (the model loads in the
    background, on its own thread)."""
    return InProcessModel(Scheduler(LocalModel(path, max_tokens=max_tokens), queue_size))


# -- the server process ------------------------------------------------------------------------------

class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: ModelServer = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        try:
            request = recv_frame(sock)
        except (OSError, ValueError):
            return
        lock = threading.Lock()

        def emit(frame: dict[str, Any]) -> bool:
            with lock:
                try:
                    send_frame(sock, frame)
                    return True
                except OSError:
                    return False

        job = Job(request, emit, alive=lambda: _connected(sock))
        if not server.scheduler.submit(job):
            emit({"error": "busy", "status": 429, "message": "the local model's queue is full"})
            return
        job.done.wait()


def _connected(sock: socket.socket) -> bool:
    """False once the peer has hung up (a peek that reads end-of-file)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class ModelServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, socket_path: str, scheduler: Scheduler) -> None:
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        super().__init__(socket_path, _Handler)
        os.chmod(socket_path, 0o600)
        self.scheduler = scheduler


def _exit_with_parent(server: ModelServer, parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        log.info("parent %s is gone; the local model server stops", parent_pid)
        server.shutdown()

    threading.Thread(target=watch, name="local-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="AI Proxy local model server (one per model and machine)")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--path", required=True, help="directory of a Hugging Face causal LM")
    parser.add_argument("--queue", type=int, default=DEFAULT_QUEUE, help="requests waiting at most")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length when a request sets none")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model = LocalModel(args.path, threads=max(1, args.threads), max_tokens=max(1, args.max_tokens))
    server = ModelServer(args.socket, Scheduler(model, args.queue))
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
