"""Graceful stop of the real server (``bin/start.sh``): SIGTERM to its process group, as ECS sends it.

- Idle keep-alive connections are closed at once, so a server holding only those exits in about a second
  (gunicorn's gevent worker waited up to KEEPALIVE for each, cut off only by GRACEFUL_TIMEOUT).
- With a short GRACEFUL_TIMEOUT: new connections are refused, a stream that ends within the bound ends
  normally, and what is still running shortly before the bound is cut — a stream with an error event, a
  plain request with a 503 envelope — and each is recorded (503 ``server_shutting_down``, the tokens
  streamed so far counted) with its budget hold settled, all before the master's SIGKILL. Checked after a
  restart against the same Redis: through ``GET /api/logs/<proxy_id>``, ``/api/usage`` and the key's budget.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from decimal import Decimal

import httpx
import pytest

from lib.limits.ratelimit import Limiter
from tests.e2e.conftest import MASTER, PROVIDER_KEYS
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e


def start(redis_url: str, upstream, prefix: str, **env: str) -> ServerProcess:
    return ServerProcess({
        "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "AIPROXY_MASTER_KEY": MASTER,
        "OPENAI_API_KEYS": PROVIDER_KEYS["openai"], "OPENAI_BASE_URL": upstream.url + "/v1",
        "REQUEST_TIMEOUT": "20", "SEMANTIC_CACHE": "false", **env,
    })


def sigterm(server: ServerProcess) -> float:
    """SIGTERM the server's process group; returns the seconds until the master has exited."""
    began = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    finally:
        server.stop()  # SIGKILL if it is still there
    return time.monotonic() - began


def issue_key(server: ServerProcess, **body) -> dict:
    resp = httpx.post(server.url + "/admin/keys", json={"user_id": "shutdown", "rpm": 0, **body},
                      headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_idle_keepalive_connections_do_not_hold_the_stop(redis_url, upstream):
    server = start(redis_url, upstream, "e2e-stop-idle:", KEEPALIVE="75", GRACEFUL_TIMEOUT="30")
    idle = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        idle.append(sock)
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # connected, never sent a byte
    time.sleep(0.3)
    closed_after: list[float] = []

    def watch(sock: socket.socket, began: float) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
        closed_after.append(time.monotonic() - began)

    began = time.monotonic()
    watchers = [threading.Thread(target=watch, args=(s, began), daemon=True) for s in idle + [silent]]
    for w in watchers:
        w.start()
    took = sigterm(server)
    for w in watchers:
        w.join(timeout=5)
    for sock in idle + [silent]:
        sock.close()
    print(f"\nSIGTERM with 3 idle keep-alive connections and 1 silent one: exited in {took:.2f} s; "
          f"connections closed after {sorted(round(t, 2) for t in closed_after)} s")
    assert took < 3.0, server.output()[-3000:]
    assert len(closed_after) == 4 and max(closed_after) < 2.5
    assert "Traceback" not in server.output()


def test_sigterm_mid_stream_records_and_settles_what_it_cuts(redis_url, redis_client, upstream):
    grace = 5
    prefix = "e2e-stop-stream:"
    server = start(redis_url, upstream, prefix, GRACEFUL_TIMEOUT=str(grace))
    key = issue_key(server, budget_usd="5")
    auth = {"Authorization": f"Bearer {key['key']}", "Cache-Control": "no-store"}
    results: dict[str, dict] = {}
    streaming = {name: threading.Event() for name in ("long", "short")}

    def stream(name: str, directive: str) -> None:
        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": f"{directive} {name}"}]}
        out: dict = {"events": [], "ended_at": None}
        with httpx.Client(timeout=30) as client, client.stream("POST", server.url + "/v1/chat/completions",
                                                               json=body, headers=auth) as resp:
            out["status"], out["proxy_id"] = resp.status_code, resp.headers.get("x-aiproxy-id")
            try:
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        out["events"].append(line[6:])
                        streaming[name].set()
            except httpx.HTTPError as exc:
                out["cut"] = repr(exc)
        out["ended_at"] = time.monotonic()
        results[name] = out

    def plain() -> None:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "[fake:slow=15] plain"}]}
        resp = httpx.post(server.url + "/v1/chat/completions", json=body, headers=auth, timeout=30)
        results["plain"] = {"status": resp.status_code, "body": resp.json(), "proxy_id": resp.headers.get("x-aiproxy-id"),
                            "ended_at": time.monotonic()}

    threads = [threading.Thread(target=stream, args=("long", "[fake:tokens=40 chunks=40 chunk_delay=0.25]")),
               threading.Thread(target=stream, args=("short", "[fake:tokens=6 chunks=6 chunk_delay=0.2]")),
               threading.Thread(target=plain)]
    for t in threads:
        t.start()
    assert all(e.wait(10) for e in streaming.values()), server.output()[-3000:]
    time.sleep(0.2)  # the plain request is waiting on its upstream by now

    began = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)
    refused_at = None
    while refused_at is None and time.monotonic() - began < 3:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
            time.sleep(0.1)
        except OSError:
            refused_at = time.monotonic() - began
    try:
        server.proc.wait(timeout=30)
    finally:
        took = time.monotonic() - began
        server.stop()
    for t in threads:
        t.join(timeout=10)
    output = server.output()

    long, short, plain_result = results["long"], results["short"], results["plain"]
    print(f"\nSIGTERM mid-stream (GRACEFUL_TIMEOUT={grace}): new connections refused after {refused_at:.2f} s; "
          f"short stream ended normally at {short['ended_at'] - began:.2f} s; long stream cut at "
          f"{long['ended_at'] - began:.2f} s, plain request at {plain_result['ended_at'] - began:.2f} s; "
          f"server exited after {took:.2f} s")
    assert refused_at is not None and refused_at < long["ended_at"] - began
    assert short["status"] == 200 and short["events"][-1] == "[DONE]"
    assert long["status"] == 200 and long["events"][-1] != "[DONE]"
    error = json.loads(long["events"][-1])["error"]
    assert error["code"] == "server_shutting_down" and set(error) == {"message", "type", "param", "code"}
    assert 1 < len(long["events"]) < 40
    assert plain_result["status"] == 503 and plain_result["body"]["error"]["code"] == "server_shutting_down"
    assert took < grace, output[-3000:]  # every worker was out before the master's SIGKILL
    assert "SIGKILL" not in output and "Traceback" not in output, output[-3000:]

    # The records, after a restart against the same Redis.
    server = start(redis_url, upstream, prefix)
    try:
        records = {}
        for name in ("long", "short", "plain"):
            resp = httpx.get(f"{server.url}/api/logs/{results[name]['proxy_id']}", headers=auth)
            assert resp.status_code == 200, (name, resp.text)
            records[name] = resp.json()
        usage = httpx.get(server.url + "/api/usage", headers=auth).json()["totals"]
    finally:
        server.stop()
    assert records["short"]["status"] == 200
    assert records["long"]["status"] == 503 and records["long"]["error_code"] == "server_shutting_down"
    assert records["long"]["completion_tokens"] > 0 and Decimal(records["long"]["cost_usd"]) > 0  # what was streamed
    assert records["plain"]["status"] == 503 and records["plain"]["error_code"] == "server_shutting_down"
    assert usage["requests"] == 3
    assert usage["completion_tokens"] == sum(r["completion_tokens"] for r in records.values())
    budget = Limiter(redis_client, prefix=prefix).budget_status(key["id"], 5_000_000)
    charged = sum(Decimal(r["cost_usd"] or 0) for r in records.values())
    assert budget["reserved_micros"] == 0, budget  # no hold left behind
    # everything was charged (to the micro-dollar each request is rounded to), nothing is still held
    assert abs(budget["spent_micros"] - charged * 1_000_000) <= len(records), (budget, charged)
