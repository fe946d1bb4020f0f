"""Exact-cache hit throughput through the real server (bin/start.sh: gunicorn + gevent), with a baseline.

Starts a private Redis (or uses REDIS_URL) and the server with the sandbox provider, primes one answer,
then drives exact hits from several client processes with keep-alive connections for a fixed time. The
baseline, measured the same way in the same run, is ``GET /api/v1/health`` (the framework with no Redis
and no gateway work), so the result reads as a ratio even on a noisy shared machine.

    .venv/bin/python bench/cache_bench.py [--seconds 8] [--clients 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from lib.store import start_embedded_redis  # noqa: E402
from tests.e2e.server import ServerProcess  # noqa: E402

MASTER = "bench-master-key-0123456789-abcdefghij"
BODY = {"model": "sandbox", "messages": [{"role": "user", "content": "What is our travel expense policy?"}]}


def _client(url: str, key: str | None, seconds: float, out: "mp.Queue") -> None:
    n = bad = 0
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(timeout=10, headers=headers) as h:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if key:
                r = h.post(url, json=BODY)
                ok = r.status_code == 200 and r.headers.get("x-aiproxy-cache") == "hit-exact"
            else:
                ok = h.get(url).status_code == 200
            n += ok
            bad += not ok
    out.put((n, bad))


def drive(url: str, key: str | None, seconds: float, clients: int) -> tuple[float, int]:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_client, args=(url, key, seconds, q)) for _ in range(clients)]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results)


def drive_wrk(url: str, key: str | None, seconds: float, connections: int) -> float:
    """Requests/s from ``wrk`` (a C load generator: it leaves the cores to the server)."""
    args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{int(seconds)}s", "--latency"]
    script = None
    if key:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n'
                     'wrk.headers["Authorization"] = "Bearer %s"\n' % (json.dumps(json.dumps(BODY)), key))
        script.close()
        args += ["-s", script.name]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script.name)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} error responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    redis = None
    url = os.environ.get("REDIS_URL")
    if not url:
        redis = start_embedded_redis()
        url = redis.url
    server = ServerProcess({"REDIS_URL": url, "REDIS_PREFIX": f"bench{os.getpid()}:", "AIPROXY_MASTER_KEY": MASTER,
                            "SEMANTIC_CACHE": "false", "LOG_LEVEL": "WARNING"}, workers=args.workers)
    try:
        key = httpx.post(server.url + "/admin/keys", json={"user_id": "bench", "rpm": 0},
                         headers={"Authorization": f"Bearer {MASTER}"}).json()["key"]
        httpx.post(server.url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"})
        auth = {"Authorization": f"Bearer {key}"}
        hits_before = httpx.get(server.url + "/api/usage", headers=auth).json()["totals"]["cache_hits"]
        if shutil.which("wrk"):
            tool = "wrk, 1 thread, 32 connections"
            drive_wrk(server.url + "/api/v1/health", None, 2, 32)  # warm-up
            base = drive_wrk(server.url + "/api/v1/health", None, args.seconds, 32)
            hits = drive_wrk(server.url + "/v1/chat/completions", key, args.seconds, 32)
            bad = 0
        else:
            tool = f"{args.clients} Python client processes (install wrk for a lighter load generator)"
            drive(server.url + "/api/v1/health", None, 1.0, args.clients)  # warm-up
            base, _ = drive(server.url + "/api/v1/health", None, args.seconds, args.clients)
            hits, bad = drive(server.url + "/v1/chat/completions", key, args.seconds, args.clients)
        time.sleep(1.0)  # the last requests' usage records are written after their responses
        hits_after = httpx.get(server.url + "/api/usage", headers=auth).json()["totals"]["cache_hits"]
        print(f"machine: {os.cpu_count()} cores, {args.workers} gevent workers; load: {tool}; "
              f"{args.seconds:.0f} s each")
        print(f"cache hits recorded in usage during the run: {hits_after - hits_before}")
        print(f"baseline GET /api/v1/health : {base:8.0f} req/s")
        print(f"exact cache hits (chat)     : {hits:8.0f} req/s  ({hits / base:.2f} x baseline; {bad} non-hits)")
        print(f"goal: >= 1500 req/s exact hits -> {'met' if hits >= 1500 else 'NOT met'} on this run")
    finally:
        server.stop()
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    main()
