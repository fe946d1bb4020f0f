"""Usage reports: totals by day, model, provider and key, read from the daily counter hashes only.

``usage_report`` reads one pipelined ``HGETALL`` per key-day and never scans logs, so its cost depends on
keys x days x models, not on the number of requests.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lib.accounting.money import from_micros
from lib.errors import InvalidValue
from lib.records.histogram import LATENCY_BUCKETS_MS, percentile_from_buckets
from lib.records.usage import COUNTERS, NSLOTS, SLOTS, text, unescape, utc_day
from lib.store import store_errors

if TYPE_CHECKING:
    from lib.records.usage import UsageStore

MAX_RANGE_DAYS = 400
_CHUNK = 2000  # commands per pipeline flush when reading
_UNAVAILABLE = "The usage store is unavailable"


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
        "cost_usd": str(from_micros(c["cost_micros"])),
        "unpriced_requests": c["unpriced_requests"],
        "cache_hits": c["cache_hits"],
        "cache_misses": c["cache_misses"],
        "cache_hit_rate": round(c["cache_hits"] / lookups, 4) if lookups else 0.0,
        "saved_tokens": c["saved_tokens"],
        "saved_cost_usd": str(from_micros(c["saved_cost_micros"])),
        "streams": c["streams"],
        "client_disconnects": c["client_disconnects"],
        "counted_usage_requests": c["counted_usage"],
        "latency_ms": {
            "p50": percentile_from_buckets(buckets, 0.50),
            "p95": percentile_from_buckets(buckets, 0.95),
            "mean": round(c["latency_ms_sum"] / requests, 1) if requests else None,
        },
    }


def _range(store: UsageStore, start: date | None, end: date | None) -> list[date]:
    if isinstance(start, datetime):
        start = start.date()
    if isinstance(end, datetime):
        end = end.date()
    end = end or utc_day(store.clock())
    start = start or end - timedelta(days=29)
    if start > end:
        raise InvalidValue("start must not be after end", param="start")
    span = (end - start).days + 1
    if span > MAX_RANGE_DAYS:
        raise InvalidValue(f"A usage range may cover at most {MAX_RANGE_DAYS} days", param="start")
    return [start + timedelta(days=i) for i in range(span)]


def _read_hashes(store: UsageStore, pairs: list[tuple[str, date]]) -> list[dict]:
    out: list[dict] = []
    with store_errors("usage read", _UNAVAILABLE):
        for i in range(0, len(pairs), _CHUNK):
            pipe = store.redis.pipeline(transaction=False)
            for kid, day in pairs[i:i + _CHUNK]:
                pipe.hgetall(store.day_key(kid, day))
            out.extend(pipe.execute())
    return out


def usage_report(
    store: UsageStore,
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
    "totals", "by_day" (every day in range), "by_model" (the model that answered), "by_requested_model"
    (the name the client asked for), "by_provider", "by_key", "latency_buckets_ms"}``,
    each group holding the numbers of ``metrics_from_slots``; money as decimal strings. Reads counters
    only. Raises ``InvalidValue`` on a reversed or too long range, ``ServiceUnavailable`` when Redis fails.
    """
    days = _range(store, start, end)
    ids = sorted(set(key_ids)) if key_ids is not None else store.key_ids()
    pairs = [(kid, day) for kid in ids for day in days]
    hashes = _read_hashes(store, pairs)

    by_day = {d.isoformat(): [0] * NSLOTS for d in days}
    by_key: dict[str, list[int]] = {}
    by_field: dict[Any, int] = {}  # raw field name -> sum over every hash read: feeds model/provider
    # field name -> (model, provider, requested model, slot), or None for other fields and filtered-out ones
    info: dict[Any, tuple[str, str, str, int] | None] = {}
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
            key_vec = by_key[kid] = [0] * NSLOTS
        for name, raw in fields.items():
            try:
                parsed = info[name]
            except KeyError:
                parsed = info[name] = _parse_field(text(name), model, provider)
            if parsed is None:
                continue
            value = int(raw)
            slot = parsed[3]
            day_vec[slot] += value
            key_vec[slot] += value
            by_field[name] = by_field.get(name, 0) + value

    totals = [0] * NSLOTS
    by_model: dict[str, list[int]] = {}
    by_provider: dict[str, list[int]] = {}
    by_requested: dict[str, list[int]] = {}
    for name, value in by_field.items():
        m, p, r, slot = info[name]  # type: ignore[misc]
        totals[slot] += value
        by_model.setdefault(m, [0] * NSLOTS)[slot] += value
        by_requested.setdefault(r, [0] * NSLOTS)[slot] += value
        by_provider.setdefault(p, [0] * NSLOTS)[slot] += value
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
        "by_requested_model": table(by_requested),
        "by_provider": table(by_provider),
        "by_key": table(by_key),
        "latency_buckets_ms": [b if math.isfinite(b) else "+Inf" for b in LATENCY_BUCKETS_MS],
    }


def _parse_field(name: str, model: str | None, provider: str | None) -> tuple[str, str, str, int] | None:
    """(model, provider, requested model, slot) of a counter field name (``m:<model>|p:<provider>|<counter>``,
    or with ``|r:<requested>`` before the counter when the two names differ); None for other fields and
    filtered-out ones."""
    parts = name.split("|")
    if len(parts) == 4 and parts[2].startswith("r:"):
        requested: str | None = unescape(parts[2][2:])
        del parts[2]
    else:
        requested = None
    if len(parts) != 3 or not parts[0].startswith("m:") or not parts[1].startswith("p:"):
        return None
    slot = SLOTS.get(parts[2])
    m, p = unescape(parts[0][2:]), unescape(parts[1][2:])
    if slot is None or (model is not None and m != model) or (provider is not None and p != provider):
        return None
    return m, p, requested if requested is not None else m, slot
