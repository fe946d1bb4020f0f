"""Load-balanced deployments through the whole app (Flask client, real Redis, two fake OpenAI-compatible
upstreams as two named instances): spread, cool-down on 429 and recovery, the deployment in the request log,
/metrics and /health, owners in /v1/models."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from src.app import create_app
from tests.api.conftest import MASTER
from tests.fakes import FakeUpstream


@pytest.fixture(scope="module")
def upstreams():
    east, west = FakeUpstream(valid_keys={"k-east"}).start(), FakeUpstream(valid_keys={"k-west"}).start()
    yield east, west
    east.stop()
    west.stop()


@pytest.fixture
def app(make_settings, upstreams, tmp_path):
    east, west = upstreams
    for fake in upstreams:
        fake.reset()
        fake.rate_limited_keys.clear()
    path = tmp_path / "models.yaml"
    path.write_text(f"""
providers:
  east: {{type: openai, base_url: "{east.url}/v1", api_key_env: EAST_KEY}}
  west: {{type: openai, base_url: "{west.url}/v1", api_key_env: WEST_KEY}}
models:
  gpt-lb:
    deployments: [{{provider: east, model: m-east, weight: 3}}, {{provider: west, model: m-west, weight: 1}}]
  plain-east: {{provider: east, model: m-east}}
""")
    return create_app(make_settings(MODELS_FILE=str(path), EAST_KEY="k-east", WEST_KEY="k-west",
                                    DEPLOYMENT_COOLDOWN_SECONDS="30"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth(client):
    key = client.post("/admin/keys", json={"user_id": "u", "rpm": 0},
                      headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    return {"Authorization": f"Bearer {key}"}


def ask(client, auth, i: int = 0, model: str = "gpt-lb"):
    resp = client.post("/v1/chat/completions", headers=auth, json={
        "model": model, "cache": False, "messages": [{"role": "user", "content": f"hello {i}"}]})
    resp.close()
    return resp


def test_requests_spread_by_weight(client, auth, upstreams) -> None:
    counts: Counter[str] = Counter()
    for i in range(200):
        resp = ask(client, auth, i)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        counts[resp.headers["x-aiproxy-deployment"]] += 1
    # weights 3:1 → 150 / 50; binomial sd 6.1, so ±25 is beyond 4 sd
    assert abs(counts["east/m-east"] - 150) <= 25 and counts["east/m-east"] + counts["west/m-west"] == 200, counts
    east, west = upstreams
    assert {r.json["model"] for r in east.requests} == {"m-east"} and {r.json["model"] for r in west.requests} == {"m-west"}


def test_a_429_cools_the_deployment_down_and_traffic_returns_after_retry_after(client, auth, upstreams) -> None:
    east, west = upstreams
    east.rate_limited_keys.add("k-east")  # east answers 429 with Retry-After: 1
    started = time.monotonic()
    answered = [ask(client, auth, i) for i in range(20)]
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 and r.headers["x-aiproxy-deployment"] == "west/m-west" for r in answered)
    # each 429 cools east for its Retry-After (1 s): one attempt per second at most, the first request's included
    assert 1 <= len(east.requests) <= 1 + int(elapsed), (len(east.requests), elapsed)
    for i in range(10):  # east may just have recovered: the next 429 cools it again
        health = client.get("/health").get_json()["providers"]
        if health["east"]["cooling"]:
            break
        ask(client, auth, 100 + i)
    assert 0 < health["east"]["cooling"]["east/m-east"] <= 1.0 and health["west"]["cooling"] == {}
    assert health["east"] == {**health["east"], "type": "openai", "configured": True,
                              "host": east.url.removeprefix("http://")}
    east.rate_limited_keys.clear()
    time.sleep(1.1)
    later = Counter(ask(client, auth, i).headers["x-aiproxy-deployment"] for i in range(40))
    assert later["east/m-east"] >= 15, later  # back in the rotation (expected 30 of 40)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'aiproxy_deployment_cooldowns_total{deployment="east/m-east",reason="429 rate_limit_exceeded"}' in metrics
    assert 'aiproxy_deployment_requests_total{deployment="west/m-west",status="200"}' in metrics


def test_the_request_log_names_the_deployment(client, auth) -> None:
    resp = ask(client, auth)
    log = client.get(f"/api/logs/{resp.get_json()['proxy_id']}", headers=auth).get_json()
    assert log["deployment"] == resp.headers["x-aiproxy-deployment"]
    assert log["provider"] == log["deployment"].split("/")[0]
    single = ask(client, auth, model="plain-east")
    assert "x-aiproxy-deployment" not in single.headers
    assert client.get(f"/api/logs/{single.get_json()['proxy_id']}", headers=auth).get_json()["deployment"] is None


def test_every_deployment_cooling_still_answers_from_one_of_them(client, auth, upstreams) -> None:
    east, west = upstreams
    east.rate_limited_keys.add("k-east")
    west.rate_limited_keys.add("k-west")
    resp = ask(client, auth)
    assert resp.status_code == 429  # both tried, both throttled: the client sees the provider's 429
    west.rate_limited_keys.clear()
    resp = ask(client, auth, 1)
    assert resp.status_code == 200 and resp.headers["x-aiproxy-deployment"] == "west/m-west"


def test_models_list_names_the_instance_that_serves_each_model(client, auth) -> None:
    models = {m["id"]: m for m in client.get("/v1/models", headers=auth).get_json()["data"]}
    assert models["gpt-lb"]["owned_by"] == "east" and models["plain-east"]["owned_by"] == "east"
