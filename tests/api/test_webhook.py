"""``POST /api/v1/webhook``: prompt in, processed text out, through the same pipeline and log."""

from __future__ import annotations

import pytest

from tests.api.conftest import assert_error

URL = "/api/v1/webhook"


def test_webhook_summary(client, auth):
    resp = client.post(URL, json={"prompt": "Quarterly revenue rose 12%.", "source": "excel"}, headers=auth)
    assert resp.status_code == 200
    data = resp.get_json()
    assert data["summary"] and isinstance(data["processing_time"], float)
    assert data["type"] == "summary" and data["source"] == "excel"
    assert resp.headers["x-aiproxy-id"] == data["proxy_id"]
    resp.close()
    log = client.get(f"/api/logs/{data['proxy_id']}", headers=auth).get_json()
    assert log["endpoint"] == "webhook" and log["status"] == 200


@pytest.mark.parametrize("kind", ["keywords", "sentiment", "entities", "translation", "custom"])
def test_webhook_types(client, auth, kind):
    resp = client.post(URL, json={"prompt": "Bonjour tout le monde", "type": kind, "language": "English"}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["type"] == kind


def test_webhook_bad_input(client, auth, make_settings):
    assert_error(client.post(URL, json={}, headers=auth), 400, "missing_field")
    assert_error(client.post(URL, json={"prompt": "  "}, headers=auth), 400, "invalid_value")
    assert_error(client.post(URL, json={"prompt": "x", "type": "poem"}, headers=auth), 400, "invalid_value")
    assert_error(client.post(URL, json={"prompt": "x" * 4001}, headers=auth), 400, "context_length_exceeded")
    assert_error(client.post(URL, json={"prompt": "x"}), 401, "missing_api_key")
