"""Per-key rate limits (rpm, tpm) and spending budgets that hold exactly across every proxy instance.

One Lua script per step, one ``EVALSHA`` round trip each: ``reserve`` before the upstream call checks the
request, token and budget limits together and records all three only when all pass; ``settle`` after the
call swaps the reservation for what was really used. Every instance shares one Redis (or Redis Cluster),
and Redis runs a script atomically, so a burst of concurrent requests from any number of processes can
neither pass ``rpm`` nor spend past a budget.

Why an exact sliding-window log (a ZSET of request ids scored by time in ms) rather than GCRA or a fixed
window: a fixed window lets 2×rpm through around a window edge; GCRA is exact for one rate but keeps no
per-request record, so it cannot later replace a request's *reserved* tokens with its *actual* tokens, and
its "remaining" is an emission-interval estimate. The log answers "how many requests and tokens in the
last 60 s" to the request, lets ``settle`` rewrite one entry in place, and costs O(log n) per request with
n ≤ rpm entries per key (entries carry their token count; a running sum keeps tpm checks O(1)).

Why a script of our own rather than the ``limits`` library (used for the auth throttle in
``lib.limits.auththrottle``): ``limits`` checks one limit per call. Checking rpm, then tpm, then the budget as
three calls is not atomic — two instances can both pass the budget check and both spend the last dollar —
and it has no notion of a reservation that is settled later for a different amount.

Time: by default the script reads Redis ``TIME``, one clock for every instance, so windows do not stretch
or shrink with the skew between app servers (in a cluster all of one key's data lives on one node, hence
one clock). Tests and deployments that want their own clock pass ``clock=``; it is then sent as ``now``.
The budget *period* (UTC day or month, which names the counter key) is always taken from the app clock
(``clock`` or ``time.time``): it must be known before the script runs, and a few seconds of skew at
midnight only decides which of two exact counters a request is charged to — each still never overspends.

Redis keys (``P`` = prefix, the hash tag ``{key_id}`` puts all of them in one cluster slot):

    P rl:{k}:req             ZSET   "<request_id>|<tokens>" -> start ms     (60 s sliding-window log)
    P rl:{k}:tok             STRING sum of the tokens in :req
    P rl:{k}:budget:<pid>    HASH   spent, held (micro-dollars) for period <pid>: total, d2026-11-22, m2026-11
    P rl:{k}:hold:<pid>      ZSET   "<request_id>|<micros>" -> ms when the hold lapses
    P rl:{k}:lapsed:<pid>    ZSET   lapsed holds kept a day, so a late settle charges exactly once
"""

from __future__ import annotations

import enum
import logging
import math
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from lib.accounting.money import usd_text
from lib.errors import BudgetExceeded, RateLimited, ServiceUnavailable
from lib.keys import KeyChanged
from lib.store import ScriptCall, store_errors

log = logging.getLogger("aiproxy.ratelimit")
_UNREACHABLE = "The rate-limit store is unreachable; please retry shortly."

PERIODS = ("total", "daily", "monthly")
_LUA_DIR = Path(__file__).resolve().parent / "lua"
_BUDGET_KEY_GRACE_S = 2 * 86400  # daily/monthly counters outlive their period this long (late settles, admin views)


class FailMode(str, enum.Enum):
    """What ``reserve_or_degrade`` does when Redis is unreachable (values match ``REDIS_FAILURE_MODE``)."""

    CLOSED = "fail-closed"  # refuse the request: 503 service_unavailable
    OPEN = "fail-open"  # serve it unlimited, log at ERROR, call the metric hook


def format_duration(seconds: float | None) -> str:
    """OpenAI's reset format (Go duration style, ms precision): ``"20ms"``, ``"1s"``, ``"8.64s"``, ``"6m0s"``."""
    ms = max(0, int(round((seconds or 0.0) * 1000)))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def period_bounds(period: str, now_s: float) -> tuple[str, datetime | None]:
    """The budget period containing ``now_s``: its id (``total``, ``d2026-11-22``, ``m2026-11``) and when it resets.

    The reset is the next UTC midnight (daily), the first of next month 00:00 UTC (monthly), or ``None``
    (total). Raises ``ValueError`` for an unknown period.
    """
    if period == "total":
        return "total", None
    now = datetime.fromtimestamp(now_s, tz=timezone.utc)
    if period == "daily":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return f"d{start:%Y-%m-%d}", start + timedelta(days=1)
    if period == "monthly":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return f"m{start:%Y-%m}", nxt
    raise ValueError(f"budget_period must be one of {', '.join(PERIODS)}, not {period!r}")


@dataclass(frozen=True)
class Reservation:
    """What ``reserve`` recorded, and everything the response headers need.

    ``limit_*``/``remaining_*``/``reset_*`` are ``None`` for limits the key does not have. ``reset_*_s`` is the
    time until the oldest request counted in the window leaves it (when capacity next grows). A
    ``degraded`` reservation was handed out while Redis was down (fail-open): it has no limits and
    ``settle``/``release`` ignore it.
    """

    key_id: str
    request_id: str
    tokens: int = 0
    cost_micros: int = 0
    period: str = "total"
    period_id: str = "total"
    budget_micros: int | None = None
    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    budget_spent_micros: int | None = None
    budget_reserved_micros: int | None = None  # all live holds of the period, this one included
    budget_resets_at: datetime | None = None
    tracked_window: bool = False
    tracked_budget: bool = False
    degraded: bool = False

    _SETTLE_FIELDS = ("key_id", "request_id", "tokens", "cost_micros", "period", "period_id", "tracked_window",
                      "tracked_budget")

    def to_dict(self) -> dict[str, Any]:
        """What ``settle`` needs, as JSON-ready data (for the spool)."""
        return {name: getattr(self, name) for name in self._SETTLE_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Reservation":
        """A reservation from ``to_dict`` output (enough to settle or release it)."""
        return cls(**{name: data[name] for name in cls._SETTLE_FIELDS if name in data})

    @property
    def budget_remaining_micros(self) -> int | None:
        """Budget left after spent and every live hold (this one included); ``None`` without a budget."""
        if self.budget_micros is None or self.budget_spent_micros is None:
            return None
        return max(0, self.budget_micros - self.budget_spent_micros - (self.budget_reserved_micros or 0))

    def headers(self) -> dict[str, str]:
        """OpenAI-style ``x-ratelimit-*`` headers for the limits this key has (none when degraded)."""
        out: dict[str, str] = {}
        if self.degraded:
            return out
        if self.limit_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.limit_requests)
            out["x-ratelimit-remaining-requests"] = str(max(0, self.remaining_requests or 0))
            out["x-ratelimit-reset-requests"] = format_duration(self.reset_requests_s)
        if self.limit_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            out["x-ratelimit-remaining-tokens"] = str(max(0, self.remaining_tokens or 0))
            out["x-ratelimit-reset-tokens"] = format_duration(self.reset_tokens_s)
        return out


class Limiter:
    """Reserve-then-settle rate limiting and budgets for gateway keys, shared through Redis.

    ``redis`` is a ``redis.Redis`` or ``redis.cluster.RedisCluster``. ``prefix`` starts every key and must
    not contain ``{``/``}`` (the hash tag has to be the key id). ``clock`` (seconds since the epoch) replaces
    Redis ``TIME`` and ``time.time`` when given. ``window_s`` is the rpm/tpm window (60). A budget hold lapses
    after ``hold_ttl_s`` unless settled, so a crashed process releases its hold: keep it above the longest
    request (deadline × fallbacks, and the longest stream).
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        clock: Callable[[], float] | None = None,
        window_s: int = 60,
        hold_ttl_s: int = 900,
        lapsed_keep_s: int = 86400,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain '{' or '}': the hash tag must be the key id")
        if window_s <= 0 or hold_ttl_s <= 0 or lapsed_keep_s <= 0:
            raise ValueError("window_s, hold_ttl_s and lapsed_keep_s must be positive")
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._window_ms = int(window_s * 1000)
        self._hold_ttl_ms = int(hold_ttl_s * 1000)
        self._lapsed_keep_ms = int(lapsed_keep_s * 1000)
        self._reserve = redis.register_script((_LUA_DIR / "reserve.lua").read_text())
        self._settle = redis.register_script((_LUA_DIR / "settle.lua").read_text())
        self._status = redis.register_script((_LUA_DIR / "budget_status.lua").read_text())
        self._charge = redis.register_script((_LUA_DIR / "charge.lua").read_text())

    # -- keys --------------------------------------------------------------------------------------------
    def key_names(self, key_id: str, period_id: str = "total") -> list[str]:
        """The five Redis keys for ``key_id`` (log, tokens, budget, holds, lapsed), all in one cluster slot.

        Raises ``ValueError`` when ``key_id`` contains a brace (it would break the hash tag).
        """
        if not key_id or "{" in key_id or "}" in key_id:
            raise ValueError("key_id must be non-empty and contain no '{' or '}'")
        base = f"{self._prefix}rl:{{{key_id}}}"
        return [f"{base}:req", f"{base}:tok", f"{base}:budget:{period_id}", f"{base}:hold:{period_id}",
                f"{base}:lapsed:{period_id}"]

    def _now(self) -> tuple[float, str]:
        """(app time in s for the budget period, the ``now`` argument for a script: '' = Redis TIME)."""
        if self._clock is None:
            return time.time(), ""
        now = self._clock()
        return now, str(int(now * 1000))

    # -- reserve -----------------------------------------------------------------------------------------
    def reserve(
        self,
        key_id: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        tokens: int = 0,
        budget_micros: int | None = None,
        budget_period: str = "total",
        cost_micros: int = 0,
        request_id: str | None = None,
        key_record: str | None = None,
        key_gen: int | None = None,
    ) -> Reservation:
        """Check rpm, tpm and the budget together and, if all pass, record the request, its ``tokens`` and a hold
        of ``cost_micros`` (the worst-case cost) in one atomic round trip.

        Returns the ``Reservation`` (pass it to ``settle`` or ``release``). A key with no limit at all costs
        no round trip. Raises ``BudgetExceeded`` (429 insufficient_quota; Retry-After until the period resets,
        none for a total budget), ``RateLimited`` (429, Retry-After ≥ 1 s until the window frees enough;
        none when ``tokens`` alone exceed tpm), ``ServiceUnavailable`` (503) when Redis fails, and
        ``ValueError`` for bad arguments. Nothing is recorded when an error is raised.

        ``key_record``/``key_gen``: the Redis key of the gateway key's record and the generation the caller
        holds; checked in the same script (even for a key with no limits), ``KeyChanged`` when it moved.
        """
        request_id = request_id or uuid.uuid4().hex
        for name, value in (("rpm", rpm), ("tpm", tpm), ("budget_micros", budget_micros)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if tokens < 0 or cost_micros < 0:
            raise ValueError("tokens and cost_micros must be >= 0")
        now_s, now_arg = self._now()
        period_id, resets_at = period_bounds(budget_period, now_s)
        base = Reservation(key_id=key_id, request_id=request_id, tokens=tokens, cost_micros=cost_micros,
                           period=budget_period, period_id=period_id, budget_micros=budget_micros,
                           budget_resets_at=resets_at)
        keys = self.key_names(key_id, period_id)
        track_window = rpm is not None or tpm is not None
        if not track_window and budget_micros is None and key_gen is None:
            return base
        expire_at = -1 if resets_at is None else int((resets_at.timestamp() + _BUDGET_KEY_GRACE_S) * 1000)
        args = [now_arg, self._window_ms, _opt(rpm), _opt(tpm), tokens, _opt(budget_micros), cost_micros,
                request_id, self._hold_ttl_ms, expire_at, self._lapsed_keep_ms, int(track_window)]
        if key_gen is not None and key_record:
            keys, args = [*keys, key_record], [*args, str(key_gen)]
        with store_errors("reserve", _UNREACHABLE):
            raw = self._reserve(keys=keys, args=args)
        status, count, used, oldest, retry_rpm, retry_tpm, spent, held, now_ms = (int(v) for v in raw)
        if status == 3:
            raise KeyChanged(key_id)
        reset_s = max(0.0, (oldest + self._window_ms - now_ms) / 1000) if oldest >= 0 else 0.0
        res = replace(
            base,
            limit_requests=rpm, remaining_requests=None if rpm is None else max(0, rpm - count),
            reset_requests_s=None if rpm is None else reset_s,
            limit_tokens=tpm, remaining_tokens=None if tpm is None else max(0, tpm - used),
            reset_tokens_s=None if tpm is None else (reset_s if used > 0 else 0.0),
            budget_spent_micros=spent if budget_micros is not None else None,
            budget_reserved_micros=held if budget_micros is not None else None,
            tracked_window=track_window, tracked_budget=budget_micros is not None,
        )
        if status == 0:
            return res
        if status == 2:
            raise self._budget_error(res, now_s)
        raise self._rate_error(res, count, used, retry_rpm, retry_tpm)

    def reserve_or_degrade(
        self,
        key_id: str,
        *,
        fail_mode: FailMode | str,
        on_degraded: Callable[[ServiceUnavailable], None] | None = None,
        **kwargs: Any,
    ) -> Reservation:
        """``reserve`` with a policy for a Redis outage.

        ``fail-closed``: the ``ServiceUnavailable`` (503) propagates. ``fail-open``: logs at ERROR, calls
        ``on_degraded(exc)`` (a metric hook; its own errors are logged, not raised) and returns a
        ``Reservation`` with ``degraded=True`` that enforces nothing and that ``settle`` ignores. Limit and
        budget errors (429) always propagate. Raises ``ValueError`` for an unknown mode.
        """
        mode = FailMode(fail_mode)
        try:
            return self.reserve(key_id, **kwargs)
        except ServiceUnavailable as exc:
            if mode is FailMode.CLOSED:
                raise
            log.error("rate-limit store unreachable; serving key %s without limits (fail-open): %r",
                      key_id, exc.__cause__)
            if on_degraded is not None:
                try:
                    on_degraded(exc)
                except Exception:  # a broken metric hook must not fail the request
                    log.exception("on_degraded hook failed")
            return Reservation(key_id=key_id, request_id=kwargs.get("request_id") or uuid.uuid4().hex,
                               tokens=int(kwargs.get("tokens", 0)), cost_micros=int(kwargs.get("cost_micros", 0)),
                               degraded=True)

    # -- after the call ----------------------------------------------------------------------------------
    def settle(self, reservation: Reservation, *, actual_tokens: int, actual_cost_micros: int | None) -> None:
        """Replace the reservation by what was used, in one round trip: the log entry's tokens become
        ``actual_tokens`` and the budget hold becomes ``actual_cost_micros`` spent (the rest is released).

        ``actual_cost_micros=None`` (price unknown) charges the reserved worst case, never $0. Settling twice,
        or after ``release``, changes nothing; a hold that already lapsed is still charged, once. A degraded
        or limit-free reservation is ignored. Raises ``ServiceUnavailable`` when Redis fails (the hold then
        lapses after ``hold_ttl_s``) and ``ValueError`` for negative amounts.
        """
        cost = reservation.cost_micros if actual_cost_micros is None else actual_cost_micros
        if actual_tokens < 0 or cost < 0:
            raise ValueError("actual_tokens and actual_cost_micros must be >= 0")
        self._finish(reservation, actual_tokens, cost, "settle")

    def release(self, reservation: Reservation) -> None:
        """Undo a reservation for a request that failed before any upstream cost (e.g. every provider refused
        to connect): the budget hold and the reserved tokens are refunded, but the request stays counted
        for rpm — an attempt still used the gateway, and refunding it would let a client retry a failing
        request in a tight loop past its rpm. Ignores degraded reservations; raises ``ServiceUnavailable``.
        """
        self._finish(reservation, 0, 0, "release")

    def settlement(self, res: Reservation, tokens: int, cost: int) -> ScriptCall | None:
        """The settle script call for ``res`` (actual ``tokens``, ``cost`` micro-dollars), to run in a round trip
        of the caller's (the request log's); ``None`` when there is nothing to settle. Pass its result to
        ``settled``."""
        if res.degraded or not (res.tracked_window or res.tracked_budget):
            return None
        args = [res.request_id, res.tokens, tokens, res.cost_micros, cost, int(res.tracked_window),
                int(res.tracked_budget)]
        return ScriptCall(self._settle, self.key_names(res.key_id, res.period_id), args)

    @staticmethod
    def settled(res: Reservation, result: Any, what: str = "settle") -> None:
        """Look at a settle script's result (a hold that had lapsed is charged late, and said so)."""
        if isinstance(result, (list, tuple)) and len(result) == 2 and int(result[1]) == 2:
            log.warning("key %s request %s: %s after its budget hold had lapsed (hold_ttl too short?)",
                        res.key_id, res.request_id, what)

    def _finish(self, res: Reservation, tokens: int, cost: int, what: str) -> None:
        call = self.settlement(res, tokens, cost)
        if call is None:
            return
        with store_errors(what, _UNREACHABLE):
            result = call.script(keys=call.keys, args=call.args)
        self.settled(res, result, what)

    def charge(self, key_id: str, *, period: str, at_s: float, request_id: str, cost_micros: int,
               held_micros: int = 0) -> bool:
        """Charge ``cost_micros`` to the budget period containing ``at_s``, once per ``request_id``, for a
        request served without a hold while Redis was unreachable; a hold of ``held_micros`` that the timed-out
        reserve may still have taken is dropped first. Returns whether it was charged now. Raises
        ``StoreUnavailable``."""
        period_id, resets_at = period_bounds(period, at_s)
        keys = self.key_names(key_id, period_id)
        charged = keys[0].rsplit(":", 1)[0] + f":charged:{period_id}"
        lifetime = -1 if resets_at is None else max(1, int((resets_at.timestamp() + _BUDGET_KEY_GRACE_S - at_s) * 1000))
        with store_errors("charge", _UNREACHABLE):
            return bool(self._charge(keys=[keys[2], charged, keys[3], keys[4]],
                                     args=[request_id, int(cost_micros), self._lapsed_keep_ms, lifetime,
                                           int(held_micros)]))

    # -- admin view --------------------------------------------------------------------------------------
    def budget_status(self, key_id: str, budget_micros: int | None, period: str = "total") -> dict[str, Any]:
        """The current period of ``key_id``'s budget: ``{period, period_id, budget_micros, spent_micros,
        reserved_micros, remaining_micros, resets_at}`` (``remaining_micros``/``resets_at`` ``None`` when there
        is no budget / no reset). Read-only, one round trip. Raises ``ServiceUnavailable``, ``ValueError``.
        """
        now_s, now_arg = self._now()
        period_id, resets_at = period_bounds(period, now_s)
        keys = self.key_names(key_id, period_id)
        with store_errors("budget status", _UNREACHABLE):
            spent, reserved, _, _ = (int(v) for v in self._status(keys=[keys[2], keys[3]], args=[now_arg]))
        remaining = None if budget_micros is None else max(0, budget_micros - spent - reserved)
        return {"period": period, "period_id": period_id, "budget_micros": budget_micros, "spent_micros": spent,
                "reserved_micros": reserved, "remaining_micros": remaining,
                "resets_at": resets_at.isoformat().replace("+00:00", "Z") if resets_at else None}

    # -- errors ------------------------------------------------------------------------------------------
    def _window_name(self) -> str:
        return "minute" if self._window_ms == 60_000 else f"{self._window_ms / 1000:g} s"

    def _rate_error(self, res: Reservation, count: int, used: int, retry_rpm: int, retry_tpm: int) -> RateLimited:
        per = self._window_name()
        parts, waits = [], []
        if retry_rpm != -1:
            parts.append(f"requests per {per} (RPM): limit {res.limit_requests}, used {count}, requested 1")
            waits.append(retry_rpm)
        if retry_tpm == -2:
            return RateLimited(
                f"Request too large for key {res.key_id} on tokens per {per} (TPM): limit {res.limit_tokens}, "
                f"requested {res.tokens}. Reduce the prompt or max_tokens.", headers=res.headers())
        if retry_tpm != -1:
            parts.append(f"tokens per {per} (TPM): limit {res.limit_tokens}, used {used}, requested {res.tokens}")
            waits.append(retry_tpm)
        wait_s = max(1, math.ceil(max(waits) / 1000))
        return RateLimited(f"Rate limit reached for key {res.key_id} on {'; and on '.join(parts)}. "
                           f"Please try again in {format_duration(wait_s)}.",
                           retry_after=wait_s, headers=res.headers())

    def _budget_error(self, res: Reservation, now_s: float) -> BudgetExceeded:
        budget = res.budget_micros or 0
        label = {"total": "total", "daily": "daily", "monthly": "monthly"}[res.period]
        msg = (f"Budget exceeded for key {res.key_id}: {label} budget {usd_text(budget)}, spent "
               f"{usd_text(res.budget_spent_micros or 0)}, reserved by requests in progress "
               f"{usd_text(res.budget_reserved_micros or 0)}; this request could cost up to {usd_text(res.cost_micros)}.")
        retry_after = None
        if res.budget_resets_at is not None:
            msg += f" The budget resets at {res.budget_resets_at.isoformat().replace('+00:00', 'Z')}."
            retry_after = max(1, math.ceil(res.budget_resets_at.timestamp() - now_s))
        else:
            msg += " A total budget does not reset: ask an administrator to raise it."
        return BudgetExceeded(msg, retry_after=retry_after, headers=res.headers())


def _opt(value: int | None) -> int:
    return -1 if value is None else int(value)
