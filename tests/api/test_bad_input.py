"""Every bad input gets the OpenAI envelope with the exact status and code — never a 500."""

from __future__ import annotations

import time

import pytest

from tests.api.conftest import MASTER, assert_error, chat_body

URL = "/v1/chat/completions"


def test_invalid_json(client, auth):
    resp = client.post(URL, data=b'{"model": "sandbox",', headers={**auth, "Content-Type": "application/json"})
    assert_error(resp, 400, "invalid_json", "invalid_request_error")


def test_json_not_an_object(client, auth):
    resp = client.post(URL, json=["model", "sandbox"], headers=auth)
    assert_error(resp, 400, "invalid_json")


def test_empty_body(client, auth):
    resp = client.post(URL, data=b"", headers={**auth, "Content-Type": "application/json"})
    assert_error(resp, 400, "invalid_json")


def test_wrong_content_type(client, auth):
    resp = client.post(URL, data={"model": "sandbox"}, headers=auth)  # form-encoded
    assert_error(resp, 400, "invalid_content_type")


def test_text_plain_json_accepted_for_office_scripts(client, auth):
    import json

    resp = client.post(URL, data=json.dumps(chat_body()), headers={**auth, "Content-Type": "text/plain;charset=UTF-8"})
    assert resp.status_code == 200


def test_non_utf8_body(client, auth):
    resp = client.post(URL, data=b'{"model": "sandbox", "text": "\xff\xfe"}',
                       headers={**auth, "Content-Type": "application/json"})
    assert_error(resp, 400, "invalid_encoding")


def test_missing_messages(client, auth):
    err = assert_error(client.post(URL, json={"model": "sandbox"}, headers=auth), 400, "missing_field")
    assert err["param"] == "messages"


def test_empty_messages(client, auth):
    assert_error(client.post(URL, json=chat_body(messages=[]), headers=auth), 400, "missing_field")


def test_missing_model(client, auth):
    err = assert_error(client.post(URL, json={"messages": [{"role": "user", "content": "x"}]}, headers=auth),
                       400, "missing_field")
    assert err["param"] == "model"


def test_unknown_role(client, auth):
    err = assert_error(client.post(URL, json=chat_body(messages=[{"role": "wizard", "content": "x"}]), headers=auth),
                       400, "invalid_role")
    assert err["param"] == "messages.0.role"


def test_message_without_content(client, auth):
    err = assert_error(client.post(URL, json=chat_body(messages=[{"role": "user"}]), headers=auth),
                       400, "invalid_value")
    assert err["param"].startswith("messages.0")


@pytest.mark.parametrize("temperature", [-0.1, 2.5, "hot"])
def test_temperature_out_of_range(client, auth, temperature):
    err = assert_error(client.post(URL, json=chat_body(temperature=temperature), headers=auth), 400, "invalid_value")
    assert err["param"] == "temperature"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_negative_max_tokens(client, auth, field):
    err = assert_error(client.post(URL, json=chat_body(**{field: -5}), headers=auth), 400, "invalid_value")
    assert err["param"] == field


def test_unknown_model(client, auth):
    err = assert_error(client.post(URL, json=chat_body(model="no-such-model"), headers=auth),
                       404, "model_not_found", "not_found_error")
    assert err["param"] == "model"


def test_body_over_max_request_bytes(make_settings):
    from src.app import create_app

    app = create_app(make_settings(MAX_REQUEST_BYTES="2000"))
    client = app.test_client()
    key = client.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    resp = client.post(URL, json=chat_body(messages=[{"role": "user", "content": "x" * 5000}]),
                       headers={"Authorization": f"Bearer {key}"})
    assert_error(resp, 413, "request_too_large", "invalid_request_error")


def test_missing_key(client):
    assert_error(client.post(URL, json=chat_body()), 401, "missing_api_key", "authentication_error")


@pytest.mark.parametrize("key", ["sk-not-ours", "sk-aip-zzzz", "sk-aip-0123456789abcdef-wrongsecret"])
def test_malformed_or_unknown_key(client, key):
    assert_error(client.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {key}"}),
                 401, "invalid_api_key", "authentication_error")


def test_key_error_does_not_echo_the_key(client):
    key = "sk-aip-0123456789abcdef-supersecretvalue123456"
    err = assert_error(client.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {key}"}),
                       401, "invalid_api_key")
    assert "supersecretvalue" not in err["message"]


def test_revoked_key(client, admin):
    created = admin.create_key()
    resp = client.delete(f"/admin/keys/{created['id']}", headers=admin.headers)
    assert resp.status_code == 200 and resp.get_json()["deleted"] is True
    assert_error(client.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {created['key']}"}),
                 401, "invalid_api_key")


def test_expired_key(client, admin):
    created = admin.create_key(expires_at=time.time() - 5)
    assert_error(client.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {created['key']}"}),
                 403, "key_expired", "permission_error")


def test_inactive_key(client, admin):
    created = admin.create_key()
    assert client.patch(f"/admin/keys/{created['id']}", json={"active": False}, headers=admin.headers).status_code == 200
    assert_error(client.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {created['key']}"}),
                 403, "key_inactive", "permission_error")


def test_model_not_allowed(client, admin):
    created = admin.create_key(models=["gpt-4o*"])
    assert_error(client.post(URL, json=chat_body(model="sandbox"), headers={"Authorization": f"Bearer {created['key']}"}),
                 403, "model_not_allowed", "permission_error")


def test_master_key_is_not_a_client_key(client):
    assert_error(client.post(URL, json=chat_body(), headers={"Authorization": f"Bearer {MASTER}"}),
                 401, "invalid_api_key")


def test_unknown_route_and_method(client, auth):
    assert_error(client.get("/v1/nothing-here", headers=auth), 404, "not_found", "not_found_error")
    resp = client.get(URL, headers=auth)
    assert_error(resp, 405, "method_not_allowed")


def test_bad_tool_choice_and_too_many_stops(client, auth):
    assert_error(client.post(URL, json=chat_body(tool_choice="sometimes"), headers=auth), 400, "invalid_value")
    assert_error(client.post(URL, json=chat_body(stop=["a", "b", "c", "d", "e"]), headers=auth), 400, "invalid_value")


def test_deprecated_function_messages_are_accepted(client, auth):
    messages = [{"role": "user", "content": "weather?"},
                {"role": "assistant", "function_call": {"name": "get_weather", "arguments": "{}"}},
                {"role": "function", "name": "get_weather", "content": "sunny"}]
    assert client.post(URL, json=chat_body(messages=messages), headers=auth).status_code == 200
    bad = [{"role": "function", "content": "sunny"}]
    assert_error(client.post(URL, json=chat_body(messages=bad), headers=auth), 400, "invalid_value")
