"""Request logs (owner-only lookup) and usage counters through the Flask client."""

from __future__ import annotations

import uuid

from tests.api.conftest import MASTER, assert_error, chat_body

URL = "/v1/chat/completions"


def test_log_lookup_owner_other_master(client, admin):
    owner = admin.create_key(user_id="alice")["key"]
    other = admin.create_key(user_id="bob")["key"]
    resp = client.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {owner}"})
    pid = resp.get_json()["proxy_id"]
    resp.close()
    mine = client.get(f"/api/logs/{pid}", headers={"Authorization": f"Bearer {owner}"})
    assert mine.status_code == 200, mine.get_data(as_text=True)
    rec = mine.get_json()
    assert rec["proxy_id"] == pid and rec["user_id"] == "alice" and rec["status"] == 200
    assert rec["prompt_tokens"] > 0 and rec["completion_tokens"] > 0 and rec["model"] == "sandbox"
    assert_error(client.get(f"/api/logs/{pid}", headers={"Authorization": f"Bearer {other}"}), 404, "log_not_found")
    assert client.get(f"/api/logs/{pid}", headers={"Authorization": f"Bearer {MASTER}"}).status_code == 200
    assert_error(client.get("/api/logs/not-a-uuid", headers={"Authorization": f"Bearer {owner}"}), 404, "log_not_found")
    assert_error(client.get(f"/api/logs/{uuid.uuid4()}", headers={"Authorization": f"Bearer {owner}"}), 404,
                 "log_not_found")


def test_errors_are_logged_too(client, admin):
    key = admin.create_key()["key"]
    resp = client.post(URL, json=chat_body(model="no-such-model"), headers={"Authorization": f"Bearer {key}"})
    pid = resp.headers["x-aiproxy-id"]
    resp.close()
    rec = client.get(f"/api/logs/{pid}", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert rec["status"] == 404 and rec["error_code"] == "model_not_found"


def test_usage_counts(client, admin):
    key = admin.create_key(user_id="carol")["key"]
    h = {"Authorization": f"Bearer {key}"}
    total = 0
    for i in range(3):
        r = client.post(URL, json=chat_body(messages=[{"role": "user", "content": f"question {i}"}]), headers=h)
        total += r.get_json()["usage"]["total_tokens"]
        r.close()
    r = client.post(URL, json=chat_body(messages=[{"role": "user", "content": "question 0"}]), headers=h)
    r.close()
    usage = client.get("/api/usage", headers=h).get_json()
    t = usage["totals"]
    assert t["requests"] == 4 and t["cache_hits"] == 1
    assert t["prompt_tokens"] + t["completion_tokens"] == total
    assert "sandbox" in usage["by_model"]
    admin_view = client.get("/admin/usage?user_id=carol", headers={"Authorization": f"Bearer {MASTER}"}).get_json()
    assert admin_view["totals"]["requests"] == 4
    assert_error(client.get("/api/usage?start=yesterday", headers=h), 400, "invalid_value")
    assert_error(client.get("/admin/usage", headers=h), 401, "invalid_api_key")


def test_streamed_answer_text_is_logged(client, admin):
    key = admin.create_key()["key"]
    resp = client.post(URL, json=chat_body(stream=True), headers={"Authorization": f"Bearer {key}"})
    events = [b[6:] for b in resp.get_data(as_text=True).split("\n\n") if b.startswith("data: ")]
    import json as _json

    text = "".join(_json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    pid = resp.headers["x-aiproxy-id"]
    resp.close()
    rec = client.get(f"/api/logs/{pid}", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert rec["stream"] is True and rec["response_body"] == text and rec["request_body"]
