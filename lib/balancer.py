"""Load balancing over a model's ``deployments``: a weighted order per request, and shared cool-downs.

Order: a weighted random permutation (Efraimidis–Spirakis: each deployment draws ``u ** (1 / weight)``
for ``u`` uniform in (0, 1), highest first), so the first choice is deployment *i* with probability
``weight_i / sum(weights)`` and the rest follow in weighted order as fallbacks. Random rather than a smooth
weighted round-robin because every worker of every instance picks on its own: random needs no shared counter
(a round-robin per worker is exact per worker but the workers' phases add up to the same spread anyway), and
when deployments cool down, the remaining ones keep their relative weights with no state to repair.

Cool-downs: a deployment whose attempt failed with 429, 5xx, a timeout or an unreachable upstream (or
rejected credentials: it will fail the same way every time) is skipped for ``Retry-After`` seconds when the
upstream gave one, else ``default_s``. The cool-down is a Redis key with that TTL, so every worker and instance
skips it; the failing worker also keeps it locally, so it skips the deployment even while Redis is away.
Reads cost one ``MGET`` for a route's deployments, at most once per ``refresh_s`` per worker (a local copy in
between), and only for routes that have deployments. A Redis that cannot be read means "no cool-downs" (the
local copy still applies): routing never fails because of it. Cooled deployments are not dropped: the gateway
tries them last, after the route's fallbacks, so a model whose every deployment is cooling still answers if
one has recovered.

Every Redis call goes through ``lib.store.store_errors``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from lib import errors
from lib.router import Deployment, Route
from lib.store import store_errors

log = logging.getLogger("aiproxy.balancer")

MIN_COOLDOWN_S = 1.0
MAX_COOLDOWN_S = 600.0
# The errors that cool a deployment down: throttling, 5xx, timeouts, unreachable, bad credentials. Not 400
# (the request itself) or 404 (the model name): another deployment would refuse them the same way.
COOLING = (errors.UpstreamRateLimited, errors.UpstreamUnavailable, errors.UpstreamTimeout, errors.UpstreamAuthError)


def cools(exc: errors.UpstreamError) -> bool:
    """True when ``exc`` should cool its deployment down (see ``COOLING``; a plain ``UpstreamError`` is a
    5xx or a broken answer)."""
    return type(exc) is errors.UpstreamError or isinstance(exc, COOLING)


def attempts(route: Route, balancer: "Balancer | None") -> list[tuple[str, str, str | None, bool]]:
    """``(instance, upstream model, deployment name or None, cooling)`` for each attempt ``route`` offers:
    itself, or its deployments in ``balancer``'s order (declared order without one)."""
    if not route.deployments:
        return [(route.provider, route.model, None, False)]
    order = [(d, False) for d in route.deployments] if balancer is None else balancer.order(route.deployments)
    return [(d.provider, d.model, d.name, cooled) for d, cooled in order]


def weighted_order(items: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """``items`` in a weighted random order (see module docstring)."""
    if len(items) <= 1:
        return list(items)
    keyed = [((1.0 - rng.random()) ** (1.0 / d.weight), i, d) for i, d in enumerate(items)]
    return [d for _, _, d in sorted(keyed, key=lambda k: (-k[0], k[1]))]


class Balancer:
    """Orders deployments and keeps their cool-downs (see module docstring). One per app; thread-safe."""

    def __init__(self, redis: Any, *, prefix: str, default_s: float = 30.0, refresh_s: float = 1.0,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 on_cooled: Callable[[str, str], None] | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.default_s = default_s
        self.refresh_s = refresh_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_cooled = on_cooled
        self._until: dict[str, float] = {}  # deployment → end of its cool-down (wall clock), local copy
        self._read_at: dict[str, float] = {}  # deployment → when its cool-down was last read from Redis
        self._lock = threading.Lock()

    def key(self, name: str) -> str:
        """The Redis key of ``name``'s cool-down; one hash tag, so one ``MGET`` works on a cluster too."""
        return f"{self.prefix}{{cooldown}}:{name}"

    def order(self, deployments: Sequence[Deployment]) -> list[tuple[Deployment, bool]]:
        """``(deployment, cooling)`` pairs: the live ones in weighted order, then the cooling ones, soonest
        to recover first."""
        until = self._cooling_until([d.name for d in deployments])
        live = [d for d in deployments if d.name not in until]
        cooling = sorted((d for d in deployments if d.name in until), key=lambda d: until[d.name])
        return [(d, False) for d in weighted_order(live, self._rng)] + [(d, True) for d in cooling]

    def cool(self, name: str, retry_after: float | None, reason: str) -> float:
        """Cool ``name`` down for ``retry_after`` seconds (bounded to 1–600), or ``default_s``; returns the
        seconds. Writes Redis when it can; always keeps the local copy."""
        seconds = self.default_s if retry_after is None else min(MAX_COOLDOWN_S, max(MIN_COOLDOWN_S, retry_after))
        until = self._clock() + seconds
        with self._lock:
            self._until[name] = until
        try:
            with store_errors("cool-down write"):
                self.redis.set(self.key(name), f"{until:.3f}", px=int(seconds * 1000))
        except errors.StoreUnavailable:
            log.warning("deployment %s cooled down here only: Redis is unreachable", name)
        log.warning("deployment %s cooled down for %.1f s (%s)", name, seconds, reason)
        if self._on_cooled is not None:
            self._on_cooled(name, reason)
        return seconds

    def cooling(self, names: Iterable[str], *, fresh: bool = False) -> dict[str, float]:
        """Seconds left of each cooling deployment among ``names`` (``fresh``: read Redis now, as ``/health``
        does)."""
        names = list(names)
        if fresh:
            with self._lock:
                for name in names:
                    self._read_at.pop(name, None)
        now = self._clock()
        return {name: round(until - now, 3) for name, until in self._cooling_until(names).items()}

    def _cooling_until(self, names: list[str]) -> dict[str, float]:
        now = self._clock()
        with self._lock:
            stale = [n for n in names if self._read_at.get(n, float("-inf")) + self.refresh_s <= now]
            for name in stale:
                self._read_at[name] = now  # one attempt per refresh, also while Redis is away
        if stale:
            values: list[Any] | None = None
            try:
                with store_errors("cool-down read"):
                    values = self.redis.mget([self.key(n) for n in stale])
            except errors.StoreUnavailable:
                log.debug("cool-downs unreadable: routing as if there were none")
            if values is not None:
                with self._lock:
                    for name, value in zip(stale, values):
                        remote = _number(value)
                        local = self._until.get(name, 0.0)
                        # Redis is the shared truth once read; without a key there, a local cool-down (one Redis
                        # did not take) runs out on its own.
                        self._until[name] = remote or (local if local > now else 0.0)
        with self._lock:
            return {n: self._until[n] for n in names if self._until.get(n, 0.0) > now}


def _number(value: Any) -> float:
    try:
        return float(value.decode() if isinstance(value, bytes) else value) if value else 0.0
    except (TypeError, ValueError):
        return 0.0
