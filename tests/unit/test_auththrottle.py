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


def test_blocks_an_ip_after_max_failures_and_only_that_ip(redis_client, key_prefix):
    throttle = AuthThrottle(redis_client, prefix=key_prefix, max_failures=3, window_s=60)
    for _ in range(3):
        throttle.check("203.0.113.7")
        throttle.record_failure("203.0.113.7")
    with pytest.raises(RateLimited) as info:
        throttle.check("203.0.113.7")
    err = info.value
    assert (err.status, err.code, err.type) == (429, "rate_limit_exceeded", "rate_limit_error")
    assert "Too many failed authentication attempts" in err.message
    assert 55 <= err.retry_after <= 60 and err.response_headers()["Retry-After"] == str(err.retry_after)
    throttle.check("203.0.113.8")
    throttle.check("2001:db8::1")
    keys = redis_client.keys(f"{key_prefix}*")
    assert keys == [f"{key_prefix}authfail:ip/203.0.113.7/3/60/second".encode()]
    throttle.clear("203.0.113.7")
    throttle.check("203.0.113.7")


def test_window_moves(redis_client, key_prefix):
    throttle = AuthThrottle(redis_client, prefix=key_prefix, max_failures=2, window_s=1)
    throttle.record_failure("198.51.100.1")
    throttle.record_failure("198.51.100.1")
    with pytest.raises(RateLimited) as info:
        throttle.check("198.51.100.1")
    assert info.value.retry_after == 1
    time.sleep(1.05)
    throttle.check("198.51.100.1")


def test_checks_record_nothing(redis_client, key_prefix):
    """Valid-key traffic (checks without failures) never fills the window."""
    throttle = AuthThrottle(redis_client, prefix=key_prefix, max_failures=1, window_s=60)
    for _ in range(50):
        throttle.check("192.0.2.1")
    assert redis_client.keys(f"{key_prefix}*") == []


def test_store_down_is_service_unavailable():
    dead = redis.Redis(host="127.0.0.1", port=redis_store.free_port(), socket_connect_timeout=0.2,
                       retry=Retry(NoBackoff(), 0))
    throttle = AuthThrottle(dead, prefix="x:")
    throttle.check("192.0.2.1")  # never failed here: no Redis call at all, so no error either
    with pytest.raises(ServiceUnavailable) as info:
        throttle.record_failure("192.0.2.1")
    assert isinstance(info.value.__cause__, redis.RedisError)
    with pytest.raises(ServiceUnavailable):
        throttle.check("192.0.2.1")  # a suspect now: checked against the (dead) store


def test_failures_on_other_instances_count_once_this_one_sees_the_address(redis_client, key_prefix):
    a = AuthThrottle(redis_client, prefix=key_prefix, max_failures=3, window_s=60)
    b = AuthThrottle(redis_client, prefix=key_prefix, max_failures=3, window_s=60)
    for _ in range(3):
        a.record_failure("198.51.100.9")
    with pytest.raises(RateLimited):
        a.check("198.51.100.9")
    b.check("198.51.100.9")  # b has not seen this address fail: one unchecked attempt
    b.record_failure("198.51.100.9")
    with pytest.raises(RateLimited):
        b.check("198.51.100.9")


def test_bad_settings(redis_client):
    with pytest.raises(ValueError):
        AuthThrottle(redis_client, prefix="x:", max_failures=0)
