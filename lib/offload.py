"""CPU-heavy work a client can trigger, kept from stalling the other requests of its worker.

A gevent worker runs all its requests on one OS thread: a request body of tens of thousands of messages
(decoding it, validating it, counting its tokens, building the upstream body) would hold that thread for
as long as the work takes, and every other request of the worker would wait. ``cpu(fn, ..., heavy=True)``
runs ``fn`` on a native thread of the worker's gevent thread pool instead: the waiting greenlet yields, the
others go on, and the interpreter hands the GIL back and forth every ``sys.getswitchinterval()`` (5 ms) —
tiktoken's encoder releases it altogether. Small work runs inline: a thread hop costs ~50 µs.

Only pure functions go there (no Redis, no sockets, no Flask globals): they run outside the greenlet that
owns the request. Exceptions propagate as raised.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: A request body at least this large is processed off the loop.
HEAVY_BYTES = 128 * 1024
#: ... as is a request with more messages than this, whatever its size.
HEAVY_MESSAGES = 1000


def _pool() -> Any:
    """The gevent hub's thread pool when this process is a monkey-patched gevent worker, else ``None``."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return None
    if not monkey.is_module_patched("threading"):
        return None
    from gevent import get_hub

    return get_hub().threadpool


def cpu(fn: Callable[..., T], *args: Any, heavy: bool, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, on a native thread when ``heavy`` and in a gevent worker (module doc)."""
    pool = _pool() if heavy else None
    if pool is None:
        return fn(*args, **kwargs)
    return pool.apply(fn, args, kwargs)
