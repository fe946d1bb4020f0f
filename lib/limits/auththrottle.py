"""Throttle failing authentication attempts, never valid keys: once one client address has failed
``max_failures`` times within ``window_s`` seconds, its *failing* attempts get 429 (with Retry-After) instead
of 401 until the oldest failure leaves the window. A valid gateway key or the master key from the same
address — say, every app behind one office NAT — is served as usual: a key that checks out is never refused
because of other keys' failures. Valid keys pay nothing for the throttle; only failures touch Redis.

Built on the ``limits`` library's moving-window strategy (an exact log, one Redis list per IP, trimmed to
``max_failures`` entries) and its Redis storage, sharing the app's Redis client instead of opening a
second pool: ``limits.storage.RedisStorage`` accepts a ``connection_pool`` (used for a ``redis.Redis``),
but ``RedisClusterStorage`` only builds its own client from a URI, so for a ``RedisCluster`` a small
subclass hands the existing client in (the same few attributes ``RedisClusterStorage.__init__`` sets).
Each failure touches one key, so it is cluster-safe wherever the key hashes.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.storage.base import Storage
from limits.strategies import MovingWindowRateLimiter

from lib.errors import RateLimited
from lib.store import store_errors

_UNREACHABLE = "The rate-limit store is unreachable; please retry shortly."


class _SharedClientStorage(RedisStorage):
    """``RedisStorage`` over an existing client (``redis.Redis`` or ``RedisCluster``).

    No ``STORAGE_SCHEME`` on purpose: ``limits`` registers URI schemes per class, and this one must not
    replace ``redis://``.
    """

    def __init__(self, client: Any, *, key_prefix: str) -> None:
        Storage.__init__(self, None, wrap_exceptions=False)
        self.key_prefix = key_prefix
        self.target_server = "redis"
        self.dependency = redis
        self.storage = client
        self.initialize_storage("")


class AuthThrottle:
    """Per-IP failed-authentication limit shared by every instance through Redis.

    ``redis`` is the app's ``redis.Redis`` or ``RedisCluster``; keys are
    ``<prefix>authfail:ip/<client_ip>/<max_failures>/<window_s>/second`` (a Redis list of failure times).
    """

    def __init__(self, redis_client: Any, *, prefix: str, max_failures: int = 10, window_s: int = 60) -> None:
        if max_failures < 1 or window_s < 1:
            raise ValueError("max_failures and window_s must be >= 1")
        key_prefix = f"{prefix}authfail"
        if isinstance(redis_client, redis.Redis):
            storage: RedisStorage = RedisStorage("redis://", connection_pool=redis_client.connection_pool,
                                                 key_prefix=key_prefix)
        else:
            storage = _SharedClientStorage(redis_client, key_prefix=key_prefix)
        self._limiter = MovingWindowRateLimiter(storage)
        self._item = RateLimitItemPerSecond(max_failures, window_s, namespace="ip")
        self.max_failures = max_failures
        self.window_s = window_s

    def failed(self, client_ip: str) -> None:
        """Count one failed authentication from ``client_ip``; raises ``RateLimited`` (429, Retry-After until the
        oldest failure leaves the window) when the address is past ``max_failures``, else returns (the caller
        answers 401). Raises ``StoreUnavailable`` when Redis fails."""
        with store_errors("auth throttle", _UNREACHABLE):
            allowed = self._limiter.hit(self._item, client_ip)
            if allowed:
                return
            reset_at, _ = self._limiter.get_window_stats(self._item, client_ip)
        wait = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(
            f"Too many failed authentication attempts from this address: {self.max_failures} within "
            f"{self.window_s} s. Try again in {wait} s with a valid API key.", retry_after=wait)

    def clear(self, client_ip: str) -> None:
        """Forget ``client_ip``'s failures (an administrator unblocking an address)."""
        with store_errors("auth throttle clear", _UNREACHABLE):
            self._limiter.clear(self._item, client_ip)
