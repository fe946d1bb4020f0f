"""UsageStore against a real Redis: one atomic, idempotent log+count step; owner-only logs; counter queries."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lib import store as redis_store
from lib.errors import InvalidValue, ServiceUnavailable
from lib.accounting.money import to_micros as usd_to_micros
from lib.records.requestlog import RequestRecord
from lib.records.histogram import LATENCY_BUCKETS_MS, bucket_index, percentile_from_buckets
from lib.records.usage import ANONYMOUS, UsageStore

# noon UTC of the real today: the counters' EXPIREAT is absolute, so the fake clock must not be in the past
_today = datetime.now(timezone.utc).date()
NOW = datetime(_today.year, _today.month, _today.day, 12, 0, tzinfo=timezone.utc).timestamp()
DAY = 86400


def make_store(redis_client, key_prefix, **kw) -> UsageStore:
    kw.setdefault("clock", lambda: NOW)
    return UsageStore(redis_client, prefix=key_prefix, **kw)


def rec(**over) -> RequestRecord:
    base = dict(
        proxy_id=str(uuid.uuid4()), created_at=NOW - 60, endpoint="/v1/chat/completions", key_id="key_a",
        user_id="alice", requested_model="gpt-4o-mini", model="gpt-4o-mini", provider="openai", status=200,
        latency_ms=420.0, prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.0000045"),
        usage_source="provider", cache="miss", request_body="hello", response_body="world",
    )
    base.update(over)
    return RequestRecord(**base)


def test_concurrent_records_totals_equal_sum_of_logs(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    rng = random.Random(7)
    keys = {"key_a": "alice", "key_b": "bob", "key_c": "carol"}
    models = [("gpt-4o-mini", "openai"), ("claude-sonnet", "anthropic"), ("gemini-1.5-pro", "gemini")]
    records = []
    for i in range(100):
        kid = rng.choice(sorted(keys))
        model, provider = rng.choice(models)
        cached = rng.random() < 0.2
        records.append(rec(
            key_id=kid, user_id=keys[kid], model=model, provider=provider,
            created_at=NOW - rng.randrange(0, 5 * DAY), status=rng.choice([200, 200, 200, 429, 502]),
            prompt_tokens=rng.randrange(0, 5000), completion_tokens=rng.randrange(0, 2000),
            # up to 12 decimal places, so per-request rounding to micro-dollars really happens
            cost_usd=None if i % 17 == 0 else Decimal(rng.randrange(0, 10**10)) / Decimal(10**12),
            unpriced=i % 17 == 0, cache="hit-semantic" if cached else rng.choice(["miss", "bypass"]),
            saved_tokens=rng.randrange(1, 900) if cached else 0,
            saved_cost_usd=Decimal(rng.randrange(1, 10**8)) / Decimal(10**11) if cached else None,
            latency_ms=rng.uniform(1, 40000), stream=rng.random() < 0.5,
        ))
    results: list[bool] = []
    lock = threading.Lock()

    def worker(chunk):
        for r in chunk:
            ok = store.record(r)
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=worker, args=(records[i::10],)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 100

    logs = [store.get_log(r.proxy_id, key_id=None) for r in records]
    assert all(log is not None for log in logs)
    report = store.usage()
    tot = report["totals"]
    assert tot["requests"] == 100
    assert tot["errors"] == sum(1 for g in logs if g.status >= 400)
    assert tot["prompt_tokens"] == sum(g.prompt_tokens for g in logs)
    assert tot["completion_tokens"] == sum(g.completion_tokens for g in logs)
    assert tot["total_tokens"] == tot["prompt_tokens"] + tot["completion_tokens"]
    assert Decimal(tot["cost_usd"]) == sum((g.cost_usd or Decimal(0) for g in logs), Decimal(0))
    assert Decimal(tot["saved_cost_usd"]) == sum((g.saved_cost_usd or Decimal(0) for g in logs), Decimal(0))
    assert tot["saved_tokens"] == sum(g.saved_tokens for g in logs)
    assert tot["unpriced_requests"] == sum(1 for g in logs if g.unpriced)
    assert tot["cache_hits"] == sum(1 for g in logs if g.cache == "hit-semantic")
    assert tot["streams"] == sum(1 for g in logs if g.stream)
    # the logged cost is the input rounded to whole micro-dollars, nothing else
    for r, g in zip(records, logs):
        assert usd_to_micros(g.cost_usd) == usd_to_micros(r.cost_usd)
    # per key, per model, per day: each view adds up to the same totals
    for kid in keys:
        mine = [g for g in logs if g.key_id == kid]
        own = store.usage(key_ids=[kid])["totals"]
        assert own["requests"] == len(mine)
        assert Decimal(own["cost_usd"]) == sum((g.cost_usd or Decimal(0) for g in mine), Decimal(0))
        assert report["by_key"][kid]["requests"] == len(mine)
    for view in ("by_day", "by_model", "by_provider", "by_key"):
        assert sum(v["requests"] for v in report[view].values()) == 100
        assert sum(Decimal(v["cost_usd"]) for v in report[view].values()) == Decimal(tot["cost_usd"])
    assert sorted(store.key_ids()) == sorted(keys)


def test_duplicate_record_is_not_double_counted(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    r = rec(prompt_tokens=100, completion_tokens=50, cost_usd=Decimal("0.25"))
    assert store.record(r) is True
    assert store.record(r) is False
    changed = rec(proxy_id=r.proxy_id.upper(), prompt_tokens=999)  # same id, other spelling, other numbers
    assert store.record(changed) is False
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(store.record(r))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [False] * 8
    tot = store.usage(key_ids=["key_a"])["totals"]
    assert (tot["requests"], tot["prompt_tokens"], tot["cost_usd"]) == (1, 100, "0.250000")
    assert store.get_log(r.proxy_id, key_id="key_a").prompt_tokens == 100


def test_concurrent_first_records_of_one_id_count_once(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    r = rec()
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def go():
        barrier.wait()
        results.append(store.record(r))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert store.usage()["totals"]["requests"] == 1


def test_log_access_owner_other_key_master_and_bad_ids(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    r = rec(key_id="key_owner")
    assert store.record(r)
    assert store.get_log(r.proxy_id, key_id="key_owner") == store._stored_record(r)
    assert store.get_log(r.proxy_id.upper(), key_id="key_owner") is not None  # any UUID spelling
    assert store.get_log(r.proxy_id, key_id="key_other") is None
    assert store.get_log(r.proxy_id, key_id="") is None
    assert store.get_log(r.proxy_id, key_id=None).key_id == "key_owner"  # master, through the index
    for bad in ("not-a-uuid", "", "*", "../" + r.proxy_id, r.proxy_id + "}", "{" + r.proxy_id + "}",
                "urn:uuid:" + r.proxy_id, r.proxy_id.replace("-", ""), r.proxy_id + "\n", "x" * 500):
        assert store.get_log(bad, key_id=None) is None
        assert store.get_log(bad, key_id="key_owner") is None
    unknown = str(uuid.uuid4())
    assert store.get_log(unknown, key_id=None) is None
    assert store.get_log(unknown, key_id="key_owner") is None


def test_anonymous_requests_are_logged_and_counted(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    r = rec(key_id=None, user_id=None, model=None, provider=None, status=401, error_code="missing_api_key",
            prompt_tokens=0, completion_tokens=0, cost_usd=None, cache=None)
    assert store.record(r)
    assert store.get_log(r.proxy_id, key_id=None).error_code == "missing_api_key"
    assert store.get_log(r.proxy_id, key_id="key_a") is None
    report = store.usage(key_ids=[ANONYMOUS])
    assert report["totals"]["requests"] == 1 and report["totals"]["errors"] == 1
    assert list(report["by_model"]) == ["-"] and list(report["by_provider"]) == ["-"]
    assert store.key_ids() == [ANONYMOUS]


def test_retention_ttl_on_log_index_and_counters(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix, retention_days=7, usage_retention_days=90)
    r = rec()
    assert store.record(r)
    log_ttl = redis_client.ttl(store.log_key("key_a", r.proxy_id))
    idx_ttl = redis_client.ttl(store.index_key(r.proxy_id))
    assert 7 * DAY - 5 <= log_ttl <= 7 * DAY
    assert 7 * DAY - 5 <= idx_ttl <= 7 * DAY
    day = datetime.fromtimestamp(r.created_at, tz=timezone.utc).date()
    day_end = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() + DAY
    expected = day_end + 90 * DAY - time.time()  # EXPIREAT: 90 days after the end of the request's day
    assert expected - 5 <= redis_client.ttl(store.day_key("key_a", day)) <= expected + 1


def test_bodies_truncated_or_not_stored(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix, max_body_chars=100)
    long = "q" * 1000
    r = rec(request_body=long, response_body="short answer", error_message="e" * 5000)
    assert store.record(r)
    got = store.get_log(r.proxy_id, key_id="key_a")
    assert got.request_body.startswith("q" * 100) and "truncated 900 of 1000" in got.request_body
    assert got.response_body == "short answer"
    assert len(got.error_message) < 200
    off = make_store(redis_client, key_prefix + "off:", store_bodies=False)
    r2 = rec(request_body=long, response_body="answer")
    assert off.record(r2)
    got2 = off.get_log(r2.proxy_id, key_id="key_a")
    assert got2.request_body is None and got2.response_body is None
    assert got2.prompt_tokens == r2.prompt_tokens
    raw = redis_client.get(off.log_key("key_a", r2.proxy_id))
    assert b"qqqq" not in raw and b"answer" not in raw


def test_filters_model_provider_dates_user(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    today = datetime.fromtimestamp(NOW, tz=timezone.utc).date()
    rows = [
        rec(key_id="key_a", user_id="alice", model="gpt-4o-mini", provider="openai", created_at=NOW, prompt_tokens=1),
        rec(key_id="key_a", user_id="alice", model="gpt-4o-mini", provider="azure", created_at=NOW, prompt_tokens=2),
        rec(key_id="key_b", user_id="bob", model="claude|v2", provider="anthropic", created_at=NOW - DAY,
            prompt_tokens=4),
        rec(key_id="key_b", user_id="bob", model="gpt-4o-mini", provider="openai", created_at=NOW - 10 * DAY,
            prompt_tokens=8),
        rec(key_id="key_c", user_id="alice", model="gpt-4o-mini", provider="openai", created_at=NOW - 40 * DAY,
            prompt_tokens=16),
    ]
    assert store.record_many(rows, batch_size=2) == 5

    def tokens(**kw) -> int:
        return store.usage(**kw)["totals"]["prompt_tokens"]

    assert tokens() == 1 + 2 + 4 + 8  # default range: last 30 days
    assert tokens(start=today - timedelta(days=45)) == 31
    assert tokens(model="gpt-4o-mini") == 1 + 2 + 8
    assert tokens(model="claude|v2") == 4  # a '|' in a model name survives the field encoding
    assert tokens(provider="openai") == 1 + 8
    assert tokens(model="gpt-4o-mini", provider="azure") == 2
    assert tokens(user_id="alice") == 3
    assert tokens(user_id="alice", start=today - timedelta(days=45)) == 19
    assert tokens(user_id="nobody") == 0
    assert tokens(key_ids=["key_b"]) == 12
    assert tokens(key_ids=["key_b"], start=today - timedelta(days=1), end=today - timedelta(days=1)) == 4
    assert tokens(key_ids=["key_zzz"]) == 0
    assert tokens(key_ids=[]) == 0
    report = store.usage(end=today, start=today - timedelta(days=2))
    assert list(report["by_day"]) == [(today - timedelta(days=i)).isoformat() for i in (2, 1, 0)]
    assert report["by_day"][(today - timedelta(days=2)).isoformat()]["requests"] == 0
    assert report["by_day"][today.isoformat()]["prompt_tokens"] == 3
    assert set(report["by_model"]) == {"gpt-4o-mini", "claude|v2"}
    assert report["by_provider"]["azure"]["prompt_tokens"] == 2
    with pytest.raises(InvalidValue):
        store.usage(start=today, end=today - timedelta(days=1))
    with pytest.raises(InvalidValue):
        store.usage(start=date(2000, 1, 1), end=today)


def test_latency_percentiles_from_buckets(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    rows = [rec(latency_ms=40.0) for _ in range(90)] + [rec(latency_ms=2000.0) for _ in range(10)]
    assert store.record_many(rows) == 100
    lat = store.usage()["totals"]["latency_ms"]
    assert 25 < lat["p50"] <= 50
    assert 1000 < lat["p95"] <= 2500
    assert lat["mean"] == pytest.approx((90 * 40 + 10 * 2000) / 100)


def test_percentile_helpers():
    assert bucket_index(0) == 0 and bucket_index(5) == 0 and bucket_index(5.01) == 1
    assert bucket_index(-3) == 0 and bucket_index(float("nan")) == 0
    assert bucket_index(10**9) == len(LATENCY_BUCKETS_MS) - 1
    counts = [0] * len(LATENCY_BUCKETS_MS)
    assert percentile_from_buckets(counts, 0.5) is None
    counts[bucket_index(300)] = 100  # all in (250, 500]
    assert percentile_from_buckets(counts, 0.5) == 375.0
    assert percentile_from_buckets(counts, 0.95) == pytest.approx(487.5)
    only_inf = [0] * len(LATENCY_BUCKETS_MS)
    only_inf[-1] = 3
    assert percentile_from_buckets(only_inf, 0.5) == 60000.0  # a lower bound, the histogram is open


def test_lost_script_cache_is_reloaded(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    assert store.record(rec())
    redis_client.script_flush()
    assert store.record(rec())
    assert store.record_many([rec(), rec()]) == 2
    assert store.usage()["totals"]["requests"] == 4


def test_redis_down_never_raises_from_record():
    dead = redis.Redis(host="127.0.0.1", port=redis_store.free_port(), socket_connect_timeout=0.2,
                       socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    seen: list[tuple[str, str]] = []
    store = UsageStore(dead, prefix="x:", clock=lambda: NOW,
                       on_error=lambda op, exc: seen.append((op, type(exc).__name__)))
    assert store.record(rec()) is False
    assert seen and seen[0][0] == "record"
    assert store.record_many([rec()]) == 0
    with pytest.raises(ServiceUnavailable):
        store.usage(key_ids=["key_a"])
    with pytest.raises(ServiceUnavailable):
        store.get_log(str(uuid.uuid4()), key_id=None)


def test_negative_counts_are_clamped_in_log_and_counters_alike(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    r = rec(prompt_tokens=-50, completion_tokens=7, cost_usd=Decimal("-1.5"), saved_tokens=-3)
    assert store.record(r)
    got = store.get_log(r.proxy_id, key_id="key_a")
    assert (got.prompt_tokens, got.completion_tokens, got.cost_usd, got.saved_tokens) == (0, 7, Decimal(0), 0)
    tot = store.usage()["totals"]
    assert (tot["prompt_tokens"], tot["completion_tokens"], tot["cost_usd"], tot["saved_tokens"]) == (
        0, 7, "0.000000", 0)


def test_malformed_record_is_reported_not_raised(redis_client, key_prefix):
    errors: list[str] = []
    store = make_store(redis_client, key_prefix, on_error=lambda op, exc: errors.append(op))
    assert store.record(rec(proxy_id="nope")) is False
    assert errors == ["record"]
    assert store.usage()["totals"]["requests"] == 0
