"""``/admin/keys``: issue, list, read, change, revoke; master key only; keys stored hashed."""

from __future__ import annotations

from tests.api.conftest import assert_error


def test_admin_requires_master(client, api_key):
    assert_error(client.get("/admin/keys"), 401, "missing_api_key")
    assert_error(client.get("/admin/keys", headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key")
    assert_error(client.get("/admin/keys", headers={"Authorization": f"Bearer {api_key}"}), 401, "invalid_api_key")


def test_create_returns_key_once_and_stores_only_hash(client, admin, redis_client, key_prefix):
    created = admin.create_key(user_id="alice", name="excel", models=["sandbox"], rpm=10, tpm=1000,
                               budget_usd="12.50", expires_at="2099-01-01T00:00:00Z")
    assert created["key"].startswith("sk-aip-") and created["user_id"] == "alice"
    assert created["budget_usd"] == "12.50" and created["expires_at"] == "2099-01-01T00:00:00Z"
    stored = {k.decode(): v.decode() for k, v in redis_client.hgetall(f"{key_prefix}key:{{{created['id']}}}").items()}
    assert created["key"] not in "".join(stored.values())
    assert stored["key_hash"] and stored["user_id"] == "alice"
    fetched = client.get(f"/admin/keys/{created['id']}", headers=admin.headers).get_json()
    assert "key" not in fetched and fetched["name"] == "excel"
    listed = client.get("/admin/keys", headers=admin.headers).get_json()["data"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]


def test_patch_and_delete(client, admin):
    created = admin.create_key()
    resp = client.patch(f"/admin/keys/{created['id']}", json={"rpm": 5, "models": ["sandbox"], "name": "n"},
                        headers=admin.headers)
    assert resp.status_code == 200 and resp.get_json()["rpm"] == 5 and resp.get_json()["models"] == ["sandbox"]
    assert client.delete(f"/admin/keys/{created['id']}", headers=admin.headers).status_code == 200
    assert client.get(f"/admin/keys/{created['id']}", headers=admin.headers).get_json()["revoked"] is True
    assert_error(client.patch(f"/admin/keys/{created['id']}", json={"active": True}, headers=admin.headers),
                 400, "key_revoked")


def test_admin_bad_input(client, admin):
    h = admin.headers
    assert_error(client.post("/admin/keys", json={}, headers=h), 400, "missing_field")
    assert_error(client.post("/admin/keys", json={"user_id": "u", "rpm": -1}, headers=h), 400, "invalid_value")
    assert_error(client.post("/admin/keys", json={"user_id": "u", "colour": "red"}, headers=h), 400, "unknown_parameter")
    assert_error(client.post("/admin/keys", json={"user_id": "u", "budget_period": "weekly"}, headers=h), 400, "invalid_value")
    assert_error(client.get("/admin/keys/doesnotexist", headers=h), 404, "key_not_found")
    assert_error(client.patch("/admin/keys/doesnotexist", json={}, headers=h), 404, "key_not_found")
