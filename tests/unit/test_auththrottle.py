"""lib.limits.auththrottle against a real Redis: failures per IP, a moving window, other IPs untouched."""

from __future__ import annotations

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lib import store as redis_store
from lib.limits.auththrottle import AuthThrottle
from lib.errors import RateLimited, ServiceUnavailable


def test_failing_attempts_past_the_limit_get_429_other_addresses_untouched(redis_client, key_prefix):
    throttle = AuthThrottle(redis_client, prefix=key_prefix, max_failures=3, window_s=60)
    for _ in range(3):
        throttle.failed("203.0.113.7")  # each of these is answered 401 by the caller
    with pytest.raises(RateLimited) as info:
        throttle.failed("203.0.113.7")
    err = info.value
    assert (err.status, err.code, err.type) == (429, "rate_limit_exceeded", "rate_limit_error")
    assert "Too many failed authentication attempts" in err.message
    assert 55 <= err.retry_after <= 60 and err.response_headers()["Retry-After"] == str(err.retry_after)
    throttle.failed("203.0.113.8")
    throttle.failed("2001:db8::1")
    keys = sorted(redis_client.keys(f"{key_prefix}*"))
    assert keys[0] == f"{key_prefix}authfail:ip/2001:db8::1/3/60/second".encode() and len(keys) == 3
    throttle.clear("203.0.113.7")
    throttle.failed("203.0.113.7")


def test_window_moves(redis_client, key_prefix):
    throttle = AuthThrottle(redis_client, prefix=key_prefix, max_failures=2, window_s=1)
    throttle.failed("198.51.100.1")
    throttle.failed("198.51.100.1")
    with pytest.raises(RateLimited) as info:
        throttle.failed("198.51.100.1")
    assert info.value.retry_after == 1
    time.sleep(1.05)
    throttle.failed("198.51.100.1")


def test_store_down_is_service_unavailable():
    dead = redis.Redis(host="127.0.0.1", port=redis_store.free_port(), socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))
    throttle = AuthThrottle(dead, prefix="x:")
    with pytest.raises(ServiceUnavailable) as info:
        throttle.failed("192.0.2.1")
    assert isinstance(info.value.__cause__, redis.RedisError)


def test_failures_on_every_instance_count_at_once(redis_client, key_prefix):
    a = AuthThrottle(redis_client, prefix=key_prefix, max_failures=3, window_s=60)
    b = AuthThrottle(redis_client, prefix=key_prefix, max_failures=3, window_s=60)
    for _ in range(3):
        a.failed("198.51.100.9")
    with pytest.raises(RateLimited):
        b.failed("198.51.100.9")


def test_bad_settings(redis_client):
    with pytest.raises(ValueError):
        AuthThrottle(redis_client, prefix="x:", max_failures=0)
