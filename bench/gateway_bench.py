"""The gateway's cost over its own baseline, as the peer harness (``../shared/bench``) measures it, in one run:
``python bench/gateway_bench.py [--seconds 10] [--scenarios sat,rate,stream,huge] [--workers N]``.

The real server (``bin/start.sh``, gunicorn + gevent workers) with the whole pipeline on — auth, limits,
accounting, the request log, the cache off so every request reaches the upstream — in front of a fast mock
OpenAI upstream (``bench/support/mock_upstream.py``); every scenario runs once direct to the mock (the
baseline) and once through the gateway, so the numbers are read as differences and ratios within the run:

- ``sat``: 64 keep-alive connections as fast as answers come: requests/s, and CPU per request of the
  gateway's process tree (master + workers, from /proc);
- ``rate``: 50 requests/s against an upstream that waits 50 ms: the latency the gateway adds (Δp50, Δp99);
- ``stream``: 200 streams at once, 20 chunks 50 ms apart: completed, time to first byte;
- ``huge``: small requests every 10 ms while one body of 25,000 messages goes through the same worker:
  how long they wait (a worker that stalls shows it as the max);
- memory: the peak RSS and PSS of the gateway's process tree over the whole run.

The load generator runs in this process (``bench/support/load.py``) on the same cores, as wrk does in the
peer harness; that harness (wrk, Portkey, LiteLLM) stays the judge of the targets. Redis: ``REDIS_URL`` if
set, else a private one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "support"))

import load  # noqa: E402

MASTER = "bench-master-key-0123456789-abcdefghij"
SMALL = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
         "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def memory_mib(pids: list[int]) -> tuple[float, float]:
    rss = pss = 0
    for pid in pids:
        try:
            rss += next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
            pss += next(int(line.split()[1]) for line in open(f"/proc/{pid}/smaps_rollup") if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return rss / 1024, pss / 1024


class Peak(threading.Thread):
    """The gateway tree's peak RSS/PSS, sampled every 0.25 s."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.rss, self.pss, self.stopped = root, 0.0, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            rss, pss = memory_mib(tree(self.root))
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)


def wait_up(url: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


def huge(url: str, headers: dict[str, str], n: int = 25_000) -> dict[str, float]:
    """Small requests every 10 ms, alone and then while one ``n``-message body goes through."""
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(n)]
    big = {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 5}

    async def run() -> dict[str, float]:
        host, port, small_raw = load.raw_request(url, SMALL, headers)
        _, _, big_raw = load.raw_request(url, big, headers)

        async def smalls(seconds: float) -> list[float]:
            conn, out = await load.Conn.open(host, port), []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t = time.perf_counter()
                await conn.request(small_raw)
                out.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.01)
            conn.close()
            return out

        alone = await smalls(2.0)
        conn = await load.Conn.open(host, port)
        t = time.perf_counter()
        side = asyncio.create_task(smalls(1.5))
        await asyncio.sleep(0.2)
        status = await conn.request(big_raw)
        took = (time.perf_counter() - t - 0.2) * 1000
        during = await side
        conn.close()
        assert status == 200, status
        return {"alone_p50": load.pct(alone, 50), "alone_max": max(alone), "during_p50": load.pct(during, 50),
                "during_max": max(during), "huge_ms": took}

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--scenarios", default="sat,rate,stream,huge")
    ap.add_argument("--workers", type=int, default=0, help="WEB_CONCURRENCY (default: the gateway's own)")
    args = ap.parse_args()
    scenarios = args.scenarios.split(",")

    redis_url, embedded = os.environ.get("REDIS_URL"), None
    if not redis_url:
        from lib.store import start_embedded_redis

        embedded = start_embedded_redis()
        redis_url = embedded.url
    mock_port, port = free_port(), free_port()
    mock = subprocess.Popen([sys.executable, str(ROOT / "bench/support/mock_upstream.py"), "--port", str(mock_port),
                             "--latency-ms", "50"])
    env = {**os.environ, "PORT": str(port), "REDIS_URL": redis_url, "REDIS_PREFIX": f"bench{os.getpid()}:",
           "AIPROXY_MASTER_KEY": MASTER, "OPENAI_API_KEYS": "sk-bench-upstream",
           "OPENAI_BASE_URL": f"http://127.0.0.1:{mock_port}/v1", "LOG_LEVEL": "WARNING", "SEMANTIC_CACHE": "off",
           "RATE_LIMIT": "100000000"}
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    server = subprocess.Popen([str(ROOT / "bin/start.sh")], env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    rows: list[tuple[str, str, str]] = []
    try:
        wait_up(f"http://127.0.0.1:{mock_port}/health")
        wait_up(f"http://127.0.0.1:{port}/api/v1/health")
        idle = memory_mib(tree(server.pid))
        key = post_json(f"http://127.0.0.1:{port}/admin/keys", {"user_id": "bench", "cache": False},
                        {"Authorization": f"Bearer {MASTER}"})["key"]
        auth = {"Authorization": f"Bearer {key}"}
        direct = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
        proxied = f"http://127.0.0.1:{port}/v1/chat/completions"
        peak = Peak(server.pid)
        peak.start()
        asyncio.run(load.closed(proxied, SMALL, auth, 16, 2.0))  # warm-up: connections, caches
        if "sat" in scenarios:
            base = asyncio.run(load.closed(direct, SMALL, {}, 64, args.seconds))
            before = cpu_seconds(tree(server.pid))
            sat = asyncio.run(load.closed(proxied, SMALL, auth, 64, args.seconds))
            cpu = cpu_seconds(tree(server.pid)) - before
            rows += [("saturation, req/s (64 connections)", f"{base['rps']:,.0f}", f"{sat['rps']:,.0f}"),
                     ("CPU per request at saturation", "–",
                      f"{1000 * cpu / max(1, sat['requests']):.2f} ms ({cpu / args.seconds:.2f} cores)"),
                     ("errors", str(base["errors"]), str(sat["errors"]))]
        if "rate" in scenarios:
            slow = {**SMALL, "model": "gpt-4o-mini-slow"}
            base = asyncio.run(load.open_loop(direct, slow, {}, 50, args.seconds))
            through = asyncio.run(load.open_loop(proxied, slow, auth, 50, args.seconds))
            rows.append(("50 req/s, upstream 50 ms: p50 / p99",
                         f"{base['p50_ms']:.1f} / {base['p99_ms']:.1f} ms",
                         f"{through['p50_ms']:.1f} / {through['p99_ms']:.1f} ms "
                         f"(Δ +{through['p50_ms'] - base['p50_ms']:.1f} / +{through['p99_ms'] - base['p99_ms']:.1f})"))
        if "stream" in scenarios:
            base = asyncio.run(load.streams(direct, SMALL, {}, 200))
            through = asyncio.run(load.streams(proxied, SMALL, auth, 200))
            rows.append(("200 streams at once: completed, TTFB p50",
                         f"{base['completed']}, {base['ttfb_p50_ms']:.0f} ms",
                         f"{through['completed']}, {through['ttfb_p50_ms']:.0f} ms"))
        if "huge" in scenarios:
            result = huge(proxied, auth)
            rows.append(("small requests alone: p50 / max", "–",
                         f"{result['alone_p50']:.1f} / {result['alone_max']:.1f} ms"))
            rows.append(("... while a 25,000-message body is served: p50 / max", "–",
                         f"{result['during_p50']:.1f} / {result['during_max']:.1f} ms (the body: "
                         f"{result['huge_ms']:.0f} ms)"))
        peak.stopped.set()
        peak.join()
        rows.append(("memory of the gateway tree: idle RSS / PSS", "–", f"{idle[0]:.0f} / {idle[1]:.0f} MiB"))
        rows.append(("memory of the gateway tree: peak RSS / PSS", "–", f"{peak.rss:.0f} / {peak.pss:.0f} MiB"))
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        mock.terminate()
        if embedded is not None:
            embedded.stop()
    print("\n| same run | direct to the mock | AI Proxy |\n| --- | --- | --- |")
    for name, base_value, value in rows:
        print(f"| {name} | {base_value} | {value} |")


if __name__ == "__main__":
    main()
