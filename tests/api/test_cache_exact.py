"""Exact cache through the Flask client: hits, scopes, controls, streaming replay, TTL, Redis trouble."""

from __future__ import annotations

import json
import time

from tests.api.conftest import MASTER, chat_body

URL = "/v1/chat/completions"


def ask(client, key, **kw):
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    return client.post(URL, json=chat_body(**kw), headers=headers)


def test_exact_hit_and_miss(client, admin):
    key = admin.create_key()["key"]
    first = ask(client, key)
    assert first.headers["x-aiproxy-cache"] == "miss"
    second = ask(client, key)
    assert second.headers["x-aiproxy-cache"] == "hit-exact"
    a, b = first.get_json(), second.get_json()
    assert a["choices"] == b["choices"]
    assert a["id"] != b["id"] and a["proxy_id"] != b["proxy_id"]
    other = ask(client, key, temperature=0.2)
    assert other.headers["x-aiproxy-cache"] == "miss"


def test_user_a_never_gets_user_b_answer(client, admin):
    a = admin.create_key(user_id="alice")["key"]
    b = admin.create_key(user_id="bob")["key"]
    assert ask(client, a).headers["x-aiproxy-cache"] == "miss"
    assert ask(client, b).headers["x-aiproxy-cache"] == "miss"
    a2 = admin.create_key(user_id="alice")["key"]  # same user, another key: shared by default
    assert ask(client, a2).headers["x-aiproxy-cache"] == "hit-exact"
    keyscoped = admin.create_key(user_id="alice", cache_scope="key")["key"]
    assert ask(client, keyscoped).headers["x-aiproxy-cache"] == "miss"


def test_shared_scope(client, admin):
    a = admin.create_key(user_id="alice", cache_scope="shared:finance")["key"]
    b = admin.create_key(user_id="bob", cache_scope="shared:finance")["key"]
    ask(client, a)
    assert ask(client, b).headers["x-aiproxy-cache"] == "hit-exact"


def test_controls(client, admin):
    key = admin.create_key()["key"]
    assert ask(client, key, headers={"Cache-Control": "no-store"}).headers["x-aiproxy-cache"] == "bypass"
    assert ask(client, key, headers={"Cache-Control": "no-cache"}).headers["x-aiproxy-cache"] == "bypass"
    # no-cache stored the answer: the next normal request hits
    assert ask(client, key).headers["x-aiproxy-cache"] == "hit-exact"
    assert ask(client, key, headers={"X-AIProxy-Cache": "off"}).headers["x-aiproxy-cache"] == "bypass"
    resp = client.post(URL, json={**chat_body(), "cache": False}, headers={"Authorization": f"Bearer {key}"})
    assert resp.headers["x-aiproxy-cache"] == "bypass"
    off = admin.create_key(cache=False)["key"]
    ask(client, off)
    assert ask(client, off).headers["x-aiproxy-cache"] == "bypass"


def test_stream_replayed_from_cache(client, admin):
    key = admin.create_key()["key"]
    plain = ask(client, key).get_json()
    resp = ask(client, key, stream=True, stream_options={"include_usage": True})
    assert resp.headers["x-aiproxy-cache"] == "hit-exact"
    events = [b[6:] for b in resp.get_data(as_text=True).split("\n\n") if b.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["total_tokens"] == plain["usage"]["total_tokens"]


def test_streamed_answer_is_stored(client, admin):
    key = admin.create_key()["key"]
    resp = ask(client, key, stream=True, messages=[{"role": "user", "content": "stream then cache"}])
    resp.get_data()
    again = ask(client, key, messages=[{"role": "user", "content": "stream then cache"}])
    assert again.headers["x-aiproxy-cache"] == "hit-exact"


def test_ttl_expiry(make_settings):
    from src.app import create_app

    app = create_app(make_settings(CACHE_TTL_SECONDS="1"))
    c = app.test_client()
    key = c.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    ask(c, key)
    assert ask(c, key).headers["x-aiproxy-cache"] == "hit-exact"
    time.sleep(2.1)
    assert ask(c, key).headers["x-aiproxy-cache"] == "miss"
