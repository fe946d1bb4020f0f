"""Nothing lost, nothing overspent, nobody locked out (issue 10): each fault reproduced against the real server
(bin/start.sh, gevent workers) and the fake upstreams, and shown to be handled."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
import uuid
from decimal import Decimal

import httpx
import openai
import pytest

from lib.store import start_embedded_redis
from tests.e2e.conftest import MASTER, PROVIDER_KEYS
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": f"Bearer {MASTER}"}


def env_for(redis_url: str, upstream, **extra: str) -> dict[str, str]:
    env = {"REDIS_URL": redis_url, "REDIS_PREFIX": f"flt{uuid.uuid4().hex[:6]}:", "AIPROXY_MASTER_KEY": MASTER,
           "OPENAI_API_KEYS": PROVIDER_KEYS["openai"], "OPENAI_BASE_URL": upstream.url + "/v1",
           "REQUEST_TIMEOUT": "10", "SEMANTIC_CACHE": "false", "LOG_BODIES": "true"}
    env.update(extra)
    return env


def new_key(server, **body) -> dict:
    body.setdefault("user_id", "faults")
    resp = httpx.post(server.url + "/admin/keys", json=body, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return resp.json()


def chat(server, key: str, content: str, **extra) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}
    with httpx.Client(timeout=30) as h:  # a new connection each time: requests spread over the workers
        return h.post(server.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}", "Cache-Control": "no-store"})


def log_of(server, key: str, proxy_id: str) -> dict:
    resp = httpx.get(f"{server.url}/api/logs/{proxy_id}", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def spend(server, key_id: str) -> dict:
    return httpx.get(f"{server.url}/admin/keys/{key_id}", headers=ADMIN).json()["spend"]


# -- 1. a budget is a cap ----------------------------------------------------------------------------------
def test_budget_is_a_cap_even_when_the_provider_over_reports(server, upstream) -> None:
    prompt = " ".join(["word"] * 3000)  # ~3,000 tokens in, and the fake would echo all of them back
    # worst case of one request at the default 1,024-token output cap, gpt-4o-mini: ≈ $0.00106
    created = new_key(server, rpm=0, budget_usd="0.0053")
    key = created["key"]
    upstream.reset()

    def one(i: int) -> httpx.Response:
        return chat(server, key, f"{prompt} [fake:over_report=40] #{i}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, range(20)))
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(served) + len(refused) == 20 and served and refused
    assert all(a.json()["error"]["code"] == "budget_exceeded" for a in refused)
    sent = [r.json for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert sent and all(body["max_completion_tokens"] == 1024 for body in sent)  # the cap went upstream
    status = spend(server, created["id"])
    assert Decimal(status["spent_usd"]) <= Decimal("0.0053") and Decimal(status["reserved_usd"]) == 0
    clamped = log_of(server, key, served[0].json()["proxy_id"])
    assert clamped["budget_clamped"] is True and clamped["completion_tokens"] == 1024 * 40  # reported, not charged


# -- 2. changes reach every worker on the next request -------------------------------------------------------
def test_revoking_deactivating_expiring_and_lowering_limits_take_effect_at_once(server) -> None:
    created = new_key(server, rpm=0)
    key, kid = created["key"], created["id"]
    assert all(chat(server, key, f"warm {i}").status_code == 200 for i in range(8))  # both workers hold it
    assert httpx.patch(f"{server.url}/admin/keys/{kid}", json={"rpm": 1}, headers=ADMIN).status_code == 200
    codes = [chat(server, key, f"after rpm {i}").status_code for i in range(4)]
    assert codes.count(200) <= 1 and codes.count(429) >= 3
    assert httpx.patch(f"{server.url}/admin/keys/{kid}", json={"rpm": 0, "active": False}, headers=ADMIN).status_code == 200
    refused = [chat(server, key, f"inactive {i}") for i in range(6)]
    assert [r.status_code for r in refused] == [403] * 6 and refused[0].json()["error"]["code"] == "key_inactive"
    httpx.patch(f"{server.url}/admin/keys/{kid}", json={"active": True}, headers=ADMIN)
    assert chat(server, key, "active again").status_code == 200
    past = "2020-01-01T00:00:00Z"
    httpx.patch(f"{server.url}/admin/keys/{kid}", json={"expires_at": past}, headers=ADMIN)
    assert [chat(server, key, f"expired {i}").json()["error"]["code"] for i in range(4)] == ["key_expired"] * 4
    httpx.patch(f"{server.url}/admin/keys/{kid}", json={"expires_at": None}, headers=ADMIN)
    assert httpx.delete(f"{server.url}/admin/keys/{kid}", headers=ADMIN).status_code == 200
    assert {chat(server, key, f"revoked {i}").status_code for i in range(6)} == {401}


# -- 5, 6, 11. upstream faults ---------------------------------------------------------------------------------
def test_a_stream_that_ends_early_is_an_upstream_error_not_a_whole_answer(server, gateway_key, client) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[
        {"role": "user", "content": "one two three four five six seven eight [fake:end_early]"}])
    text, pid = "", None
    with pytest.raises(openai.APIError):
        for chunk in stream:
            pid = getattr(chunk, "proxy_id", pid)
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text and pid
    record = log_of(server, gateway_key, pid)
    assert record["status"] == 502 and record["error_code"] == "upstream_error"
    assert record["completion_tokens"] > 0  # the partial answer is counted


def test_malformed_bodies_are_502s(server, gateway_key, client) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x [fake:bad_json]"}])
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_error"
    with pytest.raises(openai.APIStatusError) as info:
        list(client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "y [fake:not_stream]"}]))
    assert info.value.status_code == 502


def test_upstream_error_bodies_stay_out_of_the_process_logs(server, gateway_key, client) -> None:
    secret = f"patient-{uuid.uuid4().hex[:8]}-record"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": f"{secret} [fake:error=400 quote]"}])
    pid = info.value.response.headers["x-aiproxy-id"]
    time.sleep(0.3)
    assert secret not in server.output()  # neither the WARNING line nor anything else on stdout/stderr
    assert secret in (log_of(server, gateway_key, pid)["upstream_error"] or "")  # the owner can still see it


# -- 4. Redis outages -------------------------------------------------------------------------------------------
@pytest.fixture
def own_redis():
    store = start_embedded_redis()
    yield store
    if store.process.poll() is None:
        os.kill(store.process.pid, signal.SIGCONT)
    store.stop()


def test_a_frozen_redis_costs_one_short_wait_not_one_per_call(own_redis, upstream) -> None:
    server = ServerProcess(env_for(own_redis.url, upstream, REDIS_FAILURE_MODE="closed"), workers=1)
    try:
        key = new_key(server, rpm=100)["key"]
        assert chat(server, key, "before").status_code == 200
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        started, times = time.monotonic(), []
        for i in range(10):
            t = time.monotonic()
            resp = chat(server, key, f"frozen {i}")
            times.append(time.monotonic() - t)
            assert resp.status_code == 503 and resp.json()["error"]["code"] == "service_unavailable"
        assert max(times) < 2.0 and time.monotonic() - started < 6.0, times
        os.kill(own_redis.process.pid, signal.SIGCONT)
        time.sleep(1.2)
        assert chat(server, key, "thawed").status_code == 200
    finally:
        server.stop()


def test_fail_open_keeps_and_replays_every_outcome(own_redis, upstream) -> None:
    server = ServerProcess(env_for(own_redis.url, upstream, REDIS_FAILURE_MODE="open", KEY_CACHE_SECONDS="60"),
                           workers=1)
    try:
        created = new_key(server, rpm=1000, budget_usd="10")
        key = created["key"]
        first = chat(server, key, "before")
        assert first.status_code == 200
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(chat, server, key, "in flight [fake:slow=1.5]")
            time.sleep(0.5)  # its hold is taken; Redis freezes while the provider is still answering
            os.kill(own_redis.process.pid, signal.SIGSTOP)
            during = [chat(server, key, f"during {i}") for i in range(5)]
            assert in_flight.result().status_code == 200
        assert all(r.status_code == 200 for r in during)
        os.kill(own_redis.process.pid, signal.SIGCONT)
        pids = [r.json()["proxy_id"] for r in during] + [in_flight.result().json()["proxy_id"]]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = [httpx.get(f"{server.url}/api/logs/{p}", headers={"Authorization": f"Bearer {key}"}).status_code
                     for p in pids]
            if found == [200] * len(pids):
                break
            time.sleep(0.3)
        assert found == [200] * len(pids)  # every outcome replayed from the spool
        usage = httpx.get(f"{server.url}/api/usage", headers={"Authorization": f"Bearer {key}"}).json()["totals"]
        assert usage["requests"] == len(pids) + 1
        logged = [log_of(server, key, p) for p in pids]
        status = spend(server, created["id"])
        assert Decimal(status["reserved_usd"]) == 0, server.output()[-3000:]  # the in-flight hold was settled
        before = log_of(server, key, first.json()["proxy_id"])
        total = sum(Decimal(r["cost_usd"]) for r in logged) + Decimal(before["cost_usd"])
        assert abs(Decimal(status["spent_usd"]) - total) <= Decimal("0.000010")  # all charged, once
    finally:
        server.stop()


def test_a_redis_that_lost_its_data_is_reported_not_401(own_redis, upstream) -> None:
    import redis as redis_lib

    server = ServerProcess(env_for(own_redis.url, upstream, REDIS_FAILURE_MODE="closed"), workers=1)
    try:
        key = new_key(server, rpm=100)["key"]
        assert chat(server, key, "before").status_code == 200
        redis_lib.Redis.from_url(own_redis.url).flushall()
        lost = chat(server, key, "after the wipe")
        assert lost.status_code == 503 and lost.json()["error"]["code"] == "state_store_lost"
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503 and health.json()["redis"] == "lost its data"
        assert "Redis has lost its data" in server.output()
        assert {chat(server, key, f"again {i}").status_code for i in range(12)} == {503}  # nobody throttled
        fresh = new_key(server)["key"]  # the operator starts over: the store is armed again
        assert httpx.get(server.url + "/health").status_code == 200
        assert chat(server, fresh, "new key").status_code == 200
        assert chat(server, key, "old key").status_code == 401
    finally:
        server.stop()
