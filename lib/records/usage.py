"""The request log and the usage counters, written together in one atomic Redis step.

``UsageStore.record`` runs one Lua script per request that (1) stores the log with ``SET NX EX`` and (2) only
when that log is new, adds the request to the counters. So a request is counted exactly once (a retried
``record`` for the same ``proxy_id`` changes nothing) and usage totals always equal the sum of the logs.

Redis layout (``P`` = prefix, ``K`` = key id, or ``anonymous`` for requests with no key). Everything the
script writes carries the hash tag ``{K}``, so it lives in one Cluster slot::

    P log:{K}:<proxy_id>     STRING  the RequestRecord as JSON; TTL retention_days
    P usage:{K}:<YYYY-MM-DD> HASH    one UTC day of key K: field "m:<model>|p:<provider>|<counter>" -> int,
                                     plus "user_id"; expires usage_retention_days after that day
    P logidx:<proxy_id>      STRING  -> K, so the master can read a log by id alone (same TTL as the log)
    P usage:keys             SET     key ids that have usage, for admin totals

The index and the key set are written right after the script, in the same round trip (a pipeline), but
outside the atomic step: they are idempotent lookups, not accounting.

Counters per (day, model, provider): see ``COUNTERS``; ``cost_micros`` / ``saved_cost_micros`` are integer
micro-dollars from ``lib.records.requestlog.usd_to_micros`` (the one money conversion). Latency is a histogram with
the fixed bounds ``LATENCY_BUCKETS_MS``; p50/p95 are *estimates* interpolated linearly inside the bucket
(as Prometheus' ``histogram_quantile`` does), never more precise than the bucket they fall in. ``usage()``
reads only these hashes — one pipelined ``HGETALL`` per key-day — and never scans logs, so its cost depends
on keys x days x models, not on the number of requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import redis as redis_lib
from redis.cluster import RedisCluster

from lib.errors import InvalidValue, ServiceUnavailable
from lib.records.requestlog import CACHE_HITS, RequestRecord, micros_to_usd, quantize_usd, truncate_body, usd_to_micros

log = logging.getLogger("aiproxy.usage")

ANONYMOUS = "anonymous"
NO_NAME = "-"  # model / provider of a request that never got that far (auth failure, bad JSON)
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, math.inf,
)
COUNTERS: tuple[str, ...] = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "cost_micros", "unpriced_requests",
    "cache_hits", "cache_misses", "saved_tokens", "saved_cost_micros", "streams", "client_disconnects",
    "counted_usage", "latency_ms_sum",
)
BUCKET_FIELDS: tuple[str, ...] = tuple(f"lat_le_{'inf' if math.isinf(b) else int(b)}" for b in LATENCY_BUCKETS_MS)
_SLOTS = {name: i for i, name in enumerate(COUNTERS + BUCKET_FIELDS)}
_NSLOTS = len(_SLOTS)
_NB = len(LATENCY_BUCKETS_MS)
MAX_RANGE_DAYS = 400
_DAY = 86400
_CHUNK = 2000
_UUID_RE = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")  # commands per pipeline flush when reading

# KEYS[1] log key, KEYS[2] day hash. ARGV: 1 log JSON, 2 log TTL (s), 3 day hash EXPIREAT, 4 user_id or "",
# then (field, increment) pairs. Returns 1 when the log was new and counted, 0 for a duplicate proxy_id.
_RECORD_LUA = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
for i = 5, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'user_id', ARGV[4]) end
redis.call('EXPIREAT', KEYS[2], ARGV[3])
return 1
"""
_RECORD_SHA = hashlib.sha1(_RECORD_LUA.encode()).hexdigest()


def cost_to_micros(cost: Any) -> int:
    """Integer micro-dollars of a cost (``None`` → 0); the same function the log and billing line use."""
    return usd_to_micros(cost)


def _esc(name: str) -> str:
    # '|' separates the parts of a field name; escape it (and the escape char) in model/provider names.
    return name.replace("%", "%25").replace("|", "%7C")


def _unesc(name: str) -> str:
    return name.replace("%7C", "|").replace("%25", "%")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def canonical_proxy_id(proxy_id: Any) -> str | None:
    """The canonical lower-case form of a hyphenated UUID string (any case), else ``None``."""
    if not isinstance(proxy_id, str) or not _UUID_RE.match(proxy_id):
        return None
    return str(uuid.UUID(proxy_id))


def utc_day(ts: float) -> date:
    """The UTC calendar day of epoch seconds ``ts``."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).date()


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def bucket_index(latency_ms: float) -> int:
    """Index in ``LATENCY_BUCKETS_MS`` of the first bound >= ``latency_ms`` (negative/NaN count as 0)."""
    value = latency_ms if latency_ms == latency_ms and latency_ms > 0 else 0.0
    for i, bound in enumerate(LATENCY_BUCKETS_MS):
        if value <= bound:
            return i
    return _NB - 1


def percentile_from_buckets(counts: list[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (0..1) in ms from per-bucket counts aligned with ``LATENCY_BUCKETS_MS``.

    Linear interpolation inside the bucket holding the rank; the first bucket starts at 0 and a rank in the
    open ``+inf`` bucket returns the last finite bound (a lower bound). ``None`` when there are no samples.
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            upper = LATENCY_BUCKETS_MS[i]
            lower = LATENCY_BUCKETS_MS[i - 1] if i else 0.0
            if math.isinf(upper):
                return float(lower)
            return round(lower + (upper - lower) * max(0.0, rank - seen) / count, 1)
        seen += count
    return float(LATENCY_BUCKETS_MS[-2])


def metrics_from_slots(slots: list[int]) -> dict[str, Any]:
    """The public usage numbers for one group from its raw counter vector (``COUNTERS`` + buckets)."""
    c = dict(zip(COUNTERS, slots))
    buckets = slots[len(COUNTERS):]
    lookups = c["cache_hits"] + c["cache_misses"]
    requests = c["requests"]
    return {
        "requests": requests,
        "errors": c["errors"],
        "prompt_tokens": c["prompt_tokens"],
        "completion_tokens": c["completion_tokens"],
        "total_tokens": c["prompt_tokens"] + c["completion_tokens"],
        "cost_usd": str(micros_to_usd(c["cost_micros"])),
        "unpriced_requests": c["unpriced_requests"],
        "cache_hits": c["cache_hits"],
        "cache_misses": c["cache_misses"],
        "cache_hit_rate": round(c["cache_hits"] / lookups, 4) if lookups else 0.0,
        "saved_tokens": c["saved_tokens"],
        "saved_cost_usd": str(micros_to_usd(c["saved_cost_micros"])),
        "streams": c["streams"],
        "client_disconnects": c["client_disconnects"],
        "counted_usage_requests": c["counted_usage"],
        "latency_ms": {
            "p50": percentile_from_buckets(buckets, 0.50),
            "p95": percentile_from_buckets(buckets, 0.95),
            "mean": round(c["latency_ms_sum"] / requests, 1) if requests else None,
        },
    }


class UsageStore:
    """Request logs and usage counters in Redis; see the module docstring for the layout.

    ``retention_days`` is the lifetime of logs (and their index); ``usage_retention_days`` that of the daily
    counters, which are small and outlive the logs. ``on_error(operation, exc)`` is called for every failure
    that ``record`` swallows (hook a metric there). Key ids must not be the literal ``"anonymous"``.
    """

    def __init__(
        self,
        redis: redis_lib.Redis,
        *,
        prefix: str,
        retention_days: int = 30,
        store_bodies: bool = True,
        max_body_chars: int = 8192,
        clock: Callable[[], float] = time.time,
        usage_retention_days: int = MAX_RANGE_DAYS,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        if retention_days < 1 or usage_retention_days < 1:
            raise ValueError("retention must be at least one day")
        self._r = redis
        self._prefix = prefix
        self._log_ttl = int(retention_days) * _DAY
        self._usage_ttl = int(usage_retention_days) * _DAY
        self._store_bodies = store_bodies
        self._max_body = int(max_body_chars)
        self._clock = clock
        self._on_error = on_error
        self._cluster = isinstance(redis, RedisCluster)
        self._script = redis.register_script(_RECORD_LUA)  # the cluster path; it reloads on NOSCRIPT itself

    # ---- key names -------------------------------------------------------------------------------------
    def log_key(self, key_id: str, proxy_id: str) -> str:
        """Redis key of one log (``proxy_id`` canonical)."""
        return f"{self._prefix}log:{{{key_id}}}:{proxy_id}"

    def day_key(self, key_id: str, day: date) -> str:
        """Redis key of the counter hash of ``key_id`` on UTC ``day``."""
        return f"{self._prefix}usage:{{{key_id}}}:{day.isoformat()}"

    def index_key(self, proxy_id: str) -> str:
        """Redis key of the proxy_id → key id index entry."""
        return f"{self._prefix}logidx:{proxy_id}"

    @property
    def keys_set(self) -> str:
        """Redis key of the set of key ids with usage."""
        return f"{self._prefix}usage:keys"

    # ---- writing -----------------------------------------------------------------------------------------
    def _stored_record(self, rec: RequestRecord) -> RequestRecord:
        """The record as it is kept and counted: bodies truncated or dropped, amounts in whole micro-dollars,
        counts as non-negative ints (a negative count is a bug upstream; it must not reduce anyone's usage)."""
        keep = self._store_bodies

        def usd(amount: Any) -> Any:
            amount = quantize_usd(amount)
            return amount if amount is None or amount >= 0 else quantize_usd(Decimal(0))

        return dataclasses.replace(
            rec,
            status=int(rec.status),
            prompt_tokens=max(0, int(rec.prompt_tokens or 0)),
            completion_tokens=max(0, int(rec.completion_tokens or 0)),
            saved_tokens=max(0, int(rec.saved_tokens or 0)),
            cost_usd=usd(rec.cost_usd),
            saved_cost_usd=usd(rec.saved_cost_usd),
            request_body=truncate_body(rec.request_body, self._max_body) if keep else None,
            response_body=truncate_body(rec.response_body, self._max_body) if keep else None,
            error_message=truncate_body(rec.error_message, min(self._max_body, 2048)),
        )

    def _increments(self, rec: RequestRecord) -> list[tuple[str, int]]:
        status = rec.status
        latency = float(rec.latency_ms or 0.0)
        values = {
            "requests": 1,
            "errors": 1 if status >= 400 else 0,
            "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens,
            "cost_micros": cost_to_micros(rec.cost_usd),
            "unpriced_requests": 1 if rec.unpriced else 0,
            "cache_hits": 1 if rec.cache in CACHE_HITS else 0,
            "cache_misses": 1 if rec.cache == "miss" else 0,
            "saved_tokens": rec.saved_tokens,
            "saved_cost_micros": cost_to_micros(rec.saved_cost_usd),
            "streams": 1 if rec.stream else 0,
            "client_disconnects": 1 if rec.client_disconnected else 0,
            "counted_usage": 1 if rec.usage_source == "counted" else 0,
            "latency_ms_sum": int(round(latency)) if latency == latency and latency > 0 else 0,
        }
        cell = f"m:{_esc(rec.model or NO_NAME)}|p:{_esc(rec.provider or NO_NAME)}|"
        out = [(cell + name, v) for name, v in values.items() if v]
        out.append((cell + BUCKET_FIELDS[bucket_index(latency)], 1))
        return out

    def _prepare(self, rec: RequestRecord) -> tuple[str, str, list[Any]]:
        """(key id, canonical proxy id, EVALSHA arguments) for one record. Raises ``ValueError`` if malformed."""
        pid = canonical_proxy_id(rec.proxy_id)
        if pid is None:
            raise ValueError(f"proxy_id is not a UUID: {rec.proxy_id!r}")
        if not math.isfinite(float(rec.created_at)):
            raise ValueError("created_at is not a finite timestamp")
        kid = rec.key_id or ANONYMOUS
        day = utc_day(rec.created_at)
        expire_at = _day_start(day) + _DAY + self._usage_ttl
        stored = self._stored_record(rec)
        args: list[Any] = [stored.to_json(), self._log_ttl, expire_at, rec.user_id or ""]
        for field, inc in self._increments(stored):  # counted from exactly what is logged
            args.extend((field, inc))
        return kid, pid, [_RECORD_SHA, 2, self.log_key(kid, pid), self.day_key(kid, day), *args]

    def _run(self, prepared: list[tuple[str, str, list[Any]]]) -> list[bool]:
        """Run the record script for each prepared record, then the index writes.

        Standalone Redis: one pipeline round trip for all of it. Redis Cluster (whose client pipelines refuse
        scripts): one script call per record, each routed to its key's slot, then one pipeline for the index.
        Returns, per record, whether it was new. Raises ``redis.RedisError``.
        """
        pipe = self._r.pipeline(transaction=False)
        if self._cluster:
            counted = [bool(self._script(keys=a[2:4], args=a[4:], client=self._r)) for _, _, a in prepared]
            offset = 0
        else:
            for _, _, evalsha_args in prepared:
                pipe.evalsha(*evalsha_args)
            counted = [False] * len(prepared)
            offset = len(prepared)
        for kid, pid, _ in prepared:
            pipe.set(self.index_key(pid), kid, ex=self._log_ttl)
        pipe.sadd(self.keys_set, *sorted({kid for kid, _, _ in prepared}))
        results = pipe.execute(raise_on_error=False)
        retry: list[int] = []
        if not self._cluster:
            for i, res in enumerate(results[:offset]):
                if isinstance(res, redis_lib.exceptions.NoScriptError):
                    retry.append(i)
                elif isinstance(res, Exception):
                    raise res
                else:
                    counted[i] = bool(res)
        for res in results[offset:]:
            if isinstance(res, Exception):  # only the lookup index: the accounting above stands
                self._fail("record-index", res, "index write")
        if retry:  # script cache empty (restart, failover): load it once and run those again
            self._r.script_load(_RECORD_LUA)
            pipe = self._r.pipeline(transaction=False)
            for i in retry:
                pipe.evalsha(*prepared[i][2])
            for i, res in zip(retry, pipe.execute()):
                counted[i] = bool(res)
        return counted

    def _fail(self, operation: str, exc: BaseException, detail: str) -> None:
        log.error("usage store %s failed (%s): %s: %s", operation, detail, type(exc).__name__, exc)
        if self._on_error is not None:
            try:
                self._on_error(operation, exc)
            except Exception:  # a broken metric hook must not break the request either
                log.exception("usage on_error hook failed")

    def record(self, rec: RequestRecord) -> bool:
        """Store ``rec`` and count it, atomically, once per ``proxy_id``.

        Returns True when this call stored and counted it; False for a duplicate ``proxy_id`` (nothing
        changes) or on any failure, which is logged and reported to ``on_error`` — never raised, since this
        runs on the request path.
        """
        try:
            return self._run([self._prepare(rec)])[0]
        except Exception as exc:  # noqa: BLE001 - by contract nothing escapes into the request
            self._fail("record", exc, f"proxy_id={getattr(rec, 'proxy_id', None)!r}")
            return False

    def record_many(self, records: Iterable[RequestRecord], *, batch_size: int = 500) -> int:
        """``record`` for many records (backfill, import, benchmarks), pipelined ``batch_size`` at a time.

        Each record is still its own atomic, idempotent step. Returns how many were newly counted;
        malformed records and failed batches are logged and reported to ``on_error``, never raised.
        """
        counted = 0
        batch: list[tuple[str, str, list[Any]]] = []

        def flush() -> int:
            try:
                return sum(self._run(batch))
            except Exception as exc:  # noqa: BLE001
                self._fail("record_many", exc, f"batch of {len(batch)}")
                return 0

        for rec in records:
            try:
                batch.append(self._prepare(rec))
            except Exception as exc:  # noqa: BLE001
                self._fail("record_many", exc, f"proxy_id={getattr(rec, 'proxy_id', None)!r}")
                continue
            if len(batch) >= batch_size:
                counted += flush()
                batch = []
        if batch:
            counted += flush()
        return counted

    # ---- reading -----------------------------------------------------------------------------------------
    def get_log(self, proxy_id: str, *, key_id: str | None) -> RequestRecord | None:
        """The stored log of ``proxy_id``, or None when it does not exist, is not a UUID or is not ``key_id``'s.

        ``key_id`` None means the master key: the log is found through the index whatever key made it.
        Raises ``ServiceUnavailable`` when Redis fails.
        """
        pid = canonical_proxy_id(proxy_id)
        if pid is None or key_id == "":
            return None
        try:
            if key_id is None:
                owner = self._r.get(self.index_key(pid))
                if owner is None:
                    return None
                key_id = _text(owner)
            raw = self._r.get(self.log_key(key_id, pid))
        except redis_lib.RedisError as exc:
            raise ServiceUnavailable("The request log store is unavailable") from exc
        if raw is None:
            return None
        try:
            return RequestRecord.from_json(raw)
        except ValueError:
            log.error("unreadable request log %s", pid)
            return None

    def key_ids(self) -> list[str]:
        """Every key id that has recorded usage (sorted). Raises ``ServiceUnavailable`` when Redis fails."""
        try:
            return sorted(_text(m) for m in self._r.smembers(self.keys_set))
        except redis_lib.RedisError as exc:
            raise ServiceUnavailable("The usage store is unavailable") from exc

    def _range(self, start: date | None, end: date | None) -> list[date]:
        if isinstance(start, datetime):
            start = start.date()
        if isinstance(end, datetime):
            end = end.date()
        end = end or utc_day(self._clock())
        start = start or end - timedelta(days=29)
        if start > end:
            raise InvalidValue("start must not be after end", param="start")
        span = (end - start).days + 1
        if span > MAX_RANGE_DAYS:
            raise InvalidValue(f"A usage range may cover at most {MAX_RANGE_DAYS} days", param="start")
        return [start + timedelta(days=i) for i in range(span)]

    def _read_hashes(self, pairs: list[tuple[str, date]]) -> list[dict]:
        out: list[dict] = []
        try:
            for i in range(0, len(pairs), _CHUNK):
                pipe = self._r.pipeline(transaction=False)
                for kid, day in pairs[i:i + _CHUNK]:
                    pipe.hgetall(self.day_key(kid, day))
                out.extend(pipe.execute())
        except redis_lib.RedisError as exc:
            raise ServiceUnavailable("The usage store is unavailable") from exc
        return out

    def usage(
        self,
        *,
        key_ids: list[str] | None = None,
        user_id: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> dict[str, Any]:
        """Usage totals for the given keys (None = every key: admin) over UTC days ``start``..``end``.

        Default range: the 30 days ending today (UTC). Filters: ``user_id``, resolved ``model`` and
        ``provider`` (``"-"`` matches requests that never reached one). Returns ``{"start", "end", "filters",
        "totals", "by_day" (every day in range), "by_model", "by_provider", "by_key", "latency_buckets_ms"}``,
        each group holding the numbers of ``metrics_from_slots``; money as decimal strings. Reads counters
        only. Raises ``InvalidValue`` on a reversed or too long range, ``ServiceUnavailable`` when Redis fails.
        """
        days = self._range(start, end)
        ids = sorted(set(key_ids)) if key_ids is not None else self.key_ids()
        pairs = [(kid, day) for kid in ids for day in days]
        hashes = self._read_hashes(pairs)

        by_day = {d.isoformat(): [0] * _NSLOTS for d in days}
        by_key: dict[str, list[int]] = {}
        by_field: dict[Any, int] = {}  # raw field name -> sum over every hash read: feeds model/provider
        # field name -> (model, provider, slot), or None for fields that are not counters or are filtered out
        info: dict[Any, tuple[str, str, int] | None] = {}
        want_user = None if user_id is None else user_id.encode()

        # The hot loop of the admin view (keys x days x ~100 fields): a few dict/list operations per field.
        for (kid, day), fields in zip(pairs, hashes):
            if not fields:
                continue
            if want_user is not None:
                owner = fields.get(b"user_id", fields.get("user_id"))
                if owner is None or (owner if isinstance(owner, bytes) else owner.encode()) != want_user:
                    continue
            day_vec = by_day[day.isoformat()]
            key_vec = by_key.get(kid)
            if key_vec is None:
                key_vec = by_key[kid] = [0] * _NSLOTS
            for name, raw in fields.items():
                try:
                    parsed = info[name]
                except KeyError:
                    parsed = info[name] = self._parse_field(_text(name), model, provider)
                if parsed is None:
                    continue
                value = int(raw)
                slot = parsed[2]
                day_vec[slot] += value
                key_vec[slot] += value
                by_field[name] = by_field.get(name, 0) + value

        totals = [0] * _NSLOTS
        by_model: dict[str, list[int]] = {}
        by_provider: dict[str, list[int]] = {}
        for name, value in by_field.items():
            m, p, slot = info[name]  # type: ignore[misc]
            totals[slot] += value
            by_model.setdefault(m, [0] * _NSLOTS)[slot] += value
            by_provider.setdefault(p, [0] * _NSLOTS)[slot] += value
        by_key = {kid: vec for kid, vec in by_key.items() if vec[0]}  # keys whose hashes all were filtered out

        def table(groups: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
            return {name: metrics_from_slots(groups[name]) for name in sorted(groups)}

        return {
            "start": days[0].isoformat(),
            "end": days[-1].isoformat(),
            "filters": {"key_ids": key_ids, "user_id": user_id, "model": model, "provider": provider},
            "totals": metrics_from_slots(totals),
            "by_day": {d: metrics_from_slots(v) for d, v in by_day.items()},
            "by_model": table(by_model),
            "by_provider": table(by_provider),
            "by_key": table(by_key),
            "latency_buckets_ms": [b if math.isfinite(b) else "+Inf" for b in LATENCY_BUCKETS_MS],
        }

    @staticmethod
    def _parse_field(name: str, model: str | None, provider: str | None) -> tuple[str, str, int] | None:
        """(model, provider, slot) of a counter field name; None for other fields and filtered-out ones."""
        parts = name.split("|")
        if len(parts) != 3 or not parts[0].startswith("m:") or not parts[1].startswith("p:"):
            return None
        slot = _SLOTS.get(parts[2])
        m, p = _unesc(parts[0][2:]), _unesc(parts[1][2:])
        if slot is None or (model is not None and m != model) or (provider is not None and p != provider):
            return None
        return m, p, slot
