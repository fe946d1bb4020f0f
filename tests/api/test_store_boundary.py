"""One boundary for Redis errors: with the state store gone — a single Redis stopped, or every node of a Redis
Cluster stopped (whose client raises ``RedisClusterException``, not a ``RedisError``) — every endpoint
answers the 503 envelope, never a 500; liveness stays 200."""

from __future__ import annotations

import pytest

from lib import store
from lib.settings import Settings
from src.app import create_app
from tests.api.conftest import MASTER, assert_error, chat_body
from tests.cluster import start_cluster


def _running_store(kind: str):
    if kind == "single":
        embedded = store.start_embedded_redis()
        return embedded.url, embedded.stop
    cluster = start_cluster()
    return cluster.url, cluster.stop


@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_store_outage_is_a_503_everywhere(kind: str) -> None:
    url, stop = _running_store(kind)
    try:
        settings = Settings.from_env({"ENVIRONMENT": "test", "REDIS_URL": url, "AIPROXY_MASTER_KEY": MASTER,
                                      "REDIS_FAILURE_MODE": "closed", "KEY_CACHE_SECONDS": "0",
                                      "SEMANTIC_CACHE": "false", "LOG_LEVEL": "CRITICAL"}, config_file=None)
        app = create_app(settings)
        client = app.test_client()
        admin = {"Authorization": f"Bearer {MASTER}"}
        created = client.post("/admin/keys", json={"user_id": "u"}, headers=admin).get_json()
        auth = {"Authorization": f"Bearer {created['key']}"}
        ok = client.post("/v1/chat/completions", json=chat_body(), headers=auth)
        assert ok.status_code == 200
        pid = ok.get_json()["proxy_id"]
        ok.close()
    finally:
        stop()

    assert_error(client.get("/admin/keys", headers=admin), 503, "service_unavailable")
    assert_error(client.post("/admin/keys", json={"user_id": "v"}, headers=admin), 503, "service_unavailable")
    assert_error(client.patch(f"/admin/keys/{created['id']}", json={"rpm": 1}, headers=admin), 503,
                 "service_unavailable")
    assert_error(client.get("/admin/usage", headers=admin), 503, "service_unavailable")
    assert_error(client.get(f"/api/logs/{pid}", headers=admin), 503, "service_unavailable")
    assert_error(client.get("/api/usage", headers=auth), 503, "service_unavailable")
    assert_error(client.post("/v1/chat/completions", json=chat_body(), headers=auth), 503, "service_unavailable")
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["redis"] == "unreachable"
    assert client.get("/api/v1/health").status_code == 200
