"""Named provider instances through the real server (bin/start.sh: gunicorn + gevent, 2 workers) and the official
openai SDK: two OpenAI-compatible instances at once with weighted deployments (spread, cool-down on 429 and
recovery, shared by both workers through Redis), Azure OpenAI and Bedrock against their fakes, local models
served by the gunicorn master's model servers (a slow generation stalls nothing), and start-up refusing bad
provider entries."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import MASTER
from tests.e2e.server import ServerProcess
from tests.fakes import FakeUpstream, tiny_lm

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fakes():
    east = FakeUpstream(valid_keys={"k-east", "az-key", "AKIDE2E"}).start()
    west = FakeUpstream(valid_keys={"k-west"}).start()
    yield east, west
    east.stop()
    west.stop()


@pytest.fixture(scope="module")
def models_file(fakes, tmp_path_factory) -> str:
    east, west = fakes
    root = tmp_path_factory.mktemp("providers")
    chain = tiny_lm.build(root / "chain")
    endless = tiny_lm.build(root / "endless", kind="endless", positions=4096)
    path = root / "models.yaml"
    path.write_text(f"""
providers:
  east: {{type: openai, base_url: "{east.url}/v1", api_key_env: EAST_KEY}}
  west: {{type: openai, base_url: "{west.url}/v1", api_key_env: WEST_KEY, headers: {{X-Team: e2e}}}}
  azure-east: {{type: azure, base_url: "{east.url}", api_version: "2024-10-21", api_key_env: AZURE_EAST_API_KEY}}
  bedrock: {{type: bedrock, region: us-east-1, endpoint_url: "{east.url}"}}
  tiny: {{type: local, path: "{chain}", queue: 4}}
  tiny-long: {{type: local, path: "{endless}", queue: 4}}
models:
  gpt-lb:
    deployments: [{{provider: east, model: m-east, weight: 3}}, {{provider: west, model: m-west, weight: 1}}]
  azure-4o: {{provider: azure-east, model: gpt-4o-prod}}
  claude-br: {{provider: bedrock, model: anthropic.claude-3-5-haiku-20241022-v1:0}}
  tiny: {{provider: tiny, model: tiny-chain}}
  tiny-long: {{provider: tiny-long, model: tiny-endless}}
""")
    return str(path)


@pytest.fixture(scope="module")
def server(redis_url, models_file):
    proc = ServerProcess({
        "REDIS_URL": redis_url, "REDIS_PREFIX": "e2e-providers:", "AIPROXY_MASTER_KEY": MASTER,
        "MODELS_FILE": models_file, "EAST_KEY": "k-east", "WEST_KEY": "k-west", "AZURE_EAST_API_KEY": "az-key",
        "AWS_ACCESS_KEY_ID": "AKIDE2E", "AWS_SECRET_ACCESS_KEY": "e2e-secret", "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "SEMANTIC_CACHE": "false", "REQUEST_TIMEOUT": "20",
        "DEPLOYMENT_COOLDOWN_SECONDS": "30",
    })
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    key = httpx.post(server.url + "/admin/keys", json={"user_id": "e2e-providers", "rpm": 0},
                     headers={"Authorization": f"Bearer {MASTER}"}).json()["key"]
    c = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)
    yield c
    c.close()


def chat(client, model: str, text: str = "hello", **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], extra_body={"cache": False}, **kw)


def test_two_openai_compatible_instances_spread_by_weight(client, fakes) -> None:
    east, west = fakes
    east.reset(), west.reset()
    counts = Counter(chat(client, "gpt-lb", f"spread {i}").headers["x-aiproxy-deployment"] for i in range(200))
    # weights 3:1 over 200 requests: 150 / 50 expected, binomial sd 6.1; ±25 is beyond 4 sd
    print(f"\nspread over 200 requests (weights 3:1): {dict(counts)}")
    assert abs(counts["east/m-east"] - 150) <= 25 and sum(counts.values()) == 200
    assert len(east.requests) == counts["east/m-east"] and len(west.requests) == counts["west/m-west"]
    assert all(r.headers.get("x-team") == "e2e" for r in west.requests)  # per-instance extra headers


def test_a_429_cools_the_deployment_for_every_worker_and_it_recovers(client, fakes, server) -> None:
    east, west = fakes
    east.reset(), west.reset()
    east.rate_limited_keys.add("k-east")  # 429 with Retry-After: 1
    try:
        started = time.monotonic()
        answered = [chat(client, "gpt-lb", f"cool {i}") for i in range(30)]
        elapsed = time.monotonic() - started
        assert {r.headers["x-aiproxy-deployment"] for r in answered} == {"west/m-west"}
        assert all(r.parse().choices[0].message.content.startswith("Echo: cool") for r in answered)
        # one 429 per cool-down per worker at most (two workers, each reads cool-downs at most once a second)
        tries = len(east.requests)
        print(f"\ncool-down: 30 requests in {elapsed:.2f} s while east answered 429: {tries} reached east")
        assert 1 <= tries <= 2 * (1 + int(elapsed)), (tries, elapsed)
        health = httpx.get(server.url + "/health").json()["providers"]
        assert health["east"]["type"] == "openai" and health["east"]["configured"] is True
    finally:
        east.rate_limited_keys.clear()
    cleared = time.monotonic()
    back = None
    for i in range(100):
        if chat(client, "gpt-lb", f"recover {i}").headers["x-aiproxy-deployment"] == "east/m-east":
            back = time.monotonic() - cleared
            break
        time.sleep(0.05)
    print(f"recovery: east answered again {back:.2f} s after its 429s stopped (Retry-After 1 s)")
    assert back is not None and back < 4
    metrics = httpx.get(server.url + "/metrics").text
    assert 'aiproxy_deployment_cooldowns_total{deployment="east/m-east",reason="429 rate_limit_exceeded"}' in metrics
    assert 'deployment="west/m-west",status="200"' in metrics


def test_azure_and_bedrock_instances_plain_streamed_and_tools(client) -> None:
    plain = chat(client, "azure-4o", "ping azure")
    assert plain.headers["x-aiproxy-provider"] == "azure-east"
    result = plain.parse()
    assert result.choices[0].message.content == "Echo: ping azure" and result.model == "gpt-4o-2024-11-20"
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, "azure-4o", "bad [fake:content_filter]")
    assert caught.value.body["code"] == "content_policy_violation"
    for model in ("azure-4o", "claude-br"):
        chunks = list(client.chat.completions.create(
            model=model, stream=True, stream_options={"include_usage": True}, extra_body={"cache": False},
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"stream {model} now"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"Echo: stream {model} now"
        assert chunks[-1].usage.prompt_tokens == 2 + 3
    bedrock = chat(client, "claude-br", "weather in Paris", tools=[{"type": "function", "function": {
        "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    call = bedrock.parse().choices[0].message.tool_calls[0]
    assert bedrock.headers["x-aiproxy-provider"] == "bedrock"
    assert call.function.name == "weather" and json.loads(call.function.arguments) == {"city": "weather in Paris"}


def test_local_model_through_the_machine_model_server(client, server) -> None:
    result = chat(client, "tiny", "hello", max_tokens=4).parse()
    assert result.choices[0].message.content == " ".join(tiny_lm.CHAIN[:4])
    assert result.choices[0].finish_reason == "length" and result.usage.completion_tokens == 4
    chunks = list(client.chat.completions.create(model="tiny", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hello"}]))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert " ".join(p.strip() for p in pieces) == " ".join(tiny_lm.CHAIN) and len(pieces) == len(tiny_lm.CHAIN)
    assert chunks[-1].usage.completion_tokens == len(tiny_lm.CHAIN)
    owners = {m.id: m.owned_by for m in client.models.list()}
    assert owners["tiny"] == "tiny" and owners["gpt-lb"] == "east" and owners["claude-br"] == "bedrock"
    assert "started the local model server" in server.output()


def test_a_slow_local_generation_stalls_no_other_request(client) -> None:
    chat(client, "tiny-long", "warm up", max_tokens=2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        slow = pool.submit(lambda: chat(client, "tiny-long", "go on", max_tokens=1200).parse())
        time.sleep(0.3)
        quick: list[float] = []

        def one(i: int) -> None:
            t = time.monotonic()
            assert chat(client, "sandbox", f"quick {i}").parse().choices[0].message.content
            quick.append(time.monotonic() - t)

        list(pool.map(one, range(24)))
        quick_done = time.monotonic() - started
        result = slow.result(timeout=60)
        slow_done = time.monotonic() - started
    tokens = result.usage.completion_tokens
    print(f"\nlocal model: {tokens} tokens in {slow_done:.1f} s ({tokens / slow_done:.0f} tokens/s, 1 torch thread) "
          f"while 24 sandbox requests took at most {max(quick) * 1000:.0f} ms (all done after {quick_done:.1f} s)")
    assert tokens == 1200 and quick_done < slow_done
    assert max(quick) < 2.0


def test_start_up_refuses_a_bad_provider_entry(tmp_path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("providers:\n  openai: {type: anthropic}\nmodels:\n  m: {provider: openai}\n")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PORT": "1", "SEMANTIC_CACHE": "false",
           "MODELS_FILE": str(path)}
    result = subprocess.run([str(ROOT / "bin" / "start.sh")], env=env, capture_output=True, text=True, timeout=60,
                            cwd="/")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "AI Proxy cannot start" in output
    assert "providers.openai has type 'anthropic' but is named like the built-in type 'openai'" in output
