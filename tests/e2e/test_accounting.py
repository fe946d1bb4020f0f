"""Accounting through the real server: streams priced without provider usage, concurrent totals exact,
aborted streams logged with the tokens actually streamed."""

from __future__ import annotations

import concurrent.futures
import time
from decimal import Decimal

import httpx
import openai
import pytest

from tests.e2e.conftest import MASTER, issue_key

pytestmark = pytest.mark.e2e


def get_log(server, key, proxy_id, wait=5.0):
    deadline = time.monotonic() + wait
    while True:
        resp = httpx.get(f"{server.url}/api/logs/{proxy_id}", headers={"Authorization": f"Bearer {key}"})
        if resp.status_code == 200 or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_stream_without_provider_usage_is_counted_and_priced(server):
    key = issue_key(server)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "count me [fake:no_usage]"}])
    proxy_id = stream.headers["x-aiproxy-id"]
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text.startswith("Echo:")
    rec = get_log(server, key, proxy_id).json()
    assert rec["usage_source"] == "counted"
    assert rec["completion_tokens"] > 0 and rec["prompt_tokens"] > 0
    assert rec["cost_usd"] is not None and Decimal(rec["cost_usd"]) > 0 and rec["unpriced"] is False


def test_unpriced_model_is_flagged_not_free(server):
    key = issue_key(server)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-5-experimental-x", messages=[{"role": "user", "content": "hello"}])
    rec = get_log(server, key, raw.headers["x-aiproxy-id"]).json()
    assert rec["unpriced"] is True and rec["cost_usd"] is None


def test_concurrent_usage_totals_equal_sum_of_logs(server):
    keys = [issue_key(server, user_id=f"acct-{i}") for i in range(3)]

    def one(i: int) -> tuple[str, str]:
        key = keys[i % 3]
        model = ["gpt-4o-mini", "claude-3-5-haiku-20241022", "gemini-1.5-flash"][i % 3]
        body = {"model": model, "messages": [{"role": "user", "content": f"request {i} " + "word " * (i % 7)}]}
        if i % 4 == 0:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        with httpx.Client(timeout=30) as h:
            resp = h.post(server.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key}", "Cache-Control": "no-store"})
            assert resp.status_code == 200, resp.text
            return key, resp.headers["x-aiproxy-id"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(100)))
    for key in keys:
        ids = [pid for k, pid in results if k == key]
        logs = [get_log(server, key, pid).json() for pid in ids]
        usage = httpx.get(server.url + "/api/usage", headers={"Authorization": f"Bearer {key}"}).json()["totals"]
        assert usage["requests"] == len(logs)
        assert usage["prompt_tokens"] == sum(r["prompt_tokens"] for r in logs)
        assert usage["completion_tokens"] == sum(r["completion_tokens"] for r in logs)
        assert Decimal(usage["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in logs)
    admin = httpx.get(server.url + "/admin/usage", params={"user_id": "acct-0"},
                      headers={"Authorization": f"Bearer {MASTER}"}).json()
    assert admin["totals"]["requests"] == len([1 for k, _ in results if k == keys[0]])


def test_aborted_stream_logged_with_partial_tokens(server, upstream):
    key = issue_key(server)
    with httpx.Client(timeout=10) as h:
        with h.stream("POST", server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": " ".join(["w"] * 40)
                                          + " [fake:chunks=40 chunk_delay=0.1]"}]}) as resp:
            proxy_id = resp.headers["x-aiproxy-id"]
            for i, _ in enumerate(resp.iter_lines()):
                if i > 6:
                    break
    rec = get_log(server, key, proxy_id, wait=10).json()
    assert rec["client_disconnected"] is True
    assert rec["usage_source"] == "counted"
    assert 0 < rec["completion_tokens"] < 40
