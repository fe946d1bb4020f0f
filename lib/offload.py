"""CPU-heavy work a client can trigger, kept from stalling the other requests of its worker.

A gevent worker runs all its requests on one OS thread: a request body of tens of thousands of messages
(decoding it, validating it, counting its tokens, building the upstream body) would hold that thread for
as long as the work takes, and every other request of the worker would wait. ``cpu(fn, ..., heavy=True)``
runs ``fn`` on one of a few native threads of the worker (a gevent thread pool of its own) instead: the
waiting greenlet yields, the others go on, and the interpreter hands the GIL back and forth every
``sys.getswitchinterval()`` (5 ms) — tiktoken's encoder releases it altogether. Small work runs inline: a thread hop costs ~50 µs.

Only pure functions go there (no Redis, no sockets, no Flask globals): they run outside the greenlet that
owns the request. Exceptions propagate as raised.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: A request body at least this large is processed off the loop.
HEAVY_BYTES = 128 * 1024
#: ... as is a request with more messages than this, whatever its size.
HEAVY_MESSAGES = 1000


#: Native threads per worker process for this work: enough for two huge bodies at once; more would only
#: share the GIL further with the loop. A pool of its own, so gevent's hub pool stays free for what else
#: uses it (its DNS resolver, the semantic cache's embedding calls).
THREADS = 2

_pools: dict[int, Any] = {}  # pid -> pool: one per process, made after the fork


def _pool() -> Any:
    """This process's pool when it is a monkey-patched gevent worker, else ``None``."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return None
    if not monkey.is_module_patched("threading"):
        return None
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        from gevent.threadpool import ThreadPool

        pool = _pools[pid] = ThreadPool(THREADS)
    return pool


def cpu(fn: Callable[..., T], *args: Any, heavy: bool, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, on a native thread when ``heavy`` and in a gevent worker (module doc)."""
    pool = _pool() if heavy else None
    if pool is None:
        return fn(*args, **kwargs)

    def run() -> tuple[bool, Any]:
        # The exception is carried back and raised in the greenlet: raised in the thread, gevent would print
        # its traceback and the function's repr (a request, prompt included) to stderr.
        try:
            return True, fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller
            return False, exc

    ok, value = pool.apply(run)
    if not ok:
        raise value
    return value
