"""Limits and budgets across several real server processes sharing one Redis — and a Redis Cluster."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from decimal import ROUND_CEILING, Decimal

import httpx
import openai
import pytest

from lib.accounting import tokens
from lib.accounting.money import to_micros
from lib.accounting.pricing import PriceBook
from lib.store import start_embedded_redis
from tests.e2e.conftest import MASTER, PROVIDER_KEYS
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e


def server_env(redis_url: str, upstream, **extra: str) -> dict[str, str]:
    env = {"REDIS_URL": redis_url, "REDIS_PREFIX": f"lim{uuid.uuid4().hex[:6]}:", "AIPROXY_MASTER_KEY": MASTER,
           "OPENAI_API_KEYS": PROVIDER_KEYS["openai"], "OPENAI_BASE_URL": upstream.url + "/v1",
           "REQUEST_TIMEOUT": "10", "SEMANTIC_CACHE": "false"}
    env.update(extra)
    return env


@pytest.fixture(scope="module", params=["redis", "cluster"])
def pair(request, redis_url, upstream):
    """Two proxy processes (each with its own gevent workers) sharing one store."""
    url = request.getfixturevalue("redis_cluster").url if request.param == "cluster" else redis_url
    env = server_env(url, upstream)
    servers = [ServerProcess(env, workers=1), ServerProcess(env, workers=1)]
    yield servers
    for s in servers:
        s.stop()


def new_key(server, **body) -> str:
    body.setdefault("user_id", "limits-user")
    resp = httpx.post(server.url + "/admin/keys", json=body, headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def chat(server, key, content, cache_control="no-store", **extra):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}
    headers = {"Authorization": f"Bearer {key}"}
    if cache_control:
        headers["Cache-Control"] = cache_control
    with httpx.Client(timeout=30) as h:
        return h.post(server.url + "/v1/chat/completions", json=body, headers=headers)


def test_rpm_exact_across_two_processes(pair):
    key = new_key(pair[0], rpm=10)

    def one(i):
        return chat(pair[i % 2], key, f"rpm probe {i}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(40)))
    ok = [r for r in results if r.status_code == 200]
    limited = [r for r in results if r.status_code == 429]
    assert len(ok) == 10 and len(limited) == 30
    for r in limited:
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert r.headers["x-ratelimit-limit-requests"] == "10"


def test_budget_never_overspent_under_concurrency(pair, upstream):
    marker = uuid.uuid4().hex[:8]
    # The upstream holds each answer long enough that all 20 reserve before the first settles (a settled
    # request frees most of its worst case, and a 6th would then fit honestly): 4 s even on a loaded machine.
    content = f"budget probe {marker} [fake:slow=4]"
    messages = [{"role": "user", "content": content}]
    prompt = tokens.count_chat_tokens(messages, "gpt-4o-mini")
    worst = PriceBook.load(None).worst_case_cost(prompt, 1000, "gpt-4o-mini")
    budget = Decimal(to_micros(worst, ROUND_CEILING) * 5 + 1) / Decimal(1_000_000)  # exactly 5 fit
    key = new_key(pair[0], budget_usd=str(budget))
    before = sum(1 for r in upstream.requests if marker in json.dumps(r.json or {}))

    def one(i):
        return chat(pair[i % 2], key, content, max_tokens=1000)

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    ok = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 429]
    assert len(ok) == 5 and len(refused) == 15
    assert all(r.json()["error"]["code"] == "budget_exceeded" for r in refused)
    reached = sum(1 for r in upstream.requests if marker in json.dumps(r.json or {})) - before
    assert reached == 5
    usage = httpx.get(pair[1].url + "/api/usage", headers={"Authorization": f"Bearer {key}"}).json()["totals"]
    assert Decimal(usage["cost_usd"]) <= budget


def test_tpm_refuses_then_frees_after_settling(pair):
    key = new_key(pair[0], tpm=1200)
    assert chat(pair[0], key, "tpm probe", max_tokens=1500).status_code == 429
    first = chat(pair[0], key, "tpm probe one", max_tokens=1000)
    assert first.status_code == 200
    # 1000 were reserved but only a handful used: after settling, another 1000 fits
    second = chat(pair[1], key, "tpm probe two", max_tokens=1000)
    assert second.status_code == 200, second.text


def test_sdk_waits_retry_after_and_succeeds(redis_url, upstream):
    server = ServerProcess(server_env(redis_url, upstream, RATE_LIMIT_WINDOW_SECONDS="2"), workers=1)
    try:
        key = new_key(server, rpm=1)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=3, timeout=20)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "first"}])
        started = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "second"}])
        assert raw.parse().choices[0].message.content == "Echo: second"
        assert raw.retries_taken >= 1
        assert time.monotonic() - started >= 0.9  # it waited for Retry-After rather than hammering
        client.close()  # an idle keep-alive connection would hold the worker's graceful stop open
    finally:
        server.stop()


def test_redis_stopped_mid_run(upstream):
    store = start_embedded_redis()
    closed = ServerProcess(server_env(store.url, upstream, REDIS_FAILURE_MODE="fail-closed"), workers=1)
    opened = ServerProcess(server_env(store.url, upstream, REDIS_FAILURE_MODE="fail-open"), workers=1)
    try:
        key_closed, key_open = new_key(closed, rpm=100), new_key(opened, rpm=100)
        assert chat(closed, key_closed, "before").status_code == 200
        assert chat(opened, key_open, "before").status_code == 200
        store.stop()
        down = chat(closed, key_closed, "during outage")
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "service_unavailable"
        served = chat(opened, key_open, "during outage", cache_control=None)
        assert served.status_code == 200 and served.json()["choices"][0]["message"]["content"] == "Echo: during outage"
        assert served.headers["x-aiproxy-cache"] == "bypass"  # the cache is skipped, the answer still comes
        assert "fail-open" in opened.output()
        metrics = httpx.get(opened.url + "/metrics").text
        assert "aiproxy_redis_degraded_total" in metrics
        assert httpx.get(closed.url + "/health").status_code == 503
    finally:
        closed.stop()
        opened.stop()
        store.stop()
