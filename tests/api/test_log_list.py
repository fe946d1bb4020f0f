"""``GET /api/logs`` (a key's own) and ``GET /admin/logs`` (every key): newest first, filters, cursor paging."""

from __future__ import annotations

from tests.api.conftest import MASTER, assert_error, chat_body

URL = "/v1/chat/completions"


def _chat(client, key, text, **kw):
    resp = client.post(URL, json=chat_body(messages=[{"role": "user", "content": text}], **kw),
                       headers={"Authorization": f"Bearer {key}", "Cache-Control": "no-store"})
    resp.close()
    return resp


def test_own_logs_newest_first_with_filters_and_paging(client, admin):
    mine = admin.create_key(user_id="alice")["key"]
    other = admin.create_key(user_id="bob")["key"]
    sent = [_chat(client, mine, f"question {i}").get_json()["proxy_id"] for i in range(7)]
    _chat(client, other, "not yours")
    bad = client.post(URL, json={"model": "no-such-model-x", "messages": [{"role": "user", "content": "x"}]},
                      headers={"Authorization": f"Bearer {mine}"})
    bad.close()
    auth = {"Authorization": f"Bearer {mine}"}
    page = client.get("/api/logs?limit=3", headers=auth).get_json()
    assert [r["proxy_id"] for r in page["data"]][:1] == [bad.headers["x-aiproxy-id"]]
    assert page["has_more"] and len(page["data"]) == 3 and "request_body" not in page["data"][0]
    seen = [r["proxy_id"] for r in page["data"]]
    while page["next_cursor"]:
        page = client.get(f"/api/logs?limit=3&cursor={page['next_cursor']}", headers=auth).get_json()
        seen += [r["proxy_id"] for r in page["data"]]
    assert seen == [bad.headers["x-aiproxy-id"]] + sent[::-1]  # every record once, newest first, never bob's
    ok = client.get("/api/logs?status=2xx&model=sandbox", headers=auth).get_json()["data"]
    assert [r["proxy_id"] for r in ok] == sent[::-1]
    errors = client.get("/api/logs?status=4xx", headers=auth).get_json()["data"]
    assert [r["status"] for r in errors] == [404]
    assert_error(client.get("/api/logs?status=teapot", headers=auth), 400, "invalid_value")
    assert_error(client.get("/api/logs?cursor=garbage", headers=auth), 400, "invalid_value")
    assert_error(client.get("/api/logs?since=yesterday-ish", headers=auth), 400, "invalid_value")
    assert_error(client.get("/api/logs?limit=0", headers=auth), 400, "invalid_value")


def test_admin_logs_across_keys(client, admin):
    a = admin.create_key(user_id="carol")
    b = admin.create_key(user_id="dave")
    pa = _chat(client, a["key"], "from carol").get_json()["proxy_id"]
    pb = _chat(client, b["key"], "from dave").get_json()["proxy_id"]
    master = {"Authorization": f"Bearer {MASTER}"}
    every = [r["proxy_id"] for r in client.get("/admin/logs", headers=master).get_json()["data"]]
    assert every.index(pb) < every.index(pa)
    only = client.get(f"/admin/logs?key_id={a['id']}", headers=master).get_json()["data"]
    assert [r["proxy_id"] for r in only] == [pa]
    by_user = client.get("/admin/logs?user_id=dave", headers=master).get_json()["data"]
    assert [r["proxy_id"] for r in by_user] == [pb]
    assert_error(client.get("/admin/logs", headers={"Authorization": f"Bearer {a['key']}"}), 401, "invalid_api_key")
