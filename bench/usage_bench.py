"""Benchmark of the usage store: load 100,000 request logs, then time the usage queries against Redis itself.

    .venv/bin/python bench/usage_bench.py [--requests 100000] [--keys 20] [--days 30] [--runs 20]

Uses ``REDIS_URL`` when set (it writes under a fresh ``bench<hex>:`` prefix and deletes nothing else), else a
private Redis started for the run. Prints the load rate, the latency of one ``record`` (the request path),
and the median of ``--runs`` runs of ``usage()`` for one key and for all keys (admin), each next to two
baselines measured in the same run: one PING round trip and one HGETALL of a single day hash.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib import store as redis_store  # noqa: E402
from lib.records.requestlog import RequestRecord  # noqa: E402
from lib.records.usage import UsageStore, utc_day  # noqa: E402

MODELS = [
    ("gpt-4o-mini", "openai", Decimal("0.00015"), Decimal("0.0006")),
    ("gpt-4o", "openai", Decimal("0.0025"), Decimal("0.01")),
    ("claude-3-5-sonnet-20241022", "anthropic", Decimal("0.003"), Decimal("0.015")),
    ("gemini-1.5-pro", "gemini", Decimal("0.00125"), Decimal("0.005")),
    ("llama3:8b", "openai-compatible", None, None),
    ("sandbox-echo", "sandbox", Decimal("0"), Decimal("0")),
]


def make_records(n: int, keys: int, days: int, now: float, rng: random.Random):
    """``n`` realistic request records spread over the last ``days`` UTC days (today included), ``keys`` keys
    and all ``MODELS``."""
    first = datetime.combine(utc_day(now) - timedelta(days=days - 1), datetime.min.time(), timezone.utc)
    span = now - first.timestamp()
    for i in range(n):
        kid = f"key_{rng.randrange(keys):03d}"
        model, provider, pin, pout = rng.choice(MODELS)
        prompt, completion = rng.randrange(5, 4000), rng.randrange(0, 1500)
        cache = rng.choices(["miss", "hit-exact", "hit-semantic", "bypass"], [70, 10, 10, 10])[0]
        hit = cache.startswith("hit")
        cost = None if pin is None else (pin * prompt + pout * completion) / 1000
        yield RequestRecord(
            proxy_id=str(uuid.uuid4()), created_at=now - rng.uniform(0, span), endpoint="/v1/chat/completions",
            key_id=kid, user_id=f"user_{kid[-3:]}", requested_model=model, model=model, provider=provider,
            status=rng.choices([200, 429, 502], [95, 3, 2])[0], latency_ms=rng.lognormvariate(6.5, 1.0),
            ttfb_ms=rng.uniform(50, 400), stream=rng.random() < 0.4, prompt_tokens=0 if hit else prompt,
            completion_tokens=0 if hit else completion, cost_usd=Decimal(0) if hit else cost, unpriced=pin is None,
            usage_source="provider", cache=cache, saved_tokens=prompt + completion if hit else 0,
            saved_cost_usd=cost if hit else None, request_body=f'{{"messages":[{{"role":"user","content":"q{i}"}}]}}',
            response_body="a" * rng.randrange(50, 400),
        )


def median_ms(fn, runs: int) -> float:
    """Median wall time of ``fn()`` over ``runs`` runs, in milliseconds (after one warm-up run)."""
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    embedded = None
    url = os.environ.get("REDIS_URL")
    if not url:
        embedded = redis_store.start_embedded_redis()
        url = embedded.url
    client = redis_store.connect(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    now = time.time()
    store = UsageStore(client, prefix=prefix, clock=lambda: now)
    rng = random.Random(42)
    try:
        t0 = time.perf_counter()
        loaded = store.record_many(make_records(args.requests, args.keys, args.days, now, rng), batch_size=1000)
        load_s = time.perf_counter() - t0
        assert loaded == args.requests, f"only {loaded} of {args.requests} recorded"

        singles = list(make_records(500, args.keys, 1, now, rng))
        it = iter(singles)
        record_ms = median_ms(lambda: store.record(next(it)), len(singles) - 1)

        key = "key_000"
        one = store.usage(key_ids=[key])
        everyone = store.usage()
        assert everyone["totals"]["requests"] == args.requests + len(singles)
        day_hash = store.day_key(key, utc_day(now))
        fields = client.hlen(day_hash)

        ping_ms = median_ms(client.ping, max(args.runs, 50))
        hgetall_ms = median_ms(lambda: client.hgetall(day_hash), max(args.runs, 50))
        key_ms = median_ms(lambda: store.usage(key_ids=[key]), args.runs)
        admin_ms = median_ms(store.usage, args.runs)

        hashes_one, hashes_all = args.days, args.days * args.keys
        print(f"redis: {url if embedded is None else 'embedded ' + url}  server {client.info('server')['redis_version']}")
        print(f"loaded {args.requests:,} requests over {args.days} days, {args.keys} keys, {len(MODELS)} models "
              f"in {load_s:.1f} s ({args.requests / load_s:,.0f} records/s, pipelined record_many)")
        print(f"memory used: {client.info('memory')['used_memory_human']}")
        print(f"baseline PING round trip            {ping_ms:8.3f} ms")
        print(f"baseline HGETALL one day hash        {hgetall_ms:8.3f} ms  ({fields} fields)")
        print(f"record() one request (request path)  {record_ms:8.3f} ms  = {record_ms / ping_ms:5.1f} x PING")
        print(f"usage() one key, 30 days             {key_ms:8.3f} ms  = {key_ms / ping_ms:5.1f} x PING "
              f"({hashes_one} hashes, {one['totals']['requests']:,} requests)")
        print(f"usage() admin, all keys, 30 days     {admin_ms:8.3f} ms  = {admin_ms / ping_ms:5.1f} x PING "
              f"({hashes_all} hashes, {everyone['totals']['requests']:,} requests)")
        print(f"median of {args.runs} runs each; totals: cost ${everyone['totals']['cost_usd']}, "
              f"p50 {everyone['totals']['latency_ms']['p50']} ms, p95 {everyone['totals']['latency_ms']['p95']} ms "
              f"(bucket estimates)")
    finally:
        if embedded is None:
            cursor = 0
            while True:  # remove only what this run wrote
                cursor, names = client.scan(cursor, match=f"{prefix}*", count=5000)
                if names:
                    client.unlink(*names)
                if cursor == 0:
                    break
        client.close()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
