"""The request log and the usage counters, written together in one atomic Redis step.

``UsageStore.record`` runs one Lua script per request that (1) stores the log with ``SET NX EX`` and (2) only
when that log is new, adds the request to the counters. So a request is counted exactly once (a retried
``record`` for the same ``proxy_id`` changes nothing) and usage totals always equal the sum of the logs.

Redis layout (``P`` = prefix, ``K`` = key id, or ``anonymous`` for requests with no key). Everything the
script writes carries the hash tag ``{K}``, so it lives in one Cluster slot::

    P log:{K}:<proxy_id>     STRING  the RequestRecord as JSON; TTL retention_days
    P usage:{K}:<YYYY-MM-DD> HASH    one UTC day of key K: field "m:<model>|p:<provider>|<counter>" -> int,
                                     or "m:<model>|p:<provider>|r:<requested>|<counter>" when the name the
                                     client asked for differs from the model that answered (an alias, a
                                     fallback, the sandbox standing in); plus "user_id"; expires
                                     usage_retention_days after that day
    P logidx:<proxy_id>      STRING  -> K, so the master can read a log by id alone (same TTL as the log)
    P usage:keys             SET     key ids that have usage, for admin totals

The index and the key set are written right after the script, in the same round trip (a pipeline), but
outside the atomic step: they are idempotent lookups, not accounting.

Counters per (day, model, provider, requested model): see ``COUNTERS``; each request adds to exactly one
cell, so every grouping (by answering model, by requested model, by provider) sums to the same totals;
``cost_micros`` / ``saved_cost_micros`` are integer micro-dollars from ``lib.accounting.money.to_micros``
(the one money conversion). Latency is a histogram (``lib.records.histogram``). Reports (``usage()``,
``lib.records.report``) read only these hashes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lib.accounting.money import quantize_usd, to_micros
from lib.records.histogram import BUCKET_FIELDS, bucket_index
from lib.records.requestlog import CACHE_HITS, RequestRecord, truncate_body
from lib.store import ScriptCall, run_scripts, store_errors

if TYPE_CHECKING:
    import redis

log = logging.getLogger("aiproxy.usage")

ANONYMOUS = "anonymous"
NO_NAME = "-"  # model / provider of a request that never got that far (auth failure, bad JSON)
COUNTERS: tuple[str, ...] = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "cost_micros", "unpriced_requests",
    "cache_hits", "cache_misses", "saved_tokens", "saved_cost_micros", "streams", "client_disconnects",
    "counted_usage", "latency_ms_sum",
)
#: Position of each counter (and latency bucket) in a report's counter vector.
SLOTS = {name: i for i, name in enumerate(COUNTERS + BUCKET_FIELDS)}
NSLOTS = len(SLOTS)
USAGE_RETENTION_DAYS = 400
_DAY = 86400
_UUID_RE = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")  # commands per pipeline flush when reading

# KEYS[1] log key, KEYS[2] day hash, KEYS[3] the key's log list. ARGV: 1 log JSON, 2 log TTL (s), 3 day hash
# EXPIREAT, 4 user_id or "", 5 created ms, 6 proxy id, 7 oldest ms still kept, then (field, increment) pairs.
# Returns 1 when the log was new and counted, 0 for a duplicate proxy_id.
_RECORD_LUA = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
for i = 8, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'user_id', ARGV[4]) end
redis.call('EXPIREAT', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
"""


def escape(name: str) -> str:
    # '|' separates the parts of a field name; escape it (and the escape char) in model/provider names.
    return name.replace("%", "%25").replace("|", "%7C")


def unescape(name: str) -> str:
    return name.replace("%7C", "|").replace("%25", "%")


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def canonical_proxy_id(proxy_id: Any) -> str | None:
    """The canonical lower-case form of a hyphenated UUID string (any case), else ``None``."""
    if not isinstance(proxy_id, str) or not _UUID_RE.match(proxy_id):
        return None
    return proxy_id.lower()  # the pattern admits only the hyphenated form, so lower case is canonical


def utc_day(ts: float) -> date:
    """The UTC calendar day of epoch seconds ``ts``."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).date()


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


class UsageStore:
    """Request logs and usage counters in Redis; see the module docstring for the layout.

    ``retention_days`` is the lifetime of logs (and their index); ``usage_retention_days`` that of the daily
    counters, which are small and outlive the logs. ``on_error(operation, exc)`` is called for every failure
    that ``record`` swallows (hook a metric there). Key ids must not be the literal ``"anonymous"``.
    """

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str,
        retention_days: int = 30,
        store_bodies: bool = True,
        max_body_chars: int = 8192,
        clock: Callable[[], float] = time.time,
        usage_retention_days: int = USAGE_RETENTION_DAYS,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        if retention_days < 1 or usage_retention_days < 1:
            raise ValueError("retention must be at least one day")
        self.redis = redis
        self._prefix = prefix
        self._log_ttl = int(retention_days) * _DAY
        self._usage_ttl = int(usage_retention_days) * _DAY
        self._store_bodies = store_bodies
        self._max_body = int(max_body_chars)
        self.clock = clock
        self._on_error = on_error
        self._script = redis.register_script(_RECORD_LUA)

    # ---- key names -------------------------------------------------------------------------------------
    def log_key(self, key_id: str, proxy_id: str) -> str:
        """Redis key of one log (``proxy_id`` canonical)."""
        return f"{self._prefix}log:{{{key_id}}}:{proxy_id}"

    def day_key(self, key_id: str, day: date) -> str:
        """Redis key of the counter hash of ``key_id`` on UTC ``day``."""
        return f"{self._prefix}usage:{{{key_id}}}:{day.isoformat()}"

    def list_key(self, key_id: str) -> str:
        """Redis key of ``key_id``'s logs by time (ZSET proxy_id → created ms), written with the log."""
        return f"{self._prefix}logs:{{{key_id}}}"

    @property
    def all_key(self) -> str:
        """Redis key of every log by time (ZSET "<key id>|<proxy_id>" → created ms), for the admin view."""
        return f"{self._prefix}logs:all"

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

        return dataclasses.replace(  # copies the record once (about as cheap as building it anew)
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
            upstream_error=truncate_body(rec.upstream_error, min(self._max_body, 2048)) if keep else None,
        )

    def _increments(self, rec: RequestRecord) -> list[tuple[str, int]]:
        status = rec.status
        latency = float(rec.latency_ms or 0.0)
        values = {
            "requests": 1,
            "errors": 1 if status >= 400 else 0,
            "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens,
            "cost_micros": to_micros(rec.cost_usd),
            "unpriced_requests": 1 if rec.unpriced else 0,
            "cache_hits": 1 if rec.cache in CACHE_HITS else 0,
            "cache_misses": 1 if rec.cache == "miss" else 0,
            "saved_tokens": rec.saved_tokens,
            "saved_cost_micros": to_micros(rec.saved_cost_usd),
            "streams": 1 if rec.stream else 0,
            "client_disconnects": 1 if rec.client_disconnected else 0,
            "counted_usage": 1 if rec.usage_source == "counted" else 0,
            "latency_ms_sum": int(round(latency)) if latency == latency and latency > 0 else 0,
        }
        model = rec.model or NO_NAME
        cell = f"m:{escape(model)}|p:{escape(rec.provider or NO_NAME)}|"
        requested = rec.requested_model or model
        if requested != model:  # the name asked for, as a second dimension of the same cell (never counted twice)
            cell += f"r:{escape(requested)}|"
        out = [(cell + name, v) for name, v in values.items() if v]
        out.append((cell + BUCKET_FIELDS[bucket_index(latency)], 1))
        return out

    def _prepare(self, rec: RequestRecord) -> tuple[str, str, tuple[list[str], list[Any]]]:
        """(key id, canonical proxy id, script keys and args) for one record. Raises ``ValueError`` if malformed."""
        pid = canonical_proxy_id(rec.proxy_id)
        if pid is None:
            raise ValueError(f"proxy_id is not a UUID: {rec.proxy_id!r}")
        if not math.isfinite(float(rec.created_at)):
            raise ValueError("created_at is not a finite timestamp")
        kid = rec.key_id or ANONYMOUS
        day = utc_day(rec.created_at)
        expire_at = _day_start(day) + _DAY + self._usage_ttl
        stored = self._stored_record(rec)
        created_ms = int(float(rec.created_at) * 1000)
        args: list[Any] = [stored.to_json(), self._log_ttl, expire_at, rec.user_id or "", created_ms, pid,
                           int((self.clock() - self._log_ttl) * 1000)]
        for field, inc in self._increments(stored):  # counted from exactly what is logged
            args.extend((field, inc))
        return kid, pid, ([self.log_key(kid, pid), self.day_key(kid, day), self.list_key(kid)], args)

    def _run(self, prepared: list[tuple[str, str, tuple[list[str], list[Any]]]],
             before: list[ScriptCall] | None = None) -> tuple[list[bool], list[object]]:
        """Run ``before`` (e.g. the request's settlement), then the record script for each prepared record, then
        the index writes, in as few round trips as the Redis mode allows (``lib.store.run_scripts``). Returns,
        per record, whether it was new, and the results of ``before``. Raises ``StoreUnavailable``."""

        def index(pipe: Any) -> None:
            for kid, pid, (_, args) in prepared:
                pipe.set(self.index_key(pid), kid, ex=self._log_ttl)
                pipe.zadd(self.all_key, {f"{kid}|{pid}": args[4]})
            pipe.zremrangebyscore(self.all_key, "-inf", f"({prepared[0][2][1][6]}")
            pipe.sadd(self.keys_set, *sorted({kid for kid, _, _ in prepared}))

        first = list(before or [])
        calls = first + [ScriptCall(self._script, keys, args) for _, _, (keys, args) in prepared]
        with store_errors("usage record"):
            results, rest = run_scripts(self.redis, calls, index)
        for res in rest:
            if isinstance(res, Exception):  # only the lookup index: the accounting above stands
                self._fail("record-index", res, "index write")
        return [bool(c) for c in results[len(first):]], results[:len(first)]

    def _fail(self, operation: str, exc: BaseException, detail: str) -> None:
        log.error("usage store %s failed (%s): %s: %s", operation, detail, type(exc).__name__, exc)
        if self._on_error is not None:
            try:
                self._on_error(operation, exc)
            except Exception:  # a broken metric hook must not break the request either
                log.exception("usage on_error hook failed")

    def store(self, rec: RequestRecord, before: list[ScriptCall] | None = None) -> tuple[bool, list[object]]:
        """Store ``rec`` and count it, atomically, once per ``proxy_id``. ``before``: scripts to run first in the
        same round trip (the request's settlement). Returns whether this call stored it (False for a duplicate)
        and the results of ``before``. Raises ``StoreUnavailable`` when Redis fails, ``ValueError`` for a
        malformed record."""
        counted, results = self._run([self._prepare(rec)], before)
        return counted[0], results

    def record(self, rec: RequestRecord) -> bool:
        """Store ``rec`` and count it, atomically, once per ``proxy_id``.

        Returns True when this call stored and counted it; False for a duplicate ``proxy_id`` (nothing
        changes) or on any failure, which is logged and reported to ``on_error`` — never raised, since this
        runs on the request path.
        """
        try:
            return self._run([self._prepare(rec)])[0][0]
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
                return sum(self._run(batch)[0])
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
        with store_errors("log read", "The request log store is unavailable"):
            if key_id is None:
                owner = self.redis.get(self.index_key(pid))
                if owner is None:
                    return None
                key_id = text(owner)
            raw = self.redis.get(self.log_key(key_id, pid))
        if raw is None:
            return None
        try:
            return RequestRecord.from_json(raw)
        except ValueError:
            log.error("unreadable request log %s", pid)
            return None

    def key_ids(self) -> list[str]:
        """Every key id that has recorded usage (sorted). Raises ``ServiceUnavailable`` when Redis fails."""
        with store_errors("usage keys", "The usage store is unavailable"):
            return sorted(text(m) for m in self.redis.smembers(self.keys_set))

    def usage(self, **filters: Any) -> dict[str, Any]:
        """``lib.records.report.usage_report`` for this store (see there)."""
        from lib.records.report import usage_report

        return usage_report(self, **filters)
