"""Run blocking, CPU-heavy calls (embedding) off the gevent loop.

Under gunicorn's gevent workers the socket module is monkey-patched; a call made through ``offload`` then
runs in gevent's native thread pool, so other greenlets keep serving while it computes. Outside gevent
it is a plain call.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


def offload(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``fn`` so that calls run in gevent's thread pool when gevent has patched this process."""

    def run(*args: Any) -> T:
        try:
            from gevent import get_hub, monkey
        except ImportError:
            return fn(*args)
        if not monkey.is_module_patched("socket"):
            return fn(*args)
        return get_hub().threadpool.apply(fn, args)

    return run
