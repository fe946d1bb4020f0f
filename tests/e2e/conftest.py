"""End-to-end fixtures: fake upstreams on 127.0.0.1 and the real server started with ``bin/start.sh``."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.server import ServerProcess
from tests.fakes.upstreams import FakeUpstream

MASTER = "e2e-master-key-0123456789-abcdefghijkl"
PROVIDER_KEYS = {"openai": "sk-fake-openai", "anthropic": "sk-ant-fake", "gemini": "gm-fake-key"}


@pytest.fixture(scope="session")
def upstream():
    fake = FakeUpstream(valid_keys=set(PROVIDER_KEYS.values())).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def server(redis_url, upstream):
    proc = ServerProcess({
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": "e2e:",
        "AIPROXY_MASTER_KEY": MASTER,
        "OPENAI_API_KEYS": PROVIDER_KEYS["openai"],
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "ANTHROPIC_API_KEY": PROVIDER_KEYS["anthropic"],
        "ANTHROPIC_BASE_URL": upstream.url,
        "GEMINI_API_KEY": PROVIDER_KEYS["gemini"],
        "GEMINI_BASE_URL": upstream.url,
        "REQUEST_TIMEOUT": "5",
        "MAX_REQUEST_BYTES": "200000",
        "CORS_ALLOWED_ORIGINS": "http://127.0.0.1:5173",  # a browser app's dev server (tests/e2e/test_protocols.py)
    })
    yield proc
    proc.stop()


def issue_key(server: ServerProcess, **body) -> str:
    body.setdefault("user_id", "e2e-user")
    resp = httpx.post(server.url + "/admin/keys", json=body, headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


@pytest.fixture(scope="session")
def gateway_key(server) -> str:
    # rpm=0: no request limit, so the session's many tests (and 200 concurrent streams) share one key
    return issue_key(server, rpm=0)


@pytest.fixture
def client(server, gateway_key):
    import openai

    c = openai.OpenAI(base_url=server.url + "/v1", api_key=gateway_key, max_retries=0, timeout=20)
    yield c
    c.close()
