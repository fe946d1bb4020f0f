"""``lib.store``: the private Redis and the client factory."""

from __future__ import annotations

import concurrent.futures

import redis

from lib import store as redis_store


def test_embedded_redis_starts_answers_and_stops():
    embedded = redis_store.start_embedded_redis()
    client = redis_store.connect(embedded.url)
    assert client.ping() is True
    assert embedded.url.startswith("redis://127.0.0.1:")
    embedded.stop()
    assert embedded.process.poll() is not None
    try:
        client.ping()
        raise AssertionError("the stopped server still answered")
    except redis.RedisError:
        pass


def test_pool_waits_instead_of_failing_when_all_connections_are_busy(redis_url, key_prefix):
    client = redis_store.connect(redis_url, max_connections=2)
    key = f"{key_prefix}list"

    def blocking_pop(_):
        return client.blpop([key], timeout=0.3)  # holds a connection for 0.3 s

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(blocking_pop, range(6)))  # 6 callers share 2 connections: they queue
    assert results == [None] * 6
