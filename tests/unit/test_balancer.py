"""lib.balancer: the weighted order and cool-downs shared through a real Redis (and survived without one)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lib import store
from lib.balancer import Balancer, cools, weighted_order
from lib import errors
from lib.router import Deployment

A, B, C = Deployment("east", "m", 3), Deployment("west", "m", 1), Deployment("north", "m", 6)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_first_pick_follows_the_weights_and_every_order_is_a_permutation() -> None:
    rng = random.Random(7)
    firsts: Counter[str] = Counter()
    for _ in range(10_000):
        order = weighted_order([A, B, C], rng)
        assert sorted(d.name for d in order) == sorted(d.name for d in (A, B, C))
        firsts[order[0].provider] += 1
    # weights 3:1:6 of 10,000: 3,000 / 1,000 / 6,000, each within 5 standard deviations
    for name, share in (("east", 0.3), ("west", 0.1), ("north", 0.6)):
        sd = (10_000 * share * (1 - share)) ** 0.5
        assert abs(firsts[name] - 10_000 * share) < 5 * sd, firsts


def test_a_cooled_deployment_goes_last_for_every_instance_sharing_redis(redis_client, key_prefix) -> None:
    clock = Clock()
    one = Balancer(redis_client, prefix=key_prefix, clock=clock, refresh_s=0)
    other = Balancer(redis_client, prefix=key_prefix, clock=clock, refresh_s=0)  # another worker or task
    assert one.cool("east/m", retry_after=2.0, reason="429 rate_limit_exceeded") == 2.0
    for balancer in (one, other):
        order = balancer.order([A, B])
        assert [(d.name, cooling) for d, cooling in order] == [("west/m", False), ("east/m", True)]
    assert 1.9 < redis_client.pttl(one.key("east/m")) / 1000 <= 2.0
    assert other.cooling(["east/m", "west/m"]) == {"east/m": 2.0}
    clock.now += 2.5
    redis_client.delete(one.key("east/m"))  # what the TTL does in real time
    assert all(not cooling for _, cooling in other.order([A, B]))


def test_default_and_bounds_of_a_cool_down(redis_client, key_prefix) -> None:
    balancer = Balancer(redis_client, prefix=key_prefix, default_s=30)
    assert balancer.cool("a/m", None, "503") == 30
    assert balancer.cool("b/m", 0.01, "429") == 1.0
    assert balancer.cool("c/m", 10_000, "429") == 600


def test_reads_are_one_mget_per_refresh_interval(redis_client, key_prefix) -> None:
    clock = Clock()
    calls = []

    class Counting:
        def mget(self, keys):
            calls.append(list(keys))
            return redis_client.mget(keys)

        def set(self, *a, **kw):
            return redis_client.set(*a, **kw)

    balancer = Balancer(Counting(), prefix=key_prefix, clock=clock, refresh_s=1.0)
    for _ in range(5):
        balancer.order([A, B, C])
    assert len(calls) == 1 and len(calls[0]) == 3
    clock.now += 1.0
    balancer.order([A, B, C])
    assert len(calls) == 2


def test_without_redis_routing_works_and_the_failing_worker_remembers(key_prefix) -> None:
    dead = store.connect("redis://127.0.0.1:1/0", timeout=0.2, breaker=store.Breaker(1.0))
    balancer = Balancer(dead, prefix=key_prefix, refresh_s=0)
    assert [cooling for _, cooling in balancer.order([A, B])] == [False, False]  # unreadable: none
    balancer.cool("east/m", 5, "429")  # cannot be shared, is kept here
    assert [(d.name, c) for d, c in balancer.order([A, B])] == [("west/m", False), ("east/m", True)]


@pytest.mark.parametrize("exc,expected", [
    (errors.UpstreamRateLimited("x"), True), (errors.UpstreamUnavailable("x"), True),
    (errors.UpstreamTimeout("x"), True), (errors.UpstreamError("x"), True), (errors.UpstreamAuthError("x"), True),
    (errors.UpstreamBadRequest("x"), False), (errors.UpstreamNotFound("x"), False),
])
def test_which_failures_cool_a_deployment(exc, expected) -> None:
    assert cools(exc) is expected
