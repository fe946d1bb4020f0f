"""Slow down key guessing: after ``max_failures`` failed authentications from one client IP within
``window_s`` seconds, that IP gets 429 until the oldest failure leaves the window.

Built on the ``limits`` library's moving-window strategy (an exact log, one Redis list per IP, trimmed to
``max_failures`` entries) and its Redis storage, sharing the app's Redis client instead of opening a
second pool: ``limits.storage.RedisStorage`` accepts a ``connection_pool`` (used for a ``redis.Redis``),
but ``RedisClusterStorage`` only builds its own client from a URI, so for a ``RedisCluster`` a small
subclass hands the existing client in (the same few attributes ``RedisClusterStorage.__init__`` sets).
Each check or failure touches one key, so it is cluster-safe wherever the key hashes.

Only failures are recorded. A request with a valid key never adds an entry, so it is never throttled
unless its IP keeps failing. Each instance also remembers, in memory for one window, the addresses that
failed on it: ``check`` consults Redis only for those, so ordinary traffic pays no round trip for the
throttle, and a guessing address is checked against the shared count from its first failure on an
instance on (across N instances it gets at most N-1 extra unchecked guesses per window). Where to call ``check`` is the pipeline's choice (see the report): before the
key lookup (one extra read, ~0.1 ms, and a blocked IP cannot keep guessing) or only on the failure path
(zero cost for valid keys).
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

    def __init__(self, redis_client: Any, *, prefix: str, max_failures: int = 10, window_s: int = 60,
                 clock: Any = time.monotonic, local_suspects: bool = True) -> None:
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
        self._clock = clock
        self._local = local_suspects
        self._suspects: dict[str, float] = {}  # ip -> when this instance stops checking it (monotonic)

    def _suspect(self, client_ip: str) -> bool:
        until = self._suspects.get(client_ip)
        if until is None:
            return False
        if until < self._clock():
            self._suspects.pop(client_ip, None)
            return False
        return True

    def check(self, client_ip: str) -> None:
        """Return ``None`` while ``client_ip`` has fewer than ``max_failures`` failures in the window.

        Raises ``RateLimited`` (429 rate_limit_exceeded, Retry-After until the oldest failure expires) when
        it has reached the limit, ``ServiceUnavailable`` (503) when Redis fails. One read (none for an address
        that has not failed on this instance within the window), records nothing.
        """
        if self._local and not self._suspect(client_ip):
            return
        with store_errors("auth throttle check", _UNREACHABLE):
            reset_at, remaining = self._limiter.get_window_stats(self._item, client_ip)
        if remaining <= 0:
            wait = max(1, math.ceil(reset_at - time.time()))
            raise RateLimited(
                f"Too many failed authentication attempts from this address: {self.max_failures} within "
                f"{self.window_s} s. Try again in {wait} s with a valid API key.", retry_after=wait)

    def record_failure(self, client_ip: str) -> None:
        """Count one failed authentication for ``client_ip``. Raises ``ServiceUnavailable`` when Redis fails."""
        if self._local:
            if len(self._suspects) > 100_000:  # bound memory under a spray of addresses
                now = self._clock()
                self._suspects = {ip: t for ip, t in self._suspects.items() if t >= now}
            self._suspects[client_ip] = self._clock() + self.window_s
        with store_errors("auth throttle record", _UNREACHABLE):
            self._limiter.hit(self._item, client_ip)

    def clear(self, client_ip: str) -> None:
        """Forget ``client_ip``'s failures (an administrator unblocking an address)."""
        with store_errors("auth throttle clear", _UNREACHABLE):
            self._limiter.clear(self._item, client_ip)
