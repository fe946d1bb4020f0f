"""Browsers: CORS preflights and exposed headers for CORS_ALLOWED_ORIGINS; x-request-id on every response;
cache hits carry the headers a live answer does, in all three protocols."""

from __future__ import annotations

import pytest

from tests.api.conftest import MASTER, chat_body

ORIGIN = "https://app.example.com"
PATHS = ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens", "/v1/models",
         "/v1/embeddings", "/api/usage", "/api/logs/00000000-0000-4000-8000-000000000000", "/admin/keys",
         "/v1/responses/resp_x"]
BROWSER_HEADERS = ("authorization, content-type, x-api-key, anthropic-version, anthropic-beta, "
                   "x-stainless-os, x-stainless-lang, x-stainless-retry-count")


@pytest.fixture
def cors(make_settings):
    from src.app import create_app

    return create_app(make_settings(CORS_ALLOWED_ORIGINS=f"{ORIGIN},https://other.example")).test_client()


def preflight(c, path: str, origin: str = ORIGIN, headers: str = BROWSER_HEADERS, method: str = "POST"):
    return c.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                    "Access-Control-Request-Headers": headers})


@pytest.mark.parametrize("path", PATHS)
def test_preflight_from_an_allowed_origin(cors, path):
    resp = preflight(cors, path, method="GET" if path.startswith(("/v1/models", "/api/", "/v1/responses/")) else "POST")
    assert resp.status_code == 204 and resp.get_data() == b""
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = {h.strip() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {h.strip() for h in BROWSER_HEADERS.split(",")}
    assert {"GET", "POST", "DELETE", "OPTIONS"} <= {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in resp.headers["Vary"]
    assert resp.headers["x-request-id"]


def test_only_allowed_request_headers_are_echoed(cors):
    resp = preflight(cors, "/v1/chat/completions", headers="content-type, x-evil-header, x-stainless-arch")
    assert resp.headers["Access-Control-Allow-Headers"] == "content-type, x-stainless-arch"


def test_a_disallowed_origin_gets_no_cors_headers(cors):
    resp = preflight(cors, "/v1/chat/completions", origin="https://evil.example")
    assert not [h for h in resp.headers.keys() if h.lower().startswith("access-control-")]
    resp = cors.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_responses_expose_the_gateway_headers(cors):
    key = cors.post("/admin/keys", json={"user_id": "u", "rpm": 5, "tpm": 100000},
                    headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    resp = cors.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}",
                                                                       "Origin": ORIGIN})
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in resp.headers["Vary"]
    exposed = {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    present = {h.lower() for h in resp.headers.keys() if h.lower().startswith(("x-aiproxy-", "x-ratelimit-"))}
    assert present and present <= exposed
    assert {"retry-after", "x-request-id", "x-ratelimit-remaining-tokens", "x-aiproxy-provider"} <= exposed
    error = cors.post("/v1/chat/completions", json=chat_body(), headers={"Origin": ORIGIN})
    assert error.status_code == 401 and error.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_no_cors_configured_means_no_cors_headers(client):
    resp = preflight(client, "/v1/chat/completions")
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_x_request_id_is_echoed_when_well_formed_else_generated(client, auth):
    sent = client.get("/api/v1/health", headers={"X-Request-Id": "client-req_1:2.3"})
    assert sent.headers["x-request-id"] == "client-req_1:2.3"
    for bad in ("has spaces", "x" * 129, "semi;colon"):
        resp = client.get("/api/v1/health", headers={"X-Request-Id": bad})
        assert resp.headers["x-request-id"] != bad and resp.headers["x-request-id"]
    chat = client.post("/v1/chat/completions", json=chat_body(), headers=auth)
    assert chat.headers["x-request-id"] == chat.headers["x-aiproxy-id"]
    chat.close()
    log = client.get("/api/logs/" + chat.headers["x-aiproxy-id"], headers=auth).get_json()
    assert log["request_id"] == chat.headers["x-request-id"]


@pytest.mark.parametrize("stream", [False, True])
def test_cache_hits_carry_the_live_headers_in_every_protocol(client, auth, stream):
    calls = {
        "chat": ("/v1/chat/completions", chat_body(messages=[{"role": "user", "content": f"cache me {stream}"}],
                                                   stream=stream), auth),
        "responses": ("/v1/responses", {"model": "sandbox", "input": f"cache me too {stream}", "stream": stream,
                                        "store": False}, auth),
        "messages": ("/v1/messages", {"model": "sandbox", "max_tokens": 200, "stream": stream,
                                      "messages": [{"role": "user", "content": f"and me {stream}"}]},
                     {"x-api-key": auth["Authorization"][7:]}),
    }
    for name, (url, body, headers) in calls.items():
        live = client.post(url, json=body, headers=headers)
        live.get_data()
        hit = client.post(url, json=body, headers=headers)
        hit.get_data()
        assert live.headers["x-aiproxy-cache"] == "miss" and hit.headers["x-aiproxy-cache"] == "hit-exact", name
        for header in ("x-aiproxy-provider", "x-aiproxy-id", "x-request-id"):
            assert header in hit.headers, (name, header)
        assert hit.headers["x-aiproxy-provider"] == live.headers["x-aiproxy-provider"] == "sandbox"
