"""CPU per request of ``/v1/responses`` and ``/v1/messages`` against ``/v1/chat/completions``, through the same
app in the same run: ``python bench/protocols_bench.py [requests per endpoint]``.

The whole app runs in this process (Flask test client; the sandbox provider answers, the cache is off, the
key has no rate limit), against a private Redis in another process, so ``time.process_time`` counts what
the gateway itself spends per request: parsing, translation in and out, the pipeline, logging. The test
client's own work is the same for every endpoint. Endpoints run interleaved in rounds so drift (other
engineers' jobs on the machine) falls on all of them alike; the best round of each is reported with the
median. Target: each protocol at most 1.10x chat's CPU per request.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.settings import Settings  # noqa: E402
from lib.store import start_embedded_redis  # noqa: E402
from src.app import create_app  # noqa: E402

MASTER = "bench-master-key-0123456789-abcdefghij"
PROMPT = "Summarise the quarterly report in three short bullet points for the board."


def cases(key: str) -> dict[str, tuple[str, dict[str, Any], dict[str, str]]]:
    bearer = {"Authorization": f"Bearer {key}", "X-AIProxy-Cache": "off"}
    anthropic = {"x-api-key": key, "anthropic-version": "2023-06-01", "X-AIProxy-Cache": "off"}
    chat = {"model": "sandbox", "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}]}
    out = {
        "chat": ("/v1/chat/completions", chat, bearer),
        "responses": ("/v1/responses", {"model": "sandbox", "max_output_tokens": 256, "input": PROMPT}, bearer),
        "responses store=false": ("/v1/responses", {"model": "sandbox", "max_output_tokens": 256, "input": PROMPT,
                                                    "store": False}, bearer),
        "messages": ("/v1/messages", {"model": "sandbox", "max_tokens": 256,
                                      "messages": [{"role": "user", "content": PROMPT}]}, anthropic),
    }
    for name in list(out):
        url, body, headers = out[name]
        out[name + " (stream)"] = (url, {**body, "stream": True}, headers)
    return out


def run(client: Any, url: str, body: dict[str, Any], headers: dict[str, str], n: int) -> float:
    """CPU seconds per request over ``n`` requests."""
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        resp = client.post(url, json=body, headers=headers)
        resp.get_data()
        resp.close()  # the log record is written here, as after a real response
        assert resp.status_code == 200, resp.get_data(as_text=True)
    return (time.process_time() - start) / n


def main() -> None:
    per_round = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = 10
    redis = start_embedded_redis()
    try:
        app = create_app(Settings.from_env({"ENVIRONMENT": "test", "REDIS_URL": redis.url, "AIPROXY_MASTER_KEY": MASTER,
                                            "SEMANTIC_CACHE": "false", "LOG_LEVEL": "ERROR"}, config_file=None))
        client = app.test_client()
        key = client.post("/admin/keys", json={"user_id": "bench", "rpm": 0},
                          headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
        table = cases(key)
        import io
        import contextlib

        samples: dict[str, list[float]] = {name: [] for name in table}
        with contextlib.redirect_stdout(io.StringIO()):  # the billing line per request goes to stdout
            for name, (url, body, headers) in table.items():
                run(client, url, body, headers, 30)  # warm-up
            for _ in range(rounds):
                for name, (url, body, headers) in table.items():
                    samples[name].append(run(client, url, body, headers, per_round // rounds or 1))
    finally:
        redis.stop()
    print(f"CPU per request, {per_round} requests per endpoint in {rounds} interleaved rounds "
          "(sandbox provider, cache off, one process):")
    print(f"{'endpoint':28} {'best ms':>8} {'median ms':>10} {'vs chat (best)':>15} {'vs chat (median)':>17}")
    for name, values in samples.items():
        base = "chat (stream)" if name.endswith("(stream)") else "chat"
        best, median = min(values), statistics.median(values)
        ratio_best = best / min(samples[base])
        ratio_median = median / statistics.median(samples[base])
        print(f"{name:28} {best * 1000:8.3f} {median * 1000:10.3f} {ratio_best:14.2f}x {ratio_median:16.2f}x")


if __name__ == "__main__":
    main()
